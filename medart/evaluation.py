"""Evaluate a run the way the paper does: FID, KID, domain Fréchet distance, colour, classification.

For the held-out real images (a folder or a workspace split) this generates k images per
caption with fixed seeds from the base model and from the tuned run, through the one sampler
(`medart.generate.Generator`, one loaded pipeline, LoRA strength 0 for base and 1 for tuned),
and caches every generated image on disk under a key of everything that determines its
pixels, so a rerun only computes the metrics. Then it computes:

- `fid`, `kid`: torchmetrics' FID and KID in Inception features (`medart.metrics`);
- `dfd`: the domain Fréchet distance in the penultimate features of a classifier trained on
  the run's real training images (or a user-given checkpoint): the paper's KFD / HFD;
- `color`: per-channel statistics, colour distance and histograms (`medart.color_stats`);
- `classify`: the compact classifier trained on real training images, on base images and
  on tuned images (generated from the training captions), each tested on the held-out real
  images: accuracy, macro-F1, per-class recall.

Each distance is also computed between two halves of the real set, the floor a perfect
generator could reach at this sample size. Results go to `<run>/eval/`: `report.md`,
`metrics.json` and PNG plots (`medart.report`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml
from PIL import Image

from medart import color_stats, metrics
from medart.classifier import ClassifierConfig, DomainClassifier
from medart.fileio import atomic_write_bytes

ALL_METRICS = ("fid", "kid", "dfd", "color", "classify")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvaluationError(ValueError):
    """The evaluation cannot run; the message says what is missing and what to do."""


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

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown:
            raise EvaluationError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
        if self.per_caption < 1:
            raise EvaluationError("per_caption must be at least 1")


@dataclass
class RealImage:
    """A real image with its caption and class label (either may be empty)."""

    path: Path
    text: str
    label: str

    def load(self) -> Image.Image:
        with Image.open(self.path) as im:
            return im.convert("RGB")


# --- real images ------------------------------------------------------------------------------


def _metadata_rows(folder: Path) -> list[dict] | None:
    jsonl, csv_path = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        rows = []
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows
    if csv_path.is_file():
        with open(csv_path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return None


def load_image_folder(folder: str | Path) -> list[RealImage]:
    """Images of an imagefolder: `metadata.jsonl`/`.csv` (`file_name`, `text`, `label`) in the
    folder or in its `train/`; without metadata, images in class subfolders (no captions)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder")
    for root in (folder, folder / "train"):
        rows = _metadata_rows(root)
        if rows is not None:
            out = []
            for row in rows:
                path = root / row["file_name"]
                if not path.is_file():
                    raise EvaluationError(f"{path} is listed in {root}/metadata but missing")
                out.append(RealImage(path, str(row.get("text") or "").strip(), str(row.get("label") or "")))
            return out
    out = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            label = path.parent.name if path.parent != folder else ""
            out.append(RealImage(path, "", label))
    if not out:
        raise EvaluationError(f"no images in {folder}")
    return out


def load_workspace_split(root: str | Path | None, split: str) -> list[RealImage]:
    """Captioned images of one split (train, validation, test) of a workspace."""
    from medart.workspace import Filter, open_workspace

    ws = open_workspace(root, create=False)
    try:
        items = [i for i in ws.query(Filter(), limit=None) if i.split == split and i.status != "rejected"]
    finally:
        ws.close()
    if not items:
        raise EvaluationError(f"the workspace {ws.root} has no images in split {split!r}")
    return [RealImage(Path(i.image_path), i.text.strip(), i.label or "") for i in items]


def resolve_real(real: str | None, run: Path) -> tuple[list[RealImage], str]:
    """Held-out real images from `--real`: a folder, `SPLIT` of the default workspace, or
    `WORKSPACE_DIR:SPLIT`. Without it: a `test/` folder beside the run's training data."""
    if real:
        path = Path(real).expanduser()
        if path.is_dir():
            return load_image_folder(path), str(path)
        if ":" in real:
            root, split = real.rsplit(":", 1)
            return load_workspace_split(root, split), f"workspace {root} split {split}"
        if real in ("train", "validation", "test"):
            return load_workspace_split(None, real), f"workspace split {real}"
        raise EvaluationError(f"--real {real!r} is neither a folder nor a workspace split (test, WORKSPACE:test)")
    data = _run_config(run).get("data") or ""
    for candidate in (Path(str(data)).expanduser() / "test", run / "data" / "test"):
        if data and candidate.is_dir():
            return load_image_folder(candidate), str(candidate)
    raise EvaluationError(
        "no held-out real images: pass --real with an imagefolder, a workspace split (e.g. `test`) "
        "or WORKSPACE_DIR:SPLIT"
    )


