"""In Chromium, against `python app.py`: a Regenerate question left on screen is withdrawn when
the editor shows another image; refusals are a plain line beside the button pressed, never a
toast; thumbnail labels are read whole.
Screenshots: tests/artifacts/refusals-beside.png, regen-withdrawn.png.
"""

from __future__ import annotations

import sqlite3

import pytest

from apphelpers import AppServer, open_page

pytestmark = pytest.mark.slow  # a real browser against a running app

TIMEOUT = 120_000  # ms; a guard against hangs, not a performance assertion


def stored(ws_dir) -> dict[int, tuple[str, str]]:
    with sqlite3.connect(ws_dir / "workspace.db") as db:
        return {i: (t, s) for i, t, s in db.execute("SELECT image_id, text, status FROM captions")}


def toasts(page) -> int:
    return page.locator(".toast-body").count()


def error_badges(page) -> int:
    """Components showing Gradio's red "Error" status."""
    return page.locator("span.error:visible").count()


def editor_at(page, image_id: int) -> None:
    page.wait_for_function(f"document.querySelector('#caption-id input').value === '{image_id}'")


def cut_labels(page) -> list[str]:
    """The gallery labels whose text does not fit their box."""
    return page.evaluate("""() => [...document.querySelectorAll('#caption-gallery .caption-label')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")


def refusals_beside_their_buttons(page, shots) -> None:
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-go").click()
    page.wait_for_selector("#eval-note:has-text('train one in the Train tab first')")
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-go").click()
    page.wait_for_selector("#compare-note:has-text('there is no tuned run yet: train one in the Train tab first')")
    page.wait_for_timeout(500)  # a toast would have shown by now
    assert toasts(page) == 0
    assert error_badges(page) == 0  # no image panel marked "Error" for a generation that never started
    shots(page, "refusals-beside", full_page=True)
    page.get_by_role("tab", name="Evaluate").click()  # the first line is still beside its own button
    assert "train one in the Train tab first" in page.locator("#eval-note").inner_text()
    assert toasts(page) == 0


def test_a_question_is_withdrawn_when_the_editor_moves_and_refusals_sit_beside_their_buttons(
        tmp_path, medart_cache, browser, shots):
    home = tmp_path / "home"
    ws_dir = home / "workspace"
    server = AppServer(home, medart_cache).start()
    try:
        page = open_page(browser, server.url, TIMEOUT)
        refusals_beside_their_buttons(page, shots)
        page.get_by_role("tab", name="Data").click()
        page.locator("#load-demo").click()
        page.wait_for_selector("#import-summary:has-text('Imported 16 image(s)')")
        page.get_by_role("tab", name="Captions").click()
        page.wait_for_selector("#caption-counts:has-text('16 shown')")
        thumbs = page.locator("#caption-gallery .thumbnail-item")
        thumbs.nth(0).click()
        editor_at(page, 1)
        page.locator("#approve-next").click()
        editor_at(page, 2)
        page.wait_for_function("[...document.querySelectorAll('#caption-gallery .caption-label')]"
                               ".some(e => e.innerText === '#1 ✓')")
        assert cut_labels(page) == []
        thumbs.nth(0).click()
        editor_at(page, 1)
        page.locator("#regenerate-caption").click()
        page.wait_for_selector("#regen-confirm-text:has-text(\"#1's approved caption\")")
        before = stored(ws_dir)
        thumbs.nth(2).click()  # another image: the question about #1 goes
        editor_at(page, 3)
        page.wait_for_selector("#regen-confirm", state="hidden")
        shots(page, "regen-withdrawn")
        page.locator("#next-caption").click()
        editor_at(page, 4)
        assert stored(ws_dir) == before and before[1][1] == "approved" and before[3][1] == "edited"
        page.close()
    finally:
        server.kill()
        server.stop_jobs()
    assert "Traceback" not in server.log.read_text()
