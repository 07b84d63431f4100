"""Blinded "real or generated?" reader studies, stored in the workspace database.

A study holds k held-out real images of a workspace split and k images generated from a run
with the same captions (hence classes), one per real image, with fixed seeds (chosen and made
by `medart.reader_study.sets`). Every image is encoded once by `medart.reader_study.images` (identical resizing and encoding for both kinds) and
kept in the database under a random token. Each reader, by name, gets their own order of the
study's images, shuffled with a recorded seed; each answer (real / generated, an optional
realism score 1-5 and a note) is one transaction, so a study interrupted at any point resumes
at the reader's next unanswered image.

Owner code. The answers with the truth (results, CSV) are for the study owner: a reader who saw
them mid-study would learn from them. Readers answer on a reader server that has no results at
all (`python app.py --reader-study NAME`); in the owner's app a study has an owner code, of
which only a salted scrypt hash is stored (`owner_code_hash`, "scrypt$n$r$p$salt$hash"); the
app shows results and exports answers only to someone who types it (`check_owner`,
constant-time compare). Each wrong code costs a second, and five in a row lock the study's
results for five minutes (kept in the database, so a restart does not lift it). A study made
without one (`reader-study create` without `--owner-code`, or any study of a workspace from
before owner codes) shows nothing in the app until a code is set, which the app allows once,
only while the study has none (`set_owner_code`). Until then the owner reads results with
`python -m medart reader-study results`. The code guards the owner's app against anyone else
who uses it; it is no protection against anyone who has the workspace files: the CLI reads
results and exports answers without it, and can replace a code that was forgotten (or set by someone else first).

Tables (in the workspace's `workspace.db`; created by `medart.workspace.migrations`):

    reader_studies         name, run, base model, split, seed, display size, settings,
                           the owner code's hash (NULL: none set yet), wrong codes in a
                           row and the end of a lock
    reader_study_items     token, truth, class, caption, source, the encoded PNG
    reader_study_readers   name, order seed, the order (item ids) this reader sees
    reader_study_answers   one row per (reader, item): answer, realism, note, time

No gradio here: the Reader study tab and `python -m medart reader-study` both use it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from medart.reader_study import images as reader_images
from medart.fileio import atomic_write_text

TRUTHS = ("real", "generated")
MAX_NOTE = 2000
MAX_NAME = 80
OWNER_CODE_MIN = 4
OWNER_CODE_MAX = 200
WRONG_CODE_DELAY_S = 1.0  # each wrong guess costs a second: guessing through the app stays slow
WRONG_CODES_BEFORE_LOCK = 5  # then the study's results are locked for LOCK_S (in the database: restarts keep it)
LOCK_S = 300.0
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MB and a few tens of ms per hash

CSV_COLUMNS = ("study", "reader", "position", "image", "truth", "class", "caption", "answer", "correct",
               "realism", "note", "answered_at", "source")


@dataclass
class StudyImage:
    """An image to put into a new study, with what it is (never shown to the reader)."""

    image: Image.Image
    truth: str  # "real" or "generated"
    label: str = ""
    caption: str = ""
    source: str = ""  # real: "workspace image 12 (<sha256>)"; generated: "seed 7"


@dataclass
class Study:
    id: int
    name: str
    run: str
    base_model: str
    split: str
    seed: int
    display_size: int
    settings: dict
    created_at: float
    n_real: int = 0
    n_generated: int = 0
    has_owner_code: bool = False  # the hash itself never leaves this module

    @property
    def size(self) -> int:
        return self.n_real + self.n_generated


@dataclass
class Reader:
    id: int
    study_id: int
    name: str
    order_seed: int
    order: list[int] = field(repr=False)  # item ids in the order this reader sees them
    answered: int = 0


@dataclass
class Shown:
    """What the reader's browser gets for the next image: only the token and the bytes."""

    token: str
    position: int  # 1-based place in this reader's order
    total: int
    answered: int
    png: bytes = field(repr=False)


@dataclass
class AnswerRow:
    """One answer with the truth, for results and the CSV export."""

    study: str
    reader: str
    position: int
    token: str
    truth: str
    label: str
    caption: str
    answer: str
    realism: int | None
    note: str
    answered_at: float
    source: str
    item_id: int

    @property
    def correct(self) -> bool:
        return self.answer == self.truth


