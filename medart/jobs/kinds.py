"""The kinds of background job, how each runs, and the config files of the app's jobs.

A job is a kind and a config file. `command(kind, config)` is the `python -m medart` command
line that runs it: `train CONFIG` (the run's config.yaml, a `medart.config.TrainConfig`),
`caption --config CONFIG` and `evaluate --config CONFIG` (YAML files whose keys are those
commands' option names). The functions below write the caption and evaluation configs the
app queues; the training config is written by `medart.jobs.training.launch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

KINDS = ("train", "caption", "evaluate")


def command(kind: str, config: str | Path) -> list[str]:
    """The arguments of `python -m medart` that run a `kind` job from its config file."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; choose from {', '.join(KINDS)}")
    return ["train", str(config)] if kind == "train" else [kind, "--config", str(config)]


def caption_settings(workspace: str | Path, base_model: str, backend: str | None = None, model: str | None = None,
                     url: str | None = None, include_edited: bool = False, include_approved: bool = False) -> dict:
    """The options of a batch captioning job (`caption`): without a backend each image's
    template chooses its describer. Replacing edited or approved captions is confirmed by the
    person who asked for it (the app's confirmation), so the job carries `yes`."""
    settings = {"workspace": str(workspace), "base_model": base_model, "include_edited": bool(include_edited),
                "include_approved": bool(include_approved), "yes": bool(include_edited or include_approved)}
    if backend:
        settings.update(backend=backend, model=model or None, url=url or None)
    return settings


def evaluation_settings(run: str | Path, real: str, per_caption: int, metrics: Sequence[str]) -> dict:
    """The options of an evaluation job (`evaluate`)."""
    return {"run": str(run), "real": real, "per_caption": int(per_caption), "metrics": ",".join(metrics)}
