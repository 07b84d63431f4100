"""Captions tab: review every caption before training (gallery, editor, batch job, find/replace, templates).

The batch job and Regenerate use one describer for every image when a backend is chosen,
or, with "per template" (the default), each image's template's describer, else the
workspace default (the last explicit choice, saved as settings), else offline.

Keyboard shortcuts (see layout.SHORTCUTS): Alt+A approve and next, Alt+N next, Alt+P previous,
Alt+U next unreviewed, Alt+S save.
"""

from __future__ import annotations

import html
import math

import gradio as gr

from captioning import BACKENDS
from captioning.templates import ModalityTemplate
from medart.constants import MAX_CAPTION_TOKENS
from medart.workspace.describe import Describer, group_by_describer, workspace_describer
from medart.ui import pictures
from medart.ui.widgets import progress_bar, state_badge, user_errors
from medart.workspace import Filter, Workspace

STATUS_CHOICES = ["all", "unreviewed", "draft", "edited", "approved", "rejected"]
PER_TEMPLATE = "per template"
JOB_BACKENDS = [PER_TEMPLATE, *BACKENDS]
# a template's own describer; "" leaves it to the job's choice or the workspace default
TEMPLATE_BACKENDS = [("job's choice / workspace default", ""), *[(b, b) for b in BACKENDS]]
MODEL_HINT = "hub id, folder or served name"
PAGE = 48  # thumbnails per gallery page
EDITOR_PX = 1024  # the editor's image: at most this many pixels a side, losslessly encoded
URL_HINT = "http://gpu-box:8000/v1"


def make_filter(status, label, text, max_tokens) -> Filter:
    st = None if status in (None, "", "all") else (["draft", "edited"] if status == "unreviewed" else status)
    return Filter(status=st, label=None if label in (None, "", "all") else label, text=text or None,
                  max_tokens=int(max_tokens) if max_tokens else None)


def token_md(n) -> str:
    n = n or 0
    over = n > MAX_CAPTION_TOKENS
    colour = "#dc2626" if over else "#16a34a"
    note = f" — too long: PixArt-α reads at most {MAX_CAPTION_TOKENS} tokens" if over else ""
    return f'<span id="token-count-value" data-tokens="{n}" style="color:{colour};font-weight:600">{n} / {MAX_CAPTION_TOKENS} T5 tokens</span>{note}'


def load_template(ws: Workspace, name: str | None = None) -> tuple:
    """The editor's fields for template `name` (default: the workspace's default modality):
    (template names, name, image phrase, features, prompt, max words, backend, model, URL)."""
    names = [t.name for t in ws.list_templates()]
    name = name or ws.get_setting("modality") or names[0]
    t = ws.get_template(name)
    return (names, name, t.image_phrase, ", ".join(t.features), t.prompt, t.max_words,
            t.backend or "", t.model or "", t.url or "")


def save_template(ws: Workspace, name, phrase, feats, prompt, words, backend, model, url) -> ModalityTemplate:
    """Store the editor's fields as template `name` (validated; empty describer fields: not set)."""
    existing = {t.name: t for t in ws.list_templates()}.get((name or "").strip())
    t = ModalityTemplate((name or "").strip(), (phrase or "").strip(),
                         [x.strip() for x in (feats or "").split(",") if x.strip()], prompt or "", int(words or 100),
                         description=existing.description if existing else "",
                         backend=backend or None, model=model or None, url=url or None)
    ws.save_template(t)
    return t


def job_describer(backend, model, url) -> Describer | None:
    """The tab's explicit describer, or None for "per template"."""
    if backend in (None, "", PER_TEMPLATE):
        return None
    return Describer(backend, model or None, url or None)


def checked_model(studio, backend, model):
    """A transformers model typed into the app is a hub id or a folder inside the allowed roots."""
    if backend == "transformers" and (model or "").strip():
        return studio.paths.folder_or_id(model, "model")
    return model


def default_describer_md(ws: Workspace) -> str:
    """What "per template" falls back to, for templates that name no describer."""
    d = workspace_describer(ws)
    fallback = (f"the workspace default, <b>{html.escape(str(d))}</b> (the last explicit choice here)" if d else
                "<b>offline</b> (no workspace default yet: an explicit choice here becomes it)")
    return f"<small>Per template: each image's template's describer; templates without one use {fallback}.</small>"


