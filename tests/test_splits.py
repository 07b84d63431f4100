"""Organising a workspace: the stratified hold-out, label/split/remove of chosen images (core,
CLI and the Data tab's Organise actions)."""

import pytest

from helpers import add_images
from medart.workspace.splits import format_table, held_out_sizes, hold_out, moves_text, parse_ids, split_counts
from medart.assets import DEMO_DIR
from medart.workspace import Filter, Workspace


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    add_images(w, ["A"] * 10 + ["B"] * 5)  # ids 1-10 are A, 11-15 are B
    yield w
    w.close()


def test_hold_out_is_stratified_and_seeded(ws):
    counts = hold_out(ws, test=0.2, seed=0)
    assert counts == {"A": {"train": 8, "validation": 0, "test": 2}, "B": {"train": 4, "validation": 0, "test": 1}}
    held = ws.ids(Filter(split="test"))
    assert len([i for i in held if i <= 10]) == 2 and len([i for i in held if i > 10]) == 1
    assert split_counts(ws) == counts  # the database says the same

    ws.set_split(range(1, 16), "train")
    hold_out(ws, test=0.2, seed=0)
    assert ws.ids(Filter(split="test")) == held  # same seed, same images
    ws.set_split(range(1, 16), "train")
    hold_out(ws, test=0.2, seed=1)
    assert ws.ids(Filter(split="test")) != held
    assert ws.count(Filter(split="test")) == 3

    hold_out(ws, test=0.4, seed=0)
    assert set(held) <= set(ws.ids(Filter(split="test")))  # a larger share keeps the smaller one's images
    assert hold_out(ws, test=0.2, validation=0.1, seed=0)["A"] == {"train": 7, "validation": 1, "test": 2}


def test_hold_out_keeps_the_test_split_and_says_what_moved(ws):
    ws.set_split([1, 2, 11], "test")  # chosen by hand, not by the draw
    moved = {}
    counts = hold_out(ws, test=0.3, seed=0, moved=moved)
    assert counts["A"]["test"] == 3 and counts["B"]["test"] == 2
    test = ws.ids(Filter(split="test"))
    assert {1, 2, 11} <= set(test) and len(test) == 5  # kept, and only topped up
    assert list(moved) == ["to test"] and len(moved["to test"]) == 2
    assert moves_text(moved).startswith("moved 2 to test (#")
    moved = {}
    hold_out(ws, test=0.1, seed=0, moved=moved)  # a smaller share: the excess goes back, named
    assert list(moved) == ["out of test to train"] and len(moved["out of test to train"]) == 3
    assert set(ws.ids(Filter(split="test"))) <= set(test) and ws.count(Filter(split="test")) == 2
    ws.undo()  # one step brings all three back
    assert ws.ids(Filter(split="test")) == test
    moved = {}
    hold_out(ws, test=0.3, seed=0, moved=moved)
    assert moved == {} and moves_text(moved).startswith("moved nothing")


