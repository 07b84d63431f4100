"""LoRA strength through peft's own scaling: 0 is the base model exactly, s scales every adapter by s."""

import numpy as np
import pytest

from helpers import make_tuned_run
from medart import lora
from medart.generate import Generator


def test_strength_zero_is_the_base_and_strength_scales_peft_scaling(tmp_path):
    run = make_tuned_run(tmp_path / "run")
    tuned = Generator(None, run)
    base = Generator("tiny")
    prompt, seed = ["A fundus photograph of a retina, mostly orange."], [3]
    as_base = np.asarray(tuned.generate(prompt, seed, steps=4, lora_scale=0.0)[0])
    assert np.array_equal(as_base, np.asarray(base.generate(prompt, seed, steps=4)[0]))
    full = np.asarray(tuned.generate(prompt, seed, steps=4, lora_scale=1.0)[0])
    assert not np.array_equal(full, as_base)
    layers = lora.lora_layers(tuned.base.transformer)
    assert layers and all(layer.scaling["default"] == pytest.approx(1.0) for layer in layers)  # alpha = rank
    tuned.set_lora_scale(0.5)
    assert all(layer.scaling["default"] == pytest.approx(0.5) and not layer.disable_adapters for layer in layers)
    tuned.set_lora_scale(0.0)
    assert all(layer.disable_adapters for layer in layers)
    again = np.asarray(tuned.generate(prompt, seed, steps=4, lora_scale=1.0)[0])
    assert np.array_equal(again, full)  # back to full strength: the same pixels
