"""Reader study tab (the study owner's): create blinded "real or generated?" studies, start the
reader server, invite readers, see the results.

The study owner creates a study (k held-out real images and k generated from a run with the
same captions, `medart.reader_study.sets.create_study`). Readers do not use this app: it shows the
workspace's images, captions and runs, which would break the blinding. They answer on a
separate reader server that serves one study's reader page and nothing else
(`python app.py --reader-study NAME`, `medart.ui.reader_page`); this tab shows the exact
command for the chosen study and how far each reader has got (refreshed every few seconds). k
starts at what the chosen split holds when that is fewer than 10. A refused action is said in
this tab's message lines, never as a red badge over the fields. Readers are invited here
(Readers and results: a label of the owner's choosing makes a reader with their own link,
`/?invite=TOKEN` on the reader server; the owner sees and copies the links, and revokes one).

Owner code: creating a study here requires one (stored hashed, `medart.reader_study`); Show
results, Export answers, Close study and the invitation links do nothing without the right
code. Export answers (each answer with the truth of its image) works once the study is closed
(Close study: its readers answer no more); results show at any time. A study without a code (made
by the CLI without `--owner-code`, or before owner codes existed) shows nothing until someone
sets one with Set owner code, which works once per study (the CLI can replace it). Choosing
another study clears the results and the code field. The code travels only from the page to
the server (Create, Show results, Export, Set owner code); nothing the page receives holds it
or its hash.
"""

from __future__ import annotations

import html
import io
import shlex
import sys
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from medart.reader_study import report as reader_report
from medart.reader_study.stats import summarise
from medart.reader_study.sets import create_study
from medart.reader_study import OWNER_CODE_MIN, READER_URL, ReaderStudies, check_owner_code, reader_link
from medart.assets import APP_SCRIPT
from medart.constants import SPLITS
from medart.fileio import slugify
from medart.run_folder import adapter_path
from medart.ui.widgets import on_page_load, user_errors

NO_CODE_NOTE = ("**This study has no owner code yet**, so its results stay hidden here. Study owner: type a "
                f"code (at least {OWNER_CODE_MIN} characters) and press **Set owner code**; it can be set once.")
READER_PORT = 7861
DEFAULT_K = 10
READERS_REFRESH_S = 5  # seconds between refreshes of the readers' counts while the tab is open


def reader_command(studio, name: str, host: str = "0.0.0.0", port: int = READER_PORT) -> str:
    """The exact command that serves study `name`'s reader page (and nothing else) to readers."""
    where = ["--home", str(studio.home)]
    if studio.workspace_dir != studio.home / "workspace":
        where += ["--workspace", str(studio.workspace_dir)]
    lines = ["MEDART_AUTH=reader:CHOOSE-A-PASSWORD", shlex.join([sys.executable, str(APP_SCRIPT)]),
             shlex.join(["--reader-study", name, *where]),
             shlex.join(["--host", host, "--port", str(port)])]
    return " \\\n  ".join(lines)


def readers_md(studio, name: str) -> str:
    """How to start the reader server for `name`, and each reader's progress (no answers)."""
    if not name:
        return ""
    if studio.per_session:  # a study made here lives in this browser session only
        return ("Studies made on this shared Space stay in your browser session. To run one with readers, "
                "duplicate the Space or run the app on your own machine, then start its reader server.")
    with studio.workspace() as ws:
        store = ReaderStudies(ws)
        study = store.find(name)
        readers = store.readers(study) if study else []
    if study is None:
        return f"No study called {html.escape(name)!r}."
    progress = ", ".join(f"{html.escape(r.name)} {r.answered}/{len(r.order)}" + (" (revoked)" if r.revoked else "")
                         for r in readers) or "none yet"
    return (f"**Readers answer on their own server**, which serves this study's reader page and nothing else "
            "(no workspace images, captions, runs or results). Start it on this machine with:\n\n"
            f"```\n{reader_command(studio, study.name)}\n```\n\n"
            "and give each reader their own invitation link (Readers and results, below: add a reader) with "
            "the user and password you chose (on one machine only: `--host 127.0.0.1` and no password). "
            f"Stop it (Ctrl-C) when the study is over.\n\n**Readers so far:** {progress}")


