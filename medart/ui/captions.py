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
Previous send the editor only, and the token count is recounted only when the text changes.

Every button's work is a module-level function of the studio and the inputs' values that
returns the outputs' values (`listing`, `show`, `save_caption`, `start_batch`, ...), so the tab is
tested without a browser; `build` lays the page out and wires them. A batch is queued as a
captioning job with a config file (`medart.jobs.kinds.caption_settings`).

Typed text is never lost: moving on (Next, Previous, a thumbnail, Next unreviewed, a filter,
Refresh) first saves what the person typed as an edit of the caption they typed it into (one
undo step; the note says "Saved your edit to #N"). Every edit carries the stamp of the caption
the editor loaded: when someone else changed that caption meanwhile, nothing is saved and the
page asks whether to keep theirs or save this one over it. Regenerate asks first when it would
replace a reviewed caption (edited or approved) or typed text, as the batch job does. A
question belongs to what it names: the editor showing another image (or the tab opened again)
withdraws it, and its answer acts on the image it named, checked again on the server (a batch's,
on the counts it gave: when they changed, it asks again).

A refusal is one message where the person is looking and marks no component that took no part:
the review loop's (nothing selected, an empty or too long caption to approve) is the note under
its buttons; a find/replace pattern that runs too long is the result's one line; a batch's or
Regenerate's refusal is marked only on the batch status or the caption.

Keyboard shortcuts (see layout.SHORTCUTS): Alt+A approve and next, Alt+N next, Alt+P previous,
Alt+U next unreviewed, Alt+S save, Alt+Z undo the last change.
"""

from __future__ import annotations

import functools
import html
import logging
import math
import re

import gradio as gr

from captioning import BACKENDS
from captioning.templates import ModalityTemplate
from medart.constants import MAX_CAPTION_TOKENS
from medart.jobs.kinds import caption_settings
from medart.workspace.describe import (NO_MODALITY, Describer, caption_by_describer, group_by_describer,
                                       overwrite_statuses, untyped_template, workspace_describer)
from medart.ui import pictures
from medart.jobs import ACTIVE, FINAL
from medart.ui.widgets import beside, progress_bar, said_beside, state_badge, user_errors
from medart.workspace import EditConflict, Filter, Item, Workspace

STATUS_CHOICES = ["all", "unreviewed", "draft", "edited", "approved", "rejected"]
PER_TEMPLATE = "per template"
JOB_BACKENDS = [PER_TEMPLATE, *BACKENDS]
# a template's own describer; "" leaves it to the job's choice or the workspace default
TEMPLATE_BACKENDS = [("job's choice / workspace default", ""), *[(b, b) for b in BACKENDS]]
MODEL_HINT = "hub id, folder or served name"
PAGE = 48  # thumbnails per gallery page
EDITOR_PX = 1024  # the editor's image: at most this many pixels a side, losslessly encoded
URL_HINT = "http://gpu-box:8000/v1"
log = logging.getLogger("medart.ui")
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
    gallery = pictures.thumbnails(items, thumb_label)
    return gallery, ids, counts_md(len(ids), page, pages, s), labels, page, [i.id for i in items]


def thumb_label(item: Item) -> str:
    """On a thumbnail: its id and status, short enough to be read whole on the smallest one: a
    reviewed caption's mark ("#5 ✓"; the counts line above is their key), else the status word."""
    return f"#{item.id} {STATUS_MARKS.get(item.status, item.status)}"


STATUS_MARKS = {"approved": "✓", "rejected": "✗", "edited": "✎"}


def counts_md(shown: int, page: int, pages: int, s: dict) -> str:
    where = f" · page {page} of {pages}" if pages > 1 else ""
    return (f"{shown} shown{where} · draft {s['draft']} · ✎ edited {s['edited']} · ✓ approved {s['approved']} · "
            f"✗ rejected {s['rejected']} · without caption {s['missing']}")


def counts(studio, status, label, contains, max_tok, page=1) -> str:
    """The counts line alone (what a review step changes besides the editor)."""
    with studio.workspace() as ws:
        n = ws.count(make_filter(status, label, contains, max_tok))
        s = ws.stats()
    pages = max(1, math.ceil(n / PAGE))
    return counts_md(n, min(max(1, int(page or 1)), pages), pages, s)


