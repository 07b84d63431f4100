"""Crafted files against the import's bounds: each test builds a small attacking file and checks
the outcome by numbers. Memory is measured in a child process capped at 4 GB of address space
(`prlimit --as`), whose peak resident memory (VmHWM, reset once the decoders are loaded) may
grow by a stated bound over its warmed-up baseline; work is counted (decodes, archive parses), not timed."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medart.evaluation.sets import EvaluationError, load_image_folder
from medart.studio.paths import PathRefused, ServerPaths
from medart.workspace import Workspace
from medart.workspace import importers
from medart.workspace.importers import ImportLimits, import_dataset, import_paths

ROOT = Path(__file__).resolve().parents[1]
CAP = ["prlimit", "--as=4000000000"] if shutil.which("prlimit") else []
CHILD = r"""
import json, sys
from PIL import Image
from medart.workspace import Workspace
from medart.workspace.importers import ImportLimits, decode_image, import_paths

def kib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])

source, workspace, anonymous = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
Image.init()
decode_image(open(sys.argv[4], "rb").read(), ImportLimits())  # loads the decoders before the baseline
with Workspace(workspace) as ws:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from here: start-up's own peak is not counted
    base = kib("VmRSS:")
    report = import_paths(ws, [source], anonymous=anonymous)
    peak = kib("VmHWM:")
print(json.dumps({"grown_mb": (peak - base) / 1024, "added": len(report.added),
                  "rejected": [r.reason for r in report.rejected]}))
"""


def png_bytes(size=(16, 16), color=(10, 200, 30), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG", **save)
    return buf.getvalue()


def import_in_child(path: Path, tmp_path: Path, anonymous: bool = False) -> dict:
    warm = tmp_path / "warm.png"
    warm.write_bytes(png_bytes())
    done = subprocess.run([*CAP, sys.executable, "-c", CHILD, str(path), str(tmp_path / "ws"), str(int(anonymous)),
                           str(warm)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tags_bomb(tags: int, block: int, declared: int | None = None) -> bytes:
    """A TIFF structure (8x8 gray pixels first) whose first directory holds `tags` UNDEFINED tags,
    each saying it holds `declared` (default `block`) bytes, all pointing at the same block."""
    pixels_at, block_at = 8, 8 + 64
    ifd_at = block_at + block
    base = {256: 8, 257: 8, 258: 8, 259: 1, 262: 1, 277: 1, 278: 8}
    entries = [struct.pack("<HHIHH", t, 3, 1, v, 0) for t, v in base.items()]
    entries += [struct.pack("<HHII", 273, 4, 1, pixels_at), struct.pack("<HHII", 279, 4, 1, 64)]
    entries += [struct.pack("<HHII", 40000 + k, 7, declared or block, block_at) for k in range(tags)]
    entries.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + bytes(64) + bytes(block) + ifd


def tiled_tiff(tile: int) -> bytes:
    """A 16x16 deflated TIFF of one tile, the tile declared `tile` x `tile` pixels."""
    body = zlib.compress(bytes(1 << 16), 9)  # what a 256x256 tile holds
    ifd_at = 8 + len(body) + len(body) % 2
    tags = [(256, 4, 1, 16), (257, 4, 1, 16), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (277, 3, 1, 1),
            (322, 4, 1, tile), (323, 4, 1, tile), (324, 4, 1, 8), (325, 4, 1, len(body))]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + body + bytes(len(body) % 2) + ifd


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tiff", "png", "webp", "jpeg"])
def test_tags_that_share_one_block_cost_no_memory(tmp_path, kind):
    """Finding 1: 600 tags of 1 MiB each over one 1 MiB block (Pillow copied each: 600+ MB); a
    JPEG's EXIF holds 64 KiB: 4,000 tags of 60,000 bytes each there (Pillow read them on open)."""
    blob = tags_bomb(600, 1 << 20) if kind != "jpeg" else tags_bomb(4000, 16 << 10, declared=60_000)
    if kind == "jpeg":
        path = tmp_path / "photo.jpg"
        Image.new("RGB", (16, 16), (10, 200, 30)).save(path, "JPEG", exif=b"Exif\x00\x00" + blob)
        assert path.stat().st_size < 128 << 10
        result = import_in_child(path, tmp_path)
        assert result["grown_mb"] < 100, result
        assert result["added"] == 0 and "tags of its EXIF block would take more than" in result["rejected"][0]
        return
    if kind == "tiff":
        path = tmp_path / "scan.tif"
        path.write_bytes(blob)
    else:  # the same structure as the image's EXIF block
        path = tmp_path / f"photo.{kind}"
        Image.new("RGB", (16, 16), (10, 200, 30)).save(path, kind.upper(), exif=blob, lossless=True)
    assert path.stat().st_size < 2 << 20
    result = import_in_child(path, tmp_path)
    assert result["grown_mb"] < 150, result
    if kind == "tiff":
        assert result["added"] == 0 and "tags of its TIFF block would take more than" in result["rejected"][0]
    else:  # the EXIF block is never parsed beyond its orientation: the image comes in
        assert result["added"] == 1, result