def default_k(studio, split: str) -> int:
    """k that a new study of `split` starts at: DEFAULT_K, or every image the split has when it has fewer."""
    from medart.workspace.store import STATUSES, Filter

    if not split:
        return DEFAULT_K
    with studio.workspace() as ws:
        held = ws.count(Filter(split=split, status=[s for s in STATUSES if s != "rejected"]))
    return min(DEFAULT_K, held) or DEFAULT_K


def study_choices(studio) -> list[str]:
    with studio.workspace() as ws:
        return [s.name for s in ReaderStudies(ws).studies()]


def links_md(readers, base_url: str) -> str:
    """Each invited reader's label, progress and link (copyable), for the study's owner."""
    rows = [r for r in readers if r.invitation]
    if not rows:
        return "No readers invited yet: type a label (a name, initials) and press **Add reader**."
    width = max(len(r.name) for r in rows)
    lines = [f"{r.name:<{width}}  {r.answered}/{len(r.order)}  "
             + ("revoked" if r.revoked else reader_link(base_url, r.invitation)) for r in rows]
    return ("Each link is one reader's identity: give it to that reader only (anyone with it answers as them). "
            "Revoke a link that went to the wrong person and add the reader again under a new label.\n\n"
            "```\n" + "\n".join(lines) + "\n```")


# ---- what the buttons do (no gradio objects in or out: testable without a browser) ----------------
def create_from_run(studio, run_name: str, split: str, k, seed, name: str, owner_code: str,
                    progress=None) -> tuple[str, str]:
    """Create a study from a run of the studio (its loaded pipeline when the base matches),
    with the owner code that its results will ask for (required here). `seed`: None draws one
    with `secrets` (the app never shows it)."""
    from medart.generate import run_base_model

    check_owner_code(owner_code)  # before any image is generated
    if not run_name:
        raise ValueError("choose a run with an adapter (train one first)")
    run_dir = studio.run_dir(run_name)
    same_base = run_base_model(run_dir) in (None, studio.base_model)
    generator = studio.generator(run_dir) if same_base and adapter_path(run_dir) else None
    with studio.workspace() as ws:
        made = create_study(ws, name, run_dir, k=int(k) if k else None, split=split or "test",
                            seed=None if seed in (None, "") else int(seed),
                            base_model=None if not same_base else studio.base_model, generator=generator,
                            progress=progress, owner_code=owner_code)
    return (f"Created **{html.escape(made.name)}**: {made.n_real} real + {made.n_generated} generated images "
            f"({made.display_size} px). Keep the owner code: Results ask for it. "
            "Start the reader server below and add readers under Readers and results."), made.name


def needs_owner_code(studio, name: str) -> bool:
    """Whether `name` is a study that has no owner code yet (False for no or an unknown study)."""
    if not name:
        return False
    with studio.workspace() as ws:
        study = ReaderStudies(ws).find(name)
    return study is not None and not study.has_owner_code


def set_owner_code(studio, name: str, code: str) -> str:
    """Give a study without an owner code its code (refused when it has one)."""
    if not name:
        raise ValueError("choose a study first")
    with studio.workspace() as ws:
        study = ReaderStudies(ws).set_owner_code(name, code)
    return f"Owner code of **{html.escape(study.name)}** set. Keep it: results ask for it."


def results_view(studio, name: str, owner_code: str) -> tuple[str, Image.Image]:
    """The results table (Markdown) and plot of a study, for its owner code only."""
    if not name:
        raise ValueError("choose a study first")
    with studio.workspace() as ws:
        store = ReaderStudies(ws)
        s = store.check_owner(name, owner_code)
        results = summarise(store.answers(s))
    title = f"{s.name}: {s.n_real} real + {s.n_generated} generated"
    return reader_report.markdown(results, title), Image.open(io.BytesIO(reader_report.plot_png(results, title)))


def invitations(studio, name: str, owner_code: str, base_url: str = "", add: str | None = None,
                revoke: str | None = None) -> str:
    """The study's readers with their links, for its owner code only; first adds a reader
    labelled `add`, or revokes the one labelled `revoke`, when given."""
    if not name:
        raise ValueError("choose a study first")
    with studio.workspace() as ws:
        store = ReaderStudies(ws)
        study = store.check_owner(name, owner_code)
        if add is not None:
            store.invite(study, add)
        if revoke is not None:
            store.revoke(study, revoke)
        return links_md(store.readers(study), base_url)


