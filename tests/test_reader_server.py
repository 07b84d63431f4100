"""`python app.py --reader-study NAME` (issue 12, point 2; issue 18): the reader server holds one
study's reader page and nothing else. Its API is exactly /open and /answer; its page has no
gallery, image, file or table; a reader walks the whole study through their invitation link and
receives exactly that study's images (inline, never by URL); no workspace file is served; an
unknown study is refused with the studies it could have been. A page left open goes on after
the server is killed and started again; a call the page does not make (a bad function index, a
malformed body, wrong values, a file) gets a 400, and a route the page does not use (Gradio's
direct API, uploads, recordings, monitoring, the OpenAPI schema) a 404, with one line and no
traceback in the log. The owner's app has no monitoring either."""

from __future__ import annotations

import re

import pytest

from apphelpers import AppServer
from medart.reader_study import ReaderStudies
from medart.ui.reader_page import ENDPOINTS
from medart.workspace import Workspace
from helpers import planted_images

AUTH = ("reader", "pw-9931")
PAGE_COMPONENTS = {"markdown", "textbox", "button", "html", "radio", "state", "row", "column", "form"}


@pytest.fixture
def reader_server(tmp_path, medart_cache):
    yield from serve(tmp_path, medart_cache, {"MEDART_AUTH": ":".join(AUTH)})


@pytest.fixture
def loopback_reader_server(tmp_path, medart_cache):
    """Without a login (readers at this machine): Gradio's login sessions live in the server's
    memory, so after a restart a logged-in reader logs in again, then their link goes on."""
    yield from serve(tmp_path, medart_cache, {})


def serve(tmp_path, medart_cache, env):
    home = tmp_path / "home"
    with Workspace(home / "workspace") as ws:
        store = ReaderStudies(ws)
        store.add_study("pilot", planted_images(2), seed=2, display_size=32, owner_code="owner-1234")
        store.add_study("other-study-x", planted_images(1), seed=9, display_size=32)
        links = {label: store.invite("pilot", label).invitation for label in ("Ana", "Ben")}
        links["other"] = store.invite("other-study-x", "Ana").invitation
        with ws.read() as c:
            items = {t: bytes(png) for t, png in c.execute(
                "SELECT i.token, i.png FROM reader_study_items i JOIN reader_studies s ON s.id = i.study_id"
                " WHERE s.name = 'pilot'")}
    server = AppServer(home, medart_cache, extra_env=env, args=("--reader-study", "pilot")).start()
    yield server, items, links
    server.kill()


