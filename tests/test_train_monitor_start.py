"""The Train monitor before a run has a step count: "starting…", never "step 0 / 0" or "step 0 of 0"."""

from __future__ import annotations

from medart.run_folder import RunFolder
from medart.studio import Studio
from medart.ui import train


def test_a_run_without_a_step_count_says_starting(tmp_path):
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    run = RunFolder(studio.runs_dir / "day1")
    run.path.mkdir(parents=True)
    run.status("running", step=0, total=0)
    info, *_, message, _jobs = train.monitor(studio, "day1", 0.0)
    assert "starting…" in info and "0 / 0" not in info and "ETA" not in info
    assert message.startswith("Running: starting…") and "of 0" not in message
    run.status("running", step=3, total=40, eta_seconds=65)
    info, *_, message, _jobs = train.monitor(studio, "day1", 0.0)
    assert "step 3 / 40 · ETA 1m 05s" in info and message == "Running: step 3 of 40."
