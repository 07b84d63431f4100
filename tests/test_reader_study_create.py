"""A study built end to end on the tiny base: held-out workspace images, a tiny run's adapter,
generation through the one sampler with fixed seeds (cached), identical encoding of both kinds."""

import pytest
import torch

from helpers import make_tuned_run
from medart.reader_study.sets import create_study, select_real
from medart.reader_study import ReaderStudies
from medart.assets import DEMO_DIR
from medart.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, medart_cache):
    run = tmp_path_factory.mktemp("rsrun") / "runs" / "tiny-run"
    return make_tuned_run(run)


@pytest.fixture
def ws(tmp_path):
    from medart.workspace.importers import import_paths

    w = Workspace(tmp_path / "ws")
    import_paths(w, [DEMO_DIR], split="test")  # 16 demo images with captions and classes
    yield w
    w.close()


def test_select_real_is_balanced_and_seeded(ws):
    chosen = select_real(ws, "test", k=4, seed=2)
    assert sorted(i.label for i in chosen) == ["fundus", "fundus", "histology", "histology"]
    assert [i.id for i in chosen] == [i.id for i in select_real(ws, "test", k=4, seed=2)]
    with pytest.raises(ValueError, match="has 16 image.*lower k to 16 at most"):  # the largest k it allows
        select_real(ws, "test", k=99)
    with pytest.raises(ValueError, match="no images in split 'validation'"):
        select_real(ws, "validation", k=2)


def test_create_study_generates_matching_images_with_fixed_seeds(ws, tiny_run):
    stages = []
    study = create_study(ws, "tiny study", tiny_run, k=4, seed=5, steps=4,
                         progress=lambda s, d, t: stages.append((s, d, t)))
    assert (study.n_real, study.n_generated, study.display_size) == (4, 4, 64)
    assert study.settings["seeds"] == [5, 6, 7, 8] and study.base_model == "tiny"
    assert stages[0] == ("generate", 0, 4) and stages[-1] == ("generate", 4, 4)
    assert len(list((tiny_run / "eval" / "cache").glob("*.png"))) == 4

    store = ReaderStudies(ws)
    with store._read() as c:
        rows = c.execute("SELECT truth, label, caption, length(png), source FROM reader_study_items"
                         " WHERE study_id = ?", (study.id,)).fetchall()
    real = sorted((lbl, cap) for t, lbl, cap, _, _ in rows if t == "real")
    gen = sorted((lbl, cap) for t, lbl, cap, _, _ in rows if t == "generated")
    assert real == gen and len(real) == 4  # the same captions and classes on both sides
    assert len({n for _, _, _, n, _ in rows}) == 1  # every served file has the same length
    assert sorted(s for t, *_, s in rows if t == "generated") == ["seed 5", "seed 6", "seed 7", "seed 8"]

    # a second study with the same seeds reuses the cached images: nothing generated again
    stages.clear()
    again = create_study(ws, "tiny study 2", tiny_run, k=4, seed=5, steps=4,
                         progress=lambda s, d, t: stages.append((s, d, t)))
    assert stages == [("generate", 4, 4)]
    with store._read() as c:
        pngs = [sorted(bytes(p) for (p,) in c.execute(
            "SELECT png FROM reader_study_items WHERE study_id = ? AND truth = 'generated'", (s.id,)))
            for s in (study, again)]
    assert pngs[0] == pngs[1]


def test_create_study_errors_say_what_to_do(ws, tiny_run, tmp_path):
    empty_run = tmp_path / "runs" / "empty"
    empty_run.mkdir(parents=True)
    with pytest.raises(ValueError, match="no adapter or checkpoint"):
        create_study(ws, "x", empty_run, k=2)
    with pytest.raises(ValueError, match="no run folder"):
        create_study(ws, "x", tmp_path / "nowhere", k=2)
    with pytest.raises(ValueError, match="give the study a name"):
        create_study(ws, " ", tiny_run, k=2)


