"""What runs inside one background job's process (`python -m medart.cli.worker JOBDIR`).

Started by `medart.jobs.JobManager` in a new session (its own process group). `run_job` runs
the job's `python -m medart ...` command in this very process (so the recorded pid is the one
doing the work) through the `execute` it is given (the CLI's `main`: the CLI hands it in, so
nothing here imports the CLI), writes the final state to `job.json`, then starts the next
queued job before exiting, so the queue keeps going with the app closed. SIGTERM means Stop:
the trainer installs its own handler (finish the step, checkpoint, exit); any other command is
interrupted at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable


class JobStopped(BaseException):
    """Raised by SIGTERM outside the trainer's own handler (not an Exception: nothing swallows it)."""


def _on_term(*_):
    raise JobStopped()


def run_job(folder: str | Path, execute: Callable[[list[str]], int]) -> int:
    """Run the job in `folder` with `execute(argv)`, record how it ended, start the next one."""
    from medart.jobs import manager as jobs

    folder = Path(folder).resolve()
    manager = jobs.JobManager(folder.parent)
    job = manager.get(folder.name)
    manager._update(job.id, state="stopping" if job.state == "stopping" else "running", pid=os.getpid(),
                    proc_start=jobs.process_start_time(os.getpid()), started=job.started or time.time())
    signal.signal(signal.SIGTERM, _on_term)
    print(f"[job {job.id}] started at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    exit_code, stopped = 0, False
    try:
        exit_code = execute(job.argv) or 0
    except JobStopped:
        stopped = True
    except SystemExit as e:
        exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        exit_code = 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, finish writing the result
    sys.stdout.flush()
    sys.stderr.flush()
    with manager.lock():
        job = manager.get(job.id)
        stopped = stopped or job.state == "stopping"
        state, error = jobs.final_state(job, exit_code, stopped)
        job.state, job.error, job.exit_code, job.ended = state, error, exit_code, time.time()
        if state != "done":
            job.log_tail = jobs.log_tail(job.log_path)
        if state == "stopped" and job.kind == "train":
            job.note = jobs.stopped_note(job)
        manager._save(job)
    print(f"[job {job.id}] {state}", flush=True)
    manager.tick()  # hand over to the next queued job
    return 0
