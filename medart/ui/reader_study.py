"""Reader study tab: a blinded "real or generated?" test, answered with the keyboard.

The study owner creates a study (k held-out real images and k generated from a run with the
same captions, `medart.reader_study.create_study`). A reader types their name and answers one
image at a time: R = real, G = generated, 1-5 = realism (optional), N = write a note,
Enter = next. Every answer is saved at once; the same name later resumes at the next
unanswered image. What the browser receives for an image is only an inline PNG under a
random token, encoded identically for both kinds (`medart.reader_images`); the truth never
leaves the server until the study owner types the study's owner code under Results.

Owner code: creating a study here requires one (stored hashed, `medart.reader_study`); Show
results and Export answers show nothing without the right code. A study without a code (made
by the CLI without `--owner-code`, or before owner codes existed) shows nothing until someone
sets one with Set owner code, which works once per study; whoever sets it first owns the
results in the app, so the owner should do it before readers start (the CLI can replace it).
Choosing another study or starting a reader session clears the results and the code field,
so a page the owner leaves behind shows a reader nothing. The code travels only from the page
to the server (Create, Show results, Export, Set owner code); nothing the page receives, and
nothing sent while a reader answers, holds it or its hash.
"""

from __future__ import annotations

import html
import io
import re
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from medart import reader_images, reader_report
from medart.reader_stats import summarise
from medart.reader_sets import create_study
from medart.reader_study import OWNER_CODE_MIN, ReaderStudies, Shown, check_owner_code
from medart.studio import adapter_path
from medart.ui.widgets import user_errors

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

EMPTY = '<div class="rs-empty"><p>Choose a study, type your name and press <b>Start / resume</b>.</p></div>'
NO_CODE_NOTE = ("**This study has no owner code yet**, so its results stay hidden here. Study owner: type a "
                f"code (at least {OWNER_CODE_MIN} characters) and press **Set owner code**; it can be set once.")
HELP = ("**Keys:** `R` real · `G` generated · `1`–`5` realism (optional) · `N` note (`Esc` leaves it) · "
        "`Enter` next. Answers are saved at once; come back later with the same name to resume.")


def viewer_html(shown: Shown | None, done: int | None = None) -> str:
    """The page's only view of a study image: an inline PNG under its random token."""
    if shown is None:
        if done is None:
            return EMPTY
        return (f'<div class="rs-done" data-done="{done}"><h3>All {done} images answered. Thank you!</h3>'
                "<p>The study owner sees the results below.</p></div>")
    return (f'<div class="rs-frame" data-token="{shown.token}" data-position="{shown.position}" '
            f'data-total="{shown.total}">'
            f'<img src="{reader_images.data_uri(shown.png)}" alt="study image" width="{VIEW_PX}" height="{VIEW_PX}" '
            f'style="width:{VIEW_PX}px;height:{VIEW_PX}px;image-rendering:auto;display:block;margin:auto"/>'
            "</div>")


def progress_text(shown: Shown | None, reader: str, total: int) -> str:
    if shown is None:
        return f"**{html.escape(reader)}**: {total} / {total} answered."
    return f"**{html.escape(reader)}**: image {shown.position} of {shown.total} · {shown.answered} answered"


def study_choices(studio) -> list[str]:
    ws = studio.workspace()
    try:
        return [s.name for s in ReaderStudies(ws).studies()]
    finally:
        ws.close()


# ---- what the buttons do (no gradio objects in or out: testable without a browser) ----------------
def _next_view(store, name: str, reader_name: str) -> tuple[dict, str, str]:
    shown = store.next_image(name, reader_name)
    r = store.reader(name, reader_name)
    state = {"study": name, "reader": r.name, "token": shown.token if shown else None}
    return state, viewer_html(shown, None if shown else len(r.order)), progress_text(shown, r.name, len(r.order))


def start_session(studio, name: str, reader_name: str) -> tuple[dict, str, str]:
    """(session state, viewer HTML, progress text) at the reader's next unanswered image."""
    if not name:
        raise ValueError("choose a study first (or create one)")
    ws = studio.workspace()
    try:
        return _next_view(ReaderStudies(ws), name, reader_name)
    finally:
        ws.close()


def answer_and_next(studio, state: dict, answer: str | None, realism: str | None, note: str | None,
                    token: str | None = None) -> tuple[dict, str, str]:
    """Save the answer to the image on screen (one transaction), then show the next one.
    `token` is the image the page showed when the reader pressed Enter (default: the session's):
    a second Enter that arrives before the page has changed repeats that token and is ignored,
    instead of answering an image the reader has not seen."""
    if not state or not state.get("study"):
        raise ValueError("choose a study, type your name and press Start / resume first")
    token = token or state.get("token")
    if not token:
        raise ValueError("this reader has answered every image of the study")
    if not answer:
        raise ValueError("answer first: R (real) or G (generated)")
    ws = studio.workspace()
    try:
        store = ReaderStudies(ws)
        store.answer(state["study"], state["reader"], token, answer, realism or None, note or "")
        return _next_view(store, state["study"], state["reader"])
    finally:
        ws.close()