@pytest.mark.slow
def test_a_tiny_tiff_declaring_huge_tiles_is_refused_before_decoding(tmp_path):
    """Finding 4: a 16x16 TIFF under 1 KB with 46336x46336 tiles (libtiff reserved 2 GiB)."""
    path = tmp_path / "tile.tif"
    path.write_bytes(tiled_tiff(46336))
    assert path.stat().st_size < 1024
    result = import_in_child(path, tmp_path)
    assert result["grown_mb"] < 150, result
    assert result["added"] == 0 and "tiles (46336x46336) are far larger than the image (16x16)" in result["rejected"][0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_the_exif_orientation_is_still_applied(tmp_path, fmt):
    image = Image.new("RGB", (16, 32), (200, 20, 20))
    image.paste((20, 20, 200), (0, 0, 16, 8))  # blue band on top
    buf = io.BytesIO()
    if fmt == "TIFF":
        image.save(buf, fmt, tiffinfo={274: 6})
    else:
        exif = Image.Exif()
        exif[274] = 6  # rotate 90 degrees clockwise to view
        image.save(buf, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    rgb, _ = importers.decode_image(buf.getvalue(), ImportLimits())
    assert rgb.size == (32, 16) and not rgb.info
    assert rgb.getpixel((28, 8))[2] > 150 and rgb.getpixel((4, 8))[0] > 150  # the band is now on the right


def overlapping_zip(member: bytes, copies: int) -> bytes:
    """A zip whose central directory lists one stored member `copies` times."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.png", member)
    data = buf.getvalue()
    eocd = data.rfind(b"PK\x05\x06")
    size, at = struct.unpack_from("<II", data, eocd + 12)
    directory = data[at:at + size] * copies
    return data[:at] + directory + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, copies, copies,
                                               len(directory), at, 0)


def count_calls(monkeypatch, owner, name) -> list:
    calls, real = [], getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_overlapping_zip_members_are_not_decoded_once_per_listing(tmp_path, monkeypatch):
    """Finding 3a: one stored PNG listed 50 times was decoded 50 times."""
    path = tmp_path / "scans.zip"
    path.write_bytes(overlapping_zip(png_bytes((64, 64)), 50))
    decodes = count_calls(monkeypatch, importers, "decode_image")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [path])
    assert len(decodes) == 0 and not report.added
    assert [r.reason for r in report.rejected] == [
        "crafted zip archive: its members overlap (one member's data is listed more than once); not opened"]


def test_a_zip_is_parsed_once_whatever_its_members(tmp_path, monkeypatch):
    """Finding 3b: every member read parsed the central directory again (quadratic)."""
    path = tmp_path / "scans.zip"
    with zipfile.ZipFile(path, "w") as z:
        for n in range(40):
            z.writestr(f"scan{n}.png", png_bytes(color=(n, 100, 30)))
    parses = count_calls(monkeypatch, zipfile.ZipFile, "_RealGetContents")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [path])
    assert len(report.added) == 40 and len(parses) == 1


def test_a_zip_whose_members_inflate_past_its_budget_is_cut(tmp_path, monkeypatch):
    """Finding 6 (zips): members inflate in all at most MAX_ZIP_RATIO x the archive (+ ZIP_FLOOR)."""
    monkeypatch.setattr(importers, "ZIP_FLOOR", 0)
    path = tmp_path / "scans.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(20):  # members under 1 MiB have no ratio of their own to check: 1 KB -> 1 MiB each
            z.writestr(f"scan{n}.bmp", bytes((1 << 20) - 1024))
    reads = count_calls(monkeypatch, importers, "decode_image")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [path])
    cut = [r for r in report.rejected if "inflate to more than 100 times its size in all" in r.reason]
    assert len(reads) <= 3 and len(cut) >= 17, report.summary()


def test_an_uploaded_zip_keeps_no_member_name(tmp_path):
    """Finding 2: an uploaded zip's folder became a label and its file name was stored and shown."""
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Doe^Jane_MRN-123/Doe^Jane_photo.png", png_bytes())
        z.writestr("Doe^Jane_MRN-123/Doe^Jane_broken.png", b"\x89PNG broken")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [path], anonymous=True)
        rows = [(i.original_name, i.label) for i in ws.query(limit=None)]
    assert len(rows) == 1 and rows[0][0].startswith("image-") and rows[0][1] is None
    assert "Doe" not in report.summary() and not report.folder_labels
    assert "rejected: file 2 of 2 (PNG): not a readable image" in report.summary()
    db = sqlite3.connect(tmp_path / "ws" / "workspace.db").iterdump()
    assert "Doe" not in "\n".join(db)


def uid_named_dicom(path: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "DOE^JANE"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def test_dicom_named_by_uid_or_ima_makes_its_folder_nameless(tmp_path):
    """Finding 7: `1.2.840...1` and `.ima` were 'unsupported file type' and the folder kept its names."""
    patient = tmp_path / "pacs" / "Hospital" / "DOE^JANE_MRN-123"
    uid_named_dicom(patient / "1.2.840.113619.2.55.3.604688119.868.1")
    shutil.copy(patient / "1.2.840.113619.2.55.3.604688119.868.1", patient / "IM0002.ima")
    (patient / "DOE^JANE_photo.png").write_bytes(png_bytes())
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [tmp_path / "pacs"])
        rows = [(i.original_name, i.label) for i in ws.query(limit=None)]
    assert len(rows) == 2 and len(report.duplicates) == 1 and not report.rejected
    assert all(name.startswith(("dicom-", "image-")) and label is None for name, label in rows), rows
    assert "DOE" not in report.summary()


def test_an_uploads_duplicate_quotes_no_stored_name(tmp_path):
    """Finding 8: the message quoted the existing image's stored name."""
    (tmp_path / "Doe^Jane_MRN-123.png").write_bytes(png_bytes())
    (tmp_path / "upload.png").write_bytes(png_bytes())
    with Workspace(tmp_path / "ws") as ws:
        import_paths(ws, [tmp_path / "Doe^Jane_MRN-123.png"])
        report = import_paths(ws, [tmp_path / "upload.png"], anonymous=True)
    assert len(report.duplicates) == 1 and report.duplicates[0][1] == "image 1"
    assert "Doe" not in report.summary()


def test_dicom_beyond_eight_bytes_a_pixel_is_refused(tmp_path):
    """Finding 5: 64-bit samples (4 x 64 bits: 32 bytes a pixel) were decoded."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 64, 63
    ds.PixelData = np.arange(ds.Rows * ds.Columns, dtype=np.uint64).tobytes()
    ds.save_as(tmp_path / "scan.dcm")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [tmp_path / "scan.dcm"])
    assert not report.added
    assert report.rejected[0].reason.startswith("unsupported pixel format: 1 sample(s) of 64 bits per pixel")


@pytest.mark.slow
def test_a_16_bit_image_costs_a_few_bytes_a_pixel(tmp_path):
    """Finding 6: a 16-bit PNG cost 31 bytes a pixel (float64 copies, whole-image byte copies to
    hash and store it); 4000x4000 here, 8.3 bytes a pixel now."""
    side = 4000
    gray = (np.add.outer(np.arange(side), np.arange(side)) * 7 % 65536).astype(np.uint16)
    path = tmp_path / "scan.png"
    Image.fromarray(gray).save(path)
    result = import_in_child(path, tmp_path)
    assert result["added"] == 1
    assert result["grown_mb"] * (1 << 20) / side**2 < 10, result  # decoded, converted, hashed and stored


def test_a_jpeg_with_many_scans_is_refused_uncounted(tmp_path):
    """Finding 6: a progressive JPEG whose last scan is repeated 500 times was decoded per copy."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 40, 20)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last = data.rfind(b"\xff\xda")
    crafted = data[:last] + data[last:-2] * 500 + b"\xff\xd9"
    with pytest.raises(importers.Rejected, match="the JPEG has 5.. scans"):
        importers.decode_image(crafted, ImportLimits())


def test_memory_error_is_one_rejection(tmp_path, monkeypatch):
    """Finding 11: a MemoryError aborted the whole import with an empty message."""
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "b.png").write_bytes(png_bytes(color=(1, 2, 3)))
    real = importers.decode_image

    def decode(data, limits):
        if data == (tmp_path / "a.png").read_bytes():
            raise MemoryError()
        return real(data, limits)

    monkeypatch.setattr(importers, "decode_image", decode)
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [tmp_path / "a.png", tmp_path / "b.png"])
    assert len(report.added) == 1 and report.rejected[0].reason.startswith("not enough memory to read it here")


