"""What the running app serves, tried as a curious user would (issue 12, points 1, 3 and 4).

`python app.py` with a login runs on a populated home folder (workspace, a run with
checkpoints, samples and an evaluation, a reader study). Logged in, every file in the home
folder is requested through every route of Gradio 6.31 that reads files (`/gradio_api/file=`,
the deprecated `/gradio_api/file/`, `/file=`, `/proxy=`, `/static/`, `/assets/`, `/svelte/`,
custom components, run history), absolute and relative, with `..`, percent-encoded, from
Gradio's own upload folder and through URL forms: none comes back. Images the pages show are
served, from Gradio's cache folder. Before logging in, the page names no path, run, study or
label. Importing from a server folder outside the allowed roots gets one line and no listing.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from apphelpers import OWNER_CODE, SECRET_LABEL, SECRET_RUN, SECRET_STUDY, populate_home

pytestmark = pytest.mark.slow  # an app process with a populated home, asked through every route

AUTH = ("owner", "pass-5521")


def variants(path: Path, home: Path, cwd: Path, uploads: Path, port: int) -> list[str]:
    """Every way we know to ask Gradio's routes for the file `path` (absolute)."""
    p = str(path)
    rel = os.path.relpath(p, cwd)  # from the server's working directory: starts with ../
    in_home = path.relative_to(home)
    up = "../" * 12 + p.lstrip("/")
    up_enc = "..%2F" * 12 + quote(p.lstrip("/"), safe="")
    enc = quote(p, safe="")
    own = f"http://127.0.0.1:{port}/gradio_api/file={p}"
    return [
        f"/gradio_api/file={p}",
        f"/gradio_api/file={enc}",
        f"/gradio_api/file={quote(enc, safe='')}",
        f"/gradio_api/file={rel}",
        f"/gradio_api/file={quote(rel, safe='')}",
        f"/gradio_api/file={home}/../{home.name}/{in_home}",
        f"/gradio_api/file={home}/./{in_home}",
        f"/gradio_api/file={uploads}/../../../../{p.lstrip('/')}",
        f"/gradio_api/file={uploads}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/{quote(p.lstrip('/'))}",
        f"/gradio_api/file=file://{p}",
        f"/gradio_api/file={p.replace('/', '%5C')}",
        f"/gradio_api/file={own}",
        f"/gradio_api/file/{p}",
        f"/gradio_api/file/{rel}",
        f"/gradio_api/file/{enc}",
        f"/file={p}",
        f"/file/{p}",
        f"/gradio_api/proxy={p}",
        f"/gradio_api/proxy={own}",
        f"/static/{up}",
        f"/static/{up_enc}",
        f"/assets/{up_enc}",
        f"/svelte/{up_enc}",
        f"/gradio_api/custom_component/0/client/x/{up_enc}",
        f"/gradio_api/run-history/records/x/1/assets/{enc}",
        f"/{p.lstrip('/')}",
    ]


def get(conn_box: list, port: int, target: str, cookie: str | None) -> tuple[int, bytes]:
    """GET `target` exactly as written (http.client does not normalise `..` or encodings)."""
    for _ in range(2):
        if not conn_box:
            conn_box.append(http.client.HTTPConnection("127.0.0.1", port, timeout=30))
        conn = conn_box[0]
        try:
            conn.request("GET", target, headers={"Cookie": cookie} if cookie else {})
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            conn_box.clear()
    raise AssertionError(f"no answer for {target}")


