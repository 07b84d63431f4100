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
    (tmp_path / "transformer").mkdir()  # a PixArt-Σ checkpoint downloaded alone
    (tmp_path / "transformer" / "config.json").write_text("{}")
    with pytest.raises(BaseModelError, match="DiT alone.*--base-model pixart-sigma-512"):
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


def test_tiny_sigma_is_the_tiny_networks_in_a_sigma_pipeline(medart_cache):
    from medart.tiny_base import PRETRAINED_DIR

    folder = profiles.Path(profiles.resolve("tiny-sigma")[0])
    assert folder.parent == profiles.Path(medart_cache)  # built at first use, outside the repository
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtSigmaPipeline"
    dit = json.loads((folder / "transformer" / "config.json").read_text())
    assert (dit["interpolation_scale"], dit["use_additional_conditions"]) == (1, False)
    assert json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"] == 300
    sigma, alpha = load_base("tiny-sigma"), load_base("tiny")
    assert (sigma.kind, sigma.max_caption_tokens, alpha.kind, alpha.max_caption_tokens) == ("sigma", 300, "alpha", 120)
    assert type(sigma.pipeline()).__name__ == "PixArtSigmaPipeline"
    assert profiles.resolve("tiny-sigma")[0] == str(folder)  # built once
    for a, b in ((sigma.transformer, alpha.transformer), (sigma.text_encoder, alpha.text_encoder),
                 (sigma.vae, alpha.vae)):
        for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), n
    by_path = load_base(str(folder))  # a folder is of the kind its model_index.json names
    assert by_path.kind == "sigma" and profiles.kind_of(str(folder)) == "sigma"
    assert profiles.kind_of(str(PRETRAINED_DIR)) == "alpha"


def test_caption_limits_come_from_the_base():
    assert profiles.caption_limit("alpha") == 120 and profiles.caption_limit("sigma") == 300
    assert profiles.caption_limit("sigma", 200) == 200 and profiles.caption_limit("alpha", 60) == 60
    with pytest.raises(ValueError, match=r"more than PixArt-α reads \(120 T5 tokens\).*pixart-sigma-512"):
        profiles.caption_limit("alpha", 300)
    with pytest.raises(ValueError, match=r"more than PixArt-Σ reads \(300"):
        profiles.caption_limit("sigma", 301)
    assert [profiles.kind_of(n) for n in ("pixart-alpha-512", "pixart-sigma-512", "pixart-sigma-1024")] == \
        ["alpha", "sigma", "sigma"]


def _hub_cache(root, repo, files: dict) -> None:
    """A Hugging Face hub cache entry for `repo` holding `files` (relative path -> source file or dict)."""
    entry = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    for rel, src in files.items():
        dest = entry / "snapshots" / commit / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(src)) if isinstance(src, dict) else dest.write_bytes(src.read_bytes())


def test_sigma_profile_loads_its_dit_into_the_components_pipeline(tmp_path, monkeypatch):
    """The public layout: the Σ repository holds transformer/ only; the components repository
    (whose model_index.json names PixArtAlphaPipeline and has no transformer/) gives the rest.
    The tiny networks stand in for the real ones, read from a hub cache offline."""
    tiny = profiles.Path(profiles.resolve("tiny")[0])
    dit_config = json.loads((tiny / "transformer" / "config.json").read_text())
    dit_config["use_additional_conditions"] = True  # what Σ's pipeline cannot serve; the loader turns it off
    _hub_cache(tmp_path, "PixArt-alpha/PixArt-Sigma-XL-2-512-MS", {
        "transformer/config.json": dit_config,
        "transformer/diffusion_pytorch_model.safetensors": tiny / "transformer" / "diffusion_pytorch_model.safetensors",
    })
    parts = {p.relative_to(tiny).as_posix(): p for p in tiny.rglob("*")
             if p.is_file() and p.parts[len(tiny.parts)] in ("vae", "text_encoder", "tokenizer", "scheduler")}
    _hub_cache(tmp_path, profiles.SIGMA_COMPONENTS, {**parts, "model_index.json": json.loads(
        (tiny / "model_index.json").read_text())})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    base = load_base("pixart-sigma-512")
    assert (base.kind, base.max_caption_tokens, base.resolution) == ("sigma", 300, 64)
    assert base.transformer.use_additional_conditions is False
    assert type(base.pipeline()).__name__ == "PixArtSigmaPipeline"
    code = profiles.pipeline_code("pixart-sigma-512")
    assert "PixArtSigmaPipeline.from_pretrained(\"PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers\"" in code
    assert "use_additional_conditions=False" in code


def test_sigma_offline_error_names_both_repositories(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match="PixArt-Sigma-XL-2-512-MS.*pixart_sigma_sdxlvae_T5_diffusers.*tiny-sigma"):
        load_base("pixart-sigma-512")
