"""The `jobs` command: list, stop and resume background jobs without the app.

    python -m medart jobs [--home DIR]              list jobs (reconciles dead ones first); states:
                                                    queued, running, stopping, stopped, done, failed
    python -m medart jobs stop JOB_ID               graceful stop (training: checkpoint, exit)
    python -m medart jobs resume JOB_ID             queue the training again from its latest checkpoint
    python -m medart jobs log JOB_ID                the last lines of its log

Registered by `medart.cli` through `add_parsers(sub)`; the same `medart.jobs` the app uses.
"""

from __future__ import annotations

import time
from pathlib import Path


def cmd_jobs(args) -> int:
    from medart.jobs import JobManager, RunComplete, log_tail
    from medart.studio import default_home

    manager = JobManager(Path(args.home or default_home()) / "jobs")
    if args.action == "list":
        for job in manager.tick():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created))
            print(f"{job.id:<36} {job.kind:<9} {job.state:<10} {when}  {job.error or job.note or ''}")
        return 0
    if not args.job:
        raise ValueError(f"`jobs {args.action}` needs a job id (see `python -m medart jobs`)")
    if args.action == "stop":
        job = manager.stop(args.job)
        print(f"{job.id}: {job.state}")
    elif args.action == "resume":
        try:
            job = manager.resume(args.job)
        except RunComplete as e:  # nothing to continue: not an error
            print(e)
            return 0
        print(f"{job.id}: {job.state} (resumes {args.job})")
    elif args.action == "log":
        print(log_tail(manager.get(args.job).log_path, lines=args.lines))
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("jobs", help="list, stop, resume background jobs (training, captioning, evaluation)")
    p.add_argument("action", nargs="?", default="list", choices=("list", "stop", "resume", "log"))
    p.add_argument("job", nargs="?", help="job id")
    p.add_argument("--home", help="the app's home folder (default: MEDART_HOME, /data/medart on a Space, or .)")
    p.add_argument("--lines", type=int, default=40, help="log: how many lines")
    p.set_defaults(func=cmd_jobs)