def order_seed(study_seed: int, reader: str) -> int:
    """The recorded seed of a reader's order: fixed by the study's seed and the reader's name."""
    digest = hashlib.sha256(f"{int(study_seed)}:{reader}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def check_owner_code(code: str | None) -> str:
    """The owner code as it is hashed (outer spaces removed), or a ValueError saying what is wrong."""
    code = str(code or "").strip()
    if len(code) < OWNER_CODE_MIN:
        raise ValueError(f"the owner code needs at least {OWNER_CODE_MIN} characters (it keeps the results "
                         "from the readers); choose a longer one")
    if len(code) > OWNER_CODE_MAX:
        raise ValueError(f"the owner code is longer than {OWNER_CODE_MAX} characters; shorten it")
    return code


def hash_owner_code(code: str) -> str:
    """A salted scrypt hash of the owner code, as stored: "scrypt$n$r$p$salt$hash" (hex)."""
    code = check_owner_code(code)
    salt = os.urandom(16)
    digest = hashlib.scrypt(code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def owner_code_matches(code: str | None, stored: str) -> bool:
    """Whether `code` is the one `stored` was made from (compared in constant time)."""
    kind, n, r, p, salt, digest = stored.split("$")
    if kind != "scrypt":
        raise ValueError(f"unknown owner code hash {kind!r}")
    expected = bytes.fromhex(digest)
    given = hashlib.scrypt(str(code or "").strip().encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                           p=int(p), dklen=len(expected))
    return hmac.compare_digest(given, expected)


def clean_name(name: str, what: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ValueError(f"give the {what} a name")
    if len(name) > MAX_NAME:
        raise ValueError(f"the {what} name is longer than {MAX_NAME} characters; shorten it")
    return name


class ReaderStudies:
    """The reader studies of one open `medart.workspace.Workspace` (its connection and lock)."""

    def __init__(self, ws):
        self.ws = ws

    def _tx(self):
        return self.ws.transaction()

    def _read(self):
        return self.ws.read()

    # ---- studies ------------------------------------------------------------------------------
    def add_study(self, name: str, images: Sequence[StudyImage], seed: int = 0, display_size: int | None = None,
                  run: str = "", base_model: str = "", split: str = "", settings: dict | None = None,
                  owner_code: str | None = None) -> Study:
        """Encode the images identically and store the study in one transaction (all or nothing).
        `owner_code`: kept as a salted hash; without one the app shows no results until one is set."""
        name = clean_name(name, "study")
        code_hash = None if owner_code is None else hash_owner_code(owner_code)
        if self.find(name) is not None:
            raise ValueError(f"a study named {name!r} exists already; choose another name")
        truths = [im.truth for im in images]
        bad = [t for t in truths if t not in TRUTHS]
        if bad:
            raise ValueError(f"unknown truth {bad[0]!r}; use 'real' or 'generated'")
        if not truths.count("real") or not truths.count("generated"):
            raise ValueError("a study needs both real and generated images")
        size = int(display_size or max(im.image.width for im in images if im.truth == "generated"))
        encoded = [(im, reader_images.encode(im.image, size)) for im in images]
        # Items are inserted in a shuffled order so that not even row ids follow the truth.
        random.Random(int(seed)).shuffle(encoded)
        now = time.time()
        with self._tx() as c:
            study_id = c.execute(
                "INSERT INTO reader_studies (name, run, base_model, split, seed, display_size, settings, created_at,"
                " owner_code_hash) VALUES (?,?,?,?,?,?,?,?,?)",
                (name, str(run), base_model or "", split or "", int(seed), size, json.dumps(settings or {}), now,
                 code_hash),
            ).lastrowid
            for im, png in encoded:
                c.execute(
                    "INSERT INTO reader_study_items (study_id, token, truth, label, caption, source, png)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (study_id, reader_images.new_token(), im.truth, im.label or "", im.caption or "", im.source, png),
                )
        return self.study(name)

    def _study(self, row) -> Study:
        return Study(id=row[0], name=row[1], run=row[2], base_model=row[3], split=row[4], seed=row[5],
                     display_size=row[6], settings=json.loads(row[7] or "{}"), created_at=row[8],
                     n_real=row[9] or 0, n_generated=row[10] or 0, has_owner_code=bool(row[11]))

    _STUDY_SQL = """SELECT s.id, s.name, s.run, s.base_model, s.split, s.seed, s.display_size, s.settings,
        s.created_at, (SELECT count(*) FROM reader_study_items i WHERE i.study_id = s.id AND i.truth = 'real'),
        (SELECT count(*) FROM reader_study_items i WHERE i.study_id = s.id AND i.truth = 'generated'),
        s.owner_code_hash IS NOT NULL
        FROM reader_studies s"""

    def find(self, name: str) -> Study | None:
        with self._read() as c:
            row = c.execute(self._STUDY_SQL + " WHERE s.name = ?", (str(name).strip(),)).fetchone()
        return self._study(row) if row else None

    def study(self, name: str | Study) -> Study:
        if isinstance(name, Study):
            return name
        found = self.find(name)
        if found is None:
            known = ", ".join(s.name for s in self.studies()) or "none yet"
            raise ValueError(f"no reader study named {name!r} (studies: {known}); create one first")
        return found

    def studies(self) -> list[Study]:
        with self._read() as c:
            rows = c.execute(self._STUDY_SQL + " ORDER BY s.created_at DESC, s.id DESC").fetchall()
        return [self._study(r) for r in rows]

    def delete(self, name: str) -> None:
        """Remove a study with its images, readers and answers (one transaction)."""
        study = self.study(name)
        with self._tx() as c:
            c.execute("DELETE FROM reader_studies WHERE id = ?", (study.id,))

    # ---- owner code ----------------------------------------------------------------------------
    def set_owner_code(self, study: str | Study, code: str, replace: bool = False) -> Study:
        """Give a study its owner code (one transaction). Refused when it has one already, unless
        `replace` (for the CLI, which has the workspace files anyway)."""
        study = self.study(study)
        code_hash = hash_owner_code(code)
        with self._tx() as c:
            sql = "UPDATE reader_studies SET owner_code_hash = ? WHERE id = ?"
            if not replace:
                sql += " AND owner_code_hash IS NULL"
            if c.execute(sql, (code_hash, study.id)).rowcount != 1:
                raise ValueError(
                    f"study {study.name!r} has an owner code already; results need that code. Forgotten it? "
                    f"Replace it where the workspace is: `python -m medart reader-study owner-code "
                    f"--name {study.name!r} --replace`")
        return self.study(study.name)

    def check_owner(self, study: str | Study, code: str | None) -> Study:
        """The study when `code` is its owner code; else a ValueError (no code set, none typed, wrong)."""
        study = self.study(study)
        with self._read() as c:
            stored, locked_until = c.execute(
                "SELECT owner_code_hash, owner_locked_until FROM reader_studies WHERE id = ?", (study.id,)).fetchone()
        if locked_until > time.time():
            raise ValueError(f"too many wrong owner codes for study {study.name!r}; try again in "
                             f"{math.ceil(locked_until - time.time())} s")
        if stored is None:
            raise ValueError(
                f"study {study.name!r} has no owner code yet, so the app shows none of its answers. Its owner "
                "sets one (Set owner code, allowed once) or reads the results with "
                "`python -m medart reader-study results`")
        if not str(code or "").strip():
            raise ValueError(f"type the owner code of study {study.name!r}: results are for the study owner")
        if not owner_code_matches(code, stored):
            self._owner_failed(study)
            time.sleep(WRONG_CODE_DELAY_S)
            raise ValueError(f"wrong owner code for study {study.name!r}; nothing is shown")
        with self._tx() as c:
            c.execute("UPDATE reader_studies SET owner_failures = 0 WHERE id = ?", (study.id,))
        return study

    def _owner_failed(self, study: Study) -> None:
        """Count a wrong code; the WRONG_CODES_BEFORE_LOCK-th in a row locks the results for LOCK_S."""
        with self._tx() as c:
            (failures,) = c.execute("SELECT owner_failures + 1 FROM reader_studies WHERE id = ?",
                                    (study.id,)).fetchone()
            lock = failures >= WRONG_CODES_BEFORE_LOCK
            c.execute("UPDATE reader_studies SET owner_failures = ?, owner_locked_until = ? WHERE id = ?",
                      (0 if lock else failures, time.time() + LOCK_S if lock else 0, study.id))

    # ---- readers ------------------------------------------------------------------------------
    def reader(self, study: str | Study, name: str, create: bool = True) -> Reader:
        """The reader `name` of a study; a new reader gets their own order (seed recorded)."""
        study = self.study(study)
        name = clean_name(name, "reader")
        for reader in self.readers(study):
            if reader.name == name:
                return reader
        if not create:
            raise ValueError(f"no reader {name!r} in study {study.name!r}")
        with self._tx() as c:
            row = c.execute("SELECT id FROM reader_study_readers WHERE study_id = ? AND name = ?",
                            (study.id, name)).fetchone()
            if row is None:  # (another process may have added this reader meanwhile)
                ids = [r[0] for r in c.execute(
                    "SELECT id FROM reader_study_items WHERE study_id = ? ORDER BY id", (study.id,))]
                seed = order_seed(study.seed, name)
                random.Random(seed).shuffle(ids)
                c.execute(
                    "INSERT INTO reader_study_readers (study_id, name, order_seed, item_order, created_at)"
                    " VALUES (?,?,?,?,?)", (study.id, name, seed, json.dumps(ids), time.time()))
        return next(r for r in self.readers(study) if r.name == name)

    def readers(self, study: str | Study) -> list[Reader]:
        study = self.study(study)
        with self._read() as c:
            rows = c.execute(
                "SELECT r.id, r.study_id, r.name, r.order_seed, r.item_order,"
                " (SELECT count(*) FROM reader_study_answers a WHERE a.reader_id = r.id)"
                " FROM reader_study_readers r WHERE r.study_id = ? ORDER BY r.id", (study.id,)).fetchall()
        return [Reader(id=r[0], study_id=r[1], name=r[2], order_seed=r[3], order=json.loads(r[4]), answered=r[5])
                for r in rows]

    # ---- reading --------------------------------------------------------------------------------
    def next_image(self, study: str | Study, reader: str | Reader) -> Shown | None:
        """The reader's first unanswered image in their order, or None when they are done."""
        study = self.study(study)
        reader = reader if isinstance(reader, Reader) else self.reader(study, reader)
        with self._read() as c:
            done = {r[0] for r in c.execute("SELECT item_id FROM reader_study_answers WHERE reader_id = ?",
                                            (reader.id,))}
            for position, item_id in enumerate(reader.order, 1):
                if item_id in done:
                    continue
                token, png = c.execute("SELECT token, png FROM reader_study_items WHERE id = ?",
                                       (item_id,)).fetchone()
                return Shown(token=token, position=position, total=len(reader.order), answered=len(done),
                             png=bytes(png))
        return None

    def image(self, token: str) -> bytes:
        """The encoded bytes of one study image, by its token."""
        with self._read() as c:
            row = c.execute("SELECT png FROM reader_study_items WHERE token = ?", (str(token),)).fetchone()
        if row is None:
            raise ValueError(f"no study image {token!r}")
        return bytes(row[0])

    def answer(self, study: str | Study, reader: str | Reader, token: str, answer: str,
               realism: int | str | None = None, note: str = "") -> bool:
        """Record one answer (one transaction). Returns False, changing nothing, when this
        reader has already answered that image (a repeated key press must not skip one)."""
        study = self.study(study)
        reader = reader if isinstance(reader, Reader) else self.reader(study, reader, create=False)
        answer = str(answer or "").strip().lower()
        answer = {"r": "real", "g": "generated", "fake": "generated", "synthetic": "generated"}.get(answer, answer)
        if answer not in TRUTHS:
            raise ValueError("answer 'real' (key R) or 'generated' (key G)")
        if realism in ("", None):
            realism = None
        else:
            try:
                realism = int(realism)
            except (TypeError, ValueError):
                raise ValueError(f"realism must be a whole number from 1 to 5, not {realism!r}") from None
            if not 1 <= realism <= 5:
                raise ValueError(f"realism must be from 1 (clearly artificial) to 5 (fully realistic), not {realism}")
        note = str(note or "").strip()
        if len(note) > MAX_NOTE:
            raise ValueError(f"the note is longer than {MAX_NOTE} characters; shorten it")
        with self._tx() as c:
            row = c.execute("SELECT id FROM reader_study_items WHERE token = ? AND study_id = ?",
                            (str(token), study.id)).fetchone()
            if row is None:
                raise ValueError(f"image {token!r} is not part of study {study.name!r}; reload the study")
            item_id = row[0]
            if item_id not in reader.order:
                raise ValueError(f"image {token!r} is not in {reader.name}'s order")
            cur = c.execute(
                "INSERT OR IGNORE INTO reader_study_answers (reader_id, item_id, position, answer, realism, note,"
                " answered_at) VALUES (?,?,?,?,?,?,?)",
                (reader.id, item_id, reader.order.index(item_id) + 1, answer, realism, note, time.time()))
            return cur.rowcount == 1

    def answers(self, study: str | Study) -> list[AnswerRow]:
        """Every answer of a study with the truth, by reader then position."""
        study = self.study(study)
        with self._read() as c:
            rows = c.execute(
                "SELECT r.name, a.position, i.token, i.truth, i.label, i.caption, a.answer, a.realism, a.note,"
                " a.answered_at, i.source, i.id FROM reader_study_answers a"
                " JOIN reader_study_readers r ON r.id = a.reader_id JOIN reader_study_items i ON i.id = a.item_id"
                " WHERE r.study_id = ? ORDER BY r.id, a.position", (study.id,)).fetchall()
        return [AnswerRow(study.name, *row) for row in rows]

    def export_csv(self, study: str | Study, path: str | Path) -> Path:
        """Every answer as CSV (one row per reader and image, with the truth), written atomically."""
        study = self.study(study)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for a in self.answers(study):
            writer.writerow([a.study, a.reader, a.position, a.token, a.truth, a.label, a.caption, a.answer,
                             int(a.correct), "" if a.realism is None else a.realism, a.note,
                             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.answered_at)), a.source])
        path = Path(path)
        atomic_write_text(path, buf.getvalue())
        return path

