"""Where a running evaluation is: its stages in order, each with done / total, when it started
and ended, written to `<run>/eval/progress.json` for the app (and anyone watching).

`evaluate` announces the stages it will run (`plan`), then reports each as it goes
(`stage, done, total`); `StageProgress` records that atomically, at most a few times a
second, and `stage_rows` turns the file into what a person reads: each stage done (and how
long it took), running (how far, and about how long is left at its rate so far) or waiting.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from medart.fileio import atomic_write_json

PROGRESS_FILE = "progress.json"
STAGE_NAMES = {
    "base": "generating the base model's images",
    "tuned": "generating the tuned model's images",
    "features: real": "Inception features of the real images",
    "features: base": "Inception features of the base images",
    "features: tuned": "Inception features of the tuned images",
    "classifier: real": "training the domain classifier on real images",
    "training set: base": "generating a training set with the base model",
    "classifier: base": "training a classifier on the base model's images",
    "training set: tuned": "generating a training set with the tuned model",
    "classifier: tuned": "training a classifier on the tuned model's images",
}


def planned_stages(metrics: set[str], classifier_checkpoint: bool = False) -> list[str]:
    """The stages an evaluation of `metrics` runs, in order."""
    stages = ["base", "tuned"]
    if metrics & {"fid", "kid"}:
        stages += ["features: real", "features: base", "features: tuned"]
    if "classify" in metrics or ("dfd" in metrics and not classifier_checkpoint):
        stages.append("classifier: real")
    if "classify" in metrics:
        stages += ["training set: base", "classifier: base", "training set: tuned", "classifier: tuned"]
    return stages


class StageProgress:
    """A progress callback `(stage, done, total)` that keeps `path` (progress.json) current."""

    def __init__(self, path: str | Path, min_interval: float = 0.5):
        self.path = Path(path)
        self.min_interval = min_interval
        self.data = {"started": time.time(), "updated": time.time(), "stages": []}
        self._written = 0.0

    def _stage(self, name: str) -> dict:
        for s in self.data["stages"]:
            if s["name"] == name:
                return s
        s = {"name": name, "done": 0, "total": 0, "started": None, "ended": None}
        self.data["stages"].append(s)
        return s

    def plan(self, stages: list[str]) -> None:
        for name in stages:
            self._stage(name)
        self._write(force=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        s = self._stage(stage)
        now = time.time()
        if s["started"] is None:
            s["started"] = now
        s["done"], s["total"] = int(done), int(total)
        finished = total and done >= total
        if finished and s["ended"] is None:
            s["ended"] = now
        self._write(force=bool(finished) or s["done"] == 0)

    def _write(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._written < self.min_interval:
            return
        self.data["updated"] = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data)
        self._written = now


def read_progress(eval_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(eval_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"


def stage_rows(progress: dict, now: float | None = None, running: bool = True) -> list[tuple[str, str, str]]:
    """(state, stage, what to say) per stage: "done" (how long it took), "running" (done / total,
    about how long is left at this stage's rate), "waiting"; with `running` False, an unfinished
    stage is "stopped"."""
    now = now or time.time()
    rows = []
    for s in progress.get("stages", []):
        name = STAGE_NAMES.get(s["name"], s["name"])
        done, total, started = s.get("done", 0), s.get("total", 0), s.get("started")
        if s.get("ended") is not None or (total and done >= total):
            took = (s.get("ended") or now) - (started or now)
            rows.append(("done", name, f"{done} / {total}, took {_duration(took)}"))
        elif started is None:
            rows.append(("waiting", name, "waiting"))
        elif not running:
            rows.append(("stopped", name, f"{done} / {total}, did not finish"))
        else:
            elapsed = now - started
            if done > 0:
                left = f"about {_duration(elapsed / done * (total - done))} left"
            else:
                left = "timing the first item"
            rows.append(("running", name, f"{done} / {total}, {left}"))
    return rows
