"""The HLDF ablation's tables and verdict, on constructed image sets (no training)."""

import importlib
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from medart import colour_classes
from medart.evaluation import metrics

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ablation():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("hldf_ablation")


def images(rgb, n, rng, spread=0.05, gray=False):
    """n 16 px float images around the colour `rgb`, with noise (the same in R, G, B if gray)."""
    shape = (16, 16, 1) if gray else (16, 16, 3)
    return [np.clip(np.array(rgb) + rng.normal(0, spread, shape), 0, 1) for _ in range(n)]


# colours per class: the references, the baseline's images, a good arm's images
FUNDUS = {"ref": (0.8, 0.3, 0.2), "base": (0.5, 0.5, 0.5), "good": (0.77, 0.32, 0.2), "weak": (0.56, 0.46, 0.44)}
CELL = {"ref": (0.5, 0.5, 0.5), "base": (0.2, 0.2, 0.2), "good": (0.47, 0.47, 0.47), "weak": (0.24, 0.24, 0.24)}


def generated(arm, seed):
    rng = np.random.default_rng([seed, len(arm)])
    colours = {"good": "good", "off-hue": "good", "unreal": "good", "slow": "good", "weak": "weak", "lora": "base"}[arm]
    feats = rng.normal(0, 1, (12, 8))
    if arm == "unreal":
        feats = feats + 2.0  # far from the references in the features: KID worse
    fundus = images(FUNDUS[colours], 12, rng)
    cell = images(CELL[colours], 12, rng, gray=True)
    if arm == "off-hue":  # the gray class drawn green: close in colour statistics, but every pixel chromatic
        cell = [np.clip(im + np.array([-0.1, 0.06, -0.1]), 0, 1) for im in cell]
    return {"fundus": (fundus, feats), "cell": (cell, rng.normal(0, 1, (12, 8)))}


@pytest.fixture(scope="module")
def evaluated(ablation):
    rng = np.random.default_rng(0)
    refs = {"fundus": ablation.Measured.of(images(FUNDUS["ref"], 16, rng), rng.normal(0, 1, (16, 8))),
            "cell": ablation.Measured.of(images(CELL["ref"], 16, rng, gray=True), rng.normal(0, 1, (16, 8)))}
    arms, seeds = ["lora", "good", "off-hue", "unreal", "slow", "weak"], [1, 2]
    measured, results = {}, {}
    for arm in arms:
        for s in seeds:
            measured[(arm, s)] = {c: ablation.Measured.of(ims, f) for c, (ims, f) in generated(arm, s).items()}
            results[(arm, s)] = {"cpu_seconds": 100.0 * (2.5 if arm == "slow" else 1.2 if arm != "lora" else 1.0),
                                 "step_seconds": 50.0, "every": 5, "colour_steps": 0 if arm == "lora" else 8}
    ev = ablation.evaluate(results, measured, refs, arms, seeds, "lora", draws=200)
    return ev, results, measured, refs, arms, seeds


def test_verdict_names_the_condition_each_arm_fails(evaluated):
    ev, *_ = evaluated
    verdicts = {arm: a["verdict"] for arm, a in ev["arms"].items()}
    assert verdicts["good"] == []
    assert len(verdicts["off-hue"]) == 1
    assert verdicts["off-hue"][0].startswith("off-hue share worse beyond noise (cell +100.0")
    assert len(verdicts["unreal"]) == 1 and verdicts["unreal"][0].startswith("KID worse beyond noise (fundus")
    assert verdicts["slow"] == ["cost 2.50x > 2x"]
    assert [v.split(" (")[0] for v in verdicts["weak"]] == ["colour distance not ≥ 30 % lower",
                                                            "W1 not ≥ 30 % lower"]
    assert ev["arms"]["good"]["cost"] == pytest.approx(1.2)


def test_cells_are_paired_changes_against_the_baseline_with_intervals(evaluated, ablation):
    ev, results, measured, refs, arms, seeds = evaluated
    ref = refs["fundus"]
    distance = lambda m: colour_classes.set_distance(m.stats, ref.stats)  # noqa: E731
    by_hand = [distance(measured[("good", s)]["fundus"]) / distance(measured[("lora", s)]["fundus"]) - 1 for s in seeds]
    cell = ev["arms"]["good"]["cells"]["colour"]["fundus"]
    assert cell.per_seed == pytest.approx(by_hand)
    assert cell.mean == pytest.approx(np.mean(by_hand)) and cell.mean < -0.9
    assert cell.lo <= cell.mean <= cell.hi < 0
    assert ev["baseline"]["colour"]["fundus"] == pytest.approx(np.mean([distance(measured[("lora", s)]["fundus"])
                                                                        for s in seeds]))
    # off-hue in points: the gray class drawn green is 100 % off-hue, its baseline 0 %
    off = ev["arms"]["off-hue"]["cells"]["off_hue"]["cell"]
    assert off.per_seed == [1.0, 1.0] and off.lo == off.hi == 1.0
    assert ev["baseline"]["off_hue"]["cell"] == 0.0
    # real against real: gray references have no off-hue pixels; their diversity is about their own
    assert ev["floor"]["off_hue"]["cell"] == 0.0
    assert ev["floor"]["diversity"]["fundus"] == pytest.approx(1.0, abs=0.1)