def _run_config(run: Path) -> dict:
    cfg = run / "config.yaml"
    if not cfg.is_file():
        return {}
    return yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}


def training_images(run: Path) -> list[RealImage]:
    """The run's real training images (its `data:` imagefolder), for the classifiers."""
    data = str(_run_config(run).get("data") or "")
    if not data:
        raise EvaluationError(f"{run}/config.yaml names no training data")
    path = Path(data).expanduser()
    if not path.is_absolute() and not path.exists() and (run / data).exists():
        path = run / data
    if not path.is_dir():
        raise EvaluationError(f"the run's training data {data!r} is not a local folder")
    return load_image_folder(path)


# --- generation with a cache ------------------------------------------------------------------


def caption_plan(images: Sequence[RealImage], per_caption: int, seed: int) -> list[tuple[str, int, str]]:
    """(caption, seed, label) for k images per distinct caption, seeds fixed by position."""
    seen: dict[str, str] = {}
    for im in images:
        if im.text and im.text not in seen:
            seen[im.text] = im.label
    return [
        (text, seed + i * per_caption + j, label)
        for i, (text, label) in enumerate(seen.items())
        for j in range(per_caption)
    ]


def adapter_digest(run: str | Path) -> str:
    """SHA-256 over the run's adapter files: a changed adapter never hits an old cache entry."""
    from medart.lora import adapter_dirs

    h = hashlib.sha256()
    for name, folder in sorted(adapter_dirs(run).items()):
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            h.update(f"{name}/{path.relative_to(folder)}".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


class GeneratedImages:
    """Generated images cached as PNGs under a key of what determines their pixels."""

    def __init__(self, cache_dir: Path, base_model: str, run: Path, config: EvalConfig, progress: Progress | None):
        self.cache_dir = cache_dir
        self.base_model = base_model
        self.run = run
        self.config = config
        self.progress = progress
        self._generator = None
        self._digest: str | None = None
        self.generated = 0  # images generated (not from the cache) in this evaluation

    def digest(self) -> str:
        if self._digest is None:
            self._digest = adapter_digest(self.run)
        return self._digest

    def key(self, caption: str, seed: int, tuned: bool) -> str:
        c = self.config
        spec = {
            "base_model": self.base_model,
            "adapter": self.digest() if tuned else None,
            "lora_scale": 1.0 if tuned else 0.0,
            "caption": caption,
            "seed": seed,
            "steps": c.steps,
            "cfg": c.cfg,
            "size": c.size,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def generator(self):
        if self._generator is None:
            from medart.generate import Generator

            self._generator = Generator(base_model=self.base_model, lora_path=self.run)
        return self._generator

    def images(self, plan: Sequence[tuple[str, int, str]], tuned: bool, stage: str) -> list[Image.Image]:
        paths = [self.cache_dir / f"{self.key(text, seed, tuned)}.png" for text, seed, _ in plan]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        total = len(plan)
        done = total - len(missing)
        if self.progress:
            self.progress(stage, done, total)
        bs = max(1, self.config.batch_size)
        for start in range(0, len(missing), bs):
            chunk = missing[start : start + bs]
            made = self.generator().generate(
                [plan[i][0] for i in chunk],
                [plan[i][1] for i in chunk],
                steps=self.config.steps,
                cfg=self.config.cfg,
                size=self.config.size,
                lora_scale=1.0 if tuned else 0.0,
                batch_size=bs,
            )
            for i, image in zip(chunk, made):
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                atomic_write_bytes(paths[i], buf.getvalue())
            self.generated += len(chunk)
            done += len(chunk)
            if self.progress:
                self.progress(stage, done, total)
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
        return out


# --- the evaluation ---------------------------------------------------------------------------


def floor_split(labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of two halves of the real set, alternating within each class so that both
    halves hold the same mix of classes (the real-vs-real floor)."""
    by_label: dict[str, list[int]] = {}
    for i, lbl in enumerate(labels):
        by_label.setdefault(lbl, []).append(i)
    a, b = [], []
    turn = 0
    for lbl in sorted(by_label):
        for i in by_label[lbl]:
            (a if turn % 2 == 0 else b).append(i)
            turn += 1
    return sorted(a), sorted(b)


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
    from medart.report import write_report

    config = config or EvalConfig()
    run = Path(run)
    if not run.is_dir():
        raise EvaluationError(f"no run folder at {run}")
    base_model = base_model or run_base_model(run)
    if not base_model:
        raise EvaluationError(f"{run} does not record its base model; pass --base-model")
    wanted = set(config.metrics)
    notes: list[str] = []
    started = time.time()

    real_items, real_source = resolve_real(real, run)
    real_items = [r for r in real_items if r.text] or real_items
    if config.max_real:
        real_items = real_items[: config.max_real]
    if not any(r.text for r in real_items):
        raise EvaluationError(f"the held-out images in {real_source} have no captions to generate from")
    real_images = [r.load() for r in real_items]
    plan = caption_plan(real_items, config.per_caption, config.seed)

    eval_dir = run / "eval"
    gen = GeneratedImages(eval_dir / "cache", base_model, run, config, progress)
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
    idx_a, idx_b = floor_split([r.label for r in real_items])
    floor_a, floor_b = [real_images[i] for i in idx_a], [real_images[i] for i in idx_b]
    has_floor = len(floor_a) >= 2 and len(floor_b) >= 2
    if not has_floor:
        notes.append("fewer than 4 real images: no real-vs-real floor")
    dist = results["distribution"]

    with _record_warnings(notes):
        if "color" in wanted:
            results["color"] = {"real": color_stats.set_stats(real_images)}
            results["color_histograms"] = {"real": color_stats.channel_histograms(real_images)}
            for name, ims in sets.items():
                results["color"][name] = color_stats.set_stats(ims)
                results["color_histograms"][name] = color_stats.channel_histograms(ims)
                dist[name]["color_distance"] = color_stats.color_distance(real_images, ims)
            if has_floor:
                dist["real vs real (floor)"]["color_distance"] = color_stats.color_distance(floor_a, floor_b)

        if wanted & {"fid", "kid"}:
            extractor = feature if feature is not None else metrics.default_extractor()

            def feats(images, stage):
                cb = (lambda d, t: progress(stage, d, t)) if progress else None
                return metrics.extract_features(images, extractor, progress=cb)

            real_f = feats(real_images, "features: real")
            set_f = {name: feats(ims, f"features: {name}") for name, ims in sets.items()}
            pairs = {name: (real_f, f) for name, f in set_f.items()}
            if has_floor:
                pairs["real vs real (floor)"] = (real_f[idx_a], real_f[idx_b])
            for name, (a, b) in pairs.items():
                if "fid" in wanted:
                    dist[name]["fid"] = metrics.fid_from_features(a, b)
                if "kid" in wanted:
                    mean, std = metrics.kid_from_features(
                        a, b, subsets=config.kid_subsets, subset_size=config.kid_subset_size, seed=config.seed
                    )
                    dist[name]["kid_mean"], dist[name]["kid_std"] = mean, std
            results["settings"]["feature_extractor"] = (
                "FID Inception (inception-2015-12-05, pool3 2048-d)" if feature is None else type(feature).__name__
            )

        if wanted & {"dfd", "classify"}:
            _classifiers(run, config, real_items, real_images, sets, gen, wanted, results, notes, progress, has_floor and (idx_a, idx_b))

    results["settings"].update(
        {
            "real images": real_source,
            "n_real": len(real_images),
            "captions": len({p[0] for p in plan}),
            "per_caption": config.per_caption,
            "n_generated_per_model": len(plan),
            "steps": config.steps,
            "cfg": config.cfg,
            "size": config.size if config.size is not None else "base model's",
            "seed": config.seed,
            "metrics": ",".join(m for m in ALL_METRICS if m in wanted),
            "images generated this time": gen.generated,
            "seconds": round(time.time() - started, 1),
        }
    )
    if not any(dist[k] for k in dist):
        results.pop("distribution")
    else:
        results["distribution"] = {k: v for k, v in dist.items() if v}
    if write:
        write_report(results, eval_dir)
    return results


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
            results["settings"]["domain classifier"] = config.classifier_checkpoint or "trained on the run's real training images"
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
        results["settings"]["classifier"] = (
            f"compact CNN, {cfg.image_size} px, {cfg.epochs} epochs; synthetic training sets from "
            f"{len(synth_plan)} generated images per model ({config.per_caption} per training caption)"
        )
    elif "classify" in wanted:
        notes.append("classification skipped: the run's real training images are not available")