def test_cli_split_test_keeps_the_test_split(ws, capsys):
    from medart.cli import main

    ws.set_split([1, 11], "test")
    assert main(["split", "--test", "0.2", "--seed", "3", "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert "images already held out stayed; moved 1 to test (#" in out
    assert {1, 11} <= set(ws.ids(Filter(split="test"))) and ws.count(Filter(split="test")) == 3


def test_small_classes_keep_a_training_image(ws):
    add_images(ws, ["single", "pair", "pair"])
    counts = hold_out(ws, test=0.2, validation=0.2)
    assert counts["single"] == {"train": 1, "validation": 0, "test": 0}
    assert counts["pair"] == {"train": 1, "validation": 0, "test": 1}
    assert held_out_sizes(10, 0.25, 0) == (3, 0)  # 2.5 rounds up
    assert held_out_sizes(3, 0.6, 0.3) == (2, 0)
    assert held_out_sizes(5, 0, 0) == (0, 0)


def test_hold_out_respects_the_filter(ws):
    ws.set_split(range(11, 16), "validation")
    counts = hold_out(ws, test=0.5, flt=Filter(label="A"))
    assert list(counts) == ["A"] and counts["A"]["test"] == 5
    assert ws.ids(Filter(split="validation")) == [11, 12, 13, 14, 15]  # B untouched
    hold_out(ws, test=0.0, flt=Filter(split="test"))  # back to train: only the five test images move
    assert ws.count(Filter(split="train")) == 10 and ws.count(Filter(split="validation")) == 5


def test_unknown_ids_splits_and_shares_are_rejected(ws):
    with pytest.raises(ValueError, match="unknown split 'val'; choose from train, validation, test"):
        ws.set_split([1], "val")
    with pytest.raises(ValueError, match=r"no image with id 99, 100 in .*nothing was changed"):
        ws.set_labels([1, 99, 100], "C")
    assert ws.get(1).label == "A"  # all or nothing
    with pytest.raises(ValueError, match="no image with id 16"):
        ws.remove([1, 16])
    assert ws.get(1).image_path.exists() and ws.count() == 15
    with pytest.raises(ValueError, match="leaves nothing to train on"):
        hold_out(ws, test=0.6, validation=0.4)
    with pytest.raises(ValueError, match="fraction from 0"):
        hold_out(ws, test=20)
    with pytest.raises(ValueError, match="no images .* match"):
        hold_out(ws, flt=Filter(label="nothing"))
    with pytest.raises(ValueError, match="unknown split"):
        ws.count(Filter(split="holdout"))
    assert ws.count(Filter(split="test")) == 0


def test_parse_ids():
    assert parse_ids("3, 5-9") == [3, 5, 6, 7, 8, 9]
    assert parse_ids(["12,3", "3 4"]) == [3, 4, 12]
    assert parse_ids("") == []
    for bad, message in (("3, x", "not an image id"), ("9-5", "runs backwards"), ("1-", "not an image id"),
                         ("-3", "not an image id"), ("1-99999999999", "too long")):
        with pytest.raises(ValueError, match=message):
            parse_ids(bad)


def test_format_table(ws):
    ws.set_labels([15], None)
    ws.set_split([1], "test")
    assert format_table(split_counts(ws)).splitlines() == [
        "label       train  validation  test  total",
        "(no label)      1           0     0      1",
        "A               9           0     1     10",
        "B               4           0     0      4",
        "all            14           0     1     15",
    ]


def test_cli_label_split_remove(ws, capsys):
    from medart.cli import main

    w = ["--workspace", str(ws.root)]
    assert main(["split", "--test", "0.2", "--seed", "3", *w]) == 0
    out = capsys.readouterr().out
    assert "3 test, 0 validation, 12 train" in out and out.splitlines()[-1].split() == ["all", "12", "0", "3", "15"]
    assert ws.count(Filter(split="test")) == 3

    assert main(["split", "--to", "validation", "--ids", "1", "2-3", *w]) == 0
    assert ws.ids(Filter(split="validation")) == [1, 2, 3]
    assert main(["split", "--to", "val", "--ids", "4", *w]) == 2
    assert "unknown split 'val'" in capsys.readouterr().err
    assert main(["import", str(DEMO_DIR / "fundus_0.jpg"), "--split", "val", *w]) == 2
    assert "unknown split 'val'" in capsys.readouterr().err and ws.count() == 15

    assert main(["label", "C", "--ids", "1-3", *w]) == 0
    assert ws.ids(Filter(label="C")) == [1, 2, 3]
    assert main(["label", "D", "--label", "B", "--in-split", "train", *w]) == 0  # a filter instead of ids
    assert ws.count(Filter(label="D")) == 4 and ws.count(Filter(label="B")) == 1
    assert main(["label", "E", "--ids", "3", "99", *w]) == 2
    assert "no image with id 99" in capsys.readouterr().err and ws.get(3).label == "C"
    assert main(["label", "E", *w]) == 2
    assert "say which images to label" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["remove", "--ids", "4", "5", *w]) == 0
    assert "would remove 2 image(s)" in capsys.readouterr().out
    assert ws.count() == 15 and ws.get(4).image_path.exists()  # a preview changes nothing
    assert main(["remove", "--ids", "4", "5", "--yes", *w]) == 0
    assert ws.count() == 13 and ws.count(Filter(ids=[4, 5])) == 0
    assert main(["remove", "--ids", "4", "--yes", *w]) == 2
    assert "no image with id 4" in capsys.readouterr().err


def test_data_tab_organise_actions(tmp_path):
    import gradio as gr

    from medart.studio import Studio
    from medart.ui import data, organise

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    ws = studio.workspace()
    data.import_demo(ws)  # 8 fundus + 8 histology, the last two of each class in test
    ws.close()
    view = organise.split_view(studio)
    assert view["headers"] == ["label", "train", "validation", "test", "total"]
    assert view["data"][-1] == ["all", 12, 0, 4, 16]

    with studio.workspace() as w:
        demo_test = w.ids(Filter(split="test"))
    text, view = organise.hold_out_images(studio, 25, 13, 0)
    assert "4 test and 2 validation" in text and "moved 2 to validation (#" in text and "to test" not in text
    with studio.workspace() as w:
        assert w.ids(Filter(split="test")) == demo_test  # the demo's test images stayed in test
    assert view["data"] == [["fundus", 5, 1, 2, 8], ["histology", 5, 1, 2, 8], ["all", 10, 2, 4, 16]]

    text, view = organise.relabel(studio, "1-2", "  retina ")
    assert "Labelled** 2 image(s) “retina”" in text and view["data"][-2] == ["retina", 1, 1, 0, 2]
    text, view = organise.move(studio, "1, 2", "test")
    assert view["data"][-2] == ["retina", 0, 0, 2, 2]
    text, view = organise.undo_last(studio)  # the move, undone
    assert text == "Undid the move to test: 2 image(s) back to their label and split."
    assert view["data"][-2] == ["retina", 1, 1, 0, 2]
    organise.move(studio, "1, 2", "validation")
    with pytest.raises(ValueError, match="tick “Yes, remove them” to remove 2 image"):
        organise.remove_images(studio, "1-2", False)
    text, view = organise.remove_images(studio, "1-2", True)
    assert "Removed** 2 image(s)" in text and view["data"][-1][-1] == 14
    assert "retina" not in [r[0] for r in view["data"]]
    for call, message in ((lambda: organise.relabel(studio, "3, 99", "x"), "no image with id 99"),
                          (lambda: organise.relabel(studio, "3", " "), "type the new class label"),
                          (lambda: organise.move(studio, "", "test"), "type the ids"),
                          (lambda: organise.move(studio, "3-x", "test"), "not an image id")):
        with pytest.raises(ValueError, match=message):
            call()

    organise.move(studio, "3", "validation")
    md, gallery, page, pages = data.workspace_view(studio)
    assert "14 image(s)" in md and [c for _, c in gallery[:2]] == ["#3 val", "#4 train"]  # "validation" is too wide
    assert (page, pages) == (1, 1) and "**Gallery:** 1–14 of 14" in md
    with gr.Blocks():  # the tab builds with the Organise section in it
        data.build(studio)


def test_the_draw_follows_the_images_not_the_import_order(tmp_path):
    from PIL import Image

    from medart.workspace import NewImage

    def held_out(name, order):
        with Workspace(tmp_path / name) as w:
            rows = []
            for k in order:
                sha, size, _ = w.store_image(Image.new("RGB", (16, 16), (k, 200, 99)))
                rows.append(NewImage(sha, f"{k}.png", 16, 16, "RGB", size, "test", "A"))
            w.add_images(rows)
            hold_out(w, test=0.25, seed=3)
            return {int(i.original_name[:-4]) for i in w.query(Filter(split="test"), limit=None)}

    first = held_out("forward", range(12))
    assert len(first) == 3 and held_out("reversed", reversed(range(12))) == first  # other ids, same draw
    grown = held_out("grown", range(13))  # one more image: still 3 held out, mostly the same ones
    assert len(grown) == 3 and len(grown & first) >= 2