def listing_page(ws: Workspace, flt: Filter, page=1) -> tuple[list[int], list, int, int]:
    """(every id the filter selects, the items of gallery page `page`, the page shown, pages).
    Next/previous walk all ids; the gallery holds one page, so a workspace of thousands of
    images sends the browser PAGE thumbnails, not all of them."""
    ids = ws.ids(flt)
    pages = max(1, math.ceil(len(ids) / PAGE))
    page = min(max(1, int(page or 1)), pages)
    return ids, ws.query(flt, offset=(page - 1) * PAGE, limit=PAGE), page, pages


def build(studio):
    with gr.Tab("Captions", id="captions") as tab:
        ids_state = gr.State([])  # every id the filters select, in order (next / previous)
        page_ids = gr.State([])  # the ids of the gallery page on screen (gallery index -> id)
        with gr.Row():
            status_f = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1)
            label_f = gr.Dropdown(["all"], value="all", label="Label", scale=1, allow_custom_value=True)
            text_f = gr.Textbox(label="Caption contains", scale=2)
            tokens_f = gr.Number(value=None, label="At most N tokens (0: any)", precision=0, scale=1)
            refresh = gr.Button("Refresh", scale=0, elem_id="captions-refresh")
        with gr.Row():
            with gr.Column(scale=3):
                counts = gr.Markdown(elem_id="caption-counts")
                gallery = gr.Gallery(label="Images (select one to edit)", columns=5, height=420,
                                     allow_preview=False, elem_id="caption-gallery")
                with gr.Row(elem_classes="pager"):
                    page_prev = gr.Button("◀ Page", elem_id="caption-page-prev", size="sm", scale=1, min_width=80)
                    page_n = gr.Number(1, precision=0, minimum=1, show_label=False, container=False,
                                       elem_id="caption-page", scale=1, min_width=60)
                    page_next = gr.Button("Page ▶", elem_id="caption-page-next", size="sm", scale=1, min_width=80)
            with gr.Column(scale=2):
                image = gr.Image(label="Image", height=240, interactive=False, type="pil", format="png",
                                 elem_id="caption-image")
                with gr.Row():
                    current = gr.Number(label="Image #", precision=0, interactive=False, elem_id="caption-id")
                    status_md = gr.HTML(elem_id="caption-status")
                text = gr.Textbox(label="Caption", lines=5, elem_id="caption-text")
                tokens = gr.HTML(token_md(0), elem_id="token-count")
                with gr.Row():
                    approve = gr.Button("Approve & next (Alt+A)", variant="primary", elem_id="approve-next")
                    save = gr.Button("Save (Alt+S)", elem_id="save-caption")
                    reject = gr.Button("Reject", elem_id="reject-caption")
                with gr.Row():
                    prev_b = gr.Button("◀ Previous (Alt+P)", elem_id="prev-caption")
                    next_b = gr.Button("Next (Alt+N) ▶", elem_id="next-caption")
                    unrev = gr.Button("Next unreviewed (Alt+U)", elem_id="next-unreviewed")
                with gr.Row():
                    regen = gr.Button("Regenerate", elem_id="regenerate-caption")
                    undo = gr.Button("Undo", elem_id="undo-caption")
        with gr.Accordion("Batch captioning (background job)", open=True):
            with gr.Row():
                backend = gr.Dropdown(JOB_BACKENDS, value=PER_TEMPLATE, label="Describer backend",
                                      elem_id="batch-backend")
                model = gr.Textbox(label="Model", placeholder=MODEL_HINT, max_lines=1)
                url = gr.Textbox(label="Server URL (openai backend)", placeholder=URL_HINT, max_lines=1)
                include_edited = gr.Checkbox(label="Also redo edited captions", value=True)
            default_md = gr.HTML(elem_id="describer-default")
            batch = gr.Button("Caption all drafts", variant="primary", elem_id="batch-caption")
            batch_status = gr.HTML(elem_id="batch-status")
        with gr.Accordion("Find / replace", open=False):
            with gr.Row():
                find = gr.Textbox(label="Find", elem_id="find-text")
                repl = gr.Textbox(label="Replace with", elem_id="replace-text")
                regex = gr.Checkbox(label="Regular expression", value=False)
                icase = gr.Checkbox(label="Ignore case", value=False)
            with gr.Row():
                preview_b = gr.Button("Preview", elem_id="replace-preview")
                apply_b = gr.Button("Apply to filtered captions", elem_id="replace-apply")
                undo_all = gr.Button("Undo last change", elem_id="undo-last")
            replace_md = gr.Markdown(elem_id="replace-result")
        with gr.Accordion("Modality templates", open=False):
            with gr.Row():
                tmpl = gr.Dropdown(label="Template", choices=[], allow_custom_value=True, elem_id="template-name")
                phrase = gr.Textbox(label="Image phrase (simple caption: '<phrase> of <label>')", scale=2)
                max_words = gr.Number(label="Max words", precision=0)
            features = gr.Textbox(label="Visual features (comma-separated)")
            prompt = gr.Textbox(label="Prompt ({simple_caption} {features} {max_words} {label})", lines=3)
            with gr.Row():
                t_backend = gr.Dropdown(TEMPLATE_BACKENDS, value="", label="Describer backend for this modality",
                                        elem_id="template-backend")
                t_model = gr.Textbox(label="Model", placeholder=MODEL_HINT, max_lines=1, elem_id="template-model")
                t_url = gr.Textbox(label="Server URL (openai backend)", placeholder=URL_HINT, max_lines=1,
                                    elem_id="template-url")
            with gr.Row():
                t_save = gr.Button("Save template")
                t_reset = gr.Button("Reset to built-in")
                t_default = gr.Button("Use for images without a modality")
            t_md = gr.Markdown()

        # ---------------------------------------------------------------- helpers
        def listing(status, label, contains, max_tok, page=1):
            ws = studio.workspace()
            try:
                ids, items, page, pages = listing_page(ws, make_filter(status, label, contains, max_tok), page)
                s = ws.stats()
                labels = ["all"] + sorted(k for k in s["labels"] if k)
            finally:
                ws.close()
            gal = pictures.gallery((i.thumb_path, f"#{i.id} {i.status} {i.token_count or 0}t") for i in items)
            where = f" · page {page} of {pages}" if pages > 1 else ""
            md = (f"{len(ids)} shown{where} · draft {s['draft']} · edited {s['edited']} · approved {s['approved']} · "
                  f"rejected {s['rejected']} · without caption {s['missing']}")
            return gal, ids, md, gr.update(choices=labels), page, [i.id for i in items]

        def show(image_id):
            if not image_id:
                return None, None, "", "", token_md(0)
            ws = studio.workspace()
            try:
                item = ws.get(int(image_id))
            finally:
                ws.close()
            return (pictures.load(item.image_path, max_side=EDITOR_PX), item.id, state_badge(item.status)
                    + f" &nbsp;{item.label or ''} · {item.original_name} · {item.split}", item.text,
                    token_md(item.token_count))

        editor = [image, current, status_md, text, tokens]
        filters = [status_f, label_f, text_f, tokens_f, page_n]  # the page too: an edit keeps it
        listing_out = [gallery, ids_state, counts, label_f, page_n, page_ids]

        def neighbour(ids, cur, step):
            if not ids:
                return None
            if cur not in ids:
                return ids[0]
            return ids[(ids.index(cur) + step) % len(ids)]

        def refresh_all(cur, *f):
            out = listing(*f)
            ids = out[1]
            cur = int(cur) if cur else None
            if cur is None or cur not in ids:
                cur = ids[0] if ids else None
            return (*out, *show(cur))

        # ---------------------------------------------------------------- events
        for trigger in (refresh.click, tab.select):
            trigger(refresh_all, [current, *filters], listing_out + editor)
        for f in filters[:-1]:  # a new filter starts at its first page
            f.change(lambda cur, *f: refresh_all(cur, *f[:-1], 1), [current, *filters], listing_out + editor)
        quiet = {"show_progress": "hidden"}
        page_n.submit(lambda *f: listing(*f), filters, listing_out, **quiet)
        page_prev.click(lambda *f: listing(*f[:-1], (f[-1] or 1) - 1), filters, listing_out, **quiet)
        page_next.click(lambda *f: listing(*f[:-1], (f[-1] or 1) + 1), filters, listing_out, **quiet)

        def on_select(shown, evt: gr.SelectData):
            return show(shown[evt.index] if evt.index is not None and evt.index < len(shown) else None)

        gallery.select(on_select, [page_ids], editor)

        def count(t):
            ws = studio.workspace()
            try:
                return token_md(ws.count_tokens((t or "").strip()))
            finally:
                ws.close()

        text.change(count, [text], [tokens])

        @user_errors
        def do_save(cur, t, approve_too, move, *f):
            if not cur:
                raise ValueError("select an image first")
            ws = studio.workspace()
            try:
                if approve_too and not (t or "").strip():
                    raise ValueError("write or generate a caption before approving")
                ws.set_text(int(cur), t, approve=approve_too)
                nxt = ws.next_unreviewed(int(cur)) if move else None
            finally:
                ws.close()
            out = listing(*f)
            target = nxt.id if nxt is not None else int(cur)
            return (*out, *show(target))

        approve.click(lambda c, t, *f: do_save(c, t, True, True, *f), [current, text, *filters],
                      listing_out + editor, api_name="approve_next")
        save.click(lambda c, t, *f: do_save(c, t, False, False, *f), [current, text, *filters], listing_out + editor)

        @user_errors
        def do_reject(cur, *f):
            if not cur:
                raise ValueError("select an image first")
            ws = studio.workspace()
            try:
                ws.reject([int(cur)])
                nxt = ws.next_unreviewed(int(cur))
            finally:
                ws.close()
            return (*listing(*f), *show(nxt.id if nxt else cur))

        reject.click(do_reject, [current, *filters], listing_out + editor)
        prev_b.click(lambda ids, c: show(neighbour(ids, c, -1)), [ids_state, current], editor)
        next_b.click(lambda ids, c: show(neighbour(ids, c, +1)), [ids_state, current], editor)

        def do_next_unreviewed(cur):
            ws = studio.workspace()
            try:
                nxt = ws.next_unreviewed(int(cur) if cur else None)
            finally:
                ws.close()
            if nxt is None:
                gr.Info("Every caption is reviewed.")
                return show(cur)
            return show(nxt.id)

        unrev.click(do_next_unreviewed, [current], editor)

        @user_errors
        def do_regen(cur, backend_, model_, url_, *f):
            from medart.workspace.describe import caption_by_describer

            if not cur:
                raise ValueError("select an image first")
            ws = studio.workspace()
            try:
                groups = group_by_describer(ws, [int(cur)], explicit=job_describer(
                    backend_, checked_model(studio, backend_, model_), url_))
                caption_by_describer(ws, groups, tokenizer=ws.tokenizer,
                                     overwrite=("draft", "edited", "approved", "rejected"))
            finally:
                ws.close()
            return (*listing(*f), *show(cur))

        regen.click(do_regen, [current, backend, model, url, *filters], listing_out + editor)

        @user_errors
        def do_undo(cur, *f):
            if not cur:
                raise ValueError("select an image first")
            ws = studio.workspace()
            try:
                if not ws.undo(int(cur)):
                    gr.Info("Nothing to undo for this image.")
            finally:
                ws.close()
            return (*listing(*f), *show(cur))

        undo.click(do_undo, [current, *filters], listing_out + editor)

        # batch captioning
        @user_errors
        def do_batch(backend_, model_, url_, redo):
            explicit = job_describer(backend_, checked_model(studio, backend_, model_), url_)
            argv = ["caption", "--workspace", str(studio.workspace_dir), "--base-model", studio.base_model]
            if explicit is not None:  # without --backend the job takes each template's describer
                argv += ["--backend", explicit.backend]
                argv += ["--model", explicit.model] if explicit.model else []
                argv += ["--url", explicit.url] if explicit.url else []
            if redo:
                argv.append("--include-edited")
            ws = studio.workspace()
            try:  # an explicit choice becomes the workspace default for templates without a describer
                if explicit is not None:
                    for key, value in (("caption_backend", explicit.backend), ("caption_model", explicit.model or ""),
                                       ("caption_url", explicit.url or "")):
                        ws.set_setting(key, value)
                note = default_describer_md(ws)
            finally:
                ws.close()
            name = explicit.backend if explicit else "per-template"
            job = studio.jobs.submit("caption", argv, title=f"captions-{name}", output=str(studio.workspace_dir))
            return batch_html(job), note

        def latest_caption_job():
            if studio.per_session:  # another session's job is not this one's business
                return studio.jobs.latest("caption", output=str(studio.workspace_dir))
            return studio.jobs.latest("caption")

        def batch_html(job=None):
            job = job or latest_caption_job()
            if job is None:
                return "<small>No captioning job yet.</small>"
            prog = studio.jobs.progress(job)
            bar = progress_bar(*prog, label="captioned") if prog else ""
            # the log holds progress bars ("<?, ?img/s]") that a browser would read as markup
            err = ""
            if job.state == "failed":
                err = f"<pre>{html.escape(job.error or '')}\n{html.escape(job.log_tail or '')}</pre>"
            return f'<div id="batch-job" data-state="{job.state}">{state_badge(job.state)} {job.id} {bar}{err}</div>'

        batch.click(do_batch, [backend, model, url, include_edited], [batch_status, default_md],
                    api_name="caption_batch")
        timer = gr.Timer(1.5)
        last_state = gr.State("")

        def poll(prev, cur, *f):
            studio.jobs.tick()
            job = latest_caption_job()
            state = f"{job.id}:{job.state}" if job else ""
            html_ = batch_html(job)
            if state != prev and job is not None and job.state in ("done", "failed", "cancelled"):
                return (html_, state, *refresh_all(cur, *f))
            return (html_, state, *[gr.update()] * (len(listing_out) + len(editor)))

        timer.tick(poll, [last_state, current, *filters], [batch_status, last_state, *listing_out, *editor])

        # find / replace
        @user_errors
        def do_replace(apply_, pattern, replacement, is_regex, ignore_case, *f):
            ws = studio.workspace()
            try:
                # every caption the filters select, on all pages (f ends with the page number)
                p = ws.find_replace(pattern, replacement, flt=make_filter(*f[:-1]), regex=is_regex,
                                    ignore_case=ignore_case, apply=apply_)
            finally:
                ws.close()
            verb = "Replaced" if apply_ else "Would replace"
            lines = [f"**{verb} {p.matches} match(es) in {p.captions} caption(s).**"]
            lines += [f"- #{i}: {b[:90]!r} → {a[:90]!r}" for i, b, a in p.samples]
            return "\n".join(lines)

        preview_b.click(lambda *a: do_replace(False, *a), [find, repl, regex, icase, *filters], [replace_md])
        apply_b.click(lambda *a: do_replace(True, *a), [find, repl, regex, icase, *filters], [replace_md]).then(
            refresh_all, [current, *filters], listing_out + editor)

        def do_undo_all(cur, *f):
            ws = studio.workspace()
            try:
                restored = ws.undo()
            finally:
                ws.close()
            return (f"Undone: {len(restored)} caption(s) restored.", *refresh_all(cur, *f))

        undo_all.click(do_undo_all, [current, *filters], [replace_md, *listing_out, *editor])

        # templates
        def t_load(name=None):
            ws = studio.workspace()
            try:
                names, name, *fields = load_template(ws, name)
            finally:
                ws.close()
            return (gr.update(choices=names, value=name), *fields)

        @user_errors
        def t_store(*fields):
            checked_model(studio, fields[5], fields[6])
            ws = studio.workspace()
            try:
                t = save_template(ws, *fields)
            finally:
                ws.close()
            who = f" Its images are described with **{t.backend}**." if t.backend else ""
            return f"Saved template **{t.name}**.{who}"

        @user_errors
        def t_reset_fn(name):
            ws = studio.workspace()
            try:
                ws.reset_template(name)
            finally:
                ws.close()
            return (*t_load(name), f"Template **{name}** reset.")

        @user_errors
        def t_default_fn(name):
            ws = studio.workspace()
            try:
                ws.get_template(name)
                ws.set_setting("modality", name)
            finally:
                ws.close()
            return f"New images without a modality use **{name}**."

        t_fields = [tmpl, phrase, features, prompt, max_words, t_backend, t_model, t_url]
        tab.select(t_load, outputs=t_fields)

        def backend_load():
            """The workspace default's model and URL prefill the boxes; the choice starts per template."""
            ws = studio.workspace()
            try:
                return (PER_TEMPLATE, ws.get_setting("caption_model", ""), ws.get_setting("caption_url", ""),
                        default_describer_md(ws))
            finally:
                ws.close()

        tab.select(backend_load, outputs=[backend, model, url, default_md])
        tmpl.input(t_load, [tmpl], t_fields)
        t_save.click(t_store, t_fields, [t_md])
        t_reset.click(t_reset_fn, [tmpl], [*t_fields, t_md])
        t_default.click(t_default_fn, [tmpl], [t_md])
    return tab
