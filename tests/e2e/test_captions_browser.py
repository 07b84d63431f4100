"""The Captions tab in Chromium, against `python app.py`: typed text is never lost, refusals
mark nothing that took no part, and loading the demo twice changes nothing (issue 19).

- text typed into the editor is saved as an edit of its caption when the person moves on with
  Next, Alt+N or a thumbnail, and the note says so;
- the gallery highlights the image the editor shows, not the one clicked before;
- Import with nothing chosen says so once, with no "Error" badge on the gallery, counts or
  filters; Load demo a second time leaves every image where it was.
Screenshots: tests/artifacts/data-refused.png, captions-tab.png, captions-conflict.png.
"""

from __future__ import annotations

import sqlite3

import pytest

from apphelpers import AppServer, open_page

pytestmark = pytest.mark.slow  # a real browser against a running app

TIMEOUT = 120_000  # ms; a guard against hangs, not a performance assertion


def stored(ws_dir) -> dict[int, tuple[str, str, str]]:
    with sqlite3.connect(ws_dir / "workspace.db") as db:
        return {i: (t, s, sp) for i, t, s, sp in db.execute(
            "SELECT c.image_id, c.text, c.status, i.split FROM captions c JOIN images i ON i.id = c.image_id")}


def error_badges(page) -> list[str]:
    """The elem_ids of components showing a red "Error" status."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="status-tracker"] .error')]
        .filter(e => e.offsetParent !== null)
        .map(e => (e.closest('[id]') || {}).id || '?')""")


def editor_at(page, image_id: int) -> None:
    page.wait_for_function(f"document.querySelector('#caption-id input').value === '{image_id}'")


def highlighted(page) -> list[int]:
    return page.evaluate("""() => [...document.querySelectorAll('#caption-gallery .thumbnail-item')]
        .map((e, k) => e.classList.contains('selected') ? k : -1).filter(k => k >= 0)""")


def conflict_and_regenerate(browser, server, page, text, ws_dir, shots) -> None:
    """Two people on #5: the later save meets the earlier one and asks; Regenerate asks first."""
    other = browser.new_page(viewport={"width": 1400, "height": 1000})
    other.goto(server.url)
    other.get_by_role("tab", name="Captions").click()
    other.wait_for_selector("#caption-counts:has-text('16 shown')")
    other.locator("#caption-gallery .thumbnail-item").nth(4).click()
    editor_at(other, 5)
    other.locator("#caption-text textarea").fill("Their caption of #5.")
    other.locator("#save-caption").click()
    other.wait_for_selector("#review-note:has-text('Saved your edit to #5')")
    other.close()
    text.fill("My caption of #5.")
    page.locator("#save-caption").click()
    page.wait_for_selector("#edit-conflict-text:has-text('#5 was changed by someone else')")
    assert stored(ws_dir)[5][0] == "Their caption of #5."
    shots(page, "captions-conflict")
    page.locator("#conflict-keep-theirs").click()
    page.wait_for_function("document.querySelector('#caption-text textarea').value === 'Their caption of #5.'")
    page.wait_for_selector("#edit-conflict", state="hidden")
    page.locator("#regenerate-caption").click()  # an edited caption: asked first
    page.wait_for_selector("#regen-confirm-text:has-text(\"#5's edited caption\")")
    assert stored(ws_dir)[5][0] == "Their caption of #5."
    page.locator("#regen-confirm-yes").click()
    page.wait_for_function("document.querySelector('#caption-text textarea').value.startsWith('A fundus image')")
    assert stored(ws_dir)[5][1] == "draft"


def tokens_shown(page) -> int:
    return int(page.get_attribute("#token-count-value", "data-tokens"))


def token_counter_follows_fill_and_paste(page, text) -> None:
    """The token count follows text that arrives without key presses: `fill()` and a paste
    (`insert_text` sends only the input event, as Ctrl+V does)."""
    text.fill("A dermoscopy image of a pigmented lesion with an irregular border. " * 12)
    page.wait_for_function("+document.querySelector('#token-count-value').dataset.tokens > 120")
    long = tokens_shown(page)
    assert "too long" in page.locator("#token-count").inner_text()
    text.fill("")
    page.wait_for_function("document.querySelector('#token-count-value').dataset.tokens === '0'")
    text.focus()
    page.keyboard.insert_text("A fundus image of the retina.")
    page.wait_for_function("+document.querySelector('#token-count-value').dataset.tokens > 0")
    assert 0 < tokens_shown(page) < long and "too long" not in page.locator("#token-count").inner_text()


