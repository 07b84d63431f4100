"""Reader-study statistics against hand computations on planted answers, the report and the CLI."""

import argparse
import json
import math
from dataclasses import dataclass

import pytest
from PIL import Image
from scipy.stats import binomtest

from medart.cli import reader_study as cli_reader_study
from medart.reader_study import report as reader_report
from medart.reader_study.stats import POOLED, binomial_test, cohen_kappa, summarise
from medart.reader_study import ReaderStudies
from medart.workspace import Workspace
from helpers import planted_images


@dataclass
class A:
    reader: str
    item_id: int
    truth: str
    label: str
    answer: str
    realism: int | None = None


# a balanced study: items 0-3 real, 4-7 generated; classes alternate fundus / histology
TRUTH = ["real"] * 4 + ["generated"] * 4
LABEL = ["fundus", "histology"] * 4


def answers(reader, given, realism=None):
    realism = realism or [None] * 8
    return [A(reader, i, TRUTH[i], LABEL[i], given[i], realism[i]) for i in range(8)]


def test_always_real_scores_half_with_sensitivity_zero():
    res = summarise(answers("Ana", ["real"] * 8)).readers[0]
    assert (res.n, res.correct, res.accuracy) == (8, 4, 0.5)
    assert res.sensitivity == 0.0 and res.specificity == 1.0
    # Wilson 95 % for 4/8 by hand: centre 0.5, half-width z*sqrt(1/32 + z^2/256)/(1 + z^2/8) = 0.28478
    assert res.ci_low == pytest.approx(0.21522, abs=1e-5) and res.ci_high == pytest.approx(0.78478, abs=1e-5)
    assert res.p_value == pytest.approx(1.0)
    assert res.per_class == {"fundus": (2, 4), "histology": (2, 4)}


def test_planted_reader_matches_hand_computation():
    given = ["real", "real", "real", "generated", "generated", "generated", "generated", "real"]
    realism = [5, 4, None, 2, 1, 2, None, 4]
    res = summarise(answers("Ben", given, realism)).readers[0]
    assert res.correct == 6 and res.accuracy == 0.75
    assert res.sensitivity == 0.75 and res.specificity == 0.75  # 3/4 generated, 3/4 real
    # items 3 (histology, wrong) and 7 (histology, wrong): fundus 4/4, histology 2/4
    assert res.per_class == {"fundus": (4, 4), "histology": (2, 4)}
    assert res.class_accuracy("histology") == 0.5
    assert res.realism_real == pytest.approx((5 + 4 + 2) / 3) and res.n_realism_real == 3
    assert res.realism_generated == pytest.approx((1 + 2 + 4) / 3) and res.n_realism_generated == 3
    # exact binomial: P(X<=2 or X>=6) for n=8 = (1+8+28)*2/256
    assert res.p_value == pytest.approx(74 / 256)
    ci = binomtest(6, 8).proportion_ci(method="wilson")
    assert (res.ci_low, res.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_kappa_and_pooled_results():
    a = ["real"] * 4 + ["generated"] * 4
    b = ["real", "real", "real", "generated", "generated", "generated", "generated", "real"]
    # agreement 6/8; both say real half the time: expected 0.5; kappa = (0.75 - 0.5) / 0.5
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["real"] * 3, ["real"] * 3) is None  # undefined, not a division by zero
    results = summarise(answers("Ana", a) + answers("Ben", b) + answers("Cy", ["real"] * 8))
    assert [r.reader for r in results.readers] == ["Ana", "Ben", "Cy"]
    pairs = {(g.reader_a, g.reader_b): g for g in results.agreements}
    assert pairs[("Ana", "Ben")].kappa == pytest.approx(0.5) and pairs[("Ana", "Ben")].n == 8
    assert pairs[("Ana", "Cy")].kappa == pytest.approx(0.0)  # po 0.5, pe 0.5
    # Ben vs Cy: agree on 0,1,2,7 -> 0.5; pe = 0.5*1 + 0.5*0 = 0.5 -> 0
    assert pairs[("Ben", "Cy")].kappa == pytest.approx(0.0)
    assert results.mean_kappa == pytest.approx(0.5 / 3)
    pooled = results.pooled
    assert pooled.reader == POOLED and pooled.n == 24 and pooled.correct == 8 + 6 + 4
    assert pooled.sensitivity == pytest.approx((4 + 3 + 0) / 12)


