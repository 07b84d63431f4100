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

    def __init__(self, home: Path, cache: str, extra_env: dict | None = None):
        self.home = home
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
            [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--home", str(self.home)],
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
