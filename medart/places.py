"""Where things live by default, for the app and the command line alike.

The home folder holds runs and jobs: `MEDART_HOME`, else /data/medart on a Hugging Face Space
with persistent storage, else the current folder. The workspace (images, captions, reader
studies) is `--workspace`, else `MEDART_WORKSPACE`, else `<home>/workspace`: `python app.py`
and `python -m medart ...` started in the same place with the same environment open the same
workspace, and both say which one and why.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "MEDART_WORKSPACE"
HOME_ENV = "MEDART_HOME"


def default_home() -> Path:
    """`MEDART_HOME`; else /data/medart on a Space with persistent storage; else the current folder."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env)
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/medart")
    return Path.cwd()


def workspace_folder(explicit: str | Path | None = None, home: str | Path | None = None) -> tuple[Path, str]:
    """(the workspace folder, where that choice came from): `explicit` (--workspace), else
    `MEDART_WORKSPACE`, else `<home>/workspace` (home: given, else `default_home()`)."""
    if explicit:
        return Path(explicit).expanduser(), "--workspace"
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return Path(env).expanduser(), WORKSPACE_ENV
    if home is not None:
        return Path(home) / "workspace", "the home folder's"
    source = f"{HOME_ENV}'s" if os.environ.get(HOME_ENV) else "the default"
    return default_home() / "workspace", source


def default_workspace() -> Path:
    """The workspace a command opens without --workspace."""
    return workspace_folder()[0]
