"""Names and roots (issue 18, points 2, 8 and 9): an uploaded file's name is patient data and
leaves no trace; photographs in DICOM are held for a look; a rejected file is found by its
position and kind, and a PNG is never called DICOM; `--import-root` governs datasets too
(format names such as `imagefolder`, links out of the roots); a path too long for the system
gets one line without errno text or an absolute path."""

from __future__ import annotations

import os
import sqlite3
import warnings

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from medart.cli import main  # noqa: E402
from medart.studio import Studio  # noqa: E402
from medart.studio.paths import PathRefused, ServerPaths  # noqa: E402
from medart.ui import data  # noqa: E402
from medart.workspace import Workspace  # noqa: E402
from medart.workspace.dicom_import import DicomRejected, decode_dicom  # noqa: E402
from medart.workspace.importers import import_dataset, import_paths  # noqa: E402

SECRETS = ("Doe", "Jane", "Roe", "Richard")
ENDOSCOPIC, PHOTOGRAPHIC, OPHTHALMIC = ("1.2.840.10008.5.1.4.1.1.77.1.1", "1.2.840.10008.5.1.4.1.1.77.1.4",
                                         "1.2.840.10008.5.1.4.1.1.77.1.5.1")


def png(path, colour=(200, 40, 40), size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def dicom(path, shift=0, **tags):
    """CT_small with the patient's name in its header, other pixels (`shift`) and `tags`."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Roe^Richard", "Roe-55555"
    a = ds.pixel_array.copy()
    a[:shift] = a.min()
    ds.PixelData = a.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, v in tags.items():
            setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def strings_of(db_path) -> list[str]:
    db = sqlite3.connect(db_path)
    try:
        return [str(v) for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                for row in db.execute(f"SELECT * FROM {table}") for v in row if isinstance(v, str)]
    finally:
        db.close()


def test_uploaded_files_leave_no_name_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))
    up = tmp_path / "gradio-cache" / f"upload-{'2' * 32}"  # one upload's own folder (see medart.ui.uploads)
    photo = png(up / "Doe^Jane_photo.png")
    (up / "Doe^Jane_photo.txt").write_text("An endoscopy image of polyp.")
    broken = up / "Doe^Jane_2.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n Doe^Jane")
    scan = dicom(up / "Roe^Richard.dcm", BurnedInAnnotation="NO")
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    reports = data.import_uploads(studio, [str(photo), str(up / "Doe^Jane_photo.txt"), str(broken), str(scan)],
                                  "", "", "train", False)
    text, rows = data.summarise(reports)
    assert "Imported 2 image(s)" in text and "1 with a caption" in text
    assert [row[0] for row in rows] == ["file 3 of 4 (PNG)"]
    assert rows[0][1].startswith("not a readable image")
    with studio.workspace() as ws:
        items = ws.query(limit=None)
        assert {i.source for i in items} == {"upload"}
        assert sorted(i.original_name[:6] for i in items) == ["dicom-", "image-"]
        assert [i.text for i in items if i.original_name.startswith("image-")] == ["An endoscopy image of polyp."]
        root = ws.root
    out = tmp_path / "export"
    assert main(["export", "--format", "imagefolder", "--out", str(out), "--split", "all", "--keep-names", "--all",
                 "--workspace", str(root)]) == 0
    printed = capsys.readouterr()
    texts = [text, *[c for row in rows for c in row], printed.out, printed.err, *strings_of(root / "workspace.db")]
    assert not [t for t in texts for s in SECRETS if s in t]
    files = [p for folder in (root, out) for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 5
    assert not [p for p in files for s in SECRETS if s in str(p)]
    assert not [p for p in files if p.suffix in (".json", ".jsonl", ".csv", ".txt")
                for s in SECRETS if s.encode() in p.read_bytes()]


def test_files_given_with_a_dicom_follow_the_export_rule(tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [dicom(tmp_path / "a.dcm", BurnedInAnnotation="NO"),
                                   png(tmp_path / "Doe^Jane_photo.png")])
        assert len(report.added) == 2
        assert {i.source for i in ws.query(limit=None)} == {"dicom"}
        assert not [i for i in ws.query(limit=None) if "Doe" in i.original_name]


def test_a_folder_with_one_dicom_names_every_file_by_its_kind(tmp_path):
    src = tmp_path / "Doe^Jane"
    dicom(src / "a.dcm", BurnedInAnnotation="NO")
    (src / "b.png").write_bytes(b"not a png")
    png(src / "c.jpg", (10, 100, 10))
    (src / "d.jpeg").write_bytes(b"\xff\xd8 broken")
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [src])
    assert len(report.added) == 2
    assert [r.name for r in report.rejected] == ["file 2 of 4 (PNG)", "file 4 of 4 (JPEG)"]
    assert "DICOM file" not in report.summary() and "Doe" not in report.summary()


@pytest.mark.parametrize("tags", [{"SOPClassUID": ENDOSCOPIC, "Modality": "ES"}, {"SOPClassUID": PHOTOGRAPHIC},
                                  {"SOPClassUID": OPHTHALMIC, "Modality": "OP"}, {"Modality": "XC"}])
def test_photographs_in_dicom_are_held_for_a_look(tmp_path, tags):
    held = dicom(tmp_path / "held.dcm", **tags).read_bytes()
    with pytest.raises(DicomRejected, match="a photograph .* whose Burned In Annotation does not say NO") as e:
        decode_dicom(held, 10**8, 8)
    assert "--allow-burned-in" in str(e.value) and "Roe" not in str(e.value)
    assert decode_dicom(held, 10**8, 8, allow_burned_in=True).burned_in
    said_no = dicom(tmp_path / "no.dcm", BurnedInAnnotation="NO", **tags).read_bytes()
    assert not decode_dicom(said_no, 10**8, 8).burned_in


def test_dataset_format_names_read_nothing(tmp_path, monkeypatch):
    """`load_dataset("imagefolder")` reads the working directory: outside the roots here."""
    cwd, root = tmp_path / "app", tmp_path / "root"
    png(cwd / "Doe^Jane_photo.png")
    root.mkdir()
    monkeypatch.chdir(cwd)
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[root])
    for name in ("imagefolder", "ImageFolder", "csv", "json", "parquet"):
        with pytest.raises(PathRefused, match="is a dataset format, not a dataset"):
            data.import_hf_dataset(studio, name, "train", "", "")
    with Workspace(tmp_path / "ws") as ws:
        with pytest.raises(ValueError, match="is a dataset format"):
            import_dataset(ws, "imagefolder")
        assert ws.count() == 0
    with studio.workspace() as ws:
        assert ws.count() == 0


def test_no_link_leads_a_dataset_out_of_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    secret = png(outside / "Doe^Jane_photo.png", (1, 2, 3))
    png(root / "ds" / "train" / "a.png")
    (root / "ds" / "train" / "b.png").symlink_to(secret)
    png(root / "ds2" / "train" / "a.png")
    (root / "ds2" / "more").symlink_to(outside, target_is_directory=True)
    paths = ServerPaths([root])
    for ds in ("ds", "ds2"):
        with pytest.raises(PathRefused, match="holds a link that leads outside the folders this app may read"):
            paths.dataset(str(root / ds))
    png(root / "ds3" / "train" / "a.png")
    assert paths.dataset(str(root / "ds3")) == str((root / "ds3").resolve())
    with Workspace(tmp_path / "ws") as ws:  # the command line (no roots) reads no link out of the folder
        report = import_dataset(ws, str(root / "ds"))
        assert len(report.added) == 1 and len(report.rejected) == 1
        assert "outside the dataset's folder" in report.rejected[0].reason
        assert [np.asarray(Image.open(i.image_path))[0, 0].tolist() for i in ws.query(limit=None)] == [[200, 40, 40]]


def test_a_path_too_long_gets_one_line_without_errno_or_home(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    paths = ServerPaths([home])
    for value in (f"{home}/{'a' * 20000}", f"{home}/{'b' * 300}", f"{home}/{'c' * 200}/" * 30):
        for check in (paths.folder, lambda v: paths.folder_or_id(v, "model"), paths.dataset):
            with pytest.raises(ValueError) as e:
                check(value)
            message = str(e.value)
            assert "\n" not in message and "Errno" not in message and str(tmp_path) not in message, message
    with Workspace(tmp_path / "ws") as ws:
        with pytest.raises(ValueError, match="too long") as e:
            import_paths(ws, [f"{home}/{'a' * 20000}"])
    assert str(tmp_path) not in str(e.value) and "Errno" not in str(e.value)
    assert main(["import", f"{home}/{'a' * 20000}", "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err and str(tmp_path) not in err and "too long" in err


def test_held_out_images_are_read_only_inside_their_folder(tmp_path):
    from medart.evaluation.sets import EvaluationError, load_image_folder

    outside = png(tmp_path / "outside" / "Doe^Jane_photo.png", (1, 2, 3))
    linked, listed = tmp_path / "linked", tmp_path / "listed"
    png(linked / "polyp" / "a.png")
    (linked / "polyp" / "b.png").symlink_to(outside)
    png(listed / "a.png")
    (listed / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n'
                                           '{"file_name": "../outside/Doe^Jane_photo.png", "text": "y"}\n')
    for folder in (linked, listed):
        with pytest.raises(EvaluationError, match="leads outside the folder of held-out images") as e:
            load_image_folder(folder)
        assert str(tmp_path) not in str(e.value)
    (linked / "polyp" / "b.png").unlink()
    assert [r.label for r in load_image_folder(linked)] == ["polyp"]
