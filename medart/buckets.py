"""Aspect-ratio buckets: non-square images (endoscopy frames, dermoscopy photographs, slides)
trained at their own shape instead of a square crop.

Off by default: the paper crops squares (`TrainConfig.buckets: false`). With `buckets: true`
the bucket sizes are PixArt-α's own aspect-ratio bins (diffusers' `ASPECT_RATIO_256_BIN` ...
`ASPECT_RATIO_2048_BIN`, the table whose base size is nearest the run's resolution), scaled to
the resolution, so each holds about resolution² pixels, and rounded to a multiple of the VAE's
downsampling times the transformer's patch size (16 for PixArt-α; 8 for the `tiny` twin, whose
64 px bins are therefore coarser). Each image goes to the bucket nearest its aspect ratio
(distance of log(height / width), so portrait and landscape are treated alike; a tie goes to
the squarer bucket), is resized to cover it and cropped to it (`TrainData.pixels`); every
batch is drawn from one bucket (`TrainData.batch`).

HLDF's colour steps generate at the size of what they compare with: the batch's bucket when
they take the batch's own captions (`coverage: batch`, the paper), else the dominant bucket of
the class(es) they compare with (the bucket holding most of their images; with `coverage:
groups` one size for the step, that of all the chosen classes' images). The colour statistics
(per-channel mean and std) do not depend on the size, so only the generated shape changes;
`metrics.jsonl` records it as `color_size`. Validation samples stay square at the
resolution, so that the curves of bucketed and square runs compare. A size-conditioned
transformer (PixArt-α 1024, `use_additional_conditions`) is given each bucket's real height and
width (`dpm_solver.size_conditions`).

Sizes are (width, height) in pixels, as PIL gives them, and are written `WxH`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

# PixArt-α/Σ: an SD VAE (x8) and DiT patches of 2, for a model whose configs cannot be read here
PIXART_MULTIPLE = 16


def pixart_bins() -> dict[int, dict[str, list[float]]]:
    """diffusers' PixArt aspect-ratio tables by base size ({h/w key: [height, width]})."""
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import (
        ASPECT_RATIO_256_BIN, ASPECT_RATIO_512_BIN, ASPECT_RATIO_1024_BIN)
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import ASPECT_RATIO_2048_BIN

    return {256: ASPECT_RATIO_256_BIN, 512: ASPECT_RATIO_512_BIN, 1024: ASPECT_RATIO_1024_BIN,
            2048: ASPECT_RATIO_2048_BIN}


def vae_factor(base) -> int:
    """How many pixels of a loaded base model's images make one latent pixel, per side."""
    return 2 ** (len(base.vae.config.block_out_channels) - 1)


def size_multiple(base) -> int:
    """What a loaded base model's image sides must be a multiple of: VAE factor x patch size."""
    return vae_factor(base) * base.transformer.config.patch_size


def model_multiple(base_model: str) -> int:
    """`size_multiple` without loading weights (for preflight): read from the model folder's
    configs where the base model is a folder (the tiny profiles are), else PixArt's 16."""
    from medart.profiles import resolve

    folder = Path(resolve(base_model)[0])
    try:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        dit = json.loads((folder / "transformer" / "config.json").read_text())
        return 2 ** (len(vae["block_out_channels"]) - 1) * int(dit.get("patch_size") or 2)
    except (OSError, ValueError, KeyError, TypeError):
        return PIXART_MULTIPLE


def bucket_sizes(resolution: int, multiple: int) -> list[tuple[int, int]]:
    """The (width, height) buckets of a run at `resolution` px whose sides are multiples of
    `multiple`: PixArt's bins scaled and rounded, duplicates merged, widest first."""
    if resolution < multiple or resolution % multiple:
        raise ValueError(f"resolution {resolution} must be a multiple of {multiple} for aspect-ratio buckets")
    tables = pixart_bins()
    base = min(tables, key=lambda b: (abs(math.log(resolution / b)), b))
    scale = resolution / base
    sizes = set()
    for height, width in tables[base].values():
        w = max(multiple, round(width * scale / multiple) * multiple)
        h = max(multiple, round(height * scale / multiple) * multiple)
        sizes.add((w, h))
    return sorted(sizes, key=lambda s: (s[1] / s[0], s[0]))


def nearest(size: tuple[int, int], sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket of an image of `size` (width, height): nearest in log aspect ratio; a tie
    goes to the bucket nearer square, then to the first."""
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"an image of {w}x{h} pixels has no aspect ratio")
    ratio = math.log(h / w)
    return min(sizes, key=lambda s: (round(abs(math.log(s[1] / s[0]) - ratio), 9), abs(math.log(s[1] / s[0]))))


def name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def counts(image_sizes, resolution: int, multiple: int) -> dict[tuple[int, int], int]:
    """How many of the images of `image_sizes` ((width, height) each) each bucket holds,
    buckets widest first, empty ones left out."""
    sizes = bucket_sizes(resolution, multiple)
    found = Counter(nearest(s, sizes) for s in image_sizes)
    return {s: found[s] for s in sizes if found[s]}


def summary(held: dict[tuple[int, int], int], batch: int = 1, world: int = 1) -> str:
    """The buckets and how many images each holds, for preflight and the log; says how many
    images an epoch leaves out (a bucket's remainder after whole batches)."""
    per = batch * world
    parts = ", ".join(f"{name(s)} ({n})" for s, n in held.items())
    text = f"Aspect-ratio buckets (width x height: images): {parts}."
    left = sum(n % per for n in held.values())
    steps = sum(n // per for n in held.values())
    if left:
        text += (f" Batches of {per} come from one bucket, so each epoch leaves out {left} image(s) "
                 f"({steps} step(s) per epoch).")
    return text
