"""Attach, save, load and toggle the LoRA adapters on PixArt-α's DiT and T5, with peft.

Adapters are saved in peft's own format (`adapter_config.json` + `adapter_model.safetensors`
with `base_model.model.` keys), one folder per network:

    adapter/dit/   adapter/t5/

so that anyone can use them without this package:

    pipe.transformer = PeftModel.from_pretrained(pipe.transformer, "adapter/dit")
    pipe.text_encoder = PeftModel.from_pretrained(pipe.text_encoder, "adapter/t5")
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file

from medart.config import LoraConfig

PREFIX = "base_model.model."
WEIGHTS = "adapter_model.safetensors"


def peft_config(config: LoraConfig, targets: tuple[str, ...], base_name: str = "") -> PeftLoraConfig:
    return PeftLoraConfig(
        r=config.rank,
        lora_alpha=config.alpha if config.alpha is not None else config.rank,
        lora_dropout=config.dropout,
        init_lora_weights="gaussian",
        target_modules=list(targets),
        base_model_name_or_path=base_name or None,
    )


def attach(model: torch.nn.Module, config: LoraConfig, targets: tuple[str, ...], base_name: str = "") -> list:
    """Inject a trainable LoRA into `model` in place; returns the LoRA parameters (fp32)."""
    inject_adapter_in_model(peft_config(config, targets, base_name), model)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()  # train adapters in fp32 even over a bf16 base
        p.requires_grad_(True)
    model.peft_config_medart = peft_config(config, targets, base_name)
    return params


def attach_base(base, config: LoraConfig) -> dict[str, list]:
    """LoRA on the DiT, and on T5 when `config.t5`; returns {"dit": params, "t5": params}."""
    params = {"dit": attach(base.transformer, config, config.dit_targets, base.name)}
    if config.t5:
        params["t5"] = attach(base.text_encoder, config, config.t5_targets, base.name)
    return params


def save(model: torch.nn.Module, folder: str | Path) -> None:
    """Write `model`'s adapter in peft's format (config + safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.peft_config_medart.save_pretrained(folder)
    weights = get_peft_model_state_dict(model, save_embedding_layers=False)
    state = {PREFIX + k: v.detach().to("cpu", torch.float32).contiguous() for k, v in weights.items()}
    save_file(state, folder / WEIGHTS, metadata={"format": "pt"})


class AdapterError(ValueError):
    """An adapter folder that cannot be used (damaged, replaced, or for another model): one line
    that names the folder by its last parts only and says what to do."""

    def __init__(self, folder: Path, problem: str):
        super().__init__(f"the adapter in {where(folder)} cannot be used: {problem}. Was a file replaced or "
                         "damaged? Choose another run, or copy its adapter folder again from where it was trained")


def where(folder: str | Path) -> str:
    """A folder as messages name it: its last three parts (`<run>/adapter/dit`), never the
    absolute path of the machine it is on."""
    return "/".join(Path(folder).parts[-3:])


def load(model: torch.nn.Module, folder: str | Path) -> None:
    """Inject the adapter saved in `folder` into `model` (in place, weights exact); an
    AdapterError when its files are unreadable or do not fit `model` or each other."""
    folder = Path(folder)
    try:
        config = PeftLoraConfig.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as e:
        raise AdapterError(folder, "its adapter_config.json is missing or not valid") from e
    try:
        state = {k.removeprefix(PREFIX): v for k, v in load_file(folder / WEIGHTS).items()}
    except Exception as e:  # safetensors raises its own SafetensorError for a damaged file
        raise AdapterError(folder, f"its {WEIGHTS} cannot be read") from e
    try:
        inject_adapter_in_model(config, model)
        result = set_peft_model_state_dict(model, state)
    except (RuntimeError, ValueError, KeyError) as e:
        raise AdapterError(folder, "its weights do not fit its adapter_config.json or this base model") from e
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise AdapterError(folder, f"it does not fit this base model ({len(missing)} unmatched weights)")
    model.peft_config_medart = config
    model.requires_grad_(False)


def adapter_dirs(path: str | Path) -> dict[str, Path]:
    """{"dit": ..., "t5": ...} adapter folders under a run folder, an adapter/ folder or a checkpoint."""
    path = Path(path)
    for root in (path / "adapter", path):
        if (root / "dit" / WEIGHTS).exists():
            found = {"dit": root / "dit"}
            if (root / "t5" / WEIGHTS).exists():
                found["t5"] = root / "t5"
            return found
    if (path / WEIGHTS).exists():
        return {"dit": path}
    raise FileNotFoundError(
        f"No adapter found in {where(path)}: expected adapter/dit/{WEIGHTS} (a run folder) or dit/{WEIGHTS}."
    )


def load_base_adapters(base, path: str | Path) -> dict[str, Path]:
    """Load a run's DiT (and T5, when present) adapters onto a loaded base model."""
    dirs = adapter_dirs(path)
    load(base.transformer, dirs["dit"])
    if "t5" in dirs:
        load(base.text_encoder, dirs["t5"])
    return dirs


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_scale(model: torch.nn.Module, scale: float) -> None:
    """LoRA strength: 0 gives the base model exactly (adapters off), 1 the tuned one; peft's own
    `LoraLayer.set_scale` sets each adapter's scaling to scale x alpha / r (one model, no copies)."""
    for layer in lora_layers(model):
        layer.enable_adapters(scale != 0.0)
        for name in layer.active_adapters:
            layer.set_scale(name, scale)