def create_from_run(studio, run_name: str, split: str, k, seed, name: str, owner_code: str,
                    progress=None) -> tuple[str, str]:
    """Create a study from a run of the studio (its loaded pipeline when the base matches),
    with the owner code that its results will ask for (required here)."""
    from medart.generate import run_base_model

    check_owner_code(owner_code)  # before any image is generated
    if not run_name:
        raise ValueError("choose a run with an adapter (train one first)")
    run_dir = Path(run_name) if Path(run_name).is_absolute() else studio.runs_dir / run_name
    if not run_dir.is_dir():
        raise ValueError(f"no run {run_name!r} in {studio.runs_dir}")
    same_base = run_base_model(run_dir) in (None, studio.base_model)
    generator = studio.generator(run_dir) if same_base and adapter_path(run_dir) else None
    ws = studio.workspace()
    try:
        made = create_study(ws, name, run_dir, k=int(k) if k else None, split=split or "test", seed=int(seed or 0),
                            base_model=None if not same_base else studio.base_model, generator=generator,
                            progress=progress, owner_code=owner_code)
    finally:
        ws.close()
    return (f"Created **{html.escape(made.name)}**: {made.n_real} real + {made.n_generated} generated images "
            f"({made.display_size} px). Keep the owner code: Results ask for it. "
            "Readers: choose the study above and type your name."), made.name


def needs_owner_code(studio, name: str) -> bool:
    """Whether `name` is a study that has no owner code yet (False for no or an unknown study)."""
    if not name:
        return False
    ws = studio.workspace()
    try:
        study = ReaderStudies(ws).find(name)
    finally:
        ws.close()
    return study is not None and not study.has_owner_code


def set_owner_code(studio, name: str, code: str) -> str:
    """Give a study without an owner code its code (refused when it has one)."""
    if not name:
        raise ValueError("choose a study first")
    ws = studio.workspace()
    try:
        study = ReaderStudies(ws).set_owner_code(name, code)
    finally:
        ws.close()
    return f"Owner code of **{html.escape(study.name)}** set. Keep it: results ask for it."


def results_view(studio, name: str, owner_code: str) -> tuple[str, Image.Image]:
    """The results table (Markdown) and plot of a study, for its owner code only."""
    if not name:
        raise ValueError("choose a study first")
    ws = studio.workspace()
    try:
        store = ReaderStudies(ws)
        s = store.check_owner(name, owner_code)
        results = summarise(store.answers(s))
    finally:
        ws.close()
    title = f"{s.name}: {s.n_real} real + {s.n_generated} generated"
    return reader_report.markdown(results, title), Image.open(io.BytesIO(reader_report.plot_png(results, title)))


def export_answers(studio, name: str, owner_code: str) -> str:
    """Every answer as a CSV file in a fresh temporary folder, for the owner code only; its path."""
    if not name:
        raise ValueError("choose a study first")
    ws = studio.workspace()
    try:
        store = ReaderStudies(ws)
        study = store.check_owner(name, owner_code)
        slug = re.sub(r"[^\w.-]+", "-", study.name).strip("-") or "study"
        return str(store.export_csv(study, Path(tempfile.mkdtemp(prefix="reader-study-")) / f"{slug}.csv"))
    finally:
        ws.close()


