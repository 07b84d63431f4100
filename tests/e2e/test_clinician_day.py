"""A clinician's day in Chromium, against `python app.py` started with MEDART_WORKSPACE:

- one workspace: the status line names the one the variable chose, and the command line
  (same environment) lists what the page imported into it (issue 13, point 4);
- an upload of images with their metadata.jsonl, metadata.csv and .txt sidecars attaches
  their captions, and the summary counts images, captions and real rejections only (point 3);
- batch captioning leaves reviewed captions alone by default; replacing them asks first,
  saying how many, and one Undo restores the whole batch (point 1);
- Approve & next, then Undo: the approval just made is undone, said so, and shown (point 9);
- Compare opens on the newest finished run, puts a reference's caption into the prompt in one
  click, labels the slider's halves, draws one histogram panel per channel and explains every
  number (point 6).
Screenshots go to tests/artifacts/day-*.png.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time

import pytest

from apphelpers import AppServer, open_page
from helpers import make_tuned_run
from medart.assets import DEMO_DIR

pytestmark = pytest.mark.slow  # a real browser against a running app

TIMEOUT = 120_000  # ms; a guard against hangs, not a performance assertion



def click_until(page, button: str, shown: str, tries: int = 4) -> None:
    """Click `button` until `shown` appears: a click that lands while the same button's previous
    event is still finishing is dropped by the page (Gradio's trigger mode "once"), which a busy
    machine makes likely; each click must still bring the question."""
    for _ in range(tries):
        page.locator(button).click()
        try:
            page.wait_for_selector(shown, timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: press again
            continue
    raise AssertionError(f"{button} never showed {shown!r}")

def uploads(folder):
    """Six demo images as a person would pick them, with a metadata.jsonl (three captions, one
    naming an image not picked), a metadata.csv (one caption) and a .txt sidecar (one)."""
    files = sorted(DEMO_DIR.glob("fundus_*.jpg"))[:6]
    picked = []
    for f in files:
        shutil.copy(f, folder / f.name)
        picked.append(folder / f.name)
    rows = [{"file_name": files[k].name, "text": f"A fundus image, reviewed caption {k}."} for k in range(3)]
    rows.append({"file_name": "fundus_99.jpg", "text": "An image that was not picked."})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "metadata.csv").write_text(f"file_name,text\n{files[3].name},\"A fundus image, reviewed caption 3.\"\n")
    (folder / files[4].with_suffix(".txt").name).write_text("A fundus image, reviewed caption 4.")
    return picked + [folder / "metadata.jsonl", folder / "metadata.csv", folder / files[4].with_suffix(".txt").name]


def captions(ws_dir) -> dict[int, tuple[str, str]]:
    with sqlite3.connect(ws_dir / "workspace.db") as db:
        return {i: (t, s) for i, t, s in db.execute("SELECT image_id, text, status FROM captions ORDER BY image_id")}


def wait_job_done(page):
    page.wait_for_selector('#batch-job[data-state="done"]', timeout=TIMEOUT)


def test_a_clinicians_day(tmp_path, medart_cache, browser, shots, monkeypatch):
    home, ws_dir = tmp_path / "home", tmp_path / "chosen-workspace"
    older = make_tuned_run(home / "runs" / "older-run")
    os.utime(older, (time.time() - 600, time.time() - 600))
    make_tuned_run(home / "runs" / "newest-run")
    server = AppServer(home, medart_cache, extra_env={"MEDART_WORKSPACE": str(ws_dir)}).start()
    try:
        page = open_page(browser, server.url, TIMEOUT)

        # 4: one workspace, named with where the choice came from
        page.wait_for_selector("#status-line:has-text('Workspace:')")
        assert f"Workspace: {ws_dir} (MEDART_WORKSPACE)" in page.locator("#status-line").inner_text()

        # 3: an upload with its sidecars
        picked = tmp_path / "picked"
        picked.mkdir()
        page.set_input_files("#import-upload input[type=file]", [str(p) for p in uploads(picked)])
        page.wait_for_selector("#import-upload :text('metadata.jsonl')")
        page.locator("#import-files").click()
        page.wait_for_selector("#import-summary:has-text('Imported 6 image(s)')")
        summary = page.locator("#import-summary").inner_text()
        assert "Imported 6 image(s), 5 with a caption from their metadata or .txt file, 0 duplicate(s), 0 rejected" \
            in summary, summary
        assert "1 row(s) of the metadata name images that were not imported" in summary
        shots(page, "day-upload")
        before = captions(ws_dir)
        assert sorted(s for _, s in before.values()) == ["draft"] + ["edited"] * 5
        monkeypatch.setenv("MEDART_WORKSPACE", str(ws_dir))  # the command line, same environment: same images
        from medart.cli import main

        assert main(["list"]) == 0

        # 1: a batch writes drafts only; replacing reviewed captions asks first, with the count
        page.get_by_role("tab", name="Captions").click()
        page.wait_for_selector("#caption-counts:has-text('6 shown')")
        page.locator("#batch-caption").click()
        wait_job_done(page)
        after = captions(ws_dir)
        assert [after[i] for i in after if before[i][1] == "edited"] == [v for v in before.values() if v[1] == "edited"]
        assert all(t for t, _ in after.values())  # the draft got its caption
        page.get_by_label("drafts and edited captions").check()
        click_until(page, "#batch-caption", "#batch-confirm-text:has-text('5 edited')")
        assert "replaces 5 edited caption(s)" in page.locator("#batch-confirm-text").inner_text().replace("**", "")
        assert page.locator("#batch-confirm-yes").inner_text() == "Replace 5 reviewed caption(s)"
        assert captions(ws_dir) == after  # nothing happens until confirmed
        shots(page, "day-batch-confirm", full_page=True)
        page.locator("#batch-confirm-yes").click()
        page.wait_for_function("!document.querySelector('#batch-confirm') || "
                               "document.querySelector('#batch-confirm').offsetParent === null")
        page.wait_for_selector('#batch-job[data-state="running"], #batch-job[data-state="done"]')
        wait_job_done(page)
        page.wait_for_selector("#caption-counts:has-text('edited 0')")
        page.locator("#undo-caption").click()  # the whole batch, one step
        page.wait_for_selector("#review-note:has-text('Undid the batch captioning')")
        assert captions(ws_dir) == after

        # 9: Approve & next, then Undo: the approval is undone, not the next caption
        page.locator("#caption-gallery .thumbnail-item").nth(1).click()
        page.wait_for_function("document.querySelector('#caption-id input').value === '2'")
        page.locator("#approve-next").click()
        page.wait_for_function("document.querySelector('#caption-id input').value !== '2'")
        moved_to = page.locator("#caption-id input").input_value()
        assert captions(ws_dir)[2][1] == "approved"
        page.keyboard.press("Alt+z")
        page.wait_for_selector("#review-note:has-text('Undid the approval of #2')")
        page.wait_for_function("document.querySelector('#caption-id input').value === '2'")
        assert captions(ws_dir)[2] == after[2] and captions(ws_dir)[int(moved_to)] == after[int(moved_to)]
        shots(page, "day-captions", full_page=True)

        # 6: Compare explains itself
        page.get_by_role("tab", name="Compare").click()
        page.wait_for_function("document.querySelector('#compare-run input').value === 'newest-run'")
        page.locator("#compare-reference input").click()
        page.get_by_role("option", name="#1 ").click()
        page.wait_for_selector("#compare-ref-caption:has-text('Its caption')")
        page.locator("#compare-use-caption").click()
        page.wait_for_function(
            f"document.querySelector('#compare-prompt textarea').value === {json.dumps(after[1][0])}")
        page.locator("#compare-go").click()
        page.wait_for_selector("#compare-slider img")
        page.wait_for_function("document.querySelector('#compare-stats').innerText.includes('reference')")
        page.wait_for_selector("#compare-hist img")
        assert "Base (left) ⟷ tuned (right)" in page.locator("#compare-slider").inner_text()
        help_text = page.locator("#compare-help").inner_text()
        for column in ("mean R / G / B", "std R / G / B", "saturation", "colourfulness", "distance to reference"):
            assert column in help_text
        shots(page, "day-compare", full_page=True)

        # 10: a person's mistake is a message on the page and one line in the server's log
        page.locator("#compare-prompt textarea").fill("")
        page.locator("#compare-go").click()
        page.wait_for_selector(":text('write a prompt')")
        shots(page, "day-refused")
        page.close()
    finally:
        server.kill()
        server.stop_jobs()
    log = server.log.read_text()
    assert "Traceback" not in log
    refused = [line for line in log.splitlines() if "refused" in line]
    assert len(refused) == 1 and "write a prompt" in refused[0], refused