@pytest.mark.slow  # starts the reader server
def test_reader_server_has_only_the_reader_page(reader_server):
    import base64

    import httpx
    from gradio_client import Client

    server, items, links = reader_server
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        info = http.get("/gradio_api/info").json()
        config = http.get("/config").json()
        page = http.get("/").text
        db = http.get(f"/gradio_api/file={server.home}/workspace/workspace.db")
    assert set(info["named_endpoints"]) == set(ENDPOINTS) and not info["unnamed_endpoints"]
    types = {c["type"] for c in config["components"]}
    assert types <= PAGE_COMPONENTS, types - PAGE_COMPONENTS
    assert len(config["dependencies"]) == 3  # open (the page load), answer (button, Enter)
    assert db.status_code == 404  # no route of the page
    assert "other-study-x" not in page and not any(w in page.lower() for w in ("owner code", "owner_code", "rs-owner"))

    client = Client(server.url, auth=AUTH, verbose=False, download_files=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == set(ENDPOINTS)
    for wrong in ("Ana", "", links["other"]):  # a name, no link, another study's link: nothing opens
        _, _, token, viewer, _, _, _, _, notice = client.predict(wrong, api_name="/open")
        assert "invitation" in notice and not token and "data-token" not in viewer
    _, title, token, viewer, progress, *_ = client.predict(links["Ana"], api_name="/open")
    assert title == "## Reader study: pilot"
    received = {}
    while token:
        src = re.search(r'src="data:image/png;base64,([^"]+)"', viewer).group(1)
        received[token] = base64.b64decode(src)
        assert "/gradio_api/file" not in viewer
        # Ben's link cannot answer Ana's image: said in the page, nothing stored
        assert "not shown to you" in client.predict(links["Ben"], token, "generated", None, "", api_name="/answer")[6]
        token, viewer, progress, *_ = client.predict(links["Ana"], token, "real", "3", "", api_name="/answer")
    assert sorted(received.values()) == sorted(items.values())  # the study's images, each once, nothing else
    assert not received.keys() & items.keys()  # under tokens of Ana's own
    assert 'data-done="4"' in viewer and "4 / 4 answered" in progress
    with Workspace(server.home / "workspace") as ws:
        assert len(ReaderStudies(ws).answers("pilot")) == 4


@pytest.mark.slow  # starts the reader server twice
def test_an_open_page_goes_on_after_a_restart(loopback_reader_server):
    from gradio_client import Client

    server, _, links = loopback_reader_server
    client = Client(server.url, verbose=False, download_files=False)
    token = client.predict(links["Ben"], api_name="/open")[2]
    token = client.predict(links["Ben"], token, "real", None, "", api_name="/answer")[0]
    server.kill()  # kill -9: no clean-up
    server.start()
    # the same page (client, session) presses Enter on the image it shows: no Start, no reload
    token, viewer, progress, *_ = client.predict(links["Ben"], token, "generated", None, "", api_name="/answer")
    assert "image 3 of 4 · 2 answered" in progress and token
    with Workspace(server.home / "workspace") as ws:
        assert [a.answer for a in ReaderStudies(ws).answers("pilot")] == ["real", "generated"]


@pytest.mark.slow  # starts the reader server
def test_calls_the_page_does_not_make_get_a_400_and_no_traceback(reader_server):
    import httpx

    server, _, links = reader_server
    join = "/gradio_api/queue/join"
    file_data = {"path": "y.png", "url": "https://example.com/x.png", "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        answer, session = fn_index(http, "answer"), {"session_hash": "s1"}
        bad = [{"data": [], "fn_index": 99, **session},  # a function index the page lacks
               {"data": [links["Ana"]] * 2, "fn_index": answer, **session},  # too few values
               {"data": [None], "fn_index": -1, **session},
               {"data": "x", "fn_index": "a"}, b"{not json", b"x" * 100_000,
               {"data": [links["Ana"], "t", "maybe", None, ""], "fn_index": answer, **session},  # not a choice
               {"data": [{"a": 1}, [1], "real", None, ""], "fn_index": answer, **session},  # not text
               {"data": [links["Ana"], file_data, "real", None, ""], "fn_index": answer, **session},  # a file
               {"data": [links["Ana"], "t", "real", None, ""], "fn_index": answer},  # no session
               {"data": [], "fn_index": fn_index(http, "open"), **session}]
        for body in bad:
            sent = http.post(join, content=body) if isinstance(body, bytes) else http.post(join, json=body)
            assert (sent.status_code, sent.text) == (400, '{"error": "bad request"}'), body
        # a wrong but well-formed answer gets the page's own message, in the page
        assert "this image was not shown to you" in call(http, "answer", [links["Ana"], "zz", "real", None, ""])[6]
    log = server.log.read_text()
    assert "Traceback" not in log and str(server.home) not in log and "KeyError" not in log.replace("(KeyError)", "")
    assert log.count("refused a request the reader page does not make") == len(bad)


@pytest.mark.slow  # starts the reader server
def test_the_server_answers_only_the_routes_its_page_uses(reader_server):
    """An allow-list: Gradio's other routes (the direct API that skips the queue and its
    checks, uploads, recordings, monitoring, the OpenAPI schema, streams of no session) are not
    there; each refusal is one line in the log, with no traceback, path or dashboard key."""
    import os

    import httpx

    server, _, links = reader_server
    file_data = {"path": "https://example.com/x.png", "url": "https://example.com/x.png", "orig_name": "x.png",
                 "meta": {"_type": "gradio.FileData"}}
    posts = {"/gradio_api/api/answer": {"data": ["x", "y", "maybe", None, ""]},
             "/gradio_api/api/on_next": {"data": ["x"]},
             "/gradio_api/api/open": {"data": [file_data]},
             "/gradio_api/call/answer": {"data": [links["Ana"], "t", "real", None, ""]},
             "/gradio_api/run/answer": {"data": [links["Ana"], "t", "real", None, ""]},
             "/gradio_api/run/predict": {"data": [], "fn_index": 1},
             "/gradio_api/upload": None, "/gradio_api/process_recording": None,
             "/gradio_api/component_server": {"component_id": 1, "fn_name": "x", "data": None}}
    gets = ["/gradio_api/queue/data?session_hash=nope", "/gradio_api/queue/data", "/monitoring",
            "/monitoring/summary", "/gradio_api/monitoring", "/gradio_api/monitoring/summary", "/openapi.json",
            "/gradio_api/openapi.json", "/docs", "/gradio_api/heartbeat/abc",
            "/gradio_api/file=y.png", "/gradio_api/queue/status", "/manifest.json", "/user", "/token",
            "/gradio_api/call/answer/abc"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        for path, body in posts.items():
            sent = (http.post(path, files={"files": ("y.png", b"\x89PNG\r\n")}) if body is None
                    else http.post(path, json=body))
            assert sent.status_code == 404 and "0x" not in sent.text and "Textbox" not in sent.text, (path, sent.text)
        for path in gets:
            got = http.get(path)
            assert (got.status_code, got.text) == (404, '{"error": "not found"}'), path
        # what the page uses still answers
        assert [http.get(p).status_code for p in ("/", "/config", "/theme.css", "/gradio_api/info")] == [200] * 4
        assert call(http, "open", [links["Ana"]])[2]
    log = server.log.read_text()
    assert log.count("refused a request the reader page does not make") == len(posts) + len(gets)
    for leak in ("Traceback", "Monitoring URL", "ASGI callable", "Cannot move", "0x", str(server.home), os.getcwd()):
        assert leak not in log, leak


def test_reader_server_refuses_an_unknown_study(tmp_path, monkeypatch):
    import app

    with Workspace(tmp_path / "home" / "workspace") as ws:
        ReaderStudies(ws).add_study("pilot", planted_images(1), display_size=32)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "pages"))
    with pytest.raises(SystemExit) as refused:
        app.main(["--home", str(tmp_path / "home"), "--reader-study", "pilto"])
    assert "no reader study called 'pilto'" in str(refused.value) and "studies: 'pilot'" in str(refused.value)


FN_INDEX: dict[str, int] = {}


def fn_index(http, name: str) -> int:
    """The index of the page's event `name` ("open", "answer"), as the page's config gives it."""
    if name not in FN_INDEX:
        FN_INDEX.update({d["api_name"]: d["id"] for d in http.get("/config").json()["dependencies"]})
    return FN_INDEX[name]


def call(http, name: str, data: list):
    """One call as the page makes it (join the queue, then read its stream); a refusal raises
    ValueError, a lost connection or an unfinished stream raises ConnectionError (the page
    would retry)."""
    import json
    import secrets

    import httpx

    session = secrets.token_hex(8)
    try:
        sent = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index(http, name),
                                                           "session_hash": session, "event_data": None})
        if sent.status_code != 200:
            raise ConnectionError(sent.status_code)
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    if message.get("success"):
                        return message["output"]["data"]
                    raise ValueError(str(message["output"].get("error")))
    except (httpx.TransportError, KeyError) as e:
        raise ConnectionError(str(e)) from None
    raise ConnectionError("the stream ended early")


