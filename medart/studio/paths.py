"""Which folders of the server the app's users may name (imports, datasets, models, held-out images).

Anyone who can use the app can type a path into it. The app therefore reads only inside the
roots its owner allows (`python app.py --import-root FOLDER`, repeatable); by default the home
folder and the working directory when the app is bound to loopback, and nothing when it is
reachable from other machines without `--import-root`. A path outside them gets one line
that names no file of the server; nothing is listed. Every path goes through one check
(`ServerPaths.check`): resolved, symbolic links and `..` followed, it must lie inside a root;
a path the system cannot look up (too long, looping links) is refused in one line that quotes
nothing of it. A dataset is a folder inside the roots none of whose links leads out of them,
or a hub id, and so is a base model's folder; a format name such as `imagefolder` (which would
read the working directory) is refused. The command line runs as the owner on their own machine and is not restricted.
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
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX
MAX_NAME_CHARS = 255  # and NAME_MAX


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

    def _resolved(self, text: str, what: str) -> Path:
        """`text` resolved, or PathRefused (one line that quotes nothing of a path the system cannot look up)."""
        if "\x00" in text:
            raise self._refuse(text, what)
        if len(text) > MAX_PATH_CHARS:
            raise PathRefused(f"{what} refused: a path of {len(text):,} characters is longer than this system reads "
                              f"(at most {MAX_PATH_CHARS:,})")
        longest = max(len(part) for part in Path(text).parts) if text else 0
        if longest > MAX_NAME_CHARS:
            raise PathRefused(f"{what} refused: a name of {longest:,} characters in it is longer than this system "
                              f"allows (at most {MAX_NAME_CHARS})")
        try:
            return Path(text).expanduser().resolve()
        except (OSError, RuntimeError):  # links that loop, a folder that cannot be searched
            raise PathRefused(f"{what} refused: this system cannot look up a path of {len(text):,} characters "
                              "(links that loop, or a folder it may not search)") from None

    def check(self, value: str | Path, what: str = "path", action: str = "read") -> Path:
        """The one check every path a user gives goes through: the resolved path, when it lies inside
        a root. `action` ("read", "write to") is what the refusal says the app may not do there."""
        text = str(value)
        path = self._resolved(text, what)
        if not any(_inside(path, root) for root in self.roots):
            raise self._refuse(text, what, action)
        return path

    def allows(self, path: str | Path) -> bool:
        try:
            self.check(path)
        except PathRefused:
            return False
        return True

    def _refuse(self, value: str, what: str, action: str = "read") -> PathRefused:
        shown = value if len(value) <= 80 else value[:77] + "..."
        if not self.roots:
            return PathRefused(f"{what} {shown!r} refused: this app {'reads' if action == 'read' else 'may ' + action} no server folders "
                               "(its owner can allow some with --import-root FOLDER)")
        return PathRefused(f"{what} {shown!r} is not inside a folder this app may {action} "
                           "(its owner can allow one with --import-root FOLDER)")

    def folder(self, value: str | None, what: str = "folder") -> Path:
        """The resolved folder `value` names, when it lies inside a root and exists."""
        text = (value or "").strip()
        if not text:
            raise ValueError(f"type a {what} on this machine first")
        path = self.check(text, what)
        if not _exists(path, dir=True):
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
        local = self._resolved(text, what)
        if any(_inside(local, root) for root in self.roots) and _exists(local):
            self._no_link_out(local, text, what)
            return str(local)
        path_syntax = text.startswith(("/", "~", ".", "\\")) or os.sep in text.replace("/", "") or ".." in text
        if path_syntax or not HUB_ID.match(text) or _exists(Path(text).expanduser()):
            raise self._refuse(text, what)
        return text

    def dataset(self, value: str | None, what: str = "dataset") -> str:
        """A local dataset inside a root, none of whose links leads out of the roots (returned
        resolved), or a hub id that is not a format's name (`imagefolder` alone reads the working
        directory)."""
        from medart.workspace.importers import dataset_builders

        text = (value or "").strip()
        if text.lower() in dataset_builders():
            raise PathRefused(f"{text!r} is a dataset format, not a dataset: give the folder that holds the images "
                              "(inside the folders this app may read) or a hub dataset id")
        return self.folder_or_id(text, what)

    def _no_link_out(self, local: Path, text: str, what: str) -> None:
        """PathRefused when the folder `local` holds a link that leads outside the roots."""
        if not local.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(local, followlinks=False):
            for name in (*dirnames, *filenames):
                link = Path(dirpath) / name
                if link.is_symlink() and not self.allows(link):
                    shown = text if len(text) <= 80 else text[:77] + "..."
                    raise PathRefused(f"{what} {shown!r} refused: it holds a link that leads outside the folders "
                                      "this app may read; remove the link or copy the file in")


def _exists(path: Path, dir: bool = False) -> bool:
    try:
        return path.is_dir() if dir else path.exists()
    except OSError:
        return False


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