def show(studio, image_id) -> tuple:
    """The editor for one image: (image, id, status line, caption, token count, what was loaded:
    {"id", "text", "at"}, the caption's stamp for a later edit)."""
    if not image_id:
        return None, None, "", "", token_md(0, studio.caption_reader), None
    with studio.workspace() as ws:
        item = ws.get(int(image_id))
    return editor_values(studio, item)


def editor_values(studio, item: Item) -> tuple:
    """`show`'s values for a caption already read (a save's reply shows what was saved)."""
    return (pictures.shown(item.image_path, item.sha256, max_side=EDITOR_PX), item.id, state_badge(item.status)
            + f" &nbsp;{item.label or ''} · {item.original_name} · {item.split}", item.text,
            token_md(item.token_count, studio.caption_reader), loaded_stamp(item))


def loaded_stamp(item: Item) -> dict:
    return {"id": item.id, "text": item.text, "at": item.updated_at}


def typed(loaded, text) -> bool:
    """Whether the editor holds text the person typed over the caption it loaded."""
    return bool(loaded) and (text or "").strip() != (loaded.get("text") or "").strip()


def keep_typed(studio, loaded, text) -> str:
    """Save the text typed over the caption the editor loaded as an edit (one undo step) before
    the editor moves on: the note to show ("" when nothing was typed). An edit over someone
    else's newer change raises EditConflict and saves nothing."""
    if not typed(loaded, text):
        return ""
    with studio.workspace() as ws:
        if not ws.count(Filter(ids=[int(loaded["id"])])):
            return f"#{loaded['id']} was removed meanwhile; the text typed into it was not kept."
        ws.set_text(int(loaded["id"]), text, expected=loaded["at"])
    return f"Saved your edit to #{loaded['id']}."


def highlight(page_ids, image_id):
    """The gallery's highlight on the image the editor shows (none when it is on another page)."""
    ids = list(page_ids or [])
    return gr.update(selected_index=ids.index(image_id) if image_id in ids else None)


def move(studio, ids, cur, step: int, text=None, loaded=None) -> tuple:
    """Next (step 1) or Previous (-1), keeping typed text: (editor values, note)."""
    if not ids and not cur:
        _nothing_to_show(studio)
    note = keep_typed(studio, loaded, text)
    return (*show(studio, neighbour(ids, int(cur) if cur else None, step)), note)


def pick(studio, page_ids, index, text=None, loaded=None) -> tuple:
    """A thumbnail of the gallery page, keeping typed text: (editor values, note)."""
    note = keep_typed(studio, loaded, text)
    shown = page_ids[index] if index is not None and index < len(page_ids or []) else None
    return (*show(studio, shown), note)


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


def _nothing_to_show(studio) -> None:
    """Refuse a move in an empty workspace (import first); go on when there are images."""
    with studio.workspace() as ws:
        if not ws.count():
            raise ValueError("import images first (Data tab)")


def _selected(cur, studio=None) -> int:
    """The editor's image id, or a refusal that says what to do first (import images, when the
    workspace has none; else select one)."""
    if not cur:
        if studio is not None:
            with studio.workspace() as ws:
                if not ws.count():
                    raise ValueError("import images first (Data tab)")
        raise ValueError("select an image first")
    return int(cur)


def review(studio, cur, text, action: str, move: bool | None = None, loaded=None) -> tuple[int, Item | None]:
    """Approve, save or reject the editor's caption and (approve and reject, unless `move` says
    otherwise) go on to the next unreviewed one: (the image to show next, the caption as saved).
    An edit over someone else's newer change of the caption `loaded` raises EditConflict."""
    cur = _selected(cur, studio)
    if action == "approve" and not (text or "").strip():
        raise ValueError("write or generate a caption before approving")
    expected = loaded["at"] if loaded and loaded.get("id") == cur else None
    with studio.workspace() as ws:
        if action == "reject":
            ws.reject([cur])
            saved = ws.get(cur)
        else:
            saved = ws.set_text(cur, text, approve=action == "approve", expected=expected)
        move = action in ("approve", "reject") if move is None else move
        nxt = ws.next_unreviewed(cur) if move else None
    return (nxt.id if nxt is not None else cur), saved


