"""Nothing of an upload is left behind (issue 18, point 4), tried as another logged-in user
would: uploads (a DICOM with its patient header, a PNG named after the patient, a refused
burned-in DICOM) are fetchable by their `/gradio_api/file=` URL while they wait for an import;
once the import ends, imported or refused, the URLs answer 403/404 and the bytes are gone from
disk. A failed import deletes them too. SIGTERM (systemd, docker, `kill`) removes the app's
private cache folder, as Ctrl-C does."""

from __future__ import annotations

import json
import signal

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
            sent = [("files", (f.name, f.read_bytes())) for f in files]
            stored = http.post("gradio_api/upload", files=sent).json()
            assert len(stored) == 3
            for path, f in zip(stored, files):  # waiting for the import, the uploads are served
                response = http.get(f"gradio_api/file={path}")
                assert response.status_code == 200 and response.content == f.read_bytes()
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
    upload = cache / "0f3a" / "Doe_Jane_photo.png"
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
    with pytest.raises(ValueError, match="upload the files again"):
        data.import_uploads(studio, [str(upload)], "", "", "train", False)
