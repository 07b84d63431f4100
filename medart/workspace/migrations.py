"""The workspace database's schema, as numbered migrations (SQLite's `PRAGMA user_version`).

Each migration takes the database from version N - 1 to N; opening a workspace applies the
ones it lacks in one transaction and records the version. Workspaces made before versions
were numbered say 0, whatever they hold, so every migration is written to apply to any
earlier state (tables `IF NOT EXISTS`, columns added only where missing). A database of a
newer version than this code knows is refused rather than misread. Add a change as a new
migration at the end; never edit one that has shipped.

    1  images, captions, their history, templates, settings
    2  reader studies: studies, their images, readers, answers
    3  reader-study owner codes: the code's hash, wrong codes in a row, the end of a lock
    4  label and split history: relabelling and moving images are changes that undo restores
    5  reader-study blinding: each study's server-side secret (drawn for older studies),
       readers' invitation tokens and revocation, the per-reader image tokens shown
    6  closing a reader study: when it was closed (no answers after; the truth exported after)
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Callable

IMAGES_AND_CAPTIONS = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    original_name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mode TEXT NOT NULL,            -- the mode of the file as imported (stored images are RGB)
    bytes INTEGER NOT NULL,        -- size of the stored PNG
    source TEXT NOT NULL DEFAULT '',
    label TEXT,
    split TEXT NOT NULL DEFAULT 'train',
    modality TEXT,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_label ON images(label);
CREATE TABLE IF NOT EXISTS captions (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    text TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'edited', 'approved', 'rejected')),
    provenance TEXT NOT NULL DEFAULT '{}',
    token_count INTEGER,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS captions_status ON captions(status);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    change_id INTEGER NOT NULL REFERENCES changes(id),
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    old_text TEXT NOT NULL,
    old_status TEXT NOT NULL,
    old_provenance TEXT NOT NULL,
    old_token_count INTEGER,
    new_text TEXT NOT NULL,
    new_status TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_image ON history(image_id, id);
CREATE INDEX IF NOT EXISTS history_change ON history(change_id);
CREATE TABLE IF NOT EXISTS templates (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);"""

READER_STUDIES = """
CREATE TABLE IF NOT EXISTS reader_studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    run TEXT NOT NULL DEFAULT '',
    base_model TEXT NOT NULL DEFAULT '',
    split TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL,
    display_size INTEGER NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reader_study_items (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES reader_studies(id) ON DELETE CASCADE,
    token TEXT NOT NULL UNIQUE,
    truth TEXT NOT NULL CHECK (truth IN ('real', 'generated')),
    label TEXT NOT NULL DEFAULT '',
    caption TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    png BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS reader_study_items_study ON reader_study_items(study_id);
CREATE TABLE IF NOT EXISTS reader_study_readers (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES reader_studies(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    order_seed INTEGER NOT NULL,
    item_order TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (study_id, name)
);
CREATE TABLE IF NOT EXISTS reader_study_answers (
    reader_id INTEGER NOT NULL REFERENCES reader_study_readers(id) ON DELETE CASCADE,
    item_id INTEGER NOT NULL REFERENCES reader_study_items(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('real', 'generated')),
    realism INTEGER CHECK (realism BETWEEN 1 AND 5),
    note TEXT NOT NULL DEFAULT '',
    answered_at REAL NOT NULL,
    PRIMARY KEY (reader_id, item_id)
);"""


LABEL_SPLIT_HISTORY = """
CREATE TABLE IF NOT EXISTS image_history (
    id INTEGER PRIMARY KEY,
    change_id INTEGER NOT NULL REFERENCES changes(id),
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    old_label TEXT,
    old_split TEXT NOT NULL,
    new_label TEXT,
    new_split TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS image_history_change ON image_history(change_id);
CREATE INDEX IF NOT EXISTS history_undone ON history(undone, change_id);"""


READER_INVITATIONS = """
CREATE UNIQUE INDEX IF NOT EXISTS reader_study_readers_invitation ON reader_study_readers(invitation);
CREATE TABLE IF NOT EXISTS reader_study_shown (
    token TEXT PRIMARY KEY,
    reader_id INTEGER NOT NULL REFERENCES reader_study_readers(id) ON DELETE CASCADE,
    item_id INTEGER NOT NULL REFERENCES reader_study_items(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    shown_at REAL NOT NULL,
    UNIQUE (reader_id, item_id)
);"""


def _statements(script: str) -> list[str]:
    """The statements of a script, one by one (executescript would commit the transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _script(script: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in _statements(script):
            conn.execute(statement)

    return apply


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _owner_codes(conn: sqlite3.Connection) -> None:
    have = _columns(conn, "reader_studies")
    for column, declaration in (("owner_code_hash", "TEXT"),
                                ("owner_failures", "INTEGER NOT NULL DEFAULT 0"),
                                ("owner_locked_until", "REAL NOT NULL DEFAULT 0")):
        if column not in have:
            conn.execute(f"ALTER TABLE reader_studies ADD COLUMN {column} {declaration}")


def _reader_invitations(conn: sqlite3.Connection) -> None:
    """A secret per study (older studies draw theirs now: their seeds were public), invitation
    columns for readers (readers from before keep their answers and get a link when invited)."""
    if "secret" not in _columns(conn, "reader_studies"):
        conn.execute("ALTER TABLE reader_studies ADD COLUMN secret TEXT")
    for (study_id,) in conn.execute("SELECT id FROM reader_studies WHERE secret IS NULL").fetchall():
        conn.execute("UPDATE reader_studies SET secret = ? WHERE id = ?", (secrets.token_hex(32), study_id))
    have = _columns(conn, "reader_study_readers")
    for column in ("invitation TEXT", "revoked_at REAL"):
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE reader_study_readers ADD COLUMN {column}")
    _script(READER_INVITATIONS)(conn)


def _reader_study_closing(conn: sqlite3.Connection) -> None:
    if "closed_at" not in _columns(conn, "reader_studies"):
        conn.execute("ALTER TABLE reader_studies ADD COLUMN closed_at REAL")


MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("images, captions, history, templates, settings", _script(IMAGES_AND_CAPTIONS)),
    ("reader studies", _script(READER_STUDIES)),
    ("reader-study owner codes", _owner_codes),
    ("label and split history", _script(LABEL_SPLIT_HISTORY)),
    ("reader-study secrets and invitations", _reader_invitations),
    ("closing reader studies", _reader_study_closing),
)
LATEST = len(MIGRATIONS)


class NewerWorkspace(ValueError):
    """The database was made by a newer version of Med-Art Studio."""


def migrate(conn: sqlite3.Connection, where: str = "") -> int:
    """Bring the database up to LATEST in one write transaction; returns the version it had."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > LATEST:
            raise NewerWorkspace(
                f"the workspace {where} was written by a newer version of Med-Art Studio (database version "
                f"{version}; this version knows {LATEST}); update Med-Art Studio to open it")
        for number, (_, apply) in enumerate(MIGRATIONS, start=1):
            if number > version:
                apply(conn)
        if version != LATEST:
            conn.execute(f"PRAGMA user_version = {LATEST}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version