def test_typed_text_survives_every_way_of_moving_on(tmp_path, medart_cache, browser, shots):
    home = tmp_path / "home"
    ws_dir = home / "workspace"
    server = AppServer(home, medart_cache).start()
    try:
        page = open_page(browser, server.url, TIMEOUT)
        page.locator("#load-demo").click()
        page.wait_for_selector("#import-summary:has-text('Imported 16 image(s)')")
        first = stored(ws_dir)

        # a refusal: said once, no component that took no part marked
        page.locator("#import-files").click()
        page.wait_for_selector("#import-summary:has-text('Not imported: choose files to import first')")
        assert error_badges(page) == [] and page.locator(".toast-body").count() == 0  # said once, in the summary
        shots(page, "data-refused")
        page.locator("#load-demo").click()  # again: nothing moves
        page.wait_for_selector("#import-summary:has-text('16 already in the workspace, left as they are')")
        assert stored(ws_dir) == first

        page.get_by_role("tab", name="Captions").click()
        page.wait_for_selector("#caption-counts:has-text('16 shown')")
        text = page.locator("#caption-text textarea")
        page.locator("#caption-gallery .thumbnail-item").nth(0).click()
        editor_at(page, 1)
        token_counter_follows_fill_and_paste(page, text)
        text.fill("Typed into #1, then Next.")
        page.locator("#next-caption").click()
        editor_at(page, 2)
        page.wait_for_selector("#review-note:has-text('Saved your edit to #1')")
        assert highlighted(page) == [1]  # the highlight follows the editor
        text.fill("Typed into #2, then Alt+N.")
        text.press("Alt+n")
        editor_at(page, 3)
        page.wait_for_selector("#review-note:has-text('Saved your edit to #2')")
        # the gallery's highlight follows in a second reply; a thumbnail clicked before it lands is
        # highlighted back to #3 on a busy machine, so the click waits for it
        page.wait_for_function("""() => [...document.querySelectorAll('#caption-gallery .thumbnail-item')]
            .map((e, k) => e.classList.contains('selected') ? k : -1).filter(k => k >= 0).join() === '2'""")
        text.fill("Typed into #3, then a thumbnail.")
        page.locator("#caption-gallery .thumbnail-item").nth(5).click()
        editor_at(page, 6)
        page.wait_for_selector("#review-note:has-text('Saved your edit to #3')")
        assert highlighted(page) == [5]
        labels = page.locator("#caption-gallery .thumbnail-item").all_inner_texts()
        assert labels[:4] == [f"#{i} ✎" for i in (1, 2, 3, 4)]  # whole (the demo's captions come as edits)
        typed = stored(ws_dir)
        assert [typed[i][0] for i in (1, 2, 3)] == ["Typed into #1, then Next.", "Typed into #2, then Alt+N.",
                                                 "Typed into #3, then a thumbnail."]
        shots(page, "captions-tab", full_page=True)
        page.locator("#prev-caption").click()  # nothing typed: nothing saved
        editor_at(page, 5)
        now = stored(ws_dir)
        conflict_and_regenerate(browser, server, page, text, ws_dir, shots)
        text.fill("")  # a refusal in the review loop: the note under the buttons, nothing else
        page.locator("#approve-next").click()
        page.wait_for_selector("#review-note:has-text('write or generate a caption before approving')")
        assert error_badges(page) == [] and page.locator(".toast-body").count() == 0
        assert stored(ws_dir)[5][1] == "draft"
        assert [now[i][:2] for i in (1, 2, 3)] == [("Typed into #1, then Next.", "edited"),
                                                   ("Typed into #2, then Alt+N.", "edited"),
                                                   ("Typed into #3, then a thumbnail.", "edited")]
        assert {i: v for i, v in now.items() if i not in (1, 2, 3)} == {i: v for i, v in first.items()
                                                                        if i not in (1, 2, 3)}
        page.close()
    finally:
        server.kill()
        server.stop_jobs()
    assert "Traceback" not in server.log.read_text()