def test_dataset_errors_are_one_line_without_absolute_paths(tmp_path, monkeypatch):
    """Findings 10 and 11: an empty dataset's error quoted absolute paths; a metadata row naming
    ../../outside raised the datasets library's own error type."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "emptyds").mkdir()
    bad = tmp_path / "badds"
    bad.mkdir()
    (bad / "a.png").write_bytes(png_bytes())
    (bad / "metadata.csv").write_text("file_name,text\n../../outside.png,x\n")
    with Workspace(tmp_path / "ws") as ws:
        for name in ("emptyds", "badds"):
            with pytest.raises(ValueError) as caught:
                import_dataset(ws, name)
            message = str(caught.value)
            assert str(tmp_path) not in message and "\n" not in message, message
            assert message.startswith(f"could not load the dataset '{name}'")


def test_links_out_of_the_roots_are_refused(tmp_path):
    """Finding 9: a base model folder whose `unet` links outside; held-out metadata linking outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "model").mkdir(parents=True)
    outside.mkdir()
    (outside / "unet").mkdir()
    (outside / "metadata.csv").write_text("file_name,text\nsecret-patient.png,Doe^Jane\n")
    (root / "model" / "unet").symlink_to(outside / "unet")
    with pytest.raises(PathRefused, match="holds a link that leads outside"):
        ServerPaths([root]).folder_or_id(str(root / "model"), "base model")
    held = root / "held"
    held.mkdir()
    (held / "metadata.csv").symlink_to(outside / "metadata.csv")
    with pytest.raises(EvaluationError) as caught:
        load_image_folder(held)
    assert "leads outside the folder" in str(caught.value) and str(tmp_path) not in str(caught.value)
    assert "Doe" not in str(caught.value)
    (root / "empty").mkdir()
    with pytest.raises(EvaluationError) as caught:  # finding 10: evaluation messages quoted absolute paths
        load_image_folder(root / "empty")
    assert str(caught.value) == "no images in the held-out images' folder 'empty'"


