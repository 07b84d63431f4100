"""Captions tab: review every caption before training (gallery, editor, batch job, find/replace, templates).

The batch job and Regenerate use one describer for every image when a backend is chosen,
or, with "per template" (the default), each image's template's describer, else the
workspace default (the last explicit choice, saved as settings), else offline. A batch
replaces drafts only, unless the person chooses to replace edited or approved captions too
and confirms a message that says how many; a batch is one undo step.

Undo (in the editor and under find/replace) undoes the workspace's last change, whatever and
wherever it was (an approval, an edit, a batch, a find/replace, a relabelling in the Data
tab), says what it undid and shows the image when it was one.

The review loop (Approve & next, Next, Previous, a thumbnail) is kept light: thumbnails and
the editor's image are handed to the page as copies made once (`pictures.shown`), Next and
Previous send the editor only, and the token count is recounted only when a person types.

Every button's work is a module-level function of the studio and the inputs' values that
returns the outputs' values (`listing`, `show`, `save_caption`, `start_batch`, ...), so the tab is
tested without a browser; `build` lays the page out and wires them. A batch is queued as a
captioning job with a config file (`medart.jobs.kinds.caption_settings`).

Keyboard shortcuts (see layout.SHORTCUTS): Alt+A approve and next, Alt+N next, Alt+P previous,
Alt+U next unreviewed, Alt+S save, Alt+Z undo the last change.
"""

from __future__ import annotations

import html
import math

import gradio as gr

from captioning import BACKENDS
from captioning.templates import ModalityTemplate
from medart.constants import MAX_CAPTION_TOKENS
from medart.jobs.kinds import caption_settings
from medart.workspace.describe import (NO_MODALITY, Describer, caption_by_describer, group_by_describer,
                                       overwrite_statuses, untyped_template, workspace_describer)
from medart.ui import pictures
from medart.jobs import ACTIVE, FINAL
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
# which captions a batch replaces: drafts only unless a person chooses (and confirms) more
BATCH_SCOPES = [("drafts only", "drafts"), ("drafts and edited captions", "edited"),
                ("drafts, edited and approved captions", "approved")]


def make_filter(status, label, text, max_tokens) -> Filter:
    st = None if status in (None, "", "all") else (["draft", "edited"] if status == "unreviewed" else status)
    return Filter(status=st, label=None if label in (None, "", "all") else label, text=text or None,
                  max_tokens=int(max_tokens) if max_tokens else None)


def token_md(n, reader=None) -> str:
    """The caption's token count against what `reader` (the base's `Kind`; default PixArt-α,
    120 tokens) reads, red when over."""
    n = n or 0
    name, most = (reader.name, reader.max_caption_tokens) if reader else ("PixArt-α", MAX_CAPTION_TOKENS)
    over = n > most
    colour = "#dc2626" if over else "#16a34a"
    note = f" — too long: {name} reads at most {most} tokens" if over else ""
    return f'<span id="token-count-value" data-tokens="{n}" style="color:{colour};font-weight:600">{n} / {most} T5 tokens</span>{note}'


def load_template(ws: Workspace, name: str | None = None) -> tuple:
    """The editor's fields for template `name` (default: the one for images without a modality):
    (template names, name, image phrase, features, prompt, max words, backend, model, URL)."""
    names = [t.name for t in ws.list_templates()]
    name = name or untyped_template(ws)
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


# ---- what the buttons do: (studio, input values) -> output values -----------------------------------
# `filters` are the gallery's (status, label, caption contains, at most N tokens, page).

def listing(studio, status, label, contains, max_tok, page=1) -> tuple:
    """(gallery page, every id the filters select, counts Markdown, label choices, page shown, ids of
    the gallery page)."""
    with studio.workspace() as ws:
        ids, items, page, pages = listing_page(ws, make_filter(status, label, contains, max_tok), page)
        s = ws.stats()
    labels = ["all"] + sorted(k for k in s["labels"] if k)
    gallery = pictures.thumbnails(items, lambda i: f"#{i.id} {i.status} {i.token_count or 0}t")
    return gallery, ids, counts_md(len(ids), page, pages, s), labels, page, [i.id for i in items]