def test_table_has_the_split_verdicts_floors_and_a_table_per_measure(evaluated, ablation):
    ev, results, measured, refs, arms, seeds = evaluated
    text = ablation.render(results, ev, arms, seeds, "lora", "HLDF ablation, TUNE half: fundus, cell")
    assert text.startswith("## HLDF ablation, TUNE half: fundus, cell\n")
    assert "| good | 5 | 8 | 1.20 | 1.00 | meets the target |" in text
    assert "| slow | 5 | 8 | 2.50 | 1.00 | fails: cost 2.50x > 2x |" in text
    assert "| lora (baseline) | – | 0 | 1.00 | 1.00 | – |" in text
    assert text.count("| real vs real, half against half (floor) |") == len(ablation.METRICS) == 5
    assert text.count("| LoRA only (value) |") == 5
    assert "| arm | fundus | cell |" in text


def test_kid_and_diversity_draws_equal_the_metrics_on_whole_sets(ablation):
    rng = np.random.default_rng(3)
    g = ablation.Measured.of(images((0.5, 0.5, 0.5), 10, rng), rng.normal(0, 1, (10, 6)))
    r = ablation.Measured.of(images((0.6, 0.5, 0.5), 10, rng), rng.normal(0.5, 1, (10, 6)))
    identity = np.arange(10)
    assert ablation.kid_estimate(g, identity, r, identity) == pytest.approx(
        metrics.kid_from_features(r.feats, g.feats, subset_size=10)[0], rel=1e-9)
    assert ablation.diversity_estimate(g, identity, r, identity) == pytest.approx(metrics.diversity(g.feats, r.feats))
    # a resample repeating one image: its pairs with itself are left out, not counted as distance 0
    twice = np.array([0, 0, 1, 2])
    assert ablation.diversity_estimate(g, twice, g, np.arange(3)) == pytest.approx(
        np.mean([g.distances()[0, 1]] * 4 + [g.distances()[0, 2]] * 4 + [g.distances()[1, 2]] * 2)
        / np.mean([g.distances()[0, 1], g.distances()[0, 2], g.distances()[1, 2]]))
    # every bootstrap draw holds two different images, even of a set of two (half its draws otherwise)
    gi, ri = ablation.resamples(2, 3, seed=1, class_index=0, draws=500)
    assert gi.shape == (500, 2) and ri.shape == (500, 3)
    assert (gi[:, 0] != gi[:, 1]).all() and not (ri == ri[:, :1]).all(axis=1).any()


def test_one_table_never_mixes_the_halves(ablation, capsys):
    with pytest.raises(SystemExit):
        ablation.parse_args(["--split", "tune", "--classes", "fundus", "he_histology"])
    assert "he_histology not in the TUNE half" in capsys.readouterr().err
    args = ablation.parse_args(["--split", "test", "--classes", "ct_head", "he_histology", "--base-model", "tiny",
                                "--steps", "20"])
    assert args.classes == ["he_histology", "ct_head"]  # the bank's order
    assert args.out == Path("benchmarks/out/hldf_ablation/tiny-test-he_histology-ct_head-T20")
    assert args.arms[0] == "lora"
    whole = ablation.parse_args(["--split", "test"])
    assert whole.classes == ["he_histology", "nuclei_fluorescence", "ct_head", "brain_t1"]
    assert whole.out == Path("benchmarks/out/hldf_ablation/small-test-T400")


def test_a_cached_run_made_under_other_settings_is_refused_not_reused(ablation, tmp_path):
    args = Namespace(out=tmp_path, base_model="tiny", classes=["fundus"], steps=20, rerun=False)
    record = {"base_model": "tiny", "classes": ["fundus"], "steps": 400, "settings": {}, "seed": 1, "cpu_seconds": 3}
    (tmp_path / "default-s1.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="pass another --out"):
        ablation.run_arm("default", 1, tmp_path / "data", args)
    record["steps"] = 20
    (tmp_path / "default-s1.json").write_text(json.dumps(record))
    assert ablation.run_arm("default", 1, tmp_path / "data", args)["cpu_seconds"] == 3
