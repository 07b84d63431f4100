"""Base-model profiles: the tiny model through the real loading path, and clear errors."""

import json
import time

import pytest
import torch

from medart import profiles
from medart.profiles import BaseModelError, load_base


def test_tiny_loads_through_from_pretrained(tiny_dir):
    index = json.loads((profiles.Path(tiny_dir) / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtAlphaPipeline"
    assert index["transformer"][1] == "PixArtTransformer2DModel" and index["text_encoder"][1] == "T5EncoderModel"
    base = load_base("tiny")
    assert (base.resolution, base.dtype, base.device.type) == (64, torch.float32, "cpu")
    assert not any(p.requires_grad for p in base.transformer.parameters())
    again = load_base(tiny_dir)  # the same folder by path gives the same weights
    for (n, a), (_, b) in zip(base.transformer.state_dict().items(), again.transformer.state_dict().items()):
        assert torch.equal(a, b), n


def test_tiny_random_weights_are_reproducible(tmp_path):
    from medart.tiny_base import ensure_tiny

    built = profiles.Path(profiles.resolve("tiny-random")[0])
    rebuilt = ensure_tiny(tmp_path / "tiny")
    for part in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (rebuilt / part).read_bytes() == (built / part).read_bytes()


def test_tiny_is_the_pretrained_base_and_differs_from_random():
    from medart.tiny_base import PRETRAINED_DIR

    assert profiles.resolve("tiny")[0] == str(PRETRAINED_DIR)
    pretrained, random = load_base("tiny"), load_base("tiny-random")
    assert type(pretrained.transformer) is type(random.transformer)
    config = {k: v for k, v in pretrained.transformer.config.items() if k != "_name_or_path"}
    assert config == {k: v for k, v in random.transformer.config.items() if k != "_name_or_path"}
    w1 = pretrained.transformer.state_dict()["proj_out.weight"]
    assert not torch.equal(w1, random.transformer.state_dict()["proj_out.weight"])


def test_unreachable_hub_weights_fail_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(BaseModelError, match="huggingface-cli download PixArt-alpha/PixArt-XL-2-512x512"):
        load_base("pixart-alpha-512")
    assert time.perf_counter() - t < 30  # bounded, not a hang (the probe itself waits at most 3 s)


def test_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(BaseModelError, match="not a diffusers pipeline"):
        load_base(str(tmp_path))
    with pytest.raises(BaseModelError, match="Unknown base model"):
        profiles.resolve("no-such-profile")


def test_defaults_follow_the_machine(monkeypatch):
    monkeypatch.delenv("MEDART_BASE_MODEL", raising=False)
    expected = "pixart-alpha-512" if torch.cuda.is_available() else "tiny"
    assert profiles.default_base_model() == expected
    monkeypatch.setenv("MEDART_BASE_MODEL", "/models/pixart")
    assert profiles.default_base_model() == "/models/pixart"
    assert profiles.default_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert profiles.default_device_dtype("cuda")[1] == torch.bfloat16
    with pytest.raises(BaseModelError, match="Unknown architecture"):
        profiles.build_architecture("dit-huge", "cpu", torch.float32)
