"""Real multi-class colour sets for measuring HLDF, and the per-class measure itself.

Three classes of real medical images that ship with scikit-image and pydicom (no download):

    fundus     colour   tiles of `skimage.data.retina()` (fundus photograph, CC0)
    histology  colour   tiles of `skimage.data.immunohistochemistry()` (IHC, DAB + haematoxylin)
    mri        gray     tiles of pydicom's `examples_overlay.dcm` (an abdominal MR slice)

Each source image is cut into non-overlapping tiles on a grid (tiles that are mostly
background are skipped), the tiles are shuffled with a seed and split: the first `n_train`
of each class are the training images (an imagefolder with `text` and `label`), the next
`n_reference` are held out as that class's unseen reference set. Each class has its own
caption. The measure is the set-level colour distance of `color_stats.moment_distance`
(the colour loss applied to two sets' average statistics, images in [-1, 1]) between
images generated from a class's caption and the class's reference set
(benchmarks/hldf_ablation.py applies it to the class bank, `medart.class_bank`, with bootstrap
intervals).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medart import color_stats
from medart.fileio import atomic_write_text

CAPTIONS = {
    "fundus": "A fundus photograph of the retina, orange-red background with dark red branching vessels.",
    "histology": "A histology image with brown stained nuclei scattered on a pale blue background.",
    "mri": "A grayscale MRI slice of the abdomen, grey soft tissue and bright organs between dark gaps.",
}


def _tiles(image: np.ndarray, tile: int, keep) -> list[np.ndarray]:
    """Non-overlapping `tile` x `tile` tiles on a grid, those for which `keep(tile)` holds."""
    h, w = image.shape[:2]
    out = []
    for y in range(0, h - tile + 1, tile):
        for x in range(0, w - tile + 1, tile):
            t = image[y:y + tile, x:x + tile]
            if keep(t):
                out.append(t)
    return out


def _mri() -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("examples_overlay.dcm"))
    a = ds.pixel_array.astype(np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def class_tiles(size: int = 64) -> dict[str, list[Image.Image]]:
    """All usable tiles of each class, as `size` x `size` RGB images, in grid order."""
    from skimage import data

    def dark(t, limit):  # share of near-black pixels
        g = t if t.ndim == 2 else t.mean(axis=2)
        return (g < 20).mean() < limit

    sources = {
        "fundus": _tiles(data.retina(), 128, lambda t: dark(t, 0.02)),
        "histology": _tiles(data.immunohistochemistry(), 64, lambda t: True),
        "mri": _tiles(_mri(), 40, lambda t: dark(t, 0.35)),
    }
    out = {}
    for label, tiles in sources.items():
        out[label] = [Image.fromarray(t).convert("RGB").resize((size, size), Image.LANCZOS) for t in tiles]
    return out


@dataclass
class ClassSet:
    train: Path  # imagefolder: train/ + metadata.jsonl (file_name, text, label)
    reference: dict[str, list[Image.Image]]  # unseen real images per class
    captions: dict[str, str]


def build(folder: str | Path, n_train: int = 12, n_reference: int = 24, size: int = 64, seed: int = 0,
          classes: tuple[str, ...] = ("fundus", "histology", "mri")) -> ClassSet:
    """Write the training imagefolder under `folder` and return it with the reference sets."""
    folder = Path(folder)
    train = folder / "train"
    train.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tiles = class_tiles(size)
    rows, reference = [], {}
    for label in classes:
        pool = tiles[label]
        if len(pool) < n_train + n_reference:
            raise ValueError(f"class {label!r} has {len(pool)} tiles; {n_train} + {n_reference} were asked for")
        order = rng.permutation(len(pool))
        for k, i in enumerate(order[:n_train]):
            name = f"{label}_{k:02d}.png"
            pool[i].save(train / name)
            rows.append({"file_name": name, "text": CAPTIONS[label], "label": label})
        reference[label] = [pool[i] for i in order[n_train:n_train + n_reference]]
    atomic_write_text(train / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ClassSet(train, reference, {c: CAPTIONS[c] for c in classes})


def stat_matrix(images: list) -> np.ndarray:
    """(n, 6): each image's per-channel means and stds (`color_stats.image_stats`, [0, 1])."""
    keys = [f"mean_{c}" for c in color_stats.CHANNELS] + [f"std_{c}" for c in color_stats.CHANNELS]
    return np.array([[s[k] for k in keys] for s in map(color_stats.image_stats, images)])


def set_distance(a: np.ndarray, b: np.ndarray) -> float:
    """`color_stats.moment_distance` between two sets given as `stat_matrix` rows: Σ over RGB
    of Δmean² + Δstd² of the sets' average statistics, on images in [-1, 1]."""
    return 4.0 * float(((a.mean(0) - b.mean(0)) ** 2).sum())


def distance(generated: list, reference: list) -> float:
    """Set-level colour distance (images in [-1, 1]) between generated and reference images."""
    return set_distance(stat_matrix(generated), stat_matrix(reference))
