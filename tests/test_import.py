"""Import: mixed folders, zip archives, captions that come along, DICOM without patient data,
HF datasets, and failed imports that leave nothing behind."""

import io
import json
import os
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from medart.workspace.importers import ImportLimits, import_dataset, import_paths  # noqa: E402
from medart.workspace import Filter, Workspace  # noqa: E402


def png_bytes(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width=30000, height=30000):
    """A tiny PNG whose header claims width x height pixels."""
    data = bytearray(png_bytes(Image.new("L", (10, 10))))
    ihdr = 8 + 8  # signature, then length + 'IHDR'
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def gradient(w=64, h=48):
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return np.stack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)), np.full((h, w), 90, np.uint8)], -1)


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def test_mixed_folder(tmp_path, ws):
    src = tmp_path / "cases"
    src.mkdir()
    good = Image.fromarray(gradient())
    good.save(src / "good.png")
    good.save(src / "zz_copy_of_good.png")  # duplicate pixels
    good.save(src / "good.jpg", quality=95)
    bmp = gradient()
    bmp[..., 2] = 30
    Image.fromarray(bmp).save(src / "good.bmp")
    Image.fromarray(gradient()[:, ::-1].copy()).save(src / "good.webp", lossless=True)
    good.save(src / "same_pixels.bmp")  # another encoding of the same pixels is a duplicate too
    Image.fromarray(gradient(32, 32)).save(src / "good.tif")
    g16 = np.linspace(1000, 4000, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(g16).save(src / "gray16.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(src / "cmyk.jpg")  # red in CMYK
    rgba = Image.new("RGBA", (40, 30), (0, 200, 0, 255))
    rgba.paste((255, 0, 0, 0), (0, 0, 20, 30))  # left half fully transparent red
    rgba.save(src / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x013B] = "Dr Qwertyuiop"  # Artist
    Image.new("RGB", (40, 20), (10, 20, 200)).save(src / "rotated.jpg", exif=exif.tobytes())
    whole = png_bytes(good)
    (src / "corrupt.png").write_bytes(whole[: len(whole) // 2])
    (src / "zero.jpg").write_bytes(b"")
    (src / "bomb.png").write_bytes(bomb_png())
    (src / "notes.pdf").write_bytes(b"%PDF-1.4")
    (src / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    (src / ".DS_Store").write_bytes(b"\0\0")
    (src / "README.txt").write_text("notes about these cases")

    report = import_paths(ws, [src], label="polyps", modality="endoscopy")
    names = {ws.get(i).original_name: ws.get(i) for i in report.added}
    assert sorted(names) == sorted(
        ["good.png", "good.jpg", "good.bmp", "good.webp", "good.tif", "gray16.png", "cmyk.jpg", "rgba.png", "rotated.jpg"]
    )
    reasons = {r.name.split("/")[-1]: r.reason for r in report.rejected}
    assert set(reasons) == {"corrupt.png", "zero.jpg", "bomb.png", "notes.pdf", "anim.gif"}
    assert "corrupt or truncated" in reasons["corrupt.png"]
    assert "empty file" in reasons["zero.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "unsupported file type '.pdf'" in reasons["notes.pdf"]
    assert "not a readable image" in reasons["anim.gif"] or "unsupported" in reasons["anim.gif"]
    assert sorted(d[0] for d in report.duplicates) == ["same_pixels.bmp", "zz_copy_of_good.png"]
    assert all("good.png" in d[1] for d in report.duplicates)
    assert sorted((r.name, r.reason) for r in report.skipped) == [
        ("cases/.DS_Store", "hidden or system file"),
        ("cases/README.txt", "text file without an image of the same name"),
    ]
    assert ws.stats()["total"] == 9 and ws.stats()["labels"] == {"polyps": 9}

    def pixels(name):
        with Image.open(names[name].image_path) as im:
            assert im.mode == "RGB" and not im.info.get("exif") and "icc_profile" not in im.info
            return np.asarray(im)

    assert (pixels("good.png") == gradient()).all() and (pixels("good.webp") == gradient()[:, ::-1]).all()
    assert (pixels("good.bmp") == bmp).all()
    g = pixels("gray16.png")
    assert g.min() == 0 and g.max() == 255 and (g[..., 0] == g[..., 2]).all()  # min..max to 0..255
    assert names["gray16.png"].mode == "I;16"
    c = pixels("cmyk.jpg")
    assert names["cmyk.jpg"].mode == "CMYK" and c[..., 0].mean() > 200 and c[..., 1:].mean() < 60
    a = pixels("rgba.png")
    assert (a[:, :20] == 0).all() and (a[:, 25:] == [0, 200, 0]).all()  # transparent -> black
    r = names["rotated.jpg"]
    assert (r.width, r.height) == (20, 40)  # orientation applied
    assert names["good.tif"].mode == "RGB" and names["gray16.png"].modality == "endoscopy"
    blob = b"".join(p.read_bytes() for p in ws.root.rglob("*") if p.is_file())
    assert b"Qwertyuiop" not in blob  # EXIF dropped everywhere


def test_zip_with_captions_and_unsafe_names(tmp_path, ws):
    path = tmp_path / "upload.zip"
    img = lambda c: png_bytes(Image.new("RGB", (32, 32), c))  # noqa: E731
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train/polyps/a.png", img("red"))
        z.writestr("train/polyps/a.txt", "An endoscopic image of polyps, red.\n")
        z.writestr("train/normal/b.png", img("pink"))
        z.writestr("train/c.png", img("blue"))
        z.writestr("train/metadata.jsonl", json.dumps({"file_name": "c.png", "text": "Blue one.", "label": "esophagitis"})
                   + "\n" + json.dumps({"file_name": "../outside.png", "text": "x"}) + "\n"
                   + json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")  # fmt: skip
        z.writestr("../evil.png", img("green"))
        z.writestr("/abs.png", img("yellow"))
        z.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        z.writestr("__MACOSX/train/._a.png", b"junk")
    report = import_paths(ws, [path])
    items = {ws.get(i).original_name: ws.get(i) for i in report.added}
    assert sorted(items) == ["a.png", "b.png", "c.png"]
    assert items["a.png"].text == "An endoscopic image of polyps, red." and items["a.png"].status == "edited"
    assert items["a.png"].label == "polyps" and items["b.png"].label == "normal"
    assert items["c.png"].text == "Blue one." and items["c.png"].label == "esophagitis"
    assert items["b.png"].status == "draft" and items["a.png"].provenance["source"] == "sidecar .txt"
    assert report.captions == 2
    reasons = {r.name: r.reason for r in report.rejected}
    assert "unsafe name" in reasons["upload.zip:../evil.png"] and "unsafe name" in reasons["upload.zip:/abs.png"]
    assert any("../outside.png" in n and "unsafe" in r for n, r in reasons.items())
    assert report.unlisted == 1 and not any("gone.png" in n for n in reasons)  # a notice, not a rejected file
    assert "1 row(s) of the metadata name images that were not imported" in report.summary()
    assert "zip inside" in reasons["upload.zip:inner.zip"]
    assert not (tmp_path / "evil.png").exists() and not list(ws.root.rglob("evil*"))


def test_folder_with_metadata_csv(tmp_path, ws):
    src = tmp_path / "kvasir"
    (src / "train").mkdir(parents=True)
    for k, c in enumerate(("red", "green")):
        Image.new("RGB", (16, 16), c).save(src / "train" / f"{k}.png")
    (src / "train" / "metadata.csv").write_text('file_name,text\n0.png,"An image, red."\n1.png,\n')
    report = import_paths(ws, [src], label="ulcer")
    texts = sorted(ws.get(i).text for i in report.added)
    assert texts == ["", "An image, red."]
    assert {ws.get(i).label for i in report.added} == {"ulcer"}  # 'train' is a split, not a label


def test_dicom_patient_data_is_never_stored(tmp_path, ws):
    import pydicom
    from pydicom.data import get_testdata_file

    src = tmp_path / "dicom"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PatientName = "Zyxwvut^Quentina"
        ds.PatientID = "PID-99887766"
        ds.PatientBirthDate = "19010203"
        ds.save_as(src / f"Zyxwvut_Quentina_{name}")
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    single = import_paths(ws, [src / "Zyxwvut_Quentina_CT_small.dcm"], label="brain")  # a file on its own
    report = import_paths(ws, [src], label="brain")
    assert len(single.added) == 1 and len(report.added) == 1
    assert len(report.duplicates) == 1 and report.duplicates[0][0].startswith("dicom-")
    # the third file read (after the two Zyxwvut_* ones); no path of a DICOM folder is shown
    assert [r.name for r in report.rejected] == ["file 3 of 3 (DICOM)"]
    report.added += single.added
    for i in report.added:
        item = ws.get(i)
        assert item.original_name == f"dicom-{item.sha256[:12]}"
        assert item.mode.startswith("DICOM ") and item.modality == "radiology"  # from the Modality code
        with Image.open(item.image_path) as im:
            a = np.asarray(im)
        assert a.shape[2] == 3 and a.max() > a.min()  # windowed to 8 bits, not flat
        ws.set_text(i, "A radiology image of brain, gray.")
    ws.approve(report.added)
    from medart.workspace.exports import export

    for fmt in ("imagefolder", "csv", "txt"):
        export(ws, tmp_path / f"out-{fmt}", fmt=fmt)
    ws.close()
    for root in [ws.root] + [tmp_path / f"out-{f}" for f in ("imagefolder", "csv", "txt")]:
        for p in root.rglob("*"):
            assert "Zyxwvut" not in p.name and "Quentina" not in p.name
            if p.is_file():
                data = p.read_bytes()
                for secret in (b"Zyxwvut", b"Quentina", b"PID-99887766", b"19010203"):
                    assert secret not in data, (p, secret)


def test_hf_dataset_import(tmp_path, ws):
    folder = tmp_path / "hfdata" / "train"
    folder.mkdir(parents=True)
    rows = []
    for k, c in enumerate(("red", "green", "blue")):
        Image.new("RGB", (24, 24), c).save(folder / f"{k}.png")
        rows.append({"file_name": f"{k}.png", "text": f"A {c} image." if k else "", "label": ["a", "b", "c"][k]})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = import_dataset(ws, str(tmp_path / "hfdata"), modality="histology")
    assert len(report.added) == 3 and not report.rejected
    items = [ws.get(i) for i in report.added]
    assert sorted((i.label, i.text, i.status) for i in items) == [
        ("a", "", "draft"), ("b", "A green image.", "edited"), ("c", "A blue image.", "edited")
    ]  # fmt: skip
    again = import_dataset(ws, str(tmp_path / "hfdata"))
    assert len(again.duplicates) == 3 and not again.added
    with pytest.raises(ValueError, match="could not load the dataset"):
        import_dataset(ws, str(tmp_path / "missing-dir"))


def test_hf_dataset_goes_into_the_split_asked_for(tmp_path, capsys):
    """`import --hf-dataset X --split test` puts the images in the workspace's test split (earlier
    they went to train, where held-out images would reach training)."""
    from helpers import make_data
    from medart.cli import main

    make_data(tmp_path / "hfdata" / "train", n=3)
    make_data(tmp_path / "other" / "train", prefix="histology", n=2)
    w = ["--workspace", str(tmp_path / "ws")]
    assert main(["import", "--hf-dataset", str(tmp_path / "hfdata"), "--split", "test", *w]) == 0
    assert main(["import", "--hf-dataset", str(tmp_path / "other"), *w]) == 0  # default: train
    with Workspace(tmp_path / "ws") as ws:
        assert ws.split_counts() == [("fundus", "test", 3), ("histology", "train", 2)]
    assert main(["import", "--hf-dataset", str(tmp_path / "hfdata"), "--split", "val", *w]) == 2
    assert "unknown split 'val'" in capsys.readouterr().err


def test_limits_and_failed_import_leaves_nothing(tmp_path, ws, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        Image.new("RGB", (50, 50), (k * 40, 0, 0)).save(src / f"{k}.png")
    Image.new("RGB", (4, 4)).save(src / "tiny.png")
    report = import_paths(ws, [src / "0.png", src / "tiny.png"], limits=ImportLimits(max_pixels=2000))
    assert not report.added
    reasons = [r.reason for r in report.rejected]
    assert "over the limit of 2,000" in reasons[0] and "too small" in reasons[1]

    def boom(self, rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Workspace, "add_images", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        import_paths(ws, [src])
    monkeypatch.undo()
    assert ws.count(Filter()) == 0
    assert [p for p in ws.root.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg")] == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_paths(ws, [tmp_path / "nope"])
    assert len(import_paths(ws, [src]).added) == 4


def test_cli_import_reports_rejections(tmp_path, capsys):
    from medart.cli import main

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (20, 20), "red").save(src / "a.png")
    (src / "b.png").write_bytes(b"")
    code = main(["import", str(src), "--label", "x", "--workspace", str(tmp_path / "ws"), "--base-model", "tiny"])
    out = capsys.readouterr().out
    assert code == 0 and "imported 1 image(s)" in out and "rejected: in/b.png: empty file" in out
    assert main(["import", "--workspace", str(tmp_path / "ws")]) == 2
    assert "nothing to import" in capsys.readouterr().err
    # a base model whose tokenizer cannot be loaded: the import still works, without token counts
    (src / "c.txt").write_text("A caption that came along.")
    Image.new("RGB", (20, 20), "blue").save(src / "c.png")
    assert main(["import", str(src), "--workspace", str(tmp_path / "ws"), "--base-model", "no-such-model"]) == 0
    captured = capsys.readouterr()
    assert "warning: caption token counts unavailable" in captured.err and "imported 1 image(s)" in captured.out
    with Workspace(tmp_path / "ws") as w:
        assert w.get(2).text == "A caption that came along." and w.get(2).token_count is None
    # captioning needs the tokenizer for the 120-token rule, so it refuses with the reason
    assert main(["caption", "--workspace", str(tmp_path / "ws"), "--base-model", "no-such-model"]) == 2
    assert "Unknown base model 'no-such-model'" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "ws")


def test_labels_taken_from_folder_names_are_shown(tmp_path, capsys):
    from medart.cli import main

    src = tmp_path / "cases"
    for k, folder in enumerate(("ulcer", "polyp", "polyp", "train")):
        (src / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (k * 50, 9, 9)).save(src / folder / f"{k}.png")
    assert main(["import", str(src), "--workspace", str(tmp_path / "ws"), "--base-model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "imported 4 image(s)" in out and "labels taken from folder names: polyp (2), ulcer (1);" in out
    with Workspace(tmp_path / "ws") as w:
        assert w.stats()["labels"] == {"": 1, "polyp": 2, "ulcer": 1}  # 'train' is a split, not a label
    Image.new("RGB", (20, 20), "white").save(src / "ulcer" / "9.png")
    assert main(["import", str(src), "--label", "lesion", "--workspace", str(tmp_path / "ws2")]) == 0
    assert "labels taken from folder names" not in capsys.readouterr().out  # the given label wins

    from medart.ui.data import summarise

    report = import_paths(Workspace(tmp_path / "ws3"), [src])
    text, _ = summarise([report])
    assert "labels taken from folder names: polyp (2), ulcer (2)" in text


def test_max_pixels_is_the_only_limit_both_ways(tmp_path, ws, monkeypatch):
    """Pillow's own guard (89.5 M pixels; an error above twice that) neither fires before
    --max-pixels nor survives raising it."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "huge.png").write_bytes(bomb_png(15000, 15000))  # claims 225 M pixels, over twice Pillow's default
    default = import_paths(ws, [src / "huge.png"])
    assert "decompression bomb: the image is over the limit of 100,000,000 pixels" in default.rejected[0].reason
    raised = import_paths(ws, [src / "huge.png"], limits=ImportLimits(max_pixels=300_000_000))
    assert "decompression bomb" not in raised.rejected[0].reason  # past the size check: its data is missing
    assert "truncated" in raised.rejected[0].reason
    # a Pillow guard far below the flag (as if 2,500 pixels were a bomb) does not apply either
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(gradient(50, 50)).save(src / "small.png")
    assert len(import_paths(ws, [src / "small.png"]).added) == 1
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after the import
    Image.fromarray(gradient(60, 50)).save(src / "other.png")
    low = import_paths(ws, [src / "other.png"], limits=ImportLimits(max_pixels=2999))
    assert "over the limit of 2,999 pixels" in low.rejected[0].reason and not low.added


KILLED_IMPORT = """
import os, signal, sys
from medart.workspace.importers import import_paths
from medart.workspace import Workspace

ws, src, how = sys.argv[1:4]
add = Workspace.add_images

def stop(self, rows):  # every image file is written; the rows are not
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("written", flush=True)
    sys.stdin.readline()  # a slow import, still running
    return add(self, rows)

Workspace.add_images = stop
print(len(import_paths(Workspace(ws), [src]).added), flush=True)
"""


def test_killed_import_files_are_removed_when_no_import_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    ws_dir = tmp_path / "ws"
    killed, live = tmp_path / "killed", tmp_path / "live"
    for folder, colour in ((killed, 10), (live, 200)):
        folder.mkdir()
        for k in range(3):
            Image.new("RGB", (20, 20), (colour, k * 60, 0)).save(folder / f"{k}.png")

    def files():
        return sorted(p.name for p in ws_dir.rglob("*") if p.suffix in (".png", ".jpg"))

    # a slow import is running (its files written, its rows not yet) when another is killed
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, str(ws_dir), str(live), "wait"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        running = files()
        assert len(running) == 6  # 3 images + 3 thumbnails
        run = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(ws_dir), str(killed), "kill"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == -9, run.stderr
        orphans = sorted(set(files()) - set(running))
        assert len(orphans) == 6 and len(list((ws_dir / "imports").iterdir())) == 2
        with Workspace(ws_dir) as w:  # while an import runs, opening collects nothing
            assert w.count() == 0 and len(files()) == 12
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "3"
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
    assert len(files()) == 12 and len(list((ws_dir / "imports").iterdir())) == 1
    # no import runs: the next opening removes the killed import's files, and only those
    with Workspace(ws_dir) as w:
        assert w.count() == 3
        kept = {i.sha256 for i in w.query(limit=None)}
        assert files() == sorted(f"{sha}.{ext}" for sha in kept for ext in ("png", "jpg"))
        assert set(orphans).isdisjoint(files())
    assert not list((ws_dir / "imports").iterdir())


def test_files_given_together_bring_their_sidecars(tmp_path, ws):
    """An upload is files, each on its own (Gradio keeps each in a folder of its own): their
    metadata.jsonl, metadata.csv and .txt sidecars still caption them, matched by name."""
    names = []
    for k in range(4):
        folder = tmp_path / f"upload-{k}"  # as Gradio stores uploads
        folder.mkdir()
        Image.new("RGB", (16, 16), (40 * k, 90, 200)).save(folder / f"fundus_{k:02d}.png")
        names.append(folder / f"fundus_{k:02d}.png")
    meta = tmp_path / "upload-m" / "metadata.jsonl"
    meta.parent.mkdir()
    meta.write_text("".join(json.dumps({"file_name": f"fundus_{k:02d}.png", "text": f"A fundus image {k}."}) + "\n"
                            for k in (0, 1, 7)))
    csv_file = tmp_path / "upload-c" / "metadata.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("file_name,caption,label\nfundus_02.png,A fundus image two.,retina\n")
    txt = tmp_path / "upload-t" / "fundus_03.txt"
    txt.parent.mkdir()
    txt.write_text("A fundus image three.")
    report = import_paths(ws, [*names, meta, csv_file, txt])
    items = {ws.get(i).original_name: ws.get(i) for i in report.added}
    assert len(report.added) == 4 and report.captions == 4 and report.rejected == [] and report.unlisted == 1
    assert [items[f"fundus_{k:02d}.png"].text for k in range(4)] == [
        "A fundus image 0.", "A fundus image 1.", "A fundus image two.", "A fundus image three."]
    assert items["fundus_02.png"].label == "retina" and all(i.status == "edited" for i in items.values())
    assert report.summary().startswith("imported 4 image(s) (4 with captions), 0 duplicate(s), 0 rejected")


def test_importing_again_changes_nothing_and_says_what_it_left_alone(tmp_path, ws):
    src = tmp_path / "cases"
    (src / "polyps").mkdir(parents=True)
    for k in range(3):
        Image.new("RGB", (20, 20), (k * 60, 10, 10)).save(src / "polyps" / f"p{k}.png")
    (src / "polyps" / "p0.txt").write_text("A polyp, as imported.")
    first = import_paths(ws, [src])
    ws.set_labels([first.added[0]], "adenoma")  # a person's work after the first import
    ws.set_split([first.added[1]], "test")
    ws.set_text(first.added[0], "A polyp, as a person wrote it.", approve=True)
    before = [(i.label, i.split, i.text, i.status) for i in ws.query(limit=None)]
    again = import_paths(ws, [src], label="other", split="validation")
    assert [(i.label, i.split, i.text, i.status) for i in ws.query(limit=None)] == before
    assert not again.added and sorted(again.present) == sorted(first.added)
    assert again.summary().startswith("imported 0 image(s) (0 with captions), 3 duplicate(s) (3 already in the "
                                      "workspace, left as they are: label, split and caption unchanged), 0 rejected")


def test_loading_the_demo_again_leaves_a_hold_out_as_it_is(tmp_path, ws):
    from medart.ui.data import import_demo, summarise
    from medart.workspace.splits import hold_out

    import_demo(ws)
    hold_out(ws, test=0.5, seed=3)  # tops the demo's test split up
    before = {i.id: (i.label, i.split, i.text) for i in ws.query(limit=None)}
    text, rows = summarise(import_demo(ws))
    assert {i.id: (i.label, i.split, i.text) for i in ws.query(limit=None)} == before
    assert "**Imported 0 image(s)**" in text and "**16 already in the workspace, left as they are**" in text
    assert ws.undo().action == "hold out"  # the last change is still the hold-out: the demo moved nothing


def gradient_png(folder):
    path = folder / "gradient.png"
    Image.fromarray(gradient()).save(path)
    return path


def test_an_empty_zip_or_folder_says_it_holds_no_images(tmp_path, ws):
    from medart.ui.data import summarise

    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("notes/readme.txt", "nothing here")
    report = import_paths(ws, [empty])
    assert report.summary().startswith("nothing imported: the zip holds no images")
    assert summarise([report])[0].startswith("**Nothing imported: the zip holds no images.**")
    (tmp_path / "blank").mkdir()
    both = import_paths(ws, [empty, tmp_path / "blank"])
    assert both.headline() == "nothing imported: the folder and the zip hold no images" and ws.count() == 0
    twice = import_paths(ws, [empty, empty, tmp_path / "blank", gradient_png(tmp_path)])
    assert twice.headline().startswith("imported 1 image(s)") and "the folder and the 2 zips hold no images" in \
        twice.notices()


def test_captions_too_long_are_left_out_or_flagged_on_import(tmp_path, ws):
    from medart.workspace import MAX_CAPTION_CHARS

    src = tmp_path / "cases"
    src.mkdir()
    for k in range(3):
        Image.new("RGB", (20, 20), (10, k * 60, 10)).save(src / f"c{k}.png")
    (src / "c0.txt").write_text("reddish " * (3_000_000 // 8))  # 3 MB
    (src / "c1.txt").write_text("An endoscopic image of a polyp with " + "reddish mucosa and dark vessels, " * 60)
    (src / "c2.txt").write_text("A short caption.")
    from transformers import AutoTokenizer

    from medart.tiny_base import TOKENIZER_DIR

    ws.tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    ws.token_limit = 120
    report = import_paths(ws, [src])
    texts = {ws.get(i).original_name: ws.get(i) for i in report.added}
    assert len(report.added) == 3 and texts["c0.png"].text == "" and texts["c2.png"].text == "A short caption."
    assert len(texts["c1.png"].text) < MAX_CAPTION_CHARS and texts["c1.png"].token_count > 120
    notes = "\n".join(report.notices())
    assert "1 caption(s) longer than 10,000 characters (the longest 2,999,999) were left out" in notes
    assert f"longer than the base model reads (120 T5 tokens): #{texts['c1.png'].id} (" in notes
    with pytest.raises(ValueError, match="shorten it before approving"):
        ws.approve([texts["c1.png"].id])


def test_an_upload_counts_every_file_given_and_a_folder_skips_documents(tmp_path, ws):
    """A bad PNG, a .docx and an empty zip uploaded together: three files, numbered of 3, the zip
    among them; a folder's README and script are skipped as not images, not rejected."""
    from medart.ui.data import summarise

    bad, doc, empty = tmp_path / "a.png", tmp_path / "notes.docx", tmp_path / "empty.zip"
    bad.write_bytes(b"\x89PNG broken")
    doc.write_bytes(b"PK\x03\x04 not really")
    with zipfile.ZipFile(empty, "w"):
        pass
    report = import_paths(ws, [bad, doc, empty], anonymous=True)
    text, rows = summarise([report])
    named = [name for name, _ in rows]
    assert named == ["file 1 of 3 (PNG)", "file 2 of 3 (DOCX)", "file 3 of 3 (zip)"], rows
    assert rows[2][1] == "skipped: a zip that holds no images" and len(report.rejected) == 2
    assert "2 rejected, 1 skipped (not images)." in text
    folder = tmp_path / "demo"
    folder.mkdir()
    Image.fromarray(gradient()).save(folder / "fundus_1.png")
    (folder / "SOURCE.md").write_text("# Where the images come from\n")
    (folder / "build.py").write_text("print('build')\n")
    (folder / "notes.xyz").write_text("?")
    report = import_paths(ws, [folder])
    assert [r.name for r in report.skipped] == ["demo/SOURCE.md", "demo/build.py"]
    assert {r.reason for r in report.skipped} == {"not an image (a document or code file)"}
    assert [r.name for r in report.rejected] == ["demo/notes.xyz"]  # an unknown kind is still said plainly
    assert report.headline() == ("imported 1 image(s) (0 with captions), 0 duplicate(s), 1 rejected, "
                                 "2 skipped (not images)")
