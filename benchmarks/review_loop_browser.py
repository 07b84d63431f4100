"""Browser benchmark of the review loop: Approve & next, Next, Previous and selecting a
thumbnail in the Captions tab, end to end in Chromium, on a 10,000-image workspace.

    python benchmarks/review_loop_browser.py --workspace /tmp/bench10k [--repeat 60]

Starts `python app.py --workspace WS` (its own process, a temporary home, the tiny base) as a
person would, opens the Captions tab in headless Chromium (Playwright, /usr/bin/chromium) and
times each action from the click to the moment the page shows its result and has painted it:
the editor's image number changed, its new image loaded, the caption in place and, for Approve
& next, the counts and gallery redrawn. The timing runs inside the page (performance.now and
requestAnimationFrame), so Playwright's own round trips are not counted. Between actions it
waits for the page to go quiet (untimed), as a person reading a caption would. It also records
what each action costs on the wire (bytes received, requests) from Chromium's network events.

Target (issue 13): each action at most 300 ms at the 95th percentile. The workspace is built
with benchmarks/workspace_bench.py (`--images 10000`; a few minutes) when it holds fewer
images. This is a benchmark to run by hand, not a timed test; results go in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MEDART_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TARGET_MS = 300

# Click `selector` (or the n-th gallery thumbnail) and wait, frame by frame, until the editor
# shows another image (number, caption and loaded pixels) and, when `counts` is given, the
# counts line has changed; then one more frame so that it is painted. With `counts`, it then
# waits for the gallery's label of the approved image to say so. Returns [ms, ms or null].
ACTION_JS = """
async ({selector, thumb, counts}) => {
  const q = s => document.querySelector(s);
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const beforeId = q('#caption-id input').value;
  const beforeSrc = (q('#caption-image img') || {}).src;
  const beforeCounts = q('#caption-counts').innerText;
  const t0 = performance.now();
  if (thumb !== null) {  // a thumbnail of another image than the one in the editor
    const items = [...document.querySelectorAll('#caption-gallery .thumbnail-item')];
    const other = items.filter(b => !(b.innerText || '').startsWith('#' + beforeId + ' '));
    other[thumb % other.length].click();
  } else q(selector).click();
  for (;;) {
    await frame();
    const img = q('#caption-image img');
    const done = q('#caption-id input').value !== beforeId && img && img.src !== beforeSrc && img.complete
      && img.naturalWidth > 0 && q('#caption-text textarea').value.length > 0
      && (!counts || q('#caption-counts').innerText !== beforeCounts);
    if (done) break;
    if (performance.now() - t0 > 30000) return -1;
  }
  await frame();
  const shown = performance.now() - t0;
  if (!counts) return [shown, null];
  // Approve & next: the gallery's label of the approved image follows in a second event
  for (;;) {
    const label = [...document.querySelectorAll('#caption-gallery .caption-label')]
      .find(l => l.innerText.startsWith('#' + beforeId + ' '));
    if (!label || label.innerText.startsWith('#' + beforeId + ' approved')) break;
    await frame();
    if (performance.now() - t0 > 30000) return [-1, -1];
  }
  await frame();
  return [shown, performance.now() - t0];
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_workspace(path: Path, images: int) -> None:
    from transformers import AutoTokenizer

    from medart.tiny_base import TOKENIZER_DIR
    from medart.workspace import Workspace

    from workspace_bench import build  # beside this script (a script's folder is on the path)

    with Workspace(path, tokenizer=AutoTokenizer.from_pretrained(TOKENIZER_DIR)) as ws:
        if ws.count() < images:
            print(f"building a workspace of {images} images in {path} (a few minutes) ...", flush=True)
            build(ws, images)


def start_app(workspace: Path, home: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    env.pop("MEDART_WORKSPACE", None)
    log = open(home / "app.log", "ab")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--home", str(home),
                             "--workspace", str(workspace), "--base-model", "tiny"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(home))
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited: {(home / 'app.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the app did not start")


class Wire:
    """Bytes and requests Chromium received, from its network events (CDP)."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.bytes = 0
        self.requests = 0
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.on("Network.requestWillBeSent", self._sent)

    def _finished(self, event):
        self.bytes += int(event.get("encodedDataLength", 0))

    def _sent(self, event):
        self.requests += 1

    def mark(self) -> tuple[int, int]:
        return self.bytes, self.requests


def quiet(page, ms: int = 400) -> None:
    """Wait until Gradio shows nothing pending, then a little longer (a person reads the caption)."""
    page.wait_for_function("!document.querySelector('.pending, .generating')", timeout=30000)
    page.wait_for_timeout(ms)


def summary(name: str, times: list[float], wire_bytes: list[int], wire_requests: list[int]) -> dict:
    times = sorted(times)
    return {"action": name, "n": len(times), "median": statistics.median(times),
            "p95": times[int(round(0.95 * (len(times) - 1)))], "max": times[-1],
            "kb": statistics.median(wire_bytes) / 1024, "requests": statistics.median(wire_requests)}


def measure(page, wire: Wire, name: str, repeat: int, **action) -> list[dict]:
    times, gallery, wire_bytes, wire_requests = [], [], [], []
    args = {"selector": None, "thumb": None, "counts": False} | action
    for k in range(repeat):
        if args["thumb"] is not None:
            args["thumb"] = (k * 7 + 3) % 40  # a different thumbnail of the page each time
        quiet(page)
        b0, r0 = wire.mark()
        ms, then = page.evaluate(ACTION_JS, args)
        if ms < 0:
            raise SystemExit(f"{name}: the page did not show the result within 30 s")
        quiet(page, 150)
        b1, r1 = wire.mark()
        times.append(ms)
        if then is not None:
            gallery.append(then)
        wire_bytes.append(b1 - b0)
        wire_requests.append(r1 - r0)
    out = [summary(name, times, wire_bytes, wire_requests)]
    if gallery:
        out.append(summary("  + gallery relabelled", gallery, wire_bytes, wire_requests))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", required=True, help="the workspace (built here if it has fewer than --images)")
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=60, help="timed clicks per action")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    workspace = Path(args.workspace)
    ensure_workspace(workspace, args.images)
    home = Path(tempfile.mkdtemp(prefix="medart-review-bench-"))
    port = free_port()
    proc = start_app(workspace, home, port)
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Captions").click()
            page.wait_for_selector("#caption-gallery button.thumbnail-item")
            page.locator("#caption-gallery button.thumbnail-item").first.click()
            page.wait_for_function("document.querySelector('#caption-id input').value !== ''")
            wire = Wire(page)
            for _ in range(3):  # warm-up, untimed
                page.evaluate(ACTION_JS, {"selector": "#next-caption", "thumb": None, "counts": False})  # warm-up
                quiet(page, 100)
            results += measure(page, wire, "Next", args.repeat, selector="#next-caption")
            results += measure(page, wire, "Previous", args.repeat, selector="#prev-caption")
            results += measure(page, wire, "select a thumbnail", args.repeat, thumb=0)
            page.locator("#next-unreviewed").click()  # approving moves on from an unreviewed caption
            quiet(page)
            results += measure(page, wire, "Approve & next", args.repeat, selector="#approve-next", counts=True)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)

    from medart.workspace import Workspace

    with Workspace(workspace) as ws:
        n = ws.count()
    load = os.getloadavg()
    print(f"\nworkspace of {n} images; {os.cpu_count()} CPU cores; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'action':<24} {'n':>4} {'median':>9} {'p95':>9} {'max':>9} {'KB/click':>9} {'requests':>9}  target")
    ok = True
    for r in results:
        verdict = "PASS" if r["p95"] <= TARGET_MS else "FAIL"
        ok &= verdict == "PASS"
        print(f"{r['action']:<24} {r['n']:>4} {r['median']:>7.0f}ms {r['p95']:>7.0f}ms {r['max']:>7.0f}ms "
              f"{r['kb']:>9.1f} {r['requests']:>9.0f}  p95 <= {TARGET_MS} ms {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
