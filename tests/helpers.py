"""Builders shared by the test files (no test file imports another): data folders, tuned runs,
workspace images, reader-study images, a tiny VLM and a local OpenAI-compatible caption server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


def make_data(folder: Path, prefix: str = "fundus", n: int = 8) -> Path:
    """An imagefolder of the first `n` demo images whose names start with `prefix`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (DEMO / "metadata.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["file_name"].startswith(prefix)][:n]
    for r in rows:
        shutil.copy(DEMO / r["file_name"], folder / r["file_name"])
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def make_shaped_data(folder: Path, kinds: dict[str, tuple[tuple[int, int], int, tuple[int, int, int]]]) -> Path:
    """An imagefolder of non-square images: per label, (size (width, height), how many, RGB
    colour); each image that colour with a little noise, captioned by its label."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, (size, n, colour) in kinds.items():
        for i in range(n):
            rng = np.random.default_rng(len(rows))
            arr = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            name = f"{label}-{i}.png"
            Image.fromarray(arr).save(folder / name)
            rows.append({"file_name": name, "text": f"A {label} image, mostly one colour.", "label": label})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def wait_for(predicate, timeout=300, poll=0.2):
    """Poll until `predicate()` is truthy (the deadline only guards against a hang)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition never became true")


def make_tuned_run(run: Path, data: str = "", seed: int = 0, lora_config=None) -> Path:
    """A run folder on the tiny base with a DiT + T5 adapter whose B matrices are non-zero,
    so that tuned images differ from base ones (no training needed); `lora_config`: a
    `medart.config.LoraConfig` (default rank 4, alpha = rank)."""
    from medart import lora
    from medart.config import LoraConfig
    from medart.profiles import load_base

    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"base_model": "tiny", "data": str(data)}))
    base = load_base("tiny", device="cpu")
    lora.attach_base(base, lora_config or LoraConfig(rank=4))
    g = torch.Generator().manual_seed(seed)
    for model in (base.transformer, base.text_encoder):
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data = torch.randn(p.shape, generator=g) * 0.5
    lora.save(base.transformer, run / "adapter" / "dit")
    if hasattr(base.text_encoder, "peft_config_medart"):  # T5 has LoRA (lora_config.t5)
        lora.save(base.text_encoder, run / "adapter" / "t5")
    return run


PRIVATE_SOURCE = "/home/clinic/Doe_Jane_1961 scans"  # a data path that names a patient: never in a card


def make_finished_run(run: Path, base_model: str = "tiny", steps: int = 10, evaluated: bool = False) -> Path:
    """A finished run folder as the trainer leaves it (config, data.json, metrics, samples of
    step 0 and the last step, adapter/dit and adapter/t5 in peft's format), with no training:
    its data path and example keys carry a patient's name, which no card may show."""
    from safetensors.torch import save_file

    from medart.config import load_config
    from medart.fileio import append_jsonl
    from medart.run_folder import RunFolder

    folder = RunFolder(run)
    config = load_config(None, base_model=base_model, data=PRIVATE_SOURCE, output=str(run), max_steps=steps)
    config.hldf.every = 5
    plan = {"enabled": True, "every": 5, "rule": "explicit", "total_steps": steps, "colour_steps": steps // 5,
            "images_per_colour_step": 2, "cost_ratio": 4.8, "added_fraction": 0.5, "colour_solver_steps": 10,
            "colour_grad_steps": 2}
    data = {"source": PRIVATE_SOURCE, "images": 6, "processes": 1, "classes": {"polyp": 4, "normal": 2},
            "hldf_plan": plan, "keys": ["Doe_Jane_1961_0001.png"]}
    folder.start(config, "python -m medart train", data)
    prompts = ["An endoscopic image of polyp", "An endoscopic image of normal"]
    for step in (0, steps):
        folder.save_samples(step, [Image.new("RGB", (16, 16), (200, 40 + step, 40)) for _ in prompts], prompts, [0, 1])
    append_jsonl(folder.metrics_path, {"step": 0, "color_distance": {"normal": 0.30, "polyp": 0.40}})
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 0.5 - step / 100, "seconds": 0.02}
        if step % 5 == 0:
            row.update(color_loss=0.1, color_seconds=0.05)
        if step == steps:
            row["color_distance"] = {"normal": 0.10, "polyp": 0.20}
        append_jsonl(folder.metrics_path, row)
    for net in ("dit", "t5"):
        target = run / "adapter" / net
        target.mkdir(parents=True)
        (target / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
        save_file({"base_model.model.x.lora_A.weight": torch.zeros(4, 8)}, target / "adapter_model.safetensors")
    (run / "adapter" / "README.md").write_text("the card written at export\n")
    (run / "checkpoints" / f"step-{steps:06d}").mkdir(parents=True)
    (run / "cache").mkdir()
    (run / "log.txt").write_text(f"training {PRIVATE_SOURCE}\n")
    folder.status("done", step=steps, total=steps)
    if evaluated:
        (run / "eval").mkdir()
        (run / "eval" / "metrics.json").write_text(json.dumps({
            "created": "2026-11-30T08:00:00Z", "run": str(run),
            "settings": {"real_images": PRIVATE_SOURCE, "n_real": 8, "n_generated_per_model": 16, "steps": 20,
                         "cfg": 4.5},
            "distribution": {"base": {"fid": 210.5, "kid_mean": 0.2, "color_distance": 0.4},
                             "tuned": {"fid": 150.25, "kid_mean": 0.1, "color_distance": 0.15}},
            "classification": {"real": {"accuracy": 0.875, "macro_f1": 0.85}},
        }))
    return run


def add_images(ws, labels, split: str = "train") -> list[int]:
    """One distinct 16x16 image per entry of `labels` (its class label) in workspace `ws`; the new ids."""
    from medart.workspace import NewImage

    rows = []
    for k, label in enumerate(labels, start=ws.count()):  # a later call adds new pixels, not duplicates
        sha, size, _ = ws.store_image(Image.new("RGB", (16, 16), (k % 256, k // 256, 99)))
        rows.append(NewImage(sha, f"img{k}.png", 16, 16, "RGB", size, "test", label, split))
    return ws.add_images(rows)


# ---- reader studies ----------------------------------------------------------------------------
def noise(seed, size, smooth=False, mode="RGB"):
    """A noise (or, smooth, a gradient) image of `size` (width, height) from `seed`."""
    rng = np.random.default_rng(seed)
    if smooth:
        arr = np.tile(np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None], (size[1], 1, 3))
    else:
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def planted_images(n_per_kind=4, labels=("fundus", "histology")):
    """Real (EXIF-carrying JPEG) and generated (smooth, with PNG text) study images, n of each kind."""
    from medart.reader_study import StudyImage

    images = []
    for i in range(n_per_kind):
        label = labels[i % len(labels)]
        # real: a photograph-like JPEG source with EXIF, larger than the display size
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x010F] = "CameraMaker"
        noise(i, (96, 80)).save(buf, format="JPEG", quality=70, exif=exif)
        real = Image.open(io.BytesIO(buf.getvalue()))
        images.append(StudyImage(real, "real", label, f"a {label} image", f"real-{label}-{i}.jpg"))
        gen = noise(100 + i, (64, 64), smooth=True)
        gen.info["parameters"] = "generated, seed 7"  # what generate_to_file would attach
        images.append(StudyImage(gen, "generated", label, f"a {label} image", f"seed {i}"))
    return images


def owner_code_hash(workspace_dir: Path, name: str) -> str | None:
    """The stored owner-code hash of study `name` (None: no code set), read straight from the database."""
    with sqlite3.connect(Path(workspace_dir) / "workspace.db") as c:
        return c.execute("SELECT owner_code_hash FROM reader_studies WHERE name = ?", (name,)).fetchone()[0]


# ---- captioning: a tiny VLM and a local OpenAI-compatible server -------------------------------
WORDS = (
    "an endoscopic image of polyps pink red white round smooth surface mucosa the with and is a glossy "
    "surrounded by texture shape bleeding no color please describe this using following visual features"
).split()


def build_tiny_blip(folder, chat_template: str | None = None):
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "'", ":"] + sorted(set(WORDS))
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    if chat_template:
        processor.chat_template = chat_template
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=128, bos_token_id=2, sep_token_id=3,
                         pad_token_id=0, eos_token_id=3),
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