def counts_md(shown: int, page: int, pages: int, s: dict) -> str:
    where = f" · page {page} of {pages}" if pages > 1 else ""
    return (f"{shown} shown{where} · draft {s['draft']} · edited {s['edited']} · approved {s['approved']} · "
            f"rejected {s['rejected']} · without caption {s['missing']}")


def counts(studio, status, label, contains, max_tok, page=1) -> str:
    """The counts line alone (what a review step changes besides the editor)."""
    with studio.workspace() as ws:
        n = ws.count(make_filter(status, label, contains, max_tok))
        s = ws.stats()
    pages = max(1, math.ceil(n / PAGE))
    return counts_md(n, min(max(1, int(page or 1)), pages), pages, s)


def show(studio, image_id) -> tuple:
    """The editor for one image: (image, id, status line, caption, token count)."""
    if not image_id:
        return None, None, "", "", token_md(0, studio.caption_reader)
    with studio.workspace() as ws:
        item = ws.get(int(image_id))
    return (pictures.shown(item.image_path, item.sha256, max_side=EDITOR_PX), item.id, state_badge(item.status)
            + f" &nbsp;{item.label or ''} · {item.original_name} · {item.split}", item.text,
            token_md(item.token_count, studio.caption_reader))


def neighbour(ids: list[int], cur, step: int) -> int | None:
    """The id `step` places from `cur` in `ids` (wrapping; the first when `cur` is not there)."""
    if not ids:
        return None
    if cur not in ids:
        return ids[0]
    return ids[(ids.index(cur) + step) % len(ids)]


def refresh_all(studio, cur, *filters) -> tuple:
    """The listing and the editor, which keeps `cur` while the filters still select it."""
    out = listing(studio, *filters)
    ids = out[1]
    cur = int(cur) if cur else None
    if cur is None or cur not in ids:
        cur = ids[0] if ids else None
    return (*out, *show(studio, cur))


def count_tokens(studio, text: str) -> str:
    with studio.workspace() as ws:
        return token_md(ws.count_tokens((text or "").strip()), studio.caption_reader)


def _selected(cur) -> int:
    if not cur:
        raise ValueError("select an image first")
    return int(cur)


def review(studio, cur, text, action: str, move: bool | None = None) -> int:
    """Approve, save or reject the editor's caption and (approve and reject, unless `move` says
    otherwise) go on to the next unreviewed one; returns the image to show next."""
    cur = _selected(cur)
    if action == "approve" and not (text or "").strip():
        raise ValueError("write or generate a caption before approving")
    with studio.workspace() as ws:
        if action == "reject":
            ws.reject([cur])
        else:
            ws.set_text(cur, text, approve=action == "approve")
        move = action in ("approve", "reject") if move is None else move
        nxt = ws.next_unreviewed(cur) if move else None
    return nxt.id if nxt is not None else cur


def review_step(studio, cur, text, action: str, *filters) -> tuple:
    """A review button's first answer: (counts line, the editor at the image to show next). The
    gallery's labels follow in a second event (`listing`), so the editor moves on at once."""
    shown_next = review(studio, cur, text, action)
    return (counts(studio, *filters), *show(studio, shown_next))


def save_caption(studio, cur, text, approve: bool, move: bool, *filters) -> tuple:
    """Save (and approve) the editor's caption; with `move`, go on to the next unreviewed one:
    (listing, editor)."""
    shown_next = review(studio, cur, text, "approve" if approve else "save", move)
    return (*listing(studio, *filters), *show(studio, shown_next))


def reject_caption(studio, cur, *filters) -> tuple:
    shown_next = review(studio, cur, "", "reject")
    return (*listing(studio, *filters), *show(studio, shown_next))


def next_unreviewed(studio, cur) -> tuple[tuple, str | None]:
    """(the editor at the next caption to review, a note when every caption is reviewed)."""
    with studio.workspace() as ws:
        nxt = ws.next_unreviewed(int(cur) if cur else None)
    if nxt is None:
        return show(studio, cur), "Every caption is reviewed."
    return show(studio, nxt.id), None


def regenerate(studio, cur, backend, model, url, *filters) -> tuple:
    """Describe the selected image again (the chosen describer, or its template's), whatever its status."""
    cur = _selected(cur)
    explicit = job_describer(backend, checked_model(studio, backend, model), url)
    with studio.workspace() as ws:
        groups = group_by_describer(ws, [cur], explicit=explicit)
        caption_by_describer(ws, groups, tokenizer=ws.tokenizer, overwrite=("draft", "edited", "approved", "rejected"),
                             action="describe")
    return (*listing(studio, *filters), *show(studio, cur))


