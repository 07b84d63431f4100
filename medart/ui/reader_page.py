"""The reader's page of a blinded "real or generated?" study, served on its own by
`python app.py --reader-study NAME` (`build_reader_app`).

A reader opens their invitation link (`/?invite=TOKEN`, made by the study owner) and answers
one image at a time: R = real, G = generated, 1-5 = realism (optional), N = write a note,
Enter = next. Every answer is saved at once. A refusal (Next with no answer, a link that is not
an invitation) is one line under Next, and the answer controls stay as they were; they are there
only while an image is on screen. The page keeps no state on the server: each
request carries the invitation (read from the link) and the token of the image on screen, and
the store keeps the rest, so a page left open across a server restart goes on with its next
click, and the same link later resumes at the next unanswered image. What the browser
receives for an image is only an inline PNG under a token drawn for this reader, encoded
identically for both kinds (`medart.reader_study.images`).

The reader server holds this page and nothing else: its API is `/open` (the page load) and
`/answer`, reached only through the queue as the page reaches them, and it answers no other
route of Gradio's (`QuietErrors`, an allow-list). It cannot list, import, caption, train,
generate, compare, evaluate, export or show results, has no owner-code check a reader could
trip, and serves no file: it opens the workspace database only to read the study's images and
store answers. Results stay in the owner's app (`medart.ui.reader_study`) and the CLI.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr

from medart.reader_study import images as reader_images
from medart.reader_study import ReaderStudies, Shown

log = logging.getLogger("medart.reader_server")
VIEW_PX = 448  # every study image is shown at this size on the page, whatever its pixels

# Keys: only while the study image is on screen and the focus is not in a text field.
KEYS_JS = """
if (!window.__medartReaderKeys) {
  window.__medartReaderKeys = true;
  document.addEventListener('keydown', function (e) {
    var viewer = document.getElementById('rs-viewer');
    if (!viewer || viewer.offsetParent === null || !viewer.querySelector('[data-token]')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    var typing = t && (t.tagName === 'TEXTAREA' || t.isContentEditable ||
                       (t.tagName === 'INPUT' && t.type !== 'radio' && t.type !== 'checkbox'));
    if (typing) { if (e.key === 'Escape') t.blur(); return; }
    var pick = function (id, value) {
      var input = document.querySelector('#' + id + ' input[value="' + value + '"]');
      if (input) input.click();
    };
    var k = (e.key || '').toLowerCase();
    if (k === 'r') pick('rs-answer', 'real');
    else if (k === 'g') pick('rs-answer', 'generated');
    else if (k.length === 1 && '12345'.indexOf(k) >= 0) pick('rs-realism', k);
    else if (k === 'n') {
      var note = document.querySelector('#rs-note textarea, #rs-note input');
      if (note) note.focus();
    }
    else if (e.key === 'Enter') { var next = document.getElementById('rs-next'); if (next) next.click(); }
    else return;
    e.preventDefault();
  });
}
"""

CSS = "footer {display: none !important}"
EMPTY = ('<div class="rs-empty"><p>Open this page with your invitation link (it ends in <code>?invite=</code>); '
         "the study owner gives each reader their own.</p></div>")
HELP = ("**Keys:** `R` real · `G` generated · `1`–`5` realism (optional) · `N` note (`Esc` leaves it) · "
        "`Enter` next. Answers are saved at once; open your link again later to resume.")
# the endpoints a reader server has (tests compare the app's API with this)
ENDPOINTS = ("/open", "/answer")
READ_INVITATION_JS = "() => new URLSearchParams(window.location.search).get('invite') || ''"
MAX_REQUEST = 64 * 1024  # bytes of one call: an answer with a 2,000-character note is far less
MAX_VALUE = 8 * 1024  # characters of one value
FAILED = "The server could not do this just now; every answer you saw saved is kept. Reload the page."
REPEATED = "That image was answered already; your first answer is kept."


def reader_errors(refused):
    """Decorator: a refusal is shown as one line in the page (`refused(message)` gives the
    handler's outputs: the message where the reader looks, every control left as it was), never
    a raised error, whose red badges would cover the answer buttons. A reader's mistake (a
    ValueError, which says what to do) is one line in the log, as `medart.ui.widgets.user_errors`
    does; any other fault is one line too (its kind: no traceback, no text that could hold a
    path) and a message that answers are kept."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                log.warning("refused: %s", (str(e).splitlines() or [type(e).__name__])[0])
                return refused(str(e))
            except Exception as e:  # noqa: BLE001 - a reader's request must not write a traceback
                log.error("a reader's request failed (%s)", type(e).__name__)
                return refused(FAILED)

        return guarded

    return wrap


def notice_md(message: str) -> str:
    """A refusal or a note as the page's one line under Next (plain text: nothing in it is markup)."""
    return f"⚠ {plain(message)}" if message else ""


def plain(text: str) -> str:
    """`text` as it reads, inside Markdown: no character of it becomes markup or HTML."""
    escaped = html.escape(text, quote=False)
    return "".join("\\" + c if c in MARKDOWN_PUNCTUATION else c for c in escaped)


MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()#+-.!|~")


# What the page fetches (seen from Chromium and gradio_client); anything else is refused.
PAGE_GETS = frozenset({"/", "/config", "/info", "/gradio_api/info", "/theme.css", "/favicon.ico",
                       "/gradio_api/startup-events",  # (Gradio calls it itself once, at launch)
                       "/gradio_api/queue/data"})
PAGE_GET_FOLDERS = ("/assets/", "/static/")  # the page's own scripts, styles and fonts (Gradio's files)
PAGE_POSTS = frozenset({"/login", "/gradio_api/queue/join"})
MAX_SESSION = 64  # characters of a page's session id


class QuietErrors:
    """ASGI middleware of the reader server, an allow-list: it answers only the routes the
    reader's page uses (the page and its assets, its config, the login, the queue's join and
    data for its own events) and refuses anything else (Gradio's other routes: `/api/NAME`,
    `/call/NAME`, `/run/NAME`, uploads, recordings, monitoring, `/openapi.json`, websockets)
    with a plain 404 or 400 and one line in the log, never a traceback, a path or an
    exception's text (readers, and anyone who reaches the server, cause these; the log is the
    owner's). A queue join must name one of the page's events and give exactly its number of
    values, each text (or empty) of bounded length and, for a choice, one of its choices, before
    Gradio sees it; a queue stream must be for a session that has events. Anything that still
    fails inside Gradio gets the same 400."""

    def __init__(self, app, blocks=None):
        self.app = app
        self.blocks = blocks

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            log.warning("refused a request the reader page does not make (a websocket)")
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.blocks is not None:
            method, path = scope.get("method", ""), scope.get("path", "")
            problem, status = _bad_route(self.blocks, method, path, scope.get("query_string", b"")), 404
            if not problem and method == "POST":
                body, problem = await _read_body(receive)
                problem, status = problem or _bad_call(self.blocks, path, body), 400
                receive = _replay(body, receive)
            if problem:
                log.warning("refused a request the reader page does not make (%s)", problem)
                return await _refuse(send, status)
        started = finished = False

        async def tracked(message):
            nonlocal started, finished
            started = started or message["type"] == "http.response.start"
            finished = finished or (message["type"] == "http.response.body" and not message.get("more_body"))
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:  # noqa: BLE001 - the point: nothing a client sends ends in a traceback
            log.warning("refused a malformed request (%s)", type(e).__name__)
            if not started:
                await _refuse(send)
            elif not finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _refuse(send, status: int = 400) -> None:
    body = b'{"error": "bad request"}' if status == 400 else b'{"error": "not found"}'
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _bad_route(blocks, method: str, path: str, query: bytes) -> str:
    """Why a request is for no route of the page ('' when it is one)."""
    if method in ("GET", "HEAD"):
        if path not in PAGE_GETS and not (path.startswith(PAGE_GET_FOLDERS) and ".." not in path):
            return "a route the page does not use"
        if path == "/gradio_api/queue/data":
            from urllib.parse import parse_qs

            session = (parse_qs(query.decode("latin-1")).get("session_hash") or [""])[0]
            queue = getattr(blocks, "_queue", None)
            if not session or len(session) > MAX_SESSION or queue is None \
                    or session not in queue.pending_messages_per_session:
                return "a queue stream of no session"
        return ""
    if method == "POST" and path in PAGE_POSTS:
        return ""
    return "a route the page does not use"


async def _read_body(receive) -> tuple[bytes, str]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", "disconnected"
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_REQUEST:
            return b"", "too large"
        if not message.get("more_body"):
            return b"".join(chunks), ""


def _replay(body: bytes, receive):
    """A `receive` that gives the body read already, then waits as the original would."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _bad_call(blocks, path: str, body: bytes) -> str:
    """Why a POST is not one the page makes ('' when it is): the login's form passes as it is;
    a queue join must be one of the page's events with text values it offers."""
    import json

    if path != "/gradio_api/queue/join":
        return ""
    try:
        request = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(request, dict) or not isinstance(request.get("data"), list):
        return "no list of values"
    index, session = request.get("fn_index"), request.get("session_hash")
    if type(index) is not int or index not in blocks.fns:
        return "an unknown event"
    if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION:
        return "no session"
    inputs = blocks.fns[index].inputs
    values = request["data"]
    if len(values) != len(inputs):
        return "a wrong number of values"
    for component, value in zip(inputs, values):
        if value is not None and (not isinstance(value, str) or len(value) > MAX_VALUE):
            return "a value that is not text"
        choices = getattr(component, "choices", None)
        if value not in (None, "") and choices is not None and value not in [c[1] for c in choices]:
            return "a choice the page does not offer"
    return ""


def launch_kwargs(blocks, options: dict) -> dict:
    """`launch()` options of `blocks` (a login's included) with `QuietErrors` outside every other middleware."""
    from starlette.middleware import Middleware

    options = dict(options, enable_monitoring=False)
    app_kwargs = dict(options.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [Middleware(QuietErrors, blocks=blocks), *app_kwargs.get("middleware", [])]
    return {**options, "app_kwargs": app_kwargs}


class StudyWorkspace:
    """The workspace a reader server answers into: opened without a tokenizer or a model, never created."""

    def __init__(self, root: str | Path):
        self.workspace_dir = Path(root)

    def workspace(self):
        from medart.workspace import Workspace

        return Workspace(self.workspace_dir, tokenizer=None, create=False)


def viewer_html(shown: Shown | None, done: int | None = None) -> str:
    """The page's only view of a study image: an inline PNG under its random token."""
    if shown is None:
        if done is None:
            return EMPTY
        return (f'<div class="rs-done" data-done="{done}"><h3>All {done} images answered. Thank you!</h3>'
                "<p>The study owner sees the results.</p></div>")
    return (f'<div class="rs-frame" data-token="{shown.token}" data-position="{shown.position}" '
            f'data-total="{shown.total}">'
            f'<img src="{reader_images.data_uri(shown.png)}" alt="study image" width="{VIEW_PX}" height="{VIEW_PX}" '
            f'style="width:{VIEW_PX}px;height:{VIEW_PX}px;image-rendering:auto;display:block;margin:auto"/>'
            "</div>")


def progress_text(shown: Shown | None, reader: str, total: int) -> str:
    """The reader's label (as typed by the owner: plain text) and how far they are."""
    if shown is None:
        return f"{plain(reader)}: {total} / {total} answered."
    return f"{plain(reader)}: image {shown.position} of {shown.total} · {shown.answered} answered"


# ---- what the page does (no gradio objects in or out: testable without a browser) ----------------
def _next_view(store, study: str, invitation: str) -> tuple[str | None, str, str]:
    shown = store.next_image(invitation, study)
    reader = store.invited(invitation, study)
    done = None if shown else len(reader.order)
    return shown.token if shown else None, viewer_html(shown, done), progress_text(shown, reader.name, len(reader.order))


def open_page(site, study: str, invitation: str | None) -> tuple[str | None, str, str]:
    """(token on screen, viewer HTML, progress text) at the invited reader's next unanswered
    image. `site` is anything with `workspace()` (a Studio, a StudyWorkspace)."""
    with site.workspace() as ws:
        return _next_view(ReaderStudies(ws), study, invitation)


def answer_and_next(site, study: str, invitation: str | None, token: str | None, answer: str | None,
                    realism: str | None, note: str | None) -> tuple[str | None, str, str, str]:
    """Save the answer to the image on screen (`token`, one transaction), then show the next one;
    the last item says whether this was a repeat (a second Enter that arrived before the page
    had changed: nothing is stored twice, nothing skipped)."""
    if not token:
        raise ValueError("no image on screen: open your invitation link again (every image may be answered)")
    if not answer:
        raise ValueError("answer first: R (real) or G (generated)")
    with site.workspace() as ws:
        store = ReaderStudies(ws)
        saved = store.answer(invitation, token, answer, realism or None, note or "", study=study)
        return (*_next_view(store, study, invitation), "" if saved else REPEATED)


def check_study(site, name: str) -> str:
    """The study's stored name; a clear error when the workspace has no study called `name`."""
    with site.workspace() as ws:
        store = ReaderStudies(ws)
        study = store.find(name)
        if study is None:
            known = ", ".join(repr(s.name) for s in store.studies()) or "none yet"
            raise ValueError(f"no reader study called {name!r} in {site.workspace_dir} (studies: {known}); "
                             "create one in the app's Reader study tab or with `python -m medart reader-study create`")
        return study.name


def build(site, study: str) -> None:
    """The reader's controls for study `study` (fixed by the server: a reader cannot choose another)."""
    title = gr.Markdown(elem_id="rs-title")  # filled on load: the config of a login page names no study
    gr.Markdown("Real or generated? Each reader sees the study's real and generated images in their own "
                "random order, identically encoded. " + HELP)
    invitation = gr.Textbox(visible=False, elem_id="rs-invite")  # from the link; sent with every answer
    progress = gr.Markdown(elem_id="rs-progress")
    viewer = gr.HTML(EMPTY, elem_id="rs-viewer", js_on_load=KEYS_JS)
    with gr.Column(visible=False, elem_id="rs-controls") as controls:  # only while an image is on screen
        with gr.Row():
            answer = gr.Radio(["real", "generated"], label="Real (R) or generated (G)?", elem_id="rs-answer")
            realism = gr.Radio(["1", "2", "3", "4", "5"], label="Realism 1 (artificial) – 5 (real), optional",
                               elem_id="rs-realism")
        note = gr.Textbox(label="Note (optional; N to write, Enter to go on)", elem_id="rs-note", max_lines=1)
        next_btn = gr.Button("Next (Enter)", variant="primary", elem_id="rs-next")
    notice = gr.Markdown(elem_id="rs-notice")
    shown_token = gr.Textbox(visible=False, elem_id="rs-token")  # the image on screen when Enter was pressed
    heading = f"## Reader study: {plain(study)}"

    @reader_errors(lambda message: ("", heading, "", EMPTY, "", None, None, "", notice_md(message),
                                    gr.update(visible=False)))
    def on_open(invitation_):
        token, page, text = open_page(site, study, invitation_)
        return invitation_, heading, token or "", page, text, None, None, "", "", gr.update(visible=bool(token))

    @reader_errors(lambda message: (*[gr.skip()] * 6, notice_md(message), gr.skip()))
    def on_next(invitation_, token_, answer_, realism_, note_):
        token, page, text, repeated = answer_and_next(site, study, invitation_, token_, answer_, realism_, note_)
        return token or "", page, text, None, None, "", notice_md(repeated), gr.update(visible=bool(token))

    flow = [shown_token, viewer, progress, answer, realism, note, notice, controls]
    gr.context.Context.root_block.load(on_open, [invitation], [invitation, title] + flow, js=READ_INVITATION_JS,
                                       api_name="open", show_progress="hidden")
    asked = [invitation, shown_token, answer, realism, note]
    next_btn.click(on_next, asked, flow, api_name="answer", show_progress="hidden")
    note.submit(on_next, asked, flow, api_visibility="private", show_progress="hidden")


def build_reader_app(site, study: str) -> gr.Blocks:
    """The whole reader server: study `study`'s reader page and nothing else."""
    name = check_study(site, study)
    with gr.Blocks(title="Reader study", delete_cache=(3600, 3600)) as demo:
        build(site, name)
    return demo