def login_cookie(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = f"username={AUTH[0]}&password={AUTH[1]}"
    conn.request("POST", "/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    cookies = [v.split(";")[0] for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return "; ".join(cookies)


@pytest.fixture(scope="module")
def served(tmp_path_factory, medart_cache):
    from apphelpers import AppServer

    root = tmp_path_factory.mktemp("serving")
    home = root / "home"
    names = populate_home(home)
    uploads = root / "pages"
    server = AppServer(home, medart_cache, extra_env={"MEDART_AUTH": ":".join(AUTH),
                                                      "GRADIO_TEMP_DIR": str(uploads)})
    server.start()
    cwd = home.parent / f"cwd-{server.port}"
    yield server, names, cwd, uploads
    server.kill()


def test_no_file_of_the_home_folder_is_served_by_any_route(served):
    from gradio_client import Client

    server, names, cwd, uploads = served
    client = Client(server.url, auth=AUTH, verbose=False, download_files=False)
    # the page's own images are served (from Gradio's cache folder): the harness can fetch files
    stats, gallery, _, _ = client.predict("all", "all", 1, api_name="/view")
    assert "16 image(s)" in stats and len(gallery) == 16
    shown = Path(gallery[0]["image"]["path"])
    assert shown.is_relative_to(uploads) and Image.open(shown).size[0] > 0
    cookie = login_cookie(server.port)
    box: list = []
    url = gallery[0]["image"]["url"].split(str(server.port), 1)[1]
    status, body = get(box, server.port, url, cookie)
    assert status == 200 and body == shown.read_bytes()

    from medart.workspace import Workspace

    open_ws = Workspace(server.home / "workspace")  # as a running job holds it: its WAL and shm files exist
    open_ws.set_setting("probe", "1")
    files = sorted(p for p in server.home.rglob("*") if p.is_file())
    kinds = {p.suffix for p in files}
    assert {".db", ".png", ".jpg", ".safetensors", ".pt", ".yaml", ".json", ".md", ".jsonl"} <= kinds
    assert any(p.name.endswith("-wal") for p in files)  # the live database's write-ahead log too
    served_back = []
    requests = 0
    for path in files:
        data = path.read_bytes()
        for target in variants(path, server.home, cwd, uploads, server.port):
            status, body = get(box, server.port, target, cookie)
            requests += 1
            leaked = len(data) >= 16 and data[:4096] in body
            if status < 400 or leaked:
                served_back.append((status, target))
    open_ws.close()
    assert served_back == []
    assert requests == len(files) * len(variants(files[0], server.home, cwd, uploads, server.port))
    print(f"{len(files)} files x {requests // len(files)} routes = {requests} requests, all refused")


def test_nothing_is_named_before_login(served):
    server, names, _, _ = served
    box: list = []
    status, page = get(box, server.port, "/", None)
    assert status == 200 and b"auth_required" in page  # the login page
    secrets = [str(server.home), SECRET_LABEL, SECRET_RUN, SECRET_STUDY, "fundus_0"]
    assert [s for s in secrets + ["import_files", "named_endpoints"] if s.encode() in page] == []  # nor the API
    for target in ("/config", "/gradio_api/info", f"/gradio_api/file={server.home}/workspace/workspace.db"):
        assert get(box, server.port, target, None)[0] == 401
    # logged in, the page still carries none of them in its initial config: they come on load
    status, page = get(box, server.port, "/", login_cookie(server.port))
    assert status == 200 and b"auth_required" not in page
    assert [s for s in secrets if s.encode() in page] == []


def test_server_folders_outside_the_roots_get_one_line(served):
    from gradio_client import Client

    server, names, _, _ = served
    client = Client(server.url, auth=AUTH, verbose=False)
    browse = ["all", "all", 1]
    for folder in ("/etc", "/etc/../etc", str(server.home / ".." / ".." / "etc"), "~/../../etc"):
        with pytest.raises(Exception) as refused:
            client.predict(folder, "", "", "train", False, *browse, api_name="/import_folder")
        text = str(refused.value)
        assert "is not inside a folder this app may read" in text and "\n" not in text.strip()
        assert "passwd" not in text and "hosts" not in text
    with pytest.raises(Exception, match="not inside a folder this app may read"):
        client.predict("/etc", "train", "", "", "train", *browse, api_name="/on_dataset")
    # inside the home folder (a default root on loopback) a folder imports
    incoming = server.home / "incoming"
    incoming.mkdir()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(incoming / "green.png")
    summary = client.predict(str(incoming), "", "", "train", False, *browse, api_name="/import_folder")[0]
    assert "Imported 1 image(s)" in summary
    # a run is chosen by name: a path to another folder is not a run
    with pytest.raises(Exception, match="is not a run name"):
        client.predict("../../etc", "a prompt", 0, 2, 4.5, 1.0, 0, api_name="/compare")


def test_reader_results_in_the_owner_app_still_need_the_code(served):
    from medart.reader_study import ReaderStudies
    from medart.workspace import Workspace

    server, *_ = served
    with Workspace(server.home / "workspace") as ws:
        assert ReaderStudies(ws).check_owner(SECRET_STUDY, OWNER_CODE).name == SECRET_STUDY


@pytest.fixture
def guarded():
    """A small app behind LoginGuard whose waits are recorded, not slept: (guard, waits, attempt)."""
    import gradio as gr
    import httpx

    from apphelpers import free_port
    from medart.ui import login

    waits = []

    async def record(seconds):
        waits.append(seconds)

    guard = login.LoginGuard(*AUTH, sleep=record)
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda x: x, box, box, api_name="secret_endpoint_okapi")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **login.launch_options(AUTH, guard=guard))

    def attempt(password, source="127.0.0.1", user=AUTH[0], cookies=None, headers=None):
        """(status, body, cookies set) of one POST /login from address `source`."""
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, cookies=cookies) as c:
            r = c.post(f"http://127.0.0.1:{port}/login", data={"username": user, "password": password},
                       headers=headers)
            return r.status_code, r.content, dict(r.cookies)

    try:
        yield guard, waits, attempt, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_login_slows_down_guessing(guarded):
    """Wrong logins for one user name from one address wait longer and longer; another address
    is not slowed; a right login forgets; the waits cap at MAX_DELAY_S."""
    import asyncio
    import threading

    from medart.ui import login

    guard, waits, attempt, _ = guarded
    assert [attempt(f"guess-{i}")[0] for i in range(7)] == [400] * 7
    assert waits == [1.0, 2.0, 4.0, 8.0]  # three at full speed, then doubling
    assert guard.delay(guard.bucket(AUTH[0], "127.0.0.1")) == 16.0
    assert attempt("guess", "127.0.0.2")[0] == 400 and waits == [1.0, 2.0, 4.0, 8.0]  # another client
    assert attempt(AUTH[1])[0] == 200 and waits[-1] == 16.0  # a new browser's right password waits its turn
    assert guard.delay(guard.bucket(AUTH[0], "127.0.0.1")) == 0.0  # then the failures are forgotten
    assert attempt("guess")[0] == 400 and waits[-1] == 16.0
    many = login.LoginGuard(*AUTH, sleep=guard._sleep)

    def guesses():  # in a thread of its own: the browser tests keep an event loop in this one
        for _ in range(12):
            asyncio.run(many.check("x", "y"))

    worker = threading.Thread(target=guesses)
    worker.start()
    worker.join()
    assert waits[-1] == login.MAX_DELAY_S and many.delay(many.bucket("x", None)) == login.MAX_DELAY_S


