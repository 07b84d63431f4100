"""Export: imagefolder that `datasets` loads, the authors' metadata.csv, .txt sidecars, hub push."""

import csv
import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from medart.workspace.exports import export  # noqa: E402
from medart.workspace import Filter, NewImage, Workspace  # noqa: E402


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    rows = []
    for k, (c, label) in enumerate([("red", "polyps"), ("pink", "normal"), ("blue", "polyps"), ("green", "normal")]):
        sha, size, _ = w.store_image(Image.new("RGB", (20 + k, 16), c))
        rows.append(NewImage(sha, f"case {k}.jpg", 20 + k, 16, "RGB", size, "t", label))
    w.add_images(rows)
    for i, text in zip((1, 2, 3), ("An endoscopic image of polyps, red.", "An endoscopic image of normal, pink.", "Blue")):
        w.set_text(i, text)
    w.approve([1, 2])
    w.reject([3])
    yield w
    w.close()


def test_imagefolder_loads_with_datasets(tmp_path, ws):
    import datasets

    out = tmp_path / "snap"
    report = export(ws, out, keep_names=True)
    assert report.count == 2 and report.format == "imagefolder"
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert rows == [
        {"file_name": "000001-case_0.png", "text": "An endoscopic image of polyps, red.", "label": "polyps"},
        {"file_name": "000002-case_1.png", "text": "An endoscopic image of normal, pink.", "label": "normal"},
    ]
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(ds) == 2 and set(ds.column_names) >= {"image", "text", "label"}
    assert ds[0]["text"] == rows[0]["text"] and ds[1]["image"].size == (21, 16)
    assert ds[0]["image"].getpixel((0, 0)) == (255, 0, 0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 2 and manifest["sha256"] == report.digest and manifest["approved_only"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".snap")]  # temp folder renamed away


def test_csv_and_txt_and_all(tmp_path, ws):
    export(ws, tmp_path / "c", fmt="csv", approved_only=False)
    with open(tmp_path / "c" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == ["An endoscopic image of polyps, red.", "An endoscopic image of normal, pink."]
    assert all((tmp_path / "c" / r["file_name"]).exists() for r in rows)  # csv beside the images
    ws.set_text(4, "Green draft")
    ws.conn.execute("UPDATE captions SET status = 'draft' WHERE image_id = 4")
    r = export(ws, tmp_path / "t", fmt="txt", approved_only=False)
    assert r.count == 3  # approved + draft with text; rejected never
    assert (tmp_path / "t" / "000004.txt").read_text() == "Green draft\n"  # no original names by default
    assert sorted(p.name for p in (tmp_path / "t").glob("*.png")) == ["000001.png", "000002.png", "000004.png"]
    r = export(ws, tmp_path / "l", flt=Filter(label="normal"))
    assert r.count == 1


def test_held_out_images_never_reach_the_training_folder(tmp_path, ws, capsys):
    import datasets

    from medart.cli import main

    ws.set_split([2], "test")  # approved, held out for evaluation
    report = export(ws, tmp_path / "f")
    assert report.per_split == {"train": 1, "test": 1}
    train = [json.loads(x) for x in (tmp_path / "f" / "train" / "metadata.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (tmp_path / "f" / "test" / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in train] == ["000001.png"] and [r["file_name"] for r in test] == ["000002.png"]
    assert sorted(p.name for p in (tmp_path / "f" / "train").iterdir()) == ["000001.png", "metadata.jsonl"]
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "f"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 1, "test": 1}
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["splits"] == {"train": 1, "test": 1}

    # the flat formats take the training split unless told otherwise
    assert export(ws, tmp_path / "c", fmt="csv").per_split == {"train": 1}
    with open(tmp_path / "c" / "metadata.csv", newline="") as f:
        assert [r["file_name"] for r in csv.DictReader(f)] == ["000001.png"]
    w = ["--workspace", str(ws.root)]
    assert main(["export", "--format", "csv", "--split", "test", "--out", str(tmp_path / "t"), *w]) == 0
    assert "exported 1 caption(s) (test 1) as csv" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["000002.png", "manifest.json", "metadata.csv"]
    assert main(["export", "--format", "txt", "--split", "all", "--out", str(tmp_path / "a"), *w]) == 0
    assert (tmp_path / "a" / "train" / "000001.txt").exists() and (tmp_path / "a" / "test" / "000002.txt").exists()
    assert main(["export", "--split", "val", "--out", str(tmp_path / "v"), *w]) == 2
    assert "unknown split 'val'" in capsys.readouterr().err and not (tmp_path / "v").exists()
    with pytest.raises(ValueError, match=r"no approved captions in the split\(s\) validation"):
        export(ws, tmp_path / "none", splits=["validation"])


def test_refuses_to_overwrite_or_export_nothing(tmp_path, ws):
    out = tmp_path / "snap"
    export(ws, out)
    with pytest.raises(ValueError, match="not empty"):
        export(ws, out)
    ws.set_text(1, "An endoscopic image of polyps, dark red.", approve=True)
    export(ws, out, overwrite=True)
    assert "dark red" in (out / "train" / "metadata.jsonl").read_text()
    with pytest.raises(ValueError, match="nothing to export"):
        export(ws, tmp_path / "none", flt=Filter(label="absent"))
    with pytest.raises(ValueError, match="unknown export format"):
        export(ws, tmp_path / "x", fmt="parquet")
    assert not (tmp_path / "none").exists()


def test_push_is_private_and_needs_a_token(tmp_path, ws, monkeypatch):
    from huggingface_hub import HfApi, constants

    from medart.sharing import push_dataset

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ValueError, match="needs a token"):
        push_dataset(ws, "me/data")
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo, **kw: calls.append((repo, kw, self.token)))
    monkeypatch.setattr(HfApi, "repo_info", lambda self, repo, **kw: type("Info", (), {"private": True})())
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, folder_path, repo_id, **kw: calls.append(
        (repo_id, sorted(p.name for p in Path(folder_path).rglob("*.png")))))
    assert push_dataset(ws, "me/data", token="hf_x").url == "https://huggingface.co/datasets/me/data"
    assert calls == [("me/data", {"repo_type": "dataset", "private": True, "exist_ok": True}, "hf_x"),
                     ("me/data", ["000001.png", "000002.png"])]  # the approved ones, named by id


