"""Every training setting, once: dataclasses whose defaults are the paper's (Med-Art, arXiv 2506.20449, §3-4).

`TrainConfig` (with its `LoraConfig` and `HLDFConfig`) is the one definition of a training
setting: its default, type and help text (each field's `metadata`). The `train` command's
flags are generated from it (`medart.cli.flags`), the Train tab's form names its fields, and
a training job is the run's `config.yaml`, this dataclass written out. A config is read from
YAML or JSON, then overridden by flags; the run folder keeps the resolved config so a run can
be repeated exactly. Adding a setting is adding a field here (with its help text and, where
the CLI has a shorter name for it, its `flag`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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

HLDF_MODES = ("balanced", "paper")
REPORT_TO = ("none", "tensorboard", "wandb")


def setting(default=dataclasses.MISSING, help: str = "", *, flag: str | None = None,
            choices: tuple[str, ...] | None = None, factory=None):
    """A dataclass field that is a training setting: its default, its help text, and where the
    command line's name or choices differ from the generated ones, `flag` and `choices`."""
    metadata = {"help": help}
    if flag:
        metadata["flag"] = flag
    if choices:
        metadata["choices"] = choices
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class LoraConfig:
    rank: int = setting(8, "LoRA rank: how many directions each adapted layer can learn; higher fits more "
                                 "and overfits sooner (paper: 8)", flag="--rank")
    alpha: float | None = setting(None, "LoRA alpha; empty: alpha = rank (scaling 1), as the paper", flag="--lora-alpha")
    dropout: float = setting(0.0, "LoRA dropout")
    t5: bool = setting(True, "LoRA on the T5 text encoder too (paper: FID 63.10 -> 51.99 on Kvasir); "
                             "--no-t5-lora: on the DiT only", flag="--t5-lora")
    dit_targets: tuple[str, ...] = setting(DIT_TARGETS, "DiT modules that get LoRA (peft name suffixes; the paper's)")
    t5_targets: tuple[str, ...] = setting(T5_TARGETS, "T5 modules that get LoRA (q, k, v, o, wi, wo; wi_0 and wi_1 "
                                                      "of a gated T5)")


