"""The app and the command line give the same answer to the same input: the demo's captions come
with it either way, and an empty prompt is refused by both."""

from __future__ import annotations

import pytest

from medart.assets import DEMO_DIR
from medart.cli import main
from medart.studio import Studio
from medart.ui import compare, data
from medart.workspace import Workspace


def _captions(ws) -> dict[str, tuple[str, str, str]]:
    return {i.original_name: (i.label, i.text, i.status) for i in ws.query(limit=None)}


def test_load_demo_brings_the_captions_the_cli_import_brings(tmp_path):
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    summary, rejected = data.summarise(data.load_demo(studio))
    assert summary.startswith("**Imported 16 image(s)**, 16 with a caption") and "⚠" not in summary and not rejected
    assert main(["import", str(DEMO_DIR), "--workspace", str(tmp_path / "cli")]) == 0
    with studio.workspace() as app_ws, Workspace(tmp_path / "cli") as cli_ws:
        app, cli = _captions(app_ws), _captions(cli_ws)
    assert len(app) == 16 and app == cli
    assert {status for _, _, status in app.values()} == {"edited"}


def test_an_empty_prompt_is_refused_by_the_cli_as_by_the_app(tmp_path, capsys):
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    (studio.runs_dir / "r").mkdir(parents=True)
    for prompt in ("", "   "):
        with pytest.raises(ValueError, match="write a prompt"):
            compare.check(studio, "r", prompt)
        out = tmp_path / "x.png"
        assert main(["generate", "--base-model", "tiny", "--prompt", prompt, "--out", str(out)]) == 2
        assert "--prompt is empty: write what to generate" in capsys.readouterr().err and not out.exists()