DONE = {"approve": "Approved #{}.", "save": "Saved your edit to #{}.", "reject": "Rejected #{}."}


def _after_review(studio, action: str, shown_next: int, saved: Item) -> tuple:
    """The editor after a review step (what was saved, when it stays) and its note."""
    values = editor_values(studio, saved) if shown_next == saved.id else show(studio, shown_next)
    return (*values, DONE[action].format(saved.id))


def review_step(studio, cur, text, action: str, *filters, loaded=None) -> tuple:
    """A review button's first answer: (counts line, the editor at the image to show next, the
    note saying what was saved). The gallery's labels follow in a second event (`listing`), so
    the editor moves on at once."""
    shown_next, saved = review(studio, cur, text, action, loaded=loaded)
    return (counts(studio, *filters), *_after_review(studio, action, shown_next, saved))


def save_caption(studio, cur, text, approve: bool, move: bool, *filters, loaded=None) -> tuple:
    """Save (and approve) the editor's caption; with `move`, go on to the next unreviewed one:
    (listing, editor, note)."""
    action = "approve" if approve else "save"
    shown_next, saved = review(studio, cur, text, action, move, loaded=loaded)
    return (*listing(studio, *filters), *_after_review(studio, action, shown_next, saved))


def reject_caption(studio, cur, *filters) -> tuple:
    shown_next, saved = review(studio, cur, "", "reject")
    return (*listing(studio, *filters), *_after_review(studio, "reject", shown_next, saved))


def next_unreviewed(studio, cur, text=None, loaded=None) -> tuple:
    """The editor at the next caption to review, keeping typed text: (editor values, note; the
    note says so when every caption is reviewed)."""
    if not cur:
        _nothing_to_show(studio)
    note = keep_typed(studio, loaded, text)
    with studio.workspace() as ws:
        nxt = ws.next_unreviewed(int(cur) if cur else None)
    if nxt is None:
        return (*show(studio, cur), " ".join(x for x in (note, "Every caption is reviewed.") if x))
    return (*show(studio, nxt.id), note)


def regenerate_question(studio, cur, text=None, loaded=None) -> str | None:
    """What Regenerate would replace that a person wrote or reviewed (an edited or approved caption,
    or typed text), as a question; None when it replaces only a draft."""
    cur = _selected(cur, studio)
    with studio.workspace() as ws:
        item = ws.get(cur)
    what = []
    if item.status in ("edited", "approved"):
        what.append(f"#{cur}'s **{item.status}** caption, reviewed by a person,")
    if typed(loaded, text) and loaded.get("id") == cur:
        what.append("the text you typed")
    if not what:
        return None
    return (f"Regenerate replaces {' and '.join(what)} with a new draft. One **Undo** restores the caption. "
            "Regenerate it?")


def regenerate(studio, cur, backend, model, url, *filters) -> tuple:
    """Describe the selected image again (the chosen describer, or its template's), whatever its
    status (the page asks first: `regenerate_question`)."""
    cur = _selected(cur, studio)
    explicit = job_describer(backend, checked_model(studio, backend, model), url)
    with studio.workspace() as ws:
        groups = group_by_describer(ws, [cur], explicit=explicit)
        caption_by_describer(ws, groups, tokenizer=ws.tokenizer, overwrite=("draft", "edited", "approved", "rejected"),
                             action="describe")
    return (*listing(studio, *filters), *show(studio, cur))


def _still_shown(asked, cur, question: str) -> int:
    """The image a question named, while the editor still shows it; else a refusal (the answer
    to a question about one image never acts on another)."""
    if not asked:
        raise ValueError(f"that {question} was withdrawn; nothing was changed")
    asked = int(asked)
    if not cur or int(cur) != asked:
        now = f"now shows #{int(cur)}" if cur else "shows no image"
        raise ValueError(f"the {question} was about #{asked}, but the editor {now}: nothing was changed")
    return asked


