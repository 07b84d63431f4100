"""Shared setup of the benchmarks: threads, devices, synthetic data, timing.

The benchmarks use the installed package (`pip install -e .`, README).
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def configure() -> None:
    """One torch thread on a CPU (OpenMP spin-waiting makes small CPU ops erratic with 2+
    threads) and the hub offline; done on import, and safe to call again."""
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


configure()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def median(xs) -> float:
    return statistics.median(xs)


def synthetic_examples(n: int, size: int):
    """Random RGB images with captions, as training examples (for timing only)."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from medart.data import Example

    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
        caption = (f"An endoscopic image of a polyp number {i}, predominantly pink with white speckles, "
                   "irregularly shaped, surrounded by a reddish mucosa with a wet surface.")
        examples.append(Example(f"synthetic_{i}.png", data, caption, hashlib.sha256(data).hexdigest()[:20], (size, size)))
    return examples
