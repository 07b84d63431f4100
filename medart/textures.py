"""Synthetic textures with captions made from their parameters, for pretraining the offline bases.

So that colour and texture words mean something to a base pretrained without medical images,
`medart.tiny_pretrain --arch small` mixes photos with pictures rendered here: smooth noise,
stripes, dots, cells (a Voronoi tiling with borders) and soft blobs, each in two of many
colours, at several scales, captioned from exactly what was drawn ("thin green diagonal
stripes on a black background", "small dense purple dots on a pink background"). Deterministic
given the numpy Generator.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

COLOURS = {
    "red": (220, 30, 30), "dark red": (120, 10, 20), "green": (40, 170, 50), "dark green": (20, 80, 30),
    "blue": (30, 60, 220), "navy": (15, 25, 90), "pale blue": (170, 200, 235), "yellow": (245, 220, 30),
    "orange": (245, 140, 20), "purple": (130, 40, 170), "pink": (245, 140, 190), "magenta": (220, 40, 180),
    "cyan": (40, 210, 225), "white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128),
    "dark gray": (60, 60, 60), "light gray": (200, 200, 200), "brown": (125, 75, 30), "beige": (225, 205, 165),
}
KINDS = ("noise", "stripes", "dots", "cells", "blobs")


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Gaussian noise on a `cells` x `cells` grid, upsampled bicubically to size x size (std ~1)."""
    coarse = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))
    return field / max(float(field.std()), 1e-6)


def _noise(rng, size, yy, xx):
    scale = ["fine", "medium", "coarse"][rng.integers(3)]
    cells = {"fine": int(rng.integers(24, 33)), "medium": int(rng.integers(8, 14)), "coarse": int(rng.integers(3, 6))}[scale]
    t = 1 / (1 + np.exp(-2.5 * _smooth_field(rng, size, cells)))
    return t, f"{scale} {{fg}} noise on a {{bg}} background"


def _stripes(rng, size, yy, xx):
    direction = ["horizontal", "vertical", "diagonal"][rng.integers(3)]
    angle = {"horizontal": np.pi / 2, "vertical": 0.0, "diagonal": rng.choice([np.pi / 4, 3 * np.pi / 4])}[direction]
    period = float(rng.uniform(4, 16))
    width = ["thin", "thick"][rng.integers(2)]
    wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))
    t = np.clip((wave - (0.5 if width == "thin" else -0.3)) * 3, 0, 1)
    return t, f"{width} {{fg}} {direction} stripes on a {{bg}} background"


def _dots(rng, size, yy, xx):
    big = rng.random() < 0.5
    dense = rng.random() < 0.5
    radius = rng.uniform(4, 7) if big else rng.uniform(1.2, 3)
    n = int((size * size) / (np.pi * radius**2) * (0.35 if dense else 0.08)) + 2
    cy, cx = rng.uniform(0, size, n), rng.uniform(0, size, n)
    d = np.min(np.hypot(yy[..., None] - cy, xx[..., None] - cx), axis=-1)
    t = np.clip(radius + 0.5 - d, 0, 1)
    return t, f"{'large' if big else 'small'} {'dense' if dense else 'sparse'} {{fg}} dots on a {{bg}} background"


def _cells(rng, size, yy, xx):
    n = int(rng.integers(6, 40))
    cy, cx = rng.uniform(0, size, n), rng.uniform(0, size, n)
    d = np.sort(np.hypot(yy[..., None] - cy, xx[..., None] - cx), axis=-1)
    border = float(rng.uniform(0.8, 2.5))
    t = np.clip((d[..., 1] - d[..., 0]) / border - 0.5, 0, 1)  # 1 inside a cell, 0 on its border
    return t, f"{'small' if n > 20 else 'large'} {{fg}} cells with {{bg}} borders"


def _blobs(rng, size, yy, xx):
    n = int(rng.integers(2, 10))
    t = np.zeros((size, size), np.float32)
    for _ in range(n):
        cy, cx, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 12)
        t += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(t, 0, 1), "soft {fg} blobs on a {bg} background"


RENDERERS = {"noise": _noise, "stripes": _stripes, "dots": _dots, "cells": _cells, "blobs": _blobs}


def render_texture(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, str]:
    """A size x size uint8 RGB texture of two colours and its caption."""
    names = list(COLOURS)
    kind = KINDS[rng.integers(len(KINDS))]
    fg, bg = (names[i] for i in rng.choice(len(names), 2, replace=False))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    t, template = RENDERERS[kind](rng, size, yy, xx)
    cf = np.clip(np.array(COLOURS[fg], np.float32) + rng.normal(0, 12, 3), 0, 255)
    cb = np.clip(np.array(COLOURS[bg], np.float32) + rng.normal(0, 12, 3), 0, 255)
    img = t[..., None] * cf + (1 - t[..., None]) * cb
    img = img + rng.normal(0, rng.uniform(0, 6), img.shape)  # a little sensor-like grain
    return np.clip(img, 0, 255).round().astype(np.uint8), template.format(fg=fg, bg=bg)
