"""The image sets of a reader study: held-out real images and their generated counterparts.

`select_real` picks k images of a workspace split (not rejected), balanced over classes with
a seed. `create_study` generates one image per real image from a run's adapter with the same
caption (the class label when there is no caption) and seed `seed + i` (without a seed given,
one drawn with `secrets`, kept only in the study's record: readers never learn it), through the one
sampler and the evaluation's generation cache (`medart.evaluation.sets.GeneratedImages`), then
stores both kinds, identically encoded, as one study (`medart.reader_study`).
"""

from __future__ import annotations

import random
import secrets
from pathlib import Path
from typing import Callable

from PIL import Image

from medart.reader_study import ReaderStudies, Study, StudyImage, check_owner_code, clean_name

Progress = Callable[[str, int, int], None]


def select_real(ws, split: str = "test", k: int | None = None, seed: int = 0) -> list:
    """k held-out images of `split` (not rejected), balanced over classes, chosen with `seed`.
    Each needs a caption or a class label to generate its counterpart from."""
    from medart.workspace import Filter

    items = [i for i in ws.query(Filter(), limit=None) if i.split == split and i.status != "rejected"]
    if not items:
        raise ValueError(f"the workspace {ws.root} has no images in split {split!r}; move some held-out images "
                         f"to it (Data tab, or `python -m medart import ... --split {split}`)")
    missing = [i.id for i in items if not (i.text.strip() or i.label)]
    if missing:
        raise ValueError(f"images {missing[:10]} of split {split!r} have neither caption nor class; caption them first")
    if k is None:
        k = len(items)
    if k < 1:
        raise ValueError("k must be at least 1 (images of each kind)")
    if k > len(items):
        raise ValueError(f"split {split!r} has {len(items)} image(s), fewer than k={k}; lower k to "
                         f"{len(items)} at most, or hold out more")
    rng = random.Random(int(seed))
    by_label: dict[str, list] = {}
    for item in items:
        by_label.setdefault(item.label or "", []).append(item)
    for group in by_label.values():
        rng.shuffle(group)
    chosen, turn = [], 0
    labels = sorted(by_label)
    while len(chosen) < k:
        group = by_label[labels[turn % len(labels)]]
        if group:
            chosen.append(group.pop())
        turn += 1
    return sorted(chosen, key=lambda i: i.id)


def create_study(ws, name: str, run: str | Path, k: int | None = None, split: str = "test", seed: int | None = None,
                 base_model: str | None = None, steps: int = 20, cfg: float = 4.5, size: int | None = None,
                 display_size: int | None = None, batch_size: int = 4, generator=None,
                 progress: Progress | None = None, owner_code: str | None = None) -> Study:
    """A study of k real images of `split` and k images generated from `run` with the same
    captions (seed + i for the i-th), through the one sampler, cached like the evaluation's.
    The display size defaults to the smallest side among all the images, so that no kind is
    enlarged while the other is not. `generator`: an already loaded `medart.generate.Generator`
    for this run (else one is loaded). `owner_code`: what the app asks before it shows results
    (stored hashed; checked here, before any image is generated)."""
    from medart.evaluation.sets import GeneratedImages
    from medart.generate import run_base_model
    from medart.run_folder import adapter_path

    store = ReaderStudies(ws)
    name = clean_name(name, "study")
    if owner_code is not None:
        check_owner_code(owner_code)
    if store.find(name) is not None:
        raise ValueError(f"a study named {name!r} exists already; choose another name")
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"no run folder at {run}")
    adapter = adapter_path(run)
    if adapter is None:
        raise ValueError(f"{run} has no adapter or checkpoint yet; train it (or wait for its first checkpoint)")
    base_model = base_model or run_base_model(run)
    if not base_model:
        raise ValueError(f"{run} does not record its base model; pass the base model explicitly")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    reals = select_real(ws, split, k, seed)
    plan = [((item.text.strip() or item.label), int(seed) + i, item.label or "") for i, item in enumerate(reals)]
    gen = GeneratedImages(run / "eval" / "cache", base_model, adapter, steps, cfg, size, batch_size, progress)
    if generator is not None:
        gen._generator = generator
    made = gen.images(plan, tuned=True, stage="generate")
    images = []
    for item in reals:
        with Image.open(item.image_path) as im:
            images.append(StudyImage(im.convert("RGB"), "real", item.label or "", item.text.strip(),
                                     f"workspace image {item.id} ({item.sha256})"))
    for (caption, s, label), image in zip(plan, made):
        images.append(StudyImage(image, "generated", label, caption, f"seed {s}"))
    if display_size is None:  # never enlarge one kind only: the smallest side of either kind
        display_size = min(min(im.image.size) for im in images)
    settings = {"k": len(reals), "steps": steps, "cfg": cfg, "size": size, "adapter": str(adapter),
                "seeds": [p[1] for p in plan]}
    return store.add_study(name, images, seed=seed, display_size=display_size, run=str(run),
                           base_model=base_model, split=split, settings=settings, owner_code=owner_code)
