"""The original public Space (issue 12, point 5): strangers share the app, so each browser
session works in its own temporary workspace. Two sessions upload an image each: neither sees
the other's; the shared home workspace is never created; closing a page (its heartbeat ends)
removes that session's workspace and leaves the other's."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from helpers import wait_for


@pytest.fixture
def space(tmp_path, monkeypatch, medart_cache):
    from apphelpers import free_port
    from medart.studio import Studio
    from medart.ui import build_app, launch_kwargs

    monkeypatch.setenv("SPACE_ID", "medart/studio")
    monkeypatch.setenv("MEDART_ORIGINAL_SPACE", "medart/studio")
    monkeypatch.delenv("MEDART_TRAINING", raising=False)
    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    assert studio.per_session and not studio.training_allowed
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_kwargs(studio))
    try:
        yield studio, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_two_sessions_do_not_see_each_others_uploads(space, tmp_path):
    import httpx
    from gradio_client import Client, handle_file

    studio, url = space
    colours = {"a": (220, 30, 30), "b": (30, 30, 220)}
    clients = {}
    for who, colour in colours.items():
        path = tmp_path / f"upload-{who}.png"
        Image.new("RGB", (48, 48), colour).save(path)
        clients[who] = Client(url, verbose=False, download_files=False)
        summary = clients[who].predict([handle_file(str(path))], "", "", "train", False, "all", "all", 1,
                                       api_name="/import_files")[0]
        assert "Imported 1 image(s)" in summary
    for who, colour in colours.items():
        stats, gallery, _, _ = clients[who].predict("all", "all", 1, api_name="/view")
        assert "**Workspace:** 1 image(s)" in stats and len(gallery) == 1
        shown = Image.open(gallery[0]["image"]["path"]).convert("RGB")
        assert shown.getpixel((shown.width // 2, shown.height // 2)) == pytest.approx(colour, abs=12)
    assert len(studio.sessions.keys()) == 2
    assert not (studio.home / "workspace").exists()  # nothing lands in a workspace shared by everyone
    status = clients["a"].predict(api_name="/status")
    assert status["training_allowed"] is False and status["jobs"] == []

    # session a's page closes: its heartbeat ends, its workspace goes; b's stays
    with httpx.Client(timeout=30) as http:
        with http.stream("GET", f"{url}gradio_api/heartbeat/{clients['a'].session_hash}") as beat:
            next(beat.iter_lines())
    wait_for(lambda: len(studio.sessions.keys()) == 1, timeout=60)
    assert "**Workspace:** 1 image(s)" in clients["b"].predict("all", "all", 1, api_name="/view")[0]
    # folder imports are off here: the Space allows no server folders
    with pytest.raises(Exception, match="reads no server folders"):
        clients["b"].predict("/etc", "", "", "train", False, "all", "all", 1, api_name="/import_folder")


def test_a_visitor_cannot_tell_what_another_visitor_imported(space, tmp_path):
    """Issue 18, point 7, tried as a visitor who knows the code and has an image: the page
    copies were named by the image's content hash, so fetching that name told whether another
    session had imported the image (200 against 403). Now no URL derived from the image is
    served, and the same image gets a different URL in every session."""
    import httpx
    from gradio_client import Client, handle_file

    from helpers import noise
    from medart.ui import pictures
    from medart.workspace import Workspace

    studio, url = space
    image = tmp_path / "scan.png"
    noise(7, (48, 48)).save(image)
    victim = Client(url, verbose=False, download_files=False)
    victim.predict([handle_file(str(image))], "", "", "train", False, "all", "all", 1, api_name="/import_files")
    victim_urls = [g["image"]["url"] for g in victim.predict("all", "all", 1, api_name="/view")[1]]
    with Workspace(studio.sessions.path(victim.session_hash)) as ws:
        sha = ws.query(limit=None)[0].sha256  # what the attacker computes from the image it has

    cache = pictures.page_cache()
    guesses = [f"{cache}/shown/{sha[:2]}/{sha}{size}{ext}" for size in ("", "-512", "-256")
               for ext in (".png", ".jpg", ".webp")]
    attacker = Client(url, verbose=False, download_files=False)
    with httpx.Client(base_url=url, timeout=30) as http:
        answers = {http.get(f"gradio_api/file={g}").status_code for g in guesses}
        assert answers <= {403, 404}
        attacker.predict([handle_file(str(image))], "", "", "train", False, "all", "all", 1, api_name="/import_files")
        own = [g["image"]["url"] for g in attacker.predict("all", "all", 1, api_name="/view")[1]]
        assert len(own) == len(victim_urls) == 1 and own != victim_urls  # its own copy: another name
        assert http.get(own[0]).status_code == 200
        assert {http.get(f"gradio_api/file={g}").status_code for g in guesses} <= {403, 404}
    assert not any(sha in p.name for p in (cache / "shown").rglob("*"))


def test_the_import_takes_only_files_uploaded_to_this_page(space, tmp_path):
    """Issue 18 (no server folders on the Space), tried as a visitor who names server paths to
    the upload import instead of uploading: a file outside the upload folder, /etc/shadow, a
    missing file, a folder, a page copy, a link into the upload folder and a `..` path all get
    the same one line (no errno, no path: nothing tells which exist); nothing is imported and
    the named files stay."""
    from test_uploads_left_behind import call

    import httpx

    from medart.ui import pictures

    studio, url = space
    outside = tmp_path / "atk" / "outside2.png"
    outside.parent.mkdir()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(outside)
    cache = pictures.page_cache()
    page_copy = cache / "shown" / "ab" / "ab12.png"
    page_copy.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (10, 10, 200)).save(page_copy)
    link = cache / f"upload-{secrets.token_hex(16)}" / "link.png"
    link.parent.mkdir()
    link.symlink_to(outside)
    with httpx.Client(base_url=url, timeout=60) as http:
        own = http.post("gradio_api/upload", files=[("files", ("mine.png", outside.read_bytes()))]).json()[0]
        elsewhere = [str(outside), "/etc/shadow", str(outside.parent / "nonexist.png"), "/root", str(outside.parent)]
        in_cache = [str(page_copy), str(link), str(cache / "shown" / "ab" / "ab13.png"), str(page_copy.parent),
                    f"{cache}/upload-{secrets.token_hex(16)}/gone.png"]
        replies = {}
        for path in elsewhere + in_cache:
            kind, out = call(http, "import_files", [[{"path": path, "meta": {"_type": "gradio.FileData"}}],
                                                    "", "", "train", False, "all", "all", 1])
            replies[path] = (kind, json.dumps(out))
    # refused by Gradio itself (a path it would not take) or by the handler, in one of two lines
    # that say nothing; a file that exists and one that does not get the same one
    mine = replies[str(page_copy)]
    assert "were not uploaded to this page: upload them again" in mine[1]
    assert set(replies.values()) <= {mine, ("error", '{"error": null}')}
    for there, missing in ((outside, outside.parent / "nonexist.png"), (page_copy, cache / "shown" / "ab" / "ab13.png"),
                           (outside, "/root"), (page_copy, page_copy.parent)):
        assert replies[str(there)] == replies[str(missing)], (there, missing)
    assert all(kind == "error" and "Errno" not in text and "/" not in text for kind, text in replies.values())
    assert all(not any((studio.sessions.path(k)).rglob("*.png")) for k in studio.sessions.keys())
    assert outside.exists() and page_copy.exists() and Path(own).exists()  # refused: nothing deleted either


def test_an_upload_tells_nothing_of_another_visitors_upload(space, tmp_path):
    """Issue 18, tried as a visitor holding the bytes of someone else's upload: Gradio put equal
    bytes in one content-named folder, where the other's file name answered 200 and a guess 403.
    Now each upload gets a random folder of its own, no upload is served back by URL, and every
    probe (the other's exact path, its name in one's own folder, a random name) gets one answer."""
    import httpx

    from medart.ui import pictures

    _, url = space
    data = tmp_path / "scan.png"
    Image.frombytes("RGB", (16, 16), secrets.token_bytes(16 * 16 * 3)).save(data)  # bytes of this test alone
    with httpx.Client(base_url=url, timeout=60) as a, httpx.Client(base_url=url, timeout=60) as b:
        first = a.post("gradio_api/upload", files=[("files", ("patient-jane-doe-1970.png", data.read_bytes()))]).json()[0]
        second = b.post("gradio_api/upload", files=[("files", ("mine.png", data.read_bytes()))]).json()[0]
        assert Path(first).parent != Path(second).parent and Path(first).exists() and Path(second).exists()
        cache = pictures.page_cache()
        assert Path(first).parent.parent == cache and Path(first).parent.name.startswith("upload-")
        probes = [first, f"{Path(second).parent}/patient-jane-doe-1970.png", second,
                  f"{Path(first).parent}/nothing-{secrets.token_hex(4)}.png", f"{cache}/upload-{secrets.token_hex(16)}/x.png",
                  f"{Path(first).parent}/../{Path(first).parent.name}/patient-jane-doe-1970.png"]
        answers = [(r.status_code, r.content) for r in (b.get(f"gradio_api/file={p}") for p in probes)]
        answers += [(r.status_code, r.content) for r in (a.get(f"gradio_api/file={quote(p)}") for p in probes)]
    assert len(set(answers)) == 1 and answers[0][0] in (403, 404), answers
    leftovers = [p for p in cache.rglob("*") if p.is_file() and p.read_bytes() == data.read_bytes()]
    assert sorted(leftovers) == sorted([Path(first), Path(second)])  # no copy in a content-named folder
