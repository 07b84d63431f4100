"""The report shows the numbers it is given (none of its own) and writes valid PNG plots."""

import json

import numpy as np
import pytest
from PIL import Image

from medart.color_stats import channel_histograms, set_stats
from medart.evaluation.report import plot_color_histograms, plot_per_class, render_markdown, write_report


def make_results(seed):
    rng = np.random.default_rng(seed)
    ims = {
        name: [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(3)]
        for name in ("real", "base", "tuned")
    }
    num = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    per_class = lambda: {"polyps": num(0, 1), "ulcer": num(0, 1), "normal": None}  # noqa: E731
    return {
        "title": "Evaluation of demo-run",
        "run": "runs/demo-run",
        "base_model": "tiny",
        "settings": {"per_caption": int(rng.integers(1, 9)), "cfg": num(1, 9), "feature_extractor": "inception"},
        "distribution": {
            "base": {"fid": num(50, 150), "kid_mean": num(0, 0.1), "kid_std": num(0, 0.01), "dfd": num(1, 9), "color_distance": num(0, 1)},
            "tuned": {"fid": num(20, 50), "kid_mean": num(0, 0.1), "kid_std": num(0, 0.01), "dfd": None, "color_distance": num(0, 1)},
            "real vs real (floor)": {"fid": num(0, 20), "kid_mean": float("nan"), "color_distance": num(0, 1)},
        },
        "color": {k: set_stats(v) for k, v in ims.items()},
        "color_histograms": {k: channel_histograms(v, bins=16) for k, v in ims.items()},
        "classification": {
            src: {"accuracy": num(0, 1), "macro_f1": num(0, 1), "per_class_recall": per_class()}
            for src in ("real", "base", "tuned")
        },
        "warnings": ["KID subset size reduced from 1000 to 3"],
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_markdown_shows_the_given_numbers(seed):
    r = make_results(seed)
    md = render_markdown(r)
    d = r["distribution"]
    assert f"| base | {d['base']['fid']:.2f} | {d['base']['kid_mean']:.4f} ± {d['base']['kid_std']:.4f} |" in md
    assert f"{d['tuned']['fid']:.2f}" in md and f"{d['tuned']['color_distance']:.4f}" in md
    assert f"| real vs real (floor) | {d['real vs real (floor)']['fid']:.2f} | — |" in md  # NaN and missing show —
    assert f"{r['color']['tuned']['mean_r']:.4f}" in md
    assert f"{r['color']['real']['colourfulness']:.2f}" in md
    c = r["classification"]["tuned"]
    assert f"| tuned | {c['accuracy']:.3f} | {c['macro_f1']:.3f} | {c['per_class_recall']['polyps']:.3f} |" in md
    assert "recall: normal" in md
    assert f"| per_caption | {r['settings']['per_caption']} |" in md
    assert "KID subset size reduced" in md


def test_different_inputs_give_different_reports():
    assert render_markdown(make_results(0)) != render_markdown(make_results(1))


def test_sections_without_data_are_left_out():
    md = render_markdown({"distribution": {"tuned": {"fid": 3.14159}}})
    assert "| tuned | 3.14 | — | — | — |" in md
    assert "Colour statistics" not in md and "Downstream classification" not in md and "Plots" not in md


def test_write_report_writes_page_json_and_pngs(tmp_path):
    r = make_results(2)
    paths = write_report(r, tmp_path / "eval")
    assert set(paths) == {"report", "metrics", "color_histograms", "per_class"}
    md = paths["report"].read_text(encoding="utf-8")
    assert "![Colour histograms of real and generated images](color_histograms.png)" in md
    assert "(per_class_recall.png)" in md
    data = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert data["distribution"]["base"]["fid"] == pytest.approx(r["distribution"]["base"]["fid"])
    assert data["distribution"]["real vs real (floor)"]["kid_mean"] is None  # NaN is not JSON
    assert data["color_histograms"]["real"]["g"] == pytest.approx(list(r["color_histograms"]["real"]["g"]))
    for key in ("color_histograms", "per_class"):
        with Image.open(paths[key]) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 150
            arr = np.asarray(im.convert("RGB"))
            assert arr.std() > 5  # something is drawn


def test_plots_reject_empty_input(tmp_path):
    with pytest.raises(ValueError):
        plot_color_histograms({}, tmp_path / "a.png")
    with pytest.raises(ValueError):
        plot_per_class({}, tmp_path / "b.png")