def test_interval_and_p_value_helpers():
    assert binomial_test(0, 10)[1] == 0.0 and binomial_test(10, 10)[2] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in binomial_test(0, 0))
    for k, n in ((0, 5), (3, 7), (12, 20), (20, 20)):
        p, low, high = binomial_test(k, n)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert (p, low, high) == (pytest.approx(binomtest(k, n).pvalue), pytest.approx(ci.low), pytest.approx(ci.high))


def test_eleven_readers_of_a_hundred_images_pooled():
    """1,100 pooled answers (11 readers x 100 images): the exact test stays exact, no OverflowError."""
    given = []
    for r in range(11):
        for i in range(100):
            truth = "real" if i % 2 else "generated"
            right = (i + r) % 20 < 11  # 55 % right: close to chance
            given.append(A(f"reader {r}", i, truth, "fundus", truth if right else ("generated" if truth == "real" else "real")))
    pooled = summarise(given).pooled
    assert (pooled.n, pooled.correct) == (1100, 605)
    expected = binomtest(605, 1100)
    assert pooled.p_value == pytest.approx(expected.pvalue) and 0.0008 < pooled.p_value < 0.002
    ci = expected.proportion_ci(method="wilson")
    assert (pooled.ci_low, pooled.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert pooled.ci_low > 0.5  # with this many answers 55 % is told apart from chance


def test_report_markdown_and_plot(tmp_path):
    results = summarise(answers("Ana", ["real"] * 8) + answers("Ben", ["real"] * 4 + ["generated"] * 4))
    md = reader_report.markdown(results, "pilot")
    assert "| Ana | 8 | 50.0 % | 21.5–78.5 % |" in md and "| Ben | 8 | 100.0 % |" in md
    assert "| all readers | 16 | 75.0 % |" in md and "Cohen's kappa" in md
    path = reader_report.write_plot(results, tmp_path / "plot.png", "pilot")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 400
    assert "No answers yet" in reader_report.markdown(summarise([]))
    reader_report.plot_png(summarise([]))  # an empty study still plots


def parser():
    p = argparse.ArgumentParser()
    cli_reader_study.add_parsers(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_results_and_export(tmp_path, capsys):
    root = tmp_path / "ws"
    with Workspace(root) as ws:
        store = ReaderStudies(ws)
        s = store.add_study("pilot study", planted_images(), seed=0, display_size=32)
        link = store.invite(s, "Ana").invitation
        while (shown := store.next_image(link)) is not None:
            store.answer(link, shown.token, "real", realism=4)
    run = lambda *argv: (lambda a: a.func(a))(parser().parse_args(list(argv)))  # noqa: E731

    assert run("reader-study", "results", "--workspace", str(root), "--name", "pilot study",
               "--plot", str(tmp_path / "r.png")) == 0
    out = capsys.readouterr().out
    assert "| Ana | 8 | 50.0 % |" in out and (tmp_path / "r.png").is_file()
    assert run("reader-study", "results", "--workspace", str(root), "--name", "pilot study", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["readers"][0]["accuracy"] == 0.5 and data["readers"][0]["sensitivity"] == 0.0
    with pytest.raises(ValueError, match="still open"):
        run("reader-study", "export", "--workspace", str(root), "--name", "pilot study",
            "--out", str(tmp_path / "a.csv"))
    assert not (tmp_path / "a.csv").exists()
    assert run("reader-study", "close", "--workspace", str(root), "--name", "pilot study") == 0
    assert "closed study 'pilot study'" in capsys.readouterr().out
    assert run("reader-study", "export", "--workspace", str(root), "--name", "pilot study",
               "--out", str(tmp_path / "a.csv")) == 0
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 9
    assert run("reader-study", "list", "--workspace", str(root)) == 0
    listed = capsys.readouterr().out
    assert "Ana 8/8" in listed and "\tclosed\t" in listed
    with pytest.raises(ValueError, match="create one first"):
        run("reader-study", "results", "--workspace", str(root), "--name", "other")
    with pytest.raises(FileNotFoundError, match="no workspace"):
        run("reader-study", "list", "--workspace", str(tmp_path / "missing"))
