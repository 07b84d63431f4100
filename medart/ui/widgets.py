"""Small pieces the tabs share: error reporting, page-load filling, job rows and progress bars.

A person's mistake (a refusal: ValueError and kin, saying what to do) is one plain line in the
status Markdown beside the button pressed (`beside`, or `said_beside` where a handler's outputs
are kept as they are), never a toast; the next action there clears it. A toast (`user_errors`,
a few seconds) is left for the unexpected."""

from __future__ import annotations

import functools
import html
import logging
import time

import gradio as gr

from medart.profiles import BaseModelError


def on_page_load(fn, outputs, inputs=None):
    """Fill `outputs` when a page opens. Values that name runs, studies, labels or paths are
    never part of the page's initial config: with a login on, Gradio describes the app's
    endpoints (their components' initial values and choices included) even to clients that
    have not logged in, while a load event runs only for those who have."""
    from gradio.context import Context

    Context.root_block.load(fn, inputs=inputs, outputs=outputs, show_progress="hidden", api_visibility="private")


log = logging.getLogger("medart.ui")


def user_errors(fn):
    """Show what went wrong and what to do (ValueError & co. carry that text) in the page, and
    write one line to the server's log: a person's mistake is not a crash, so no traceback. A
    RuntimeError (which may be a fault, not a mistake) is shown the same way (its first line)
    but logged with its traceback. The system's own errors (a name too long, a file gone) are
    shown in their words without the path they name; anything else as one line that points to
    the server's log, which has the traceback: the page never shows a traceback or a path of
    the server that the person did not type."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as e:
            if e.errno is not None:  # the system's, naming a path; ours say what to do
                raise _system_error(e) from None
            log.warning("refused: %s", (str(e).splitlines() or [type(e).__name__])[0])
            raise gr.Error(str(e), duration=TOAST_S, print_exception=False) from None
        except (ValueError, BaseModelError) as e:
            log.warning("refused: %s", (str(e).splitlines() or [type(e).__name__])[0])
            raise gr.Error(str(e), duration=TOAST_S, print_exception=False) from None
        except RuntimeError as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            log.exception("failed: %s", first)
            raise gr.Error(first, duration=TOAST_S, print_exception=False) from None
        except OSError as e:
            raise _system_error(e) from None
        except gr.Error:
            raise
        except MemoryError:  # its message is empty; the cause is known, no traceback helps
            log.warning("refused: not enough memory")
            raise gr.Error("not enough memory on the server for that; try fewer or smaller files",
                           duration=TOAST_S, print_exception=False) from None
        except Exception as e:
            log.exception("failed: %s", type(e).__name__)
            raise gr.Error(f"that did not work ({type(e).__name__}); the app's log says why",
                           duration=TOAST_S, print_exception=False) from None

    return wrapper


TOAST_S = 6  # a toast is kept only for the unexpected, and not for long


def refusal(e: Exception) -> str | None:
    """A person's mistake's one line (what to do), or None for anything else: a ValueError, a
    BaseModelError, or a FileNotFoundError of ours (the system's name a path)."""
    if isinstance(e, FileNotFoundError) and e.errno is not None:
        return None
    if isinstance(e, (ValueError, BaseModelError, FileNotFoundError)):
        return str(e) or type(e).__name__
    return None


def said_beside(fn, outputs: int, note: int = -1):
    """`fn`'s values; on a refusal, every output left as it is but output `note` (the status line
    beside the button pressed), which says why in one line: no toast, no red badge. `outputs`: how
    many values `fn` returns. Anything unexpected is `user_errors`' short toast."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - sorted below: a refusal is said, the rest raised
            said = refusal(e)
            if said is None:
                raise
            log.warning("refused: %s", said.splitlines()[0])
            values = [gr.update() for _ in range(outputs)]
            values[note] = f"⚠ {html.escape(said)}"
            return tuple(values) if outputs > 1 else values[0]

    return user_errors(wrapper)


_REFUSED: dict[str, str] = {}  # browser session -> its last refusal, until the line beside the button says it


def refused_beside(fn):
    """`user_errors` for a button whose refusal is said beside it (`beside`): the call still fails
    (a script gets the error; the chain stops), but the page shows no toast; the event's
    `.failure` puts the message in the button's status line."""
    checked = user_errors(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return checked(*args, **kwargs)
        except gr.Error as e:
            from medart.ui import sessions

            _REFUSED[sessions.current_key() or ""] = e.message
            while len(_REFUSED) > 256:
                _REFUSED.pop(next(iter(_REFUSED)))
            raise gr.Error(e.message, visible=False, print_exception=False) from None

    return wrapper


def said_refusal(prefix: str = "⚠ ") -> str:
    """The calling session's last refusal, as the one line beside the button pressed (or, with
    another `prefix`, where the action's result would have been)."""
    from medart.ui import sessions

    message = _REFUSED.pop(sessions.current_key() or "", "")
    return f"{prefix}{html.escape(message)}" if message else ""


def beside(listener, fn, inputs, outputs, note, **kwargs):
    """`listener(fn, inputs, outputs)` (a button's `.click`) whose refusal is one plain line in
    `note`, the status Markdown beside that button, and no toast; the next success there clears
    it. Progress shows on `note` alone, so no component that took no part is marked. Returns the
    event (chain `.success` on it)."""
    outputs = list(outputs or [])
    kwargs.setdefault("show_progress_on", [note])
    event = listener(refused_beside(fn), inputs, outputs, **kwargs)
    event.failure(lambda: said_refusal(), None, [note], show_progress="hidden")
    if note not in outputs:
        event.success(lambda: "", None, [note], show_progress="hidden")
    return event


def _system_error(e: OSError) -> gr.Error:
    reason = (e.strerror or type(e).__name__).rstrip(".")
    log.warning("refused: %s", reason)
    return gr.Error(f"{reason[:1].lower()}{reason[1:]}: check the name or path you gave", duration=TOAST_S,
                    print_exception=False)


STATE_COLOURS = {"queued": "#6b7280", "running": "#2563eb", "stopping": "#d97706", "stopped": "#6b7280",
                 "done": "#16a34a", "failed": "#dc2626"}


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6b7280")
    return (f'<span class="job-state" data-state="{html.escape(state)}" style="background:{colour};color:white;'
            f'padding:2px 8px;border-radius:8px;font-weight:600">{html.escape(state)}</span>')


def progress_bar(done: int, total: int, label: str = "") -> str:
    frac = 0.0 if not total else max(0.0, min(1.0, done / total))
    return (f'<div class="job-progress" data-done="{done}" data-total="{total}">'
            f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="width:{frac * 100:.1f}%;background:#2563eb;height:14px"></div></div>'
            f'<small>{html.escape(label)} {done} / {total}</small></div>')


def fmt_seconds(s) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def job_rows(jobs) -> list[list]:
    rows = []
    for j in reversed(jobs):
        when = time.strftime("%H:%M:%S", time.localtime(j.created)) if j.created else ""
        rows.append([j.id, j.kind, j.title, j.state, when, (j.error or j.note or "")[:120]])
    return rows


JOB_HEADERS = ["job", "kind", "title", "state", "queued at", "message"]


def pushed_markdown(result, card: str) -> str:
    """What a push to the Hub did (or, for a dry run, would send): the files, and where its `card` is."""
    if result.dry_run:
        files = "\n".join(result.files)
        said = result.describe().removeprefix("dry run: ")
        return f"**Dry run:** {html.escape(said)}. Its README.md is the {card}.\n\n```\n{files}\n```"
    visibility = "private" if result.private else "public"
    return f"**Pushed** {len(result.files)} file(s) to [{result.repo_id}]({result.url}) ({visibility})."
