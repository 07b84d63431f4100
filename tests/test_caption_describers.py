"""A describer per modality template: the template fields, the resolution order (job, template,
workspace default, offline), one captioner per describer in a CLI job, and the template
editor's save/load functions."""

import json
import os
from dataclasses import replace

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import captioning  # noqa: E402
from captioning.offline import OfflineDescriber  # noqa: E402
from captioning.templates import ModalityTemplate, get_builtin  # noqa: E402
from medart.workspace.describe import Describer, caption_by_describer, group_by_describer, targets  # noqa: E402
from medart.workspace import Filter, NewImage, Workspace  # noqa: E402
from helpers import ChatHandler  # noqa: E402

MODALITIES = ["endoscopy", "dermoscopy", "histology", "fundus", "endoscopy", "dermoscopy"]
COLOURS = [(220, 0, 0), (0, 0, 220), (0, 160, 0), (255, 192, 203), (128, 128, 128), (139, 69, 19)]


def fill(root, modalities=MODALITIES) -> Workspace:
    ws = Workspace(root)
    rows = []
    for k, modality in enumerate(modalities):
        sha, size, _ = ws.store_image(Image.new("RGB", (48, 48), COLOURS[k % len(COLOURS)]))
        rows.append(NewImage(sha, f"{k}.png", 48, 48, "RGB", size, "t", "lesion", modality=modality))
    ws.add_images(rows)
    return ws


def with_describer(ws, name, backend, model=None, url=None):
    ws.save_template(replace(get_builtin(name), backend=backend, model=model, url=url))


@pytest.fixture
def loads(monkeypatch):
    """Every captioner loaded and closed, in order: ("load"|"close", backend, model)."""
    events = []
    real = captioning.make_captioner

    def counting(backend="offline", model=None, **kwargs):
        cap = real(backend, model, **kwargs)
        events.append(("load", backend, model))
        close = cap.close

        def closing():
            events.append(("close", backend, model))
            close()

        cap.close = closing
        return cap

    monkeypatch.setattr(captioning, "make_captioner", counting)
    return events


# ---- the template fields ------------------------------------------------------------------------
def test_old_template_json_without_describer_fields_loads(tmp_path):
    old = {"name": "colposcopy", "image_phrase": "A colposcopic image", "features": ["color", "shape"],
           "prompt": "{simple_caption}. Describe {features}.", "max_words": 60, "description": "cervix"}
    t = ModalityTemplate.from_dict(old)
    assert (t.backend, t.model, t.url) == (None, None, None) and t.features == ["color", "shape"]
    with Workspace(tmp_path / "ws") as ws:
        with ws.transaction() as c:  # a workspace written before templates had a describer
            c.execute("INSERT INTO templates (name, data, updated_at) VALUES (?,?,0)", ("colposcopy", json.dumps(old)))
        stored = ws.get_template("colposcopy")
        assert stored.backend is None and stored.max_words == 60 and stored.description == "cervix"
        assert [x.name for x in ws.list_templates()][-1] == "colposcopy"


def test_describer_fields_round_trip_and_blank_means_unset():
    t = ModalityTemplate("derm", "A dermoscopic image", ["color"], backend="openai", model="served-vlm",
                         url="http://gpu-box:8000/v1")
    d = t.to_dict()
    assert (d["backend"], d["model"], d["url"]) == ("openai", "served-vlm", "http://gpu-box:8000/v1")
    assert ModalityTemplate.from_dict(json.loads(json.dumps(d))) == t
    blank = ModalityTemplate("derm", "A dermoscopic image", backend=" ", model="", url="")
    assert (blank.backend, blank.model, blank.url) == (None, None, None)


def test_validate_rejects_describers_that_cannot_load():
    t = ModalityTemplate("derm", "A dermoscopic image", backend="llava")
    with pytest.raises(ValueError, match="unknown describer backend 'llava'; choose one of offline, transformers, openai"):
        t.validate()
    with pytest.raises(ValueError, match="unknown describer backend"):
        ModalityTemplate.from_dict({"name": "x", "image_phrase": "An image", "backend": "vllm"})
    with pytest.raises(ValueError, match="names a model or URL but no describer backend"):
        ModalityTemplate("derm", "A dermoscopic image", model="some/vlm").validate()
    with pytest.raises(ValueError, match="openai backend needs the model name"):
        ModalityTemplate("derm", "A dermoscopic image", backend="openai", url="http://h:1/v1").validate()
    with pytest.raises(ValueError, match="must start with http"):
        ModalityTemplate("derm", "A dermoscopic image", backend="openai", model="m", url="gpu-box:8000").validate()
    with pytest.raises(ValueError, match="offline describer takes no model"):
        ModalityTemplate("derm", "A dermoscopic image", backend="offline", model="m").validate()
    ModalityTemplate("derm", "A dermoscopic image", backend="transformers", model="some/vlm").validate()


