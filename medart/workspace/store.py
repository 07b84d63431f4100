"""The caption workspace: an SQLite store of images, captions, their edit history and templates.

A workspace is a folder (`--workspace`, else `MEDART_WORKSPACE`, else `<home>/workspace`, the
home being `MEDART_HOME` or the current folder: `medart.places`, the same for app and CLI):

    workspace.db            SQLite in WAL mode; every change is one transaction
    images/ab/<sha256>.png  each image once, under the hash of its decoded RGB pixels
    thumbs/ab/<sha256>.jpg  256-pixel thumbnails for the gallery
    import.lock             held (shared) by every running import
    imports/<id>            one marker per import that has not finished

Captions move `draft` -> `edited` -> `approved` (or `rejected`). Every text or status change,
and every change of an image's label or split, is written together with a history row in one
transaction, so a killed process loses no committed edit and `undo()` restores the state
before the workspace's last change, whatever it was (an edit, an approval, a batch of
captions, a find/replace, a relabelling, a hold-out), and says what it undid. A change may
touch many images (find/replace, a batch captioning job, a hold-out): it is undone in one
step. Imports and removals are not changes that undo reverses. Each image has a class label
and a split (train, validation, test); `medart.workspace.splits` reassigns splits per class. An import writes
image files before the rows that refer to them (`importing()`); a killed one leaves its
marker, and the next opening of the workspace while no import runs removes the files no row
refers to. The schema and its versions are `medart.workspace.migrations`; this module and
`medart.reader_study.store` are the only ones that speak SQL. No gradio here: the app and the
CLI both use this module.

Two people on one workspace: an edit may carry the `updated_at` stamp of the caption its
editor loaded (`set_text(..., expected=)`); when the caption changed since, nothing is written
and `EditConflict` says what it is now, so nobody overwrites another's newer change unaware.
`updated_at` only grows, so the stamp names one version of the caption.

Bounds that keep one request from holding the server: a caption is at most `MAX_CAPTION_CHARS`
characters on every write, and a find/replace pattern runs for at most `REGEX_SECONDS` on one
caption and that plus `REGEX_PER_CAPTION` per caption in all (the `regex` module's time limit;
the match runs without holding the interpreter). A pattern is checked before it is compiled
(compiling unrolls counted repeats, so `a{10000000}` alone would take gigabytes): at most
`MAX_PATTERN_CHARS` characters, `MAX_GROUP_DEPTH` nested groups, and counted repeats that add
up to at most `MAX_REPEAT` (nested ones multiplied). The replacement is at most
`MAX_CAPTION_CHARS` characters, and a replaced caption stops being built as soon as it would
pass MAX_CAPTION_CHARS. With a `token_limit` (how many T5 tokens the
base reads), a caption longer than that is not approved.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import regex as regex_engine  # time limits for patterns people type
from PIL import Image

from captioning.templates import BUILTIN_TEMPLATES, ModalityTemplate, get_builtin
from medart.constants import SPLITS
from medart.fileio import atomic_write_bytes
from medart.workspace.migrations import migrate

STATUSES = ("draft", "edited", "approved", "rejected")
THUMB_SIZE = 256
DB_NAME = "workspace.db"
IMPORT_LOCK = "import.lock"  # shared by running imports; taken exclusively to collect orphans
IMPORT_MARKERS = "imports"  # one file per import that has not finished
MAX_CAPTION_CHARS = 10_000  # T5 reads at most 300 tokens (about 1,500 characters); this is far beyond
REGEX_SECONDS = 0.5  # a find/replace pattern's time on one caption (it stops soon after) ...
REGEX_PER_CAPTION = 5e-5  # ... and over them all: REGEX_SECONDS plus this much per caption searched
MAX_PATTERN_CHARS = 500  # a find/replace regular expression's length
MAX_GROUP_DEPTH = 20  # groups inside groups in one pattern
MAX_REPEAT = 1_000  # counted repeats ({n}, {n,m}) of one pattern, nested ones multiplied, all added up
STAMP_STEP = 1e-6  # updated_at grows by at least this much on every change

def default_workspace() -> Path:
    """`MEDART_WORKSPACE`, else `<home>/workspace` (`medart.places`, shared with the app)."""
    from medart.places import default_workspace as where

    return where()


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 of an RGB image's size and pixels: the same picture re-encoded hashes the same."""
    h = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    # bands of about 4 MiB, not one copy of the whole image; cut from the pixel core, since
    # Image.crop applies Pillow's decompression-bomb guard, which may be set low elsewhere
    rows = max(1, (4 << 20) // max(1, 3 * image.width))
    for top in range(0, image.height, rows):
        band = image.im.crop((0, top, image.width, min(image.height, top + rows)))
        h.update(image._new(band).tobytes())
    return h.hexdigest()


def check_caption(text: str | None, what: str = "the caption") -> str:
    """The caption, stripped; a ValueError when it is longer than MAX_CAPTION_CHARS."""
    text = (text or "").strip()
    if len(text) > MAX_CAPTION_CHARS:
        raise ValueError(f"{what} is {len(text):,} characters long, over the limit of {MAX_CAPTION_CHARS:,}; "
                         "shorten it (the base model reads a few hundred tokens at most)")
    return text


class EditConflict(ValueError):
    """An edit made over someone else's newer change: nothing was written; `item` is the caption now."""

    def __init__(self, item: "Item"):
        self.item = item
        when = time.strftime("%H:%M:%S", time.localtime(item.updated_at))
        super().__init__(f"#{item.id} was changed by someone else at {when}, after you opened it (now "
                         f"{item.status}: {_short(item.text)!r}); your text was not saved: keep theirs or save "
                         "yours over it")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def check_split(split: str) -> str:
    """`split` if it is one of SPLITS, else a ValueError naming the choices."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


@dataclass
class Filter:
    """Which captions to show or edit. Empty fields do not filter."""

    status: str | list[str] | None = None
    label: str | None = None
    text: str | None = None  # case-insensitive substring of the caption
    min_tokens: int | None = None
    max_tokens: int | None = None
    ids: list[int] | None = None
    missing: bool | None = None  # True: only empty captions; False: only non-empty
    split: str | None = None  # train, validation or test

    def sql(self) -> tuple[str, list]:
        where, params = [], []
        if self.status:
            statuses = [self.status] if isinstance(self.status, str) else list(self.status)
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise ValueError(f"unknown status {bad[0]!r}; choose from {', '.join(STATUSES)}")
            where.append(f"c.status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if self.split:
            where.append("i.split = ?")
            params.append(check_split(self.split))
        if self.label is not None:
            where.append("i.label IS ?")
            params.append(self.label or None)
        if self.text:
            where.append("instr(lower(c.text), lower(?)) > 0")
            params.append(self.text)
        if self.min_tokens is not None:
            where.append("c.token_count >= ?")
            params.append(self.min_tokens)
        if self.max_tokens is not None:
            where.append("c.token_count <= ?")
            params.append(self.max_tokens)
        if self.ids is not None:
            ids = [int(i) for i in self.ids]
            where.append(f"i.id IN ({','.join('?' * len(ids))})" if ids else "0")
            params += ids
        if self.missing is True:
            where.append("c.text = ''")
        elif self.missing is False:
            where.append("c.text != ''")
        return (" WHERE " + " AND ".join(where)) if where else "", params


@dataclass
class Item:
    """One image with its caption, as the gallery and the editor show it."""

    id: int
    sha256: str
    original_name: str
    width: int
    height: int
    mode: str
    source: str
    label: str | None
    split: str
    modality: str | None
    text: str
    status: str
    token_count: int | None
    provenance: dict
    updated_at: float
    image_path: Path
    thumb_path: Path


@dataclass
class NewImage:
    """An image ready to enter the workspace (its files already written by `store_image`)."""

    sha256: str
    original_name: str
    width: int
    height: int
    mode: str
    bytes: int
    source: str = ""
    label: str | None = None
    split: str = "train"
    modality: str | None = None
    text: str = ""
    provenance: dict = field(default_factory=dict)


@dataclass
class ReplaceMatch:
    """One match in its caption: the text `left` of it, the matched `old`, its replacement `new` and the
    text `right` of it (a window of CONTEXT characters each side, "…" where the caption goes on)."""

    id: int
    left: str
    old: str
    new: str
    right: str


@dataclass
class ReplacePreview:
    captions: int  # captions that would change
    matches: int  # occurrences replaced
    samples: list[ReplaceMatch]  # the first few matches, each in its context
    change_id: int | None = None  # set once applied

    @property
    def more(self) -> int:
        """Matches not among the samples."""
        return self.matches - len(self.samples)


CONTEXT = 30  # characters shown each side of a find/replace match


def _budget(deadline: float) -> float:
    """The time a pattern may take on the next caption: REGEX_SECONDS, at most what is left."""
    return max(min(REGEX_SECONDS, deadline - time.monotonic()), 1e-3)


_COUNT = regex_engine.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_PATTERN_ADVICE = ("; nothing was changed. Use a shorter, simpler pattern (a class such as [a-z]+ or a "
                   "repeat such as \\d{1,4})")


def check_pattern(pattern: str) -> None:
    """A ValueError, before anything is compiled, when a regular expression could take too much
    time or memory to compile: over MAX_PATTERN_CHARS characters, groups nested deeper than
    MAX_GROUP_DEPTH, or counted repeats over MAX_REPEAT in all (each group's count multiplies
    the counts inside it)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"the regular expression is {len(pattern):,} characters long, over the limit of "
                         f"{MAX_PATTERN_CHARS}" + _PATTERN_ADVICE)
    inside = [0]  # per open group: the repeats counted inside it
    last = 0  # the repeats of the atom just read (a closed group's own)
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i, last = i + 2, 0
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 1 + (pattern[i + 1:i + 2] == "^")
            i += pattern[i:i + 1] == "]"  # a ] first in a class is a character
            last = 0
            continue
        elif ch == "(":
            inside.append(0)
            if len(inside) > MAX_GROUP_DEPTH + 1:
                raise ValueError(f"the regular expression nests groups more than {MAX_GROUP_DEPTH} deep"
                                 + _PATTERN_ADVICE)
        elif ch == ")" and len(inside) > 1:
            last = inside.pop()
            inside[-1] += last
            i += 1
            continue
        elif ch == "{" and (m := _COUNT.match(pattern, i)) and (m.group(1) or m.group(3)):
            count = int(m.group(3) or m.group(1))  # {n}, {n,}: n; {n,m}, {,m}: m
            added = count * max(last, 1) - last  # the atom (and what it counted) `count` times
            inside[-1] += added
            if count > MAX_REPEAT or inside[-1] > MAX_REPEAT:
                raise ValueError(f"the regular expression repeats more than {MAX_REPEAT:,} times in all "
                                 f"(counted repeats such as {{n}} are unrolled when it is compiled)" + _PATTERN_ADVICE)
            last = 0
            i = m.end()
            continue
        last = 0
        i += 1
    if inside[0] > MAX_REPEAT:
        raise ValueError(f"the regular expression repeats more than {MAX_REPEAT:,} times in all" + _PATTERN_ADVICE)


