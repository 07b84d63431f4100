"""Small helpers shared by several test files."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

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


def wait_for(predicate, timeout=300, poll=0.2):
    """Poll until `predicate()` is truthy (the deadline only guards against a hang)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition never became true")


def make_tuned_run(run: Path, data: str = "", seed: int = 0) -> Path:
    """A run folder on the tiny base with a DiT + T5 adapter whose B matrices are non-zero,
    so that tuned images differ from base ones (no training needed)."""
    from medart import lora
    from medart.config import LoraConfig
    from medart.profiles import load_base

    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"base_model": "tiny", "data": str(data)}))
    base = load_base("tiny", device="cpu")
    lora.attach_base(base, LoraConfig(rank=4))
    g = torch.Generator().manual_seed(seed)
    for model in (base.transformer, base.text_encoder):
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data = torch.randn(p.shape, generator=g) * 0.5
    lora.save(base.transformer, run / "adapter" / "dit")
    lora.save(base.text_encoder, run / "adapter" / "t5")
    return run


def add_images(ws, labels, split: str = "train") -> list[int]:
    """One distinct 16x16 image per entry of `labels` (its class label) in workspace `ws`; the new ids."""
    from medart.workspace import NewImage

    rows = []
    for k, label in enumerate(labels, start=ws.count()):  # a later call adds new pixels, not duplicates
        sha, size, _ = ws.store_image(Image.new("RGB", (16, 16), (k % 256, k // 256, 99)))
        rows.append(NewImage(sha, f"img{k}.png", 16, 16, "RGB", size, "test", label, split))
    return ws.add_images(rows)