def undo_change(studio, cur, *filters) -> tuple:
    """Undo the workspace's last change, whatever and wherever it was: (what it undid, listing
    and editor, which show the image it touched when it was one)."""
    with studio.workspace() as ws:
        undone = ws.undo()
    if undone is None:
        return ("Nothing to undo.", *refresh_all(studio, cur, *filters))
    target = undone.ids[0] if len(undone.ids) == 1 else cur
    return (undone.describe(), *refresh_all(studio, target, *filters))


def reviewed_to_replace(studio, scope: str) -> dict[str, int]:
    """{status: count} of the reviewed captions (edited, approved) a batch of `scope` would replace."""
    statuses = overwrite_statuses(scope in ("edited", "approved"), scope == "approved")
    with studio.workspace() as ws:
        counts = {s: ws.count(Filter(status=s)) for s in statuses if s != "draft"}
    return {s: n for s, n in counts.items() if n}


def confirm_md(counts: dict[str, int]) -> str:
    """The confirmation of a batch that replaces reviewed captions: how many of each."""
    what = " and ".join(f"**{n} {s}**" for s, n in counts.items())
    return (f"This batch replaces {what} caption(s), reviewed by a person, with new drafts. "
            "One **Undo** restores them all. Replace them?")


def start_batch(studio, backend, model, url, scope: str = "drafts") -> tuple[str, str]:
    """Queue a captioning job of the drafts (and, with `scope` "edited" or "approved", those
    reviewed captions too: the page has asked for confirmation); an explicit describer becomes
    the workspace default. (status HTML, the default's note)."""
    if scope not in dict((v, k) for k, v in BATCH_SCOPES):
        raise ValueError(f"unknown choice of captions {scope!r}")
    explicit = job_describer(backend, checked_model(studio, backend, model), url)
    with studio.workspace() as ws:  # an explicit choice becomes the workspace default for templates without one
        if explicit is not None:
            for key, value in (("caption_backend", explicit.backend), ("caption_model", explicit.model or ""),
                               ("caption_url", explicit.url or "")):
                ws.set_setting(key, value)
        note = default_describer_md(ws)
    settings = caption_settings(studio.workspace_dir, studio.base_model, *(
        (explicit.backend, explicit.model, explicit.url) if explicit else ()),
        include_edited=scope in ("edited", "approved"), include_approved=scope == "approved")
    name = explicit.backend if explicit else "per-template"
    job = studio.jobs.submit("caption", settings, title=f"captions-{name}", output=str(studio.workspace_dir))
    return batch_html(studio, job), note


def latest_caption_job(studio):
    if studio.per_session:  # another session's job is not this one's business
        return studio.jobs.latest("caption", output=str(studio.workspace_dir))
    return studio.jobs.latest("caption")


def batch_html(studio, job=None) -> str:
    job = job or latest_caption_job(studio)
    if job is None:
        return "<small>No captioning job yet.</small>"
    prog = studio.jobs.progress(job)
    bar = progress_bar(*prog, label="captioned") if prog else ""
    err = ""  # the log holds progress bars ("<?, ?img/s]") that a browser would read as markup
    if job.state == "failed":
        err = f"<pre>{html.escape(job.error or '')}\n{html.escape(job.log_tail or '')}</pre>"
    return f'<div id="batch-job" data-state="{job.state}">{state_badge(job.state)} {job.id} {bar}{err}</div>'


def poll_batch(studio, before: str) -> tuple[str, str, bool]:
    """(status HTML, the latest job's id:state, whether it has just ended: the listing is stale)."""
    studio.jobs.tick()
    job = latest_caption_job(studio)
    state = f"{job.id}:{job.state}" if job else ""
    ended = state != before and job is not None and job.state in FINAL
    return batch_html(studio, job), state, ended


