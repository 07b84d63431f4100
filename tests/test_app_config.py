"""App settings without a server: login rules, Spaces behaviour, the Train tab's data snapshot."""

import json
from pathlib import Path

import pytest

import app
from medart import studio as studio_mod
from medart.config import load_config
from medart.jobs.training import launch, preflight


def test_login_required_beyond_localhost(monkeypatch):
    monkeypatch.delenv("MEDART_AUTH", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.auth_from_env("127.0.0.1") is None
    with pytest.raises(SystemExit, match="MEDART_AUTH"):
        app.auth_from_env("0.0.0.0")
    monkeypatch.setenv("MEDART_AUTH", "ana:s3cret:x")
    assert app.auth_from_env("0.0.0.0") == ("ana", "s3cret:x")
    monkeypatch.setenv("MEDART_AUTH", "nopassword")
    with pytest.raises(SystemExit, match="user:password"):
        app.auth_from_env("127.0.0.1")
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)


def test_training_off_on_the_shared_space_only(monkeypatch, tmp_path):
    for var in ("SPACE_ID", "MEDART_TRAINING", "MEDART_ORIGINAL_SPACE"):
        monkeypatch.delenv(var, raising=False)
    s = studio_mod.Studio(home=tmp_path, base_model="tiny")
    assert s.training_allowed and s.offline_demo
    monkeypatch.setenv("SPACE_ID", "medart/studio")
    assert not s.training_allowed  # the original public Space
    monkeypatch.setenv("MEDART_ORIGINAL_SPACE", "medart/studio")
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    assert s.training_allowed  # a duplicate
    monkeypatch.setenv("SPACE_ID", "medart/studio")
    monkeypatch.setenv("MEDART_TRAINING", "1")
    assert s.training_allowed


def test_preflight_blocks_then_launch_snapshots_approved_training_split(tmp_path):
    from PIL import Image

    from medart.workspace import NewImage, Workspace

    class Jobs:
        def submit(self, kind, config, title, output):
            self.args = (kind, config, title, output)
            return "job"

    ws = Workspace(tmp_path / "ws", tokenizer=None)
    rows = []
    for k, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        sha, size, _ = ws.store_image(Image.new("RGB", (32, 32), colour))
        rows.append(NewImage(sha, f"{k}.png", 32, 32, "RGB", size, label="a", split="test" if k == 2 else "train"))
    ws.add_images(rows)
    config = load_config(None, base_model="tiny")  # the paper's settings, HLDF's N by the schedule rule
    runs = tmp_path / "runs"
    runs.mkdir()
    first = preflight(ws, "r1", config, runs)
    assert not first.ok and any("no caption" in e for e in first.errors)
    ws.set_text(1, "A red image.", approve=True)
    ws.set_text(2, "A green image.")
    second = preflight(ws, "r1", config, runs)
    assert [e for e in second.errors if "not approved" in e] and "#2" in second.markdown()
    ws.approve([2])
    ws.set_text(3, "A blue held-out image.", approve=True)
    jobs = Jobs()
    job, check = launch(ws, "r1", config, runs, jobs)
    assert check.ok and job == "job"
    kind, config_file, title, output = jobs.args
    assert (kind, config_file, title, output) == ("train", runs / "r1" / "config.yaml", "r1", str(runs / "r1"))
    # 2 approved images x 15 epochs = 30 steps: the rule's floor N = 5 gives 6 colour steps of 2 images each
    assert any(i.startswith("HLDF: a colour step every N = 5 steps") and "6 colour step(s) in 30, each generating 2 "
               "image(s) with M = 10 solver steps (gradients through the last 2)" in i for i in check.details)
    # first what a person decides on, in one sentence; the arithmetic behind a fold after it
    assert check.headline == ("**2 approved caption(s) will be trained on** (1 class(es): a) in 30 steps, "
                              "about 11 s; 6 times along the way HLDF draws images from the captions and pulls "
                              "their colours towards the real images' of their class.")
    text = check.markdown()
    assert text.index(check.headline) < text.index("<details") < text.index("schedule rule") < text.index("</details>")
    # the plan in one line: steps, N, M, colour steps, and the time: 24 plain + 6 colour steps at 6.2x
    line = check.details[0]
    assert line.startswith("**30 steps**, N = 5, M = 10, 6 colour step(s); estimated time about 1 s + about 10 s")
    assert "a plain step 0.02 s, the tiny model's reference step on a 2-core CPU; a colour step about 6.2 plain" in line
    # the job's own command line, read by the CLI's parser, is this config on the snapshot, same plan
    from medart import hldf_plan
    from medart.cli import parse, train_config
    from medart.jobs.kinds import command

    queued = train_config(parse(command(kind, config_file)))
    assert queued == load_config(None, base_model="tiny", data=str(runs / "r1" / "data"), output=str(runs / "r1"))
    assert hldf_plan.plan(queued, 30, 1).every == 5 and queued.hldf.every is None and queued.hldf.mode == "balanced"
    paper_n = load_config(None, base_model="tiny", **{"hldf.every": 500})  # the paper's N on 30 steps:
    silent = preflight(ws, "r1", paper_n, runs)  # no colour step: HLDF would not happen, so it blocks
    assert not silent.ok and any("makes no colour step" in e for e in silent.errors)
    lora_only = preflight(ws, "r1", load_config(None, base_model="tiny", **{"hldf.enabled": False}), runs)
    assert lora_only.ok and any("HLDF off (no colour step)" in i for i in lora_only.details)
    assert lora_only.headline.endswith("HLDF makes no colour correction (LoRA only).")
    manifest = json.loads((runs / "r1" / "data" / "manifest.json").read_text())
    assert manifest["count"] == 2  # the held-out image stays out of training
    texts = [json.loads(line)["text"] for line in (runs / "r1" / "data" / "train" / "metadata.jsonl").open()]
    assert texts == ["A red image.", "A green image."]
    assert not [w for w in check.warnings if "held-out" in w]
    ws.set_split([3], "train")  # nothing held out any more: a warning, not a block
    third = preflight(ws, "r1", config, tmp_path / "runs")
    assert third.ok and [w for w in third.warnings if "No held-out images" in w]
    ws.close()


