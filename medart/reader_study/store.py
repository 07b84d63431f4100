"""Blinded "real or generated?" reader studies, stored in the workspace database.

A study holds k held-out real images of a workspace split and k images generated from a run
with the same captions (hence classes), one per real image (chosen and made by
`medart.reader_study.sets`). Every image is encoded once by `medart.reader_study.images`
(identical resampling and encoding for both kinds; all grey when the real images are).

Blinding against a reader who has the source. At creation a study draws a secret with
`secrets` (`reader_studies.secret`, 256 bits); it never leaves this module (no dataclass,
message, page, log or export holds it). Every random choice a reader's view depends on comes
from it or from `secrets` directly: the order the items are stored in (so row ids do not follow
the truth), each reader's order (`order_seed`: HMAC of the secret and the reader's label), each
reader's invitation and the token of each image shown to them. Readers are created by the
owner (`invite`, under a label of the owner's choosing) and identified by their invitation
token alone, the token of their link; a revoked invitation opens nothing. An image is shown to
a reader under a token drawn for that reader (`reader_study_shown`), and a reader can answer
only tokens they were shown, each once (`answer` returns False for a repeat). All of a reader's
state is in the database, keyed by their invitation: a study interrupted at any point (a
killed server included) resumes at the reader's next unanswered image. Studies made before
secrets existed drew theirs when the workspace was migrated; their readers, known by name,
get a link when the owner invites that name, keeping their answers, and the images they have
not answered are put in an order drawn from the secret.

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
                           row and the end of a lock, the secret, when it was closed
    reader_study_items     token (the owner's), truth, class, caption, source, the encoded PNG
    reader_study_readers   label (`name`), order seed, the order (item ids) this reader sees,
                           invitation token, when it was revoked
    reader_study_shown     the token an image was shown to one reader under, its position
    reader_study_answers   one row per (reader, item): answer, realism, note, time

Closing. The owner closes a study when its readers are done (`close`): after that no reader
answers or sees an image of it, and only then do the answers leave with the truth of each image
and its source (a seed) in the CSV export (`export_csv` refuses an open study); results
(accuracy and the like) are the owner's at any time.

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
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from medart.reader_study import images as reader_images
from medart.fileio import atomic_write_text, spreadsheet_cell

TRUTHS = ("real", "generated")
MAX_NOTE = 2000
MAX_NAME = 80
OWNER_CODE_MIN = 4
OWNER_CODE_MAX = 200
WRONG_CODE_DELAY_S = 1.0  # each wrong guess costs a second: guessing through the app stays slow
WRONG_CODES_BEFORE_LOCK = 5  # then the study's results are locked for LOCK_S (in the database: restarts keep it)
LOCK_S = 300.0
INVITATION_BYTES = 24  # secrets.token_urlsafe: 32 characters, 192 random bits per reader's link
IMAGE_TOKEN_BYTES = 18  # 144 random bits per image a reader is shown
MAX_INVITATION = 200
READER_URL = "http://THIS-MACHINE:7861/"  # the reader server's default address in links (`--port 7861`)
CLOSED = "this study is closed: it takes no more answers. Thank you for reading!"
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
    closed_at: float | None = None  # when the owner closed it (None: readers still answer)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

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
    invitation: str | None = field(default=None, repr=False)  # their link's token (None: from before invitations)
    revoked: bool = False


@dataclass
class Shown:
    """What the reader's browser gets for the next image: only this reader's token and the bytes."""

    token: str  # drawn for this reader and image: another reader's token for it differs
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


def keyed_seed(secret: str, purpose: str) -> int:
    """A 63-bit seed for one random choice of a study, drawn from its secret (HMAC-SHA256): fixed
    for the record, unknowable without the secret, which never leaves the store."""
    digest = hmac.new(bytes.fromhex(secret), purpose.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # (fits SQLite's signed INTEGER)


def order_seed(secret: str, reader: str) -> int:
    """The recorded seed of a reader's order: the study's secret and the reader's label."""
    return keyed_seed(secret, f"order:{reader}")


