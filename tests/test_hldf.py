"""HLDF training on the tiny base: colour effect, exact resume after SIGKILL, adapter export, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medart import checkpoints
from medart.cli import main as cli_main
from medart.config import load_config
from medart.data import DataError
from medart.generate import Generator
from medart.hldf import train
from helpers import assert_same_losses, make_data, run_cli_killed, run_losses
from medart.profiles import BaseModelError
from medart.run_folder import RunFolder

ROOT = Path(__file__).resolve().parent.parent
CAPTION = "A fundus photograph of a retina, predominantly orange red with dark red vessels."


def colour_distance(images, reals) -> float:
    """Distance of per-channel mean and std (set averages, [0, 1] units), as the colour loss."""
    def stats(ims):
        a = np.stack([np.asarray(i.convert("RGB"), dtype=np.float64) / 255 for i in ims])
        return a.mean(axis=(1, 2)).mean(0), a.std(axis=(1, 2)).mean(0)

    (m1, s1), (m2, s2) = stats(images), stats(reals)
    return float(np.sqrt(((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()))


def tiny_config(data, output, **kw):
    settings = {"base_model": "tiny", "data": str(data), "output": str(output), "validation_every": 1000,
                "checkpoint_every": 1000, "hldf.every": 2, "hldf.steps": 5}
    settings.update(kw)
    return load_config(None, **settings)


@pytest.mark.slow  # trains in subprocesses or for 60+ steps
def test_hldf_shrinks_colour_distance_more_than_plain_lora(tmp_path):
    """Same run with and without the colour loss, the paper's formulation at weight 1.0 (20x its
    1/M), on `tiny-random`, whose samples start far from the data's colours, so that the colour
    gradient has somewhere to go in 60 steps. (The default mode's direction on a pretrained
    base and real classes: test_hldf_balance.py. On this random model the gradient through
    the last 2 of 5 solver steps alone is ~100x weaker than through all 5.)"""
    data = make_data(tmp_path / "data")
    reals = [Image.open(p) for p in sorted(data.glob("*.jpg"))]
    distances = {}
    for name, kw in (("plain", {"hldf.enabled": False}), ("hldf", {"hldf.mode": "paper", "hldf.weight": 1.0})):
        cfg = tiny_config(data, tmp_path / name, max_steps=60, learning_rate=1e-3, base_model="tiny-random", **kw)
        train(cfg)
        gen = Generator("tiny-random", cfg.output)
        distances[name] = colour_distance(gen.generate([CAPTION] * 8, list(range(100, 108))), reals)
        distances["base"] = colour_distance(gen.generate([CAPTION] * 8, list(range(100, 108)), lora_scale=0), reals)
        rows = [json.loads(x) for x in (Path(cfg.output) / "metrics.jsonl").read_text().splitlines()]
        assert rows[0] == {"step": 0, "color_distance": rows[0]["color_distance"]}  # the curve starts at step 0
        rows = rows[1:]
        colour_rows = [r for r in rows if "color_loss" in r]
        if name == "hldf":
            assert len(colour_rows) == 30 and all(r["grad_norm_color"] > 0 for r in colour_rows)
            assert all(r["color_weight"] == 1.0 for r in colour_rows)
        else:
            assert not colour_rows and len(rows) == 60
    print("colour distance to the data:", distances)
    assert distances["hldf"] < distances["plain"] - 0.03
    assert distances["hldf"] < distances["base"] - 0.03


def _train_cmd(data, output, *extra):
    return [sys.executable, "-m", "medart", "train", "--base-model", "tiny", "--data", str(data),
            "--output", str(output), "--max-steps", "10", "--checkpoint-every", "2", "--hldf-every", "3",
            "--hldf-steps", "3", "--validation-every", "5", "--lr", "1e-3", *extra]


@pytest.mark.slow  # trains in subprocesses or for 60+ steps
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    data = make_data(tmp_path / "data", n=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reference = tmp_path / "reference"
    done = subprocess.run(_train_cmd(data, reference), env=env, check=True, capture_output=True, text=True,
                          timeout=300)
    # piped: ends on where the adapter is, with no model-loading or progress bars in between
    assert done.stdout.strip().splitlines()[-1] == f"done: adapter at {reference / 'adapter'}"
    assert "Loading pipeline components" not in done.stderr and "|" not in done.stderr, done.stderr[-2000:]

    run = tmp_path / "killed"
    # killed in the middle of writing the step-6 checkpoint: its files are written, the folder
    # not yet renamed into place (the worst moment for a checkpoint)
    killed = run_cli_killed("publish", "step-000006", _train_cmd(data, run)[3:], env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # died without a word
    assert list((run / "checkpoints").glob(".tmp-step-000006-*"))  # the half-published one is left behind
    for ckpt in (run / "checkpoints").glob("step-*"):
        assert checkpoints.is_complete(ckpt), f"{ckpt.name} is half-written"
    assert [p.name for p in checkpoints.complete(run / "checkpoints")] == ["step-000002", "step-000004"]
    assert max(r["step"] for r in RunFolder(run).metrics()) == 6  # step 6 was trained, its checkpoint lost

    subprocess.run(_train_cmd(data, run, "--resume", "latest"), env=env, check=True, capture_output=True, timeout=300)
    assert_same_losses(reference, run, 10)
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert [p.name for p in checkpoints.complete(run / "checkpoints")] == ["step-000006", "step-000008", "step-000010"]
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    assert (run / "samples" / "step-000000" / "00.png").exists() and (run / "samples" / "step-000010").exists()
    card = (run / "adapter" / "README.md").read_text()
    assert "Research use only" in card and "not for diagnosis" in card
    for name in ("config.yaml", "command.txt", "env.txt"):
        assert (run / name).stat().st_size > 0
    # the latent cache was used (square images, no random augmentation): one file per image
    assert len(list((run / "cache" / "latents").glob("*.safetensors"))) == 4


STOCK_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    from diffusers import PixArtAlphaPipeline
    from peft import PeftModel
    base, adapter, out = sys.argv[1:4]
    torch.set_num_threads(1)
    pipe = PixArtAlphaPipeline.from_pretrained(base)
    pipe.transformer = PeftModel.from_pretrained(pipe.transformer, adapter + "/dit")
    pipe.text_encoder = PeftModel.from_pretrained(pipe.text_encoder, adapter + "/t5")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(sys.argv[4], num_inference_steps=20, guidance_scale=4.5, height=64, width=64,
                 generator=torch.Generator().manual_seed(7), use_resolution_binning=False,
                 clean_caption=False, output_type="np").images[0]
    assert "medart" not in sys.modules
    np.save(out, (image * 255).round().astype(np.uint8))
""")


