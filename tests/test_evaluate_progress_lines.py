"""`medart evaluate` into a pipe or a log file: one line per stage, not hundreds of bar updates."""

from __future__ import annotations

import sys

from medart.cli.evaluate import _Bars


def test_one_line_per_stage_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # whatever the environment, a pipe gets no bars
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with _Bars() as progress:
        for stage in ("base", "tuned", "features", "classifier"):
            for done in range(301):
                progress(stage, done, 300)
    err = capsys.readouterr().err
    assert err.splitlines() == ["base: 300 step(s)…", "tuned: 300 step(s)…", "features: 300 step(s)…",
                                "classifier: 300 step(s)…"]
    assert "\r" not in err