@dataclass
class HLDFConfig:
    """How the colour loss enters training.

    `mode: paper` is the paper's exact formulation: every N steps the batch's own images are
    generated from their captions (gradients through all M solver steps) and compared with
    those images (a random crop each), the loss weighted 1/M, its gradient added to the
    diffusion gradient and the sum clipped. `mode: balanced`, the default, was chosen by the
    per-class ablation in benchmarks/hldf_ablation.py (table in benchmarks/RESULTS.md); it
    changes these, each of which can also be set on its own:

    - `target: group`: an image generated from a class's caption is compared with the average
      statistics of that class's training images (the class is the `label` column when the
      data has one, else the caption), not with one random crop;
    - `coverage: rotate`: colour steps take the classes in turn, one class each, so every
      class gets the same number of colour steps whatever the batch order (`groups`: every
      class in each colour step, up to `max_groups`);
    - `per_class: 2`: a colour step generates two images of its class (from two of the class's
      captions) and compares the pair's average statistics with the class's, so that a correct
      set is not pushed for the spread of its single images;
    - `steps: 10`, `grad_steps: 2`: the in-graph images take M = 10 solver steps and gradients
      flow through the last 2 (the first M - 2 run without autograd, as in DRaFT-K), which makes
      a colour step several times cheaper, so colour steps can come often;
    - `weight: 1.0` instead of 1/M (gradient clipping bounds each colour step).

    Beside HLDF, the default run keeps an EMA of the LoRA weights (`TrainConfig.ema_decay`);
    the paper's configs turn it off.

    `balance: separate` clips the colour and the diffusion gradients each on its own before
    adding them (and clipping the sum, as always); the paper clips only the sum (`joint`). The
    ablation found no difference.

    `every` = None lets the schedule rule choose N (`medart.hldf_plan`); a number always wins.
    """

    mode: str = setting("balanced", "balanced: classes in turn, two images of a class against the class's colour "
                                    "statistics, M = 10 with gradients through the last 2, weight 1; paper: the "
                                    "paper's exact formulation",
                        flag="--hldf-mode", choices=HLDF_MODES)
    every: int | None = setting(None, "N: a colour step every N optimiser steps; empty: the schedule rule (about "
                                      "100 colour steps, N between 5 and the paper's 500)", flag="--hldf-every")
    steps: int | None = setting(None, "M: DPM-Solver++ steps of the in-graph image; empty: the mode's (paper: 20; "
                                      "balanced: 10)", flag="--hldf-steps")
    cfg: float = setting(4.5, "classifier-free guidance (CFG) of the in-graph image: how strongly it follows "
                                "its caption (paper: 4.5)", flag="--cfg")
    weight: float | None = setting(None, "weight of the colour loss; empty: the mode's (paper: 1/M; balanced: 1.0)",
                                   flag="--color-weight")
    grad_steps: int | None = setting(None, "K: backpropagate through the last K solver steps only; empty: the "
                                           "mode's (paper: M; balanced: 2)", flag="--hldf-grad-steps")
    reduction: str = setting("sum", "the colour loss over channels: sum (the paper's formula) or mean (the authors' "
                                    "code)", choices=("sum", "mean"))
    enabled: bool = setting(True, "the colour loss on; --no-hldf: plain LoRA fine-tuning", flag="--hldf")
    target: str | None = setting(None, "what a generated image is compared with: image (the paper) or group (its "
                                       "class's average); empty: the mode's", choices=("image", "group"))
    coverage: str | None = setting(None, "which captions a colour step generates: batch (the paper), rotate (one "
                                         "class in turn) or groups (every class); empty: the mode's",
                                   choices=("batch", "rotate", "groups"))
    balance: str | None = setting(None, "joint: clip the sum of both gradients (the paper); separate: clip each "
                                        "first; empty: the mode's", choices=("joint", "separate"))
    max_groups: int = setting(8, "classes generated per colour step with coverage groups")
    per_class: int | None = setting(None, "images generated per class in a colour step (target group), compared "
                                          "as a set with the class's statistics; empty: the mode's (balanced: 2)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, allowed = getattr(self, f.name), f.metadata.get("choices")
            if allowed and value is not None and value not in allowed:
                raise ValueError(f"hldf.{f.name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"hldf.every must be at least 1 (or empty for the schedule rule), not {self.every}")
        for name in ("steps", "grad_steps", "per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"hldf.{name} must be at least 1 (or empty for the mode's), not {value}")

    def _mode_default(self, name: str):
        value = getattr(self, name)
        return MODE_SETTINGS[self.mode][name] if value is None else value

    @property
    def color_steps(self) -> int:
        """M, the solver steps of the in-graph images."""
        return self._mode_default("steps")

    @property
    def color_per_class(self) -> int:
        return self._mode_default("per_class")

    @property
    def color_weight(self) -> float:
        weight = self._mode_default("weight")
        return 1.0 / self.color_steps if weight is None else weight

    @property
    def color_grad_steps(self) -> int:
        k = self._mode_default("grad_steps")
        return self.color_steps if k is None else min(k, self.color_steps)

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
    "paper": {"target": "image", "coverage": "batch", "balance": "joint", "weight": None, "grad_steps": None,
              "steps": 20, "per_class": 1},
    "balanced": {"target": "group", "coverage": "rotate", "balance": "joint", "weight": 1.0, "grad_steps": 2,
                 "steps": 10, "per_class": 2},
}


@dataclass
class TrainConfig:
    base_model: str = setting("", "profile (pixart-alpha-512, pixart-sigma-512, tiny, tiny-sigma, small), local "
                                  "folder or hub id; empty: MEDART_BASE_MODEL if set, else pixart-alpha-512 on a "
                                  "machine with CUDA and tiny elsewhere")
    data: str = setting("", "imagefolder with metadata.jsonl/csv (file_name, text), or a load_dataset id")
    caption_column: str = setting("text", "the data's caption column")
    label_column: str = setting("label", "the data's class column, optional (HLDF's colour groups, per-class curves)")
    image_column: str = setting("image", "the data's image column")
    output: str = setting("runs/medart", "run folder")
    resolution: int | None = setting(None, "pixels; empty: the base model's own (512 for PixArt-α 512, as the paper)")
    center_crop: bool = setting(False, "crop the centre instead of a random crop (paper: random)")
    random_flip: bool = setting(False, "flip images at random (paper: no)")
    buckets: bool = setting(False, "aspect-ratio buckets: each image is resized to cover the PixArt-α bin nearest "
                                   "its aspect ratio (about resolution² pixels) and cropped to it, each batch from "
                                   "one bucket; off: square crops (the paper)")
    max_caption_tokens: int | None = setting(None, "captions longer than this many T5 tokens are refused; empty: "
                                                   "all the base model reads (PixArt-α 120, PixArt-Σ 300)")
    epochs: int = setting(15, "passes over the data (paper: 15)")
    max_steps: int | None = setting(None, "optimiser steps; set, it overrides epochs")
    batch_size: int = setting(1, "images per step and process (paper: 1)")
    learning_rate: float = setting(1e-4, "AdamW learning rate (paper: 1e-4)", flag="--lr")
    lr_scheduler: str = setting("constant", "diffusers' learning-rate schedule (constant, linear, cosine, ...)")
    lr_warmup_steps: int = setting(0, "warm-up steps of the schedule")
    weight_decay: float = setting(1e-2, "AdamW weight decay (paper: 1e-2)")
    adam_8bit: bool = setting(False, "8-bit AdamW (bitsandbytes): the optimiser's state in a quarter of the "
                                      "memory, CUDA only (the authors' choice)")
    max_grad_norm: float = setting(1.0, "gradient clipping (paper: 1.0)")
    ema_decay: float = setting(0.99, "> 0: the validation samples and the exported adapter use an EMA of the LoRA "
                                     "weights with this decay; 0: the last step's weights (the paper)")
    seed: int = setting(42, "seed of LoRA's initialisation, noise, timesteps and batches (paper: 42)")
    mixed_precision: str = setting("auto", "auto: bf16 on CUDA, fp32 on CPU", choices=("auto", "no", "fp16", "bf16"))
    gradient_checkpointing: bool = setting(True, "recompute activations in backward (needed for colour steps at "
                                                 "512 px)")
    lora: LoraConfig = setting(help="LoRA", factory=LoraConfig)
    hldf: HLDFConfig = setting(help="HLDF's colour loss", factory=HLDFConfig)
    validation_prompts: list[str] = setting(help="a validation prompt (repeatable); none: one caption per class, "
                                                 "up to 8", flag="--validation-prompt", factory=list)
    validation_every: int | None = setting(None, "S: samples at step 0 and every S steps; empty: about 10 per run, "
                                                 "at most 500 apart")
    validation_steps: int = setting(20, "solver steps of the validation samples")
    checkpoint_every: int = setting(500, "a checkpoint every this many steps (and at the end)")
    checkpoints_keep: int = setting(3, "how many of the newest checkpoints to keep")
    resume: str | None = setting(None, "'latest' or a checkpoint folder")
    cache_latents: bool = setting(True, "cache VAE latents (only where no random augmentation applies)")
    cache_text: bool = setting(True, "cache T5 embeddings (only where T5 has no LoRA)")
    caption_dropout: float = setting(0.0, "probability that a training example's caption is replaced by the empty "
                                          "caption (the unconditional prompt of CFG) on a diffusion step; colour "
                                          "steps keep their captions (paper: 0)")
    report_to: str = setting("none", "experiment tracker of the run's losses, gradient norms, learning rate, "
                                     "per-class colour distances and validation images: tensorboard (files in "
                                     "RUN/tensorboard), wandb (offline unless WANDB_MODE=online) or none",
                             choices=REPORT_TO)

    def __post_init__(self):
        for name in ("checkpoint_every", "validation_every", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout is a probability between 0 and 1, not {self.caption_dropout}")
        if self.report_to not in REPORT_TO:
            raise ValueError(f"report_to must be one of {', '.join(REPORT_TO)}, not {self.report_to!r}")


@dataclass(frozen=True)
class Setting:
    """One training setting as the CLI and the Train tab see it: its dotted path in TrainConfig
    (`hldf.every`), its type (Optional removed; `optional` says whether empty is allowed), its
    default and metadata (help, flag, choices)."""

    path: str
    type: object
    optional: bool
    default: object
    metadata: typing.Mapping

    @property
    def help(self) -> str:
        return self.metadata.get("help", "")

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.metadata.get("choices")

    @property
    def flag(self) -> str:
        """The command-line flag: `metadata["flag"]`, else the path with - for _ and . (`--hldf-reduction`)."""
        return self.metadata.get("flag") or "--" + self.path.replace(".", "-").replace("_", "-")


def settings(cls=TrainConfig, prefix: str = "") -> Iterator[Setting]:
    """Every setting of `cls`, nested dataclasses (lora, hldf) unfolded, in definition order."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from settings(kind, f"{prefix}{f.name}.")
            continue
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1
        yield Setting(prefix + f.name, args[0] if optional else kind, optional, getattr(defaults, f.name), f.metadata)


def setting_named(path: str) -> Setting:
    """The Setting at dotted `path`; a ValueError naming the known ones otherwise."""
    for s in settings():
        if s.path == path:
            return s
    raise ValueError(f"unknown training setting {path!r}")


def _build(cls, data: dict):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = _build(kind, value)
        elif isinstance(value, list) and typing.get_origin(kind) is tuple:
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
    if not data.get("base_model"):  # the README's default: PixArt-α with CUDA, tiny elsewhere
        from medart.profiles import default_base_model

        data["base_model"] = default_base_model()
    return _build(TrainConfig, data)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_config(config, path: Path, comment: str = "") -> None:
    """Write the resolved config as YAML; `comment` (e.g. the HLDF plan) goes on top as # lines."""
    from medart.fileio import atomic_write_text

    head = "".join(f"# {line}\n" for line in comment.splitlines())
    atomic_write_text(path, head + yaml.safe_dump(to_dict(config), sort_keys=False))
