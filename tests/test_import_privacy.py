"""No patient data from paths or headers: a PACS-style DICOM export, with the patient and the
hospital in its folder names, file names and header fields, goes through import, captioning,
approval and every export format; none of its patient strings is stored, exported or printed.
Pixels that may show patient data (burned-in annotations) are refused unless allowed."""

import io
import json
import logging
import sqlite3
import warnings

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from medart.cli import main
from medart.workspace.dicom_import import DicomRejected, decode_dicom
from medart.workspace import Workspace

SECRETS = ("Doe^Jane", "Doe_Jane", "Jane", "MRN-99123", "99123", "Elsewhere", "Roe^Richard", "Richard", "55555",
           "19450704", "Dr^Who")
BINARY_SECRETS = [s.encode() for s in SECRETS if len(s) >= 6]  # short ones could occur by chance in pixel bytes
SC_CLASS, US_CLASS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.6.1"


def dicom(path, base="CT_small.dcm", shift=0, **tags):
    """A shipped pydicom test file with the patient's data in its header, new pixels (`shift`)
    and the given tags, saved at `path`."""
    ds = pydicom.dcmread(get_testdata_file(base))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-99123", "19450704"
    ds.InstitutionName, ds.ReferringPhysicianName = "St-Elsewhere-Hospital", "Dr^Who"
    ds.StudyDescription = "Doe^Jane MRN-99123"
    a = ds.pixel_array.copy()
    a[:shift] = a.min()  # a dark band of `shift` rows: other pixels, whatever the windowing
    ds.PixelData = a.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's complaint about the invalid values written on purpose
        for k, v in tags.items():
            setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def pacs_tree(root):
    """St-Elsewhere-Hospital/<patient>/... as PACS exports are laid out."""
    hospital = root / "St-Elsewhere-Hospital"
    jane = hospital / "Doe^Jane_MRN-99123"
    dicom(jane / "IM0001.dcm", Modality="MRN-99123")  # a header string that is not a modality
    dicom(jane / "IM0002.dcm", base="MR_small.dcm")
    dicom(jane / "Doe_Jane_MRN-99123_IM0003.dcm", base="MR_small.dcm", shift=7)
    dicom(jane / "IM0004", shift=3, PhotometricInterpretation="MRN-99123")  # no extension, bad value
    dicom(jane / "IM0005.dcm", shift=5, BurnedInAnnotation="YES")
    dicom(jane / "IM0006.dcm", shift=9, SOPClassUID=SC_CLASS, Modality="OT")  # a screenshot
    (jane / "Doe_Jane_report.pdf").write_bytes(b"%PDF-1.4 Doe^Jane MRN-99123")
    (jane / ".DS_Store").write_bytes(b"\0Doe^Jane")
    dicom(hospital / "Roe^Richard_55555" / "US0001.dcm", shift=11, SOPClassUID=US_CLASS, Modality="US")
    return root


