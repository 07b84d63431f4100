"""PixArt-Σ as a base model, end to end on `tiny-sigma`: train with HLDF on captions longer than
PixArt-α reads, generate with the CLI, compare and evaluate; the same captions are refused on α."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import make_data
from medart.cli import main as cli_main
from medart.config import load_config
from medart.studio import Studio
from medart.ui import compare

SENTENCE = "A fundus photograph of a retina, orange red with dark red vessels and a pale optic disc,"


def long_caption(tokenizer, low=121, high=300) -> str:
    """A caption of between `low` and `high` tokens of `tokenizer`."""
    text = SENTENCE
    while len(tokenizer(text).input_ids) < (low + high) // 2:
        text += " " + SENTENCE
    assert low <= len(tokenizer(text).input_ids) <= high
    return text


def test_train_tab_preflight_takes_the_limit_of_the_runs_base(tmp_path):
    from medart.jobs.training import preflight
    from medart.profiles import caption_tokenizer
    from medart.workspace import NewImage, Workspace

    tokenizer = caption_tokenizer("tiny-sigma")[1]
    ws = Workspace(tmp_path / "ws", tokenizer=tokenizer)
    sha, size, _ = ws.store_image(Image.new("RGB", (32, 32), (200, 40, 40)))
    (image_id,) = ws.add_images([NewImage(sha, "0.png", 32, 32, "RGB", size, label="a", split="train")])
    ws.set_text(image_id, long_caption(tokenizer), approve=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    too_long = "longer than 120 T5 tokens"
    alpha = preflight(ws, "r", load_config(None, base_model="tiny", max_steps=4), runs)
    assert any(too_long in e for e in alpha.errors)
    sigma = preflight(ws, "r", load_config(None, base_model="tiny-sigma", max_steps=4), runs)
    assert not any("T5 tokens" in e for e in sigma.errors), sigma.errors
    lowered = preflight(ws, "r", load_config(None, base_model="tiny-sigma", max_steps=4, max_caption_tokens=100), runs)
    assert any("longer than 100 T5 tokens" in e for e in lowered.errors)
    above = preflight(ws, "r", load_config(None, base_model="tiny", max_steps=4, max_caption_tokens=300), runs)
    assert any("more than PixArt-α reads" in e for e in above.errors)


@pytest.mark.slow  # trains, generates, compares and evaluates (about 20 s)
def test_sigma_trains_generates_compares_and_reads_long_captions(tmp_path, capsys, medart_cache):
    from medart.profiles import caption_tokenizer

    tokenizer = caption_tokenizer("tiny-sigma")[1]
    data = make_data(tmp_path / "data", n=2)
    rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
    rows[0]["text"] = long_caption(tokenizer)
    n_tokens = len(tokenizer(rows[0]["text"]).input_ids)
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    studio = Studio(home=tmp_path / "home", base_model="tiny-sigma")
    run = studio.runs_dir / "sigma"
    flags = ["--data", str(data), "--max-steps", "4", "--hldf-every", "2", "--hldf-steps", "4",
             "--validation-every", "1000", "--checkpoint-every", "1000", "--lr", "1e-2"]

    # PixArt-α reads 120 tokens: the long caption is refused, and so is a limit above 120
    assert cli_main(["train", "--base-model", "tiny", "--output", str(tmp_path / "alpha"), *flags]) == 2
    err = capsys.readouterr().err
    assert f"{rows[0]['file_name']}: caption has {n_tokens} tokens, over the limit of 120" in err
    assert "a PixArt-Σ base, --base-model pixart-sigma-512, reads 300" in err
    assert cli_main(["train", "--base-model", "tiny", "--max-caption-tokens", "300",
                     "--output", str(tmp_path / "alpha2"), *flags]) == 2
    assert "more than PixArt-α reads (120 T5 tokens)" in capsys.readouterr().err

    # PixArt-Σ reads 300: the same data trains, with colour steps
    assert cli_main(["train", "--base-model", "tiny-sigma", "--output", str(run), *flags]) == 0
    config = load_config(run / "config.yaml")
    assert (config.base_model, config.max_caption_tokens) == ("tiny-sigma", 300)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    colour = [r for r in metrics if "color_loss" in r]
    assert len(colour) == 2 and all(r["grad_norm_color"] > 0 for r in colour)
    for part in ("dit", "t5"):
        assert (run / "adapter" / part / "adapter_model.safetensors").stat().st_size > 0
    card = (run / "adapter" / "README.md").read_text()
    assert "PixArtSigmaPipeline.from_pretrained(" in card

    # generate from the run (its base, tiny-sigma, comes from its config)
    out = tmp_path / "long.png"
    assert cli_main(["generate", "--lora", str(run), "--prompt", rows[0]["text"], "--seed", "3", "--steps", "8",
                     "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (64, 64) and np.asarray(im).std() > 1

    # Compare: base and tuned from one pipeline of the run's base
    pair, base, tuned, _, _, table = compare.compare(studio, "sigma", rows[0]["text"], 3, 8, 4.5, 1.0, None)
    gen = studio.generator(studio.run_dir("sigma"))
    assert (gen.base.kind, type(gen.base.pipeline()).__name__) == ("sigma", "PixArtSigmaPipeline")
    assert np.abs(np.asarray(base, int) - np.asarray(tuned, int)).max() > 0
    assert np.array_equal(np.asarray(tuned), np.asarray(Image.open(out)))  # the CLI's image, the same pixels
    assert list(table["image"]) == ["base", "tuned"]

    # evaluate: the colour metric of base and tuned against the training images (kept on purpose)
    assert cli_main(["evaluate", "--run", str(run), "--real", str(data), "--metrics", "color",
                     "--per-caption", "1", "--steps", "4", "--keep-seen"]) == 0
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(report["distribution"]) >= {"base", "tuned"}
    assert report["distribution"]["tuned"]["color_distance"] >= 0