# ---- resolution order -------------------------------------------------------------------------
def test_resolution_order_job_then_template_then_workspace_default_then_offline(tmp_path):
    ws = fill(tmp_path / "ws")
    try:
        ids = targets(ws)
        groups = group_by_describer(ws, ids)
        assert [(g.describer, g.ids, g.sources) for g in groups] == [(Describer("offline"), ids, ["the offline default"])]
        with_describer(ws, "dermoscopy", "transformers", "vlm-folder")
        ws.set_setting("caption_backend", "openai")
        ws.set_setting("caption_model", "served-vlm")
        ws.set_setting("caption_url", "http://gpu-box:8000/v1")
        groups = group_by_describer(ws, ids)
        served = Describer("openai", "served-vlm", "http://gpu-box:8000/v1")
        assert [(g.describer, g.ids, g.sources) for g in groups] == [
            (served, [1, 3, 4, 5], ["the workspace default"]),
            (Describer("transformers", "vlm-folder"), [2, 6], ["template 'dermoscopy'"]),
        ]
        # the job's template decides for every image, describer included
        assert [g.describer for g in group_by_describer(ws, ids, template="dermoscopy")] == [
            Describer("transformers", "vlm-folder")]
        explicit = group_by_describer(ws, ids, explicit=Describer("offline"))
        assert [(g.describer, g.ids, g.sources) for g in explicit] == [(Describer("offline"), ids, ["the job's choice"])]
    finally:
        ws.close()


def test_a_failing_describer_keeps_the_groups_before_it_and_resumes(tmp_path):
    class LostServer(OfflineDescriber):
        def generate(self, images, simple_captions, template):
            raise captioning.CaptionerError("connection lost")

    ws = fill(tmp_path / "ws")
    try:
        with_describer(ws, "dermoscopy", "openai", "served-vlm", "http://gpu-box:8000/v1")
        groups = group_by_describer(ws, targets(ws))
        with pytest.raises(captioning.CaptionerError) as err:
            caption_by_describer(ws, groups, lambda d: LostServer() if d.backend == "openai" else OfflineDescriber())
        assert str(err.value).startswith("openai served-vlm @ http://gpu-box:8000/v1 (template 'dermoscopy'): "
                                         "connection lost (4 of 6 captioned and saved; rerun with --only-missing")
        assert targets(ws, only_missing=True) == [2, 6]
        report = caption_by_describer(ws, group_by_describer(ws, targets(ws, only_missing=True)),
                                      lambda d: OfflineDescriber())
        assert report.done == 2 and ws.count(Filter(missing=True)) == 0
    finally:
        ws.close()


# ---- the CLI job --------------------------------------------------------------------------------
def run_cli(capsys, *args):
    from medart.cli import main

    capsys.readouterr()
    code = main(["caption", *args, "--base-model", "tiny", "--max-new-tokens", "10"])
    out = capsys.readouterr()
    return code, out.out, out.err


def provenance(root) -> dict[int, tuple[str, str]]:
    with Workspace(root) as ws:
        return {i.id: (i.provenance["backend"], i.provenance["model"]) for i in ws.query(Filter(), limit=None)}


@pytest.mark.slow  # runs a caption job
def test_cli_job_captions_each_image_with_its_templates_describer(tmp_path, blip_dir, server, loads, capsys):
    root = tmp_path / "ws"
    with fill(root) as ws:
        with_describer(ws, "endoscopy", "offline")
        with_describer(ws, "dermoscopy", "transformers", str(blip_dir))
        with_describer(ws, "histology", "openai", "served-vlm", server)
        for key, value in (("caption_backend", "openai"), ("caption_model", "served-vlm"), ("caption_url", server)):
            ws.set_setting(key, value)  # fundus has no describer: the workspace default
    code, out, err = run_cli(capsys, "--workspace", str(root))
    assert code == 0, err
    served = f"served-vlm @ {server}"
    offline, vlm, api = ("offline", "pixel-describer-1"), ("transformers", str(blip_dir)), ("openai", served)
    assert provenance(root) == {1: offline, 2: vlm, 3: api, 4: api, 5: offline, 6: vlm}
    assert loads == [("load", "offline", None), ("close", "offline", None),
                     ("load", "transformers", str(blip_dir)), ("close", "transformers", str(blip_dir)),
                     ("load", "openai", "served-vlm"), ("close", "openai", "served-vlm")]
    assert "2 image(s) with offline (template 'endoscopy')" in out
    assert f"2 image(s) with transformers {blip_dir} (template 'dermoscopy')" in out
    assert f"2 image(s) with openai served-vlm @ {server} (template 'histology', the workspace default)" in out
    assert "captioned 6 image(s)" in out
    assert ChatHandler.requests and {r["body"]["model"] for r in ChatHandler.requests} == {"served-vlm"}
    with Workspace(root) as ws:
        assert ws.get(4).text.startswith("A fundus image of lesion")

    loads.clear()
    code, out, err = run_cli(capsys, "--workspace", str(root), "--backend", "offline")
    assert code == 0, err
    assert set(provenance(root).values()) == {offline}
    assert loads == [("load", "offline", None), ("close", "offline", None)]
    assert "6 image(s) with offline (the job's choice)" in out