def find_replace(studio, apply: bool, pattern, replacement, is_regex, ignore_case, *filters) -> str:
    """Preview or apply a find/replace over every caption the filters select (all pages)."""
    with studio.workspace() as ws:
        p = ws.find_replace(pattern, replacement, flt=make_filter(*filters[:-1]), regex=is_regex,
                            ignore_case=ignore_case, apply=apply)
    verb = "Replaced" if apply else "Would replace"
    lines = [f"**{verb} {p.matches} match(es) in {p.captions} caption(s).**"]
    lines += [f"- #{i}: {b[:90]!r} → {a[:90]!r}" for i, b, a in p.samples]
    return "\n".join(lines)


def template_fields(studio, name=None) -> tuple:
    """(template names, name, its editor fields) of template `name` (default: the workspace's)."""
    with studio.workspace() as ws:
        return load_template(ws, name)


def store_template(studio, *fields) -> str:
    checked_model(studio, fields[5], fields[6])
    with studio.workspace() as ws:
        t = save_template(ws, *fields)
    who = f" Its images are described with **{t.backend}**." if t.backend else ""
    return f"Saved template **{t.name}**.{who}"


def reset_template(studio, name) -> str:
    with studio.workspace() as ws:
        ws.reset_template(name)
    return f"Template **{name}** reset."


def default_template(studio, name) -> str:
    """Make template `name` the one for images without a modality."""
    with studio.workspace() as ws:
        ws.get_template(name)
        ws.set_setting(NO_MODALITY, name)
    return f"New images without a modality use **{name}**."


def describer_defaults(studio) -> tuple:
    """The batch box's start: "per template", the workspace default's model and URL, its note."""
    with studio.workspace() as ws:
        return (PER_TEMPLATE, ws.get_setting("caption_model", ""), ws.get_setting("caption_url", ""),
                default_describer_md(ws))


# ---- the page ------------------------------------------------------------------------------------
def _gallery_and_editor():
    """The filters, the gallery with its pager and the editor; {name: component}."""
    c = {}
    with gr.Row():
        c["status_f"] = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1)
        c["label_f"] = gr.Dropdown(["all"], value="all", label="Label", scale=1, allow_custom_value=True)
        c["text_f"] = gr.Textbox(label="Caption contains", scale=2)
        c["tokens_f"] = gr.Number(value=None, label="At most N tokens (0: any)", precision=0, scale=1)
        c["refresh"] = gr.Button("Refresh", scale=0, elem_id="captions-refresh")
    with gr.Row():
        with gr.Column(scale=3):
            c["counts"] = gr.Markdown(elem_id="caption-counts")
            c["gallery"] = gr.Gallery(label="Images (select one to edit)", columns=5, height=420,
                                      allow_preview=False, elem_id="caption-gallery")
            with gr.Row(elem_classes="pager"):
                c["page_prev"] = gr.Button("◀ Page", elem_id="caption-page-prev", size="sm", scale=1, min_width=80)
                c["page_n"] = gr.Number(1, precision=0, minimum=1, show_label=False, container=False,
                                        elem_id="caption-page", scale=1, min_width=60)
                c["page_next"] = gr.Button("Page ▶", elem_id="caption-page-next", size="sm", scale=1, min_width=80)
        with gr.Column(scale=2):
            c["image"] = gr.Image(label="Image", height=240, interactive=False, type="pil", format="png",
                                  elem_id="caption-image")
            with gr.Row():
                c["current"] = gr.Number(label="Image #", precision=0, interactive=False, elem_id="caption-id")
                c["status_md"] = gr.HTML(elem_id="caption-status")
            c["text"] = gr.Textbox(label="Caption", lines=5, elem_id="caption-text")
            c["tokens"] = gr.HTML(token_md(0), elem_id="token-count")
            with gr.Row():
                c["approve"] = gr.Button("Approve & next (Alt+A)", variant="primary", elem_id="approve-next")
                c["save"] = gr.Button("Save (Alt+S)", elem_id="save-caption")
                c["reject"] = gr.Button("Reject", elem_id="reject-caption")
            with gr.Row():
                c["prev_b"] = gr.Button("◀ Previous (Alt+P)", elem_id="prev-caption")
                c["next_b"] = gr.Button("Next (Alt+N) ▶", elem_id="next-caption")
                c["unrev"] = gr.Button("Next unreviewed (Alt+U)", elem_id="next-unreviewed")
            with gr.Row():
                c["regen"] = gr.Button("Regenerate", elem_id="regenerate-caption")
                c["undo"] = gr.Button("Undo last change (Alt+Z)", elem_id="undo-caption")
            c["note"] = gr.Markdown(elem_id="review-note")
    return c


