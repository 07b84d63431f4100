"""A training run's folder: what ran, how it went, what it made.

    config.yaml command.txt env.txt data.json   what ran, exactly
    status.json                                 state, pid, step, total, eta (atomic)
    metrics.jsonl                               one row per optimiser step
    samples/step-NNNNNN/NN.png + prompts.json   fixed-seed validation images, step 0 first
    checkpoints/step-NNNNNN/                    see checkpoints.py
    adapter/dit adapter/t5 adapter/README.md    the exported LoRA and its model card (medart.model_card)
    tensorboard/ | wandb/ + tracker.json        the experiment tracker's files (medart.tracking)
    eval/metrics.json eval/report.md            the run's evaluation (medart.evaluation)
    log.txt
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from medart.config import save_config
from medart.fileio import append_jsonl, atomic_dir, atomic_write_json, atomic_write_text, read_jsonl

PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "datasets", "numpy", "pillow")


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.samples = self.path / "samples"
        self.checkpoints = self.path / "checkpoints"
        self.adapter = self.path / "adapter"
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"

    def start(self, config, command: str, data_info: dict, plan=None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.path / "config.yaml", comment=plan.summary() if plan is not None else "")
        atomic_write_text(self.path / "command.txt", command + "\n")
        atomic_write_text(self.path / "env.txt", environment())
        atomic_write_json(self.path / "data.json", data_info)

    def status(self, state: str, **fields) -> None:
        current = self.read_status()
        current.update(fields, state=state, pid=os.getpid(), updated=time.time())
        atomic_write_json(self.status_path, current)

    def read_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def log_metrics(self, row: dict) -> None:
        append_jsonl(self.metrics_path, row)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, step: int) -> None:
        """Drop rows after `step` (a resumed run recomputes them)."""
        rows = [r for r in self.metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def save_samples(self, step: int, images, prompts: list[str], seeds: list[int],
                     classes: list[str | None] | None = None) -> Path:
        """One step's validation images (00.png, 01.png, ...) and prompts.json: each image's
        prompt, seed and class (None for a prompt that is no class's caption)."""
        final = self.samples / f"step-{step:06d}"
        record = {"step": step, "prompts": prompts, "seeds": seeds, "classes": classes or [None] * len(prompts)}
        with atomic_dir(final, prefix=f".tmp-step-{step:06d}-") as tmp:
            for i, image in enumerate(images):
                image.save(tmp / f"{i:02d}.png")
            (tmp / "prompts.json").write_text(json.dumps(record, indent=2))
        return final

    def sample_labels(self, step: int) -> list[str]:
        """What each sample of a step shows, in file order: its class, else its prompt's start."""
        try:
            record = json.loads((self.samples / f"step-{step:06d}" / "prompts.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        prompts = record.get("prompts") or []
        classes = record.get("classes") or [None] * len(prompts)
        return [c or (p[:40].rstrip() + ("…" if len(p) > 40 else "")) for p, c in zip(prompts, classes)]

    def sample_steps(self) -> list[int]:
        return sorted(int(p.name.split("-")[1]) for p in self.samples.glob("step-*") if p.is_dir())


def run_config(path: str | Path) -> dict:
    """The resolved training config of a run, found from the run folder or from a checkpoint
    or adapter folder inside it; {} when none is recorded."""
    path = Path(path)
    for folder in (path, *path.parents[:3]):
        cfg = folder / "config.yaml"
        if cfg.is_file():
            return yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    return {}


def environment() -> str:
    lines = [f"python {sys.version.split()[0]}", f"platform {platform.platform()}"]
    for name in PACKAGES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            lines.append(f"cuda {torch.version.cuda} {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}")
    except Exception:
        pass
    return "\n".join(lines) + "\n"


def usage_snippet(config, repo_id: str | None = None, base: str | None = None) -> str:
    """The model card's python code block: the run's adapters on its own base model in a stock
    diffusers pipeline (PixArt-α or PixArt-Σ, as the base is), at the size it trained at; the
    adapters from the hub repository `repo_id`, else from `adapter/` (run in the run folder);
    `base`: the folder that names a base without a hub id (default: where it loads from here)."""
    from medart.profiles import pipeline_code

    size = f"height={config.resolution}, width={config.resolution}, " if config.resolution else ""
    where = (lambda net: f'"{repo_id}", subfolder="adapter/{net}"') if repo_id else (lambda net: f'"adapter/{net}"')
    t5 = (f'pipe.text_encoder = PeftModel.from_pretrained(pipe.text_encoder, {where("t5")})\n'
          if config.lora.t5 else "")
    return f"""```python
import torch
from peft import PeftModel
{pipeline_code(config.base_model, base)}

device = "cuda" if torch.cuda.is_available() else "cpu"
pipe.transformer = PeftModel.from_pretrained(pipe.transformer, {where("dit")})
{t5}pipe.to(device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
# at the size it trained at: resolution binning would snap it to one of PixArt's preset sizes
image = pipe("An endoscopic image of ...", {size}use_resolution_binning=False,
             guidance_scale=4.5, clean_caption=False).images[0]
image.save("generated.png")
```"""


def adapter_path(run: str | Path) -> Path | None:
    """The run's exported adapter, else its latest checkpoint, else None."""
    run = Path(run)
    if (run / "adapter" / "dit").is_dir():
        return run / "adapter"
    steps = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    steps = [s for s in steps if (s / "manifest.json").exists() and (s / "dit").is_dir()]
    return steps[-1] if steps else None
