"""The galleries of the Data and Captions tabs send one page of thumbnails, not the workspace."""

from helpers import add_images
from medart.workspace import Filter, Workspace


def test_data_gallery_pages_through_a_label_and_split(tmp_path):
    from medart.studio import Studio
    from medart.ui import data

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    ws = studio.workspace()
    a = add_images(ws, ["polyps"] * (data.PAGE + 5))
    b = add_images(ws, [None] * 3, split="test")
    ws.close()
    md, gallery, page, pages = data.workspace_view(studio, "polyps", "all", 2)
    assert (page, pages) == (2, 2) and [c for _, c in gallery] == [f"#{i} train" for i in a[data.PAGE:]]
    assert f"**Gallery:** {data.PAGE + 1}–{data.PAGE + 5} of {data.PAGE + 5} (page 2 of 2)" in md
    _, gallery, page, _ = data.workspace_view(studio, "polyps", "all", 99)  # past the end: the last page
    assert page == 2 and len(gallery) == 5
    _, gallery, page, pages = data.workspace_view(studio, data.NO_LABEL, "test", 1)
    assert (page, pages) == (1, 1) and [c for _, c in gallery] == [f"#{i} test" for i in b]
    md, gallery, _, _ = data.workspace_view(studio, "polyps", "validation", 1)
    assert gallery == [] and "**Gallery:** none of 0" in md
    assert data.label_choices(studio) == ["all", "polyps", data.NO_LABEL]


def test_captions_gallery_holds_one_page_and_next_walks_them_all(tmp_path):
    from medart.ui.captions import PAGE, listing_page

    with Workspace(tmp_path / "ws") as ws:
        ids = add_images(ws, ["polyps"] * (2 * PAGE + 4))
        every, items, page, pages = listing_page(ws, Filter(), 2)
        assert every == ids and (page, pages) == (2, 3) and [i.id for i in items] == ids[PAGE:2 * PAGE]
        _, items, page, _ = listing_page(ws, Filter(), 99)  # past the end: the last page
        assert page == 3 and [i.id for i in items] == ids[2 * PAGE:]
        ws.set_split(ids[:5], "test")
        every, items, page, pages = listing_page(ws, Filter(label="polyps", split="test"), 1)
        assert every == ids[:5] and (page, pages) == (1, 1) and len(items) == 5


def test_compare_reference_choices_put_held_out_images_first_and_stay_short(tmp_path, monkeypatch):
    from medart.studio import Studio
    from medart.ui import compare

    monkeypatch.setattr(compare, "MAX_REFERENCES", 5)
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    ws = studio.workspace()
    train = add_images(ws, ["polyps"] * 6)
    test = add_images(ws, ["polyps"] * 2, split="test")
    ws.close()
    choices = compare.reference_choices(studio)
    assert choices[0] == ("none", 0) and [v for _, v in choices[1:]] == test + train[:3]
    assert choices[1][0].endswith("(test)") and choices[-1][0].endswith("(train)")
