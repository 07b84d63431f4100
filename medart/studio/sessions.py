"""Per-session workspaces for the original public Space, where strangers share one app.

Each browser session gets a temporary workspace of its own, which no other visitor sees,
removed when the session ends (`remove`), after `idle_s` without use (`sweep`) and at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path


class SessionWorkspaces:
    """One temporary workspace per browser session, in a private folder of the system's temp
    directory: created on first use, removed when the session ends (`remove`), for clients
    that never say goodbye after `idle_s` without use (`sweep`), and all when the process exits."""

    def __init__(self, root: str | Path | None = None, idle_s: float = 6 * 3600):
        if root is None:
            root = tempfile.mkdtemp(prefix="medart-sessions-")
            atexit.register(shutil.rmtree, root, True)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.idle_s = idle_s
        self._last_sweep = 0.0

    @staticmethod
    def folder_name(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]  # the client's session id never becomes a path

    def path(self, key: str) -> Path:
        folder = self.root / self.folder_name(key)
        folder.mkdir(exist_ok=True)
        os.utime(folder)  # last use, for sweep()
        if time.time() - self._last_sweep > 600:
            self.sweep()
        return folder / "workspace"

    def remove(self, key: str) -> bool:
        folder = self.root / self.folder_name(key)
        existed = folder.exists()
        shutil.rmtree(folder, ignore_errors=True)
        return existed

    def sweep(self) -> int:
        self._last_sweep = time.time()
        gone = 0
        for folder in self.root.iterdir():
            try:
                idle = time.time() - folder.stat().st_mtime
            except OSError:
                continue
            if idle > self.idle_s:
                shutil.rmtree(folder, ignore_errors=True)
                gone += 1
        return gone

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
