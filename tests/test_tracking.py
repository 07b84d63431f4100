"""Experiment tracking: TensorBoard files in the run folder with every number and image, across a resume;
W&B optional, offline unless asked."""

import json
import shutil
import sys

import pytest

from medart import tracking
from medart.cli import main as cli_main
from medart.config import load_config
from medart.hldf import Trainer
from helpers import make_data

STEP_TAGS = ("loss/diffusion", "grad_norm/diffusion", "grad_norm/total", "lr")
COLOUR_TAGS = ("loss/color", "grad_norm/color")


def _data(tmp_path):
    """Two classes (the demo's `label` column): fundus and histology images, two each."""
    data = make_data(tmp_path / "data", n=2)
    histology = make_data(tmp_path / "histology", prefix="histology", n=2)
    for image in histology.glob("*.jpg"):
        shutil.copy(image, data / image.name)
    with open(data / "metadata.jsonl", "a") as f:
        f.write((histology / "metadata.jsonl").read_text())
    return data


def _config(data, output, **kw):
    settings = {"base_model": "tiny", "data": str(data), "output": str(output), "max_steps": 4, "report_to": "tensorboard",
                "validation_every": 2, "validation_steps": 3, "checkpoint_every": 2, "hldf.every": 2, "hldf.steps": 3}
    settings.update(kw)
    return load_config(None, **settings)


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    images = {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}
    return scalars, images


@pytest.mark.slow  # trains 4 + 4 steps
def test_tensorboard_gets_every_number_and_the_samples_and_a_resume_continues_it(tmp_path):
    data = _data(tmp_path)
    trainer = Trainer(_config(data, tmp_path / "run"))
    trainer.run_loop()
    run = tmp_path / "run"
    scalars, images = _events(run / "tensorboard")
    classes = sorted(trainer.groups)
    assert len(classes) == 2
    for tag in STEP_TAGS:
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4], tag
    for tag in COLOUR_TAGS:
        assert [s for s, _ in scalars[tag]] == [2, 4], tag
    for c in classes:
        assert [s for s, _ in scalars[f"color_distance/{c}"]] == [0, 2, 4], c
    assert images["samples"] == [0, 2, 4]
    # the same numbers as metrics.jsonl
    rows = {r["step"]: r for r in trainer.run.metrics()}
    assert [v for _, v in scalars["loss/diffusion"]] == pytest.approx([rows[s]["loss"] for s in (1, 2, 3, 4)])
    assert [v for _, v in scalars["grad_norm/color"]] == pytest.approx([rows[s]["grad_norm_color"] for s in (2, 4)])
    assert [v for _, v in scalars["grad_norm/diffusion"]] == pytest.approx(
        [rows[1]["grad_norm"], rows[2]["grad_norm_diffusion"], rows[3]["grad_norm"], rows[4]["grad_norm_diffusion"]])
    assert scalars["lr"][0][1] == pytest.approx(1e-4)
    assert scalars[f"color_distance/{classes[0]}"][-1][1] == pytest.approx(rows[4]["color_distance"][classes[0]])

    # stopped after step 2 (its checkpoint), resumed to the end: the same folder, the same steps
    split = tmp_path / "split"
    first = Trainer(_config(data, split))
    first.progress = lambda step, total, last: setattr(first, "stop_requested", step == 1)  # read after step 2
    first.run_loop()
    assert first.run.read_status()["step"] == 2
    Trainer(_config(data, split, resume="latest")).run_loop()
    again, again_images = _events(split / "tensorboard")
    for tag in (*STEP_TAGS, *COLOUR_TAGS, *(f"color_distance/{c}" for c in classes)):
        assert [s for s, _ in again[tag]] == [s for s, _ in scalars[tag]], tag
    assert again_images["samples"] == [0, 2, 4]
    assert [v for _, v in again["loss/diffusion"]] == pytest.approx([v for _, v in scalars["loss/diffusion"]],
                                                                      rel=1e-6)
    assert not (split / "wandb").exists()


