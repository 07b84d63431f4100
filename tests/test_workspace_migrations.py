"""Workspaces made by earlier versions open, migrated in place, with nothing lost; newer ones
are refused. The earlier schemas are written out here as those versions created them (before
the database carried a version number, `PRAGMA user_version` 0), not taken from the code."""

import json
import sqlite3

import pytest

from helpers import planted_images
from medart.reader_study import ReaderStudies
from medart.reader_study import images as reader_images
from medart.workspace import Filter, Workspace
from medart.workspace.migrations import LATEST, MIGRATIONS

# The workspace tables of the version before numbered migrations (git 2cbd7bb, workspace.py SCHEMA).
PREVIOUS_WORKSPACE = """
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
);
"""

# Its reader-study tables (reader_study.py SCHEMA), created when a study was first made.
PREVIOUS_READER_STUDIES = """
CREATE TABLE IF NOT EXISTS reader_studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    run TEXT NOT NULL DEFAULT '',
    base_model TEXT NOT NULL DEFAULT '',
    split TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL,
    display_size INTEGER NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    owner_code_hash TEXT,
    owner_failures INTEGER NOT NULL DEFAULT 0,
    owner_locked_until REAL NOT NULL DEFAULT 0
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
);
"""

# The study table as versions before owner codes created it (the other reader tables were the same).
BEFORE_OWNER_CODES = """
CREATE TABLE reader_studies (
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
"""


def build(root, *scripts) -> None:
    """A workspace database written with these scripts only, as an earlier version left it."""
    root.mkdir(parents=True)
    with sqlite3.connect(root / "workspace.db") as c:
        for script in scripts:
            c.executescript(script)


def version(root) -> int:
    with sqlite3.connect(root / "workspace.db") as c:
        return c.execute("PRAGMA user_version").fetchone()[0]


def columns(root, table) -> set[str]:
    with sqlite3.connect(root / "workspace.db") as c:
        return {row[1] for row in c.execute(f"PRAGMA table_info({table})")}


def fill_previous(root) -> None:
    """What a person's work left in it: an image with an approved, once-edited caption, a saved
    template, a setting and a study with an owner code, a reader and an answer."""
    with sqlite3.connect(root / "workspace.db") as c:
        c.execute("INSERT INTO images (id, sha256, original_name, width, height, mode, bytes, source, label, split,"
                  " modality, added_at) VALUES (1, 'ab12', 'a.png', 32, 32, 'RGB', 100, 'test', 'polyps', 'test',"
                  " 'endoscopy', 1.0)")
        c.execute("INSERT INTO captions (image_id, text, status, provenance, token_count, updated_at)"
                  " VALUES (1, 'A pink polyp.', 'approved', '{}', 5, 2.0)")
        c.execute("INSERT INTO changes (id, action, detail, at) VALUES (1, 'edit', '', 2.0)")
        c.execute("INSERT INTO history (change_id, image_id, old_text, old_status, old_provenance, old_token_count,"
                  " new_text, new_status) VALUES (1, 1, 'A polyp.', 'draft', '{}', 3, 'A pink polyp.', 'approved')")
        c.execute("INSERT INTO templates (name, data, updated_at) VALUES ('mine', ?, 1.0)",
                  (json.dumps({"name": "mine", "image_phrase": "A colposcopic image", "features": ["colour"]}),))
        c.execute("INSERT INTO settings (key, value) VALUES ('modality', 'mine')")


def add_study_rows(root, with_code: bool) -> None:
    with sqlite3.connect(root / "workspace.db") as c:
        code = (", owner_code_hash", ", 'scrypt$16384$8$1$00$00'") if with_code else ("", "")
        sid = c.execute(f"INSERT INTO reader_studies (name, seed, display_size, created_at{code[0]})"
                        f" VALUES ('old', 0, 32, 1.0{code[1]})").lastrowid
        ids = [c.execute("INSERT INTO reader_study_items (study_id, token, truth, png) VALUES (?,?,?,?)",
                         (sid, reader_images.new_token(), im.truth, reader_images.encode(im.image, 32))).lastrowid
               for im in planted_images(1)]
        rid = c.execute("INSERT INTO reader_study_readers (study_id, name, order_seed, item_order, created_at)"
                        " VALUES (?, 'Ana', 1, ?, 1.0)", (sid, json.dumps(ids))).lastrowid
        c.execute("INSERT INTO reader_study_answers (reader_id, item_id, position, answer, answered_at)"
                  " VALUES (?, ?, 1, 'real', 1.0)", (rid, ids[0]))