def test_cli_create(ws, tiny_run, capsys, monkeypatch):
    import argparse

    from medart.cli import reader_study as cli_reader_study

    p = argparse.ArgumentParser()
    cli_reader_study.add_parsers(p.add_subparsers(dest="command", required=True))
    root = str(ws.root)
    monkeypatch.setenv(cli_reader_study.OWNER_CODE_ENV, "cli-owner")
    args = p.parse_args(["reader-study", "create", "--workspace", root, "--run", str(tiny_run), "--name", "cli",
                         "--k", "2", "--seed", "5", "--steps", "4", "--display-size", "48", "--owner-code"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 real + 2 generated images, 48 px;" in out and "seed" not in out  # readers must not learn it
    store = ReaderStudies(ws)
    study = store.study("cli")
    assert study.settings["steps"] == 4 and study.display_size == 48
    assert store.check_owner(study, "cli-owner") == study
    # without the flag: no code, and the command says how the app will treat the study
    # without a seed either: one is drawn and kept in the study (the default 0 was public)
    args = p.parse_args(["reader-study", "create", "--workspace", root, "--run", str(tiny_run), "--name", "no code",
                         "--k", "2", "--steps", "4"])
    assert args.func(args) == 0
    assert "no owner code: the app shows no results" in capsys.readouterr().out
    drawn = store.study("no code")
    assert not drawn.has_owner_code and drawn.settings["seeds"] == [drawn.seed, drawn.seed + 1] != [0, 1]

    # readers: invited by a label, listed with their links, revoked
    def run(*argv):
        args = p.parse_args(["reader-study", *argv, "--workspace", root, "--name", "cli"])
        assert args.func(args) == 0
        return capsys.readouterr().out

    out = run("invite", "--label", "Dr A", "--url", "http://study.example:7861")
    link = out.split()[2]
    assert out.startswith("Dr A: http://study.example:7861/?invite=") and len(link.split("=")[1]) == 32
    assert store.invited(link.split("=")[1], "cli").name == "Dr A"
    assert link in run("readers", "--url", "http://study.example:7861/")
    assert "revoked the link of 'Dr A'" in run("revoke", "--label", "Dr A")
    assert run("readers").split() == ["Dr", "A", "0/4", "revoked"]


def test_tab_actions_without_a_browser(tmp_path, tiny_run):
    import shutil

    from medart.workspace.importers import import_paths
    from medart.studio import Studio
    from medart.ui import reader_page
    from medart.ui import reader_study as tab

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    shutil.copytree(tiny_run, studio.runs_dir / "tiny-run", ignore=shutil.ignore_patterns("eval"))
    ws = studio.workspace()
    import_paths(ws, [DEMO_DIR], split="test")
    ws.close()

    text, name = tab.create_from_run(studio, "tiny-run", "test", 2, 1, "ui study", "owner-1")
    assert name == "ui study" and "2 real + 2 generated" in text
    assert studio._generator is not None  # the studio's one pipeline made the images
    assert tab.study_choices(studio) == ["ui study"]

    with pytest.raises(ValueError, match="type the owner code"):
        tab.invitations(studio, "ui study", "", add="Ana")
    links = tab.invitations(studio, "ui study", "owner-1", "http://host:7861/", add="Ana")
    ana = links.split("http://host:7861/?invite=")[1].split()[0]
    links = tab.invitations(studio, "ui study", "owner-1", "http://host:7861/", add="Ben")
    ben = links.split("http://host:7861/?invite=")[2].split()[0]
    token, page, progress = reader_page.open_page(studio, "ui study", ana)
    assert token and f'data-token="{token}"' in page and progress.startswith("Ana: image 1 of 4")
    with pytest.raises(ValueError, match="answer first"):
        reader_page.answer_and_next(studio, "ui study", ana, token, None, None, "")
    for i in range(4):
        token, page, progress, _ = reader_page.answer_and_next(studio, "ui study", ana, token, "real", str(i + 1),
                                                               f"note {i}")
    assert token is None and 'data-done="4"' in page and "4 / 4 answered" in progress
    with pytest.raises(ValueError, match="wrong owner code"):
        tab.results_view(studio, "ui study", "owner-2")
    md, plot = tab.results_view(studio, "ui study", "owner-1")
    assert "| Ana | 4 | 50.0 % |" in md and plot.format == "PNG"
    with pytest.raises(ValueError, match="still open"):
        tab.export_answers(studio, "ui study", "owner-1")
    # a repeated Enter carrying the image already answered changes nothing, and says so
    first = reader_page.open_page(studio, "ui study", ben)[0]
    after = reader_page.answer_and_next(studio, "ui study", ben, first, "generated", None, "")[0]
    again, _, _, notice = reader_page.answer_and_next(studio, "ui study", ben, first, "real", None, "")
    assert again == after and notice == reader_page.REPEATED
    assert "Ben" in tab.invitations(studio, "ui study", "owner-1", revoke="Ben").split("```")[1].split("revoked")[0]
    with pytest.raises(ValueError, match="revoked"):
        reader_page.open_page(studio, "ui study", ben)
    ws = studio.workspace()
    assert [(a.reader, a.answer) for a in ReaderStudies(ws).answers("ui study") if a.reader == "Ben"] == [
        ("Ben", "generated")]
    ws.close()
    # closing ends the study for its readers and opens the export to its owner
    with pytest.raises(ValueError, match="wrong owner code"):
        tab.close_study(studio, "ui study", "owner-2")
    assert "closed" in tab.close_study(studio, "ui study", "owner-1")
    with pytest.raises(ValueError, match="closed"):
        reader_page.open_page(studio, "ui study", ana)
    csv_path = tab.export_answers(studio, "ui study", "owner-1")
    assert csv_path.endswith("ui-study.csv") and len(open(csv_path).read().splitlines()) == 6
