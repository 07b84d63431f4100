"""Which server folders the app's users may name (issue 12, point 3): inside the allowed roots
only, whatever the spelling (`..`, `~`, symbolic links); hub ids pass; everything else gets
one line naming nothing of the server. The defaults follow the host. The CLI is unrestricted."""

from __future__ import annotations

import pytest
from PIL import Image

from medart.studio.paths import PathRefused, ServerPaths, default_roots, run_folder


def test_folders_inside_the_roots_only(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    paths = ServerPaths([root])
    assert paths.folder(str(root / "images")) == (root / "images").resolve()
    assert paths.folder(f"{root}/images/../images/.") == (root / "images").resolve()
    for value in (str(outside), f"{root}/../outside", str(root / "escape"), "/etc", "~", "/",
                  f"{root}/images/../../outside"):
        with pytest.raises(PathRefused) as refused:
            paths.folder(value)
        assert str(refused.value).count("\n") == 0 and "is not inside a folder this app may read" in str(refused.value)
    with pytest.raises(ValueError, match="does not exist"):
        paths.folder(str(root / "missing"))  # inside a root, so saying so tells nothing new
    with pytest.raises(ValueError, match="type a folder"):
        paths.folder("  ")
    with pytest.raises(PathRefused, match="reads no server folders"):
        ServerPaths([]).folder(str(root / "images"))


def test_hub_ids_pass_and_paths_are_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "models"
    (root / "pixart").mkdir(parents=True)
    (tmp_path / "elsewhere" / "model").mkdir(parents=True)
    paths = ServerPaths([root])
    assert paths.folder_or_id("PixArt-alpha/PixArt-XL-2-512x512", "model") == "PixArt-alpha/PixArt-XL-2-512x512"
    assert paths.folder_or_id("tiny", "base model", names=["tiny"]) == "tiny"
    assert paths.folder_or_id(str(root / "pixart"), "model") == str((root / "pixart").resolve())
    for value in ("/etc", "../etc", "./elsewhere/model", "elsewhere/model", "~/x", "a/b/c", "a b/c"):
        with pytest.raises(PathRefused):
            paths.folder_or_id(value, "model")


def test_default_roots_follow_the_host(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    assert default_roots("127.0.0.1", home, cwd=cwd) == [home, cwd]
    assert default_roots("localhost", home, cwd=cwd) == [home, cwd]
    assert default_roots("0.0.0.0", home, cwd=cwd) == []
    assert default_roots("0.0.0.0", home, ["/srv/data"], cwd=cwd) == [tmp_path.__class__("/srv/data")]
    assert default_roots("127.0.0.1", home, ["/srv/data"], cwd=cwd) == [tmp_path.__class__("/srv/data")]


def test_runs_are_chosen_by_name(tmp_path):
    runs = tmp_path / "runs"
    (runs / "demo-run").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    assert run_folder(runs, "demo-run") == runs / "demo-run"
    for name in ("../other", str(tmp_path / "other"), "..", ".", "a/b", "demo-run/.."):
        with pytest.raises(ValueError, match="is not a run name"):
            run_folder(runs, name)
    with pytest.raises(ValueError, match="no run called 'gone'"):
        run_folder(runs, "gone")


def test_the_command_line_imports_from_any_folder(tmp_path, monkeypatch):
    from medart.cli import main
    from medart.studio import Studio
    from medart.workspace import Workspace

    folder = tmp_path / "anywhere"
    folder.mkdir()
    Image.new("RGB", (24, 24), (5, 120, 200)).save(folder / "a.png")
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    with pytest.raises(PathRefused):
        studio.paths.folder(str(folder))  # the app, with no roots, refuses it
    assert main(["import", str(folder), "--workspace", str(tmp_path / "ws")]) == 0  # the owner's CLI does not
    with Workspace(tmp_path / "ws") as ws:
        assert ws.count() == 1
