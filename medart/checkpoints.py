"""Training checkpoints that are complete or absent, never half-written, and exact resume.

A checkpoint is written into a hidden temp folder, its files are hashed into a manifest
(written last), and the folder is renamed to `checkpoints/step-NNNNNN` in one step. Only
folders whose manifest matches their files count; the newest `keep` are kept.

Nothing in a checkpoint is pickled, so loading one cannot run code: the trainable weights are
in `trainable.safetensors`, the optimizer's and scheduler's tensors in
`training_state.safetensors` and the rest of their state in `training_state.json`
(`medart.state_files`), the step and run facts in `trainer_state.json`. Checkpoints of older
versions kept that state in a pickle (`training_state.pt`); they are refused with what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medart import lora
from medart.fileio import atomic_dir, atomic_write_json
from medart.state_files import StateFileError, load_state, save_state

MANIFEST = "manifest.json"
EMA = "ema.safetensors"
STATE_TENSORS, STATE_JSON = "training_state.safetensors", "training_state.json"
LEGACY_STATE = "training_state.pt"  # a pickle, written by older versions; never loaded


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says what to do."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trainable_state(models: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{name}": p.detach().to("cpu").contiguous()
        for prefix, model in models.items()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def save(folder: Path, step: int, models: dict, optimizer, lr_scheduler, extra: dict, keep: int,
         ema: dict[str, torch.Tensor] | None = None, adapters_from=None) -> Path:
    """Write checkpoint `step` atomically under `folder` (the run's checkpoints/). `ema`: the
    EMA of the trainable weights (keys as `trainable_state`), kept for exact resume;
    `adapters_from`: a context manager under which the usable adapter folders are written
    (the EMA weights, when there are some)."""
    final = folder / f"step-{step:06d}"
    with atomic_dir(final, prefix=f".tmp-step-{step:06d}-") as tmp:
        save_file(trainable_state(models), tmp / "trainable.safetensors")
        if ema is not None:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in ema.items()}, tmp / EMA)
        with adapters_from() if adapters_from else contextlib.nullcontext():
            for name, model in models.items():  # usable adapters: `generate --lora` takes a checkpoint too
                lora.save(model, tmp / name)
        save_state({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()},
                   tmp / STATE_TENSORS, tmp / STATE_JSON)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        atomic_write_json(tmp / MANIFEST, {"step": step, "files": files})
    for old in complete(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def is_complete(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return all(_sha256(path / name) == digest for name, digest in manifest["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def complete(folder: Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    if not folder.exists():
        return []
    found = [p for p in folder.glob("step-*") if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def clean_partial(folder: Path) -> None:
    """Remove leftovers of a writer that was killed mid-checkpoint."""
    if folder.exists():
        for p in folder.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)


def find(resume: str, folder: Path) -> Path:
    """The checkpoint named by `resume`: "latest" or a path."""
    if resume == "latest":
        found = complete(folder)
        if not found:
            raise FileNotFoundError(f"No complete checkpoint in {folder} to resume from.")
        return found[-1]
    path = Path(resume)
    if not is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint (missing or mismatched manifest).")
    return path


def load(path: Path, models: dict, optimizer, lr_scheduler, ema: dict[str, torch.Tensor] | None = None) -> dict:
    """Restore weights, optimizer, scheduler and (into `ema`, in place) the EMA weights;
    returns trainer_state.json. (No RNG state is needed: the trainer seeds each step from the
    run seed and the step number.)
    CheckpointError (with what to do) for a checkpoint of an older version or a broken one."""
    path = Path(path)
    if not (path / STATE_JSON).exists() and (path / LEGACY_STATE).exists():
        raise CheckpointError(
            f"{path} was written by an older version of Med-Art Studio, which kept the optimizer state in a "
            f"pickle ({LEGACY_STATE}); pickles can run code when loaded, so it is not read. Its adapter still "
            f"works (`python -m medart generate --lora {path} ...`). To continue training, start a new run "
            "(another --output, without --resume); checkpoints written from now on resume exactly."
        )
    try:
        weights = load_file(path / "trainable.safetensors")
        training = load_state(path / STATE_TENSORS, path / STATE_JSON)
        step = json.loads((path / "trainer_state.json").read_text())
        for prefix, model in models.items():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.data.copy_(weights[f"{prefix}.{name}"].to(p.device, p.dtype))
        optimizer.load_state_dict(training["optimizer"])
        lr_scheduler.load_state_dict(training["lr_scheduler"])
        if ema is not None:
            stored = load_file(path / EMA) if (path / EMA).exists() else weights  # EMA turned on at resume
            for key, value in ema.items():
                value.copy_(stored[key].to(value.device, value.dtype))
    except (StateFileError, SafetensorError, OSError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"cannot resume from {path}: {e}. The checkpoint does not fit this run (another base model, LoRA "
            "rank or optimizer) or is damaged; resume from another checkpoint or start the run again."
        ) from None
    return step