class _TooLong(Exception):
    """A replaced caption that would pass MAX_CAPTION_CHARS: it is not built further."""


def _bounded_subn(rx, repl: str, text: str, timeout: float) -> tuple[str, int]:
    """`rx.subn(repl, text)` that stops (_TooLong) once the result would pass MAX_CAPTION_CHARS."""
    size = [len(text)]

    def expand(m):
        s, e = m.span()
        out = m.expand(repl)
        size[0] += len(out) - (e - s)
        if size[0] > MAX_CAPTION_CHARS:
            raise _TooLong
        return out

    return rx.subn(expand, text, timeout=timeout, concurrent=True)


def _in_context(iid: int, text: str, m, replacement: str) -> ReplaceMatch:
    s, e = m.span()
    left, right = text[max(0, s - CONTEXT):s], text[e:e + CONTEXT]
    if s > CONTEXT:  # cut: start at a word, after "…"
        left = "…" + (left[left.find(" ") + 1:] if " " in left[:-1] else left)
    if len(text) > e + CONTEXT:
        right = (right[:right.rfind(" ")] if " " in right[1:] else right) + "…"
    return ReplaceMatch(iid, left, m.group(0), m.expand(replacement), right)


@dataclass
class Undone:
    """What `Workspace.undo` reverted: one change, with the captions and images it restored."""

    action: str  # edit, approve, reject, describe, caption batch, replace, label, split, hold out, ...
    detail: str
    at: float
    captions: list[int]  # ids whose caption was restored
    images: list[int]  # ids whose label or split was restored
    before: dict = field(default_factory=dict)  # one image's restored state: text, status, label, split

    @property
    def ids(self) -> list[int]:
        return sorted(set(self.captions) | set(self.images))

    def describe(self) -> str:
        """One line for people: "Undid the approval of #12 (now edited)"."""
        what = ACTION_NAMES.get(self.action, self.action)
        if self.detail:
            what += f" {self.detail}"
        ids = self.ids
        if len(ids) == 1:
            where = f"of #{ids[0]}"
            now = [f"caption {self.before['status']}" if "status" in self.before else "",
                   f"label {self.before['label'] or '(none)'}" if "label" in self.before else "",
                   f"split {self.before['split']}" if "split" in self.before else ""]
            now = ", ".join(x for x in now if x)
            return f"Undid {what} {where}" + (f" (now: {now})." if now else ".")
        parts = []
        if self.captions:
            parts.append(f"{len(self.captions)} caption(s) restored")
        if self.images:
            parts.append(f"{len(self.images)} image(s) back to their label and split")
        return f"Undid {what}: {', '.join(parts)}."