def test_an_attacker_behind_the_owners_proxy_cannot_keep_the_owner_out(guarded):
    """Issue 18, point 6, played as the attacker: behind an HTTPS proxy everyone has the
    proxy's address. The attacker's wrong logins with the owner's user name are slowed as
    before, but the owner's browser (which has logged in before) gets in at once; a forged
    device cookie does not help the attacker; a wrong user name and a wrong password get the
    same answer after the same wait."""
    guard, waits, attempt, _ = guarded
    status, _, owner_cookies = attempt(AUTH[1])  # the owner's browser, some day before the attack
    assert status == 200
    assert [attempt(f"guess-{i}")[0] for i in range(7)] == [400] * 7
    assert waits == [1.0, 2.0, 4.0, 8.0]  # the attacker is slowed
    status, _, again = attempt(AUTH[1], cookies=owner_cookies)
    assert status == 200 and waits == [1.0, 2.0, 4.0, 8.0]  # the owner waited for nobody
    assert again[guard.cookie_name] == owner_cookies[guard.cookie_name]
    forged = {guard.cookie_name: "x" * 22 + "." + "0" * 32}
    assert attempt("guess", cookies=forged)[0] == 400 and waits[-1] == 16.0  # still the attacker's bucket
    stolen_name = {guard.cookie_name: owner_cookies[guard.cookie_name]}
    assert attempt("guess", user="root", cookies=stolen_name)[0] == 400  # signed for the owner's name only
    # unknown user and wrong password: the same answers after the same waits
    waits.clear()
    wrong_password = [attempt("nope", "127.0.0.3")[:2] for _ in range(6)]
    first = list(waits)
    waits.clear()
    unknown_user = [attempt("nope", "127.0.0.4", user="nobody")[:2] for _ in range(6)]
    assert wrong_password == unknown_user and len({body for _, body in unknown_user}) == 1
    assert waits == first == [1.0, 2.0, 4.0]


def test_a_forged_forwarded_for_does_not_choose_the_bucket(guarded):
    """Issue 18, F2: a client on this machine sends a new X-Forwarded-For with each guess; its
    guesses still count against its real address, and wait as they would without the header."""
    guard, waits, attempt, _ = guarded
    statuses = [attempt(f"guess-{i}", headers={"X-Forwarded-For": f"10.0.{i}.1"})[0] for i in range(7)]
    assert statuses == [400] * 7 and waits == [1.0, 2.0, 4.0, 8.0]
    assert guard.failures(guard.bucket(AUTH[0], "127.0.0.1")) == 7
    assert guard.failures(guard.bucket(AUTH[0], "10.0.6.1")) == 0  # nobody else's bucket was touched
    status, _, _ = attempt(AUTH[1], headers={"X-Forwarded-For": "10.9.9.9"})
    assert status == 200 and waits[-1] == 16.0  # a right password from the same client waits its turn


