"""Background jobs: training, batch captioning and evaluation in their own detached processes.

`manager` queues and supervises them (a job is a kind plus a config file); `worker` is what
runs inside a job's process; `training` turns reviewed captions and the Train tab's settings
into a queued training (preflight, data snapshot, the run's config.yaml); `kinds` says how
each kind of job is run and writes the config files of caption and evaluation jobs.
"""

from medart.jobs.manager import (
    ACTIVE,
    FINAL,
    KINDS,
    STATES,
    Job,
    JobManager,
    RunComplete,
    hint,
    is_alive,
    log_tail,
    process_start_time,
)

__all__ = ["ACTIVE", "FINAL", "KINDS", "STATES", "Job", "JobManager", "RunComplete", "hint", "is_alive", "log_tail",
           "process_start_time"]
