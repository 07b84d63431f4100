"""Aspect-ratio buckets: bucket sizes and assignment, one-bucket batches, preflight, and a
bucketed HLDF run on the tiny base whose colour steps generate non-square images."""

import io
import json
import math
import os
import signal

import pytest
import torch
from PIL import Image

from medart import buckets, dpm_solver
from medart.cli import main as cli_main
from medart.config import load_config
from medart.data import DataError, Example, TrainData
from helpers import assert_same_losses, make_shaped_data

ENDOSCOPY, DERMOSCOPY, SLIDE = (1280, 1024), (600, 450), (768, 1024)  # (width, height)


@pytest.mark.parametrize("resolution, multiple, landscape, portrait, square", [
    (512, 16, (576, 448), (448, 576), (512, 512)),  # PixArt-α 512: its own bins, unchanged
    (1024, 16, (1152, 896), (896, 1152), (1024, 1024)),
    (64, 8, (72, 56), (56, 72), (64, 64)),  # the tiny twin: VAE x4, patch 2
])
def test_known_shapes_go_to_the_expected_bucket(resolution, multiple, landscape, portrait, square):
    sizes = buckets.bucket_sizes(resolution, multiple)
    assert buckets.nearest(ENDOSCOPY, sizes) == landscape
    assert buckets.nearest(DERMOSCOPY, sizes) == landscape
    assert buckets.nearest(SLIDE, sizes) == portrait
    assert buckets.nearest((1024, 1280), sizes) == portrait  # portrait and landscape alike
    assert buckets.nearest((333, 333), sizes) == square
    assert buckets.nearest((4000, 1000), sizes) == sizes[0] and sizes[0][0] == 4 * sizes[0][1]  # PixArt's widest
    for w, h in sizes:
        assert w % multiple == 0 and h % multiple == 0
        assert abs(w * h / resolution**2 - 1) < 0.25  # about resolution² pixels each
    assert len(buckets.bucket_sizes(512, 16)) == 33  # diffusers' ASPECT_RATIO_512_BIN as it is
    assert buckets.counts([ENDOSCOPY, DERMOSCOPY, SLIDE], resolution, multiple) == {landscape: 2, portrait: 1}
    with pytest.raises(ValueError, match="multiple of"):
        buckets.bucket_sizes(60, 8)


def test_model_multiple_reads_the_tiny_configs():
    assert buckets.model_multiple("tiny") == 8 and buckets.model_multiple("pixart-alpha-512") == 16


def _examples(shapes):
    """In-memory examples: (label, size, count) -> PNG examples of that size."""
    found = []
    for label, size, n in shapes:
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", size, (40 * i % 255, 90, 160)).save(buf, format="PNG")
            found.append(Example(f"{label}-{i}.png", buf.getvalue(), f"a {label}", f"{label}{i}", size, label))
    return found


def _data(examples, rank=0, world=1, **kw):
    config = load_config(None, buckets=True, **kw)
    return TrainData(examples, config, 64, rank, world, multiple=8)


def test_every_batch_comes_from_one_bucket_deterministically():
    examples = _examples([("endo", (160, 128), 5), ("slide", (96, 128), 3), ("square", (70, 70), 2)])
    data = _data(examples, batch_size=2)
    assert data.bucket_counts() == {(72, 56): 5, (64, 64): 2, (56, 72): 3}
    assert data.steps_per_epoch == 2 + 1 + 1  # whole batches only: a bucket's remainder sits the epoch out
    seen, epochs = [], {}
    for step in range(3 * data.steps_per_epoch):
        exs, pixels, epoch = data.batch(step)
        size = data.size_of(exs[0])
        assert {data.size_of(ex) for ex in exs} == {size} and len(exs) == 2
        assert pixels.shape == (2, 3, size[1], size[0]) and pixels.abs().max() <= 1.0
        epochs.setdefault(epoch, []).append([ex.name for ex in exs])
        seen += [ex.name for ex in exs]
    for names in epochs.values():  # no image twice in an epoch
        flat = [n for batch in names for n in batch]
        assert len(flat) == len(set(flat)) == 8
    assert epochs[0] != epochs[1]  # each epoch shuffled anew
    again = _data(examples, batch_size=2)  # a resumed run draws the same batches and crops
    for step in (0, 5, 11):
        assert [e.name for e in again.batch(step)[0]] == [e.name for e in data.batch(step)[0]]
        assert torch.equal(again.batch(step)[1], data.batch(step)[1])
    # two processes: at every step both train on the same bucket, on different images
    ranks = [_data(examples, rank=r, world=2) for r in (0, 1)]
    assert ranks[0].steps_per_epoch == 2 + 1 + 1
    for step in range(8):
        (a,) = ranks[0].batch(step)[0]
        (b,) = ranks[1].batch(step)[0]
        assert ranks[0].size_of(a) == ranks[1].size_of(b) and a.name != b.name


