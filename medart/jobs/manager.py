"""Background jobs: training, batch captioning and evaluation in their own detached processes.

A job is a kind (train, caption, evaluate) and a config file, run as one `python -m medart
<command>` (`medart.jobs.kinds.command`) that must outlive the browser tab and the app that
started it. Nothing here imports gradio; the app and tests use the same functions.

Layout (under a jobs folder, e.g. `./jobs`):

    jobs/0007-train-fundus/job.json    the record: kind, config, argv, state, pid, times, error, ...
    jobs/0007-train-fundus/config.yaml the options of a caption or evaluation job
    jobs/0007-train-fundus/log.txt     the process's stdout and stderr

A training job also names its run folder (`output`), which holds what the trainer writes:
config, status.json, metrics.jsonl, samples, checkpoints, adapter, its own log.txt.

States, one vocabulary for the app, the CLI and the run folders (`STATES`): queued -> running
-> done | failed, with running -> stopping -> stopped when a person presses Stop (a stopped
training keeps its checkpoint and can be resumed), and queued -> stopped when a queued job is
removed. (Jobs recorded by earlier versions as "cancelled" read as stopped.) `job.json` is rewritten atomically, under
a file lock (`jobs/.lock`, filelock) shared by every process that changes it.

How the queue keeps going without a daemon. There is no long-lived supervisor to die or to
restart. Each job runs in a worker process (`python -m medart.cli.worker JOBDIR`, started with
`start_new_session=True`, so it has its own process group and survives the app) that runs the
command in-process, writes the final state itself, and then starts the next queued job before
it exits. The app does the same whenever it submits a job and on every status poll
(`JobManager.tick()`): reconcile, then fill free slots. Whoever notices first starts the
next job; the lock makes it happen once. So the queue advances with the app closed, and the
app's poll recovers the queue if a worker was killed before it could hand over.

Reconcile (on app start and every poll): a job recorded as running or stopping whose process
is gone (checked with psutil by pid and process start time, so a reused pid is not mistaken for it)
becomes failed with the last lines of its log, or stopped if a stop had been asked for.
A stopping job still alive after its deadline has its whole process group killed. Nothing
stays running or stopping forever.

Stop sends SIGTERM to the job's process group: the trainer finishes its step, writes a
checkpoint and exits (state stopped, resumable); other commands stop at once. Resume
queues a new training job with the same config plus `--resume latest` in the same run
folder, so it continues from the latest complete checkpoint; a run that has finished all its
steps is complete and is not queued again.

Slots: one job at a time on a CPU machine, one per GPU on a CUDA machine (each job sees its
own GPU through CUDA_VISIBLE_DEVICES); `MEDART_JOB_SLOTS` overrides.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import yaml
from filelock import FileLock

from medart.fileio import atomic_write_json, atomic_write_text, slugify
from medart.jobs.kinds import KINDS, command

STATES = ("queued", "running", "stopping", "stopped", "done", "failed")
ACTIVE = ("running", "stopping")
FINAL = ("stopped", "done", "failed")
LEGACY_STATES = {"cancelled": "stopped"}  # what earlier versions wrote
STOP_TIMEOUT_S = 120.0  # after Stop, the process group is killed if still alive this much later
WORKER = "medart.cli.worker"  # the module a job's process runs (`python -m medart.cli.worker JOBDIR`)

_children: dict[int, subprocess.Popen] = {}  # processes this process started (reaped on poll)


@dataclass
class Job:
    id: str
    kind: str
    argv: list[str]  # arguments of `python -m medart`: command(kind, config), + `--resume latest` for a resume
    config: str | None = None  # the job's config file (a training's is its run's config.yaml)
    title: str = ""
    state: str = "queued"
    output: str | None = None  # run folder of a training or evaluation job
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    proc_start: float | None = None  # start time of pid (psutil): tells a reused pid apart
    stop_requested: float | None = None
    stop_deadline: float | None = None
    gpu: int | None = None
    resumes: str | None = None  # id of the job this one resumes
    exit_code: int | None = None
    error: str | None = None
    log_tail: str | None = None
    note: str | None = None
    folder: str = ""  # set when loaded; not stored

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @property
    def command(self) -> str:
        return "python -m medart " + " ".join(_quote(a) for a in self.argv)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("folder")
        return d


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:=,+@-]+", arg) else json.dumps(arg)


# ---- process helpers -----------------------------------------------------------------------
def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int | None, proc_start: float | str | None = None) -> bool:
    """Whether process `pid` (started at `proc_start`, when known) still runs (zombies do not)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        started = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    if proc_start is None:
        return True
    recorded = float(proc_start)
    if recorded < 1e8:  # clock ticks since boot, as older versions recorded it: trust the pid
        return True
    return abs(recorded - started) < 0.05


