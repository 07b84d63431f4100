"""Benchmark of the caption workspace and the offline describer, against the targets of the issue.

    python benchmarks/workspace_bench.py [--images 10000] [--workspace DIR] [--describe 200]

Builds (or reuses) a workspace of N distinct 320x320 images with captions and thumbnails,
then measures, each many times on random pages/ids:
- a gallery page of 48 thumbnails (the query plus reading the 48 thumbnail files)   < 150 ms
- saving an edit (one transaction with its history row and token count)             <  20 ms
and, for information, the Data tab's gallery page (stats, split filter, 60 thumbnails), approve, find/replace preview over everything and next-unreviewed.
Then the offline describer's throughput on 512x512 images (the demo fundus and histology
crops upscaled, a noise image, a flat image)                                       >= 20 images/s
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from captioning.offline import describe_pixels
from medart.assets import DEMO_DIR
from medart.tiny_base import TOKENIZER_DIR as TOKENIZER
from medart.workspace import Filter, NewImage, Workspace


def timings(fn, n: int) -> tuple[float, float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return statistics.median(out), out[int(0.95 * (len(out) - 1))]


def build(ws: Workspace, n: int) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    have = ws.count()
    t0 = time.perf_counter()
    for start in range(have, n, 500):
        rows = []
        for k in range(start, min(n, start + 500)):
            tile = np.roll(base, k % 40, axis=0) ^ np.uint8(k % 251)
            image = Image.fromarray(tile).resize((320, 320), Image.Resampling.BILINEAR)
            sha, size, _ = ws.store_image(image)
            text = f"An endoscopic image of polyps, predominantly pink with {k} white speckles. The surface appears smooth."
            rows.append(NewImage(sha, f"img{k:05d}.png", 320, 320, "RGB", size, "bench", ("polyps", "normal")[k % 2], text=text))
        ws.add_images(rows)
        print(f"  built {min(n, start + 500)}/{n} images ({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--workspace", help="reuse this folder (built on first run); default: a temporary one")
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--describe", type=int, default=200, help="images for the describer throughput")
    args = p.parse_args()

    from transformers import AutoTokenizer

    tmp = None
    root = Path(args.workspace) if args.workspace else Path(tmp := tempfile.mkdtemp(prefix="medart-bench-"))
    ws = Workspace(root, tokenizer=AutoTokenizer.from_pretrained(TOKENIZER))
    results = []
    try:
        if ws.count() < args.images:
            print(f"building a workspace of {args.images} images in {root} ...")
            build(ws, args.images)
        n = ws.count()
        rnd = random.Random(time.time_ns())  # a rerun on the same workspace must make real changes

        def page():
            offset = rnd.randrange(0, max(1, n - 48))
            items = ws.page(Filter(), offset=offset, limit=48)
            return [it.thumb_path.read_bytes() for it in items]

        flt = Filter(status="edited", label="polyps")
        n_flt = ws.count(flt)

        def page_filtered():
            items = ws.page(flt, offset=rnd.randrange(0, max(1, n_flt - 48)), limit=48)
            return [it.thumb_path.read_bytes() for it in items]

        n_train = ws.count(Filter(split="train"))

        def data_tab_page():  # the Data tab's gallery: counts, the filtered total, 60 thumbnails
            ws.stats()
            ws.count(Filter(split="train"))
            items = ws.query(Filter(split="train"), offset=rnd.randrange(0, max(1, n_train - 60)), limit=60)
            return [it.thumb_path.read_bytes() for it in items]

        def edit():
            i = rnd.randrange(1, n + 1)
            ws.set_text(i, f"An endoscopic image of polyps, edited {rnd.random():.6f}. The mucosa is pink.")

        assert len(page()) == 48 and len(page_filtered()) == 48
        results.append(("page of 48 thumbnails", *timings(page, args.repeat), "< 150 ms", 150))
        results.append(("page of 48, filtered (status+label)", *timings(page_filtered, args.repeat), "< 150 ms", 150))
        results.append(("Data tab page (stats, split filter, 60)", *timings(data_tab_page, args.repeat), "-", None))
        results.append(("save an edit", *timings(edit, args.repeat), "< 20 ms", 20))
        results.append(("approve one", *timings(lambda: ws.approve([rnd.randrange(1, n + 1)]), 50), "-", None))
        results.append(("next unreviewed", *timings(lambda: ws.next_unreviewed(rnd.randrange(1, n)), 50), "-", None))
        results.append(
            (f"find/replace preview over {n}", *timings(lambda: ws.find_replace(r"\bpink\b", "salmon"), 5), "-", None)
        )
        results.append(("undo the last change", *timings(lambda: ws.undo(), 20), "-", None))
    finally:
        ws.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    demo = sorted(DEMO_DIR.glob("*.jpg"))
    sources = [Image.open(p).convert("RGB").resize((512, 512), Image.Resampling.BICUBIC) for p in demo]
    rng = np.random.default_rng(1)
    sources.append(Image.fromarray((rng.random((512, 512, 3)) * 255).astype(np.uint8)))
    sources.append(Image.new("RGB", (512, 512), (230, 150, 150)))
    images = [sources[k % len(sources)].copy() for k in range(args.describe)]
    t0 = time.perf_counter()
    for im in images:
        describe_pixels(im, "An endoscopic image of polyps", "mucosa")
    rate = len(images) / (time.perf_counter() - t0)

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"\nworkspace of {n} images; {os.cpu_count()} CPU cores; OMP_NUM_THREADS={threads}")
    print(f"{'measure':<40} {'median':>10} {'p95':>10}  target     result")
    ok = True
    for name, med, p95, target, limit in results:
        verdict = "-" if limit is None else ("PASS" if p95 < limit else "FAIL")
        ok &= verdict != "FAIL"
        print(f"{name:<40} {med:>8.2f}ms {p95:>8.2f}ms  {target:<10} {verdict}")
    verdict = "PASS" if rate >= 20 else "FAIL"
    ok &= verdict == "PASS"
    print(f"{'offline describer, 512 px':<40} {rate:>7.1f}/s {'':>10}  {'>= 20/s':<10} {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