def test_caching_and_cropping_follow_the_bucket():
    exact, cropped = _examples([("exact", (144, 112), 1), ("crop", (160, 128), 1)])
    data = _data([exact, cropped])
    assert data.size_of(exact) == data.size_of(cropped) == (72, 56)
    assert data.deterministic(exact) and not data.deterministic(cropped)  # only a random crop varies
    assert _data([exact, cropped], center_crop=True).deterministic(cropped)
    assert data.cache_tag(exact) == "72x56"
    assert data.full_view(cropped).shape == (3, 56, 72)
    # without buckets: square crops at the resolution, as the paper (and as before)
    plain = TrainData([exact, cropped], load_config(None), 64)
    assert plain.size_of(cropped) == (64, 64) and plain.cache_tag(cropped) == "64" and not plain.buckets
    assert plain.pixels(cropped, 0, 1).shape == (3, 64, 64) and plain.steps_per_epoch == 2
    assert not plain.deterministic(exact)


def test_no_bucket_with_a_whole_batch_is_a_clear_error():
    with pytest.raises(DataError, match="No aspect-ratio bucket holds a whole batch of 4.*72x56 \\(3\\)"):
        _data(_examples([("endo", (160, 128), 3), ("slide", (96, 128), 3)]), batch_size=4)


def test_size_conditioned_transformer_gets_the_real_size():
    """PixArt-α 1024's size conditioning (use_additional_conditions) gets the bucket's (height,
    width) in pixels; the 512 model and the tiny twin get none."""
    from diffusers import PixArtTransformer2DModel

    kw = dict(in_channels=4, out_channels=8, patch_size=2, num_layers=1, attention_head_dim=12, num_attention_heads=2,
              caption_channels=16, cross_attention_dim=24, norm_type="ada_norm_single", num_embeds_ada_norm=1000,
              norm_elementwise_affine=False, norm_eps=1e-6, sample_size=8)
    latents = torch.randn(2, 4, 6, 10)  # a 80x48 image
    plain = PixArtTransformer2DModel(**kw, use_additional_conditions=False)
    assert dpm_solver.size_conditions(plain, latents) == {"resolution": None, "aspect_ratio": None}
    sized = PixArtTransformer2DModel(**kw, use_additional_conditions=True)
    added = dpm_solver.size_conditions(sized, latents, batch=4)
    assert added["resolution"].tolist() == [[48.0, 80.0]] * 4
    assert added["aspect_ratio"].flatten().tolist() == pytest.approx([0.6] * 4)
    embeds, mask = torch.randn(2, 5, 16), torch.ones(2, 5)
    out = dpm_solver.sample(sized, dpm_solver.DPMSolverMultistepScheduler(), latents, embeds, mask, embeds, mask,
                            steps=2)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_preflight_lists_the_buckets(tmp_path, capsys):
    data = make_shaped_data(tmp_path / "data", {"endoscopy": ((160, 128), 3, (180, 60, 50)),
                                                "slide": ((96, 128), 3, (200, 120, 200))})
    argv = ["train", "--base-model", "tiny", "--data", str(data), "--output", str(tmp_path / "run"), "--preflight",
            "--epochs", "2", "--batch-size", "2", "--hldf-every", "2"]
    assert cli_main(argv + ["--buckets"]) == 0
    out = capsys.readouterr().out
    assert "Aspect-ratio buckets (width x height: images): 72x56 (3), 56x72 (3)." in out
    assert "leaves out 2 image(s) (2 step(s) per epoch)" in out and "4 steps of batch 2" in out
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "buckets" not in out and "6 steps of batch 2" in out  # 6 // 2 square batches an epoch


