"""`medart list` shows where it cut a caption ("…") and says once how to see captions whole."""

from __future__ import annotations

from helpers import add_images
from medart.cli import main
from medart.workspace import Workspace

LONG = "An endoscopic image of a reddish polyp with a lobulated surface and a short stalk, edited at the end: KEEP."


def test_list_marks_cut_captions_and_full_shows_them_whole(tmp_path, medart_cache, capsys):
    root = tmp_path / "ws"
    with Workspace(root) as ws:
        a, b = add_images(ws, ["polyps", "polyps"])
        ws.set_text(a, LONG)
        ws.set_text(b, "Short caption.")
    assert main(["list", "--workspace", str(root)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("…") and "KEEP" not in lines[0]
    assert len(lines[0].split("edited ", 1)[1].split(None, 2)[2]) == 80  # 79 characters and the mark
    assert lines[1].endswith("Short caption.")
    assert err.count("--full (or --json) shows them whole") == 1
    assert main(["list", "--workspace", str(root), "--full"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith(LONG) and "…" not in out and "shows them whole" not in err
