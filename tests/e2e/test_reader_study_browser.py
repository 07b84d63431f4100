"""The Reader study tab in Chromium: a reader answers a small study with the keyboard only,
stops half-way, comes back, finishes, and the owner sees the results and exports the CSV.
Along the way: every image the page received is an inline PNG of identical length under a
random token, and no URL or name the browser saw carries the answer.

The tab runs in a minimal Blocks in this process (127.0.0.1, a free port). Screenshots go
to tests/artifacts/reader-study-*.png.
"""

from __future__ import annotations

import base64
import socket

import gradio as gr
import pytest

from medart.reader_study import ReaderStudies
from medart.studio import Studio
from test_reader_study import planted_images

TIMEOUT = 60_000  # ms; a guard against hangs, not a performance assertion
FORBIDDEN = ("real-", "fundus", "histology", "seed", ".jpg", "truth", "generated/", "real/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app(tmp_path, medart_cache):
    from medart.ui import reader_study

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    ws = studio.workspace()
    study = ReaderStudies(ws).add_study("pilot", planted_images(), seed=4, display_size=64)
    ws.close()
    with gr.Blocks(title="reader study") as demo:
        with gr.Tabs():
            reader_study.build(studio)
    port = free_port()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield studio, study, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def truths(studio, study):
    ws = studio.workspace()
    try:
        with ws.read() as c:
            return {t: (truth, bytes(png)) for t, truth, png in c.execute(
                "SELECT token, truth, png FROM reader_study_items WHERE study_id = ?", (study.id,))}
    finally:
        ws.close()


def start(page, reader):
    page.locator("#rs-study input").fill("pilot")
    page.locator("#rs-study input").press("Enter")
    page.locator("#rs-reader input, #rs-reader textarea").first.fill(reader)
    page.locator("#rs-start").click()
    page.wait_for_selector("#rs-viewer [data-token]")
    page.locator("#rs-start").blur()


def shown(page):
    frame = page.locator("#rs-viewer [data-token]")
    src = frame.locator("img").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return frame.get_attribute("data-token"), int(frame.get_attribute("data-position")), base64.b64decode(src[22:])


def answer(page, key, realism, position, note=None, double_enter=False):
    page.keyboard.press(key)
    value = "real" if key == "r" else "generated"
    page.wait_for_selector(f'#rs-answer input[value="{value}"]:checked')
    page.keyboard.press(str(realism))
    page.wait_for_selector(f'#rs-realism input[value="{realism}"]:checked')
    if note:  # N opens the note, Enter in it goes on, Esc leaves it
        page.keyboard.press("n")
        page.keyboard.type(note)
        page.keyboard.press("Enter")
    else:
        page.keyboard.press("Enter")
        if double_enter:  # a repeated key press must not answer an image the reader has not seen
            page.keyboard.press("Enter")
    page.wait_for_function(
        "p => { const f = document.querySelector('#rs-viewer [data-position]');"
        " return f ? Number(f.dataset.position) === p : !!document.querySelector('#rs-viewer [data-done]'); }",
        arg=position + 1)
    if note:
        page.keyboard.press("Escape")


def test_keyboard_study_with_resume_and_results(app, browser, shots):
    studio, study, url = app
    items = truths(studio, study)
    page = browser.new_page(viewport={"width": 1300, "height": 1300})
    page.set_default_timeout(TIMEOUT)
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(url)

    start(page, "Dr Test")
    pressed = {}  # token -> (answer, realism)
    plan = ["g", "r", "g", "r", "r", "r", "g", "g"]
    for i in range(4):  # half-way, then the reader stops
        token, position, png = shown(page)
        assert position == i + 1 and png == items[token][1]
        if i == 0:
            shots(page, "reader-study-01-first-image")
        answer(page, plan[i], 1 + i % 5, position, note="too smooth" if i == 2 else None)
        pressed[token] = ("real" if plan[i] == "r" else "generated", 1 + i % 5)

    page.reload()  # the app page is closed and opened again: resume with the same name
    start(page, "Dr Test")
    token, position, _ = shown(page)
    assert position == 5 and token not in pressed
    shots(page, "reader-study-02-resumed")
    for i in range(4, 8):
        token, position, png = shown(page)
        assert position == i + 1 and png == items[token][1]
        answer(page, plan[i], 1 + i % 5, position, double_enter=i == 5)
        pressed[token] = ("real" if plan[i] == "r" else "generated", 1 + i % 5)
    page.wait_for_selector("#rs-viewer [data-done='8']")
    shots(page, "reader-study-03-done")

    # what was stored is what was pressed
    ws = studio.workspace()
    rows = ReaderStudies(ws).answers("pilot")
    ws.close()
    stored = {a.token: (a.answer, a.realism) for a in rows}
    assert stored == pressed and len(stored) == 8
    assert {a.position: a.note for a in rows if a.note} == {3: "too smooth"}

    # results: the owner opens them
    page.get_by_text("Results (shows the answers").click()
    page.locator("#rs-results-btn").click()
    page.wait_for_selector("#rs-results table")
    correct = sum(pressed[t][0] == items[t][0] for t in pressed)
    gen_called = sum(pressed[t][0] == "generated" for t in pressed if items[t][0] == "generated")
    text = page.locator("#rs-results").inner_text()
    assert "Dr Test" in text and f"{100 * correct / 8:.1f} %" in text and f"{100 * gen_called / 4:.1f} %" in text
    page.wait_for_selector("#rs-plot img")
    page.locator("#rs-export").click()
    page.wait_for_selector("#rs-csv a")
    assert page.locator("#rs-csv a").first.get_attribute("href").endswith("/pilot.csv")
    shots(page, "reader-study-04-results", full_page=True)

    # blinding as the browser saw it: identical lengths; no URL names a class, a source or the truth
    lengths = {len(png) for _, png in items.values()}
    assert len(lengths) == 1
    for u in urls:
        low = u.lower()
        assert not any(word in low for word in FORBIDDEN), u
    assert not any(t in u for t in items for u in urls)  # images never travel by URL at all
