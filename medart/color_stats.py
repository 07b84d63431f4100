"""Colour statistics of images and image sets: what HLDF's colour loss is meant to fix.

The paper's colour loss compares, per RGB channel, the mean and the standard deviation of a
generated image with those of the training image. This module measures the same quantities
on finished images (numpy only, no torch) so that the Compare tab, the evaluation report and
the loss's tests all speak the same numbers:

- per-channel mean and population std on a [0, 1] scale,
- mean HSV saturation in [0, 1],
- colourfulness (Hasler and Süsstrunk, 2003) on 0..255 values,
- a distance between two image sets built on the per-channel mean and std,
- the per-channel 1-D Wasserstein distance between two sets' pooled pixel distributions (what
  the mean and std alone miss: a set can match both with the wrong distribution),
- hue fidelity: the share of a set's pixels that are chromatic in a hue the real set (almost)
  does not have ("off-hue"; a gray class has no hue at all),
- normalised per-channel histograms for plots.

The set measures also come from per-image counts (`channel_counts`, `hue_counts`) so that a
bootstrap can resample images by summing counts instead of rereading pixels.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

CHANNELS = ("r", "g", "b")
LEVELS = 256  # 8-bit pixel levels: the distributions of `channel_counts`
CHROMA_THRESHOLD = 0.1  # a pixel is chromatic above this HSV chroma (max - min of R, G, B in [0, 1])
HUE_BINS = 12  # hue bins of 30 degrees, the first starting at red (0 degrees)
OFF_HUE_MIN_SHARE = 0.01  # a hue bin holding less of the real set's chromatic pixels is off-hue
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


def channel_counts(images: Iterable) -> np.ndarray:
    """(n, 3, 256): per image and R, G, B channel, how many pixels have each 8-bit level
    (float values in [0, 1] are rounded to the nearest 1/255)."""
    out = []
    for im in _as_list(images):
        levels = np.round(np.clip(to_array(im), 0.0, 1.0) * (LEVELS - 1)).astype(np.int64).reshape(-1, 3)
        out.append([np.bincount(levels[:, i], minlength=LEVELS) for i in range(3)])
    return np.asarray(out, dtype=np.int64)


def channel_wasserstein_from_counts(counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """`channel_wasserstein` from `channel_counts` of the two sets (per image (n, 3, 256), or
    already summed over a set's images (3, 256)): scipy's 1-D Wasserstein distance between the
    pooled level distributions of each channel, on the [0, 1] scale, averaged over R, G, B."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(counts_a), np.asarray(counts_b)
    a, b = (a.sum(axis=0) if a.ndim == 3 else a), (b.sum(axis=0) if b.ndim == 3 else b)
    if a.shape != (3, LEVELS) or b.shape != (3, LEVELS):
        raise ValueError(f"expected channel counts shaped (n, 3, {LEVELS}) or (3, {LEVELS}); got {a.shape}, {b.shape}")
    if not (a.sum(axis=1) > 0).all() or not (b.sum(axis=1) > 0).all():
        raise ValueError("an image set without pixels has no distribution; give at least one image")
    values = np.arange(LEVELS) / (LEVELS - 1)
    return float(np.mean([wasserstein_distance(values, values, a[i], b[i]) for i in range(3)]))


def channel_wasserstein(images_a: Iterable, images_b: Iterable) -> float:
    """Mean over R, G, B of the 1-D Wasserstein (earth mover's) distance between the two sets'
    pooled pixel values, [0, 1] scale: 0 for sets with the same distribution of each channel,
    and the size of the shift for a set whose every pixel is moved by the same amount. Unlike
    `moment_distance` it sees a wrong shape of the distribution behind a right mean and std."""
    return channel_wasserstein_from_counts(channel_counts(images_a), channel_counts(images_b))


def hue_counts(images: Iterable, chroma: float = CHROMA_THRESHOLD, bins: int = HUE_BINS) -> np.ndarray:
    """(n, bins + 1): per image, how many chromatic pixels (HSV chroma, max - min of R, G, B in
    [0, 1], above `chroma`) fall in each hue bin, and in the last column how many pixels are
    achromatic. Hue bin k covers [k, k + 1) x 360 / bins degrees of the HSV hue, 0 = red, 120 =
    green, 240 = blue (with 12 bins: red 0-30, yellow 60-90, green 120-150, blue 240-270)."""
    out = []
    for im in _as_list(images):
        flat = to_array(im).reshape(-1, 3)
        cmax, cmin = flat.max(axis=1), flat.min(axis=1)
        c = cmax - cmin
        keep = c > chroma
        r, g, b = flat[keep].T
        ck, mk = c[keep], cmax[keep]
        hue = np.where(mk == r, ((g - b) / ck) % 6, np.where(mk == g, (b - r) / ck + 2, (r - g) / ck + 4)) * 60.0
        k = np.minimum((hue * bins / 360.0).astype(np.int64), bins - 1)
        out.append(np.append(np.bincount(k, minlength=bins), int((~keep).sum())))
    return np.asarray(out, dtype=np.int64)


def off_hue_share_from_counts(generated: np.ndarray, real: np.ndarray, min_share: float = OFF_HUE_MIN_SHARE) -> float:
    """`off_hue_share` from `hue_counts` of the two sets (per image, or summed over a set)."""
    g, r = np.asarray(generated), np.asarray(real)
    g, r = (g.sum(axis=0) if g.ndim == 2 else g), (r.sum(axis=0) if r.ndim == 2 else r)
    if g.shape != r.shape or g.ndim != 1 or len(g) < 2:
        raise ValueError(f"expected hue counts of one shape (n, bins + 1) or (bins + 1,); got {g.shape}, {r.shape}")
    if g.sum() == 0:
        raise ValueError("an image set without pixels has no hue; give at least one image")
    chromatic = r[:-1].sum()
    off = r[:-1] < min_share * chromatic if chromatic else np.ones(len(r) - 1, dtype=bool)
    return float(g[:-1][off].sum() / g.sum())


def off_hue_share(generated: Iterable, real: Iterable, chroma: float = CHROMA_THRESHOLD, bins: int = HUE_BINS,
                  min_share: float = OFF_HUE_MIN_SHARE) -> float:
    """Share of the generated set's pixels that are chromatic (chroma above `chroma`) in a hue
    bin holding less than `min_share` of the real set's chromatic pixels: colours the real
    images do not have. For a gray real set every chromatic pixel is off-hue. The real set's
    own value (one half of it against the other) is the floor to read it against."""
    return off_hue_share_from_counts(hue_counts(generated, chroma, bins), hue_counts(real, chroma, bins), min_share)