@pytest.mark.slow  # trains in subprocesses or for 60+ steps
def test_exported_adapter_reproduces_the_image_in_a_stock_pipeline(tmp_path, tiny_dir):
    data = make_data(tmp_path / "data", n=2)
    cfg = tiny_config(data, tmp_path / "run", max_steps=4, learning_rate=1e-2)
    train(cfg)
    ours = np.asarray(Generator("tiny", cfg.output).generate([CAPTION], [7])[0])
    base_only = np.asarray(Generator("tiny").generate([CAPTION], [7])[0])
    script = tmp_path / "stock.py"
    script.write_text(STOCK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(script), tiny_dir, str(Path(cfg.output) / "adapter"),
                    str(tmp_path / "stock.npy"), CAPTION], env=env, cwd=tmp_path, check=True, timeout=300)
    stock = np.load(tmp_path / "stock.npy")
    assert np.abs(ours.astype(int) - base_only.astype(int)).max() > 10  # the adapter changes the image
    assert np.abs(ours.astype(int) - stock.astype(int)).max() <= 1  # and the stock pipeline agrees


def test_cli_generate_is_deterministic(tmp_path, capsys):
    args = ["generate", "--base-model", "tiny", "--prompt", CAPTION, "--seed", "5", "--steps", "8"]
    assert cli_main(args + ["--out", str(tmp_path / "a.png")]) == 0
    assert cli_main(args + ["--out", str(tmp_path / "b.png")]) == 0
    assert cli_main(args[:-3] + ["6", "--steps", "8", "--out", str(tmp_path / "c.png")]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def _broken(tmp_path, kind):
    folder = make_data(tmp_path / kind, n=3)
    rows = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    if kind == "missing-caption":
        rows = rows[:2]  # fundus_2.jpg keeps its file but loses its caption row
    elif kind == "empty-caption":
        rows[1]["text"] = "   "
    elif kind == "unreadable":
        (folder / rows[2]["file_name"]).write_bytes(b"\xff\xd8 not really a jpeg")
    elif kind == "long-caption":
        rows[0]["text"] = "A fundus photograph " + "with many vessels " * 60
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("kind,needle", [
    ("missing-caption", "fundus_2.jpg: missing caption"),
    ("empty-caption", "fundus_1.jpg: missing caption"),
    ("unreadable", "fundus_2.jpg: unreadable image"),
    ("long-caption", "fundus_0.jpg: caption has"),
])
def test_bad_data_is_reported_with_the_file(tmp_path, kind, needle):
    cfg = tiny_config(_broken(tmp_path, kind), tmp_path / "run", max_steps=1)
    with pytest.raises(DataError, match=needle.replace(".", r"\.")):
        train(cfg)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_empty_dataset_and_unknown_base_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No images found"):
        train(tiny_config(tmp_path / "empty", tmp_path / "run"))
    with pytest.raises(BaseModelError, match="Unknown base model 'pixart-beta'"):
        train(tiny_config(tmp_path / "empty", tmp_path / "run2", base_model="pixart-beta"))
    # through the CLI: a clear message and exit code 2, no traceback
    code = cli_main(["train", "--base-model", "tiny", "--data", str(tmp_path / "empty"),
                     "--output", str(tmp_path / "run3")])
    assert code == 2 and "No images found" in capsys.readouterr().err


@pytest.mark.slow  # trains
def test_stop_signal_late_in_a_step_still_ends_on_a_checkpoint(tmp_path):
    """SIGTERM landing after a step's checkpoint test (here: in the progress callback, the last
    thing a step does) must not end the run without a checkpoint of the step it stops at."""
    data = make_data(tmp_path / "data", n=2)

    def progress(step, total, last):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    run = train(tiny_config(data, tmp_path / "run", max_steps=20, **{"hldf.enabled": False}), progress=progress)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and status["step"] == 4  # the step in flight when the flag was read
    assert [p.name for p in checkpoints.complete(run / "checkpoints")] == ["step-000004"]
    assert signal.getsignal(signal.SIGTERM) is before  # the trainer's handler is gone again


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state per process (a training job is a process of its own); tests
    that change the precision in this shared process start and end with a fresh one, as
    accelerate's own tests do."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.slow  # trains
def test_bf16_mixed_precision_trains_fp32_adapters_over_a_bf16_base(tmp_path, fresh_accelerate_state):
    """The CUDA default (bf16) exercised on the CPU: base weights in bf16, LoRA weights and
    their optimiser in fp32, finite diffusion and colour losses, an fp32 adapter on disk."""
    from safetensors.torch import load_file

    from medart.hldf import Trainer

    data = make_data(tmp_path / "data", n=2)
    trainer = Trainer(tiny_config(data, tmp_path / "run", max_steps=2, mixed_precision="bf16", **{"hldf.steps": 3}))
    assert trainer.weight_dtype == torch.bfloat16
    assert trainer.base.vae.dtype == torch.bfloat16 and trainer.base.text_encoder.dtype == torch.bfloat16
    assert {p.dtype for p in trainer.params} == {torch.float32} and len(trainer.params) > 0
    before = [p.detach().clone() for p in trainer.params]
    trainer.run_loop()
    rows = [r for r in trainer.run.metrics() if "loss" in r]  # the step rows (not the validation at step 0)
    assert [r["step"] for r in rows] == [1, 2] and "color_loss" in rows[1]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "grad_norm")) and math.isfinite(rows[1]["color_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))
    weights = load_file(tmp_path / "run" / "adapter" / "dit" / "adapter_model.safetensors")
    assert weights and {w.dtype for w in weights.values()} == {torch.float32}


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    data = make_data(tmp_path / "data", n=2)
    with pytest.raises(FileNotFoundError, match="No complete checkpoint"):
        train(tiny_config(data, tmp_path / "run", max_steps=2, resume="latest"))


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base_model: tiny\nhldf:\n  every: 7\n  steps: 9\nlora:\n  rank: 4\n")
    cfg = load_config(path, **{"hldf.steps": 11, "lora.t5": False})
    assert (cfg.hldf.every, cfg.hldf.steps, cfg.lora.rank, cfg.lora.t5) == (7, 11, 4, False)
    assert cfg.hldf.color_weight == 1.0  # the balanced mode's
    assert load_config(path, **{"hldf.mode": "paper"}).hldf.color_weight == pytest.approx(1 / 9)  # the paper's 1/M
    defaults = load_config(None)
    assert (defaults.hldf.every, defaults.hldf.color_steps, defaults.hldf.cfg, defaults.lora.rank) == (None, 10, 4.5, 8)
    assert (defaults.hldf.mode, defaults.hldf.color_weight, defaults.hldf.color_grad_steps) == ("balanced", 1.0, 2)
    assert (defaults.hldf.color_per_class, defaults.ema_decay) == (2, 0.99)
    paper = load_config(None, **{"hldf.mode": "paper"}).hldf
    assert (paper.color_weight, paper.color_grad_steps, paper.color_target, paper.color_coverage,
            paper.color_balance, paper.color_per_class) == (1 / 20, 20, "image", "batch", "joint", 1)
    with pytest.raises(ValueError, match="hldf.mode must be one of balanced, paper"):
        load_config(None, **{"hldf.mode": "fast"})
    assert (defaults.learning_rate, defaults.weight_decay, defaults.max_grad_norm, defaults.epochs) == (1e-4, 1e-2, 1.0, 15)
    assert (defaults.batch_size, defaults.seed, defaults.lora.t5, defaults.gradient_checkpointing) == (1, 42, True, True)
    with pytest.raises(ValueError, match="Unknown TrainConfig settings: colour"):
        load_config(None, colour=1)
    assert torch.get_num_threads() == 1


@pytest.mark.slow  # trains in subprocesses or for 60+ steps
def test_accelerate_launch_two_processes(tmp_path):
    """`accelerate launch` runs the same command on several processes (gloo on CPU here); the
    trainer averages LoRA gradients and checks at every checkpoint that the processes agree."""
    data = make_data(tmp_path / "data", n=4)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "medart", "train", "--base-model", "tiny", "--data", str(data), "--output", str(run),
           "--max-steps", "4", "--hldf-every", "2", "--hldf-steps", "3", "--checkpoint-every", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "data.json").read_text())["processes"] == 2
    rows = run_losses(run)
    assert sorted(rows) == [1, 2, 3, 4] and rows[2][1] is not None and rows[4][1] is not None
    assert [p.name for p in checkpoints.complete(run / "checkpoints")] == ["step-000002", "step-000004"]


