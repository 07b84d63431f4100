"""A question the Captions tab asks belongs to what it names: its answer acts on that image (or
that batch) alone, checked again on the server, and refusals in an empty workspace say to import
first. Handlers called as the page calls them, without a browser."""

from __future__ import annotations

import pytest

from helpers import add_images
from medart.studio import Studio
from medart.ui import captions

ALL = ("all", "all", "", None)  # the filters: status, label, caption contains, at most N tokens


@pytest.fixture
def studio(tmp_path, medart_cache):
    s = Studio(home=tmp_path / "home", base_model="tiny")
    with s.workspace() as ws:
        ids = add_images(ws, ["polyps", "polyps", "nevi"])
        for i in ids:
            ws.set_caption(i, f"An endoscopic image of lesion {i}, reddish.", {"backend": "offline"})
        ws.set_text(1, "Approved by a person.", approve=True)
        ws.set_text(2, "Edited by a person.")
    return s


def captions_now(studio) -> dict[int, tuple[str, str]]:
    with studio.workspace() as ws:
        return {i: (ws.get(i).text, ws.get(i).status) for i in (1, 2, 3)}


def test_regenerate_it_acts_on_the_image_the_question_named_and_only_while_it_is_shown(studio):
    assert "#1's **approved** caption" in captions.regenerate_question(studio, 1)
    before = captions_now(studio)
    with pytest.raises(ValueError, match=r"the question was about #1, but the editor now shows #2: nothing"):
        captions.regenerate_confirmed(studio, 1, 2, "offline", "", "", *ALL, 1)  # #2 opened meanwhile
    with pytest.raises(ValueError, match="withdrawn; nothing was changed"):
        captions.regenerate_confirmed(studio, None, 2, "offline", "", "", *ALL, 1)
    assert captions_now(studio) == before  # neither #1 nor #2 touched
    out = captions.regenerate_confirmed(studio, 1, 1, "offline", "", "", *ALL, 1)
    assert out[6 + 1] == 1
    now = captions_now(studio)
    assert now[1][1] == "draft" and now[1][0] != "Approved by a person." and now[2] == before[2]


def test_an_edit_conflicts_answer_acts_on_the_image_it_named(studio):
    with pytest.raises(ValueError, match=r"about #2, but the editor now shows #3"):
        captions.resolve_conflict(studio, 3, "My text.", True, asked=2)
    assert captions_now(studio)[3][0] == "An endoscopic image of lesion 3, reddish."
    *editor, note = captions.resolve_conflict(studio, 2, "My text.", True, asked=2)
    assert editor[3] == "My text." and captions_now(studio)[2] == ("My text.", "edited")


def test_a_batch_confirmation_starts_only_what_the_question_counted(studio):
    asked = captions.batch_question(studio, "approved")
    assert asked == {"scope": "approved", "counts": {"edited": 1, "approved": 1}}
    assert captions.batch_question(studio, "drafts") is None
    with studio.workspace() as ws:  # meanwhile another caption is approved
        ws.set_text(3, "Approved later.", approve=True)
    status, note, again = captions.batch_confirmed(studio, asked, "offline", "", "", "approved")
    assert again == {"scope": "approved", "counts": {"edited": 1, "approved": 2}} and status == ""
    assert studio.jobs.list() == []  # nothing started on the old question
    status, note, again = captions.batch_confirmed(studio, asked, "offline", "", "", "edited")  # scope changed
    assert again["counts"] == {"edited": 1} and studio.jobs.list() == []
    status, note, again = captions.batch_confirmed(studio, again, "offline", "", "", "edited")
    assert again is None and len(studio.jobs.list()) == 1
    studio.jobs.stop(studio.jobs.list()[-1].id)


def test_an_empty_workspace_says_to_import_first(tmp_path, medart_cache):
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    for act in (lambda: captions.save_caption(studio, None, "x", True, True, *ALL, 1),
                lambda: captions.regenerate_question(studio, None),
                lambda: captions.move(studio, [], None, +1),
                lambda: captions.next_unreviewed(studio, None)):
        with pytest.raises(ValueError, match=r"^import images first \(Data tab\)$"):
            act()
