"""HLDF's schedule rule, the paper mode's formula, and the default's direction on real classes."""

import json

import numpy as np
import pytest
import torch

from medart import colour_classes, hldf_plan
from medart.cli import main as cli_main
from medart.config import load_config
from medart.generate import Generator
from medart.hldf import Trainer, train
from medart.losses import channel_moments
from helpers import make_data


@pytest.mark.parametrize("total,every,count", [
    (300, 5, 60),  # 20 images x 15 epochs: the paper's N = 500 would make none
    (720, 7, 102),
    (1500, 15, 100),  # 100 images x 15 epochs
    (49_999, 499, 100),
    (120_000, 500, 240),  # Kvasir: the paper's schedule exactly
])
def test_schedule_rule_makes_colour_steps_and_keeps_the_papers_n_on_long_runs(total, every, count):
    plan = hldf_plan.plan(load_config(None), total, groups=3)
    assert (plan.every, plan.colour_steps) == (every, count)
    assert ("paper's N" in plan.rule) == (every == 500)
    assert [s for s in range(total) if plan.is_colour_step(s)][:2] == [every - 1, 2 * every - 1]
    assert plan.colour_steps_before(2 * every - 1) == 1 and plan.colour_steps_before(2 * every) == 2


def test_explicit_n_wins_and_a_run_without_colour_steps_is_named(tmp_path, capsys):
    plan = hldf_plan.plan(load_config(None, **{"hldf.every": 500}), 300)
    assert (plan.every, plan.colour_steps, plan.rule) == (500, 0, "set explicitly")
    # priced by calls on a CPU (overhead-bound tiny model), by calls x batch on a GPU
    cpu, gpu = (hldf_plan.plan(load_config(None), 300, 3, device=d) for d in ("cpu", "cuda"))
    assert cpu.cost_ratio == pytest.approx(6.25) and gpu.cost_ratio > 2 * cpu.cost_ratio - 1
    assert cpu.added_fraction == pytest.approx(60 * 5.25 / 300)
    assert plan.summary().startswith("No colour step: N = 500")
    data = make_data(tmp_path / "data", n=4)
    args = ["train", "--base-model", "tiny", "--data", str(data), "--output", str(tmp_path / "run"), "--preflight"]
    assert cli_main(args + ["--hldf-every", "500"]) == 2  # HLDF on without a colour step: refused
    out = capsys.readouterr()
    assert "4 training image(s) in 1 class(es)" in out.out and "60 steps" in out.out
    assert "makes no colour step" in out.err
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "a colour step every N = 5 steps" in out and not (tmp_path / "run").exists()
    assert "60 steps, N = 5, M = 10, 12 colour step(s); estimated time about" in out


@pytest.mark.slow  # trains the tiny model for 4 steps
def test_an_explicit_n_over_the_run_trains_lora_only_and_says_so(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=2)
    run = tmp_path / "run"
    assert cli_main(["train", "--base-model", "tiny", "--data", str(data), "--output", str(run), "--max-steps", "4",
                     "--hldf-every", "500", "--validation-every", "100"]) == 0  # the explicit N is kept
    assert "warning: No colour step: N = 500 (set explicitly) is more than the run's 4 steps" in capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4] and not any("color_loss" in r for r in rows)