def _realism(realism) -> int | None:
    if realism in ("", None):
        return None
    try:
        realism = int(realism)
    except (TypeError, ValueError):
        raise ValueError(f"realism must be a whole number from 1 to 5, not {realism!r}") from None
    if not 1 <= realism <= 5:
        raise ValueError(f"realism must be from 1 (clearly artificial) to 5 (fully realistic), not {realism}")
    return realism


def reader_link(base_url: str | None, invitation: str) -> str:
    """A reader's link: the reader server's address with their invitation token."""
    base = str(base_url or "").strip() or READER_URL
    return f"{base.rstrip('/')}/?invite={invitation}"


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
    def add_study(self, name: str, images: Sequence[StudyImage], seed: int | None = None, display_size: int | None = None,
                  run: str = "", base_model: str = "", split: str = "", settings: dict | None = None,
                  owner_code: str | None = None) -> Study:
        """Encode the images identically and store the study in one transaction (all or nothing),
        with a secret drawn now that every later random choice of the study comes from. `seed`:
        the one that chose and generated the images, for the record (None: drawn with `secrets`).
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
        grey = reader_images.grey_study(im.image for im in images if im.truth == "real")
        encoded = [(im, reader_images.encode(im.image, size, grey)) for im in images]
        secret = secrets.token_hex(32)
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        # Items are inserted in an order drawn from the secret so that not even row ids follow the truth.
        random.Random(keyed_seed(secret, "items")).shuffle(encoded)
        now = time.time()
        with self._tx() as c:
            study_id = c.execute(
                "INSERT INTO reader_studies (name, run, base_model, split, seed, display_size, settings, created_at,"
                " owner_code_hash, secret) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (name, str(run), base_model or "", split or "", int(seed), size, json.dumps(settings or {}), now,
                 code_hash, secret),
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
                     n_real=row[9] or 0, n_generated=row[10] or 0, has_owner_code=bool(row[11]),
                     closed_at=row[12])

    _STUDY_SQL = """SELECT s.id, s.name, s.run, s.base_model, s.split, s.seed, s.display_size, s.settings,
        s.created_at, (SELECT count(*) FROM reader_study_items i WHERE i.study_id = s.id AND i.truth = 'real'),
        (SELECT count(*) FROM reader_study_items i WHERE i.study_id = s.id AND i.truth = 'generated'),
        s.owner_code_hash IS NOT NULL, s.closed_at
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

    def close(self, name: str | Study) -> Study:
        """Close a study (one transaction): no reader answers after this, and its answers may be
        exported with the truth. Closing cannot be undone."""
        study = self.study(name)
        with self._tx() as c:
            if c.execute("UPDATE reader_studies SET closed_at = ? WHERE id = ? AND closed_at IS NULL",
                         (time.time(), study.id)).rowcount != 1:
                raise ValueError(f"study {study.name!r} is closed already; its answers can be exported")
        return self.study(study.name)

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

    # ---- readers: invitations ---------------------------------------------------------------
    def invite(self, study: str | Study, label: str) -> Reader:
        """A new reader of `study` under the owner's `label`, with an unguessable invitation (the
        token of their link) and their own order, drawn from the study's secret (one transaction).
        A reader of that label from before invitations keeps their answers; the images they have
        not answered yet are put in a new order drawn from the secret (the old one was public)."""
        study = self.study(getattr(study, "name", study))
        label = clean_name(label, "reader")
        if study.closed:
            raise ValueError(f"study {study.name!r} is closed: it takes no more readers")
        with self._tx() as c:
            (secret,) = c.execute("SELECT secret FROM reader_studies WHERE id = ?", (study.id,)).fetchone()
            seed = order_seed(secret, label)
            row = c.execute("SELECT id, invitation, item_order FROM reader_study_readers WHERE study_id = ? AND name = ?",
                            (study.id, label)).fetchone()
            invitation = secrets.token_urlsafe(INVITATION_BYTES)
            if row is None:
                ids = [r[0] for r in c.execute(
                    "SELECT id FROM reader_study_items WHERE study_id = ? ORDER BY id", (study.id,))]
                random.Random(seed).shuffle(ids)
                c.execute("INSERT INTO reader_study_readers (study_id, name, order_seed, item_order, created_at,"
                          " invitation) VALUES (?,?,?,?,?,?)",
                          (study.id, label, seed, json.dumps(ids), time.time(), invitation))
            elif row[1] is not None:
                raise ValueError(f"study {study.name!r} has a reader {label!r} already; choose another label")
            else:
                answered = [i for (i,) in c.execute(
                    "SELECT item_id FROM reader_study_answers WHERE reader_id = ? ORDER BY position", (row[0],))]
                rest = [i for i in json.loads(row[2]) if i not in set(answered)]
                random.Random(seed).shuffle(rest)
                c.execute("UPDATE reader_study_readers SET invitation = ?, order_seed = ?, item_order = ? WHERE id = ?",
                          (invitation, seed, json.dumps(answered + rest), row[0]))
        return next(r for r in self.readers(study) if r.name == label)

    def revoke(self, study: str | Study, label: str) -> Reader:
        """Revoke a reader's invitation: their link opens nothing any more; their answers stay."""
        study = self.study(study)
        label = clean_name(label, "reader")
        with self._tx() as c:
            done = c.execute("UPDATE reader_study_readers SET revoked_at = ? WHERE study_id = ? AND name = ?"
                             " AND invitation IS NOT NULL AND revoked_at IS NULL", (time.time(), study.id, label))
            if done.rowcount != 1:
                known = ", ".join(repr(r.name) for r in self.readers(study) if r.invitation and not r.revoked)
                raise ValueError(f"study {study.name!r} has no reader {label!r} with a valid invitation "
                                 f"(readers: {known or 'none'})")
        return next(r for r in self.readers(study) if r.name == label)

    _READER_SQL = ("SELECT r.id, r.study_id, r.name, r.order_seed, r.item_order,"
                   " (SELECT count(*) FROM reader_study_answers a WHERE a.reader_id = r.id), r.invitation,"
                   " r.revoked_at IS NOT NULL FROM reader_study_readers r")

    @staticmethod
    def _reader(r) -> Reader:
        return Reader(id=r[0], study_id=r[1], name=r[2], order_seed=r[3], order=json.loads(r[4]), answered=r[5],
                      invitation=r[6], revoked=bool(r[7]))

    def readers(self, study: str | Study) -> list[Reader]:
        study = self.study(study)
        with self._read() as c:
            rows = c.execute(self._READER_SQL + " WHERE r.study_id = ? ORDER BY r.id", (study.id,)).fetchall()
        return [self._reader(r) for r in rows]

    def _invited(self, c, invitation: str, study: Study | None) -> Reader:
        """The reader whose invitation this is (of `study`, when given); refused when there is none
        or it was revoked. The message is the same for every wrong token: it says nothing of others."""
        invitation = str(invitation or "").strip()
        if not invitation:
            raise ValueError("open this page with your invitation link (it ends in ?invite=...); "
                             "the study owner gives each reader their own")
        row = None
        if len(invitation) <= MAX_INVITATION:
            row = c.execute(self._READER_SQL + " WHERE r.invitation = ?", (invitation,)).fetchone()
        if row is None or (study is not None and row[1] != study.id):
            raise ValueError("this link is not a valid invitation to this study; ask the study owner for yours")
        reader = self._reader(row)
        if reader.revoked:
            raise ValueError("this invitation was revoked by the study owner; ask them for a new link")
        (closed,) = c.execute("SELECT closed_at IS NOT NULL FROM reader_studies WHERE id = ?",
                              (reader.study_id,)).fetchone()
        if closed:
            raise ValueError(CLOSED)
        return reader

    def invited(self, invitation: str, study: str | Study | None = None) -> Reader:
        """The reader of an invitation token (see `_invited`)."""
        study = None if study is None else self.study(study)
        with self._read() as c:
            return self._invited(c, invitation, study)

    # ---- reading --------------------------------------------------------------------------------
    def next_image(self, invitation: str, study: str | Study | None = None) -> Shown | None:
        """The invited reader's first unanswered image in their order, under a token drawn for this
        reader (the same one until it is answered), or None when they are done."""
        study = None if study is None else self.study(study)
        with self._read() as c:
            reader = self._invited(c, invitation, study)
            done = {r[0] for r in c.execute("SELECT item_id FROM reader_study_answers WHERE reader_id = ?",
                                            (reader.id,))}
            todo = [(p, i) for p, i in enumerate(reader.order, 1) if i not in done]
            if not todo:
                return None
            position, item_id = todo[0]
            row = c.execute("SELECT token FROM reader_study_shown WHERE reader_id = ? AND item_id = ?",
                            (reader.id, item_id)).fetchone()
        if row is None:
            with self._tx() as c:  # (another request of this reader may have drawn it meanwhile)
                c.execute("INSERT OR IGNORE INTO reader_study_shown (token, reader_id, item_id, position, shown_at)"
                          " VALUES (?,?,?,?,?)",
                          (secrets.token_urlsafe(IMAGE_TOKEN_BYTES), reader.id, item_id, position, time.time()))
                row = c.execute("SELECT token FROM reader_study_shown WHERE reader_id = ? AND item_id = ?",
                                (reader.id, item_id)).fetchone()
        with self._read() as c:
            (png,) = c.execute("SELECT png FROM reader_study_items WHERE id = ?", (item_id,)).fetchone()
        return Shown(token=row[0], position=position, total=len(reader.order), answered=len(done), png=bytes(png))

    def answer(self, invitation: str, token: str, answer: str, realism: int | str | None = None, note: str = "",
               study: str | Study | None = None) -> bool:
        """Record the invited reader's answer to an image they were shown (one transaction).
        Returns False, changing nothing, when they have answered it already (a repeated key press
        must not skip one). A token that was not shown to this reader is refused."""
        study = None if study is None else self.study(study)
        answer = str(answer or "").strip().lower()
        answer = {"r": "real", "g": "generated", "fake": "generated", "synthetic": "generated"}.get(answer, answer)
        if answer not in TRUTHS:
            raise ValueError("answer 'real' (key R) or 'generated' (key G)")
        realism = _realism(realism)
        note = str(note or "").strip()
        if len(note) > MAX_NOTE:
            raise ValueError(f"the note is longer than {MAX_NOTE} characters; shorten it")
        token = str(token or "").strip()
        with self._tx() as c:
            reader = self._invited(c, invitation, study)
            row = c.execute("SELECT item_id, position FROM reader_study_shown WHERE token = ? AND reader_id = ?",
                            (token[:MAX_INVITATION], reader.id)).fetchone()
            if row is None:
                raise ValueError("this image was not shown to you (or the page is out of date); reload the page")
            cur = c.execute(
                "INSERT OR IGNORE INTO reader_study_answers (reader_id, item_id, position, answer, realism, note,"
                " answered_at) VALUES (?,?,?,?,?,?,?)", (reader.id, row[0], row[1], answer, realism, note, time.time()))
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
        """Every answer as CSV (one row per reader and image, with the truth), written atomically;
        text that a spreadsheet would take for a formula (a reader's note `=HYPERLINK(...)`) is
        written as text (`medart.fileio.spreadsheet_cell`). Refused while the study is open: the
        truth of each image and its source leave only after `close`."""
        study = self.study(getattr(study, "name", study))  # as stored now: it may have been closed since
        if not study.closed:
            raise ValueError(
                f"study {study.name!r} is still open: its answers are exported with the truth of each image only "
                f"after it is closed (so no reader can learn it mid-study). Close it when its readers are done: "
                f"`python -m medart reader-study close --name {study.name!r}` or Close study in the Reader study tab")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for a in self.answers(study):
            writer.writerow([spreadsheet_cell(cell) for cell in (
                a.study, a.reader, a.position, a.token, a.truth, a.label, a.caption, a.answer, int(a.correct),
                "" if a.realism is None else a.realism, a.note,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.answered_at)), a.source)])
        path = Path(path)
        atomic_write_text(path, buf.getvalue())
        return path

