"""Train → Share names the run (and its adapter) a dry run or push packaged, and the card says
which run it will share, whatever the repository is called."""

from __future__ import annotations

from helpers import make_finished_run
from medart.studio import Studio
from medart.ui.train import share_help, share_run


def test_the_dry_run_and_the_card_name_the_run_they_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    make_finished_run(studio.runs_dir / "cli1")
    make_finished_run(studio.runs_dir / "day1")
    said = share_run(studio, "cli1", "me/day1-lora", True, True)
    first = said.splitlines()[0]
    assert first.startswith("Packaged run **cli1** (its adapter `cli1/adapter`") and "day1" not in first
    assert (studio.home / "hub-dry-runs" / "cli1" / "README.md").is_file()
    assert "Shares run **cli1**" in share_help(studio, "cli1") and "Shares run **day1**" in share_help(studio, "day1")
    assert "Shares" not in share_help(studio, None)  # no run chosen: nothing named
