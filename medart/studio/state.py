"""The app's shared state without the UI: where things live, which base model, which device.

`Studio` holds the folders (workspace, runs, jobs), the active base model and device, the
deployment facts (offline demo, Hugging Face Space, shared Space with training off), the
server folders its users may name (`medart.studio.paths`) and the few expensive objects the
tabs share: the T5 tokenizer that counts caption tokens and one loaded generation pipeline
(its adapter is swapped and its strength toggled, never a second copy).

On the original public Space strangers share one app, so there each browser session works in
its own temporary workspace (`SessionWorkspaces`), removed when the session ends; which
session a call belongs to is told by `session_key`, a callable the UI sets. No gradio here;
`medart.ui` renders what this module knows.
"""

from __future__ import annotations

import functools

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from medart.jobs import JobManager
from medart.run_folder import adapter_path
from medart.studio.paths import ServerPaths, default_roots, run_folder
from medart.studio.sessions import SessionWorkspaces

from medart.places import default_home, workspace_folder


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
    # server folders the app's users may name; None: the home folder and the working directory
    import_roots: Sequence[str | Path] | None = None
    # a workspace per browser session (None: on the original public Space only)
    per_session: bool | None = None
    # the workspace (None: <home>/workspace) and where that choice came from, for the status line
    workspace_root: Path | None = None
    workspace_source: str = "the home folder's"
    runs_dir: Path = field(init=False)
    jobs: JobManager = field(init=False)
    session_key: Callable[[], str | None] | None = field(default=None, init=False)

    def __post_init__(self):
        self.home = Path(self.home).resolve()
        self.workspace_root = Path(self.workspace_root or self.home / "workspace").resolve()
        self.runs_dir = self.home / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = JobManager(self.home / "jobs")
        roots = self.import_roots if self.import_roots is not None else [self.home, Path.cwd()]
        self.paths = ServerPaths(roots)
        if self.per_session is None:
            self.per_session = shared_public_space()
        self.sessions = SessionWorkspaces() if self.per_session else None
        self._tokenizer = None
        self._generator = None
        self._generator_key = None
        self._lock = threading.RLock()

    @classmethod
    def create(cls, home: str | Path | None = None, base_model: str | None = None, host: str = "127.0.0.1",
               import_roots: Sequence[str | Path] = (), workspace: str | Path | None = None) -> "Studio":
        """The app's state: `workspace` (--workspace), else MEDART_WORKSPACE, else <home>/workspace,
        exactly as the command line chooses it (`medart.places`)."""
        import torch

        from medart.profiles import default_base_model

        cuda = torch.cuda.is_available()
        home = Path(home) if home else default_home()
        folder, source = workspace_folder(workspace, home)
        return cls(home=home, base_model=base_model or default_base_model(),
                   device="cuda" if cuda else "cpu", gpu_name=torch.cuda.get_device_name(0) if cuda else "",
                   import_roots=default_roots(host, home, import_roots), workspace_root=folder,
                   workspace_source=source)

    # ---- where the workspace is ----
    @property
    def workspace_dir(self) -> Path:
        """The workspace (`workspace_root`), or this browser session's own one (per_session)."""
        if not self.per_session:
            return self.workspace_root
        key = self.session_key() if self.session_key else None
        if not key:
            raise RuntimeError("this shared app keeps one workspace per browser session; open the page to get one")
        return self.sessions.path(key)

    def end_session(self, key: str | None) -> bool:
        """Stop the jobs of a session's workspace and remove it (per_session only)."""
        if not self.per_session or not key:
            return False
        folder = self.sessions.path(key)
        for job in self.jobs.list():
            if job.output and Path(job.output) == folder and job.state in ("queued", "running"):
                self.jobs.stop(job.id)
        return self.sessions.remove(key)

    def visible_jobs(self, jobs=None) -> list:
        """The jobs this user may see: all of them, or only their session's (per_session)."""
        jobs = self.jobs.list() if jobs is None else jobs
        if not self.per_session:
            return jobs
        mine = str(self.workspace_dir)
        return [j for j in jobs if j.output == mine]

    def run_dir(self, name: str | None) -> Path:
        """The run called `name`, a folder directly inside runs/ (a path or `..` is refused)."""
        return run_folder(self.runs_dir, name)

    # ---- facts for the status line ----
    @property
    def offline_demo(self) -> bool:
        from medart.profiles import is_tiny

        return is_tiny(self.base_model)

    @functools.cached_property
    def caption_reader(self):
        """The base model's family (`medart.profiles.Kind`): its name and how many T5 tokens of a
        caption it reads (PixArt-α 120, PixArt-Σ 300)."""
        from medart.profiles import KINDS, kind_or_alpha

        return KINDS[kind_or_alpha(self.base_model)]

    @property
    def training_allowed(self) -> bool:
        return not shared_public_space()

    @property
    def sharing_allowed(self) -> bool:
        """Pushing to the Hugging Face Hub: not where strangers share one app (it would use the
        app owner's token)."""
        return self.training_allowed and not self.per_session

    def status_line(self) -> str:
        device = f"GPU ({self.gpu_name})" if self.device == "cuda" else "CPU"
        if self.per_session:
            where = "Workspace: a temporary one for this browser session (removed when it ends)"
        else:
            where = f"Workspace: {self.workspace_root} ({self.workspace_source}) · Runs: {self.runs_dir}"
        return f"Base model: {self.base_model} · Device: {device} · {where}"

    # ---- shared objects ----
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from medart.profiles import caption_tokenizer

                self._tokenizer = caption_tokenizer(self.base_model)[1]
            return self._tokenizer

    def workspace(self):
        """A workspace handle counting tokens with the active base model's tokenizer (and refusing to
        approve captions longer than it reads)."""
        from medart.workspace import Workspace

        ws = Workspace(self.workspace_dir, tokenizer=self.tokenizer(),
                       token_limit=self.caption_reader.max_caption_tokens)
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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
