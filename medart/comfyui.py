"""A run's LoRA as one `.safetensors` file that ComfyUI's LoRA loader applies to PixArt-α.

The run keeps its adapters in peft's format, one folder per network (`medart.lora`). ComfyUI
(`comfy/sd.py` `load_lora_for_models`, used by the LoraLoader node) builds a map from LoRA key
names to its own weights and loads each adapter whose name is in that map; this module writes
the names that map resolves for PixArt:

- DiT: `comfy/lora.py` `model_lora_keys_unet`, for a `comfy.model_base.PixArt`, accepts
  `transformer.<diffusers module>` (and `base_model.model.<module>`) for every weight that
  `comfy/utils.py` `pixart_to_diffusers` maps onto ComfyUI's own PixArt modules. That map knows,
  in each of `transformer_blocks.N`: `attn1.to_q/to_k/to_v` (slices of the fused `attn.qkv`),
  `attn2.to_q` (`cross_attn.q_linear`), `attn2.to_k/to_v` (slices of `cross_attn.kv_linear`),
  `attn1.to_out.0`, `attn2.to_out.0`, `ff.net.0.proj`, `ff.net.2`; and outside the blocks:
  `pos_embed.proj`, `caption_projection.linear_1/2`, `adaln_single.linear`,
  `adaln_single.emb.{timestep,resolution,aspect_ratio}_embedder.linear_1/2` and `proj_out`
  (`COMFYUI_DIT_MODULES`). A DiT adapter on any other module is refused: ComfyUI would skip it
  with a "lora key not loaded" warning and the image would silently differ.
- T5: `comfy/lora.py` `model_lora_keys_clip` accepts `text_encoders.<weight name without
  .weight>` for every weight of the text encoder, and ComfyUI's PixArt text encoder
  (`comfy/text_encoders/pixart_t5.py` `PixArtT5XXL`, `comfy/text_encoders/t5.py`) holds T5-XXL
  under `t5xxl.transformer.` with transformers' module names, so T5's `encoder.block.N.layer.0
  .SelfAttention.q` is `text_encoders.t5xxl.transformer.encoder.block.N.layer.0.SelfAttention.q`.
- Each module (`comfy/weight_adapter/lora.py` `LoRAAdapter`): `<key>.lora_A.weight`,
  `<key>.lora_B.weight` and a scalar `<key>.alpha`; ComfyUI adds strength x alpha / rank x
  B @ A to the weight, rank being the rows of A. peft scales by lora_alpha / r (lora_alpha /
  sqrt(r) when rank-stabilised), so `alpha` is written as that scale x r: lora_alpha itself for
  the runs this package trains.

The file's metadata names the base model and which weights it holds (the EMA of the LoRA
weights or those of the last step, as the run's `ema_decay` says; the run's adapter and its
checkpoints' adapters hold the same kind).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft.utils.other import get_pattern_key
from safetensors.torch import load_file, save

from medart import lora
from medart.fileio import atomic_write_bytes
from medart.run_folder import adapter_path, run_config

DIT_PREFIX = "transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
PREFIXES = {"dit": DIT_PREFIX, "t5": T5_PREFIX}

# The diffusers module names of PixArt's DiT that ComfyUI's `pixart_to_diffusers` map holds.
COMFYUI_DIT_MODULES = re.compile(
    r"transformer_blocks\.\d+\.(attn1\.to_[qkv]|attn2\.to_[qkv]|attn[12]\.to_out\.0|ff\.net\.0\.proj|ff\.net\.2)"
    r"|pos_embed\.proj|caption_projection\.linear_[12]|adaln_single\.linear"
    r"|adaln_single\.emb\.(timestep|resolution|aspect_ratio)_embedder\.linear_[12]|proj_out"
)


class ComfyExportError(ValueError):
    """The adapter cannot be written for ComfyUI; the message says why and what to do."""


def _pattern_value(patterns: dict, module: str, default):
    """A module's value of peft's rank_pattern / alpha_pattern, as peft itself looks it up."""
    patterns = patterns or {}
    return patterns.get(get_pattern_key(patterns.keys(), module), default)


def _modules(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{module name: {"lora_A": A, "lora_B": B}} of one peft adapter folder."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / lora.WEIGHTS).items():
        name = key.removeprefix(lora.PREFIX)
        match = re.fullmatch(r"(.+)\.(lora_A|lora_B)\.weight", name)
        if match is None:
            raise ComfyExportError(
                f"{folder / lora.WEIGHTS} holds {key!r}, which is not a LoRA A or B matrix; ComfyUI's LoRA "
                "loader takes plain LoRA adapters only (no DoRA, no trained biases or embeddings)."
            )
        modules.setdefault(match.group(1), {})[match.group(2)] = value
    incomplete = [m for m, ab in modules.items() if len(ab) != 2]
    if incomplete:
        raise ComfyExportError(f"{folder / lora.WEIGHTS} lacks the A or B matrix of {incomplete[0]}; re-export the run.")
    return modules


def network_state(folder: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """One network's adapter (a peft folder) in ComfyUI's names, with a float `alpha` per module."""
    folder = Path(folder)
    config = PeftLoraConfig.from_pretrained(folder)
    if getattr(config, "use_dora", False):
        raise ComfyExportError(f"The adapter in {folder} is a DoRA adapter; this export writes plain LoRA only.")
    state = {}
    for module, ab in sorted(_modules(folder).items()):
        if prefix == DIT_PREFIX and not COMFYUI_DIT_MODULES.fullmatch(module):
            raise ComfyExportError(
                f"The DiT adapter in {folder} trains {module}, which ComfyUI's PixArt LoRA loader does not map "
                "(it knows the attention, feed-forward, patch, caption, timestep and output projections); "
                "ComfyUI would skip it. Train with the default lora.dit_targets to export for ComfyUI."
            )
        a, b = ab["lora_A"], ab["lora_B"]
        rank = a.shape[0]
        r = _pattern_value(config.rank_pattern, module, config.r)
        alpha = _pattern_value(config.alpha_pattern, module, config.lora_alpha)
        if r != rank:
            raise ComfyExportError(f"{folder}: {module} has rank {rank} but its adapter_config.json says {r}.")
        scale = alpha / math.sqrt(r) if config.use_rslora else alpha / r
        key = prefix + module
        state[f"{key}.lora_A.weight"] = a.to(torch.float32).contiguous()
        state[f"{key}.lora_B.weight"] = b.to(torch.float32).contiguous()
        state[f"{key}.alpha"] = torch.tensor(scale * rank, dtype=torch.float32)
    return state


def _weights(config: dict) -> str:
    decay = config.get("ema_decay")
    if decay is None:
        return "not recorded"
    return f"EMA of the LoRA weights (decay {decay:g})" if decay > 0 else "LoRA weights of the last step"


def _base_source(base_model: str) -> str:
    """The hub id behind a profile name (a folder or hub id stays as it is)."""
    from medart.profiles import PROFILES

    profile = PROFILES.get(base_model)
    if profile is None:
        return base_model
    return profile.source or profile.description


def _origin(dit: Path) -> tuple[str, str]:
    """(where the adapter was read, relative to its run; its step, "" when not recorded)."""
    holder = dit.parent
    root = next((f for f in (holder, *holder.parents[:2]) if (f / "config.yaml").is_file()), holder.parent)
    where = holder.relative_to(root).as_posix() if holder != root else holder.name
    # a checkpoint records its step; a run's adapter is the one of its last step when the run is done
    for state, needs_done in ((holder / "trainer_state.json", False), (root / "status.json", True)):
        try:
            facts = json.loads(state.read_text())
            if not needs_done or facts.get("state") == "done":
                return where, str(int(facts["step"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return where, ""


def export(run: str | Path, out: str | Path) -> dict:
    """Write the adapter of `run` (a run folder, its adapter/ folder or a checkpoint) as one ComfyUI
    LoRA file `out`, atomically; returns what was written (path, counts, metadata)."""
    run, out = Path(run), Path(out)
    if out.suffix != ".safetensors":
        raise ComfyExportError(f"--out must name a .safetensors file (ComfyUI/models/loras/NAME.safetensors), not {out}.")
    if not run.exists():
        raise FileNotFoundError(f"No run folder {run}; pass a run folder (runs/NAME), its adapter/ or a checkpoint.")
    source = adapter_path(run) if (run / "config.yaml").exists() else None
    dirs = lora.adapter_dirs(source or run)
    state, counts = {}, {}
    for network, folder in dirs.items():
        part = network_state(folder, PREFIXES[network])
        counts[network] = sum(k.endswith(".alpha") for k in part)
        state.update(part)
    config = run_config(dirs["dit"])
    peft_config = PeftLoraConfig.from_pretrained(dirs["dit"])
    base_model = str(config.get("base_model") or peft_config.base_model_name_or_path or "not recorded")
    metadata = {
        "format": "pt",
        "medart.base_model": base_model,
        "medart.base_model_source": _base_source(base_model),
        "medart.weights": _weights(config),
        "medart.networks": ",".join(dirs),
        "medart.rank": str(peft_config.r),
        "medart.lora_alpha": f"{peft_config.lora_alpha:g}",
        "medart.modules": json.dumps(counts),
    }
    metadata["medart.source"], step = _origin(dirs["dit"])
    if step:
        metadata["medart.step"] = step
    atomic_write_bytes(out, save(state, metadata=metadata))
    return {"path": out, "modules": counts, "metadata": metadata, "tensors": len(state)}
