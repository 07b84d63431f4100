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