@pytest.mark.slow  # trains
def test_paper_mode_is_the_papers_formula(tmp_path, monkeypatch):
    """mode: paper generates the batch's own caption, backpropagates through all M solver
    steps, compares with that image's own moments and adds 1/M of the colour gradient,
    unscaled, to the diffusion gradient (clipping off here, so the sum shows)."""
    import medart.hldf as hldf_mod
    from medart import dpm_solver

    data = make_data(tmp_path / "data", n=2)
    seen = {}
    real_sample, real_loss = dpm_solver.sample, hldf_mod.color_loss_to_moments

    def sample(*args, **kw):
        if kw.get("grad"):
            seen["sample"] = kw
        return real_sample(*args, **kw)

    def loss(generated, mean, std, reduction, per_target):
        seen["target"] = (mean.clone(), std.clone(), reduction, per_target)
        return real_loss(generated, mean, std, reduction, per_target)

    monkeypatch.setattr(dpm_solver, "sample", sample)
    monkeypatch.setattr(hldf_mod, "color_loss_to_moments", loss)
    grads = {}
    for name, enabled in (("hldf", True), ("plain", False)):
        cfg = load_config(None, base_model="tiny", data=str(data), output=str(tmp_path / name), max_steps=1,
                          max_grad_norm=1e9, **{"hldf.mode": "paper", "hldf.every": 1, "hldf.steps": 3,
                                                "hldf.enabled": enabled})
        trainer = Trainer(cfg)
        trainer.optimizer.register_step_pre_hook(  # the gradient the optimiser is about to apply
            lambda opt, args, kwargs, t=trainer, n=name: grads.__setitem__(n, torch.cat([p.grad.flatten() for p in t.params])))
        row = trainer.train_step()
        if enabled:
            examples, pixels, _ = trainer.data.batch(0)
            colour_row = row
    assert seen["sample"]["grad_steps"] == 3 and seen["sample"]["cfg"] == 4.5
    mean, std, reduction, per_target = seen["target"]
    want_mean, want_std = channel_moments(pixels)
    assert torch.equal(mean.cpu(), want_mean) and torch.equal(std.cpu(), want_std)
    assert (reduction, per_target) == ("sum", 1)  # the paper's sum over channels, image by image
    assert colour_row["color_weight"] == pytest.approx(1 / 3) and colour_row["color_scale"] == 1.0
    assert colour_row["color_groups"] == [examples[0].group]
    colour_grad = grads["hldf"] - grads["plain"]  # same seeds: the diffusion parts are identical
    assert colour_grad.norm().item() == pytest.approx(colour_row["grad_norm_color"], rel=1e-4)
    assert grads["plain"].norm().item() == pytest.approx(colour_row["grad_norm_diffusion"], rel=1e-5)


@pytest.mark.slow  # three training runs
def test_default_hldf_lowers_every_class_colour_distance(tmp_path):
    """The product's defaults (no HLDF flag) against LoRA-only at equal steps, one seed, on three
    classes of real images (fundus, histology, a grayscale MR slice; 8 each): every class's
    generated images get closer in colour to its unseen real tiles. The run also shows its
    per-class curve from step 0, and reports it in status.json and the model card."""
    data = colour_classes.build(tmp_path / "data", n_train=8, n_reference=16)
    distances = {}
    for name, extra in (("lora", {"hldf.enabled": False}), ("default", {})):
        out = tmp_path / name
        train(load_config(None, base_model="tiny", data=str(data.train), output=str(out), **extra))
        gen = Generator("tiny", out / "adapter")
        distances[name] = {
            c: colour_classes.distance(gen.generate([caption] * 8, list(range(1000, 1008))), data.reference[c])
            for c, caption in data.captions.items()
        }
    print("set colour distance per class:", distances)
    for c in data.captions:
        assert distances["default"][c] < 0.8 * distances["lora"][c], c

    run = tmp_path / "default"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and sorted(rows[0]["color_distance"]) == ["fundus", "histology", "mri"]
    plan = json.loads((run / "data.json").read_text())["hldf_plan"]
    assert (plan["total_steps"], plan["every"], plan["colour_steps"]) == (360, 5, 72)
    colour = [r for r in rows if "color_loss" in r]
    assert len(colour) == 72 and [r["color_groups"] for r in colour[:4]] == [["fundus"], ["histology"], ["mri"], ["fundus"]]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["colour_steps"] == 72
    assert status["color_distance"] == rows[-1]["color_distance"] and rows[-1]["step"] == 360
    card = (run / "adapter" / "README.md").read_text()
    assert "## Colour distance per class" in card and "| mri |" in card and "N = 5" in card
    assert (run / "config.yaml").read_text().startswith("# HLDF: a colour step every N = 5 steps")
    assert np.isfinite(list(status["color_distance"].values())).all()