@pytest.mark.slow  # trains the tiny model three times for a few steps
def test_bucketed_hldf_run_generates_at_the_bucket_size_and_resumes_exactly(tmp_path):
    from medart.hldf import train

    # landscape "endoscopy" at exactly its bucket's shape (latents cached), portrait "slides" cropped
    data = make_shaped_data(tmp_path / "data", {"endoscopy": ((144, 112), 3, (180, 60, 50)),
                                                "slide": ((96, 128), 2, (200, 120, 200))})

    def config(name, **kw):
        settings = {"base_model": "tiny", "data": str(data), "output": str(tmp_path / name), "buckets": True,
                    "max_steps": 6, "validation_every": 1000, "checkpoint_every": 2, "hldf.every": 2, "hldf.steps": 3}
        return load_config(None, **{**settings, **kw})

    run = train(config("run"))
    rows = [r for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    colour = [r for r in rows if "color_loss" in r]
    assert len(colour) == 3 and all(math.isfinite(r["color_loss"]) and r["grad_norm_color"] > 0 for r in colour)
    # balanced mode: classes in turn, each generated at its bucket's size (the tiny VAE: latents / 4)
    assert [(r["color_groups"], r["color_size"]) for r in colour] == [
        (["endoscopy"], "72x56"), (["slide"], "56x72"), (["endoscopy"], "72x56")]
    info = json.loads((run / "data.json").read_text())
    assert info["buckets"] == {"72x56": 3, "56x72": 2}
    card = (run / "adapter" / "README.md").read_text()
    assert "Aspect-ratio buckets (images resized to cover their bucket, no square crop): " in card
    assert "72x56 px (3 images)" in card and "56x72 px (2 images)" in card
    assert (run / "adapter" / "dit" / "adapter_model.safetensors").stat().st_size > 0
    assert (run / "adapter" / "t5" / "adapter_model.safetensors").stat().st_size > 0
    cached = sorted(p.name.split("-")[1] for p in (run / "cache" / "latents").glob("*.safetensors"))
    assert cached == ["72x56.safetensors"] * 3  # the exact-shape images only; the cropped ones vary
    with Image.open(run / "samples" / "step-000000" / "00.png") as im:
        assert im.size == (64, 64)  # validation samples stay square at the resolution

    # the paper's colour step compares with the batch's own images: it generates at their bucket's size
    from medart.hldf import Trainer

    trainer = Trainer(config("paper", max_steps=3, **{"hldf.mode": "paper", "hldf.every": 1}))
    expected_sizes = [buckets.name(trainer.data.size_of(trainer.data.batch(step)[0][0])) for step in range(3)]
    trainer.run_loop()
    rows = [r for r in trainer.run.metrics() if "loss" in r]
    assert [r["color_size"] for r in rows] == expected_sizes and set(expected_sizes) == {"72x56", "56x72"}
    assert all(math.isfinite(r["color_loss"]) for r in rows)

    # stopped after step 3 (its checkpoint is step 4), resumed: the same losses as without a stop
    def progress(step, total, last):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = train(config("stopped"), progress=progress)
    assert json.loads((stopped / "status.json").read_text())["step"] == 4
    train(config("stopped", resume="latest"))
    assert_same_losses(run, stopped, 6)


def test_train_tab_preflight_plans_with_the_buckets():
    """The workspace preflight sorts the approved images (their stored sizes) into buckets and
    counts an epoch's steps as whole one-bucket batches."""
    from types import SimpleNamespace

    from medart.jobs.training import bucket_counts_of, hldf_plan_of

    approved = [SimpleNamespace(width=w, height=h, label=label, text="a caption")
                for (w, h), label, n in ((ENDOSCOPY, "endo", 5), (SLIDE, "slide", 3)) for _ in range(n)]
    config = load_config(None, base_model="tiny", buckets=True, batch_size=2, epochs=3, **{"hldf.every": 2})
    assert bucket_counts_of(config, approved) == {(72, 56): 5, (56, 72): 3}
    assert hldf_plan_of(config, approved).total_steps == 3 * (2 + 1)
    config.buckets = False
    assert hldf_plan_of(config, approved).total_steps == 3 * 4


def test_train_tab_preflight_lists_the_buckets(tmp_path):
    from medart.jobs.training import preflight
    from medart.workspace import NewImage, Workspace

    ws = Workspace(tmp_path / "ws", tokenizer=None)
    rows = []
    for k, size in enumerate([(160, 128), (160, 128), (96, 128)]):
        sha, nbytes, _ = ws.store_image(Image.new("RGB", size, (50 * k, 90, 160)))
        rows.append(NewImage(sha, f"{k}.png", *size, "RGB", nbytes, label="a", split="train"))
    ids = ws.add_images(rows)
    for i in ids:
        ws.set_text(i, "A blue image.", approve=True)
    config = load_config(None, base_model="tiny", buckets=True, **{"hldf.every": 2})
    text = preflight(ws, "r1", config, tmp_path / "runs").markdown()
    assert "Aspect-ratio buckets (width x height: images): 72x56 (2), 56x72 (1)." in text
    config.buckets = False
    assert "Aspect-ratio" not in preflight(ws, "r1", config, tmp_path / "runs").markdown()
