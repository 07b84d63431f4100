"""The command line's own output: a missing data folder refused at once (never looked up on the
hub), no workspace left behind by a mistyped import, quiet exit into a closed pipe, and no
progress bars when the output is not a terminal."""

from __future__ import annotations

import os
import sys

import pytest

from medart.cli import main


def test_train_with_a_missing_folder_says_no_such_folder_without_the_hub(tmp_path, monkeypatch, capsys):
    import datasets

    def no_hub(*a, **k):
        raise AssertionError("a path was looked up as a hub dataset")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    for data in ("exports/train", "./train", "a/b/c", "train"):
        assert main(["train", "--base-model", "tiny", "--data", data, "--output", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: no such folder: {data}"), err
    assert not (tmp_path / "run").exists()


def test_import_of_a_missing_path_creates_no_workspace(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["import", str(tmp_path / "nonexistent"), "--workspace", str(ws)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not ws.exists()


def test_a_closed_pipe_ends_quietly(tmp_path, monkeypatch):
    read, write = os.pipe()
    os.close(read)  # `| head` has gone
    out = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", out)
    from medart.assets import DEMO_DIR

    try:
        code = main(["import", str(sorted(DEMO_DIR.glob("*.jpg"))[0]), "--workspace", str(tmp_path / "ws")])
    finally:
        out.close()
    assert code == 1


def test_progress_bars_are_off_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    import medart.cli.workspace as commands

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    seen = []
    monkeypatch.setattr(commands, "cmd_import", lambda args: seen.append(os.environ.get("TQDM_DISABLE")) or 0)
    assert main(["import", str(tmp_path / "nothing"), "--workspace", str(tmp_path / "ws")]) == 0
    assert seen == ["1"]  # while the command runs (and in the processes it starts)
    assert "TQDM_DISABLE" not in os.environ  # the caller's environment is as it was


def test_train_with_a_missing_owner_name_folder_and_no_hub_says_so_at_once(tmp_path, monkeypatch, capsys):
    """`missing/folder` has the hub's form: with the hub unreachable (the probe says no, or
    HF_HUB_OFFLINE) it is refused at once, with no dataset lookup and so no retries."""
    import time

    import datasets

    from medart import profiles

    looked_up = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: looked_up.append(a) or 1 / 0)
    monkeypatch.chdir(tmp_path)
    probes = []
    monkeypatch.setattr(profiles, "hub_reachable", lambda timeout=3.0: probes.append(timeout) or False)
    started = time.monotonic()
    assert main(["train", "--base-model", "tiny", "--data", "missing/folder", "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such folder here: missing/folder (and no hub dataset of that name could be "
                          "reached"), err
    assert len(err.splitlines()) == 1 and "Retry" not in err
    assert probes == [3.0] and looked_up == [] and time.monotonic() - started < 30  # no retries (a hang guard)
    monkeypatch.undo()  # the real probe: HF_HUB_OFFLINE answers without touching the network
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: looked_up.append(a) or 1 / 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--base-model", "tiny", "--data", "missing/folder", "--output", str(tmp_path / "r")]) == 2
    assert "no such folder here: missing/folder" in capsys.readouterr().err and looked_up == []
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cuda, expected", [(False, "tiny"), (True, "pixart-alpha-512")])
def test_train_without_base_model_takes_the_readme_default(cuda, expected, monkeypatch):
    """README: "The default is pixart-alpha-512 on a machine with CUDA and tiny elsewhere",
    for the command line as for the app (which starts on `default_base_model()`)."""
    import torch

    from medart.cli import parse
    from medart.cli.train import train_config
    from medart.profiles import default_base_model

    monkeypatch.delenv("MEDART_BASE_MODEL", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    config = train_config(parse(["train", "--data", "exports/train"]))
    assert config.base_model == expected == default_base_model()
    monkeypatch.setenv("MEDART_BASE_MODEL", "tiny-sigma")
    assert train_config(parse(["train", "--data", "exports/train"])).base_model == "tiny-sigma"
    assert train_config(parse(["train", "--data", "x", "--base-model", "small"])).base_model == "small"