def _batch_box():
    c = {}
    with gr.Accordion("Batch captioning (background job)", open=True):
        with gr.Row():
            c["backend"] = gr.Dropdown(JOB_BACKENDS, value=PER_TEMPLATE, label="Describer backend",
                                       elem_id="batch-backend")
            c["model"] = gr.Textbox(label="Model", placeholder=MODEL_HINT, max_lines=1)
            c["url"] = gr.Textbox(label="Server URL (openai backend)", placeholder=URL_HINT, max_lines=1)
        c["scope"] = gr.Radio(BATCH_SCOPES, value="drafts", label="Which captions to write",
                              info="Edited and approved captions were reviewed by a person: replacing them asks "
                                   "first.", elem_id="batch-scope")
        c["default_md"] = gr.HTML(elem_id="describer-default")
        c["batch"] = gr.Button("Start batch captioning", variant="primary", elem_id="batch-caption")
        with gr.Group(visible=False, elem_id="batch-confirm") as c["confirm_box"]:
            c["confirm_md"] = gr.Markdown(elem_id="batch-confirm-text")
            with gr.Row():
                c["confirm"] = gr.Button("Replace them", variant="stop", elem_id="batch-confirm-yes")
                c["cancel"] = gr.Button("Cancel", elem_id="batch-confirm-no")
        c["batch_status"] = gr.HTML(elem_id="batch-status")
    return c


def _find_replace_box():
    c = {}
    with gr.Accordion("Find / replace", open=False):
        with gr.Row():
            c["find"] = gr.Textbox(label="Find", elem_id="find-text")
            c["repl"] = gr.Textbox(label="Replace with", elem_id="replace-text")
            c["regex"] = gr.Checkbox(label="Regular expression", value=False)
            c["icase"] = gr.Checkbox(label="Ignore case", value=False)
        with gr.Row():
            c["preview_b"] = gr.Button("Preview", elem_id="replace-preview")
            c["apply_b"] = gr.Button("Apply to filtered captions", elem_id="replace-apply")
            c["undo_all"] = gr.Button("Undo last change", elem_id="undo-last")
        c["replace_md"] = gr.Markdown(elem_id="replace-result")
    return c


def _template_box():
    c = {}
    with gr.Accordion("Modality templates", open=False):
        with gr.Row():
            c["tmpl"] = gr.Dropdown(label="Template", choices=[], allow_custom_value=True, elem_id="template-name")
            c["phrase"] = gr.Textbox(label="Image phrase (simple caption: '<phrase> of <label>')", scale=2)
            c["max_words"] = gr.Number(label="Max words", precision=0)
        c["features"] = gr.Textbox(label="Visual features (comma-separated)")
        c["prompt"] = gr.Textbox(label="Prompt ({simple_caption} {features} {max_words} {label})", lines=3)
        with gr.Row():
            c["t_backend"] = gr.Dropdown(TEMPLATE_BACKENDS, value="", label="Describer backend for this modality",
                                         elem_id="template-backend")
            c["t_model"] = gr.Textbox(label="Model", placeholder=MODEL_HINT, max_lines=1, elem_id="template-model")
            c["t_url"] = gr.Textbox(label="Server URL (openai backend)", placeholder=URL_HINT, max_lines=1,
                                    elem_id="template-url")
        with gr.Row():
            c["t_save"] = gr.Button("Save template")
            c["t_reset"] = gr.Button("Reset to built-in")
            c["t_default"] = gr.Button("Use for images without a modality")
        c["t_md"] = gr.Markdown()
    return c


def _listing_values(out: tuple) -> tuple:
    """`listing`'s values as the page takes them (the label choices as an update)."""
    gallery, ids, md, labels, page, page_ids = out
    return gallery, ids, md, gr.update(choices=labels), page, page_ids


def _page(out: tuple) -> tuple:
    """`refresh_all` (or any listing + editor result) as the page takes it."""
    return (*_listing_values(out[:6]), *out[6:])


def _noted(result: tuple[tuple, str | None]) -> tuple:
    values, note = result
    if note:
        gr.Info(note)
    return values


