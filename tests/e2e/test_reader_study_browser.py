"""Reader studies in Chromium. On the reader server's page (the study's reader page and
nothing else), a reader opens their invitation link and answers a small study with the
keyboard only, stops half-way, comes back through the same link and finishes, with the reader
server stopped and started again under the open page on the way; then the owner, in the owner's Reader study tab, sees the results and
exports the CSV with the study's owner code (a wrong code shows nothing; an open study exports
nothing), adds, shows and revokes an invitation link, which then opens nothing, and closes the
study, after which the CSV comes. Along the way: every
image the reader's page received is an inline PNG of identical length under a random token, no
URL or name the browser saw carries the answer, nothing the page received holds the owner code
or its hash, and the reader's page has no results or owner-code controls at all. A second test
creates a study in the owner's tab (owner code required), which then shows the command that
starts the reader server, and gives a study made without a code its code, once.

Both pages run in this process (127.0.0.1, free ports). Screenshots go to
tests/artifacts/reader-study-*.png.
"""

from __future__ import annotations

import base64
import re
import socket

import gradio as gr
import pytest

from helpers import make_tuned_run
from medart.reader_study import ReaderStudies
from medart.assets import DEMO_DIR
from medart.studio import Studio
from helpers import owner_code_hash, planted_images

pytestmark = pytest.mark.slow  # a real browser against a running app

TIMEOUT = 60_000  # ms; a guard against hangs, not a performance assertion
FORBIDDEN = ("real-", "fundus", "histology", "seed", ".jpg", "truth", "generated/", "real/")
OWNER_CODE = "lantern-2931"

