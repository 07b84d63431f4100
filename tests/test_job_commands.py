"""Every job the app queues is a kind and a config file, and its command is read by the real CLI
parser into exactly what the page asked for: the Train tab's training (and its resume), the
Captions tab's batch (each describer choice) and the Evaluate tab's evaluation."""

from __future__ import annotations

import sys

import pytest

from helpers import add_images, make_tuned_run
from medart.cli import parse, train_config
from medart.config import TrainConfig, load_config
from medart.jobs import JobManager
from medart.studio import Studio
from medart.ui import captions, evaluate, train


class QueueOnly(JobManager):
    """The job queue without the processes: jobs are recorded, never started."""

    def tick(self):
        return self.list()


@pytest.fixture
def studio(tmp_path, medart_cache, monkeypatch):
    for var in ("SPACE_ID", "MEDART_TRAINING", "MEDART_ORIGINAL_SPACE"):
        monkeypatch.delenv(var, raising=False)
    s = Studio(home=tmp_path / "home", base_model="tiny")
    s.jobs = QueueOnly(s.home / "jobs", slots_=1)
    return s


def the_form(**changed) -> list:
    """The Train form's values in FORM order: its defaults, some of them changed."""
    values = {path: train.form_default(path) for path in train.FORM}
    values.update(changed)
    return [values[path] for path in train.FORM]


def test_the_train_form_is_the_config_and_its_job_runs_the_runs_config(studio):
    with studio.workspace() as ws:
        ids = add_images(ws, ["polyps", "polyps", "nevi"])
        for i in ids:
            ws.set_text(i, f"A dermoscopic image of lesion {i}.", approve=True)
    form = the_form(**{"hldf.mode": "paper", "hldf.every": 0, "hldf.steps": 5, "hldf.cfg": 3.5, "lora.rank": 4,
                       "lora.t5": False, "learning_rate": 2e-4, "max_steps": 12, "resolution": 0,
                       "checkpoint_every": 6, "validation_every": 4, "validation_prompts": "a red lesion\n\nanother",
                       "adam_8bit": False, "caption_dropout": 0.1, "report_to": "tensorboard"})
    name, asked = train.form_config(studio, "form-run", "", *form)
    assert (name, asked.base_model, asked.hldf.mode, asked.hldf.every, asked.hldf.steps, asked.hldf.cfg) == (
        "form-run", "tiny", "paper", None, 5, 3.5)  # 0 in N: the schedule rule
    assert (asked.lora.rank, asked.lora.t5, asked.learning_rate, asked.max_steps, asked.resolution) == (
        4, False, 2e-4, 12, None)
    assert asked.validation_prompts == ["a red lesion", "another"] and asked.checkpoint_every == 6
    assert (asked.caption_dropout, asked.report_to) == (0.1, "tensorboard")

    md, run_name = train.launch_run(studio, "form-run", "", *form)
    assert "Launched" in md and run_name == "form-run" and "(queued)" not in md
    (job,) = studio.jobs.list()
    run = studio.runs_dir / "form-run"
    assert (job.kind, job.config, job.output) == ("train", str(run / "config.yaml"), str(run))
    args = parse(job.argv)
    assert args.command == "train"
    queued = train_config(args)
    expected = TrainConfig(**{**asked.__dict__, "data": str(run / "data"), "output": str(run)})
    assert queued == expected  # nothing dropped, nothing added on the way to the job

    studio.jobs._update(job.id, state="stopped")  # stopped after a checkpoint
    (run / "checkpoints" / "step-000006").mkdir(parents=True)
    resumed = studio.jobs.resume(job.id)
    args = parse(resumed.argv)
    assert args.resume == "latest" and train_config(args) == TrainConfig(**{**expected.__dict__, "resume": "latest"})


def test_preflight_blocks_wandb_without_the_package(studio, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not importable, installed or not
    with studio.workspace() as ws:
        for i in add_images(ws, ["polyps", "nevi"]):
            ws.set_text(i, f"A dermoscopic image of lesion {i}.", approve=True)
    md = train.preflight_md(studio, "tracked", "", *the_form(max_steps=12, report_to="wandb"))
    assert "Cannot start yet" in md and "pip install wandb" in md and "offline unless WANDB_MODE=online" in md


def test_the_train_forms_defaults_are_the_papers_settings(studio):
    _, config = train.form_config(studio, "r", "", *the_form())
    assert config == load_config(None, base_model="tiny")


@pytest.mark.parametrize("backend, model, url, expected", [
    ("per template", "", "", (None, None, None)),
    ("offline", "", "", ("offline", None, None)),
    ("openai", "served-vlm", "http://gpu-box:8000/v1", ("openai", "served-vlm", "http://gpu-box:8000/v1")),
    ("transformers", "llava-hf/llama3-llava-next-8b-hf", "", ("transformers", "llava-hf/llama3-llava-next-8b-hf", None)),
])
def test_the_caption_batch_job_is_read_by_the_caption_command(studio, backend, model, url, expected):
    html, _ = captions.start_batch(studio, backend, model, url, "drafts")
    (job,) = studio.jobs.list()
    assert job.kind == "caption" and job.id in html
    args = parse(job.argv)
    assert args.command == "caption" and args.func.__name__ == "cmd_caption"
    assert (args.workspace, args.base_model, args.include_edited) == (str(studio.workspace_dir), "tiny", False)
    assert (args.backend, args.model, args.url) == expected
    captions.start_batch(studio, backend, model, url, "approved")  # confirmed on the page
    args = parse(studio.jobs.list()[-1].argv)
    assert (args.include_edited, args.include_approved, args.yes) == (True, True, True)


def test_the_evaluation_job_is_read_by_the_evaluate_command(studio):
    from medart.ui.data import import_demo

    run = make_tuned_run(studio.runs_dir / "tuned")
    with studio.workspace() as ws:
        import_demo(ws)  # held-out images to evaluate on (an empty split is refused before any job)
    evaluate.start(studio, "tuned", "test", 3, ["fid", "color"])
    (job,) = studio.jobs.list()
    args = parse(job.argv)
    assert (job.kind, args.command, args.func.__name__) == ("evaluate", "evaluate", "cmd_evaluate")
    assert (args.run, args.per_caption, args.metrics) == (str(run), 3, ("fid", "color"))
    assert args.real == f"{studio.workspace_dir}:test"


def test_the_reader_server_command_the_owner_is_shown_is_read_by_app_py(studio):
    import shlex

    import app
    from medart.assets import APP_SCRIPT
    from medart.ui import reader_study

    text = reader_study.reader_command(studio, "pilot study", port=7999)
    words = shlex.split(text.replace("\\\n", " "))
    assert words[0] == "MEDART_AUTH=reader:CHOOSE-A-PASSWORD" and words[2] == str(APP_SCRIPT) and APP_SCRIPT.is_file()
    args = app.parse_args(words[3:])
    assert (args.reader_study, args.home, args.host, args.port) == ("pilot study", str(studio.home), "0.0.0.0", 7999)