def regenerate_confirmed(studio, asked, cur, backend, model, url, *filters) -> tuple:
    """"Regenerate it": regenerate the image the question named (`asked`), and only while the
    editor still shows it."""
    return regenerate(studio, _still_shown(asked, cur, "question"), backend, model, url, *filters)


def resolve_conflict(studio, cur, text, overwrite: bool, asked=None) -> tuple:
    """After an edit met someone else's newer change: keep theirs (the editor shows it) or save
    the typed text over it. (editor values, note). `asked`: the image the question named (the
    page's answer acts on it alone, while the editor still shows it)."""
    cur = _selected(cur) if asked is None else _still_shown(asked, cur, "question")
    if not overwrite:
        return (*show(studio, cur), f"Kept the other change of #{cur}; your text was dropped.")
    with studio.workspace() as ws:
        saved = ws.set_text(cur, text)
    return (*editor_values(studio, saved), f"Saved your edit to #{cur} over the other change (Undo restores it).")


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


def batch_question(studio, scope: str) -> dict | None:
    """What a batch of `scope` asks before it starts: {"scope", "counts"} of the reviewed captions it
    would replace; None when it replaces drafts only."""
    counts = reviewed_to_replace(studio, scope)
    return {"scope": scope, "counts": counts} if counts else None


