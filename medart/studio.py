"""The app's shared state without the UI: where things live, which base model, which device.

`Studio` holds the folders (workspace, runs, jobs), the active base model and device, the
deployment facts (offline demo, Hugging Face Space, shared Space with training off) and
the few expensive objects the tabs share: the T5 tokenizer that counts caption tokens and
one loaded generation pipeline (its adapter is swapped and its strength toggled, never a
second copy). No gradio here; `medart.ui` renders what this module knows.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from medart.jobs import JobManager

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "assets" / "demo"


def default_home() -> Path:
    """`MEDART_HOME`; else /data/medart on a Space with persistent storage; else the current folder."""
    env = os.environ.get("MEDART_HOME")
    if env:
        return Path(env)
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/medart")
    return Path.cwd()


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def shared_public_space() -> bool:
    """The original public Space (not a duplicate): training would block it for everyone.
    A duplicate is recognised by MEDART_TRAINING=1 or by the owner differing from
    MEDART_ORIGINAL_SPACE's (default: the Space's own owner, i.e. no duplicate detected)."""
    space = os.environ.get("SPACE_ID")
    if not space:
        return False
    if os.environ.get("MEDART_TRAINING", "").lower() in ("1", "true", "yes"):
        return False
    original = os.environ.get("MEDART_ORIGINAL_SPACE", space)
    return space == original


@dataclass
class Studio:
    home: Path
    base_model: str
    device: str = "cpu"
    gpu_name: str = ""
    workspace_dir: Path = field(init=False)
    runs_dir: Path = field(init=False)
    jobs: JobManager = field(init=False)

    def __post_init__(self):
        self.home = Path(self.home).resolve()
        self.workspace_dir = self.home / "workspace"
        self.runs_dir = self.home / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = JobManager(self.home / "jobs")
        self._tokenizer = None
        self._generator = None
        self._generator_key = None
        self._lock = threading.RLock()

    @classmethod
    def create(cls, home: str | Path | None = None, base_model: str | None = None) -> "Studio":
        import torch

        from medart.profiles import default_base_model

        cuda = torch.cuda.is_available()
        return cls(home=Path(home) if home else default_home(), base_model=base_model or default_base_model(),
                   device="cuda" if cuda else "cpu", gpu_name=torch.cuda.get_device_name(0) if cuda else "")

    # ---- facts for the status line ----
    @property
    def offline_demo(self) -> bool:
        return self.base_model == "tiny"

    @property
    def training_allowed(self) -> bool:
        return not shared_public_space()

    def status_line(self) -> str:
        device = f"GPU ({self.gpu_name})" if self.device == "cuda" else "CPU"
        return f"Base model: {self.base_model} · Device: {device} · Data: {self.home}"

    # ---- shared objects ----
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from medart.cli_workspace import _tokenizer

                self._tokenizer = _tokenizer(self.base_model)[1]
            return self._tokenizer

    def workspace(self):
        """A workspace handle counting tokens with the active base model's tokenizer."""
        from medart.workspace import Workspace

        ws = Workspace(self.workspace_dir, tokenizer=self.tokenizer())
        if ws.get_setting("token_base_model") != self.base_model:
            ws.recount_tokens()
            ws.set_setting("token_base_model", self.base_model)
        return ws

    def generator(self, run: str | Path | None):
        """The one generation pipeline, with `run`'s adapter (reloaded only when the run changes).
        A run is loaded on the base model it was trained on (its config.yaml)."""
        from medart.generate import Generator

        adapter = adapter_path(run) if run else None
        key = (self.base_model, str(adapter) if adapter else None,
               _mtime(adapter) if adapter else None)
        with self._lock:
            if self._generator is None or self._generator_key != key:
                self._generator = None
                self._generator = Generator(None if adapter else self.base_model, adapter)
                self._generator_key = key
            return self._generator

    # ---- runs ----
    def runs(self) -> list[Path]:
        """Run folders, newest first."""
        found = [p for p in self.runs_dir.iterdir()
                 if p.is_dir() and ((p / "config.yaml").exists() or (p / "data").is_dir())]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def tuned_runs(self) -> list[Path]:
        """Runs with an adapter or a checkpoint (something to generate from)."""
        return [r for r in self.runs() if adapter_path(r) is not None]


def finished_runs(studio: "Studio") -> list[Path]:
    """Runs that exported an adapter (training finished): what evaluation needs."""
    return [r for r in studio.runs() if (r / "adapter" / "dit").is_dir()]


def adapter_path(run: str | Path) -> Path | None:
    """The run's exported adapter, else its latest checkpoint, else None."""
    run = Path(run)
    if (run / "adapter" / "dit").is_dir():
        return run / "adapter"
    steps = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    steps = [s for s in steps if (s / "manifest.json").exists() and (s / "dit").is_dir()]
    return steps[-1] if steps else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
