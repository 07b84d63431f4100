"""`evaluate` on a tiny run: generates and caches base and tuned images, computes every metric
from them, and writes the report, the JSON and the plots into the run folder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import make_tuned_run
from medart.cli import evaluate as cli_evaluate
from medart.evaluation.classifier import ClassifierConfig
from medart.evaluation import (
    EvalConfig,
    EvaluationError,
    RealImage,
    caption_plan,
    evaluate,
    load_image_folder,
    resolve_real,
)

torch.set_num_threads(1)


class TinyFeatures(nn.Module):
    """A small deterministic extractor (Inception is too slow for a unit test)."""

    num_features = 6

    def forward(self, x):
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


CAPTIONS = {
    "polyp": "An endoscopic image of a polyp, red and round",
    "ulcer": "An endoscopic image of an ulcer, pale with a white base",
}


def write_folder(folder, n_per_class, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = []
    for label, text in CAPTIONS.items():
        for i in range(n_per_class):
            base = (180, 60, 60) if label == "polyp" else (200, 190, 170)
            arr = np.clip(np.array(base) + rng.normal(0, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            name = f"{label}-{i}.png"
            Image.fromarray(arr).save(folder / name)
            rows.append({"file_name": name, "text": text if i % 2 == 0 else text + ", seen closely", "label": label})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, medart_cache):
    root = tmp_path_factory.mktemp("evalrun")
    data = root / "data"
    write_folder(data / "train", 4, seed=0)
    write_folder(data / "test", 3, seed=1)
    return make_tuned_run(root / "runs" / "tiny-run", data)


FAST = EvalConfig(
    per_caption=2,
    steps=4,
    kid_subsets=5,
    classifier=ClassifierConfig(image_size=16, width=4, feature_dim=8, epochs=2, min_steps=10, batch_size=8, device="cpu"),
)


def test_caption_plan_fixes_seeds_by_position():
    items = [RealImage(None, text, label) for text, label in [("a", "x"), ("b", "y"), ("a", "x")]]
    plan = caption_plan(items, per_caption=3, seed=10)
    assert plan == [("a", 10, "x"), ("a", 11, "x"), ("a", 12, "x"), ("b", 13, "y"), ("b", 14, "y"), ("b", 15, "y")]


def test_real_images_resolve_from_folder_and_default(tiny_run):
    items, source = resolve_real(None, tiny_run)
    assert source.endswith("test") and len(items) == 6
    assert {i.label for i in items} == {"polyp", "ulcer"}
    data = tiny_run.parent.parent / "data"  # an export: train/ and the held-out test/
    assert [i.path.parent.name for i in load_image_folder(data)] == ["test"] * 6  # held-out first
    assert [i.path.parent.name for i in load_image_folder(data / "train")] == ["train"] * 8
    with pytest.raises(EvaluationError):
        resolve_real("no-such-thing", tiny_run)


def test_evaluate_writes_report_json_and_plots(tiny_run):
    stages = []
    results = evaluate(tiny_run, config=FAST, feature=TinyFeatures(), progress=lambda s, d, t: stages.append((s, d, t)))
    out = tiny_run / "eval"
    md = (out / "report.md").read_text()
    data = json.loads((out / "metrics.json").read_text())
    for png in ("color_histograms.png", "per_class_recall.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG"

    # 4 distinct captions x 2 per caption, base and tuned, plus 4 training captions x 2 for classification
    assert results["settings"]["n_generated_per_model"] == 8
    assert results["settings"]["generated_now"] == 32
    assert len(list((out / "cache").glob("*.png"))) == 32
    assert ("tuned", 8, 8) in stages

    dist = data["distribution"]
    # 6 real images split into halves of 3: too few for a floor, and the results say so
    assert set(dist) == {"base", "tuned"}
    assert data["floor_note"].startswith("No real-vs-real floor: 6 real image(s) would split into halves of 3 and 3")
    assert data["floor_note"] in data["warnings"] and data["floor_note"] in md
    for row in ("base", "tuned"):
        assert set(dist[row]) == {"fid", "kid_mean", "kid_std", "dfd", "color_distance"}
        assert dist[row]["fid"] > 0 and dist[row]["color_distance"] > 0
    assert dist["base"]["fid"] != dist["tuned"]["fid"]  # the adapter changes the images
    # numbers in the page are the computed ones
    assert f"{dist['tuned']['fid']:.2f}" in md and f"{dist['base']['color_distance']:.4f}" in md
    assert set(data["classification"]) == {"real", "base", "tuned"}
    assert data["classification"]["real"]["n"] == 6
    assert f"{data['classification']['tuned']['accuracy']:.3f}" in md
    # 6 real images: the subset adapts, with a note in plain words
    assert "KID compares random subsets of 6 images (usually 1000): there are only 6 real and 8 generated" in md
    assert data["color"]["real"]["mean_r"] > data["color"]["real"]["mean_b"]
    # per class: each class's generated images (from its own captions) against its own real images
    per_class = data["color_per_class"]
    assert set(per_class) == {"polyp", "ulcer"} and per_class["polyp"]["real images"] == 3
    assert per_class["ulcer"]["tuned"] > 0 and per_class["ulcer"]["base"] != per_class["ulcer"]["tuned"]
    assert "## Colour distance per class" in md
    assert f"| ulcer | 3 | {per_class['ulcer']['base']:.4f} | {per_class['ulcer']['tuned']:.4f} |" in md


def test_rerun_uses_the_cache_and_gives_the_same_numbers(tiny_run):
    first = evaluate(tiny_run, config=FAST, feature=TinyFeatures(), write=False)
    again = evaluate(tiny_run, config=FAST, feature=TinyFeatures(), write=False)
    assert again["settings"]["generated_now"] == 0
    for row in ("base", "tuned"):
        for key in ("fid", "kid_mean", "dfd", "color_distance"):
            assert again["distribution"][row][key] == pytest.approx(first["distribution"][row][key], rel=1e-9)


def test_cli_evaluate_subset_of_metrics(tiny_run, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cli_evaluate.add_parsers(sub)
    args = parser.parse_args(
        ["evaluate", "--run", str(tiny_run), "--metrics", "color", "--per-caption", "2", "--steps", "4"]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    data = json.loads((tiny_run / "eval" / "metrics.json").read_text())
    assert set(data["distribution"]["tuned"]) == {"color_distance"}
    assert "classification" not in data
    assert f"color_distance={data['distribution']['tuned']['color_distance']:.4g}" in printed
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--run", str(tiny_run), "--metrics", "fid,bogus"])


def test_floor_split_keeps_the_class_mix():
    from medart.evaluation import floor_split

    a, b = floor_split(["x", "x", "x", "y", "y", "y", "y"])
    assert a == [0, 2, 4, 6] and b == [1, 3, 5]
    a, b = floor_split(["p", "p", "p", "u", "u", "u"])
    assert [i < 3 for i in a].count(True) in (1, 2) and len(a) == len(b) == 3


def test_domain_classifier_checkpoint_gives_the_same_domain_fd(tiny_run):
    fresh = evaluate(tiny_run, config=EvalConfig(**{**FAST.__dict__, "metrics": ("dfd",)}), write=False)
    ckpt = tiny_run / "eval" / "domain-classifier"
    assert (ckpt / "classifier.json").is_file()
    cfg = EvalConfig(**{**FAST.__dict__, "metrics": ("dfd",), "classifier_checkpoint": str(ckpt)})
    reused = evaluate(tiny_run, config=cfg, write=False)
    assert reused["settings"]["domain_classifier"] == str(ckpt)
    for row in ("base", "tuned"):
        assert reused["distribution"][row]["dfd"] == pytest.approx(fresh["distribution"][row]["dfd"], rel=1e-6)


def test_real_images_from_a_workspace_split(tmp_path):
    from medart.workspace import NewImage, open_workspace

    ws = open_workspace(tmp_path / "ws")
    new = []
    for i, split in enumerate(["train", "test", "test"]):
        im = Image.new("RGB", (8, 8), (10 * i, 20, 30))
        sha, size, _ = ws.store_image(im)
        new.append(NewImage(sha, f"{i}.png", 8, 8, "RGB", size, label="polyp", split=split, text=f"caption {i}"))
    ws.add_images(new)
    ws.close()
    items, source = resolve_real(f"{tmp_path / 'ws'}:test", tmp_path)
    assert sorted(i.text for i in items) == ["caption 1", "caption 2"]
    assert all(i.label == "polyp" for i in items) and "split test" in source
    assert items[0].load().size == (8, 8)
    with pytest.raises(EvaluationError):
        resolve_real(f"{tmp_path / 'ws'}:validation", tmp_path)


def leaky_data(root):
    """An export whose test/ holds 2 of the training images beside its own 6."""
    import shutil

    data = root / "data"
    write_folder(data / "train", 4, seed=0)
    write_folder(data / "test", 3, seed=1)
    rows = (data / "test" / "metadata.jsonl").read_text()
    for label in CAPTIONS:
        shutil.copyfile(data / "train" / f"{label}-0.png", data / "test" / f"seen-{label}.png")
        rows += json.dumps({"file_name": f"seen-{label}.png", "text": CAPTIONS[label], "label": label}) + "\n"
    (data / "test" / "metadata.jsonl").write_text(rows)
    return data


def test_held_out_images_the_run_trained_on_are_left_out_and_named(tmp_path):
    from medart.evaluation.sets import held_out_set, image_key

    data = leaky_data(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"base_model: tiny\ndata: {data}\n")
    items, _, note = held_out_set(None, run)  # nothing recorded: the training folder is hashed
    assert len(items) == 6 and not any(i.path.name.startswith("seen-") for i in items)
    assert note == ("2 of 8 held-out images were in this run's training data: numbers on them would overstate how "
                    "well it generalises, so they are left out and 6 are evaluated.")
    kept, _, note = held_out_set(None, run, keep_seen=True)
    assert len(kept) == 8 and note.startswith("2 of 8 held-out images were in this run's training data: the numbers "
                                              "overstate how well it generalises")
    # what the run recorded wins: its data.json's keys, even when the training folder changed since
    keys = [image_key((data / "test" / f"polyp-{i}.png").read_bytes()) for i in range(3)]
    (run / "data.json").write_text(json.dumps({"keys": keys}))
    items, _, note = held_out_set(None, run)
    assert len(items) == 5 and note.startswith("3 of 8 held-out images")
    with pytest.raises(EvaluationError, match="all 3 held-out image.* were in this run's training data"):
        held_out_set(str(data / "test"), run, max_real=3)


def test_an_empty_or_tiny_held_out_set_is_refused_before_any_work(tmp_path):
    from medart.evaluation.sets import held_out_set

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("base_model: tiny\n")
    write_folder(tmp_path / "one", 1, seed=2)
    with pytest.raises(EvaluationError, match="has 1 held-out image.*needs at least 2 captioned"):
        held_out_set(str(tmp_path / "one"), run, max_real=1)


def test_cli_says_which_held_out_images_were_seen_in_training(tmp_path, medart_cache, capsys):
    import argparse

    data = leaky_data(tmp_path)
    run = make_tuned_run(tmp_path / "runs" / "leaky", data)
    parser = argparse.ArgumentParser()
    cli_evaluate.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--run", str(run), "--metrics", "color", "--per-caption", "1",
                              "--steps", "2"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("warning: 2 of 8 held-out images were in this run's training data")
    data_json = json.loads((run / "eval" / "metrics.json").read_text())
    assert data_json["settings"]["n_real"] == 6 and data_json["seen_note"].endswith("6 are evaluated.")
    assert "> **Warning:** 2 of 8 held-out images" in (run / "eval" / "report.md").read_text()
