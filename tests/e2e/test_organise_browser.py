"""The Data tab's Organise section in Chromium: load the demo images, hold out a test share,
relabel, move and remove chosen images; a removal without the confirmation tick changes
nothing and says why. The tab runs in a minimal Blocks in this process (127.0.0.1, a free
port). Screenshots go to tests/artifacts/organise-*.png.
"""

from __future__ import annotations

import socket

import gradio as gr
import pytest

from medart.studio import Studio
from medart.workspace import Filter

from apphelpers import open_page

pytestmark = pytest.mark.slow  # a real browser against a running app

TIMEOUT = 60_000  # ms; a guard against hangs, not a performance assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app(tmp_path, medart_cache):
    from medart.ui import data

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    with gr.Blocks(title="data") as demo:
        with gr.Tabs():
            data.build(studio)
    port = free_port()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield studio, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def table_rows(page) -> list[list[str]]:
    rows = page.locator("#org-table [role=row]:has([role=gridcell])")
    return [[c.strip() for c in row.locator("[role=gridcell]").all_inner_texts()] for row in rows.all()]


def set_slider(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def test_organise_in_chromium(app, browser, shots):
    studio, url = app
    page = open_page(browser, url, TIMEOUT)
    page.locator("#load-demo").click()
    page.wait_for_selector("#import-summary:has-text('Imported 16 image(s)')")

    page.get_by_text("Organise: labels, splits, removal").click()
    page.wait_for_selector("#org-table:has-text('histology')")
    set_slider(page, "org-test", 50)
    page.locator("#org-hold-out").click()
    page.wait_for_selector("#org-message:has-text('8 test and 0 validation')")
    # the demo's own 4 test images stay; only the 4 that reach the share move, and the message says so
    assert "Images already held out stayed; moved 4 to test (#" in page.locator("#org-message").inner_text()
    assert table_rows(page) == [["fundus", "4", "0", "4", "8"], ["histology", "4", "0", "4", "8"],
                                ["all", "8", "0", "8", "16"]]
    shots(page, "organise-hold-out", full_page=True)

    # the gallery browses one split (and label) at a time
    page.locator("#data-split-filter input").click()
    page.get_by_role("option", name="test", exact=True).click()
    page.wait_for_selector("#workspace-stats:has-text('1–8 of 8')")
    captions = page.locator("#data-gallery .caption-label").all_inner_texts()
    assert len(captions) == 8 and all(c.endswith(" test") for c in captions), captions
    page.locator("#data-split-filter input").click()
    page.get_by_role("option", name="all", exact=True).click()
    page.wait_for_selector("#workspace-stats:has-text('1–16 of 16')")

    page.locator("#org-ids textarea").fill("1, 2-3")
    page.locator("#org-label textarea").fill("retina")
    page.locator("#org-set-label").click()
    page.wait_for_selector("#org-table:has-text('retina')")
    page.locator("#org-set-split").click()  # the split dropdown starts at test
    page.wait_for_selector("#org-message:has-text('Moved 3 image(s) to test')")
    assert table_rows(page)[-2] == ["retina", "0", "0", "3", "3"]

    page.locator("#org-remove").click()
    page.wait_for_selector("text=tick “Yes, remove them” to remove 3 image(s)")
    ws = studio.workspace()
    assert ws.count() == 16
    page.locator("#org-remove-confirm input").check()
    page.locator("#org-remove").click()
    page.wait_for_selector("#org-message:has-text('Removed 3 image(s)')")
    page.wait_for_selector("#workspace-stats:has-text('13 image(s)')")
    page.wait_for_function("!document.querySelector('#org-remove-confirm input').checked")  # the next removal asks again
    assert ws.count() == 13 and ws.count(Filter(label="retina")) == 0
    ws.close()
    shots(page, "organise-removed", full_page=True)
