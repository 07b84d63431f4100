"""The owner code of a reader study: stored only as a salted hash, asked before the app shows
results or exports answers, settable once on a study that has none (workspaces made before
owner codes existed: test_workspace_migrations.py)."""

import argparse
import json
import tempfile

import pytest

from medart.cli import reader_study as cli_reader_study
from medart.reader_study import ReaderStudies, owner_code_matches
from medart.studio import Studio
from medart.ui import reader_page
from medart.ui import reader_study as tab
from helpers import owner_code_hash, planted_images

CODE = "tulip-4711"

@pytest.fixture
def studio(tmp_path, medart_cache):
    return Studio(home=tmp_path / "home", base_model="tiny")


def add(studio, name, code=None):
    ws = studio.workspace()
    try:
        return ReaderStudies(ws).add_study(name, planted_images(2), seed=1, display_size=32, owner_code=code)
    finally:
        ws.close()


def answer_all(studio, name, reader="Ana"):
    ws = studio.workspace()
    try:
        link = ReaderStudies(ws).invite(name, reader).invitation
    finally:
        ws.close()
    token = reader_page.open_page(studio, name, link)[0]
    while token:
        token = reader_page.answer_and_next(studio, name, link, token, "real", "3", "")[0]


def cli(argv):
    p = argparse.ArgumentParser()
    cli_reader_study.add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["reader-study", *argv])
    return args.func(args)


def test_only_a_salted_hash_of_the_code_is_stored(studio):
    study = add(studio, "pilot", CODE)
    twin = add(studio, "twin", CODE)
    assert study.has_owner_code and twin.has_owner_code
    first, second = owner_code_hash(studio.workspace_dir, "pilot"), owner_code_hash(studio.workspace_dir, "twin")
    kind, n, r, p, salt, digest = first.split("$")
    assert (kind, len(bytes.fromhex(salt)), len(bytes.fromhex(digest))) == ("scrypt", 16, 32)
    assert first != second and salt != second.split("$")[4]  # a random salt per study
    assert owner_code_matches(CODE, first) and owner_code_matches(f"  {CODE} ", first)
    assert not owner_code_matches(CODE.upper(), first)
    # the code itself is nowhere in the workspace's files (database, WAL), in any encoding
    for path in studio.workspace_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert CODE.encode() not in data and CODE.encode("utf-16-le") not in data, path
    with pytest.raises(ValueError, match="at least 4 characters"):
        add(studio, "short", "abc")
    assert tab.study_choices(studio) == ["twin", "pilot"]  # nothing of the failed one was stored


def test_results_and_export_need_the_right_code(studio, tmp_path, monkeypatch):
    add(studio, "pilot", CODE)
    answer_all(studio, "pilot")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "exports"))
    (tmp_path / "exports").mkdir()
    for typed, message in (("wrong-code", "wrong owner code for study 'pilot'; nothing is shown"),
                           ("", "type the owner code of study 'pilot'"), (None, "type the owner code")):
        with pytest.raises(ValueError, match=message):
            tab.results_view(studio, "pilot", typed)
        with pytest.raises(ValueError, match=message):
            tab.export_answers(studio, "pilot", typed)
    assert list((tmp_path / "exports").iterdir()) == []  # a refused export wrote no file
    md, plot = tab.results_view(studio, "pilot", CODE)
    assert "| Ana | 4 | 50.0 % |" in md and plot.format == "PNG"
    tab.close_study(studio, "pilot", CODE)
    path = tab.export_answers(studio, "pilot", f" {CODE}")
    assert path.startswith(str(tmp_path / "exports")) and len(open(path).read().splitlines()) == 5
    with pytest.raises(ValueError, match="has an owner code already"):
        tab.set_owner_code(studio, "pilot", "another-code")
    assert owner_code_matches(CODE, owner_code_hash(studio.workspace_dir, "pilot"))