def batch_confirmed(studio, asked, backend, model, url, scope) -> tuple[str, str, dict | None]:
    """"Replace them": start the batch the question named, when it still replaces what the
    question said; else the new question (status, note, question or None when it started)."""
    now = batch_question(studio, scope)
    if now is not None and (not asked or asked.get("scope") != scope or asked.get("counts") != now["counts"]):
        return "", "", now
    return (*start_batch(studio, backend, model, url, scope), None)


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
    lines += [f"- #{m.id}: {_md(m.left)}{_marked(m.old, '~~')}{_md(m.right)} → "
              f"{_md(m.left)}{_marked(m.new, '**')}{_md(m.right)}" for m in p.samples]
    if p.more:
        lines.append(f"- … and {p.more} more")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Caption text shown as it is inside Markdown (no markup, no HTML)."""
    return html.escape(re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text.replace("\n", " ")), quote=False)


def _marked(text: str, mark: str) -> str:
    """`text` struck out (~~) or bold (**); nothing for an empty match or replacement."""
    if not text.strip():
        return _md(text)
    core = text.strip()
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    return f"{lead}{mark}{_md(core)}{mark}{trail}"  # Markdown marks only text without spaces at its ends


def refresh_keeping(studio, text, loaded, cur, *filters) -> tuple:
    """`refresh_all` after keeping typed text (a filter, Refresh or the tab itself reloads the
    editor): (listing, editor, note)."""
    note = keep_typed(studio, loaded, text)
    return (*refresh_all(studio, cur, *filters), note)


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
            c["conflict_box"], c["conflict_md"], c["overwrite"], c["keep_theirs"] = _ask_box(
                "edit-conflict", "Save mine over it", "conflict-overwrite", "Keep theirs", "conflict-keep-theirs",
                no_first=True)
            c["regen_box"], c["regen_md"], c["regen_yes"], c["regen_no"] = _ask_box(
                "regen-confirm", "Regenerate it", "regen-confirm-yes", "Cancel", "regen-confirm-no")
            c["loaded"] = gr.State(None)  # the caption the editor loaded: {"id", "text", "at"}
            c["conflict_for"] = gr.State(None)  # the image each question names: its answer acts on it alone
            c["regen_for"] = gr.State(None)
    return c


def _ask_box(box_id: str, yes: str, yes_id: str, no: str, no_id: str, no_first: bool = False):
    """A hidden question: its text (`<box_id>-text`), a red button that goes ahead and one that does
    not (on the left where it is the safe choice); returns (group, text, go-ahead, other)."""
    with gr.Group(visible=False, elem_id=box_id) as box:
        text = gr.Markdown(elem_id=f"{box_id}-text")
        with gr.Row():
            other = gr.Button(no, elem_id=no_id) if no_first else None
            go = gr.Button(yes, variant="stop", elem_id=yes_id)
            other = other or gr.Button(no, elem_id=no_id)
    return box, text, go, other


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
        c["confirm_box"], c["confirm_md"], c["confirm"], c["cancel"] = _ask_box(
            "batch-confirm", "Replace them", "batch-confirm-yes", "Cancel", "batch-confirm-no")
        c["batch_status"] = gr.HTML(elem_id="batch-status")
        c["batch_for"] = gr.State(None)  # what the question named: {"scope", "counts"}
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


def _listing_values(out: tuple, cur=None) -> tuple:
    """`listing`'s values as the page takes them (the label choices as an update; the gallery
    highlights `cur` when it is on the page, and nothing else)."""
    gallery, ids, md, labels, page, page_ids = out
    if cur is not None:
        gallery = gr.update(value=gallery, selected_index=highlight(page_ids, cur)["selected_index"])
    return gallery, ids, md, gr.update(choices=labels), page, page_ids


def _page(out: tuple) -> tuple:
    """`refresh_all` (or any listing + editor result) as the page takes it."""
    return (*_listing_values(out[:6], out[7]), *out[6:])


HIDE = {"visible": False}
WITHDRAWN = (gr.update(**HIDE), "", None)  # a question's box, text and the image it named


def _questions(g) -> list:
    """The edit conflict's and Regenerate's questions (box, text, the image each names): every event
    that moves or reloads the editor withdraws both (a question belongs to the image it names)."""
    return [g["conflict_box"], g["conflict_md"], g["conflict_for"], g["regen_box"], g["regen_md"], g["regen_for"]]


def _conflicts(fn, outputs: int, note: int = -1):
    """`fn`'s values and the conflict box hidden. On EditConflict nothing else changes and the
    box asks whether to keep the other change or save this one over it; on a refusal (ValueError)
    nothing else changes and the note beside the buttons (output `note` of `fn`'s) says why.
    `outputs`: how many values `fn` returns."""
    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return (*fn(*args), *WITHDRAWN, *WITHDRAWN)
        except EditConflict as e:
            log.info("edit conflict on #%s", e.item.id)
            return (*[gr.update() for _ in range(outputs)], gr.update(visible=True), f"**{html.escape(str(e))}**",
                    e.item.id, *WITHDRAWN)
        except (ValueError, FileNotFoundError) as e:
            log.warning("refused: %s", (str(e).splitlines() or [type(e).__name__])[0])
            values = [gr.update() for _ in range(outputs)]
            values[note] = f"⚠ {html.escape(str(e))}"
            return (*values, *WITHDRAWN, *WITHDRAWN)

    return user_errors(wrapper)


def build(studio):
    with gr.Tab("Captions", id="captions") as tab:
        ids_state = gr.State([])  # every id the filters select, in order (next / previous)
        page_ids = gr.State([])  # the ids of the gallery page on screen (gallery index -> id)
        g = _gallery_and_editor()
        b = _batch_box()
        r = _find_replace_box()
        t = _template_box()
        on_undo = _wire_review(studio, tab, g, ids_state, page_ids)
        _wire_navigation(studio, g, ids_state, page_ids)
        _wire_batch(studio, tab, g, b, ids_state, page_ids)
        _wire_regenerate(studio, g, b, ids_state, page_ids)
        _wire_replace(studio, g, r, ids_state, page_ids, on_undo)
        _wire_templates(studio, tab, t)
    return tab


def _io(g, ids_state, page_ids):
    """(filters, listing outputs, editor outputs) of the gallery and editor components."""
    filters = [g["status_f"], g["label_f"], g["text_f"], g["tokens_f"], g["page_n"]]  # the page too: an edit keeps it
    listing_out = [g["gallery"], ids_state, g["counts"], g["label_f"], g["page_n"], page_ids]
    editor = [g["image"], g["current"], g["status_md"], g["text"], g["tokens"], g["loaded"]]
    return filters, listing_out, editor


QUIET = {"show_progress": "hidden"}  # the review loop: no overlay redrawn over the editor on every click


def _wire_review(studio, tab, g, ids_state, page_ids):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    current, typing = g["current"], [g["text"], g["loaded"]]
    conflict = _questions(g)
    refreshed = listing_out + editor + [g["note"]] + conflict

    def refresh(text, loaded, cur, *f):  # what was typed is kept before the editor reloads
        *values, note = refresh_keeping(studio, text, loaded, cur, *f)
        return (*_page(tuple(values)), note)

    n = len(refreshed) - len(conflict)  # the questions are `_conflicts`' own outputs
    gr.on([g["refresh"].click, tab.select], _conflicts(refresh, n), [*typing, current, *filters], refreshed,
          api_name="refresh_all", **QUIET)
    gr.on([f.change for f in filters[:-1]],  # a new filter starts at its first page
          _conflicts(lambda text, loaded, cur, *f: refresh(text, loaded, cur, *f[:-1], 1), n),
          [*typing, current, *filters], refreshed, **QUIET)
    g["page_n"].submit(lambda c, *f: _listing_values(listing(studio, *f), c), [current, *filters], listing_out, **QUIET)
    for button, step in ((g["page_prev"], -1), (g["page_next"], +1)):
        button.click(lambda c, *f, k=step: _listing_values(listing(studio, *f[:-1], (f[-1] or 1) + k), c),
                     [current, *filters], listing_out, **QUIET)
    # any new text recounts the tokens: typed, pasted or filled in (gradio's `.input` follows
    # key presses alone); only the latest text of a burst is counted
    g["text"].change(lambda text: count_tokens(studio, text), [g["text"]], [g["tokens"]], api_name="count",
                    trigger_mode="always_last", **QUIET)
    # a review step answers with the counts, the editor and what it saved; the gallery page (its
    # status labels) follows in a second event
    step_out = [g["counts"], *editor, g["note"]]
    for button, action, name in ((g["approve"], "approve", "approve_next"), (g["save"], "save", "save_caption"),
                                 (g["reject"], "reject", "do_reject")):
        button.click(_conflicts(lambda c, text, loaded, *f, a=action: review_step(studio, c, text, a, *f,
                                                                                  loaded=loaded), len(step_out)),
                     [current, *typing, *filters], step_out + conflict, api_name=name, **QUIET).success(
            lambda c, *f: _listing_values(listing(studio, *f), c), [current, *filters], listing_out, **QUIET)

    def on_undo(cur, *f):  # what was undone is said beside the buttons (and under find/replace)
        note, *rest = undo_change(studio, cur, *f)
        return (note, *_page(tuple(rest)), *WITHDRAWN, *WITHDRAWN)

    beside(g["undo"].click, on_undo, [current, *filters], [g["note"], *listing_out, *editor, *conflict], g["note"],
           api_name="do_undo")
    resolved = editor + [g["note"]]
    for button, overwrite in ((g["keep_theirs"], False), (g["overwrite"], True)):
        button.click(_conflicts(lambda c, text, asked, o=overwrite: resolve_conflict(studio, c, text, o, asked),
                                len(resolved)), [current, g["text"], g["conflict_for"]], resolved + conflict,
                     **QUIET).success(
            lambda c, *f: _listing_values(listing(studio, *f), c), [current, *filters], listing_out, **QUIET)
    return on_undo


def _wire_navigation(studio, g, ids_state, page_ids):
    """Next, Previous, a thumbnail and Next unreviewed: each keeps typed text (saved as an edit)
    and moves the gallery's highlight to the image shown."""
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    current, typing = g["current"], [g["text"], g["loaded"]]
    moved = editor + [g["note"], g["gallery"]]
    out = moved + _questions(g)

    def lit(values: tuple, shown_ids) -> tuple:  # the editor's values, its note, the gallery's highlight
        return (*values, highlight(shown_ids, values[1]))

    def relabel(note, cur, *f):  # a typed edit was saved on the way: the thumbnails' labels follow
        if (note or "").startswith("Saved your edit"):
            return _listing_values(listing(studio, *f), cur)
        return tuple(gr.update() for _ in listing_out)

    then = ([g["note"], current, *filters], listing_out)
    for button, step in ((g["prev_b"], -1), (g["next_b"], +1)):
        button.click(_conflicts(lambda ids, c, text, loaded, shown, k=step:
                                lit(move(studio, ids, c, k, text, loaded), shown), len(moved), -2),
                     [ids_state, current, *typing, page_ids], out, **QUIET).success(relabel, *then, **QUIET)
    g["unrev"].click(_conflicts(lambda c, text, loaded, shown: lit(next_unreviewed(studio, c, text, loaded), shown),
                                len(moved), -2), [current, *typing, page_ids], out, api_name="do_next_unreviewed",
                     **QUIET).success(relabel, *then, **QUIET)

    def on_select(shown, text, loaded, evt: gr.SelectData):
        return (*pick(studio, shown, evt.index, text, loaded), gr.update())  # the gallery highlights it already

    g["gallery"].select(_conflicts(on_select, len(moved), -2), [page_ids, *typing], out, **QUIET).success(
        relabel, *then, **QUIET)


def _wire_regenerate(studio, g, b, ids_state, page_ids):
    """Regenerate: at once for a draft; for a reviewed caption or typed text, after a question that
    belongs to the image it names: the editor showing another image withdraws it, and its answer
    acts on that image alone (checked again on the server)."""
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    box = [g["regen_box"], g["regen_md"], g["regen_for"]]
    describer = [b["backend"], b["model"], b["url"]]
    out = listing_out + editor + box + [g["note"]]
    progress = {"show_progress_on": [g["text"]]}  # describing takes a while: shown on the caption it writes
    withdrawn = WITHDRAWN

    def ask(c, text, loaded, *a):
        question = regenerate_question(studio, c, text, loaded)
        if question:
            return (*[gr.update()] * (len(listing_out) + len(editor)), gr.update(visible=True), question, int(c), "")
        return (*_page(regenerate(studio, c, *a)), *withdrawn, "")

    def confirmed(asked, c, *a):
        return (*_page(regenerate_confirmed(studio, asked, c, *a)), *withdrawn, "")

    g["regen"].click(said_beside(ask, len(out)), [g["current"], g["text"], g["loaded"], *describer, *filters], out,
                     api_name="do_regen", **progress)
    g["regen_yes"].click(said_beside(confirmed, len(out)), [g["regen_for"], g["current"], *describer, *filters],
                         out, api_name="do_regen_confirmed", **progress)
    g["regen_no"].click(lambda: withdrawn, outputs=box, **QUIET)


def _wire_batch(studio, tab, g, b, ids_state, page_ids):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    timer = gr.Timer(1.5, active=False)  # polls while a batch runs, not otherwise
    hide = gr.update(visible=False)

    def asking(question: dict, changed: bool = False) -> tuple:  # reviewed captions would be replaced: how many
        n = sum(question["counts"].values())
        again = "The captions changed since the question; asking again. " if changed else ""
        return (gr.update(), gr.update(), gr.update(visible=True), again + confirm_md(question["counts"]),
                gr.update(value=f"Replace {n} reviewed caption(s)"), gr.update(), question)

    def on_batch(backend, model, url, scope):
        question = batch_question(studio, scope)
        if question:
            return asking(question)
        status, note = start_batch(studio, backend, model, url, scope)
        return status, note, hide, "", gr.update(), gr.Timer(active=True), None

    def on_confirm(asked, backend, model, url, scope):  # starts what the question named, or asks again
        status, note, question = batch_confirmed(studio, asked, backend, model, url, scope)
        if question:
            return asking(question, changed=True)
        return status, note, hide, "", gr.update(), gr.Timer(active=True), None

    confirm_out = [b["batch_status"], b["default_md"], b["confirm_box"], b["confirm_md"], b["confirm"], timer,
                   b["batch_for"]]
    batch_in = [b["backend"], b["model"], b["url"], b["scope"]]
    said = {"show_progress_on": [b["batch_status"]]}  # a refusal is said where the batch's status is shown
    b["batch"].click(said_beside(on_batch, len(confirm_out), 0), batch_in, confirm_out, api_name="caption_batch",
                     **said)
    b["confirm"].click(said_beside(on_confirm, len(confirm_out), 0), [b["batch_for"], *batch_in], confirm_out,
                       api_name="caption_batch_confirmed", **said)
    withdraw = (lambda: (hide, "", None), [b["confirm_box"], b["confirm_md"], b["batch_for"]])
    b["cancel"].click(withdraw[0], outputs=withdraw[1])
    b["scope"].change(withdraw[0], outputs=withdraw[1])
    tab.select(withdraw[0], outputs=withdraw[1], **QUIET)  # a question left behind is withdrawn
    last_state = gr.State("")

    def poll(before, cur, text, loaded, *f):
        html_, state, ended = poll_batch(studio, before)
        if ended:  # the captions changed under the page: show them (the editor too, unless typed into)
            values = _page(refresh_all(studio, cur, *f))
            if typed(loaded, text):
                values = (*values[:len(listing_out)], *[gr.update()] * len(editor))
            return (html_, state, gr.Timer(active=False), *values)
        job = latest_caption_job(studio)
        keep = gr.update() if job is not None and job.state not in FINAL else gr.Timer(active=False)
        return (html_, state, keep, *[gr.update()] * (len(listing_out) + len(editor)))

    timer.tick(poll, [last_state, g["current"], g["text"], g["loaded"], *filters],
               [b["batch_status"], last_state, timer, *listing_out, *editor], show_progress="hidden")

    def on_tab():
        job = latest_caption_job(studio)
        running = job is not None and (job.state in ACTIVE or job.state == "queued")
        return (*describer_defaults(studio), batch_html(studio, job), gr.Timer(active=running))

    tab.select(on_tab, outputs=[b["backend"], b["model"], b["url"], b["default_md"], b["batch_status"], timer],
               api_name="backend_load")


def _said(fn):
    """`fn`'s Markdown, or a refusal as that Markdown's one line (nothing else is marked)."""
    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except ValueError as e:
            log.warning("refused: %s", (str(e).splitlines() or ["?"])[0])
            return f"⚠ {html.escape(str(e))}"

    return wrapper


def _wire_replace(studio, g, r, ids_state, page_ids, on_undo):
    filters, listing_out, editor = _io(g, ids_state, page_ids)
    fields = [r["find"], r["repl"], r["regex"], r["icase"], *filters]
    r["preview_b"].click(_said(lambda *a: find_replace(studio, False, *a)), fields, [r["replace_md"]],
                         api_name="replace_preview")

    def refresh(text, loaded, cur, *f):  # typed text is kept (or meets the replacement as a conflict)
        *values, note = refresh_keeping(studio, text, loaded, cur, *f)
        return (*_page(tuple(values)), note)

    refreshed = listing_out + editor + [g["note"]]
    r["apply_b"].click(_said(lambda *a: find_replace(studio, True, *a)), fields, [r["replace_md"]],
                       api_name="replace_apply").then(
        _conflicts(refresh, len(refreshed)), [g["text"], g["loaded"], g["current"], *filters],
        refreshed + _questions(g), **QUIET)

    def on_undo_all(cur, *f):
        note, *rest = on_undo(cur, *f)
        return (note, note, *rest)

    beside(r["undo_all"].click, on_undo_all, [g["current"], *filters],
           [r["replace_md"], g["note"], *listing_out, *editor, *_questions(g)], r["replace_md"], api_name="do_undo_all")


def _wire_templates(studio, tab, t):
    fields = [t["tmpl"], t["phrase"], t["features"], t["prompt"], t["max_words"], t["t_backend"], t["t_model"],
              t["t_url"]]

    def load(name=None):
        names, name, *values = template_fields(studio, name)
        return (gr.update(choices=names, value=name), *values)

    tab.select(load, outputs=fields, api_name="t_load")
    t["tmpl"].input(load, [t["tmpl"]], fields, api_name="t_load_1")
    beside(t["t_save"].click, lambda *v: store_template(studio, *v), fields, [t["t_md"]], t["t_md"], api_name="t_store")
    def on_reset(name):
        note = reset_template(studio, name)
        return (*load(name), note)

    beside(t["t_reset"].click, on_reset, [t["tmpl"]], [*fields, t["t_md"]], t["t_md"], api_name="t_reset_fn")
    beside(t["t_default"].click, lambda name: default_template(studio, name), [t["tmpl"]], [t["t_md"]], t["t_md"],
                         api_name="t_default_fn")
