"""Colour statistics of images and image sets: what HLDF's colour loss is meant to fix.

The paper's colour loss compares, per RGB channel, the mean and the standard deviation of a
generated image with those of the training image. This module measures the same quantities
on finished images (numpy only, no torch) so that the Compare tab, the evaluation report and
the loss's tests all speak the same numbers:

- per-channel mean and population std on a [0, 1] scale,
- mean HSV saturation in [0, 1],
- colourfulness (Hasler and Süsstrunk, 2003) on 0..255 values,
- a distance between two image sets built on the per-channel mean and std,
- normalised per-channel histograms for plots.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

CHANNELS = ("r", "g", "b")
STAT_KEYS = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "saturation",
    "colourfulness",
)


def to_array(img) -> np.ndarray:
    """An image as float64 HxWx3 in [0, 1].

    Accepts a PIL image (any mode; grayscale becomes three equal channels, alpha is
    dropped) or an array: uint8 (0..255) or float (taken as already in [0, 1]), shaped
    HxW, HxWx1, HxWx3 or HxWx4.
    """
    if hasattr(img, "convert") and hasattr(img, "mode"):  # PIL image
        img = img.convert("RGB")
        return np.asarray(img, dtype=np.float64) / 255.0
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float64) / 255.0
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise ValueError(f"integer images must be uint8 (0..255); got dtype {arr.dtype}")
    else:
        arr = arr.astype(np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image; got shape {arr.shape}")
    channels = arr.shape[2]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels != 3:
        raise ValueError(f"expected 1, 3 or 4 channels; got {channels}")
    return np.ascontiguousarray(arr)


def _saturation(arr: np.ndarray) -> float:
    """Mean HSV saturation: (max - min) / max per pixel, 0 where max is 0."""
    cmax = arr.max(axis=2)
    cmin = arr.min(axis=2)
    sat = np.divide(cmax - cmin, cmax, out=np.zeros_like(cmax), where=cmax > 0)
    return float(sat.mean())


def _colourfulness(arr: np.ndarray) -> float:
    """Hasler and Süsstrunk (2003) colourfulness on 0..255 values."""
    rgb = arr * 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    std_root = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mean_root = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(std_root + 0.3 * mean_root)


def image_stats(img) -> dict:
    """Colour statistics of one image (keys in `STAT_KEYS`)."""
    arr = to_array(img)
    flat = arr.reshape(-1, 3)
    means = flat.mean(axis=0)
    stds = flat.std(axis=0)  # population std (ddof=0); the colour loss's torch std is Bessel-corrected (< 1e-4 apart at 64 px)
    stats = {}
    for i, c in enumerate(CHANNELS):
        stats[f"mean_{c}"] = float(means[i])
    for i, c in enumerate(CHANNELS):
        stats[f"std_{c}"] = float(stds[i])
    stats["saturation"] = _saturation(arr)
    stats["colourfulness"] = _colourfulness(arr)
    return stats


def _as_list(images) -> list:
    images = list(images) if not isinstance(images, list) else images
    if not images:
        raise ValueError("an empty image set has no colour statistics; give at least one image")
    return images


def set_stats(images: Iterable) -> dict:
    """Mean over the images of each per-image statistic (keys in `STAT_KEYS`)."""
    per_image = [image_stats(im) for im in _as_list(images)]
    return {k: float(np.mean([s[k] for s in per_image])) for k in STAT_KEYS}


def moment_distance(stats_a: dict, stats_b: dict) -> float:
    """sum_c (mean_a_c - mean_b_c)^2 + (std_a_c - std_b_c)^2 between two `set_stats` results,
    on images scaled to [-1, 1] (4x the [0, 1] value): the paper's colour loss applied to two
    sets' average statistics. HLDF's per-class curves and its ablation report this number."""
    total = 0.0
    for c in CHANNELS:
        total += (stats_a[f"mean_{c}"] - stats_b[f"mean_{c}"]) ** 2
        total += (stats_a[f"std_{c}"] - stats_b[f"std_{c}"]) ** 2
    return 4.0 * float(total)


def color_distance(images_a: Iterable, images_b: Iterable) -> float:
    """Distance between two image sets in per-channel mean and std ([0, 1] units).

    sqrt( sum_c (mean_a_c - mean_b_c)^2 + (std_a_c - std_b_c)^2 ), where mean_x_c and
    std_x_c are averages over the set of each image's channel mean and channel std. This
    mirrors the paper's colour loss, which compares per-channel mean and std; it is
    sqrt(`moment_distance` / 4).
    """
    return float(np.sqrt(moment_distance(set_stats(images_a), set_stats(images_b)) / 4.0))


def channel_histograms(images: Iterable, bins: int = 32) -> dict[str, np.ndarray]:
    """Normalised histograms (each sums to 1) of the r, g, b values of all pixels of a set.

    Keys are "r", "g", "b"; bins split [0, 1] evenly (edges `np.linspace(0, 1, bins + 1)`).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1; got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.zeros((3, bins), dtype=np.float64)
    for im in _as_list(images):
        flat = to_array(im).reshape(-1, 3)
        for i in range(3):
            counts[i] += np.histogram(np.clip(flat[:, i], 0.0, 1.0), bins=edges)[0]
    return {c: counts[i] / counts[i].sum() for i, c in enumerate(CHANNELS)}