def patiently(fn, seconds=120.0):
    import time

    deadline = time.time() + seconds
    while True:
        try:
            return fn()
        except ConnectionError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow  # 30 readers through the reader server, which is killed (-9) and restarted under them
def test_thirty_readers_through_a_kill_lose_and_double_nothing(loopback_reader_server):
    import threading
    import time

    import httpx

    server, _, _ = loopback_reader_server
    with Workspace(server.home / "workspace") as ws:
        links = [ReaderStudies(ws).invite("pilot", f"reader {i}").invitation for i in range(30)]
    errors, acknowledged = [], []

    def walk(link):
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                token = patiently(lambda: call(http, "open", [link])[2])
                while token:
                    for _ in range(2):  # every answer is sent twice (a double Enter)
                        out = patiently(lambda: call(http, "answer", [link, token, "generated", None, ""]))
                    acknowledged.append((link, token))
                    token = out[0]
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(repr(e)[:300])

    threads = [threading.Thread(target=walk, args=(link,)) for link in links]
    for t in threads:
        t.start()
    while len(acknowledged) < 40 and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    server.kill()  # mid-study, with calls in flight
    killed_at = len(acknowledged)
    server.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and 40 <= killed_at < 120
    with Workspace(server.home / "workspace") as ws:
        rows = [a for a in ReaderStudies(ws).answers("pilot") if a.reader.startswith("reader ")]
    assert len(acknowledged) == len(rows) == 30 * 4  # 0 lost, 0 doubled
    assert len({(a.reader, a.item_id) for a in rows}) == 30 * 4
    assert "Traceback" not in server.log.read_text()


