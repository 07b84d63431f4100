"""Which folders of the server the app's users may name (imports, datasets, models, held-out images).

Anyone who can use the app can type a path into it. The app therefore reads only inside the
roots its owner allows (`python app.py --import-root FOLDER`, repeatable); by default the home
folder and the working directory when the app is bound to loopback, and nothing when it is
reachable from other machines without `--import-root`. A path outside them gets one line
that names no file of the server; nothing is listed. The command line runs as the owner on
their own machine and is not restricted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# a Hugging Face id: owner/name (or a bare name), no path syntax
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
RUN_NAME = re.compile(r"^[\w][\w.+-]{0,127}$")


class PathRefused(ValueError):
    """A path outside the allowed roots (one line, naming only what the user typed)."""


def default_roots(host: str, home: str | Path, explicit: Sequence[str | Path] = (),
                  cwd: str | Path | None = None) -> list[Path]:
    """`explicit` when given; else home and working directory on loopback; else none."""
    if explicit:
        return [Path(p).expanduser() for p in explicit]
    if host in LOOPBACK_HOSTS:
        return [Path(home), Path(cwd) if cwd is not None else Path.cwd()]
    return []


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class ServerPaths:
    """The allowed roots (resolved: symbolic links and `..` cannot leave them) and the checks."""

    def __init__(self, roots: Iterable[str | Path]):
        self.roots = tuple(dict.fromkeys(Path(r).expanduser().resolve() for r in roots))

    def allows(self, path: str | Path) -> bool:
        resolved = Path(path).expanduser().resolve()
        return any(_inside(resolved, root) for root in self.roots)

    def _refuse(self, value: str, what: str) -> PathRefused:
        shown = value if len(value) <= 80 else value[:77] + "..."
        if not self.roots:
            return PathRefused(f"{what} {shown!r} refused: this app reads no server folders "
                               "(its owner can allow some with --import-root FOLDER)")
        return PathRefused(f"{what} {shown!r} is not inside a folder this app may read "
                           "(its owner can allow one with --import-root FOLDER)")

    def folder(self, value: str | None, what: str = "folder") -> Path:
        """The resolved folder `value` names, when it lies inside a root and exists."""
        text = (value or "").strip()
        if not text:
            raise ValueError(f"type a {what} on this machine first")
        if "\x00" in text or not self.allows(text):
            raise self._refuse(text, what)
        path = Path(text).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{what} {text!r} does not exist (or is not a folder)")
        return path

    def folder_or_id(self, value: str | None, what: str, names: Sequence[str] = ()) -> str:
        """A local folder inside a root (returned resolved), or a hub id / one of `names` as typed.
        A string that is path syntax (absolute, ~, ./, ../) or an existing local path outside the
        roots is refused."""
        text = (value or "").strip()
        if not text:
            raise ValueError(f"type a {what} first")
        if text in names:
            return text
        local = Path(text).expanduser()
        if "\x00" not in text and self.allows(local) and local.exists():
            return str(local.resolve())
        path_syntax = text.startswith(("/", "~", ".", "\\")) or os.sep in text.replace("/", "") or ".." in text
        if path_syntax or not HUB_ID.match(text) or local.exists():
            raise self._refuse(text, what)
        return text


def run_folder(runs_dir: str | Path, name: str | None) -> Path:
    """The run `name`: a folder directly inside `runs_dir` (no path, no `..`); ValueError otherwise."""
    text = (name or "").strip()
    if not text:
        raise ValueError("choose a run first")
    if not RUN_NAME.match(text) or text in (".", ".."):
        raise ValueError(f"{text[:80]!r} is not a run name (runs are chosen from the list)")
    path = Path(runs_dir) / text
    if not path.is_dir():
        raise ValueError(f"no run called {text!r}")
    return path