def build(studio):
    with gr.Tab("Reader study", id="reader-study") as tab:
        gr.Markdown("Can a clinician tell our generated images from real ones? A blinded test: each reader sees "
                    "held-out real and generated images in their own random order, identically encoded.")
        with gr.Accordion("Create a study", open=False):
            with gr.Row():
                run = gr.Dropdown(choices=[r.name for r in studio.tuned_runs()], label="Run",
                                  elem_id="rs-run", allow_custom_value=True)
                split = gr.Dropdown(["test", "validation", "train"], value="test", label="Real images: split")
                k = gr.Number(value=10, precision=0, minimum=1, label="k (images of each kind)", elem_id="rs-k")
                seed = gr.Number(value=0, precision=0, label="Seed", elem_id="rs-seed")
            with gr.Row():
                new_name = gr.Textbox(label="Study name", elem_id="rs-new-name")
                new_code = gr.Textbox(label=f"Owner code (at least {OWNER_CODE_MIN} characters; results ask for it)",
                                      type="password", elem_id="rs-new-code")
            create_btn = gr.Button("Create study (generates k images)", elem_id="rs-create")
            created = gr.Markdown(elem_id="rs-created")
        with gr.Row():
            study = gr.Dropdown(choices=study_choices(studio), label="Study", elem_id="rs-study",
                                allow_custom_value=True)
            reader = gr.Textbox(label="Your name (reader)", elem_id="rs-reader")
            start_btn = gr.Button("Start / resume", variant="primary", elem_id="rs-start")
        gr.Markdown(HELP)
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

        with gr.Accordion("Results (study owner only: needs the study's owner code)", open=False):
            with gr.Row(equal_height=True):
                owner_code = gr.Textbox(label="Owner code of this study", type="password", elem_id="rs-owner-code",
                                        scale=2)
                results_btn = gr.Button("Show results", elem_id="rs-results-btn", scale=1)
                export_btn = gr.Button("Export answers (CSV)", elem_id="rs-export", scale=1)
                set_code_btn = gr.Button("Set owner code", visible=False, elem_id="rs-set-code", scale=1)
            owner_msg = gr.Markdown(elem_id="rs-owner-msg")
            results_md = gr.Markdown(elem_id="rs-results")
            plot = gr.Image(label="Accuracy and realism", type="pil", interactive=False, elem_id="rs-plot",
                            visible=False)
            csv_file = gr.File(label="Answers", interactive=False, elem_id="rs-csv", visible=False)

        def no_results():  # results table, plot and CSV: empty, and no empty frames either
            return "", gr.update(value=None, visible=False), gr.update(value=None, visible=False)

        @user_errors
        def on_start(name, reader_name):  # a reader sits down: the owner's results and code leave the page
            state, page, text = start_session(studio, name, reader_name)
            return (state, state["token"] or "", page, text, None, None, "") + no_results() + ("",)

        @user_errors
        def on_next(state, token_, answer_, realism_, note_):
            state, page, text = answer_and_next(studio, state, answer_, realism_, note_, token=token_ or None)
            return state, state["token"] or "", page, text, None, None, ""

        @user_errors
        def on_create(run_name, split_, k_, seed_, name, code, progress_=gr.Progress()):
            text, made = create_from_run(studio, run_name, split_, k_, seed_, name, code,
                                         lambda stage, done, total: progress_((done, total), desc="generating"))
            return text, gr.update(choices=study_choices(studio), value=made)

        def refused(error):  # a refusal also clears whatever an earlier right code had shown
            return no_results() + (f"**Not shown:** {html.escape(str(error))}",)

        def on_results(name, code):
            try:
                md, image = results_view(studio, name, code)
            except ValueError as e:
                return refused(e)
            return md, gr.update(value=image, visible=True), gr.skip(), ""

        def on_export(name, code):
            try:
                path = export_answers(studio, name, code)
            except ValueError as e:
                return refused(e)
            return gr.skip(), gr.skip(), gr.update(value=path, visible=True), ""

        def on_set_code(name, code):
            try:
                text = set_owner_code(studio, name, code)
            except ValueError as e:
                return f"**Not set:** {html.escape(str(e))}", gr.skip()
            return text, gr.update(visible=False)

        def on_study(name):  # another study: nothing of the last one stays on the page
            missing = needs_owner_code(studio, name)
            return no_results() + ("", NO_CODE_NOTE if missing else "", gr.update(visible=missing))

        flow = [session, shown_token, viewer, progress, answer, realism, note]
        shown_results = [results_md, plot, csv_file]
        start_btn.click(on_start, [study, reader], flow + shown_results + [owner_code])
        reader.submit(on_start, [study, reader], flow + shown_results + [owner_code])
        next_btn.click(on_next, [session, shown_token, answer, realism, note], flow)
        note.submit(on_next, [session, shown_token, answer, realism, note], flow)
        created_ok = create_btn.click(on_create, [run, split, k, seed, new_name, new_code], [created, study])
        created_ok.success(lambda: "", None, new_code)  # the code leaves the page once the study has it
        study.change(on_study, [study], shown_results + [owner_code, owner_msg, set_code_btn])
        results_btn.click(on_results, [study, owner_code], shown_results + [owner_msg])
        owner_code.submit(on_results, [study, owner_code], shown_results + [owner_msg])
        export_btn.click(on_export, [study, owner_code], shown_results + [owner_msg])
        set_code_btn.click(on_set_code, [study, owner_code], [owner_msg, set_code_btn])
        tab.select(lambda: (gr.update(choices=study_choices(studio)),
                            gr.update(choices=[r.name for r in studio.tuned_runs()])), outputs=[study, run])
    return tab
