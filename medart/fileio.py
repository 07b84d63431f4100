"""Files and folders: atomic writes (complete or absent, never half-written) and safe names."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line and flush it to disk (a killed writer leaves whole lines only)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (writer killed mid-write) is ignored."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written temp folder to its final name in one rename (an older folder of
    that name is moved aside first and deleted after)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(final: str | Path, prefix: str | None = None, keep_existing: bool = False,
               mode: int | None = None) -> Iterator[Path]:
    """A temporary folder beside `final` to fill; when the block ends normally it becomes
    `final` in one rename (`publish_dir`), when it raises it is removed. `prefix` names the
    temporary folder (so that leftovers of a killed writer can be found); `keep_existing`:
    if `final` exists by then (another process finished first), keep that one and drop this;
    `mode`: the folder's permissions (a temporary folder is private, 0o700, otherwise)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix or f".{final.name}.", dir=final.parent))
    try:
        if mode is not None:
            tmp.chmod(mode)
        yield tmp
        if keep_existing and final.exists():
            return
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def slugify(text: str, keep: str = ".-", sep: str = "-", max_len: int = 60) -> str:
    """`text` as a safe file or folder name: every run of characters other than letters,
    digits, `_` and those in `keep` becomes `sep`; `sep` and dots are trimmed from the ends;
    at most `max_len` characters. May be empty: callers say what an empty name means."""
    slug = re.sub(rf"[^\w{re.escape(keep)}]+", sep, (text or "").strip())
    return slug.strip(sep + ".")[:max_len]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A CSV cell a spreadsheet shows as text: a string that starts like a formula (`=`, `+`,
    `-`, `@`, a tab or a carriage return) gets a leading `'`, so `=HYPERLINK(...)` typed
    by someone else is not run when the file's owner opens it; other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