def test_held_out_split_beside_train_is_not_a_missing_caption(tmp_path):
    """An imagefolder with train/ and test/ trains on train/ alone."""
    root = tmp_path / "data"
    make_data(root / "train", n=2)
    make_data(root / "test", prefix="histology", n=2)
    (root / "test" / "metadata.jsonl").unlink()  # held-out images need no captions here
    cfg = tiny_config(root, tmp_path / "run", max_steps=1)
    train(cfg)
    assert json.loads((tmp_path / "run" / "data.json").read_text())["images"] == 2


@pytest.mark.slow  # trains
def test_text_cache_without_t5_lora_changes_nothing(tmp_path):
    """With T5 frozen its embeddings are cached on disk; the losses are the same as without."""
    data = make_data(tmp_path / "data", n=2)
    losses = {}
    for cache in (True, False):
        cfg = tiny_config(data, tmp_path / f"run-{cache}", max_steps=4, cache_text=cache, **{"lora.t5": False})
        train(cfg)
        losses[cache] = run_losses(Path(cfg.output))
        texts = list((Path(cfg.output) / "cache" / "text").glob("*.safetensors"))
        assert len(texts) == (2 if cache else 0)  # one caption for both images, plus "" for CFG
        assert not (Path(cfg.output) / "adapter" / "t5").exists() and (Path(cfg.output) / "adapter" / "dit").exists()
    assert losses[True] == losses[False]
