"""Which browser session a call belongs to, for the shared public Space's per-session workspaces.

`attach(studio, demo)` makes `studio.workspace_dir` the calling session's own temporary
workspace (`medart.studio.sessions.SessionWorkspaces`) and removes it when the page closes
(`demo.unload`); clients without a page (scripts) are swept after hours without use.
"""

from __future__ import annotations

from gradio.context import LocalContext


def current_key() -> str | None:
    """The session id of the request being handled (None outside a request)."""
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) or None


def attach(studio, demo) -> None:
    if not studio.per_session:
        return
    studio.session_key = current_key

    def end_session():
        studio.end_session(current_key())

    demo.unload(end_session)
