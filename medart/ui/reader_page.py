"""The reader's page of a blinded "real or generated?" study, served on its own by
`python app.py --reader-study NAME` (`build_reader_app`).

A reader types their name and answers one image at a time: R = real, G = generated, 1-5 =
realism (optional), N = write a note, Enter = next. Every answer is saved at once; the same
name later resumes at the next unanswered image. What the browser receives for an image is
only an inline PNG under a random token, encoded identically for both kinds
(`medart.reader_study.images`).

The reader server holds this page and nothing else: its API is `/start` and `/answer` (and a
page-load event that shows the study's name). It cannot list, import, caption, train,
generate, compare, evaluate, export or show results, has no owner-code check a reader could
trip, and serves no file: it opens the workspace database only to read the study's images and
store answers. Results stay in the owner's app (`medart.ui.reader_study`) and the CLI.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from medart.reader_study import images as reader_images
from medart.reader_study import ReaderStudies, Shown
from medart.ui.widgets import on_page_load, user_errors

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
EMPTY = '<div class="rs-empty"><p>Type your name and press <b>Start / resume</b>.</p></div>'
HELP = ("**Keys:** `R` real · `G` generated · `1`–`5` realism (optional) · `N` note (`Esc` leaves it) · "
        "`Enter` next. Answers are saved at once; come back later with the same name to resume.")
# the endpoints a reader server has (tests compare the app's API with this)
ENDPOINTS = ("/start", "/answer")


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
    if shown is None:
        return f"**{html.escape(reader)}**: {total} / {total} answered."
    return f"**{html.escape(reader)}**: image {shown.position} of {shown.total} · {shown.answered} answered"


# ---- what the buttons do (no gradio objects in or out: testable without a browser) ----------------
def _next_view(store, name: str, reader_name: str) -> tuple[dict, str, str]:
    shown = store.next_image(name, reader_name)
    r = store.reader(name, reader_name)
    state = {"study": name, "reader": r.name, "token": shown.token if shown else None}
    return state, viewer_html(shown, None if shown else len(r.order)), progress_text(shown, r.name, len(r.order))


def start_session(site, name: str, reader_name: str) -> tuple[dict, str, str]:
    """(session state, viewer HTML, progress text) at the reader's next unanswered image.
    `site` is anything with `workspace()` (a Studio, a StudyWorkspace)."""
    if not name:
        raise ValueError("choose a study first (or create one)")
    with site.workspace() as ws:
        return _next_view(ReaderStudies(ws), name, reader_name)


def answer_and_next(site, state: dict, answer: str | None, realism: str | None, note: str | None,
                    token: str | None = None) -> tuple[dict, str, str]:
    """Save the answer to the image on screen (one transaction), then show the next one.
    `token` is the image the page showed when the reader pressed Enter (default: the session's):
    a second Enter that arrives before the page has changed repeats that token and is ignored,
    instead of answering an image the reader has not seen."""
    if not state or not state.get("study"):
        raise ValueError("type your name and press Start / resume first")
    token = token or state.get("token")
    if not token:
        raise ValueError("this reader has answered every image of the study")
    if not answer:
        raise ValueError("answer first: R (real) or G (generated)")
    with site.workspace() as ws:
        store = ReaderStudies(ws)
        store.answer(state["study"], state["reader"], token, answer, realism or None, note or "")
        return _next_view(store, state["study"], state["reader"])


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
    title = gr.Markdown(elem_id="rs-title")
    gr.Markdown("Real or generated? Each reader sees the study's real and generated images in their own "
                "random order, identically encoded. " + HELP)
    with gr.Row():
        reader = gr.Textbox(label="Your name (reader)", elem_id="rs-reader", scale=3)
        start_btn = gr.Button("Start / resume", variant="primary", elem_id="rs-start", scale=1)
    progress = gr.Markdown(elem_id="rs-progress")
    viewer = gr.HTML(EMPTY, elem_id="rs-viewer", js_on_load=KEYS_JS)
    with gr.Row():
        answer = gr.Radio(["real", "generated"], label="Real (R) or generated (G)?", elem_id="rs-answer")
        realism = gr.Radio(["1", "2", "3", "4", "5"], label="Realism 1 (artificial) – 5 (real), optional",
                           elem_id="rs-realism")
    note = gr.Textbox(label="Note (optional; N to write, Enter to go on)", elem_id="rs-note", max_lines=1)
    next_btn = gr.Button("Next (Enter)", variant="primary", elem_id="rs-next")
    session = gr.State({})
    shown_token = gr.Textbox(visible=False, elem_id="rs-token")  # the image on screen when Enter was pressed

    @user_errors
    def on_start(reader_name):
        state, page, text = start_session(site, study, reader_name)
        return state, state["token"] or "", page, text, None, None, ""

    @user_errors
    def on_next(state, token_, answer_, realism_, note_):
        state, page, text = answer_and_next(site, state, answer_, realism_, note_, token=token_ or None)
        return state, state["token"] or "", page, text, None, None, ""

    flow = [session, shown_token, viewer, progress, answer, realism, note]
    start_btn.click(on_start, [reader], flow, api_name="start")
    reader.submit(on_start, [reader], flow, api_visibility="private")
    next_btn.click(on_next, [session, shown_token, answer, realism, note], flow, api_name="answer")
    note.submit(on_next, [session, shown_token, answer, realism, note], flow, api_visibility="private")
    on_page_load(lambda: f"## Reader study: {html.escape(study)}", [title])


def build_reader_app(site, study: str) -> gr.Blocks:
    """The whole reader server: study `study`'s reader page and nothing else."""
    name = check_study(site, study)
    with gr.Blocks(title="Reader study", delete_cache=(3600, 3600)) as demo:
        build(site, name)
    return demo