def test_cli_review_and_export(tmp_path, ws, capsys):
    from medart.cli import main

    w = ["--workspace", str(ws.root)]
    assert main(["replace", "endoscopic", "colonoscopic", *w]) == 0
    assert "2 match(es) in 2 caption(s)" in capsys.readouterr().out
    assert ws.get(1).text.startswith("An endoscopic")
    assert main(["replace", "endoscopic", "colonoscopic", "--yes", "--status", "approved", *w]) == 0
    assert ws.get(1).text.startswith("An colonoscopic") and ws.get(2).text.startswith("An colonoscopic")
    assert main(["undo", *w]) == 0 and ws.get(2).text.startswith("An endoscopic")
    assert main(["edit", "4", "A green one.", "--base-model", "tiny", *w]) == 0
    assert ws.get(4).status == "edited" and ws.get(4).token_count > 0
    assert main(["approve", "--ids", "4", *w]) == 0 and ws.get(4).status == "approved"
    assert main(["approve", *w]) == 2  # says which captions
    assert "say which captions" in capsys.readouterr().err
    assert main(["export", "--format", "imagefolder", "--out", str(tmp_path / "e"), *w]) == 0
    assert "exported 3 caption(s)" in capsys.readouterr().out
    assert main(["next", *w]) == 0 and "every caption is reviewed" in capsys.readouterr().out
    assert main(["stats", *w]) == 0
    assert json.loads(capsys.readouterr().out)["approved"] == 3
    assert main(["list", "--workspace", str(tmp_path / "missing")]) == 2
    assert "import images first" in capsys.readouterr().err


def test_approved_only_is_a_real_switch(tmp_path, ws, capsys):
    """--approved-only is the default and --no-approved-only turns it off (earlier it was a
    store_true flag defaulting to True: a switch that could not be switched)."""
    from medart.cli import main

    w = ["--workspace", str(ws.root)]
    ws.set_text(4, "A green one.")  # an edited caption, not approved
    texts = {}
    for name, flags in (("default", []), ("on", ["--approved-only"]), ("off", ["--no-approved-only"]),
                        ("all", ["--all"])):
        assert main(["export", "--format", "csv", "--out", str(tmp_path / name), *flags, *w]) == 0
        with open(tmp_path / name / "metadata.csv", encoding="utf-8") as f:
            texts[name] = sorted(r["text"] for r in csv.DictReader(f))
    approved = ["An endoscopic image of normal, pink.", "An endoscopic image of polyps, red."]
    assert texts["default"] == texts["on"] == approved
    assert texts["off"] == texts["all"] == sorted(approved + ["A green one."])  # rejected stays out either way
