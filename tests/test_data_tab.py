"""The Data tab's own behaviour without a browser: a clicked thumbnail is selected for Organise,
the rejected-files table gives reasons room, imported uploads leave the drop box."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from medart.studio import Studio
from medart.ui import build_app
from medart.ui.organise import toggle_id


def test_a_clicked_thumbnail_is_selected_and_a_second_click_unselects_it():
    assert toggle_id("", "#12 train") == ("12", "#12 added to the selected images (1 selected).")
    assert toggle_id("3, 5-7", "#4 test") == ("3, 4, 5, 6, 7", "#4 added to the selected images (5 selected).")
    assert toggle_id("3, 4, 5", "#4 val") == ("3, 5", "#4 taken out of the selected images (2 selected).")
    assert toggle_id("not ids", "#2 train")[0] == "2"  # a typed mess gives way to the click
    assert toggle_id("3", None) == ("3", "")


def _app(tmp_path):
    demo = build_app(Studio(home=tmp_path / "home", base_model="tiny", import_roots=[tmp_path]))
    by_elem = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    return demo, by_elem


def test_the_gallery_selects_for_organise_and_uploads_leave_the_box(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "pages"))  # uploads lie in the page cache's upload folders
    demo, by_elem = _app(tmp_path)
    gallery, ids, upload = by_elem["data-gallery"], by_elem["org-ids"], by_elem["import-upload"]
    selects = [fn for fn in demo.fns.values() if (gallery._id, "select") in [tuple(t) for t in fn.targets]]
    assert len(selects) == 1 and ids in selects[0].outputs and by_elem["org-section"] in selects[0].outputs
    assert by_elem["import-rejected"].column_widths == ["30%", "70%"] and by_elem["import-rejected"].wrap

    (importing,) = [fn for fn in demo.fns.values() if fn.api_name == "import_files"]
    assert importing.outputs[-1] is upload
    picture = tmp_path / "pages" / f"upload-{'1' * 32}" / "one.png"
    picture.parent.mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(picture)
    out = importing.fn([str(picture)], "polyp", "", "train", False, "all", "all", 1)
    assert out[0].startswith("**Imported 1 image(s)**") and out[-1] is None  # the box is emptied
    (demo_load,) = [fn for fn in demo.fns.values() if fn.api_name == "load_demo"]
    assert demo_load.fn("all", "all", 1)[-1] == gr.skip()  # the demo leaves files chosen for upload alone