def test_a_fault_in_a_readers_request_is_one_line_and_no_traceback(caplog):
    """Refused or failed, a reader's request returns the page's one line (no raised error, whose
    red badges would replace the answer buttons) and writes one line to the log."""
    import sqlite3

    from medart.ui.reader_page import FAILED, notice_md, reader_errors

    said = reader_errors(lambda message: ("kept", notice_md(message)))

    @said
    def locked():
        raise sqlite3.OperationalError("unable to open database file /home/owner/secret-study/workspace.db")

    @said
    def refused():
        raise ValueError("this link is not a valid invitation to this study; ask the study owner for yours")

    with caplog.at_level("INFO"):
        assert locked() == ("kept", notice_md(FAILED))
        kept, line = refused()
    assert kept == "kept" and line.startswith("⚠ this link is not a valid invitation")
    assert "/home/owner" not in notice_md(FAILED) and "\n" not in line
    assert [r.getMessage() for r in caplog.records] == [
        "a reader's request failed (OperationalError)",
        "refused: this link is not a valid invitation to this study; ask the study owner for yours"]
    assert not any(r.exc_info for r in caplog.records)


def test_the_readers_label_and_the_pages_lines_are_plain_text():
    """An owner's label such as "Dr A" reads as typed: no bold, no heading, no HTML from it."""
    from medart.reader_study import Shown
    from medart.ui.reader_page import notice_md, progress_text

    shown = Shown(token="t", png=b"", position=4, total=8, answered=3)
    assert progress_text(shown, "Dr A", 8) == "Dr A: image 4 of 8 · 3 answered"
    assert progress_text(None, "# *Dr* <b>B</b>", 8) == "\\# \\*Dr\\* &lt;b&gt;B&lt;/b&gt;: 8 / 8 answered."
    assert notice_md("answer first: R (real) or G (generated)") == "⚠ answer first: R \\(real\\) or G \\(generated\\)"
    assert notice_md("") == ""


@pytest.mark.slow  # launches a page
def test_the_owner_app_has_no_monitoring(capsys):
    """Gradio's monitoring would show every user's request counts at `/monitoring/summary` and
    print a dashboard key into the owner's log at `/monitoring`: the owner's app has none."""
    import gradio as gr
    import httpx

    from medart.ui import launch_kwargs

    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.launch(prevent_thread_lock=True, **launch_kwargs(None))
    try:
        with httpx.Client(base_url=demo.local_url, timeout=30) as http:
            codes = [http.get(p).status_code for p in ("/monitoring", "/monitoring/summary")]
    finally:
        demo.close()
    assert codes == [403, 403] and "Monitoring URL" not in capsys.readouterr().out