@pytest.mark.slow  # trains 3 + 2 steps
def test_a_resume_purges_what_the_interrupted_run_logged_after_its_checkpoint(tmp_path):
    """A run killed after step 3 (checkpoint at 2) logged step 3 already; the resumed run logs
    step 3 again, and TensorBoard shows it once."""
    data = make_data(tmp_path / "data", n=2)
    run = tmp_path / "run"
    first = Trainer(_config(data, run, max_steps=4, **{"hldf.enabled": False}))
    first.progress = lambda step, total, last: setattr(first, "stop_requested", step == 2)  # read after step 3
    first.run_loop()  # stops at 3 with a checkpoint at 3: drop it to stand for a kill after step 3
    assert first.run.read_status()["step"] == 3
    shutil.rmtree(run / "checkpoints" / "step-000003")
    Trainer(_config(data, run, max_steps=4, resume="latest", **{"hldf.enabled": False})).run_loop()
    scalars, _ = _events(run / "tensorboard")
    assert [s for s, _ in scalars["loss/diffusion"]] == [1, 2, 3, 4]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    written = [e.step for f in sorted((run / "tensorboard").glob("events.out.tfevents.*"))
               for e in EventFileLoader(str(f)).Load() for v in e.summary.value if v.tag == "loss/diffusion"]
    assert written == [1, 2, 3, 3, 4]  # on disk twice, shown once


def test_flat_config_and_scalars_names():
    config = load_config(None, validation_prompts=["a", "b"])
    flat = tracking.flat_config(config)
    assert flat["hldf.mode"] == "balanced" and flat["lora.rank"] == 8 and flat["hldf.every"] == ""
    assert flat["validation_prompts"] == "a, b" and flat["report_to"] == "none"
    assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())
    plain = tracking.scalars({"step": 3, "loss": 0.5, "grad_norm": 2.0, "lr": 1e-4})
    assert plain == {"loss/diffusion": 0.5, "grad_norm/diffusion": 2.0, "grad_norm/total": 2.0, "lr": 1e-4}
    colour = tracking.scalars({"step": 4, "loss": 0.5, "color_loss": 0.3, "grad_norm_diffusion": 0.2,
                               "grad_norm_color": 3.0, "grad_norm": 3.1, "lr": 1e-4, "color_distance": {"a": 0.1}})
    assert colour == {"loss/diffusion": 0.5, "grad_norm/diffusion": 0.2, "grad_norm/total": 3.1, "lr": 1e-4,
                      "loss/color": 0.3, "grad_norm/color": 3.0, "color_distance/a": 0.1}
    assert tracking.scalars({"step": 0, "color_distance": {"a": 0.2}}) == {"color_distance/a": 0.2}


def test_wandb_without_the_package_is_a_clear_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not importable, installed or not
    data = make_data(tmp_path / "data", n=2)
    code = cli_main(["train", "--base-model", "tiny", "--data", str(data), "--output", str(tmp_path / "run"),
                     "--max-steps", "2", "--report-to", "wandb"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install wandb" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "config.yaml").exists()
    with pytest.raises(ValueError, match="report_to must be one of none, tensorboard, wandb"):
        load_config(None, report_to="mlflow")


@pytest.mark.slow  # trains 2 + 2 steps
def test_wandb_stays_offline_unless_asked_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    data = make_data(tmp_path / "data", n=2)
    run = tmp_path / "run"
    first = Trainer(_config(data, run, report_to="wandb"))
    first.progress = lambda step, total, last: setattr(first, "stop_requested", step == 1)  # read after step 2
    first.run_loop()
    assert first.run.read_status()["step"] == 2
    run_id = json.loads((run / "tracker.json").read_text())["wandb_id"]
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline, list((run / "wandb").iterdir())
    Trainer(_config(data, run, report_to="wandb", resume="latest")).run_loop()
    assert json.loads((run / "tracker.json").read_text())["wandb_id"] == run_id
    assert all(p.name.endswith(run_id) for p in (run / "wandb").glob("*run-*"))
