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


@pytest.mark.parametrize("name", ["kvasir", "skin"])
def test_baseline_configs_differ_only_by_hldf(name):
    med, base = load_config(CONFIGS / f"{name}.yaml"), load_config(CONFIGS / f"{name}-pixart.yaml")
    assert med.data == base.data and not base.hldf.enabled
    assert (med.lora, med.learning_rate, med.epochs, med.seed) == (base.lora, base.learning_rate, base.epochs, base.seed)