def test_a_new_workspace_is_at_the_latest_version(tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        assert ws.count() == 0
    assert version(tmp_path / "ws") == LATEST == len(MIGRATIONS) == 6
    assert {"old_label", "old_split", "new_label", "new_split", "undone"} <= columns(tmp_path / "ws", "image_history")
    assert {"owner_code_hash", "owner_failures", "owner_locked_until"} <= columns(tmp_path / "ws", "reader_studies")


def test_a_workspace_of_the_previous_version_opens_with_everything_kept(tmp_path):
    root = tmp_path / "ws"
    build(root, PREVIOUS_WORKSPACE, PREVIOUS_READER_STUDIES)
    fill_previous(root)
    add_study_rows(root, with_code=True)
    assert version(root) == 0
    with Workspace(root) as ws:
        item = ws.get(1)
        assert (item.text, item.status, item.label, item.split, item.token_count) == (
            "A pink polyp.", "approved", "polyps", "test", 5)
        assert [h["old_text"] for h in ws.history(1)] == ["A polyp."]
        assert ws.get_template("mine").image_phrase == "A colposcopic image" and ws.get_setting("modality") == "mine"
        assert ws.split_counts() == [("polyps", "test", 1)]
        store = ReaderStudies(ws)
        study = store.study("old")
        assert study.has_owner_code and study.size == 2
        assert [(a.reader, a.answer) for a in store.answers(study)] == [("Ana", "real")]
        assert ws.undo().ids == [1] and ws.get(1).text == "A polyp."  # the old history still undoes
        ws.set_text(1, "A pink polyp, glossy.", approve=True)  # and new changes are written as before
    assert version(root) == LATEST
    with Workspace(root) as ws:  # opening again: nothing left to do, nothing changed
        assert ws.get(1).text == "A pink polyp, glossy." and ws.count(Filter(status="approved")) == 1
    assert version(root) == LATEST


def test_a_workspace_from_before_owner_codes_gains_the_columns(tmp_path):
    root = tmp_path / "ws"
    build(root, PREVIOUS_WORKSPACE, BEFORE_OWNER_CODES,
          PREVIOUS_READER_STUDIES)  # the other reader tables; IF NOT EXISTS leaves the old study table alone
    add_study_rows(root, with_code=False)
    assert "owner_code_hash" not in columns(root, "reader_studies")
    with Workspace(root) as ws:
        store = ReaderStudies(ws)
        assert {"owner_code_hash", "owner_failures", "owner_locked_until"} <= columns(root, "reader_studies")
        old = store.study("old")
        assert not old.has_owner_code and old.size == 2
        assert [(a.reader, a.answer) for a in store.answers(old)] == [("Ana", "real")]
        with pytest.raises(ValueError, match="has no owner code yet"):
            store.check_owner(old, "new-code")
        store.set_owner_code(old, "new-code")
        assert store.check_owner("old", "new-code").has_owner_code
        store.add_study("new", planted_images(1), display_size=32, owner_code="tulip-4711")
    with Workspace(root) as ws:
        store = ReaderStudies(ws)
        assert [s.has_owner_code for s in store.studies()] == [True, True]
        assert store.check_owner("new", "tulip-4711").name == "new"


def test_a_study_from_before_secrets_draws_one_and_its_reader_gets_a_link(tmp_path):
    """A study whose seed and reader orders were public: opening the workspace draws its secret;
    the reader known by name keeps their answer when invited, the rest of their order is drawn
    anew, and nothing opens with their name alone."""
    root = tmp_path / "ws"
    build(root, PREVIOUS_WORKSPACE, PREVIOUS_READER_STUDIES)
    add_study_rows(root, with_code=True)
    with sqlite3.connect(root / "workspace.db") as c:
        c.execute("PRAGMA user_version = 4")
    with Workspace(root) as ws:
        store = ReaderStudies(ws)
        with ws.read() as c:
            (secret,) = c.execute("SELECT secret FROM reader_studies WHERE name = 'old'").fetchone()
        assert len(bytes.fromhex(secret)) == 32
        (legacy,) = store.readers("old")
        assert legacy.invitation is None and legacy.answered == 1
        with pytest.raises(ValueError, match="not a valid invitation"):
            store.next_image("Ana", "old")
        ana = store.invite("old", "Ana")
        assert ana.id == legacy.id and ana.answered == 1 and ana.order[0] == legacy.order[0]
        assert sorted(ana.order) == sorted(legacy.order)
        shown = store.next_image(ana.invitation, "old")
        assert shown.position == 2 and store.answer(ana.invitation, shown.token, "generated") is True
        assert [(a.reader, a.position, a.answer) for a in store.answers("old")] == [
            ("Ana", 1, "real"), ("Ana", 2, "generated")]
        new = store.add_study("new", planted_images(1), display_size=32)
        with ws.read() as c:
            secrets = [s for (s,) in c.execute("SELECT secret FROM reader_studies ORDER BY id")]
        assert len(set(secrets)) == 2 and new.size == 2
    assert version(root) == LATEST


def test_a_workspace_of_a_newer_version_is_refused_untouched(tmp_path):
    root = tmp_path / "ws"
    build(root, PREVIOUS_WORKSPACE, f"PRAGMA user_version = {LATEST + 1};")
    fill_previous(root)
    with pytest.raises(ValueError, match="newer version of Med-Art Studio"):
        Workspace(root)
    assert version(root) == LATEST + 1 and "reader_studies" not in _tables(root)


def _tables(root) -> set[str]:
    with sqlite3.connect(root / "workspace.db") as c:
        return {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
