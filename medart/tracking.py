"""Experiment tracking: a run's numbers and validation images in TensorBoard or Weights & Biases.

`report_to: tensorboard` writes TensorBoard event files into the run folder, `RUN/tensorboard`
(`tensorboard --logdir RUN/tensorboard`); `report_to: wandb` logs to a W&B run whose files are
kept in `RUN/wandb`. Both go through accelerate's trackers (`Accelerator(log_with=...)`,
`init_trackers`, `log`, `end_training`); the run's own record stays metrics.jsonl and a
tracker gets the same numbers, under these names:

    loss/diffusion, loss/color               the step's diffusion loss; the colour loss of a colour step
    grad_norm/diffusion, grad_norm/color     each gradient's norm before they are combined and clipped
                                             (on a plain step the diffusion gradient is the whole of it)
    grad_norm/total                          the norm that clipping saw
    lr                                       the learning rate the step used
    color_distance/<class>                   each validation: the class's samples against its images
    samples                                  each validation: the fixed-seed images (W&B: with their prompts)

W&B never sends anything unless asked: without `WANDB_MODE` in the environment it runs offline
(`wandb sync RUN/wandb/offline-run-*` uploads later); with `WANDB_MODE=online` the numbers, the
settings, the validation images and their captions leave this machine for W&B's servers.

A resumed run continues the same tracking: the same TensorBoard folder, where the steps after
the checkpoint it resumes from are purged (the resumed run logs them again, identically), and
the same W&B run, whose id is kept in `RUN/tracker.json`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import secrets
from pathlib import Path

import numpy as np

from medart.config import settings
from medart.fileio import atomic_write_json

PROJECT = "medart"  # the W&B project
TENSORBOARD_DIR = "tensorboard"  # inside the run folder
PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_available(report_to: str) -> None:
    """A clear error, before anything is loaded, when the chosen tracker's package is missing."""
    package = PACKAGE.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(f"--report-to {report_to} needs the {package} package, which is not installed: "
                         f"pip install {package} (or train with --report-to none)")


def accelerator_kwargs(report_to: str, run_path) -> dict:
    """accelerate's `log_with` and `project_dir` for a `report_to` setting (nothing for none)."""
    return {} if report_to == "none" else {"log_with": [report_to], "project_dir": str(run_path)}


def flat_config(config) -> dict:
    """The config as one level of dotted keys (`config.settings`' paths) with plain values (what
    trackers store as a run's hyperparameters): None becomes "", lists and tuples a
    comma-separated string."""
    out = {}
    for s in settings(type(config)):
        value = functools.reduce(getattr, s.path.split("."), config)
        if value is None:
            value = ""
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        out[s.path] = value
    return out


def scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl row as the tracker's scalars (names in the module docstring)."""
    out = {}
    if "loss" in row:
        out["loss/diffusion"] = row["loss"]
        # plain step: `grad_norm` is the diffusion gradient's; colour step: each part is logged
        out["grad_norm/diffusion"] = row.get("grad_norm_diffusion", row.get("grad_norm"))
        out["grad_norm/total"] = row.get("grad_norm")
    if "color_loss" in row:
        out["loss/color"] = row["color_loss"]
        out["grad_norm/color"] = row["grad_norm_color"]
    if "lr" in row:
        out["lr"] = row["lr"]
    for group, value in (row.get("color_distance") or {}).items():
        out[f"color_distance/{group}"] = value
    return {k: float(v) for k, v in out.items() if v is not None}


class Tracker:
    """The run's tracker on the main process (a no-op with `report_to: none` or elsewhere)."""

    def __init__(self, accelerator, config, run_path: Path, resumed_step: int | None = None):
        self.accelerator = accelerator
        self.kind = config.report_to
        self.on = self.kind != "none" and accelerator.is_main_process
        if not self.on:
            return
        run_path = Path(run_path)
        if self.kind == "tensorboard":
            # a resumed run purges what the interrupted one logged after its checkpoint
            kwargs = {"purge_step": resumed_step + 1} if resumed_step else {}
            accelerator.init_trackers(TENSORBOARD_DIR, config=flat_config(config), init_kwargs={"tensorboard": kwargs})
        else:
            kwargs = {"name": run_path.name, "dir": str(run_path), "id": self._wandb_id(run_path, resumed_step),
                      "resume": "allow"}
            if not os.environ.get("WANDB_MODE"):
                kwargs["mode"] = "offline"  # nothing leaves the machine unless WANDB_MODE says so
            accelerator.init_trackers(PROJECT, config=flat_config(config), init_kwargs={"wandb": kwargs})

    @staticmethod
    def _wandb_id(run_path: Path, resumed_step: int | None) -> str:
        """The run's W&B id: the one in tracker.json when resuming, else a new one (recorded)."""
        record = run_path / "tracker.json"
        if resumed_step is not None and record.is_file():
            found = json.loads(record.read_text()).get("wandb_id")
            if found:
                return found
        run_id = secrets.token_hex(8)
        atomic_write_json(record, {"wandb_id": run_id})
        return run_id

    def log_row(self, row: dict) -> None:
        if self.on:
            self.accelerator.log(scalars(row), step=row["step"])

    def log_samples(self, step: int, images, prompts: list[str]) -> None:
        """The validation images of `step` (PIL images of one size)."""
        if not self.on:
            return
        tracker = self.accelerator.get_tracker(self.kind, unwrap=True)
        if self.kind == "tensorboard":
            batch = np.stack([np.asarray(im.convert("RGB")) for im in images])
            tracker.add_images("samples", batch, global_step=step, dataformats="NHWC")
        else:
            import wandb

            tracker.log({"samples": [wandb.Image(im, caption=p) for im, p in zip(images, prompts)]}, step=step)

    def end(self) -> None:
        """Close the tracker (every process calls it: accelerate's end of training)."""
        if self.kind != "none":
            self.accelerator.end_training()
            self.kind, self.on = "none", False
