"""Nothing of an upload is left behind (issue 18, point 4), tried as another logged-in user
would: uploads (a DICOM with its patient header, a PNG named after the patient, a refused
burned-in DICOM) are fetchable by their `/gradio_api/file=` URL while they wait for an import;
once the import ends, imported or refused, the URLs answer 403/404 and the bytes are gone from
disk. A failed import deletes them too. SIGTERM (systemd, docker, `kill`) removes the app's
private cache folder, as Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from test_import_privacy import dicom

AUTH = ("owner", "pass-7781")


def call(http, name: str, data: list) -> tuple[str, object]:
    """One call through Gradio's HTTP API: ("complete", outputs) or ("error", message)."""
    event = http.post(f"gradio_api/call/{name}", json={"data": data}).json()["event_id"]
    kind, payload = None, None
    for line in http.get(f"gradio_api/call/{name}/{event}").text.splitlines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind in ("complete", "error"):
            payload = json.loads(line[6:])
    return kind, payload


@pytest.mark.slow
def test_uploads_are_gone_after_import_and_the_cache_after_sigterm(tmp_path, medart_cache):
    import httpx

    from apphelpers import AppServer

    uploads = tmp_path / "to-upload"
    uploads.mkdir()
    files = [dicom(uploads / "IM0001.dcm"), dicom(uploads / "IM0002.dcm", shift=4, BurnedInAnnotation="YES")]
    Image.new("RGB", (40, 40), (200, 40, 40)).save(uploads / "Doe_Jane_photo.png")
    files.append(uploads / "Doe_Jane_photo.png")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = AppServer(tmp_path / "home", medart_cache, extra_env={"MEDART_AUTH": ":".join(AUTH), "TMPDIR": str(tmp)})
    server.env.pop("GRADIO_TEMP_DIR", None)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            assert http.post("login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
            refusals = set()  # server paths named as uploads: one reply, existing or not, file or folder
            for named in (str(files[2]), str(uploads / "nonexist.png"), str(uploads), "/etc/shadow"):
                kind, out = call(http, "import_files", [[{"path": named, "meta": {"_type": "gradio.FileData"}}],
                                                        "", "", "train", False, "all", "all", 1])
                refusals.add((kind, json.dumps(out)))
            assert len(refusals) == 1 and next(iter(refusals))[0] == "error"
            assert "Errno" not in str(refusals) and str(uploads) not in str(refusals)
            sent = [("files", (f.name, f.read_bytes())) for f in files]
            stored = http.post("gradio_api/upload", files=sent).json()
            assert len(stored) == 3
            nowhere = http.get(f"gradio_api/file={Path(stored[0]).parent.parent}/upload-{'0' * 32}/x.png")
            for path, f in zip(stored, files):  # waiting for the import, no upload is served back either
                assert Path(path).read_bytes() == f.read_bytes()
                response = http.get(f"gradio_api/file={path}")
                assert (response.status_code, response.content) == (nowhere.status_code, nowhere.content)
            data = [{"path": p, "orig_name": f.name, "meta": {"_type": "gradio.FileData"}}
                    for p, f in zip(stored, files)]
            kind, out = call(http, "import_files", [data, "", "", "train", False, "all", "all", 1])
            assert kind == "complete" and "Imported 2 image(s)" in out[0] and "1 rejected" in out[0]
            for path in stored:  # imported or refused: the raw bytes are gone, from disk and by URL
                assert http.get(f"gradio_api/file={path}").status_code in (403, 404)
            cache = next(tmp.glob("medart-pages-*"))
            left = [p for p in cache.rglob("*") if p.is_file() and p.read_bytes() in {f.read_bytes() for f in files}]
            assert left == []
            assert not any("Doe_Jane" in p.name or p.suffix == ".dcm" for p in cache.rglob("*"))
            # the same upload again: a second import of the gone files gets one line
            again = http.post("gradio_api/upload", files=sent[2:]).json()
            data = [{"path": again[0], "orig_name": files[2].name, "meta": {"_type": "gradio.FileData"}}]
            kind, out = call(http, "import_files", [data, "", "", "train", False, "all", "all", 1])
            assert kind == "complete" and "1 duplicate(s)" in out[0]
            assert http.get(f"gradio_api/file={again[0]}").status_code in (403, 404)
        # SIGTERM stops the app as Ctrl-C does: the private cache folder goes with it
        assert cache.is_dir()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
        assert not cache.exists()
    finally:
        server.kill()


def test_a_failed_import_deletes_its_uploads_too(tmp_path, monkeypatch):
    """The import raises: the uploaded file is deleted all the same; files outside the upload
    cache and page copies are never touched."""
    from medart.studio import Studio
    from medart.ui import data, pictures

    cache = tmp_path / "pages"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    upload = cache / f"upload-{'5' * 32}" / "Doe_Jane_photo.png"
    upload.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(upload)
    outside = tmp_path / "mine.png"
    Image.new("RGB", (8, 8)).save(outside)
    page_copy = cache / "shown" / "ab" / "ab12.png"
    page_copy.parent.mkdir(parents=True)
    page_copy.write_bytes(b"x")

    def broken(*args, **kwargs):
        raise ValueError("the workspace is busy")

    monkeypatch.setattr(data, "_import", broken)
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    with pytest.raises(ValueError, match="busy"):
        data.import_uploads(studio, [str(upload)], "", "", "train", False)
    assert not upload.exists() and not upload.parent.exists()
    assert pictures.discard_uploads([str(outside), str(page_copy), str(cache)]) == 0
    assert outside.exists() and page_copy.exists()
    with pytest.raises(ValueError, match="not uploaded to this page: upload them again"):
        data.import_uploads(studio, [str(upload)], "", "", "train", False)


def test_a_killed_apps_cache_folder_goes_at_the_next_start(tmp_path):
    """A SIGKILLed app (OOM killer, `kill -9`) cannot remove its cache folder with the uploads in
    it: the next start removes this user's folders whose recorded process is gone, and keeps a
    running app's folder and a folder that records no process."""
    import app

    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {}
        for name, pid in (("dead", killed.pid), ("live", running.pid), ("mine", os.getpid()), ("unknown", None)):
            folder = tmp_path / f"medart-pages-{name}"
            (folder / f"upload-{'7' * 32}").mkdir(parents=True)
            (folder / f"upload-{'7' * 32}" / "Doe_Jane.dcm").write_bytes(b"DICM")
            if pid is not None:
                (folder / app.OWNER_FILE).write_text(str(pid))
            folders[name] = folder
        other = tmp_path / "other-pages"
        other.mkdir()
        (other / app.OWNER_FILE).write_text(str(killed.pid))
        assert app.remove_stale_page_caches(str(tmp_path)) == 1
        assert not folders["dead"].exists()
        assert folders["live"].is_dir() and folders["mine"].is_dir() and folders["unknown"].is_dir() and other.is_dir()
    finally:
        running.kill()
        running.wait()


def test_the_app_records_its_process_in_its_cache_folder(tmp_path, monkeypatch):
    import app

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.delenv("GRADIO_EXAMPLES_CACHE", raising=False)
    monkeypatch.setattr(app.tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / "medart-pages-old"
    stale.mkdir()
    (stale / app.OWNER_FILE).write_text("999999999")
    folder = Path(app.private_page_cache())
    assert folder.parent == tmp_path and (folder / app.OWNER_FILE).read_text() == str(os.getpid())
    assert not stale.exists()
