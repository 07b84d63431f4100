"""`python -m medart.cli.worker JOBDIR`: the process of one background job.

`medart.jobs.JobManager` starts it; it runs the job's command through this CLI
(`medart.jobs.worker.run_job`, which records the result and starts the next queued job).
"""

from __future__ import annotations

import sys

from medart.cli import main
from medart.jobs.worker import run_job

if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1], main))
