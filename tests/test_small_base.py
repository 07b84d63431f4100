"""The `small` offline base: its architecture through the production loading path, its clear
error when its weights are not built, and the resumable pretraining script."""

import json

import pytest
import torch

from medart import profiles, tiny_base
from medart.profiles import BaseModelError, load_base


def test_small_random_builds_and_loads_through_from_pretrained():
    base = load_base("small-random")
    folder = profiles.Path(profiles.resolve("small-random")[0])
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtAlphaPipeline"
    assert (base.resolution, base.kind) == (64, "alpha")
    t = base.transformer.config
    assert (t.num_layers, t.num_attention_heads * t.attention_head_dim, t.caption_channels) == (6, 128, 128)
    assert base.vae.config.block_out_channels == [32, 64, 128]
    assert base.text_encoder.config.d_model == 128
    size = sum(p.numel() for m in (base.transformer, base.vae, base.text_encoder) for p in m.parameters())
    assert 4e6 < size < 7.5e6  # under 30 MB in fp32
    # the stock pipeline generates with it at 64 px
    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, height=64, width=64, use_resolution_binning=False,
                 clean_caption=False, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3)


def test_small_without_weights_says_how_to_build_them(monkeypatch, tmp_path):
    monkeypatch.setattr(tiny_base, "SMALL_DIR", tmp_path / "small-base")
    with pytest.raises(BaseModelError, match=r"python -m medart.tiny_pretrain --arch small"):
        load_base("small")


ARGS = ["--images", "24", "--vae-steps", "4", "--dit-steps", "6", "--dit-batch", "4", "--checkpoint-every", "2"]


def _weights(folder):
    return {p: (folder / p).read_bytes() for p in ("vae/diffusion_pytorch_model.safetensors",
                                                    "transformer/diffusion_pytorch_model.safetensors",
                                                    "text_encoder/model.safetensors")}


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [("vae", 2), ("dit", 4)])
def test_pretraining_resumes_exactly(tmp_path, monkeypatch, stop_at):
    from medart import tiny_pretrain

    whole = tmp_path / "whole"
    tiny_pretrain.main(ARGS + ["--out", str(whole), "--state", str(tmp_path / "s1")])

    save = tiny_pretrain.TrainState.save

    def save_then_stop(self, phase, step, *a, **k):
        save(self, phase, step, *a, **k)
        if (phase, step) == stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(tiny_pretrain.TrainState, "save", save_then_stop)
    state, out = tmp_path / "s2", tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        tiny_pretrain.main(ARGS + ["--out", str(out), "--state", str(state)])
    assert not out.exists()
    assert json.loads((state / stop_at[0] / "progress.json").read_text())["step"] == stop_at[1]
    monkeypatch.setattr(tiny_pretrain.TrainState, "save", save)
    with pytest.raises(SystemExit, match="--resume"):  # a state folder is never overwritten silently
        tiny_pretrain.main(ARGS + ["--out", str(out), "--state", str(state)])
    with pytest.raises(SystemExit, match="other settings"):
        tiny_pretrain.main(ARGS[:-5] + ["7", "--dit-batch", "4", "--checkpoint-every", "2", "--out", str(out),
                                        "--state", str(state), "--resume"])
    tiny_pretrain.main(ARGS + ["--out", str(out), "--state", str(state), "--resume"])
    assert _weights(out) == _weights(whole)


def test_small_data_mix_has_captioned_textures():
    import numpy as np

    from medart import textures, tiny_pretrain

    imgs, caps = tiny_pretrain.make_dataset(60, 0, tiny_pretrain.load_photos(), photo_share=0.0, texture_share=1.0)
    assert imgs.shape == (60, 64, 64, 3) and imgs.dtype == np.uint8
    assert all(any(k in c for k in ("noise", "stripes", "dots", "cells", "blobs")) for c in caps)
    assert all(any(name in c for name in textures.COLOURS) for c in caps)
    again, caps2 = tiny_pretrain.make_dataset(60, 0, tiny_pretrain.load_photos(), photo_share=0.0, texture_share=1.0)
    assert caps == caps2 and np.array_equal(imgs, again)
    # tiny's mix (no textures) is the data its shipped weights were trained on
    _, tiny_caps = tiny_pretrain.make_dataset(40, 0, tiny_pretrain.load_photos())
    assert not any("stripes" in c or "noise" in c for c in tiny_caps)


def test_shipped_small_base_loads_and_follows_colour_words():
    """The committed weights, through the production path: a pretrained base, not a random one."""
    base = load_base("small")
    assert profiles.resolve("small")[0] == str(tiny_base.SMALL_DIR)
    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)

    def mean_rgb(prompt):
        images = pipe([prompt] * 2, num_inference_steps=8, height=64, width=64, use_resolution_binning=False,
                      clean_caption=False, output_type="np", generator=torch.Generator().manual_seed(0)).images
        return images.mean(axis=(0, 1, 2))

    red, blue = mean_rgb("a plain red background"), mean_rgb("a plain blue background")
    assert red[0] - red[2] > 0.3 and blue[2] - blue[0] > 0.3, (red, blue)
