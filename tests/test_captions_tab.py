"""The Captions tab's handlers, called as the page calls them (studio and input values in, the
outputs' values out), without a browser: review, navigation, regenerate, undo, find/replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import add_images
from medart.studio import Studio
from medart.ui import captions

ALL = ("all", "all", "", None)  # the filters: status, label, caption contains, at most N tokens


@pytest.fixture
def studio(tmp_path, medart_cache):
    s = Studio(home=tmp_path / "home", base_model="tiny")
    with s.workspace() as ws:
        ids = add_images(ws, ["polyps", "polyps", "nevi", "nevi"])
        for i in ids[:3]:
            ws.set_caption(i, f"An endoscopic image of lesion {i}, reddish.", {"backend": "offline"})
    return s


def test_listing_and_editor(studio):
    gallery, ids, md, labels, page, page_ids = captions.listing(studio, *ALL, 1)
    assert ids == [1, 2, 3, 4] and page_ids == ids and page == 1 and len(gallery) == 4
    assert labels == ["all", "nevi", "polyps"]
    assert "4 shown" in md and "draft 4" in md and "without caption 1" in md
    image, current, status, text, tokens, loaded = captions.show(studio, 2)
    assert current == 2 and text == "An endoscopic image of lesion 2, reddish."
    with studio.workspace() as ws:  # the page's own copy of the image, not the workspace file
        item = ws.get(2)
        assert Path(image).read_bytes() == item.image_path.read_bytes() and Path(image) != item.image_path
    assert all(Path(path).is_file() and not Path(path).is_relative_to(studio.home) for path, _ in gallery)
    assert 'data-state="draft"' in status and 'data-tokens="' in tokens
    assert loaded["id"] == 2 and loaded["text"] == text and loaded["at"] > 0  # the stamp a later edit carries
    assert captions.show(studio, None) == (None, None, "", "", captions.token_md(0), None)
    assert [captions.neighbour(ids, 4, +1), captions.neighbour(ids, 1, -1), captions.neighbour(ids, 9, 1)] == [1, 4, 1]
    assert captions.listing(studio, "all", "nevi", "", None, 1)[1] == [3, 4]


def test_approve_and_next_reject_and_the_review_order(studio):
    out = captions.save_caption(studio, 1, "An endoscopic image of a polyp.", True, True, *ALL, 1)
    assert out[6 + 1] == 2  # the editor moved on to the next unreviewed caption
    assert "approved 1" in out[2]
    with pytest.raises(ValueError, match="write or generate a caption before approving"):
        captions.save_caption(studio, 4, "  ", True, True, *ALL, 1)
    with pytest.raises(ValueError, match="select an image first"):
        captions.reject_caption(studio, None, *ALL, 1)
    out = captions.reject_caption(studio, 2, *ALL, 1)
    assert "rejected 1" in out[2] and out[6 + 1] == 3
    captions.save_caption(studio, 3, "Kept as written.", False, False, *ALL, 1)
    with studio.workspace() as ws:
        assert (ws.get(3).status, ws.get(3).text) == ("edited", "Kept as written.")
    *values, note = captions.next_unreviewed(studio, 3)
    assert values[1] == 4 and note == ""  # edited and draft are still to review
    for i in (3, 4):
        captions.save_caption(studio, i, "Reviewed.", True, False, *ALL, 1)
    *values, note = captions.next_unreviewed(studio, 1)
    assert note == "Every caption is reviewed." and values[1] == 1


def test_undo_regenerate_and_find_replace(studio):
    captions.save_caption(studio, 1, "Changed by a reviewer.", False, False, *ALL, 1)
    note, *values = captions.undo_change(studio, 4, *ALL, 1)  # the editor is elsewhere: undo finds the change
    assert note == "Undid the edit of #1 (now: caption draft)."
    assert values[6 + 1] == 1 and values[6 + 3] == "An endoscopic image of lesion 1, reddish."
    preview = captions.find_replace(studio, False, "reddish", "red", False, False, *ALL, 1)
    assert preview.startswith("**Would replace 3 match(es) in 3 caption(s).**")
    assert captions.find_replace(studio, True, "reddish", "red", False, False, "all", "nevi", "", None, 1) == (
        "**Replaced 1 match(es) in 1 caption(s).**\n- #3: …image of lesion 3, ~~reddish~~\\. → "
        "…image of lesion 3, **red**\\.")  # at most 30 characters each side of the match, whole words
    md, *rest = captions.undo_change(studio, 3, *ALL, 1)
    assert md == "Undid the find/replace 'reddish' → 'red' of #3 (now: caption draft)." and rest[6 + 3].endswith("reddish.")
    out = captions.regenerate(studio, 4, "offline", "", "", *ALL, 1)  # the image without a caption
    assert out[6 + 3].startswith("A medical image of nevi") and "without caption 0" in out[2]


def test_templates_and_the_describer_default(studio):
    names, name, phrase, *_ = captions.template_fields(studio, "dermoscopy")
    assert name == "dermoscopy" and "dermoscopy" in names and phrase
    fields = captions.template_fields(studio, "dermoscopy")[1:]
    assert "Saved template **dermoscopy**" in captions.store_template(studio, *fields)
    assert captions.default_template(studio, "dermoscopy") == "New images without a modality use **dermoscopy**."
    assert captions.reset_template(studio, "dermoscopy") == "Template **dermoscopy** reset."
    backend, model, url, note = captions.describer_defaults(studio)
    assert (backend, model, url) == (captions.PER_TEMPLATE, "", "") and "offline" in note


def test_approve_then_undo_reverts_the_approval_not_the_next_caption(studio):
    """Approve & next moves the editor on; Undo reverts the approval just made and goes back to it."""
    out = captions.save_caption(studio, 1, "An endoscopic image of a polyp.", True, True, *ALL, 1)
    assert out[6 + 1] == 2
    note, *values = captions.undo_change(studio, out[6 + 1], *ALL, 1)
    assert note == "Undid the approval of #1 (now: caption draft)."
    assert values[6 + 1] == 1 and values[6 + 3] == "An endoscopic image of lesion 1, reddish."
    with studio.workspace() as ws:
        assert ws.get(2).text == "An endoscopic image of lesion 2, reddish." and ws.get(2).status == "draft"
    assert captions.undo_change(studio, 1, *ALL, 1)[0] == "Undid the new caption of #3 (now: caption draft)."
    assert captions.undo_change(studio, 1, *ALL, 1)[0].startswith("Undid the new caption of #2")


def test_a_batch_replaces_reviewed_captions_only_when_asked_and_says_how_many(studio):
    with studio.workspace() as ws:
        ws.set_text(1, "Edited by a person.")
        ws.set_text(2, "Approved by a person.", approve=True)
    assert captions.reviewed_to_replace(studio, "drafts") == {}
    assert captions.reviewed_to_replace(studio, "edited") == {"edited": 1}
    counts = captions.reviewed_to_replace(studio, "approved")
    assert counts == {"edited": 1, "approved": 1}
    assert captions.confirm_md(counts).startswith("This batch replaces **1 edited** and **1 approved** caption(s)")
    captions.start_batch(studio, "offline", "", "", "drafts")
    job = studio.jobs.list()[-1]
    assert job.state in ("queued", "running")
    import yaml

    settings = yaml.safe_load(Path(job.config).read_text())
    assert (settings["include_edited"], settings["include_approved"], settings["yes"]) == (False, False, False)
    studio.jobs.stop(job.id)


def test_a_review_step_answers_with_counts_and_editor_and_the_listing_follows(studio):
    md, image, current, status, text, tokens, loaded, note = captions.review_step(studio, 1, "A polyp.", "approve",
                                                                                   *ALL, 1)
    assert current == 2 and note == "Approved #1." and loaded["id"] == 2
    assert "approved 1" in md and "4 shown" in md and 'data-state="draft"' in status
    md, *editor = captions.review_step(studio, 2, "", "reject", *ALL, 1)
    assert editor[1] == 3 and "rejected 1" in md
    md, *editor = captions.review_step(studio, 3, "Kept.", "save", *ALL, 1)
    assert editor[1] == 3 and editor[3] == "Kept." and "edited 1" in md
    assert captions.counts(studio, "approved", "all", "", None, 1).startswith("1 shown")


def test_the_token_count_measures_against_the_bases_limit(tmp_path, medart_cache):
    long = "An endoscopic image of a polyp, " + "reddish mucosa with a pale rim and dark vessels, " * 12
    alpha = captions.token_md(150, Studio(home=tmp_path / "a", base_model="tiny").caption_reader)
    assert "150 / 120 T5 tokens" in alpha and "too long: PixArt-α reads at most 120 tokens" in alpha
    sigma = Studio(home=tmp_path / "s", base_model="tiny-sigma")
    assert sigma.caption_reader.max_caption_tokens == 300
    with sigma.workspace() as ws:
        (i,) = add_images(ws, ["polyps"])
    captions.save_caption(sigma, i, long, False, False, *ALL, 1)
    shown = captions.show(sigma, i)[4]
    n = int(shown.split('data-tokens="')[1].split('"')[0])
    assert 120 < n <= 300 and f"{n} / 300 T5 tokens" in shown and "too long" not in shown


def test_moving_on_keeps_typed_text_as_one_undoable_edit(studio):
    ids = [1, 2, 3, 4]
    loaded = captions.show(studio, 1)[5]
    *editor, note = captions.move(studio, ids, 1, +1, "Typed, then Next.", loaded)
    assert editor[1] == 2 and note == "Saved your edit to #1."
    loaded = editor[5]
    *editor, note = captions.move(studio, ids, 2, -1, "Typed, then Previous.", loaded)
    assert editor[1] == 1 and note == "Saved your edit to #2."
    *editor, note = captions.pick(studio, ids, 2, "Typed, then a thumbnail.", editor[5])  # #1, then #3's thumbnail
    assert editor[1] == 3 and note == "Saved your edit to #1."
    *editor, note = captions.next_unreviewed(studio, 3, "Typed, then Next unreviewed.", editor[5])
    assert editor[1] == 4 and note == "Saved your edit to #3."
    *values, note = captions.refresh_keeping(studio, "Typed, then a filter.", editor[6 - 1], 4, "edited", "all", "",
                                             None, 1)
    assert note == "Saved your edit to #4." and values[1] == [1, 2, 3, 4]
    with studio.workspace() as ws:
        assert [(ws.get(i).text, ws.get(i).status) for i in ids] == [
            ("Typed, then a thumbnail.", "edited"), ("Typed, then Previous.", "edited"),
            ("Typed, then Next unreviewed.", "edited"), ("Typed, then a filter.", "edited")]
        assert ws.undo().describe() == "Undid the edit of #4 (now: caption draft)."  # each save: one undo step
    *editor, note = captions.move(studio, ids, 1, +1, "Typed, then a thumbnail.", captions.show(studio, 1)[5])
    assert note == "" and editor[1] == 2  # nothing typed: nothing saved
    with studio.workspace() as ws:
        assert len(ws.history(1)) == 3  # its caption, then the two edits typed into it
        ws.remove([2])  # removed in the Data tab while typed into here: moving on still works
    *editor, note = captions.move(studio, [1, 3], 2, +1, "Typed into a removed image.", {"id": 2, "text": "", "at": 0})
    assert editor[1] == 1 and note == "#2 was removed meanwhile; the text typed into it was not kept."


def test_a_save_over_someone_elses_change_asks_to_keep_theirs_or_overwrite(studio):
    from medart.workspace import EditConflict

    loaded = captions.show(studio, 1)[5]
    with studio.workspace() as ws:  # another person, meanwhile
        ws.set_text(1, "Their approved caption.", approve=True)
    for act in (lambda: captions.save_caption(studio, 1, "My text.", False, False, *ALL, 1, loaded=loaded),
                lambda: captions.move(studio, [1, 2], 1, +1, "My text.", loaded)):
        with pytest.raises(EditConflict, match=r"#1 was changed by someone else .* \(now approved: 'Their approved"):
            act()
    with studio.workspace() as ws:
        assert ws.get(1).text == "Their approved caption."
    *editor, note = captions.resolve_conflict(studio, 1, "My text.", False)
    assert editor[3] == "Their approved caption." and note.startswith("Kept the other change of #1")
    *editor, note = captions.resolve_conflict(studio, 1, "My text.", True)
    assert (editor[3], editor[5]["text"]) == ("My text.", "My text.") and "over the other change" in note
    out = captions.save_caption(studio, 1, "Mine again.", False, False, *ALL, 1, loaded=editor[5])
    assert out[6 + 3] == "Mine again." and out[-1] == "Saved your edit to #1."  # the reply shows what was saved


def test_regenerate_asks_before_replacing_a_reviewed_caption_or_typed_text(studio):
    assert captions.regenerate_question(studio, 1) is None  # a draft: at once
    assert "the text you typed" in captions.regenerate_question(studio, 1, "Typed.", captions.show(studio, 1)[5])
    with studio.workspace() as ws:
        ws.set_text(1, "Approved by a person.", approve=True)
        ws.set_text(2, "Edited by a person.")
    assert captions.regenerate_question(studio, 1).startswith(
        "Regenerate replaces #1's **approved** caption, reviewed by a person, with a new draft.")
    assert "**edited**" in captions.regenerate_question(studio, 2)


def test_find_replace_lists_matches_in_context_and_refuses_runaway_patterns(studio):
    with studio.workspace() as ws:
        for i in (1, 2, 3, 4):
            ws.set_text(i, f"An endoscopic image of lesion {i} in the sigmoid colon, reddish, with reddish vessels.")
    md = captions.find_replace(studio, False, "reddish", "red", False, False, *ALL, 1)
    lines = md.splitlines()
    assert lines[0] == "**Would replace 8 match(es) in 4 caption(s).**" and len(lines) == 9  # all 8: no "more"
    assert lines[2] == ("- #1: …sigmoid colon, reddish, with ~~reddish~~ vessels\\. → "
                        "…sigmoid colon, reddish, with **red** vessels\\.")
    with studio.workspace() as ws:
        ws.set_text(4, "Reddish, reddish, reddish.")
    lines = captions.find_replace(studio, False, "reddish", "red", False, True, *ALL, 1).splitlines()
    assert lines[0] == "**Would replace 9 match(es) in 4 caption(s).**" and lines[-1] == "- … and 1 more"
    with studio.workspace() as ws:
        ws.set_text(4, "a" * 39 + "b")
    with pytest.raises(ValueError, match="took too long"):
        captions.find_replace(studio, False, "^(a|aa)+$", "x", True, False, *ALL, 1)
    assert captions._said(lambda: captions.find_replace(studio, False, "^(a|aa)+$", "x", True, False, *ALL, 1))(
    ).startswith("⚠ the regular expression")
    said = captions._said(lambda: captions.find_replace(studio, False, "a{10000000}", "x", True, False, *ALL, 1))()
    assert said.startswith("⚠ the regular expression repeats more than 1,000 times") and "\n" not in said


def test_thumbnail_labels_are_short_and_the_highlight_follows_the_editor(studio):
    gallery, *_ = captions.listing(studio, *ALL, 1)
    captions.save_caption(studio, 1, "A polyp.", True, False, *ALL, 1)
    gallery, *_ = captions.listing(studio, *ALL, 1)
    assert [label for _, label in gallery] == ["#1 ✓", "#2 draft", "#3 draft", "#4 draft"]
    assert max(len(label) for _, label in gallery) <= 13
    assert captions.highlight([1, 2, 3], 3)["selected_index"] == 2
    assert captions.highlight([1, 2, 3], 7)["selected_index"] is None  # on another page: no old highlight left
