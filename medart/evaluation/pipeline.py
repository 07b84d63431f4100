"""Evaluate a run the way the paper does: FID, KID, domain Fréchet distance, colour, classification.

For the held-out real images (a folder or a workspace split) this generates k images per
caption with fixed seeds from the base model and from the tuned run, through the one sampler
(`medart.generate.Generator`, one loaded pipeline, LoRA strength 0 for base and 1 for tuned),
cached on disk so a rerun only computes the metrics (`medart.evaluation.sets`). Then it computes:

- `fid`, `kid`: torchmetrics' FID and KID in Inception features (`medart.evaluation.metrics`);
- `dfd`: the domain Fréchet distance in the penultimate features of a classifier trained on
  the run's real training images (or a user-given checkpoint): the paper's KFD / HFD;
- `color`: per-channel statistics, colour distance and histograms (`medart.color_stats`);
- `classify`: the compact classifier trained on real training images, on base images and
  on tuned images (generated from the training captions), each tested on the held-out real
  images: accuracy, macro-F1, per-class recall.

Each distance is also computed between two halves of the real set, the floor a perfect
generator could reach at this sample size, when there are enough real images for halves of them
to mean something (`FLOOR_MIN_REAL`); below that the results say why there is none. Results
go to `<run>/eval/`: `report.md`, `metrics.json` and PNG plots (`medart.evaluation.report`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from medart import color_stats
from medart.evaluation import metrics
from medart.evaluation.classifier import ClassifierConfig, DomainClassifier
from medart.evaluation.sets import (
    EvaluationError,
    GeneratedImages,
    Progress,
    caption_plan,
    floor_split,
    held_out_set,
    training_images,
)

ALL_METRICS = ("fid", "kid", "dfd", "color", "classify")


@dataclass
class EvalConfig:
    """How an evaluation runs. Solver settings default to the paper's inference settings."""

    per_caption: int = 4  # k generated images per caption
    steps: int = 20
    cfg: float = 4.5
    size: int | None = None  # None: the base model's resolution
    seed: int = 0  # image j of caption i uses seed + i * per_caption + j
    metrics: tuple[str, ...] = ALL_METRICS
    batch_size: int = 4
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    max_real: int | None = None  # cap on held-out real images (first N)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    classifier_checkpoint: str | None = None  # domain classifier for dfd instead of training one
    keep_seen: bool = False  # keep held-out images the run trained on (by default they are left out)

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown:
            raise EvaluationError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
        if self.per_caption < 1:
            raise EvaluationError("per_caption must be at least 1")


def per_class_color(real_items, real_images, plan, sets: dict) -> dict:
    """{label: {set name: moment distance, "real images": n}}: each class's generated images
    (from its own captions) against its own held-out real images, in the units of HLDF's
    per-class curves (`color_stats.moment_distance`)."""
    out = {}
    labels = sorted({r.label for r in real_items if r.label})
    for label in labels:
        reals = [im for r, im in zip(real_items, real_images) if r.label == label]
        reference = color_stats.set_stats(reals)
        row = {"real images": len(reals)}
        for name, images in sets.items():
            mine = [im for (_, _, lab), im in zip(plan, images) if lab == label]
            if mine:
                row[name] = color_stats.moment_distance(color_stats.set_stats(mine), reference)
        out[label] = row
    return out