class ChatHandler(BaseHTTPRequestHandler):
    """/v1/chat/completions as a VLM server answers it, describing the image it receives; the
    first `failures` requests get a 503 (an overloaded server)."""

    requests: list = []
    failures = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        from captioning.offline import describe_pixels

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).failures > 0:
            type(self).failures -= 1
            return self._send(503, {"error": {"message": "overloaded, try again"}})
        if body.get("model") != "served-vlm":
            return self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
        content = body["messages"][0]["content"]
        if isinstance(content, str):  # text-only: the simplify pass
            answer = "An endoscopic image of polyps, pink and round."
        else:
            prompt = next(c["text"] for c in content if c["type"] == "text")
            url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
            image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            simple = prompt.split(". Please")[0]
            # the server describes the image it received, like a VLM would
            answer = "Description: " + describe_pixels(image, simple)
        self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]})

    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def chat_server():
    """A local OpenAI-compatible server (ChatHandler) on a free port; yields its /v1 URL."""
    ChatHandler.requests = []
    ChatHandler.failures = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- processes that die at a chosen moment (deterministic, not a timer) ---------------------------
KILLED_CLI = """
import os, signal, sys
from pathlib import Path

from medart.cli import main

def die():
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no last words: as a power cut or the OOM killer

kind, at, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if kind == "publish":  # while folder `at` is being published: written in full, not yet renamed into place
    from medart import fileio

    publish = fileio.publish_dir

    def publishing(tmp, final):
        if Path(final).name == at:
            die()
        publish(tmp, final)

    fileio.publish_dir = publishing
elif kind == "captions":  # right after the `at`-th caption is committed
    from medart.workspace.store import Workspace

    set_caption, done = Workspace.set_caption, []

    def captioning(self, *args, **kwargs):
        written = set_caption(self, *args, **kwargs)
        done.append(written)
        if sum(done) == int(at):
            die()
        return written

    Workspace.set_caption = captioning
sys.exit(main(argv))
"""


def run_cli_killed(kind: str, at, argv: list[str], env: dict, timeout: float = 300):
    """`python -m medart ARGV` in a process that SIGKILLs itself at a moment named by `kind` and
    `at`: "publish", FOLDER_NAME (inside the atomic publish of that folder, e.g. a checkpoint)
    or "captions", N (after the N-th caption is committed). Returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", KILLED_CLI, kind, str(at), *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_losses(run: Path) -> dict:
    """{step: (diffusion loss, colour loss or None)} of a run's metrics.jsonl."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r.get("color_loss")) for r in rows if "loss" in r}


def assert_same_losses(expected_run: Path, run: Path, steps: int) -> None:
    """`run` logged steps 1..steps with the losses of `expected_run` (an uninterrupted run)."""
    import pytest

    expected, resumed = run_losses(expected_run), run_losses(run)
    assert sorted(resumed) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert resumed[step][0] == pytest.approx(expected[step][0], rel=1e-6, abs=1e-7), step
        if expected[step][1] is not None:
            assert resumed[step][1] == pytest.approx(expected[step][1], rel=1e-6), step
