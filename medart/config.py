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

from medart.constants import MAX_CAPTION_TOKENS

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


HLDF_MODES = ("balanced", "paper")


@dataclass
class HLDFConfig:
    """How the colour loss enters training.

    `mode: paper` is the paper's exact formulation: every N steps the batch's own images are
    generated from their captions (gradients through all M solver steps) and compared with
    those images (a random crop each), the loss weighted 1/M, its gradient added to the
    diffusion gradient and the sum clipped. `mode: balanced`, the default, was chosen by the
    per-class ablation in benchmarks/hldf_ablation.py (table in benchmarks/RESULTS.md); it
    changes four things, each of which can also be set on its own:

    - `target: group`: an image generated from a class's caption is compared with the average
      statistics of that class's training images (the class is the `label` column when the
      data has one, else the caption), not with one random crop;
    - `coverage: rotate`: colour steps take the classes in turn, one class each, so every
      class gets the same number of colour steps whatever the batch order (`groups`: every
      class in each colour step, up to `max_groups`);
    - `grad_steps: 2`: gradients flow through the last 2 of the M solver steps (the first
      M - 2 run without autograd, as in DRaFT-K), which makes a colour step several times
      cheaper, so colour steps can come often;
    - `weight: 1.0` instead of 1/M (gradient clipping bounds each colour step).

    `balance: separate` clips the colour and the diffusion gradients each on its own before
    adding them (and clipping the sum, as always); the paper clips only the sum (`joint`). The
    ablation found no difference.

    `every` = None lets the schedule rule choose N (`medart.hldf_plan`); a number always wins.
    """

    mode: str = "balanced"  # "balanced" or "paper"; see the docstring
    every: int | None = None  # N: a colour step every N optimiser steps; None: the schedule rule
    steps: int = 20  # M: DPM-Solver++ steps of the in-graph generation
    cfg: float = 4.5  # classifier-free guidance of the in-graph generation
    weight: float | None = None  # None: the mode's (paper: 1/M; balanced: 1.0)
    grad_steps: int | None = None  # K: backpropagate through the last K solver steps; None: the mode's (paper: M)
    reduction: str = "sum"  # "sum" over channels (paper) or "mean" (authors' code)
    enabled: bool = True
    target: str | None = None  # "image" (paper) or "group"; None: the mode's
    coverage: str | None = None  # "batch" (paper), "rotate" or "groups"; None: the mode's
    balance: str | None = None  # "joint" (clip the sum, the paper) or "separate"; None: the mode's
    max_groups: int = 8  # classes generated per colour step with coverage "groups"

    def __post_init__(self):
        if self.mode not in HLDF_MODES:
            raise ValueError(f"hldf.mode must be one of {', '.join(HLDF_MODES)}, not {self.mode!r}")
        for name, allowed in (("target", ("image", "group")), ("coverage", ("batch", "rotate", "groups")),
                              ("balance", ("joint", "separate"))):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"hldf.{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"hldf.every must be at least 1 (or empty for the schedule rule), not {self.every}")
        if self.grad_steps is not None and self.grad_steps < 1:
            raise ValueError(f"hldf.grad_steps must be at least 1 (or empty for the mode's), not {self.grad_steps}")

    def _mode_default(self, name: str):
        value = getattr(self, name)
        return MODE_SETTINGS[self.mode][name] if value is None else value

    @property
    def color_weight(self) -> float:
        weight = self._mode_default("weight")
        return 1.0 / self.steps if weight is None else weight

    @property
    def color_grad_steps(self) -> int:
        k = self._mode_default("grad_steps")
        return self.steps if k is None else min(k, self.steps)

    @property
    def color_target(self) -> str:
        return self._mode_default("target")

    @property
    def color_coverage(self) -> str:
        return self._mode_default("coverage")

    @property
    def color_balance(self) -> str:
        return self._mode_default("balance")


# What each mode means for the settings left empty (None) in HLDFConfig (None here: 1/M, all M).
MODE_SETTINGS = {
    "paper": {"target": "image", "coverage": "batch", "balance": "joint", "weight": None, "grad_steps": None},
    "balanced": {"target": "group", "coverage": "rotate", "balance": "joint", "weight": 1.0, "grad_steps": 2},
}


@dataclass
class TrainConfig:
    base_model: str = "pixart-alpha-512"
    data: str = ""  # imagefolder (metadata.jsonl/csv with file_name, text) or load_dataset id
    caption_column: str = "text"
    label_column: str = "label"  # optional: the class of each image (HLDF's colour groups, per-class curves)
    image_column: str = "image"
    output: str = "runs/medart"
    resolution: int | None = None  # None: the base model's own (512 px for PixArt-α 512, as the paper)
    center_crop: bool = False  # paper: random crop
    random_flip: bool = False  # paper: no flip
    max_caption_tokens: int = MAX_CAPTION_TOKENS
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
    validation_prompts: list[str] = field(default_factory=list)  # empty: one caption per class, up to 4
    validation_every: int | None = None  # S: samples at step 0 and every S steps; None: ~10 per run, S <= 500
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


def save_config(config, path: Path, comment: str = "") -> None:
    """Write the resolved config as YAML; `comment` (e.g. the HLDF plan) goes on top as # lines."""
    from medart.fileio import atomic_write_text

    head = "".join(f"# {line}\n" for line in comment.splitlines())
    atomic_write_text(path, head + yaml.safe_dump(to_dict(config), sort_keys=False))
