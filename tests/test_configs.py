"""The shipped reproduction configs load and carry the paper's settings."""

from pathlib import Path

import pytest

from medart.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["kvasir", "skin"])
def test_medart_configs_are_the_papers(name):
    c = load_config(CONFIGS / f"{name}.yaml")
    assert c.base_model == "pixart-alpha-512" and c.resolution == 512
    assert (c.hldf.enabled, c.hldf.every, c.hldf.steps, c.hldf.cfg, c.hldf.color_weight) == (True, 500, 20, 4.5, 1 / 20)
    assert (c.hldf.mode, c.hldf.color_target, c.hldf.color_coverage, c.hldf.color_balance, c.hldf.grad_steps) == (
        "paper", "image", "batch", "joint", None)
    assert (c.lora.rank, c.lora.t5, c.learning_rate, c.weight_decay, c.max_grad_norm) == (8, True, 1e-4, 1e-2, 1.0)
    assert (c.epochs, c.batch_size, c.seed, c.adam_8bit, c.random_flip, c.center_crop) == (15, 1, 42, True, False, False)
    assert c.ema_decay == 0.0 and c.hldf.color_per_class == 1  # the paper's own weights, image by image
    assert c.caption_dropout == 0.0 and c.report_to == "none"  # every step on its caption; nothing tracked


@pytest.mark.parametrize("name", ["kvasir", "skin"])
def test_baseline_configs_differ_only_by_hldf(name):
    med, base = load_config(CONFIGS / f"{name}.yaml"), load_config(CONFIGS / f"{name}-pixart.yaml")
    assert med.data == base.data and not base.hldf.enabled and base.ema_decay == med.ema_decay == 0.0
    assert base.caption_dropout == med.caption_dropout == 0.0
    assert (med.lora, med.learning_rate, med.epochs, med.seed) == (base.lora, base.learning_rate, base.epochs, base.seed)


# ---- one definition: every TrainConfig field is a setting with help text and a flag ----------------
FLAGS_OF_EARLIER_VERSIONS = (
    "--lr", "--hldf-every", "--hldf-steps", "--hldf-grad-steps", "--cfg", "--color-weight", "--no-hldf", "--rank",
    "--lora-alpha", "--no-t5-lora", "--adam-8bit", "--validation-every", "--validation-prompt", "--checkpoint-every",
    "--hldf-mode", "--max-steps", "--epochs", "--resolution", "--seed", "--resume", "--base-model", "--data",
    "--output", "--preflight",
)


def _another_value(s):
    """(flags, the value they give) for a setting: something other than its default."""
    if s.type is bool:
        return ([("--no-" + s.flag[2:]) if s.default else s.flag], not s.default)
    if s.type == list[str]:
        return ([s.flag, "a red lesion", s.flag, "a blue one"], ["a red lesion", "a blue one"])
    if s.type == tuple[str, ...]:
        return ([s.flag, "to_q", "to_v"], ("to_q", "to_v"))
    if s.choices:
        value = next(c for c in s.choices if c != s.default)
        return ([s.flag, value], value)
    value = {int: 7, float: 0.25, str: "something-else"}[s.type]
    return ([s.flag, str(value)], value)


def test_every_setting_has_help_and_a_flag_that_sets_it():
    from medart import config
    from medart.cli import parse, train_config

    paths = [s.path for s in config.settings()]
    assert "hldf.every" in paths and "lora.rank" in paths and len(paths) == len(set(paths)) > 40
    for s in config.settings():
        assert s.help, f"{s.path} has no help text"
        flags, value = _another_value(s)
        built = train_config(parse(["train", *flags]))
        got = built
        for part in s.path.split("."):
            got = getattr(got, part)
        assert got == value, (s.path, flags)
        assert got != s.default


def test_the_flags_of_earlier_versions_keep_their_names():
    from medart.cli import build_parser

    train = build_parser().commands["train"]
    known = {flag for action in train._actions for flag in action.option_strings}
    assert set(FLAGS_OF_EARLIER_VERSIONS) <= known


def test_a_resolved_config_file_reads_back_the_same(tmp_path):
    from medart.config import save_config

    config = load_config(CONFIGS / "kvasir.yaml", **{"hldf.grad_steps": 3, "validation_prompts": ["a", "b"]})
    save_config(config, tmp_path / "config.yaml", comment="HLDF: a plan\nsecond line")
    assert load_config(tmp_path / "config.yaml") == config
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        load_config(None, checkpoint_every=0)