ACTION_NAMES = {
    "edit": "the edit", "approve": "the approval", "reject": "the rejection", "describe": "the new caption",
    "caption batch": "the batch captioning", "replace": "the find/replace", "label": "the relabelling",
    "split": "the move", "hold out": "the hold-out", "draft": "the status change", "edited": "the status change",
    "approved": "the approval", "rejected": "the rejection",
}


_ITEM_SQL = """SELECT i.id, i.sha256, i.original_name, i.width, i.height, i.mode, i.source, i.label, i.split,
    i.modality, c.text, c.status, c.token_count, c.provenance, c.updated_at
    FROM images i JOIN captions c ON c.image_id = i.id"""


class Workspace:
    """An open workspace. Thread-safe: one connection guarded by a lock."""

    def __init__(self, root: str | Path | None = None, tokenizer=None, create: bool = True,
                 token_limit: int | None = None):
        self.root = Path(root) if root is not None else default_workspace()
        db = self.root / DB_NAME
        if not db.exists() and not create:
            raise FileNotFoundError(
                f"no workspace at {self.root} (no {DB_NAME}); import images first with "
                f"`python -m medart import PATH --workspace {self.root}`"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "images").mkdir(exist_ok=True)
        (self.root / "thumbs").mkdir(exist_ok=True)
        self.tokenizer = tokenizer
        self.token_limit = token_limit  # T5 tokens the base reads: a longer caption is not approved
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30)
        self._use_wal(timeout=30)
        self.conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")
        try:
            with self._lock:
                migrate(self.conn, str(self.root))
        except BaseException:
            self.conn.close()
            raise
        self.collect_orphans()

    # ---- plumbing -------------------------------------------------------------------------
    def _use_wal(self, timeout: float) -> None:
        """Switch the database to WAL. While another connection is creating the tables of a new
        workspace, SQLite answers "locked" at once instead of waiting, so wait here."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error); yields the connection."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self):
        """The connection, for reads, under the workspace's lock."""
        with self._lock:
            yield self.conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def image_path(self, sha: str) -> Path:
        return self.root / "images" / sha[:2] / f"{sha}.png"

    def thumb_path(self, sha: str) -> Path:
        return self.root / "thumbs" / sha[:2] / f"{sha}.jpg"

    def count_tokens(self, text: str) -> int | None:
        if self.tokenizer is None or not text:
            return 0 if not text else None
        return len(self.tokenizer(text)["input_ids"])

    # ---- images ---------------------------------------------------------------------------
    def store_image(self, image: Image.Image) -> tuple[str, int, bool]:
        """Write an RGB image (and its thumbnail) under its pixel hash, each file atomically.
        Returns (sha256, stored bytes, whether the files were newly written)."""
        if image.mode != "RGB":
            raise ValueError(f"store_image wants RGB, got {image.mode}")
        sha = pixel_hash(image)
        path, thumb = self.image_path(sha), self.thumb_path(sha)
        if path.exists() and thumb.exists():
            return sha, path.stat().st_size, False
        clean = image.copy()
        clean.info.clear()  # no info, no EXIF, no ICC
        buf = io.BytesIO()
        clean.save(buf, format="PNG", compress_level=1)
        atomic_write_bytes(path, buf.getvalue())
        clean.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)  # in place: the copy is not needed again
        tbuf = io.BytesIO()
        clean.save(tbuf, format="JPEG", quality=85)
        atomic_write_bytes(thumb, tbuf.getvalue())
        return sha, len(buf.getvalue()), True

    def find_sha(self, sha: str) -> int | None:
        with self._lock:
            row = self.conn.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return row[0] if row else None

    def add_images(self, new: Iterable[NewImage]) -> list[int]:
        """Insert images with their captions in ONE transaction (all or nothing).
        Images already present (same hash) are skipped; their ids are returned as they are."""
        ids = []
        now = time.time()
        with self.transaction() as c:
            for n in new:
                row = c.execute("SELECT id FROM images WHERE sha256 = ?", (n.sha256,)).fetchone()
                if row:
                    ids.append(row[0])
                    continue
                cur = c.execute(
                    "INSERT INTO images (sha256, original_name, width, height, mode, bytes, source, label, split,"
                    " modality, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (n.sha256, n.original_name, n.width, n.height, n.mode, n.bytes, n.source, n.label or None,
                     n.split or "train", n.modality, now),
                )  # fmt: skip
                text = check_caption(n.text, "an imported caption")
                c.execute(
                    "INSERT INTO captions (image_id, text, status, provenance, token_count, updated_at) VALUES (?,?,?,?,?,?)",
                    (cur.lastrowid, text, "edited" if text else "draft", json.dumps(n.provenance),
                     self.count_tokens(text), now),
                )  # fmt: skip
                ids.append(cur.lastrowid)
        return ids

    def _known(self, c, ids: Iterable[int]) -> list[int]:
        """The ids, once each; a ValueError naming any that no image has (inside a transaction)."""
        ids = sorted({int(i) for i in ids})
        found = set()
        for k in range(0, len(ids), 500):  # SQLite caps the number of parameters of one statement
            chunk = ids[k : k + 500]
            sql = f"SELECT id FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in c.execute(sql, chunk))
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ValueError(
                f"no image with id {shown} in {self.root}; nothing was changed. Image ids are the #numbers "
                "under the gallery images (Data tab) and in `python -m medart list`"
            )
        return ids

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """The ids, sorted and once each; a ValueError naming any unknown one."""
        with self.read() as c:
            return self._known(c, ids)

    def set_labels(self, ids: Iterable[int], label: str | None) -> int:
        """Give the images the class label (None or "" clears it), all or none; returns how many."""
        label = (label or "").strip() or None
        with self.transaction() as c:
            ids = self._known(c, ids)
            self._image_change(c, "label", [(i, label, None) for i in ids], detail=f"to {label or '(none)'}")
        return len(ids)

    def set_split(self, ids: Iterable[int], split: str) -> int:
        """Move the images to `split` (train, validation, test), all or none; returns how many."""
        check_split(split)
        with self.transaction() as c:
            ids = self._known(c, ids)
            self._image_change(c, "split", [(i, None, split) for i in ids], detail=f"to {split}")
        return len(ids)

    def split_counts(self, flt: Filter | None = None) -> list[tuple[str, str, int]]:
        """(label, split, images) over the filtered images, by label then split; "" is the
        label of unlabelled images."""
        where, params = (flt or Filter()).sql()
        with self.read() as c:
            return c.execute(
                "SELECT coalesce(i.label, ''), i.split, count(*) FROM images i JOIN captions c ON c.image_id = i.id"
                + where + " GROUP BY 1, 2 ORDER BY 1, 2", params,
            ).fetchall()  # fmt: skip

    def reassign_splits(self, flt: Filter | None, assign: Callable[[list[tuple[int, str, str, str]]], list[tuple[str, int]]],
                        action: str = "hold out", detail: str = "") -> None:
        """In one transaction: the filtered images as (id, label or "", sha256, split), by id, go to
        `assign`, whose (split, id) pairs are written back (ValueError when none match)."""
        where, params = (flt or Filter()).sql()
        with self.transaction() as c:
            rows = c.execute(
                "SELECT i.id, coalesce(i.label, ''), i.sha256, i.split FROM images i JOIN captions c ON c.image_id = i.id"
                + where + " ORDER BY i.id", params,
            ).fetchall()  # fmt: skip
            if not rows:
                raise ValueError(f"no images in {self.root} match; import images first or widen the filter")
            updates = assign(rows)
            for split, _ in updates:
                check_split(split)
            self._image_change(c, action, [(i, None, split) for split, i in updates], detail=detail)

    def remove(self, ids: Iterable[int]) -> int:
        """Delete images with their captions and history (not undoable); unreferenced files go too."""
        with self.transaction() as c:
            ids = self._known(c, ids)
            shas = [r[0] for i in ids for r in c.execute("SELECT sha256 FROM images WHERE id = ?", (i,))]
            c.executemany("DELETE FROM history WHERE image_id = ?", [(i,) for i in ids])
            c.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
        for sha in shas:
            self.image_path(sha).unlink(missing_ok=True)
            self.thumb_path(sha).unlink(missing_ok=True)
        return len(shas)

    @contextmanager
    def importing(self):
        """Held while an import writes image files before their rows: a shared lock on
        `import.lock` (so no one collects those files meanwhile) and a marker in `imports/`
        that stays behind if the import is killed."""
        with open(self.root / IMPORT_LOCK, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)  # waits while someone collects orphans
            marker = self.root / IMPORT_MARKERS / f"{os.getpid()}-{uuid.uuid4().hex}"
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
            try:
                yield
            finally:
                marker.unlink(missing_ok=True)

    def collect_orphans(self) -> int:
        """When an import was killed (its marker is left) and none is running now, remove the
        image files no row refers to; returns how many. Cheap when there is nothing to do."""
        markers = self.root / IMPORT_MARKERS
        try:
            if not any(markers.iterdir()):
                return 0
        except FileNotFoundError:
            return 0
        with open(self.root / IMPORT_LOCK, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # an import is running; a later opening collects
            left = list(markers.iterdir())
            removed = self.collect_garbage()
            for m in left:
                m.unlink(missing_ok=True)
        return removed

    def collect_garbage(self, min_age_s: float = 0) -> int:
        """Remove image/thumbnail files no row refers to (left by an import that was killed),
        if older than `min_age_s` (so that an import running in another process keeps its files)."""
        with self._lock:
            known = {r[0] for r in self.conn.execute("SELECT sha256 FROM images")}
        removed = 0
        now = time.time()
        for sub in ("images", "thumbs"):
            for path in (self.root / sub).glob("*/*"):
                sha = path.name.split(".")[0]
                if sha in known and not path.name.endswith(".tmp"):
                    continue
                try:
                    if now - path.stat().st_mtime >= min_age_s:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # ---- reading --------------------------------------------------------------------------
    def _item(self, row) -> Item:
        sha = row[1]
        return Item(
            id=row[0], sha256=sha, original_name=row[2], width=row[3], height=row[4], mode=row[5], source=row[6],
            label=row[7], split=row[8], modality=row[9], text=row[10], status=row[11], token_count=row[12],
            provenance=json.loads(row[13] or "{}"), updated_at=row[14],
            image_path=self.image_path(sha), thumb_path=self.thumb_path(sha),
        )  # fmt: skip

    def get(self, image_id: int) -> Item:
        with self._lock:
            row = self.conn.execute(_ITEM_SQL + " WHERE i.id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise ValueError(f"no image with id {image_id} in {self.root}")
        return self._item(row)

    def query(self, flt: Filter | None = None, offset: int = 0, limit: int | None = 48) -> list[Item]:
        where, params = (flt or Filter()).sql()
        sql = _ITEM_SQL + where + " ORDER BY i.id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = params + [int(limit), int(offset)]
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [self._item(r) for r in rows]

    page = query  # a gallery page: `ws.page(Filter(status="draft"), offset=48, limit=48)`

    def count(self, flt: Filter | None = None) -> int:
        where, params = (flt or Filter()).sql()
        with self._lock:
            return self.conn.execute(
                "SELECT count(*) FROM images i JOIN captions c ON c.image_id = i.id" + where, params
            ).fetchone()[0]

    def ids(self, flt: Filter | None = None) -> list[int]:
        where, params = (flt or Filter()).sql()
        with self._lock:
            return [
                r[0]
                for r in self.conn.execute(
                    "SELECT i.id FROM images i JOIN captions c ON c.image_id = i.id" + where + " ORDER BY i.id", params
                )
            ]

    def next_unreviewed(self, after_id: int | None = None, flt: Filter | None = None) -> Item | None:
        """The next caption that is neither approved nor rejected, after `after_id` (wrapping)."""
        base = flt or Filter()
        wanted = [base.status] if isinstance(base.status, str) else (base.status or ["draft", "edited"])
        statuses = [s for s in ("draft", "edited") if s in wanted]
        if not statuses:
            return None
        flt = Filter(**{**base.__dict__, "status": statuses})
        where, params = flt.sql()
        with self._lock:
            for extra, p in ((" AND i.id > ?", [after_id or 0]), ("", [])):
                row = self.conn.execute(_ITEM_SQL + where + extra + " ORDER BY i.id LIMIT 1", params + p).fetchone()
                if row:
                    return self._item(row)
        return None

    def stats(self) -> dict:
        """Counts: total, per status, empty captions, labels."""
        with self._lock:
            c = self.conn
            out = {"total": c.execute("SELECT count(*) FROM images").fetchone()[0]}
            out.update({s: 0 for s in STATUSES})
            out.update(dict(c.execute("SELECT status, count(*) FROM captions GROUP BY status").fetchall()))
            out["missing"] = c.execute("SELECT count(*) FROM captions WHERE text = ''").fetchone()[0]
            out["labels"] = dict(
                c.execute("SELECT coalesce(label, ''), count(*) FROM images GROUP BY label ORDER BY label").fetchall()
            )
        return out

    def history(self, image_id: int) -> list[dict]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT h.id, h.change_id, ch.action, ch.at, h.old_text, h.old_status, h.new_text, h.new_status, h.undone"
                " FROM history h JOIN changes ch ON ch.id = h.change_id WHERE h.image_id = ? ORDER BY h.id",
                (int(image_id),),
            ).fetchall()
        keys = ("id", "change_id", "action", "at", "old_text", "old_status", "new_text", "new_status", "undone")
        return [dict(zip(keys, r)) for r in rows]

    # ---- changing captions ----------------------------------------------------------------
    def begin_change(self, action: str, detail: str = "") -> int:
        """A change that several later writes join (`set_caption(..., change_id=)`): a batch
        captioning job writes each caption as it comes and is still undone in one step."""
        with self.transaction() as c:
            return c.execute("INSERT INTO changes (action, detail, at) VALUES (?,?,?)",
                             (action, detail, time.time())).lastrowid

    def _new_change(self, c, action: str, detail: str) -> int:
        return c.execute("INSERT INTO changes (action, detail, at) VALUES (?,?,?)", (action, detail, time.time())).lastrowid

    def _image_change(self, c, action: str, updates: list[tuple[int, str | None, str | None]], detail: str = "") -> int:
        """Set (image_id, label or None to keep, split or None to keep) with history rows, inside
        the caller's transaction; rows that would not change are skipped. Returns how many changed."""
        change_id, changed = None, 0
        for image_id, label, split in updates:
            old = c.execute("SELECT label, split FROM images WHERE id = ?", (int(image_id),)).fetchone()
            if old is None:
                raise ValueError(f"no image with id {image_id}")
            new_label = old[0] if label is None and action != "label" else label
            new_split = old[1] if split is None else split
            if (new_label, new_split) == tuple(old):
                continue
            if change_id is None:
                change_id = self._new_change(c, action, detail)
            c.execute("INSERT INTO image_history (change_id, image_id, old_label, old_split, new_label, new_split)"
                      " VALUES (?,?,?,?,?,?)", (change_id, int(image_id), old[0], old[1], new_label, new_split))
            c.execute("UPDATE images SET label = ?, split = ? WHERE id = ?", (new_label, new_split, int(image_id)))
            changed += 1
        return changed

    def _change(
        self, c, action: str, updates: list[tuple[int, str, str, dict | None]], detail: str = "",
        change_id: int | None = None,
    ) -> tuple[int | None, int]:
        """Apply (image_id, text, status, provenance or None to keep) updates with history rows,
        inside the caller's transaction, as change `change_id` (default: a new one). Rows that
        would not change are skipped. Returns (change id or None, number of captions changed)."""
        now = time.time()
        changed = 0
        for image_id, text, status, provenance in updates:
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}; choose from {', '.join(STATUSES)}")
            old = c.execute(
                "SELECT text, status, provenance, token_count, updated_at FROM captions WHERE image_id = ?", (image_id,)
            ).fetchone()
            if old is None:
                raise ValueError(f"no image with id {image_id}")
            new_prov = json.dumps(provenance) if provenance is not None else old[2]
            if (text, status, new_prov) == (old[0], old[1], old[2]):
                continue
            if change_id is None:
                change_id = self._new_change(c, action, detail)
            tokens = old[3] if text == old[0] else self.count_tokens(text)
            c.execute(
                "INSERT INTO history (change_id, image_id, old_text, old_status, old_provenance, old_token_count,"
                " new_text, new_status) VALUES (?,?,?,?,?,?,?,?)",
                (change_id, image_id, old[0], old[1], old[2], old[3], text, status),
            )
            c.execute(
                "UPDATE captions SET text = ?, status = ?, provenance = ?, token_count = ?, updated_at = ? WHERE image_id = ?",
                (text, status, new_prov, tokens, max(now, old[4] + STAMP_STEP), image_id),
            )
            changed += 1
        return change_id, changed

    def _current(self, c, image_id: int) -> tuple[str, str]:
        row = c.execute("SELECT text, status FROM captions WHERE image_id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise ValueError(f"no image with id {image_id} in {self.root}")
        return row

    def _item_in(self, c, image_id: int) -> Item:
        """One image with its caption, read inside the caller's transaction."""
        row = c.execute(_ITEM_SQL + " WHERE i.id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise ValueError(f"no image with id {image_id} in {self.root}")
        return self._item(row)

    def _check_approvable(self, c, ids: Iterable[int]) -> None:
        """A ValueError when one of the captions is empty or longer than `token_limit` T5 tokens."""
        for i in ids:
            text, tokens = c.execute("SELECT text, token_count FROM captions WHERE image_id = ?", (int(i),)).fetchone()
            if not text:
                raise ValueError(f"image {i} has no caption text; describe or write one before approving")
            if self.token_limit and (tokens or 0) > self.token_limit:
                raise ValueError(f"#{i}'s caption is {tokens:,} T5 tokens long and the base model reads "
                                 f"{self.token_limit}: shorten it before approving (the rest would be cut off)")

    def set_text(self, image_id: int, text: str, approve: bool = False, expected: float | None = None) -> Item:
        """A reviewer's edit: the text becomes `edited` (or `approved` with approve=True). With
        `expected` (the `updated_at` of the caption the editor loaded), an edit over a newer change
        raises EditConflict and writes nothing. Returns the caption as this transaction left it."""
        text = check_caption(text)
        with self.transaction() as c:
            item = self._item_in(c, image_id)
            if expected is not None and item.updated_at != expected:
                raise EditConflict(item)
            self._change(c, "approve" if approve else "edit",
                         [(int(image_id), text, "approved" if approve else "edited", None)])
            if approve:
                self._check_approvable(c, [image_id])
            return self._item_in(c, image_id)

    def set_caption(
        self, image_id: int, text: str, provenance: dict, status: str = "draft", only_if: Iterable[str] | None = None,
        change_id: int | None = None,
    ) -> bool:
        """A captioner's output with its provenance (status `draft` until someone reviews it).
        With `only_if`, nothing is written unless the caption's status is one of those at the
        moment of writing (so a batch job never overwrites a caption reviewed meanwhile).
        `change_id` (from `begin_change`) makes it part of a batch undone in one step.
        Returns whether the caption was written."""
        text = check_caption(text, "the new caption")
        with self.transaction() as c:
            _, current = self._current(c, image_id)
            if only_if is not None and current not in set(only_if):
                return False
            self._change(c, "describe", [(int(image_id), text, status, provenance)],
                         change_id=change_id)
        return True

    def set_status(self, ids: Iterable[int], status: str, action: str | None = None) -> int:
        """Move captions to `status` as one change; returns how many changed."""
        ids = [int(i) for i in ids]
        with self.transaction() as c:
            updates = []
            for i in ids:
                text, _ = self._current(c, i)
                updates.append((i, text, status, None))
            if status == "approved":
                self._check_approvable(c, ids)
            return self._change(c, action or status, updates)[1]

    def approve(self, ids: Iterable[int]) -> int:
        return self.set_status(ids, "approved", "approve")

    def reject(self, ids: Iterable[int]) -> int:
        return self.set_status(ids, "rejected", "reject")

    def undo(self, image_id: int | None = None) -> Undone | None:
        """Undo the workspace's last change (all the captions, labels and splits it changed),
        or with `image_id` the last change of that image's caption. Returns what was undone
        (None when there is nothing to undo)."""
        with self.transaction() as c:
            if image_id is None:
                change = c.execute(
                    "SELECT max(change_id) FROM (SELECT change_id FROM history WHERE undone = 0"
                    " UNION ALL SELECT change_id FROM image_history WHERE undone = 0)").fetchone()[0]
                if change is None:
                    return None
                rows = c.execute(
                    "SELECT id, image_id, old_text, old_status, old_provenance, old_token_count FROM history"
                    " WHERE change_id = ? AND undone = 0 ORDER BY id DESC", (change,)).fetchall()
                image_rows = c.execute(
                    "SELECT id, image_id, old_label, old_split, new_label, new_split FROM image_history"
                    " WHERE change_id = ? AND undone = 0"
                    " ORDER BY id DESC", (change,)).fetchall()
            else:
                rows = c.execute(
                    "SELECT id, image_id, old_text, old_status, old_provenance, old_token_count, change_id FROM history"
                    " WHERE image_id = ? AND undone = 0 ORDER BY id DESC LIMIT 1", (int(image_id),)).fetchall()
                if not rows:
                    return None
                change, rows, image_rows = rows[0][6], [rows[0][:6]], []
            action, detail, at = c.execute("SELECT action, detail, at FROM changes WHERE id = ?", (change,)).fetchone()
            now = time.time()
            before: dict = {}
            for hid, iid, text, status, prov, tokens in rows:
                c.execute(
                    "UPDATE captions SET text = ?, status = ?, provenance = ?, token_count = ?,"
                    " updated_at = max(?, updated_at + ?) WHERE image_id = ?",
                    (text, status, prov, tokens, now, STAMP_STEP, iid))
                c.execute("UPDATE history SET undone = 1 WHERE id = ?", (hid,))
                before.update(text=text, status=status)
            for hid, iid, label, split, new_label, new_split in image_rows:
                c.execute("UPDATE images SET label = ?, split = ? WHERE id = ?", (label, split, iid))
                c.execute("UPDATE image_history SET undone = 1 WHERE id = ?", (hid,))
                before.update({k: v for k, v, new in (("label", label, new_label), ("split", split, new_split))
                               if v != new})
        captions, images = [r[1] for r in rows], [r[1] for r in image_rows]
        single = len(set(captions) | set(images)) == 1
        return Undone(action, detail, at, captions, images, before if single else {})

    def _replacer(self, pattern: str, replacement: str, is_regex: bool, ignore_case: bool):
        if len(replacement) > MAX_CAPTION_CHARS:
            raise ValueError(f"the replacement is {len(replacement):,} characters long, over the limit of "
                             f"{MAX_CAPTION_CHARS:,}; shorten it (nothing was changed)")
        if is_regex:
            check_pattern(pattern)
        else:
            check_caption(pattern, "the text to find")
        try:
            rx = regex_engine.compile(pattern if is_regex else regex_engine.escape(pattern),
                                      regex_engine.IGNORECASE if ignore_case else 0)
        except regex_engine.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
        except (MemoryError, RecursionError, OverflowError):
            raise ValueError("the regular expression is too large to compile" + _PATTERN_ADVICE) from None
        if not is_regex:
            replacement = replacement.replace("\\", "\\\\")
        return rx, replacement

    def find_replace(
        self,
        pattern: str,
        replacement: str,
        flt: Filter | None = None,
        regex: bool = True,
        ignore_case: bool = False,
        apply: bool = False,
        samples: int = 8,
    ) -> ReplacePreview:
        """Preview (apply=False) or apply a find/replace over the filtered captions (all when no
        filter; pass Filter(ids=[...]) for a selection). Applied, it is one change: one undo. The
        first `samples` matches come with their context. The pattern runs for about REGEX_SECONDS
        at most over all the captions (a ValueError says so), outside the write lock; no caption
        may grow past MAX_CAPTION_CHARS."""
        if not pattern:
            raise ValueError("find/replace needs a non-empty pattern")
        rx, repl = self._replacer(pattern, replacement, regex, ignore_case)
        where, params = (flt or Filter()).sql()
        sql = ("SELECT i.id, c.text, c.status FROM images i JOIN captions c ON c.image_id = i.id" + where
               + " ORDER BY i.id")
        with self.read() as c:
            rows = c.execute(sql, params).fetchall()
        deadline = time.monotonic() + REGEX_SECONDS + len(rows) * REGEX_PER_CAPTION
        preview, updates = self._replacements(rows, rx, repl, deadline, samples, pattern, replacement)
        if apply and updates:
            with self.transaction() as c:
                now = c.execute(sql, params).fetchall()
                if now != rows:  # changed while the pattern ran: replace in what is there now
                    deadline = time.monotonic() + REGEX_SECONDS + len(now) * REGEX_PER_CAPTION
                    preview, updates = self._replacements(now, rx, repl, deadline, samples, pattern, replacement)
                preview.change_id, _ = self._change(c, "replace", updates, detail=f"{pattern!r} → {replacement!r}")
        return preview

    @staticmethod
    def _replacements(rows, rx, repl: str, deadline: float, samples: int, pattern: str, replacement: str
                      ) -> tuple[ReplacePreview, list]:
        """(the preview, the caption updates) of a find/replace over (id, text, status) rows."""
        updates, matches, shown = [], 0, []
        for iid, text, status in rows:
            try:
                new, n = _bounded_subn(rx, repl, text, _budget(deadline))
                if n and new != text and len(shown) < samples:
                    for m in rx.finditer(text, timeout=_budget(deadline), concurrent=True):
                        if len(shown) < samples:
                            shown.append(_in_context(iid, text, m, repl))
            except TimeoutError:
                raise ValueError(
                    f"the regular expression {pattern!r} took too long and was stopped; "
                    "nothing was changed. Simplify it (nested repeats such as (a|aa)+ can take forever) or untick "
                    "'Regular expression'") from None
            except (regex_engine.error, IndexError) as e:
                raise ValueError(f"invalid replacement {_short(replacement)!r}: {e}") from None
            except _TooLong:
                raise ValueError(f"#{iid}'s caption after the replacement would be over the limit of "
                                 f"{MAX_CAPTION_CHARS:,} characters; nothing was changed. Replace in fewer places "
                                 "or with shorter text") from None
            if n and new != text:
                matches += n
                new_status = "edited" if status == "draft" else status
                updates.append((iid, check_caption(new, f"#{iid}'s caption after the replacement"), new_status, None))
        return ReplacePreview(captions=len(updates), matches=matches, samples=shown), updates

    def recount_tokens(self, tokenizer=None) -> int:
        """Recount every caption's tokens (after switching base model); returns the count."""
        if tokenizer is not None:
            self.tokenizer = tokenizer
        with self.transaction() as c:
            rows = c.execute("SELECT image_id, text FROM captions").fetchall()
            c.executemany(
                "UPDATE captions SET token_count = ? WHERE image_id = ?", [(self.count_tokens(t), i) for i, t in rows]
            )
        return len(rows)

    # ---- templates and settings -----------------------------------------------------------
    def get_template(self, name: str) -> ModalityTemplate:
        """The workspace's copy of a template if edited or custom, else the built-in one."""
        with self._lock:
            row = self.conn.execute("SELECT data FROM templates WHERE name = ?", (name,)).fetchone()
        if row:
            return ModalityTemplate.from_dict(json.loads(row[0]))
        return get_builtin(name)

    def save_template(self, template: ModalityTemplate) -> None:
        template.validate()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO templates (name, data, updated_at) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET"
                " data = excluded.data, updated_at = excluded.updated_at",
                (template.name, json.dumps(template.to_dict()), time.time()),
            )

    def reset_template(self, name: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM templates WHERE name = ?", (name,))

    def list_templates(self) -> list[ModalityTemplate]:
        with self._lock:
            saved = {n: d for n, d in self.conn.execute("SELECT name, data FROM templates")}
        names = list(BUILTIN_TEMPLATES) + sorted(set(saved) - set(BUILTIN_TEMPLATES))
        return [self.get_template(n) for n in names]

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )


def open_workspace(root: str | Path | None = None, tokenizer=None, create: bool = True) -> Workspace:
    """The workspace at `root` (default: `MEDART_WORKSPACE` or ./workspace)."""
    return Workspace(root, tokenizer=tokenizer, create=create)
