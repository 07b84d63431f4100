"""Compare and Evaluate explain themselves: the newest finished run chosen, a reference's
caption as the prompt, labelled slider halves, one histogram panel per channel, a sample-size
warning on FID and KID, and the evaluation's stages with how long is left."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from helpers import add_images, make_tuned_run
from medart.evaluation.pipeline import floor_note, sample_size_note
from medart.evaluation.progress import StageProgress, planned_stages, read_progress, stage_rows
from medart.studio import Studio
from medart.ui import compare, evaluate


@pytest.fixture
def studio(tmp_path):
    return Studio(home=tmp_path / "home", base_model="tiny")


def test_the_newest_finished_run_is_chosen(studio):
    assert compare.run_choice(studio) == ([], None)
    old = make_tuned_run(studio.runs_dir / "old")
    os.utime(old, (time.time() - 100, time.time() - 100))
    make_tuned_run(studio.runs_dir / "new")
    ckpt_only = studio.runs_dir / "unfinished" / "checkpoints" / "step-000004" / "dit"
    ckpt_only.mkdir(parents=True)
    (studio.runs_dir / "unfinished" / "config.yaml").write_text("base_model: tiny\n")
    names, chosen = compare.run_choice(studio)
    assert chosen == "new" and set(names) >= {"new", "old"}  # finished beats the newer checkpoint-only run
    assert compare.run_choice(studio, "old")[1] == "old"  # a choice already made stays
    assert evaluate.newest_finished(studio) == (["new", "old"], "new")


def test_a_reference_caption_becomes_the_prompt(studio):
    with studio.workspace() as ws:
        (first, second) = add_images(ws, ["fundus", "fundus"], split="test")
        ws.set_text(first, "A fundus image, predominantly red with areas of black.", approve=True)
    image, line = compare.reference_view(studio, first)
    assert line == "**Its caption:** A fundus image, predominantly red with areas of black."
    assert os.path.isfile(image) and not image.startswith(str(studio.home))
    assert compare.reference_caption(studio, first) == "A fundus image, predominantly red with areas of black."
    with pytest.raises(ValueError, match="has no caption yet"):
        compare.reference_caption(studio, second)
    with pytest.raises(ValueError, match="choose a reference image first"):
        compare.reference_caption(studio, 0)


def test_slider_halves_are_labelled_and_histograms_have_a_panel_per_channel():
    base = Image.new("RGB", (64, 64), (200, 40, 40))
    left = compare.labelled(base, "base")
    right = compare.labelled(base, "tuned", right=True)
    assert left.size == right.size == (256, 256)
    a, b = np.asarray(left), np.asarray(right)
    box = compare.LABEL_BOX
    assert (a[-20:-8, 8:30] == box).all(axis=-1).any() and not (a[-20:-8, -30:-8] == box).all(-1).any()
    assert (b[-20:-8, -30:-8] == box).all(axis=-1).any()  # the tuned label sits on the right
    hist = compare.histogram_image({"base": base, "tuned": Image.new("RGB", (64, 64), (40, 200, 40)),
                                    "reference": Image.new("RGB", (64, 64), (40, 40, 200))})
    assert hist.width > 2.5 * hist.height  # three panels side by side


def test_fid_and_kid_carry_a_sample_size_warning():
    note = sample_size_note(4, 8)
    assert note.startswith("Sample size: FID and KID here compare 4 real with 8 generated image(s) per model.")
    assert "at least 2,048 real and 2,048 generated images" in note
    assert sample_size_note(5000, 2048) is None


def test_stages_say_how_far_and_how_long_is_left(tmp_path):
    rec = StageProgress(tmp_path / "eval" / "progress.json", min_interval=0)
    rec.plan(planned_stages({"fid", "color"}))
    rec("base", 0, 8)
    rec("base", 8, 8)
    rec("tuned", 0, 8)
    data = read_progress(tmp_path / "eval")
    data["stages"][1]["started"] = time.time() - 20  # 2 of 8 in 20 s: about 60 s left
    data["stages"][1]["done"] = 2
    rows = stage_rows(data)
    assert [r[0] for r in rows] == ["done", "running", "waiting", "waiting", "waiting"]
    assert rows[1] == ("running", "generating the tuned model's images", "2 / 8, about 60 s left")
    html = evaluate.stages_html(data, running=True)
    assert "stage 2 of 5" in html and 'data-state="running"' in html
    assert [r[0] for r in stage_rows(data, running=False)][:2] == ["done", "stopped"]


def test_the_results_view_explains_and_warns(studio):
    run = make_tuned_run(studio.runs_dir / "r")
    (run / "eval").mkdir()
    results = {"distribution": {"base": {"fid": 300.0}, "tuned": {"fid": 200.0}},
               "classification": {"real": {"accuracy": 0.75, "macro_f1": 0.7, "n": 4},
                                  "tuned": {"accuracy": 0.5, "macro_f1": 0.4, "n": 4}},
               "settings": {"sample_size_warning": sample_size_note(4, 8)}, "floor_note": floor_note(2, 2)}
    (run / "eval" / "metrics.json").write_text(json.dumps(results))
    status, table, classify, plots, report, warning = evaluate.eval_view(studio, "r")
    assert list(table["model"]) == ["base", "tuned"] and warning.startswith("⚠ Sample size")
    assert list(table.columns) == ["model", "FID"]  # no empty cells for the classifiers
    assert classify.values.tolist() == [["real images", 0.75, 0.7, 4], ["tuned images", 0.5, 0.4, 4]]
    assert "⚠ No real-vs-real floor: 4 real image(s) would split into halves of 2 and 2" in warning
    shown = evaluate.spread(evaluate.eval_view(studio, "r"))
    assert shown[2]["visible"] is True and evaluate.spread(evaluate.eval_view(studio, None))[2]["visible"] is False
    for word in ("FID", "KID", "domain FD", "colour distance", "accuracy", "floor"):
        assert word in evaluate.METRIC_HELP
    for column in compare.STAT_COLUMNS[1:]:
        assert column.split()[0] in compare.STAT_HELP


def test_an_empty_split_is_refused_before_a_job_starts(studio):
    make_tuned_run(studio.runs_dir / "r")
    with studio.workspace() as ws:
        add_images(ws, ["fundus", "fundus"], split="test")
    with pytest.raises(ValueError, match="the workspace has no images in split 'validation'"):
        evaluate.check_start(studio, "r", "validation", ["fid"])
    with pytest.raises(ValueError, match="has 2 held-out image\\(s\\), 0 with a caption: evaluation needs at least 2"):
        evaluate.check_start(studio, "r", "test", ["fid"])
    assert studio.jobs.latest("evaluate") is None  # nothing started


def test_previous_results_are_labelled_and_stale_stages_hidden(studio, monkeypatch):
    from types import SimpleNamespace

    run = make_tuned_run(studio.runs_dir / "r")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({"distribution": {"base": {"fid": 514.23456}}}))
    rec = StageProgress(run / "eval" / "progress.json", min_interval=0)
    rec.plan(planned_stages({"fid"}))
    rec("base", 4, 4)
    old = time.time() - 600
    os.utime(run / "eval" / "metrics.json", (old, old))
    data = read_progress(run / "eval")
    data["started"] = old
    (run / "eval" / "progress.json").write_text(json.dumps(data))
    for state in ("running", "failed"):
        job = SimpleNamespace(id="job-2", state=state, created=time.time() - 5, error="boom", log_tail="")
        monkeypatch.setattr(studio.jobs, "latest", lambda *a, **k: job)
        status, table, *_ = evaluate.eval_view(studio, "r")
        assert "The results below are the previous evaluation's" in status and "eval-stage" not in status
        assert table["FID"].tolist() == [514.2]  # one decimal, not four
    job.state = "done"
    assert "previous evaluation" not in evaluate.eval_view(studio, "r")[0]


def test_classification_cautions_small_samples_and_names_empty_classes():
    from medart.evaluation.pipeline import classification_note
    from medart.evaluation.report import class_gaps

    assert classification_note(5).startswith("Small sample: the classifiers were tested on 5 held-out image(s), "
                                             "so one image moves accuracy by 20 points")
    assert classification_note(30) is None
    cls = {"real": {"per_class_recall": {"a": 1.0, "b": None, "c": 0.0}},
           "tuned": {"per_class_recall": {"a": 0.5, "b": None, "c": 0.0}}}
    assert class_gaps(cls, without_training=["c"]) == {"b": "no test images", "c": "no training images"}
