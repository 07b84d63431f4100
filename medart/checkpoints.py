"""Training checkpoints that are complete or absent, never half-written, and exact resume.

A checkpoint is written into a hidden temp folder, its files are hashed into a manifest
(written last), and the folder is renamed to `checkpoints/step-NNNNNN` in one step. Only
folders whose manifest matches their files count; the newest `keep` are kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medart import lora
from medart.fileio import atomic_write_json, publish_dir

MANIFEST = "manifest.json"


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


def save(folder: Path, step: int, models: dict, optimizer, lr_scheduler, extra: dict, keep: int) -> Path:
    """Write checkpoint `step` atomically under `folder` (the run's checkpoints/)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:06d}-", dir=folder))
    try:
        save_file(trainable_state(models), tmp / "trainable.safetensors")
        for name, model in models.items():  # usable adapters: `generate --lora` takes a checkpoint too
            lora.save(model, tmp / name)
        torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()},
                   tmp / "training_state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        atomic_write_json(tmp / MANIFEST, {"step": step, "files": files})
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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


def load(path: Path, models: dict, optimizer, lr_scheduler) -> dict:
    """Restore weights, optimizer and scheduler; returns trainer_state.json. (No RNG state is
    needed: the trainer seeds each step from the run seed and the step number.)"""
    state = load_file(path / "trainable.safetensors")
    for prefix, model in models.items():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.data.copy_(state[f"{prefix}.{name}"].to(p.device, p.dtype))
    training = torch.load(path / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(training["optimizer"])
    lr_scheduler.load_state_dict(training["lr_scheduler"])
    return json.loads((path / "trainer_state.json").read_text())