def build(studio):
    with gr.Tab("Captions", id="captions") as tab:
        ids_state = gr.State([])  # every id the filters select, in order (next / previous)
        page_ids = gr.State([])  # the ids of the gallery page on screen (gallery index -> id)
        g = _gallery_and_editor()
        b = _batch_box()
        r = _find_replace_box()
        t = _template_box()
        on_undo = _wire_review(studio, tab, g, ids_state, page_ids)
        _wire_batch(studio, tab, g, b, ids_state, page_ids)
        _wire_replace(studio, g, r, ids_state, page_ids, on_undo)
        _wire_templates(studio, tab, t)
    return tab


def _io(g, ids_state, page_ids):
    """(filters, listing outputs, editor outputs) of the gallery and editor components."""
    filters = [g["status_f"], g["label_f"], g["text_f"], g["tokens_f"], g["page_n"]]  # the page too: an edit keeps it
    listing_out = [g["gallery"], ids_state, g["counts"], g["label_f"], g["page_n"], page_ids]
    editor = [g["image"], g["current"], g["status_md"], g["text"], g["tokens"]]
    return filters, listing_out, editor


def _wire_review(studio, tab, g, ids_state, page_ids):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    current = g["current"]
    quiet = {"show_progress": "hidden"}  # the review loop: no overlay redrawn over the editor on every click
    gr.on([g["refresh"].click, tab.select], lambda cur, *f: _page(refresh_all(studio, cur, *f)), [current, *filters],
          listing_out + editor, api_name="refresh_all", **quiet)
    gr.on([f.change for f in filters[:-1]],  # a new filter starts at its first page
          lambda cur, *f: _page(refresh_all(studio, cur, *f[:-1], 1)), [current, *filters], listing_out + editor)
    g["page_n"].submit(lambda *f: _listing_values(listing(studio, *f)), filters, listing_out, **quiet)
    g["page_prev"].click(lambda *f: _listing_values(listing(studio, *f[:-1], (f[-1] or 1) - 1)), filters,
                         listing_out, **quiet)
    g["page_next"].click(lambda *f: _listing_values(listing(studio, *f[:-1], (f[-1] or 1) + 1)), filters,
                         listing_out, **quiet)

    def on_select(shown, evt: gr.SelectData):
        return show(studio, shown[evt.index] if evt.index is not None and evt.index < len(shown) else None)

    g["gallery"].select(user_errors(on_select), [page_ids], editor, **quiet)
    # typing recounts the tokens; a caption the editor loads comes with its count
    g["text"].input(lambda text: count_tokens(studio, text), [g["text"]], [g["tokens"]], api_name="count",
                    trigger_mode="always_last", **quiet)
    # a review step answers with the counts and the editor; the gallery page (its status labels) follows
    step_out = [g["counts"], *editor]
    for button, action, name in ((g["approve"], "approve", "approve_next"), (g["save"], "save", "save_caption"),
                                 (g["reject"], "reject", "do_reject")):
        button.click(user_errors(lambda c, text, *f, a=action: review_step(studio, c, text, a, *f)),
                     [current, g["text"], *filters], step_out, api_name=name, **quiet).success(
            lambda *f: _listing_values(listing(studio, *f)), filters, listing_out, **quiet)
    g["prev_b"].click(user_errors(lambda ids, c: show(studio, neighbour(ids, c, -1))), [ids_state, current], editor,
                      **quiet)
    g["next_b"].click(user_errors(lambda ids, c: show(studio, neighbour(ids, c, +1))), [ids_state, current], editor,
                      **quiet)
    g["unrev"].click(user_errors(lambda c: _noted(next_unreviewed(studio, c))), [current], editor,
                     api_name="do_next_unreviewed", **quiet)

    def on_undo(cur, *f):  # what was undone is said beside the buttons (and under find/replace)
        note, *rest = undo_change(studio, cur, *f)
        return (note, *_page(tuple(rest)))

    g["undo"].click(user_errors(on_undo), [current, *filters], [g["note"], *listing_out, *editor], api_name="do_undo",
                    **quiet)
    return on_undo


