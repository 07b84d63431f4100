"""The Train tab's own pieces without a browser: the sample timeline names every class, each
field carries its setting's help, the loss curves have distinct colours."""

from __future__ import annotations

from PIL import Image

from medart.config import setting_named
from medart.constants import SAMPLE_CLASSES
from medart.run_folder import RunFolder
from medart.ui import train


def test_sample_timeline_shows_every_class_by_name(tmp_path):
    run = RunFolder(tmp_path / "run")
    classes = ["fundus", "histology", "polyp"]
    for step in (0, 10):
        run.save_samples(step, [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(3)],
                         [f"A {c} image." for c in classes], [0, 1, 2], classes)
    items = train.sample_items(run.path)
    assert [label for _, label in items] == [f"step {s} · {c}" for s in (10, 0) for c in classes]  # newest first
    assert [p.name for p, _ in items] == ["00.png", "01.png", "02.png"] * 2


def test_samples_of_prompts_that_are_no_class_are_named_by_their_prompt(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.save_samples(0, [Image.new("RGB", (8, 8))] * 2, ["A fundus photograph, mostly orange with a bright disc.",
                                                         "x"], [0, 1], [None, None])
    assert [label for _, label in train.sample_items(run.path)] == [
        "step 0 · A fundus photograph, mostly orange with…", "step 0 · x"]


def test_the_timeline_keeps_at_most_the_sample_cap_per_step(tmp_path):
    run = RunFolder(tmp_path / "run")
    n = SAMPLE_CLASSES + 2
    run.save_samples(0, [Image.new("RGB", (8, 8))] * n, [f"c{k}" for k in range(n)], list(range(n)),
                     [f"c{k}" for k in range(n)])
    assert len(train.sample_items(run.path)) == SAMPLE_CLASSES == 8


def test_every_form_field_says_what_its_setting_does():
    for path in train.FORM:
        help_text = train.field_help(path)
        assert help_text and "--" not in help_text, path
        assert help_text.rstrip(".").lower().startswith(setting_named(path).help[:12].lower().replace("--", "")), path
    assert train.field_help("hldf.enabled") == "The colour loss on; off: plain LoRA fine-tuning."
    assert len(set(train.SERIES.values())) == 3
    blues = [c for c in train.SERIES.values() if int(c[5:7], 16) > int(c[1:3], 16) + 0x40]
    assert len(blues) == 1  # one blue line, not two


def test_refusable_buttons_say_a_refusal_beside_them(tmp_path):
    """A refused Evaluate, Push, dry run, export, Preflight, Launch, Stop or Resume is one plain line
    in the status Markdown beside its button (the event's `.failure` writes it), not a toast; its
    progress shows on that line, so no component that took no part shows an error."""
    from medart.studio import Studio
    from medart.ui import build_app

    demo = build_app(Studio(home=tmp_path / "home", base_model="tiny", import_roots=[]))
    by_elem = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    beside = {"eval-go": "eval-note", "share-dry-run": "share-note", "share-push": "share-note",
              "export-go": "export-result", "dataset-dry-run": "dataset-note", "dataset-push": "dataset-note",
              "compare-go": "compare-note", "preflight": "preflight-result", "launch": "preflight-result",
              "stop-train": "train-message", "resume-train": "train-message", "org-hold-out": "org-message",
              "org-set-label": "org-message", "undo-caption": "review-note"}
    for elem, note in beside.items():
        first = [fn for fn in demo.fns.values() if fn.trigger_after is None
                 and any(t[0] == by_elem[elem]._id and t[1] == "click" for t in fn.targets)]
        assert len(first) == 1, elem
        assert [c.elem_id for c in first[0].show_progress_on][:1] == [note], elem
        failure = [fn for fn in demo.fns.values() if fn.trigger_after == first[0]._id and fn.trigger_only_on_failure]
        assert len(failure) == 1 and [c.elem_id for c in failure[0].outputs] == [note], elem


def test_the_monitor_shows_newest_samples_first_whole_labels_and_class_hues_apart_from_the_losses(tmp_path):
    """26_crop: samples ran oldest first, "dermoscopy_t…" was cut, and red was the colour loss on
    one chart and a class on the next."""
    from medart.ui.layout import CSS

    run = RunFolder(tmp_path / "run")
    classes = ["dermoscopy_test", "fundus", "histology"]
    for step in (0, 60, 120):
        run.save_samples(step, [Image.new("RGB", (8, 8))] * 3, [f"A {c} image." for c in classes], [0, 1, 2], classes)
    items = train.sample_items(run.path)
    assert [label.split(" · ")[0] for _, label in items][::3] == ["step 120", "step 60", "step 0"]
    assert items[0][1] == "step 120 · dermoscopy_test"
    assert "#sample-timeline .caption-label {white-space: normal" in CSS  # a long class name wraps, whole
    frame = train.distance_frame([{"step": s, "color_distance": {c: 1.0 for c in classes}} for s in (0, 60)])
    shown = train.view(("", None, frame, [], "", "", []))[2]
    hues = shown["color_map"]
    assert sorted(hues) == sorted(classes) and len(set(hues.values())) == 3
    assert not set(hues.values()) & set(train.SERIES.values())  # no loss colour reused
    assert train.class_colours(reversed(classes)) == hues  # the same class, the same hue, at every refresh