def log_tail(path: Path, lines: int = 20, max_bytes: int = 64_000) -> str:
    """The last `lines` lines of a log; progress-bar redraws (carriage returns) keep their last state."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    out = []
    for line in data.split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            out.append(parts[-1].rstrip())
    return "\n".join(out[-lines:])


def slots() -> int:
    env = os.environ.get("MEDART_JOB_SLOTS")
    if env:
        return max(1, int(env))
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:
        return 1


# ---- the manager ---------------------------------------------------------------------------
class JobManager:
    """Jobs under one folder. Every method is safe to call from several processes at once."""

    def __init__(self, root: str | Path, slots_: int | None = None, stop_timeout: float = STOP_TIMEOUT_S,
                 python: str | None = None, env: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.slots = slots_ or slots()
        self.stop_timeout = stop_timeout
        self.python = python or sys.executable
        self.env = env or {}
        self._lock = FileLock(self.root / ".lock", preserve_lock_file=True)

    # -- storage --
    def lock(self) -> FileLock:
        """The queue's lock, shared by every process that changes a job (`with manager.lock(): ...`)."""
        return self._lock

    def _load(self, folder: Path) -> Job | None:
        try:
            data = json.loads((folder / "job.json").read_text())
        except (OSError, ValueError):
            return None
        known = {k: v for k, v in data.items() if k in Job.__dataclass_fields__}
        known["state"] = LEGACY_STATES.get(known.get("state"), known.get("state", "queued"))
        return Job(**known, folder=str(folder))

    def _save(self, job: Job) -> None:
        atomic_write_json(job.path / "job.json", job.to_dict())

    def get(self, job_id: str) -> Job:
        job = self._load(self.root / job_id)
        if job is None:
            raise ValueError(f"no job {job_id!r} in {self.root}")
        return job

    def list(self) -> list[Job]:
        """All jobs, oldest first (the queue's order)."""
        jobs = [self._load(p) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        return [j for j in jobs if j is not None]

    def _update(self, job_id: str, **fields) -> Job:
        with self.lock():
            job = self.get(job_id)
            for k, v in fields.items():
                setattr(job, k, v)
            self._save(job)
            return job

    # -- submitting --
    def submit(self, kind: str, config: str | Path | dict, title: str = "", output: str | None = None,
               resumes: str | None = None, start: bool = True, resume: bool = False) -> Job:
        """Queue a `kind` job with its config: a file, or options (a dict) written to the job's
        own config.yaml. `resume`: continue a training from its latest checkpoint. Starts it at
        once when a slot is free."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}; choose from {', '.join(KINDS)}")
        with self.lock():
            folder = self._new_folder(kind, title)
            path = folder / "config.yaml"
            if isinstance(config, dict):
                atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
            else:
                path = Path(config).resolve()
            argv = command(kind, path) + (["--resume", "latest"] if resume else [])
            job = self._queue(folder, kind, argv, str(path), title, output, resumes)
        if start:
            self.tick()
        return self.get(job.id)

    def _new_folder(self, kind: str, title: str) -> Path:
        numbers = [int(p.name.split("-")[0]) for p in self.root.iterdir() if p.name[:4].isdigit()]
        seq = max(numbers, default=0) + 1
        slug = slugify(title or kind, keep="-", max_len=40) or kind
        folder = self.root / f"{seq:04d}-{kind}-{slug}"
        folder.mkdir(parents=True)
        return folder

    def _queue(self, folder: Path, kind: str, argv: list[str], config: str | None, title: str,
               output: str | None, resumes: str | None) -> Job:
        job = Job(id=folder.name, kind=kind, argv=[str(a) for a in argv], config=config, title=title or kind,
                  output=str(output) if output else None, created=time.time(), resumes=resumes, folder=str(folder))
        self._save(job)
        return job

    # -- the queue --
    def tick(self) -> list[Job]:
        """Reconcile, then start queued jobs while slots are free. Returns all jobs."""
        with self.lock():
            jobs = self._reconcile_locked()
            busy = {j.gpu for j in jobs if j.state in ACTIVE}
            for job in jobs:
                if job.state != "queued":
                    continue
                free = [g for g in range(self.slots) if g not in busy]
                if not free:
                    break
                job.gpu = free[0]
                busy.add(job.gpu)
                self._spawn(job)
        return self.list()

    def _spawn(self, job: Job) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["PYTHONUNBUFFERED"] = "1"
        if self.slots > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(job.gpu)
        with open(job.log_path, "ab") as log:
            log.write(f"$ {job.command}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [self.python, "-m", WORKER, str(job.path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env, cwd=os.getcwd(),
            )
        _children[proc.pid] = proc
        job.state, job.pid, job.started = "running", proc.pid, time.time()
        job.proc_start = process_start_time(proc.pid)
        self._save(job)

    def reconcile(self) -> list[Job]:
        with self.lock():
            return self._reconcile_locked()

    def _reconcile_locked(self) -> list[Job]:
        jobs = self.list()
        now = time.time()
        for job in jobs:
            if job.state not in ACTIVE:
                continue
            alive = is_alive(job.pid, job.proc_start)
            if alive and job.state == "stopping" and job.stop_deadline and now > job.stop_deadline:
                self._kill_group(job.pid)
                job.note = f"killed: still running {self.stop_timeout:.0f} s after Stop"
                alive = False
            if alive:
                continue
            job.log_tail = log_tail(job.log_path)
            job.ended = now
            if job.state == "stopping":
                job.state = "stopped"
            else:
                job.state = "failed"
                job.error = job.error or f"the job's process (pid {job.pid}) ended without reporting a result"
            self._save(job)
            _mark_run_dead(job)
        return jobs

    @staticmethod
    def _kill_group(pid: int | None, sig=signal.SIGKILL) -> None:
        if not pid:
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # -- stop and resume --
    def stop(self, job_id: str) -> Job:
        """Ask a job to stop: queued -> stopped; running -> stopping (SIGTERM to its group)."""
        with self.lock():
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.ended, job.note = "stopped", time.time(), "removed from the queue"
                self._save(job)
                return job
            if job.state != "running":
                return job
            job.state = "stopping"
            job.stop_requested = time.time()
            job.stop_deadline = job.stop_requested + self.stop_timeout
            self._save(job)
            self._kill_group(job.pid, signal.SIGTERM)
            return job

    def wait(self, job_id: str, timeout: float = 600, poll: float = 0.2, states=FINAL) -> Job:
        """Block until the job reaches one of `states` (tests and the CLI)."""
        deadline = time.time() + timeout
        while True:
            self.tick()
            job = self.get(job_id)
            if job.state in states or time.time() > deadline:
                return job
            time.sleep(poll)

    def resume(self, job_id: str) -> Job:
        """Queue a training job that continues `job_id`'s run from its latest complete checkpoint."""
        job = self.get(job_id)
        if job.kind != "train":
            raise ValueError("only training jobs can be resumed")
        if job.state in ACTIVE or job.state == "queued":
            raise ValueError(f"job {job_id} is {job.state}; stop it first")
        complete = run_complete(job.output)
        if complete:
            raise RunComplete(complete)
        if not job.output or not any((Path(job.output) / "checkpoints").glob("step-*")):
            raise ValueError(f"job {job_id} left no checkpoint to resume from; start it again instead")
        if job.config:
            return self.submit("train", job.config, title=job.title, output=job.output, resumes=job.id, resume=True)
        argv = list(job.argv)  # a job recorded by a version that queued argument lists
        if "--resume" in argv:
            i = argv.index("--resume")
            del argv[i:i + 2]
        with self.lock():
            folder = self._new_folder("train", job.title)
            new = self._queue(folder, "train", argv + ["--resume", "latest"], None, job.title, job.output, job.id)
        self.tick()
        return self.get(new.id)

    def active(self) -> list[Job]:
        return [j for j in self.list() if j.state in ACTIVE]

    def latest(self, kind: str | None = None, output: str | None = None) -> Job | None:
        jobs = [j for j in self.list() if (kind is None or j.kind == kind)
                and (output is None or (j.output and Path(j.output) == Path(output)))]
        return jobs[-1] if jobs else None

    def progress(self, job: Job) -> tuple[int, int] | None:
        """(done, total) from the run's status.json (training) or the last progress bar in the log."""
        if job.kind == "train" and job.output:
            try:
                status = json.loads((Path(job.output) / "status.json").read_text())
                return int(status.get("step", 0)), int(status.get("total", 0))
            except (OSError, ValueError):
                pass
        found = re.findall(r"(\d+)/(\d+) \[", log_tail(job.log_path, lines=5))
        return (int(found[-1][0]), int(found[-1][1])) if found else None


class RunComplete(ValueError):
    """Resume was asked of a run that has trained all its steps: nothing to continue."""


def run_complete(output: str | None) -> str | None:
    """'Run X is complete: ...' when the run folder says it trained all its steps, else None."""
    if not output:
        return None
    try:
        status = json.loads((Path(output) / "status.json").read_text())
    except (OSError, ValueError):
        return None
    step, total = int(status.get("step") or 0), int(status.get("total") or 0)
    if status.get("state") == "done" and total and step >= total:
        return (f"Run {Path(output).name} is complete: it trained all {total} steps, and its adapter is in the run "
                "folder. Nothing to resume; to train longer, start a new run.")
    return None


def _mark_run_dead(job: Job) -> None:
    """A training run whose process died without a word: its status.json must not say running."""
    if job.kind != "train" or not job.output:
        return
    path = Path(job.output) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if status.get("state") == "running":
        status["state"] = "stopped" if job.state == "stopped" else "failed"
        status["error"] = status.get("error") or job.error
        status["updated"] = time.time()
        atomic_write_json(path, status)


def stopped_note(job: Job) -> str:
    """'stopped at step N (checkpoint written, resumable)' for a stopped training."""
    try:
        step = json.loads((Path(job.output) / "status.json").read_text()).get("step")
    except (OSError, ValueError, TypeError):
        step = None
    ckpt = job.output and any((Path(job.output) / "checkpoints").glob("step-*"))
    return f"stopped at step {step}" + ("; checkpoint written, resumable" if ckpt else "")


def final_state(job: Job, exit_code: int, stopped: bool) -> tuple[str, str | None]:
    """(state, error) once a job's command has returned; used by the worker."""
    if job.kind == "train" and job.output:
        try:
            status = json.loads((Path(job.output) / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        run_state = status.get("state")
        if run_state == "stopped":
            return "stopped", None
        if run_state == "done" and exit_code == 0:
            return "done", None
        if run_state == "failed":
            return ("stopped", None) if stopped else ("failed", status.get("error"))
    if stopped:
        return "stopped", None
    if exit_code == 0:
        return "done", None
    return "failed", f"the command exited with code {exit_code}"


# Hints for errors people can act on, matched against the error text and the log's tail.
HINTS = (
    (r"out of memory|CUDA out of memory|OutOfMemoryError|Cannot allocate memory",
     "Out of memory: lower the resolution, the batch size or the colour-loss solver steps (M), "
     "enable 8-bit Adam on a GPU, or backpropagate through fewer solver steps."),
    (r"No space left on device", "The disk is full: delete old runs or checkpoints, or keep fewer checkpoints."),
    (r"not in the local Hugging Face cache|cannot be reached|Could not download",
     "The base model's weights are not available here: download them where there is internet, or use the tiny base."),
    (r"missing caption|nothing to export|No images found",
     "Some images lack captions: approve captions in the Captions tab, then launch again."),
    (r"bitsandbytes|8-bit AdamW needs", "8-bit Adam needs a CUDA GPU with bitsandbytes: turn it off here."),
    (r"loss became (nan|inf)", "The loss diverged: lower the learning rate or the colour-loss weight."),
)


def hint(text: str) -> str | None:
    for pattern, advice in HINTS:
        if re.search(pattern, text or "", re.IGNORECASE):
            return advice
    return None