def test_the_app_says_one_line_for_memory_and_names_the_dataset_as_typed(tmp_path, monkeypatch, caplog):
    """Findings 10 and 11 in the app: a dataset typed `emptyds` was quoted by its absolute path,
    and a MemoryError was an empty error with a traceback in the log."""
    import gradio as gr

    from medart.studio import Studio
    from medart.ui import data
    from medart.ui.widgets import user_errors

    monkeypatch.chdir(tmp_path)
    (tmp_path / "emptyds").mkdir()
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[str(tmp_path)])
    with pytest.raises(gr.Error) as shown:
        user_errors(data.import_hf_dataset)(studio, "emptyds", "train", "", "")
    assert shown.value.message.startswith("could not load the dataset 'emptyds'")
    assert str(tmp_path) not in shown.value.message

    def exhausted():
        raise MemoryError()

    with pytest.raises(gr.Error) as shown:
        user_errors(exhausted)()
    assert shown.value.message.startswith("not enough memory on the server")
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_training_data_is_checked_like_an_import(tmp_path):
    """Finding 1 for training: a folder's TIFF whose tags share one block is a listed problem,
    read without Pillow copying the block per tag."""
    from types import SimpleNamespace

    from medart.config import TrainConfig
    from medart.data import DataError, load_examples

    (tmp_path / "bomb.tif").write_bytes(tags_bomb(600, 1 << 20))
    (tmp_path / "ok.png").write_bytes(png_bytes((64, 64)))
    rows = [{"file_name": "bomb.tif", "text": "a scan"}, {"file_name": "ok.png", "text": "a scan"}]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = lambda text: SimpleNamespace(input_ids=text.split())  # noqa: E731
    with pytest.raises(DataError, match="bomb.tif: unreadable image .*tags of its TIFF block would take more than"):
        load_examples(TrainConfig(data=str(tmp_path)), tokenizer)