def export_answers(studio, name: str, owner_code: str) -> str:
    """Every answer as a CSV file in a fresh temporary folder, for the owner code only; its path."""
    if not name:
        raise ValueError("choose a study first")
    with studio.workspace() as ws:
        store = ReaderStudies(ws)
        study = store.check_owner(name, owner_code)
        slug = slugify(study.name) or "study"
        return str(store.export_csv(study, Path(tempfile.mkdtemp(prefix="reader-study-")) / f"{slug}.csv"))


def close_study(studio, name: str, owner_code: str) -> str:
    """Close the study for its owner code only: readers answer no more; its answers can be exported."""
    if not name:
        raise ValueError("choose a study first")
    with studio.workspace() as ws:
        study = ReaderStudies(ws).close(ReaderStudies(ws).check_owner(name, owner_code))
    return (f"**{html.escape(study.name)}** closed: readers' links open nothing now, and Export answers gives "
            "every answer with the truth of each image.")


def invitation_controls(studio, study, owner_code, owner_msg, readers) -> None:
    """Add a reader by label, show every reader's link, revoke one: all for the owner code only."""
    with gr.Row(equal_height=True):
        label = gr.Textbox(label="Reader label (your choice: a name, initials)", elem_id="rs-label", scale=2)
        url = gr.Textbox(READER_URL, label="Reader server address (for the links)", elem_id="rs-reader-url", scale=2)
        invite_btn = gr.Button("Add reader", elem_id="rs-invite", scale=1)
        links_btn = gr.Button("Show links", elem_id="rs-links-btn", scale=1)
        revoke_btn = gr.Button("Revoke", elem_id="rs-revoke", scale=1)
    links = gr.Markdown(elem_id="rs-links")

    def on_links(name, code, url_, add=None, revoke=None):
        try:
            text = invitations(studio, name, code, url_, add=add, revoke=revoke)
        except ValueError as e:
            return "", f"**Not shown:** {html.escape(str(e))}", gr.skip(), gr.skip()
        return text, "", gr.skip() if add is None and revoke is None else "", readers_md(studio, name)

    outputs = [links, owner_msg, label, readers]
    asked = [study, owner_code, url, label]
    study.change(lambda: "", None, links)  # another study: no links of the last one stay
    links_btn.click(on_links, [study, owner_code, url], outputs)
    for trigger in (invite_btn.click, label.submit):
        trigger(lambda n, c, u, a: on_links(n, c, u, add=a or ""), asked, outputs)
    revoke_btn.click(lambda n, c, u, a: on_links(n, c, u, revoke=a or ""), asked, outputs)


def follow(studio, split, k, study, readers) -> None:
    """k starts at what the chosen split can give (`default_k`); readers' counts follow their
    answers (made on their own server) without a click."""
    on_page_load(lambda: default_k(studio, "test"), [k])  # the split the form opens on
    split.change(lambda split_: default_k(studio, split_), [split], k, show_progress="hidden")
    gr.Timer(READERS_REFRESH_S).tick(lambda name: readers_md(studio, name) if name else gr.skip(), [study],
                                     readers, show_progress="hidden", api_visibility="private")