def test_app_and_command_line_choose_the_same_workspace(monkeypatch, tmp_path):
    """--workspace, else MEDART_WORKSPACE, else <home>/workspace: the app and the CLI agree, and
    the app's status line says which one it uses and why."""
    from medart.cli import parse
    from medart.places import workspace_folder

    monkeypatch.delenv("MEDART_WORKSPACE", raising=False)
    monkeypatch.setenv("MEDART_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    both = lambda: (studio_mod.Studio.create(home=None, base_model="tiny").workspace_dir,  # noqa: E731
                    Path(parse(["list"]).workspace).resolve())
    assert both() == (tmp_path / "home" / "workspace",) * 2
    monkeypatch.setenv("MEDART_WORKSPACE", str(tmp_path / "elsewhere"))
    app_ws, cli_ws = both()
    assert app_ws == cli_ws == tmp_path / "elsewhere"
    s = studio_mod.Studio.create(home=tmp_path / "h2", base_model="tiny")
    assert s.workspace_dir == tmp_path / "elsewhere"  # the variable wins over the home folder, as in the CLI
    assert f"Workspace: {tmp_path / 'elsewhere'} (MEDART_WORKSPACE)" in s.status_line()
    s = studio_mod.Studio.create(home=tmp_path / "h2", base_model="tiny", workspace=tmp_path / "flag")
    assert s.workspace_dir == tmp_path / "flag" and "(--workspace)" in s.status_line()
    assert app.parse_args(["--workspace", "w"]).workspace == "w"
    monkeypatch.delenv("MEDART_WORKSPACE")
    assert workspace_folder(None, tmp_path / "h3") == (tmp_path / "h3" / "workspace", "the home folder's")


def test_preflight_blocks_an_unknown_base_model_with_the_jobs_message(tmp_path):
    """`nonexistent-model` is no profile, folder or hub id: preflight stops there with the words
    loading it would fail with, instead of passing with a CPU-speed warning."""
    from PIL import Image

    from medart.profiles import BaseModelError, load_base
    from medart.workspace import NewImage, Workspace

    ws = Workspace(tmp_path / "ws", tokenizer=None)
    sha, size, _ = ws.store_image(Image.new("RGB", (32, 32), (200, 0, 0)))
    ws.add_images([NewImage(sha, "0.png", 32, 32, "RGB", size, label="a", split="train")])
    ws.set_text(1, "A red image.", approve=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(BaseModelError) as job:
        load_base("nonexistent-model")
    check = preflight(ws, "r1", load_config(None, base_model="nonexistent-model", max_steps=2), runs)
    assert not check.ok and check.errors == [str(job.value)] and str(job.value).startswith("Unknown base model")
    assert not any("impractically slow" in w for w in check.warnings)
    folder = preflight(ws, "r1", load_config(None, base_model=str(tmp_path / "ws"), max_steps=2), runs)
    assert any("not a diffusers pipeline" in e for e in folder.errors)  # a folder that holds no pipeline
    hub = preflight(ws, "r1", load_config(None, base_model="someone/model", max_steps=2), runs)
    assert not any("base model" in e.lower() for e in hub.errors)  # hub ids are loaded (or explained) later