def _wire_batch(studio, tab, g, b, ids_state, page_ids):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    g["regen"].click(user_errors(lambda c, *a: _page(regenerate(studio, c, *a))),
                     [g["current"], b["backend"], b["model"], b["url"], *filters], listing_out + editor,
                     api_name="do_regen")
    timer = gr.Timer(1.5, active=False)  # polls while a batch runs, not otherwise
    hide = gr.update(visible=False)

    @user_errors
    def on_batch(backend, model, url, scope):
        counts = reviewed_to_replace(studio, scope)
        if counts:  # reviewed captions would be replaced: ask first, saying how many
            n = sum(counts.values())
            return (gr.update(), gr.update(), gr.update(visible=True), confirm_md(counts),
                    gr.update(value=f"Replace {n} reviewed caption(s)"), gr.update())
        status, note = start_batch(studio, backend, model, url, scope)
        return status, note, hide, "", gr.update(), gr.Timer(active=True)

    @user_errors
    def on_confirm(backend, model, url, scope):
        status, note = start_batch(studio, backend, model, url, scope)
        return status, note, hide, "", gr.update(), gr.Timer(active=True)

    confirm_out = [b["batch_status"], b["default_md"], b["confirm_box"], b["confirm_md"], b["confirm"], timer]
    batch_in = [b["backend"], b["model"], b["url"], b["scope"]]
    b["batch"].click(on_batch, batch_in, confirm_out, api_name="caption_batch")
    b["confirm"].click(on_confirm, batch_in, confirm_out, api_name="caption_batch_confirmed")
    b["cancel"].click(lambda: (hide, ""), outputs=[b["confirm_box"], b["confirm_md"]])
    b["scope"].change(lambda: (hide, ""), outputs=[b["confirm_box"], b["confirm_md"]])
    last_state = gr.State("")

    def poll(before, cur, *f):
        html_, state, ended = poll_batch(studio, before)
        if ended:  # the captions changed under the page: show them; nothing to poll for any more
            return (html_, state, gr.Timer(active=False), *_page(refresh_all(studio, cur, *f)))
        job = latest_caption_job(studio)
        keep = gr.update() if job is not None and job.state not in FINAL else gr.Timer(active=False)
        return (html_, state, keep, *[gr.update()] * (len(listing_out) + len(editor)))

    timer.tick(poll, [last_state, g["current"], *filters],
               [b["batch_status"], last_state, timer, *listing_out, *editor], show_progress="hidden")

    def on_tab():
        job = latest_caption_job(studio)
        running = job is not None and (job.state in ACTIVE or job.state == "queued")
        return (*describer_defaults(studio), batch_html(studio, job), gr.Timer(active=running))

    tab.select(on_tab, outputs=[b["backend"], b["model"], b["url"], b["default_md"], b["batch_status"], timer],
               api_name="backend_load")


def _wire_replace(studio, g, r, ids_state, page_ids, on_undo):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    fields = [r["find"], r["repl"], r["regex"], r["icase"], *filters]
    r["preview_b"].click(user_errors(lambda *a: find_replace(studio, False, *a)), fields, [r["replace_md"]])
    r["apply_b"].click(user_errors(lambda *a: find_replace(studio, True, *a)), fields, [r["replace_md"]]).then(
        lambda cur, *f: _page(refresh_all(studio, cur, *f)), [g["current"], *filters], listing_out + editor)

    def on_undo_all(cur, *f):
        note, *rest = on_undo(cur, *f)
        return (note, note, *rest)

    r["undo_all"].click(user_errors(on_undo_all), [g["current"], *filters],
                        [r["replace_md"], g["note"], *listing_out, *editor], api_name="do_undo_all")


def _wire_templates(studio, tab, t):
    fields = [t["tmpl"], t["phrase"], t["features"], t["prompt"], t["max_words"], t["t_backend"], t["t_model"],
              t["t_url"]]

    def load(name=None):
        names, name, *values = template_fields(studio, name)
        return (gr.update(choices=names, value=name), *values)

    tab.select(load, outputs=fields, api_name="t_load")
    t["tmpl"].input(load, [t["tmpl"]], fields, api_name="t_load_1")
    t["t_save"].click(user_errors(lambda *v: store_template(studio, *v)), fields, [t["t_md"]], api_name="t_store")
    def on_reset(name):
        note = reset_template(studio, name)
        return (*load(name), note)

    t["t_reset"].click(user_errors(on_reset), [t["tmpl"]], [*fields, t["t_md"]], api_name="t_reset_fn")
    t["t_default"].click(user_errors(lambda name: default_template(studio, name)), [t["tmpl"]], [t["t_md"]],
                         api_name="t_default_fn")
