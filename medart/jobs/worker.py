"""The process that runs one background job: `python -m medart.jobs.worker JOBDIR`.

Started by `medart.jobs.JobManager` in a new session (its own process group). It runs the
job's `python -m medart ...` command in this very process (so the recorded pid is the one
doing the work), writes the final state to `job.json`, then starts the next queued job
before exiting, so the queue keeps going with the app closed. SIGTERM means Stop: the
trainer installs its own handler (finish the step, checkpoint, exit); any other command is
interrupted at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path


class JobStopped(BaseException):
    """Raised by SIGTERM outside the trainer's own handler (not an Exception: nothing swallows it)."""


def _on_term(*_):
    raise JobStopped()


def main(argv: list[str] | None = None) -> int:
    from medart.jobs import manager as jobs

    folder = Path((argv or sys.argv[1:])[0]).resolve()
    manager = jobs.JobManager(folder.parent)
    job = manager.get(folder.name)
    manager._update(job.id, state="stopping" if job.state == "stopping" else "running", pid=os.getpid(),
                    proc_start=jobs.process_start_time(os.getpid()), started=job.started or time.time())
    signal.signal(signal.SIGTERM, _on_term)
    print(f"[job {job.id}] started at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    exit_code, stopped = 0, False
    try:
        from medart.cli import main as cli_main

        exit_code = cli_main(job.argv) or 0
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
        if state == "cancelled" and job.kind == "train":
            job.note = jobs.stopped_note(job)
        manager._save(job)
    print(f"[job {job.id}] {state}", flush=True)
    manager.tick()  # hand over to the next queued job
    return 0


if __name__ == "__main__":
    sys.exit(main())