def test_pacs_export_leaves_no_patient_data_anywhere(tmp_path, capsys, caplog, recwarn):
    caplog.set_level(logging.DEBUG)
    src = pacs_tree(tmp_path / "pacs")
    caplog.clear()  # (pydicom's complaints about the values written above)
    recwarn.clear()
    ws = str(tmp_path / "ws")
    printed = []

    def run(*argv):
        code = main([*argv, "--workspace", ws])
        out = capsys.readouterr()
        printed.append(out.out + out.err)
        assert code == 0, out.err
        return out.out

    out = run("import", str(src), "--base-model", "tiny")
    assert "imported 3 image(s)" in out and "5 rejected" in out and "labels taken from folder names" not in out
    # files in the order read: .DS_Store, Doe_Jane_..._IM0003.dcm, Doe_Jane_report.pdf, IM0001.dcm, IM0002.dcm,
    # IM0004, IM0005.dcm, IM0006.dcm, then Roe^Richard_55555/US0001.dcm
    reasons = dict(line.split(": ", 2)[1:] for line in out.splitlines() if "rejected: " in line)
    named = {n: f"file {n} of 9 ({'PDF' if n == 3 else 'DICOM'})" for n in (3, 6, 7, 8, 9)}
    assert sorted(reasons) == sorted(named.values())
    assert "unsupported file type '.pdf'" in reasons[named[3]]
    assert "unsupported Photometric Interpretation" in reasons[named[6]]  # its value is not quoted
    assert "Burned In Annotation is YES" in reasons[named[7]] and "--allow-burned-in" in reasons[named[7]]
    assert "secondary capture" in reasons[named[8]]
    assert "ultrasound" in reasons[named[9]]
    assert "skipped: file 1 of 9 (no extension): hidden or system file" in out and "named by their position" in out

    # pixels that may show patient data: in only when allowed, and then listed for a person to check
    out = run("import", str(src), "--allow-burned-in", "--label", "brain", "--base-model", "tiny")
    assert "imported 3 image(s)" in out and "3 duplicate(s)" in out and "2 rejected" in out
    assert "imported with --allow-burned-in although their pixels may show patient data: #4 #5 #6" in out

    run("caption", "--backend", "offline", "--base-model", "tiny")
    run("approve", "--all")
    listing = run("list", "--json")
    rows = [json.loads(line) for line in listing.splitlines()]
    assert len(rows) == 6 and all(r["status"] == "approved" for r in rows)
    assert [r["label"] for r in rows] == [None, None, None, "brain", "brain", "brain"]  # never a folder's name
    assert rows[0]["text"].startswith("A radiology image,") and rows[3]["text"].startswith("A radiology image of brain")
    exports = []
    for fmt in ("imagefolder", "csv", "txt"):
        for keep in ((), ("--keep-names",)):
            out_dir = tmp_path / f"export-{fmt}{'-names' if keep else ''}"
            run("export", "--format", fmt, "--out", str(out_dir), "--split", "all", *keep)
            exports.append(out_dir)
            assert (out_dir / "manifest.json").exists()
    assert len(list((tmp_path / "export-imagefolder-names" / "train").glob("*-dicom-*.png"))) == 6

    with Workspace(ws) as w:
        items = w.query(limit=None)
        assert {i.source for i in items} == {"dicom"}
        assert all(i.original_name.startswith("dicom-") and i.mode.startswith("DICOM ") for i in items)
        modes = sorted(i.mode for i in items[:3])  # IM0003 (MR), IM0001 (CT), IM0002 (MR)
        assert modes[0] == "DICOM MONOCHROME2 int16"  # IM0001's Modality "MRN-99123" is not a defined term: dropped
        assert modes[1].startswith("DICOM MR ") and modes[2].startswith("DICOM MR ")
    db = sqlite3.connect(f"{ws}/workspace.db")
    texts = [str(v) for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
             for row in db.execute(f"SELECT * FROM {table}") for v in row if isinstance(v, str)]
    db.close()
    assert len(texts) > 30
    messages = printed + texts + [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    for secret in SECRETS:
        assert not [m for m in messages if secret in m], secret
    files = [p for root in [tmp_path / "ws", *exports] for p in root.rglob("*")]
    assert len(files) > 60
    for p in files:
        assert not any(s in str(p.relative_to(tmp_path)) for s in SECRETS), p
        if p.is_file():
            data = p.read_bytes()
            if p.suffix in (".json", ".jsonl", ".csv", ".txt"):
                assert not [s for s in SECRETS if s.encode() in data], p
            assert not [s for s in BINARY_SECRETS if s in data], p


def test_header_values_are_validated_and_never_quoted(tmp_path):
    path = dicom(tmp_path / "a.dcm", Modality="MRN-99123")
    image = decode_dicom(path.read_bytes(), max_pixels=10**8, min_side=8)
    assert image.modality == "" and image.mode == "DICOM MONOCHROME2 int16" and not image.burned_in
    image = decode_dicom(dicom(tmp_path / "b.dcm", Modality="CT").read_bytes(), 10**8, 8)
    assert image.modality == "CT" and image.mode == "DICOM CT MONOCHROME2 int16"
    cases = {
        "photometric": ({"PhotometricInterpretation": "MRN-99123"}, "unsupported Photometric Interpretation"),
        "burned": ({"BurnedInAnnotation": "YES"}, "Burned In Annotation is YES"),
        "sc": ({"SOPClassUID": SC_CLASS}, "secondary capture"),
        "sc-modality": ({"Modality": "SC"}, "secondary capture"),
        "us": ({"Modality": "US"}, "ultrasound"),
        "rows": ({"Rows": 9000, "Columns": 20000}, "over the limit of 100,000,000"),
    }
    for name, (tags, reason) in cases.items():
        data = dicom(tmp_path / f"{name}.dcm", **tags).read_bytes()
        try:
            decode_dicom(data, 10**8, 8)
            raise AssertionError(f"{name} was imported")
        except DicomRejected as e:
            assert reason in str(e) and "MRN" not in str(e) and "Doe" not in str(e), (name, str(e))
    # secondary captures and ultrasound that say NO are imported; burned-in ones when allowed, flagged
    said_no = dicom(tmp_path / "no.dcm", SOPClassUID=SC_CLASS, Modality="US", BurnedInAnnotation="NO")
    assert not decode_dicom(said_no.read_bytes(), 10**8, 8).burned_in
    burned = (tmp_path / "burned.dcm").read_bytes()
    assert decode_dicom(burned, 10**8, 8, allow_burned_in=True).burned_in
    buf = io.BytesIO()
    np.save(buf, np.zeros(1))  # not DICOM at all
    try:
        decode_dicom(buf.getvalue(), 10**8, 8)
        raise AssertionError("not DICOM, yet imported")
    except DicomRejected as e:
        assert "corrupt DICOM file" in str(e)
