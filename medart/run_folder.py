"""A training run's folder: what ran, how it went, what it made.

    config.yaml command.txt env.txt data.json   what ran, exactly
    status.json                                 state, pid, step, total, eta (atomic)
    metrics.jsonl                               one row per optimiser step
    samples/step-NNNNNN/NN.png + prompts.json   fixed-seed validation images, step 0 first
    checkpoints/step-NNNNNN/                    see checkpoints.py
    adapter/dit adapter/t5 adapter/README.md    the exported LoRA and its model card
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

    def save_samples(self, step: int, images, prompts: list[str], seeds: list[int]) -> Path:
        final = self.samples / f"step-{step:06d}"
        with atomic_dir(final, prefix=f".tmp-step-{step:06d}-") as tmp:
            for i, image in enumerate(images):
                image.save(tmp / f"{i:02d}.png")
            (tmp / "prompts.json").write_text(json.dumps({"step": step, "prompts": prompts, "seeds": seeds}, indent=2))
        return final

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


def model_card(config, data_info: dict, steps: int, final_metrics: dict, plan=None,
               start_distances: dict | None = None, times: dict | None = None) -> str:
    from medart.profiles import pipeline_code

    hl = config.hldf
    if hl.enabled:
        method = (f"diffusion loss plus a colour loss (weight {hl.color_weight:g}, mode `{hl.mode}`) every N = {hl.every} "
                  f"steps on images generated in-graph with {hl.color_steps} DPM-Solver++ steps at CFG {hl.cfg}"
                  + (f", gradients through the last {hl.color_grad_steps} of them" if hl.color_grad_steps < hl.color_steps else ""))
    else:
        method = "diffusion loss only (no colour loss)"
    measured = ""
    if times and times.get("colour_steps"):
        measured = (f" Measured: the colour part of the {times['colour_steps']} colour steps took "
                    f"{times['colour_seconds']:.1f} s of the {times['seconds']:.1f} s the training steps took.")
    final = final_metrics.get("color_distance") or {}
    rows = "\n".join(f"| {g} | {start_distances.get(g, float('nan')) if start_distances else float('nan'):.4f} | {d:.4f} |"
                     for g, d in final.items())
    distances = (f"""
## Colour distance per class

Set-level colour distance (per-channel mean and std, images in [-1, 1]) between the fixed-seed
validation samples of each class's caption and that class's training images; lower is closer.

| class | step 0 | step {steps} |
|---|---:|---:|
{rows}
""" if rows else "")
    return f"""---
library_name: peft
base_model: {config.base_model}
tags: [medart, pixart-alpha, lora, medical-imaging, research-only]
---
# Med-Art LoRA adapter

**Research use only. Not a medical device; not for diagnosis, treatment or any clinical
decision.** Generated images are synthetic and may look plausible while being wrong.

- Base model: `{config.base_model}`
- Training data: {data_info.get('images', '?')} captioned images from `{data_info.get('source', '?')}`
- Method: HLDF (Med-Art, arXiv 2506.20449): LoRA rank {config.lora.rank} on the DiT{' and the T5 text encoder' if config.lora.t5 else ''},
  {method}
- Colour steps: {plan.summary() if plan is not None else '-'}{measured}
- Steps: {steps}, batch {config.batch_size}, lr {config.learning_rate:g}, resolution {config.resolution}, seed {config.seed}
- Weights: {f"an EMA of the LoRA weights (decay {config.ema_decay:g}), as the validation samples used" if config.ema_decay > 0 else "the LoRA weights of the last step"}
- Last diffusion loss: {final_metrics.get('loss', float('nan')):.4f}
{distances}
## Use without Med-Art Studio

```python
from peft import PeftModel
{pipeline_code(config.base_model)}
pipe.transformer = PeftModel.from_pretrained(pipe.transformer, "adapter/dit")
pipe.text_encoder = PeftModel.from_pretrained(pipe.text_encoder, "adapter/t5")  # if present
image = pipe("An endoscopic image of ...", guidance_scale=4.5, clean_caption=False).images[0]
```

Captions were used as written (no caption cleaning), so pass `clean_caption=False`.
"""


def adapter_path(run: str | Path) -> Path | None:
    """The run's exported adapter, else its latest checkpoint, else None."""
    run = Path(run)
    if (run / "adapter" / "dit").is_dir():
        return run / "adapter"
    steps = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    steps = [s for s in steps if (s / "manifest.json").exists() and (s / "dit").is_dir()]
    return steps[-1] if steps else None
