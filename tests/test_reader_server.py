"""`python app.py --reader-study NAME` (issue 12, point 2): the reader server holds one study's
reader page and nothing else. Its API is exactly /start and /answer; its page has no gallery,
image, file or table; a reader walks the whole study through it and receives exactly that
study's images (inline, never by URL); no workspace file is served; an unknown study is refused
with the studies it could have been."""

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
    home = tmp_path / "home"
    with Workspace(home / "workspace") as ws:
        store = ReaderStudies(ws)
        store.add_study("pilot", planted_images(2), seed=2, display_size=32, owner_code="owner-1234")
        store.add_study("other-study-x", planted_images(1), seed=9, display_size=32)
        with ws.read() as c:
            items = {t: bytes(png) for t, png in c.execute(
                "SELECT i.token, i.png FROM reader_study_items i JOIN reader_studies s ON s.id = i.study_id"
                " WHERE s.name = 'pilot'")}
    server = AppServer(home, medart_cache, extra_env={"MEDART_AUTH": ":".join(AUTH)},
                       args=("--reader-study", "pilot")).start()
    yield server, items
    server.kill()


@pytest.mark.slow  # starts the reader server
def test_reader_server_has_only_the_reader_page(reader_server):
    import base64

    import httpx
    from gradio_client import Client

    server, items = reader_server
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        info = http.get("/gradio_api/info").json()
        config = http.get("/config").json()
        page = http.get("/").text
        db = http.get(f"/gradio_api/file={server.home}/workspace/workspace.db")
    assert set(info["named_endpoints"]) == set(ENDPOINTS) and not info["unnamed_endpoints"]
    types = {c["type"] for c in config["components"]}
    assert types <= PAGE_COMPONENTS, types - PAGE_COMPONENTS
    assert len(config["dependencies"]) == 5  # start (button, Enter), answer (button, Enter), the page's title
    assert db.status_code == 403
    assert "other-study-x" not in page and "owner" not in page.lower()

    client = Client(server.url, auth=AUTH, verbose=False, download_files=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == set(ENDPOINTS)
    token, viewer, progress, *_ = client.predict("Ana", api_name="/start")
    received = {}
    while token:
        src = re.search(r'src="data:image/png;base64,([^"]+)"', viewer).group(1)
        received[token] = base64.b64decode(src)
        assert "/gradio_api/file" not in viewer
        token, viewer, progress, *_ = client.predict(token, "real", "3", "", api_name="/answer")
    assert received == items  # the study's images, each once, and nothing else
    assert 'data-done="4"' in viewer and "4 / 4 answered" in progress
    with Workspace(server.home / "workspace") as ws:
        assert len(ReaderStudies(ws).answers("pilot")) == 4


def test_reader_server_refuses_an_unknown_study(tmp_path, monkeypatch):
    import app

    with Workspace(tmp_path / "home" / "workspace") as ws:
        ReaderStudies(ws).add_study("pilot", planted_images(1), display_size=32)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "pages"))
    with pytest.raises(SystemExit) as refused:
        app.main(["--home", str(tmp_path / "home"), "--reader-study", "pilto"])
    assert "no reader study called 'pilto'" in str(refused.value) and "studies: 'pilot'" in str(refused.value)
