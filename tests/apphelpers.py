"""A running `python app.py` for tests: its own process, a free port, a private home folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py` on a free port; start() waits until it serves, kill() is a hard stop."""

    def __init__(self, home: Path, cache: str, extra_env: dict | None = None, args: tuple = ()):
        self.home = home
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = dict(os.environ, MEDART_CACHE=cache, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                        OMP_WAIT_POLICY="PASSIVE", GRADIO_ANALYTICS_ENABLED="False", MEDART_JOB_SLOTS="1",
                        PYTHONPATH=str(ROOT), **(extra_env or {}))
        self.env.pop("MEDART_BASE_MODEL", None)
        self.proc = None
        self.log = home / "app.log"

    def start(self, timeout: float = 120) -> "AppServer":
        self.home.mkdir(parents=True, exist_ok=True)
        cwd = self.home.parent / f"cwd-{self.port}"  # not the home: files must be served from it anyway
        cwd.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--home", str(self.home), *self.args],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env, cwd=str(cwd),
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the app did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop_jobs(self) -> None:
        from medart.jobs import JobManager, is_alive

        folder = self.home / "jobs"
        if not folder.exists():
            return
        for job in JobManager(folder, slots_=1).list():
            if job.state in ("running", "stopping") and is_alive(job.pid, job.proc_start):
                os.killpg(job.pid, signal.SIGKILL)


# names a client must never learn without logging in (they occur nowhere in the app's code)
SECRET_LABEL, SECRET_RUN, SECRET_STUDY = "label-okapi-4417", "run-quokka-8823", "study-narwhal-3361"
OWNER_CODE = "owner-code-7315"


def populate_home(home: Path) -> dict:
    """A home folder as an owner's would look after some work: a workspace with the demo images
    (captions, a label of its own), a run with an adapter, checkpoints, samples, logs and an
    evaluation, and a reader study. Returns the names in it."""
    import json

    from PIL import Image

    from helpers import make_tuned_run
    from medart.evaluation import EvalConfig, evaluate
    from medart.workspace.importers import import_paths
    from medart.reader_study import ReaderStudies
    from medart.assets import DEMO_DIR
    from medart.workspace import Workspace
    from helpers import planted_images

    ws_dir = home / "workspace"
    with Workspace(ws_dir) as ws:
        import_paths(ws, sorted(DEMO_DIR.glob("*.jpg")), label=None)
        items = ws.query(limit=None)
        ws.set_split([i.id for i in items[-4:]], "test")
        for item in items:
            ws.set_text(item.id, f"A {item.label} image, mostly orange.", approve=True)
        ws.set_labels([items[0].id, items[-1].id], SECRET_LABEL)
        ReaderStudies(ws).add_study(SECRET_STUDY, planted_images(2), seed=3, display_size=32, owner_code=OWNER_CODE)
    run = make_tuned_run(home / "runs" / SECRET_RUN)
    ckpt = run / "checkpoints" / "step-000004"
    for part in ("dit", "t5"):
        (ckpt / part).mkdir(parents=True)
        for f in (run / "adapter" / part).iterdir():
            (ckpt / part / f.name).write_bytes(f.read_bytes())
    (ckpt / "training_state.pt").write_bytes(b"PK\x03\x04 optimiser state of the run " * 8)
    (ckpt / "manifest.json").write_text(json.dumps({"step": 4, "files": ["dit", "t5", "training_state.pt"]}))
    (run / "samples" / "step-000000").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 90, 40)).save(run / "samples" / "step-000000" / "0.png")
    (run / "status.json").write_text(json.dumps({"state": "done", "step": 4, "total": 4}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 5)))
    (run / "log.txt").write_text("step 4 of 4: training finished\n")
    evaluate(run, real=f"{ws_dir}:test", config=EvalConfig(metrics=("color",), per_caption=1, steps=2))
    return {"workspace": ws_dir, "run": run, "study": SECRET_STUDY, "label": SECRET_LABEL}


def open_page(browser, url: str, timeout: float):
    """A new 1400x1000 page of the app at `url`, with `timeout` (ms) as its default wait."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout)
    page.goto(url)
    return page