def test_guessing_from_many_addresses_is_slowed_per_user_name(guarded):
    """Issue 18, F2: one guess from each of many addresses: after USER_FREE_FAILURES guesses for
    one user name they wait, doubling, whatever the address; the owner's known browser does not."""
    from medart.ui import login

    guard, waits, attempt, _ = guarded
    status, _, owner_cookies = attempt(AUTH[1])
    assert status == 200
    n = login.USER_FREE_FAILURES + 4
    assert [attempt("guess", f"127.0.1.{i + 1}")[0] for i in range(n)] == [400] * n
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert attempt("guess", "127.0.2.1", user="someone-else")[0] == 400 and len(waits) == 4  # another name
    assert attempt(AUTH[1], cookies=owner_cookies)[0] == 200 and len(waits) == 4  # the owner waits for nobody
    assert attempt(AUTH[1], "127.0.3.1")[0] == 200 and waits[-1] == 16.0  # a new browser waits its turn
    assert guard.delay(guard.bucket(AUTH[0], "127.0.1.1")) == 0.0  # then all is forgotten


def test_logout_clears_the_device_cookie(guarded):
    """Issue 18, F6: logging out forgets the browser: the device cookie is cleared."""
    import httpx

    guard, _, attempt, url = guarded
    status, _, cookies = attempt(AUTH[1])
    assert status == 200 and guard.cookie_name in cookies
    with httpx.Client(cookies=cookies) as c:
        r = c.get(f"{url}logout")
        cleared = [h for h in r.headers.get_list("set-cookie") if h.startswith(guard.cookie_name + "=")]
    assert len(cleared) == 1 and cleared[0].startswith(f"{guard.cookie_name}=;") and "Max-Age=0" in cleared[0]


def test_a_known_browser_stays_known_after_a_restart(tmp_path, monkeypatch):
    """The device cookies' key lives in the home folder (owner-only file): a guard of the next
    process accepts the cookie; another home's guard, or a damaged key, does not."""
    from medart.ui import login

    monkeypatch.setattr(login, "_key_folder", [])
    login.remember_devices_in(tmp_path / "home")
    first, again = login.LoginGuard(*AUTH), login.LoginGuard(*AUTH)
    cookie = first.device_cookie(AUTH[0])
    key = tmp_path / "home" / login.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert again.cookie_name == first.cookie_name and again.bucket(AUTH[0], "1.2.3.4", cookie)[0] == "device"
    login.remember_devices_in(tmp_path / "other-home")
    assert login.LoginGuard(*AUTH).bucket(AUTH[0], "1.2.3.4", cookie)[0] == "guess"
    key.write_bytes(b"short")
    login.remember_devices_in(tmp_path / "home")
    renewed = login.LoginGuard(*AUTH)
    assert len(key.read_bytes()) == 32 and renewed.bucket(AUTH[0], "1.2.3.4", cookie)[0] == "guess"


def test_the_login_page_says_nothing_about_the_api(guarded):
    """Before logging in, the page carries no endpoint name or parameter (Gradio puts its whole
    API description there); after logging in the app's page is whole."""
    import httpx

    guard, waits, attempt, url = guarded
    page = httpx.get(url).content
    assert b"auth_required" in page and b"window.gradio_api_info = null;" in page
    assert b"secret_endpoint_okapi" not in page and b"named_endpoints" not in page
    assert httpx.get(f"{url}gradio_api/info").status_code == 401
    cookies = httpx.post(f"{url}login", data={"username": AUTH[0], "password": AUTH[1]}).cookies
    page = httpx.get(url, cookies=cookies).content
    assert b"auth_required" not in page and b"secret_endpoint_okapi" in page


def test_page_evaluate_report_shows_its_plots_as_images(served):
    """The Evaluate tab's report points to its plots, which come as served images (not broken links)."""
    from medart.studio import Studio
    from medart.ui import evaluate

    server, *_ = served
    studio = Studio(home=server.home, base_model="tiny")
    status, table, classify, plots, report, warning = evaluate.eval_view(studio, SECRET_RUN)
    assert "](" not in report and "*Figure: Colour histograms of real and generated images (shown above).*" in report
    assert [(p.name, caption) for p, caption in plots] == [
        ("color_histograms.png", "Colour histograms of real and generated images")]
    out = evaluate.spread((status, table, classify, plots, report, warning))
    assert out[3]["value"].size == Image.open(plots[0][0]).size and out[4]["visible"] is False