# Keeps a copy of every response body the page fetches, streamed ones (the queue's server-sent
# events, which carry each handler's output) included, as they arrive.
CAPTURE_JS = """
window.__received = [];
const pageFetch = window.fetch;
window.fetch = async function (...args) {
  const response = await pageFetch.apply(this, args);
  const seen = {url: response.url, parts: []};
  window.__received.push(seen);
  const copy = response.clone();
  if (copy.body) {
    const reader = copy.body.getReader(), decoder = new TextDecoder();
    (async () => {
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        seen.parts.push(decoder.decode(value, {stream: true}));
      }
    })().catch(() => {});
  }
  return response;
};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched(demo, port=None):
    port = port or free_port()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def serve(studio, reader_study_name=None, running=None):
    """The owner's tab in a minimal app (and the reader server's page of `reader_study_name`)
    on free ports; yields their URLs. `running`: a list that gets the demos (to stop one)."""
    from medart.ui import reader_page, reader_study

    with gr.Blocks(title="reader study") as owner:
        with gr.Tabs():
            reader_study.build(studio)
    demos = [owner]
    if reader_study_name:
        demos.append(reader_page.build_reader_app(reader_page.StudyWorkspace(studio.workspace_dir),
                                                  reader_study_name))
    running = demos if running is None else running
    running[:] = demos
    try:
        yield [launched(d) for d in demos]
    finally:
        for d in running:
            d.close()


@pytest.fixture
def app(tmp_path, medart_cache):
    studio = Studio(home=tmp_path / "home", base_model="tiny")
    ws = studio.workspace()
    study = ReaderStudies(ws).add_study("pilot", planted_images(), seed=4, display_size=64, owner_code=OWNER_CODE)
    link = ReaderStudies(ws).invite(study, "Dr Test").invitation
    ws.close()
    running = []
    for owner_url, reader_url in serve(studio, "pilot", running):
        yield studio, study, owner_url, reader_url, link, running


@pytest.fixture
def owner_app(tmp_path, medart_cache):
    """A studio with a tuned run, held-out demo images and a study made without an owner code."""
    from medart.workspace.importers import import_paths

    studio = Studio(home=tmp_path / "home", base_model="tiny")
    make_tuned_run(studio.runs_dir / "tiny-run")
    ws = studio.workspace()
    import_paths(ws, [DEMO_DIR], split="test")
    ReaderStudies(ws).add_study("legacy", planted_images(1), display_size=32)
    ws.close()
    for (url,) in serve(studio):
        yield studio, url


def badges(page) -> int:
    """Red "Error" badges anywhere on the page (a refusal is said in one line, never so)."""
    return page.locator('[data-testid="status-tracker"] .error').count()


def message(page, text):
    """Wait until the owner message under Results says `text`; returns the whole message."""
    page.wait_for_function("t => document.querySelector('#rs-owner-msg').innerText.includes(t)", arg=text)
    return page.locator("#rs-owner-msg").inner_text()


def open_accordion(page, title, last_id):
    """Open an accordion and wait until it has rendered down to `last_id`, its last visible
    component. Its components first render when it opens and then take the value an earlier
    event gave them: a field filled before that would be emptied again."""
    page.get_by_text(title).click()
    page.wait_for_selector(f"#{last_id}")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def pick(page, elem_id, value):
    page.locator(f"#{elem_id} input").fill(value)
    page.locator(f"#{elem_id} input").press("Enter")


def truths(studio, study):
    """{token an image was shown to a reader under: (truth, PNG, item id)} so far."""
    ws = studio.workspace()
    try:
        with ws.read() as c:
            return {t: (truth, bytes(png), item) for t, truth, png, item in c.execute(
                "SELECT s.token, i.truth, i.png, i.id FROM reader_study_shown s JOIN reader_study_items i"
                " ON i.id = s.item_id WHERE i.study_id = ?", (study.id,))}
    finally:
        ws.close()


def start(page, url, link):
    """Open the reader's invitation link: the page shows their next image by itself."""
    page.goto(f"{url}?invite={link}")
    page.wait_for_selector("#rs-title:has-text('pilot')")
    page.wait_for_selector("#rs-viewer [data-token]")


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
    from medart.ui import reader_page

    studio, study, owner_url, url, link, running = app
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.add_init_script(CAPTURE_JS)
    page.goto(url)  # without a link: nothing to answer, no name to type, no buttons
    page.locator(".rs-empty").get_by_text("Open this page with your invitation link").wait_for()
    page.locator("#rs-notice").get_by_text("open this page with your invitation link").wait_for()
    assert page.locator("#rs-viewer [data-token], #rs-reader, #rs-start").count() == 0
    assert page.locator("#rs-answer, #rs-realism, #rs-note, #rs-next").filter(visible=True).count() == 0
    page.goto(f"{url}?invite=Dr%20Test")  # a name is not a link
    page.locator("#rs-notice").get_by_text("not a valid invitation").wait_for()
    assert page.locator("#rs-viewer [data-token]").count() == 0
    assert page.locator("#rs-answer, #rs-next").filter(visible=True).count() == 0 and badges(page) == 0
    # the reader's page: no study list, no results, no owner code, nothing of the workspace
    absent = "#rs-study, #rs-owner-code, #rs-results, #rs-create, .gallery, [data-testid=image]"
    assert page.locator(absent).count() == 0

    start(page, url, link)
    pressed = {}  # token -> (answer, realism)
    plan = ["g", "r", "g", "r", "r", "r", "g", "g"]
    for i in range(4):  # half-way, then the reader stops
        token, position, png = shown(page)
        assert position == i + 1 and png == truths(studio, study)[token][1]
        if i == 0:
            shots(page, "reader-study-01-first-image")
            # the label reads as the owner typed it; Next without an answer says so in one line
            # under the buttons, which stay (a mouse-only reader can answer and go on)
            assert page.locator("#rs-progress").inner_text().strip() == "Dr Test: image 1 of 8 · 0 answered"
            assert page.locator("#rs-progress strong, #rs-progress h1, #rs-progress h2").count() == 0
            page.locator("#rs-next").click()
            page.locator("#rs-notice").get_by_text("answer first: R (real) or G (generated)").wait_for()
            page.wait_for_timeout(1500)  # the toast's time: nothing else appears later
            assert badges(page) == 0 and shown(page)[0] == token
            assert page.locator("#rs-answer input, #rs-realism input, #rs-next").filter(visible=True).count() == 8
            shots(page, "reader-study-01b-answer-first")
        answer(page, plan[i], 1 + i % 5, position, note="too smooth" if i == 2 else None)
        pressed[token] = ("real" if plan[i] == "r" else "generated", 1 + i % 5)

    page.reload()  # the app page is closed and opened again: the same link resumes
    page.wait_for_selector("#rs-viewer [data-position='5']")
    token, position, _ = shown(page)
    assert position == 5 and token not in pressed
    shots(page, "reader-study-02-resumed")
    for i in range(4, 8):
        if i == 6:  # the reader server stops and starts again under the open page: the next key goes on
            running.pop().close()
            running.append(reader_page.build_reader_app(reader_page.StudyWorkspace(studio.workspace_dir), "pilot"))
            launched(running[-1], int(url.rstrip("/").rsplit(":", 1)[1]))
        token, position, png = shown(page)
        assert position == i + 1 and png == truths(studio, study)[token][1]
        answer(page, plan[i], 1 + i % 5, position, double_enter=i == 5)
        pressed[token] = ("real" if plan[i] == "r" else "generated", 1 + i % 5)
    page.wait_for_selector("#rs-viewer [data-done='8']")
    shots(page, "reader-study-03-done")

    # what was stored is what was pressed
    items = truths(studio, study)
    ws = studio.workspace()
    rows = ReaderStudies(ws).answers("pilot")
    ws.close()
    shown_as = {item: token for token, (_, _, item) in items.items()}
    stored = {shown_as[a.item_id]: (a.answer, a.realism) for a in rows}
    assert stored == pressed and len(stored) == 8
    assert {a.position: a.note for a in rows if a.note} == {3: "too smooth"}

    # everything the page received while the reader answered: no owner code, no hash, no salt
    streams = [s for s in page.evaluate("() => window.__received.map(r => r.parts.join(''))") if s]
    assert any(f'data-token=\\"{t}\\"' in s for t in pressed for s in streams)  # the capture sees the images
    hashed = owner_code_hash(studio.workspace_dir, "pilot")
    secrets = [OWNER_CODE, hashed, *hashed.split("$")[4:]]  # the code, the stored hash, its salt and digest
    for received in streams + [page.content()]:
        assert not any(secret in received for secret in secrets)

    # blinding as the reader's browser saw it: identical lengths; no URL names a class, a source or the truth
    lengths = {len(png) for _, png, _ in items.values()}
    assert len(lengths) == 1
    for u in urls:
        low = u.lower()
        assert not any(word in low for word in FORBIDDEN), u
    assert not any(t in u for t in items for u in urls)  # images never travel by URL at all
    page.close()

    # results, in the owner's app: a wrong or missing code shows nothing, the owner's code shows them
    page = browser.new_page(viewport={"width": 1300, "height": 1300})
    page.set_default_timeout(TIMEOUT)
    page.goto(owner_url)
    pick(page, "rs-study", "pilot")
    page.wait_for_selector("#rs-readers:has-text('Dr Test 8/8')")
    assert "--reader-study pilot" in page.locator("#rs-readers").inner_text()
    open_accordion(page, "Readers and results (study owner only", "rs-revoke")
    page.locator("#rs-owner-code input").fill("wrong-code")
    page.locator("#rs-results-btn").click()
    assert "wrong owner code for study 'pilot'" in message(page, "wrong owner code")
    page.locator("#rs-owner-code input").fill("")
    page.locator("#rs-export").click()
    message(page, "type the owner code of study 'pilot'")
    assert page.locator("#rs-results table, #rs-plot img, #rs-csv a").count() == 0
    assert "Dr Test" not in page.locator("#rs-results").inner_text()
    page.locator("#rs-owner-code input").fill(OWNER_CODE)
    page.locator("#rs-results-btn").click()
    page.wait_for_selector("#rs-results table")
    assert "Not shown" not in page.locator("#rs-owner-msg").inner_text()
    correct = sum(pressed[t][0] == items[t][0] for t in pressed)
    gen_called = sum(pressed[t][0] == "generated" for t in pressed if items[t][0] == "generated")
    text = page.locator("#rs-results").inner_text()
    assert "Dr Test" in text and f"{100 * correct / 8:.1f} %" in text and f"{100 * gen_called / 4:.1f} %" in text
    page.wait_for_selector("#rs-plot img")
    page.locator("#rs-export").click()  # the truth of each image leaves only once the study is closed
    message(page, "still open")
    shots(page, "reader-study-04-results", full_page=True)

    # a wrong code after the right one takes the results off the page again
    page.locator("#rs-owner-code input").fill("wrong-code")
    page.locator("#rs-owner-code input").press("Enter")
    message(page, "wrong owner code")
    assert page.locator("#rs-results table, #rs-plot img, #rs-csv a").count() == 0
    shots(page, "reader-study-05-wrong-code", full_page=True)

    # invitations: a label and the owner code make a reader with a link; revoked, it opens nothing
    page.locator("#rs-owner-code input").fill(OWNER_CODE)
    page.locator("#rs-label input, #rs-label textarea").first.fill("Dr Two")
    page.locator("#rs-invite").click()
    page.wait_for_selector("#rs-links:has-text('Dr Two')")
    page.wait_for_selector("#rs-readers:has-text('Dr Two 0/8')")
    listed = page.locator("#rs-links").inner_text()
    assert f"?invite={link}" in listed  # Dr Test's link too, for copying
    new_link = re.search(r"Dr Two\s+0/8\s+\S+\?invite=([A-Za-z0-9_-]+)", listed).group(1)
    shots(page, "reader-study-06-invitations", full_page=True)
    second = browser.new_page(viewport={"width": 1300, "height": 1000})
    second.set_default_timeout(TIMEOUT)
    start(second, url, new_link)
    page.locator("#rs-label input, #rs-label textarea").first.fill("Dr Two")
    page.locator("#rs-revoke").click()
    page.wait_for_selector("#rs-readers:has-text('Dr Two 0/8 (revoked)')")
    assert re.search(r"Dr Two\s+0/8\s+revoked", page.locator("#rs-links").inner_text())
    second.keyboard.press("r")
    second.keyboard.press("Enter")  # the open page of a revoked link: refused, nothing stored
    second.get_by_text("revoked by the study owner").first.wait_for()
    second.reload()
    second.get_by_text("revoked by the study owner").first.wait_for()
    assert second.locator("#rs-viewer [data-token]").count() == 0
    second.close()

    # closing: the readers' links open nothing more, and the answers can be exported
    page.locator("#rs-close").click()
    message(page, "pilot closed")
    page.locator("#rs-export").click()
    page.wait_for_selector("#rs-csv a")
    assert page.locator("#rs-csv a").first.get_attribute("href").endswith("/pilot.csv")

    page.close()


