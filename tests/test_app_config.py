"""App settings without a server: login rules, Spaces behaviour, the Train tab's data snapshot."""

import json

import pytest

import app
from medart import studio as studio_mod
from medart.jobs.training import TrainSettings, launch, preflight, train_argv


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
        def submit(self, kind, argv, title, output):
            self.args = (kind, argv, title, output)
            return "job"

    ws = Workspace(tmp_path / "ws", tokenizer=None)
    rows = []
    for k, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        sha, size, _ = ws.store_image(Image.new("RGB", (32, 32), colour))
        rows.append(NewImage(sha, f"{k}.png", 32, 32, "RGB", size, label="a", split="test" if k == 2 else "train"))
    ws.add_images(rows)
    s = TrainSettings.paper("tiny")
    s.name = "r1"
    runs = tmp_path / "runs"
    runs.mkdir()
    first = preflight(ws, s, runs)
    assert not first.ok and any("no caption" in e for e in first.errors)
    ws.set_text(1, "A red image.", approve=True)
    ws.set_text(2, "A green image.")
    second = preflight(ws, s, runs)
    assert [e for e in second.errors if "not approved" in e] and "#2" in second.markdown()
    ws.approve([2])
    ws.set_text(3, "A blue held-out image.", approve=True)
    jobs = Jobs()
    job, check = launch(ws, s, runs, jobs)
    assert check.ok and job == "job"
    kind, argv, title, output = jobs.args
    assert kind == "train" and argv == train_argv(s, runs / "r1") and "--hldf-every" not in argv  # the rule
    assert argv[argv.index("--hldf-mode") + 1] == "balanced" and argv[argv.index("--hldf-steps") + 1] == "20"
    # 2 approved images x 15 epochs = 30 steps: the rule's floor N = 4 gives 7 colour steps of 1 class each
    assert any(i.startswith("HLDF: a colour step every N = 4 steps") and "7 colour step(s) in 30" in i
               for i in check.info), check.info
    # the job's own command line, read by the CLI's parser, makes the same plan
    from medart import hldf_plan
    from medart.cli import build_parser, train_config

    config = train_config(build_parser().parse_args(argv))
    assert hldf_plan.plan(config, 30, 1).every == 4 and config.hldf.mode == "balanced"
    s.hldf_every = 500  # the paper's N on 30 steps: no colour step, and preflight says so
    silent = preflight(ws, s, runs)
    assert silent.ok and any("makes no colour step" in w for w in silent.warnings)
    s.hldf_every = 0
    manifest = json.loads((runs / "r1" / "data" / "manifest.json").read_text())
    assert manifest["count"] == 2  # the held-out image stays out of training
    texts = [json.loads(line)["text"] for line in (runs / "r1" / "data" / "train" / "metadata.jsonl").open()]
    assert texts == ["A red image.", "A green image."]
    assert not [w for w in check.warnings if "held-out" in w]
    ws.set_split([3], "train")  # nothing held out any more: a warning, not a block
    third = preflight(ws, s, tmp_path / "runs")
    assert third.ok and [w for w in third.warnings if "No held-out images" in w]
    ws.close()
