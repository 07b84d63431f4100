"""Settings as dataclasses whose defaults are the paper's (Med-Art, arXiv 2506.20449, §3-4).

A config is read from YAML or JSON, then overridden by command-line flags; the run folder
keeps the resolved config so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# LoRA targets in PixArt-α's DiT named by the paper (peft matches them as name suffixes).
DIT_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
    "ff.net.0.proj", "ff.net.2", "proj", "linear", "linear_1", "linear_2",
)
# T5 targets: the paper's q, k, v, o, wi, wo. PixArt's T5-XXL (v1.1) has a gated feed-forward
# whose input projections are wi_0 and wi_1 (a plain "wi" matches nothing there), so both are
# listed; on a non-gated T5 "wi" applies.
T5_TARGETS = ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo")


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float | None = None  # None: alpha = rank (scaling 1), as the paper
    dropout: float = 0.0
    t5: bool = True  # LoRA on the T5 text encoder too (paper: FID 63.10 -> 51.99 on Kvasir)
    dit_targets: tuple[str, ...] = DIT_TARGETS
    t5_targets: tuple[str, ...] = T5_TARGETS


@dataclass
class HLDFConfig:
    every: int = 500  # N: add the colour loss every N optimiser steps
    steps: int = 20  # M: DPM-Solver++ steps of the in-graph generation
    cfg: float = 4.5  # classifier-free guidance of the in-graph generation
    weight: float | None = None  # None: 1/M, as the paper
    grad_steps: int | None = None  # backpropagate through the last K solver steps; None: all M
    reduction: str = "sum"  # "sum" over channels (paper) or "mean" (authors' code)
    enabled: bool = True

    @property
    def color_weight(self) -> float:
        return 1.0 / self.steps if self.weight is None else self.weight


@dataclass
class TrainConfig:
    base_model: str = "pixart-alpha-512"
    data: str = ""  # imagefolder (metadata.jsonl/csv with file_name, text) or load_dataset id
    caption_column: str = "text"
    image_column: str = "image"
    output: str = "runs/medart"
    resolution: int | None = None  # None: the base model's own (512 px for PixArt-α 512, as the paper)
    center_crop: bool = False  # paper: random crop
    random_flip: bool = False  # paper: no flip
    max_caption_tokens: int = 120
    epochs: int = 15
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 1
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    weight_decay: float = 1e-2
    adam_8bit: bool = False  # bitsandbytes AdamW8bit on CUDA (the authors' choice) when asked
    max_grad_norm: float = 1.0
    seed: int = 42
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    gradient_checkpointing: bool = True
    lora: LoraConfig = field(default_factory=LoraConfig)
    hldf: HLDFConfig = field(default_factory=HLDFConfig)
    validation_prompts: list[str] = field(default_factory=list)  # empty: the first 4 captions
    validation_every: int = 500  # S: fixed-seed samples at step 0 and every S steps
    validation_steps: int = 20  # solver steps of the validation samples
    checkpoint_every: int = 500
    checkpoints_keep: int = 3
    resume: str | None = None  # "latest" or a checkpoint folder
    cache_latents: bool = True  # only used when no random augmentation applies
    cache_text: bool = True  # only used when T5 LoRA is off


def _build(cls, data: dict):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        sub = {"lora": LoraConfig, "hldf": HLDFConfig}.get(name) if cls is TrainConfig else None
        if sub and isinstance(value, dict):
            value = _build(sub, value)
        elif isinstance(value, list) and name.endswith("targets"):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file (optional), then `overrides` (dotted keys allowed)."""
    data: dict = {}
    if path:
        text = Path(path).read_text()
        data = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
    for key, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return _build(TrainConfig, data)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_config(config, path: Path) -> None:
    from medart.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