def test_owner_code_at_creation_and_for_a_study_without_one(owner_app, browser, shots):
    from medart.ui import reader_page, reader_study

    studio, url = owner_app
    page = browser.new_page(viewport={"width": 1300, "height": 1300})
    page.set_default_timeout(TIMEOUT)
    page.goto(url)

    # creating a study in the tab needs an owner code of at least 4 characters
    open_accordion(page, "Create a study", "rs-create")
    pick(page, "rs-run", "tiny-run")
    page.locator("#rs-new-name input, #rs-new-name textarea").first.fill("made here")
    page.locator("#rs-new-code input").fill("abc")
    page.locator("#rs-create").click()
    page.locator("#rs-created").get_by_text("the owner code needs at least 4 characters").wait_for()
    page.locator("#rs-new-code input").fill("owner-5150")
    page.locator("#rs-k input").fill("99")  # more than the split holds: said in place, the largest k named
    page.locator("#rs-create").click()
    page.locator("#rs-created").get_by_text("lower k to 16 at most").wait_for()
    page.wait_for_timeout(1500)
    assert badges(page) == 0 and page.locator("#rs-study input").is_visible()
    assert page.locator("#rs-create").is_enabled()
    shots(page, "reader-study-07a-k-too-large", full_page=True)
    page.locator("#rs-k input").fill("1")
    page.locator("#rs-create").click()
    page.wait_for_function("() => document.querySelector('#rs-created').innerText.includes('Created')")
    page.wait_for_function("() => document.querySelector('#rs-new-code input').value === ''")  # the code goes
    assert page.locator("#rs-study input").input_value() == "made here"
    page.wait_for_selector("#rs-readers:has-text('Readers so far: none yet')")
    assert "--reader-study 'made here' --home" in page.locator("#rs-readers").inner_text()
    ws = studio.workspace()
    assert ReaderStudies(ws).check_owner("made here", "owner-5150").n_generated == 1
    ws.close()
    shots(page, "reader-study-07-created", full_page=True)

    # readers answer elsewhere: the counts here follow by themselves, without a click
    ws = studio.workspace()
    link = ReaderStudies(ws).invite("made here", "Dr A").invitation
    ws.close()
    page.wait_for_selector("#rs-readers:has-text('Dr A 0/2')", timeout=4_000 * reader_study.READERS_REFRESH_S)
    token = reader_page.open_page(studio, "made here", link)[0]
    reader_page.answer_and_next(studio, "made here", link, token, "real", None, "")
    page.wait_for_selector("#rs-readers:has-text('Dr A 1/2')", timeout=4_000 * reader_study.READERS_REFRESH_S)

    # every owner button with a missing or wrong code: its one line here, no red badge anywhere
    open_accordion(page, "Readers and results (study owner only", "rs-revoke")
    page.locator("#rs-label input, #rs-label textarea").first.fill("Dr A")
    for button, code, said in [("rs-results-btn", "", "type the owner code of study 'made here'"),
                               ("rs-export", "wrong-1", "wrong owner code for study 'made here'"),
                               ("rs-close", "", "Not closed: type the owner code"),
                               ("rs-invite", "wrong-2", "wrong owner code for study 'made here'"),
                               ("rs-links-btn", "", "type the owner code of study 'made here'"),
                               ("rs-revoke", "wrong-3", "wrong owner code for study 'made here'")]:
        page.locator("#rs-owner-code input").fill(code)
        page.locator(f"#{button}").click()
        message(page, said)
        page.wait_for_timeout(400)
        assert badges(page) == 0, button
    assert page.locator("#rs-study input, #rs-readers, #rs-owner-code input").filter(visible=True).count() == 3
    shots(page, "reader-study-07b-owner-refusals", full_page=True)

    # a study made without a code: nothing shown until its owner sets one, which works once
    assert not page.locator("#rs-set-code").is_visible()
    page.locator("#rs-owner-code input").fill("")
    pick(page, "rs-study", "legacy")
    message(page, "This study has no owner code yet")
    page.locator("#rs-owner-code input").fill("guess")
    page.locator("#rs-results-btn").click()
    message(page, "has no owner code yet, so the app shows none of its answers")
    page.wait_for_timeout(1500)
    assert badges(page) == 0 and page.locator("#rs-study input").is_visible()
    assert page.locator("#rs-results table, #rs-plot img").count() == 0
    shots(page, "reader-study-08-no-code", full_page=True)
    page.locator("#rs-owner-code input").fill("legacy-code")
    page.locator("#rs-set-code").click()
    message(page, "Owner code of legacy set")
    page.wait_for_selector("#rs-set-code", state="hidden")
    page.locator("#rs-results-btn").click()
    page.wait_for_function("() => document.querySelector('#rs-results').innerText.includes('No answers yet')")
    assert owner_code_hash(studio.workspace_dir, "legacy").startswith("scrypt$")