def build(studio):
    with gr.Tab("Reader study", id="reader-study") as tab:
        gr.Markdown("Can a clinician tell our generated images from real ones? A blinded test: each reader sees "
                    "held-out real and generated images in their own random order, identically encoded, on a "
                    "reader server that shows nothing else.")
        with gr.Accordion("Create a study", open=False):
            with gr.Row():
                run = gr.Dropdown(choices=[], label="Run", elem_id="rs-run", allow_custom_value=True)
                split = gr.Dropdown(list(reversed(SPLITS)), value="test", label="Real images: split")  # held-out first
                k = gr.Number(value=DEFAULT_K, precision=0, minimum=1, label="k (images of each kind)", elem_id="rs-k")
            with gr.Row():
                new_name = gr.Textbox(label="Study name", elem_id="rs-new-name")
                new_code = gr.Textbox(label=f"Owner code (at least {OWNER_CODE_MIN} characters; results ask for it)",
                                      type="password", elem_id="rs-new-code")
            create_btn = gr.Button("Create study (generates k images)", elem_id="rs-create")
            created = gr.Markdown(elem_id="rs-created")
        study = gr.Dropdown(choices=[], label="Study", elem_id="rs-study", allow_custom_value=True)
        readers = gr.Markdown(elem_id="rs-readers")

        with gr.Accordion("Readers and results (study owner only: needs the study's owner code)", open=False):
            with gr.Row(equal_height=True):
                owner_code = gr.Textbox(label="Owner code of this study", type="password", elem_id="rs-owner-code",
                                        scale=2)
                results_btn = gr.Button("Show results", elem_id="rs-results-btn", scale=1)
                export_btn = gr.Button("Export answers (CSV)", elem_id="rs-export", scale=1)
                close_btn = gr.Button("Close study", elem_id="rs-close", scale=1)
                set_code_btn = gr.Button("Set owner code", visible=False, elem_id="rs-set-code", scale=1)
            owner_msg = gr.Markdown(elem_id="rs-owner-msg")
            invitation_controls(studio, study, owner_code, owner_msg, readers)
            results_md = gr.Markdown(elem_id="rs-results")
            plot = gr.Image(label="Accuracy and realism", type="pil", interactive=False, elem_id="rs-plot",
                            visible=False)
            csv_file = gr.File(label="Answers", interactive=False, elem_id="rs-csv", visible=False)

        def no_results():  # results table, plot and CSV: empty, and no empty frames either
            return "", gr.update(value=None, visible=False), gr.update(value=None, visible=False)

        def on_create(run_name, split_, k_, name, code, progress_=gr.Progress()):
            try:  # a refusal is said here; no red badge on the study list it did not touch
                text, made = user_errors(create_from_run)(
                    studio, run_name, split_, k_, None, name, code,
                    lambda stage, done, total: progress_((done, total), desc="generating"))
            except gr.Error as e:  # the form is kept; once the study has it, the code leaves the page
                return f"**Not created:** {html.escape(e.message)}", gr.skip(), gr.skip()
            return text, gr.update(choices=study_choices(studio), value=made), ""

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

        def on_close(name, code):
            try:
                return close_study(studio, name, code), readers_md(studio, name)
            except ValueError as e:
                return f"**Not closed:** {html.escape(str(e))}", gr.skip()

        def on_set_code(name, code):
            try:
                text = set_owner_code(studio, name, code)
            except ValueError as e:
                return f"**Not set:** {html.escape(str(e))}", gr.skip()
            return text, gr.update(visible=False)

        def on_study(name):  # another study: nothing of the last one stays on the page
            missing = needs_owner_code(studio, name)
            return no_results() + ("", NO_CODE_NOTE if missing else "", gr.update(visible=missing),
                                   readers_md(studio, name))

        def choices(name=None, current_run=None):
            from medart.ui.compare import run_choice

            names, chosen = run_choice(studio, current_run)  # the newest finished run unless one is chosen
            return (gr.update(choices=study_choices(studio)), gr.update(choices=names, value=chosen),
                    readers_md(studio, name))

        shown_results = [results_md, plot, csv_file]
        create_btn.click(on_create, [run, split, k, new_name, new_code], [created, study, new_code])
        study.change(on_study, [study], shown_results + [owner_code, owner_msg, set_code_btn, readers])
        results_btn.click(on_results, [study, owner_code], shown_results + [owner_msg])
        owner_code.submit(on_results, [study, owner_code], shown_results + [owner_msg])
        export_btn.click(on_export, [study, owner_code], shown_results + [owner_msg])
        set_code_btn.click(on_set_code, [study, owner_code], [owner_msg, set_code_btn])
        close_btn.click(on_close, [study, owner_code], [owner_msg, readers])
        tab.select(choices, [study, run], [study, run, readers])
        on_page_load(lambda: choices()[:2], [study, run])  # nothing chosen yet: no readers to show
        follow(studio, split, k, study, readers)
    return tab