def test_cli_job_names_the_template_whose_describer_fails(tmp_path, loads, capsys):
    root = tmp_path / "ws"
    with fill(root, ["endoscopy", "dermoscopy"]) as ws:
        with_describer(ws, "dermoscopy", "transformers", str(tmp_path / "no-model"))
    code, out, err = run_cli(capsys, "--workspace", str(root))
    assert code == 2
    assert f"transformers {tmp_path / 'no-model'} (template 'dermoscopy'): could not load the captioning model" in err
    assert "(1 of 2 captioned and saved; rerun with --only-missing to continue)" in err
    assert [e[:2] for e in loads] == [("load", "offline"), ("close", "offline")]
    code, out, err = run_cli(capsys, "--workspace", str(root), "--model", "some/vlm")
    assert code == 2 and "--model and --url go with --backend" in err


def test_cli_template_command_sets_and_clears_a_describer(tmp_path, capsys):
    from medart.cli import main

    w = ["--workspace", str(tmp_path / "ws")]
    assert main(["template", "dermoscopy", "--backend", "openai", "--model", "served-vlm",
                 "--url", "http://gpu-box:8000/v1", *w]) == 0
    with Workspace(tmp_path / "ws") as ws:
        t = ws.get_template("dermoscopy")
        assert (t.backend, t.model, t.url) == ("openai", "served-vlm", "http://gpu-box:8000/v1")
        assert t.image_phrase == "A dermoscopic image"  # the rest of the template is kept
    assert main(["template", "dermoscopy", "--backend", "", "--model", "", "--url", "", *w]) == 0
    with Workspace(tmp_path / "ws") as ws:
        t = ws.get_template("dermoscopy")
        assert (t.backend, t.model, t.url) == (None, None, None)
    capsys.readouterr()
    assert main(["template", "dermoscopy", "--backend", "llava", *w]) == 2
    assert "unknown describer backend 'llava'" in capsys.readouterr().err


# ---- the template editor ------------------------------------------------------------------------
def test_template_editor_saves_and_loads_the_describer(tmp_path):
    from medart.ui.captions import job_describer, load_template, save_template

    with Workspace(tmp_path / "ws") as ws:
        names, name, phrase, feats, prompt, words, backend, model, url = load_template(ws, "dermoscopy")
        assert name == "dermoscopy" and "colposcopy" not in names and (backend, model, url) == ("", "", "")
        saved = save_template(ws, name, phrase, feats + ", scale", prompt, words, "openai", " served-vlm ",
                              "http://gpu-box:8000/v1")
        assert saved.description == get_builtin("dermoscopy").description  # the editor does not show it
        assert load_template(ws, "dermoscopy")[2:] == (phrase, feats + ", scale", prompt, words, "openai",
                                                       "served-vlm", "http://gpu-box:8000/v1")
        save_template(ws, "dermoscopy", phrase, feats, prompt, words, "", "", "")
        assert ws.get_template("dermoscopy").backend is None and load_template(ws, "dermoscopy")[6:] == ("", "", "")
        with pytest.raises(ValueError, match="unknown describer backend 'llava'"):
            save_template(ws, "dermoscopy", phrase, feats, prompt, words, "llava", "", "")
        save_template(ws, "colposcopy", "A colposcopic image", "color", "{simple_caption}.", 40, "transformers",
                      "some/vlm", "")
        assert load_template(ws, "colposcopy")[0][-1] == "colposcopy"
        assert load_template(ws, "colposcopy")[6:] == ("transformers", "some/vlm", "")
    assert job_describer("per template", "some/vlm", "") is None
    assert job_describer("openai", "m", "http://h:1/v1") == Describer("openai", "m", "http://h:1/v1")