def test_repeated_wrong_codes_lock_the_results_even_across_restarts(studio, monkeypatch):
    from medart.reader_study import store as reader_study

    monkeypatch.setattr(reader_study, "WRONG_CODE_DELAY_S", 0.0)
    add(studio, "pilot", CODE)
    for _ in range(reader_study.WRONG_CODES_BEFORE_LOCK - 1):
        with pytest.raises(ValueError, match="wrong owner code"):
            tab.results_view(studio, "pilot", "guess")
    tab.results_view(studio, "pilot", CODE)  # the right code resets the count
    for _ in range(reader_study.WRONG_CODES_BEFORE_LOCK):
        with pytest.raises(ValueError, match="wrong owner code"):
            tab.results_view(studio, "pilot", "guess")
    for typed in ("guess", CODE):  # locked: not even the right code opens it now
        with pytest.raises(ValueError, match=r"too many wrong owner codes for study 'pilot'; try again in 30\d s"):
            tab.results_view(studio, "pilot", typed)
    ws = studio.workspace()  # a new connection (as after a restart) sees the lock
    try:
        with pytest.raises(ValueError, match="too many wrong owner codes"):
            ReaderStudies(ws).check_owner("pilot", CODE)
        with ws.transaction() as c:  # five minutes later
            c.execute("UPDATE reader_studies SET owner_locked_until = owner_locked_until - ?", (reader_study.LOCK_S,))
        assert ReaderStudies(ws).check_owner("pilot", CODE).name == "pilot"
    finally:
        ws.close()


def test_a_study_without_a_code_shows_nothing_until_one_is_set_once(studio):
    add(studio, "legacy")
    answer_all(studio, "legacy")
    assert tab.needs_owner_code(studio, "legacy") and not tab.needs_owner_code(studio, "nope")
    for typed in ("", "any-code"):
        with pytest.raises(ValueError, match="has no owner code yet"):
            tab.results_view(studio, "legacy", typed)
        with pytest.raises(ValueError, match="has no owner code yet"):
            tab.export_answers(studio, "legacy", typed)
    with pytest.raises(ValueError, match="at least 4 characters"):
        tab.set_owner_code(studio, "legacy", " ab ")
    assert owner_code_hash(studio.workspace_dir, "legacy") is None
    assert "set" in tab.set_owner_code(studio, "legacy", "first-code")
    assert not tab.needs_owner_code(studio, "legacy")
    with pytest.raises(ValueError, match="has an owner code already"):
        tab.set_owner_code(studio, "legacy", "second-code")
    with pytest.raises(ValueError, match="wrong owner code"):
        tab.results_view(studio, "legacy", "second-code")
    assert "| Ana | 4 |" in tab.results_view(studio, "legacy", "first-code")[0]


def test_cli_sets_and_replaces_codes_and_keeps_results_open(studio, monkeypatch, capsys):
    add(studio, "legacy")
    root = str(studio.workspace_dir)
    monkeypatch.delenv(cli_reader_study.OWNER_CODE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(ValueError, match="MEDART_OWNER_CODE"):
        cli(["owner-code", "--workspace", root, "--name", "legacy"])
    monkeypatch.setenv(cli_reader_study.OWNER_CODE_ENV, "first-code")
    assert cli(["list", "--workspace", root]) == 0
    assert "no owner code" in capsys.readouterr().out
    assert cli(["owner-code", "--workspace", root, "--name", "legacy"]) == 0
    monkeypatch.setenv(cli_reader_study.OWNER_CODE_ENV, "forgot-it")
    with pytest.raises(ValueError, match="has an owner code already"):
        cli(["owner-code", "--workspace", root, "--name", "legacy"])
    assert owner_code_matches("first-code", owner_code_hash(studio.workspace_dir, "legacy"))
    assert cli(["owner-code", "--workspace", root, "--name", "legacy", "--replace"]) == 0
    assert owner_code_matches("forgot-it", owner_code_hash(studio.workspace_dir, "legacy"))
    capsys.readouterr()
    # results and export from the CLI need no code: it has the database anyway
    monkeypatch.delenv(cli_reader_study.OWNER_CODE_ENV)
    assert cli(["results", "--workspace", root, "--name", "legacy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["readers"] == []


def test_the_tab_asks_for_a_code_before_generating_anything(studio):
    for code in ("", None, "abc", "   x   "):
        with pytest.raises(ValueError, match="owner code needs at least 4 characters"):
            tab.create_from_run(studio, "no-such-run", "test", 2, 0, "pilot", code)
    assert tab.study_choices(studio) == []


def test_a_new_studys_k_fits_the_split(studio):
    """k starts at 10, or at the split's size when it holds fewer (rejected images do not count)."""
    from medart.assets import DEMO_DIR
    from medart.workspace.importers import import_paths

    assert tab.default_k(studio, "test") == tab.DEFAULT_K == 10  # an empty split: the form's usual k
    ws = studio.workspace()
    try:
        import_paths(ws, [DEMO_DIR], split="train")
        ids = [i.id for i in ws.query(limit=None)][:5]
        ws.set_split(ids, "test")
        ws.set_status(ids[:1], "rejected")
    finally:
        ws.close()
    assert (tab.default_k(studio, "test"), tab.default_k(studio, "train")) == (4, 10)