@contextlib.contextmanager
def _record_warnings(notes: list[str]):
    """Collect the UserWarnings raised inside the block into `notes` (shown in the report)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                text = str(w.message)
                if issubclass(w.category, UserWarning) and text not in notes:
                    notes.append(text)


def evaluate(
    run: str | Path,
    base_model: str | None = None,
    real: str | None = None,
    config: EvalConfig | None = None,
    feature=None,
    progress: Progress | None = None,
    write: bool = True,
) -> dict:
    """Evaluate a run; returns the results dict and (by default) writes `<run>/eval/`.

    `feature` replaces the Inception extractor for FID/KID (any nn.Module taking uint8
    N x 3 x H x W); it is meant for tests and experiments, the report names it.
    """
    from medart.generate import run_base_model
    from medart.evaluation.report import write_report

    config = config or EvalConfig()
    run = Path(run)
    if not run.is_dir():
        raise EvaluationError(f"no run folder {run.name!r}")
    base_model = base_model or run_base_model(run)
    if not base_model:
        raise EvaluationError(f"the run {run.name!r} does not record its base model; pass --base-model")
    wanted = set(config.metrics)
    notes: list[str] = []
    started = time.time()

    real_items, real_source, seen_note = held_out_set(real, run, config.max_real, config.keep_seen)
    if seen_note:
        notes.append(seen_note)
    real_images = [r.load() for r in real_items]
    plan = caption_plan(real_items, config.per_caption, config.seed)

    eval_dir = run / "eval"
    if progress is not None and hasattr(progress, "plan"):
        from medart.evaluation.progress import planned_stages

        progress.plan(planned_stages(wanted, bool(config.classifier_checkpoint)))
    gen = GeneratedImages(
        eval_dir / "cache", base_model, run, config.steps, config.cfg, config.size, config.batch_size, progress
    )
    sets = {"base": gen.images(plan, tuned=False, stage="base"), "tuned": gen.images(plan, tuned=True, stage="tuned")}

    results: dict = {
        "title": f"Evaluation of {run.name}",
        "run": str(run),
        "base_model": base_model,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {},
        "distribution": {"base": {}, "tuned": {}, "real vs real (floor)": {}},
        "warnings": notes,
    }
    if seen_note:
        results["seen_note"] = seen_note
    idx_a, idx_b = floor_split([r.label for r in real_items])
    has_floor = len(real_items) >= FLOOR_MIN_REAL
    if not has_floor:
        results["floor_note"] = floor_note(len(idx_a), len(idx_b))
        notes.append(results["floor_note"])
    dist = results["distribution"]

    floor = (idx_a, idx_b) if has_floor else None
    with _record_warnings(notes):
        if "color" in wanted:
            _colour(results, real_items, real_images, plan, sets, floor)
        if wanted & {"fid", "kid"}:
            _fid_kid(results, config, real_images, sets, floor, feature, progress)
        if wanted & {"dfd", "classify"}:
            _classifiers(run, config, real_items, real_images, sets, gen, wanted, results, notes, progress, floor)

    results["settings"].update(
        {
            "real_images": real_source,
            "n_real": len(real_images),
            "n_captions": len({p[0] for p in plan}),
            "per_caption": config.per_caption,
            "n_generated_per_model": len(plan),
            "steps": config.steps,
            "cfg": config.cfg,
            "size": config.size if config.size is not None else "base model's",
            "seed": config.seed,
            "metrics": ",".join(m for m in ALL_METRICS if m in wanted),
            "generated_now": gen.generated,
            "seconds": round(time.time() - started, 1),
        }
    )
    if wanted & {"fid", "kid"}:
        small = sample_size_note(len(real_images), len(plan))
        if small:
            notes.append(small)
            results["settings"]["sample_size_warning"] = small
    if not any(dist[k] for k in dist):
        results.pop("distribution")
    else:
        results["distribution"] = {k: v for k, v in dist.items() if v}
    if write:
        write_report(results, eval_dir)
    return results


# Real images needed before two halves of them make a floor: below, two small real sets differ
# by sampling noise alone more than a model's larger set differs from all the real images, and
# a "floor" above the models would say the opposite of what it is for.
FLOOR_MIN_REAL = 50


def floor_note(half_a: int, half_b: int) -> str:
    """Why there is no real-vs-real floor at this size, in plain words."""
    return (f"No real-vs-real floor: {half_a + half_b} real image(s) would split into halves of {half_a} and "
            f"{half_b}, and sets that small differ from each other by sampling noise alone more than the models' "
            f"images differ from all the real images, so the row would not be the best reachable. It needs at "
            f"least {FLOOR_MIN_REAL} real images.")


FID_FEATURES = 2048  # the Inception features FID's covariance is estimated over
PUBLISHED_MIN = 10_000  # what published FIDs commonly use (real and generated each)


def sample_size_note(n_real: int, n_generated: int) -> str | None:
    """The warning FID and KID need when the sets are too small to compare with published numbers."""
    if min(n_real, n_generated) >= FID_FEATURES:
        return None
    return (f"Sample size: FID and KID here compare {n_real} real with {n_generated} generated image(s) per model. "
            f"FID estimates a {FID_FEATURES:,}-dimensional covariance, so below {FID_FEATURES:,} images in each set "
            "it is strongly biased upward and its value depends on the set size; KID is unbiased but varies widely "
            "(see its ± std). Compare these numbers only with runs evaluated on the same images at the same size. "
            f"Numbers comparable with published ones need at least {FID_FEATURES:,} real and {FID_FEATURES:,} "
            f"generated images (publications commonly use {PUBLISHED_MIN:,} or more).")


CLASSIFY_MIN_TESTED = 30  # below this, one image moves accuracy by more than 3 points


def classification_note(n_tested: int) -> str | None:
    """The caution classification needs when few held-out images were tested."""
    if n_tested >= CLASSIFY_MIN_TESTED:
        return None
    return (f"Small sample: the classifiers were tested on {n_tested} held-out image(s), so one image moves accuracy "
            f"by {100 / max(n_tested, 1):.0f} points; read these numbers as rough, not as a difference between "
            f"models (that needs at least {CLASSIFY_MIN_TESTED} tested images).")


def _colour(results: dict, real_items, real_images, plan, sets: dict, floor) -> None:
    """Colour statistics, histograms and distances of each set (and the real-vs-real floor), per class too."""
    dist = results["distribution"]
    results["color"] = {"real": color_stats.set_stats(real_images)}
    results["color_histograms"] = {"real": color_stats.channel_histograms(real_images)}
    for name, ims in sets.items():
        results["color"][name] = color_stats.set_stats(ims)
        results["color_histograms"][name] = color_stats.channel_histograms(ims)
        dist[name]["color_distance"] = color_stats.color_distance(real_images, ims)
    if floor:
        halves = [[real_images[i] for i in idx] for idx in floor]
        dist["real vs real (floor)"]["color_distance"] = color_stats.color_distance(*halves)
    results["color_per_class"] = per_class_color(real_items, real_images, plan, sets)


def _fid_kid(results: dict, config: EvalConfig, real_images, sets: dict, floor, feature, progress) -> None:
    """FID and KID of each set (and the floor) in the features of `feature` (default: FID Inception)."""
    dist, wanted = results["distribution"], set(config.metrics)
    extractor = feature if feature is not None else metrics.default_extractor()

    def feats(images, stage):
        cb = (lambda d, t: progress(stage, d, t)) if progress else None
        return metrics.extract_features(images, extractor, progress=cb)

    real_f = feats(real_images, "features: real")
    pairs = {name: (real_f, feats(ims, f"features: {name}")) for name, ims in sets.items()}
    if floor:
        pairs["real vs real (floor)"] = (real_f[floor[0]], real_f[floor[1]])
    for name, (a, b) in pairs.items():
        if "fid" in wanted:
            dist[name]["fid"] = metrics.frechet_distance(a, b)
        if "kid" in wanted:
            mean, std = metrics.kid_from_features(
                a, b, subsets=config.kid_subsets, subset_size=config.kid_subset_size, seed=config.seed
            )
            dist[name]["kid_mean"], dist[name]["kid_std"] = mean, std
    results["settings"]["feature_extractor"] = (
        "FID Inception (inception-2015-12-05, pool3 2048-d)" if feature is None else type(feature).__name__
    )


def _classifiers(run, config, real_items, real_images, sets, gen, wanted, results, notes, progress, floor):
    """Domain Fréchet distance and downstream classification (both need class labels)."""
    dist = results["distribution"]
    labels = [r.label for r in real_items]
    try:
        train_items = [t for t in training_images(run) if t.label]
    except EvaluationError as e:
        train_items = []
        notes.append(f"no real training images for the classifiers: {e}")
    classes = sorted({t.label for t in train_items} | {lbl for lbl in labels if lbl})
    labelled = [i for i, lbl in enumerate(labels) if lbl]
    if len(classes) < 2 or not labelled:
        notes.append("domain FD and classification need class labels on at least 2 classes; skipped")
        return
    cfg = config.classifier

    def cb(stage):
        return (lambda e, n, loss: progress(stage, e, n)) if progress else None

    real_clf = None
    if train_items and (("classify" in wanted) or not config.classifier_checkpoint):
        train_pil = [t.load() for t in train_items]
        real_clf = DomainClassifier.fit(
            train_pil, [t.label for t in train_items], cfg, classes=classes, progress=cb("classifier: real")
        )
        real_clf.save(run / "eval" / "domain-classifier")  # reusable with --classifier
    if "dfd" in wanted:
        domain = DomainClassifier.load(config.classifier_checkpoint) if config.classifier_checkpoint else real_clf
        if domain is None:
            notes.append("domain FD skipped: no labelled real training images and no --classifier checkpoint")
        else:
            real_f = domain.features(real_images)
            for name, ims in sets.items():
                dist[name]["dfd"] = metrics.frechet_distance(real_f, domain.features(ims))
            if floor:
                idx_a, idx_b = floor
                dist["real vs real (floor)"]["dfd"] = metrics.frechet_distance(real_f[idx_a], real_f[idx_b])
            results["settings"]["domain_classifier"] = config.classifier_checkpoint or "trained on the run's real training images"
    if "classify" in wanted and real_clf is not None:
        test_images = [real_images[i] for i in labelled]
        test_labels = [labels[i] for i in labelled]
        out = {"real": real_clf.evaluate(test_images, test_labels)}
        synth_plan = caption_plan(train_items, config.per_caption, config.seed + 1_000_000)
        synth_plan = [p for p in synth_plan if p[2] in classes]
        for name, tuned in (("base", False), ("tuned", True)):
            ims = gen.images(synth_plan, tuned=tuned, stage=f"training set: {name}")
            clf = DomainClassifier.fit(
                ims, [p[2] for p in synth_plan], cfg, classes=classes, progress=cb(f"classifier: {name}")
            )
            out[name] = clf.evaluate(test_images, test_labels)
        results["classification"] = out
        results["classes_without_training"] = sorted(set(classes) - {t.label for t in train_items})
        small = classification_note(len(test_labels))
        if small:
            results["classification_note"] = small
            notes.append(small)
        results["settings"]["classifier"] = (
            f"compact CNN, {cfg.image_size} px, {cfg.epochs} epochs; synthetic training sets from "
            f"{len(synth_plan)} generated images per model ({config.per_caption} per training caption)"
        )
    elif "classify" in wanted:
        notes.append("classification skipped: the run's real training images are not available")

