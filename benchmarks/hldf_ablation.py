"""HLDF ablation on the class bank: which colour-step design helps every class, at what cost.

The tables in RESULTS.md and the README, one line per half of the bank (testing half first):

    python benchmarks/hldf_ablation.py --split test --arms lora default --seeds 42 7 1
    python benchmarks/hldf_ablation.py --split tune --seeds 42 7 1

and an arm added to a finished table (only its runs train; the others come from the cache):

    python benchmarks/hldf_ablation.py --split tune --seeds 42 7 1 --arms lora default "K=1" \
        --define "K=1" "hldf.grad_steps=1"

Data: `medart.class_bank`, whose TUNE and TEST halves are fixed in code. Defaults are chosen on
the tuning half only; the testing half is only measured. One table never mixes the halves
(--classes may narrow a half, not cross it). Each class has its own caption, 12 training tiles
and 32 unseen reference tiles, 64 px.

Each arm is the product's defaults with only the arm's settings changed (`ARMS`, or --define),
trained through the product's own trainer (`medart.hldf.train`) on the base --base-model
(`small` by default; `tiny` and `small-random` for quick checks), one run per (arm, seed) on
all the chosen classes together, for --steps steps. Then --n-gen images per class caption are
generated with the fixed seeds 1000, 1001, ... and kept as PNG files in --out, so that every
measure can be recomputed from the cache; runs are cached per (arm, seed), so arms can be added.

Measures per class, of the generated images against the class's unseen references:

- set colour distance: Σ over RGB of Δmean² + Δstd² of the two sets' average per-image
  statistics, images in [-1, 1] (`colour_classes.set_distance`);
- W1: the 1-D Wasserstein distance between the sets' pooled pixel values, mean of R, G, B
  ([0, 1] scale; `color_stats.channel_wasserstein`);
- off-hue share: share of generated pixels that are chromatic (HSV chroma > 0.1) in a 30° hue
  bin holding < 1 % of the references' chromatic pixels (for a gray class, every chromatic
  pixel; `color_stats.off_hue_share`);
- KID to the references with the shipped FID Inception weights (`evaluation.metrics`);
- diversity: mean pairwise Inception-feature distance of the generated images divided by that
  of the references (1.0 = as varied as real; `evaluation.metrics.diversity`).

Each arm's cell: the change against the baseline arm (--baseline, LoRA-only by default) at the
same training seed (relative for the two distances, in points for the others), mean over the
seeds, each seed's own value, and a 95 % bootstrap interval of the seed mean (generated images,
paired between the two arms, and reference tiles resampled; --draws per seed). Also printed:
the baseline's absolute values and a real-vs-real floor (half the references against the other
half, median of 200 splits). The bootstrap recomputes KID and diversity from the features with
pairs of one source image left out; with as many generated as reference images this equals
the reported KID (torchmetrics uses the whole sets as its one subset).

The verdict per arm, against the target of issue 17: every class's colour distance and W1 at
least 30 % below the baseline (mean of seeds), no class worse beyond the noise (interval
reaching 0 or better) on KID, off-hue share or diversity, and at most 2x the baseline's CPU
time. A grid PNG per class (rows: references, baseline, each other arm; first 8 images of the
first seed) with a row legend beside it, and table.md, go to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import common
from medart import class_bank, color_stats, colour_classes
from medart.evaluation import metrics
from medart.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

# Each arm: settings on top of the product's defaults (the "default" arm changes nothing).
ARMS = {
    "lora": {"hldf.enabled": False},
    "default": {},
    # the paper's formulation, at the schedule rule's N and at about the default's cost
    "paper": {"hldf.mode": "paper"},
    "paper, N=20": {"hldf.mode": "paper", "hldf.every": 20},
    # the default with one thing changed
    "default, image target": {"hldf.target": "image"},
    "default, batch's caption": {"hldf.coverage": "batch"},
    "default, all classes, N=15": {"hldf.coverage": "groups", "hldf.every": 15},
    "default, 1 image per class": {"hldf.per_class": 1},
    "default, M=20": {"hldf.steps": 20},
    "default, K=M": {"hldf.grad_steps": 10},
    "default, weight 1/M": {"hldf.weight": 0.1},
    "default, separate clip": {"hldf.balance": "separate"},
    "default, no EMA": {"ema_decay": 0.0},
    "lora, no EMA": {"hldf.enabled": False, "ema_decay": 0.0},
    # caption dropout: the empty caption (CFG's unconditional prompt) on a share of the diffusion
    # steps' examples (compared with "default": --baseline default)
    "default, caption dropout 0.05": {"caption_dropout": 0.05},
    "default, caption dropout 0.1": {"caption_dropout": 0.1},
}

SPLITS = {"tune": class_bank.TUNE, "test": class_bank.TEST}
TARGET_DROP = 0.30  # colour distance and W1 at least this much below the baseline, every class
TARGET_COST = 2.0  # CPU time at most this many times the baseline's
FLOOR_SPLITS = 200


# ---------------------------------------------------------------- image sets and their measures


@dataclass
class Measured:
    """What every measure needs of one image set, per image (rows in the set's order)."""

    stats: np.ndarray  # (n, 6) channel means and stds, [0, 1] (`colour_classes.stat_matrix`)
    counts: np.ndarray  # (n, 3, 256) pixel levels per channel (`color_stats.channel_counts`)
    hue: np.ndarray  # (n, 13) chromatic pixels per hue bin, achromatic last (`color_stats.hue_counts`)
    feats: np.ndarray  # (n, 2048) Inception features
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, images: list, feats: np.ndarray) -> "Measured":
        return cls(colour_classes.stat_matrix(images), color_stats.channel_counts(images),
                   color_stats.hue_counts(images), np.asarray(feats, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.stats)

    def kernel(self, other: "Measured") -> np.ndarray:
        """KID's kernel between this set's and `other`'s images (torchmetrics: gamma 1/d, coef 1,
        degree 3), computed once: the bootstrap only picks rows and columns."""
        key = ("kernel", id(other))
        if key not in self._memo:
            self._memo[key] = (other, (self.feats @ other.feats.T / self.feats.shape[1] + 1.0) ** 3)
        return self._memo[key][1]

    def distances(self) -> np.ndarray:
        """Euclidean distances between the images' features, computed once."""
        if "distances" not in self._memo:
            x = self.feats
            sq = (x * x).sum(1)
            self._memo["distances"] = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
        return self._memo["distances"]


def _off_diagonal_mean(matrix: np.ndarray, idx: np.ndarray) -> float:
    """Mean of matrix[i, j] over the resampled pairs whose source images differ."""
    return float(matrix[np.ix_(idx, idx)][idx[:, None] != idx[None, :]].mean())


# Each measure: (generated set, its image indices, reference set, its indices) -> value. The
# bootstrap passes resampled indices; the identity indices give the point value.
def colour_distance(g: Measured, gi, r: Measured, ri) -> float:
    return colour_classes.set_distance(g.stats[gi], r.stats[ri])


def wasserstein(g: Measured, gi, r: Measured, ri) -> float:
    return color_stats.channel_wasserstein_from_counts(g.counts[gi].sum(0), r.counts[ri].sum(0))


def off_hue(g: Measured, gi, r: Measured, ri) -> float:
    return color_stats.off_hue_share_from_counts(g.hue[gi].sum(0), r.hue[ri].sum(0))


def kid_estimate(g: Measured, gi, r: Measured, ri) -> float:
    """Unbiased MMD² with KID's kernel over the whole sets, pairs of one source image left out."""
    return (_off_diagonal_mean(g.kernel(g), gi) + _off_diagonal_mean(r.kernel(r), ri)
            - 2 * float(g.kernel(r)[np.ix_(gi, ri)].mean()))


def diversity_estimate(g: Measured, gi, r: Measured, ri) -> float:
    return _off_diagonal_mean(g.distances(), gi) / _off_diagonal_mean(r.distances(), ri)


def kid_point(g: Measured, r: Measured) -> float:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="KID compares random subsets", category=UserWarning)
        return metrics.kid_from_features(r.feats, g.feats, subset_size=min(len(g), len(r)))[0]


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    relative: bool  # change reported as a ratio - 1 (else as a difference)
    higher_is_worse: bool
    estimate: Callable
    point: Callable | None = None  # (generated, reference) -> value; default: estimate at identity indices
    scale: float = 1.0  # how differences are shown (100: percentage points)
    unit: str = ""
    digits: int = 4

    def value(self, g: Measured, r: Measured) -> float:
        if self.point is not None:
            return self.point(g, r)
        return self.estimate(g, np.arange(len(g)), r, np.arange(len(r)))

    def change(self, arm, base):
        return arm / base - 1 if self.relative else arm - base

    def show(self, x: float) -> str:
        return f"{100 * x:+.0f}" if self.relative else f"{self.scale * x:+.{self.digits}f}"


METRICS = (
    Metric("colour", "set colour distance (Σ RGB Δmean² + Δstd², images in [-1, 1])", True, True, colour_distance),
    Metric("w1", "per-channel Wasserstein distance (W1, mean of R, G, B, [0, 1] scale)", True, True, wasserstein),
    Metric("off_hue", "off-hue share (chromatic pixels in a hue < 1 % of the references' chromatic pixels)",
           False, True, off_hue, scale=100, unit=" points", digits=1),
    Metric("kid", "KID to the references (FID Inception)", False, True, kid_estimate, kid_point, digits=3),
    Metric("diversity", "diversity (mean pairwise Inception distance, generated / references)", False, False,
           diversity_estimate, lambda g, r: metrics.diversity(g.feats, r.feats), digits=2),
)


# ---------------------------------------------------------------- comparisons and the verdict


@dataclass
class Cell:
    mean: float  # change against the baseline, mean over seeds
    per_seed: list[float]
    lo: float  # 95 % bootstrap interval of the seed mean
    hi: float

    def worse_beyond_noise(self, higher_is_worse: bool) -> bool:
        return self.lo > 0 if higher_is_worse else self.hi < 0


def resamples(n_gen: int, n_ref: int, seed: int, class_index: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap's index draws for one (class, training seed), shared by every arm and measure."""
    rng = np.random.default_rng([seed, class_index, 17])
    return _draw(rng, n_gen, draws), _draw(rng, n_ref, draws)


def _draw(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """`draws` resamples of n indices with replacement, each holding at least two different
    images (a set of one image repeated has no pairs to measure diversity or KID on)."""
    idx = rng.integers(0, n, (draws, n))
    while (bad := (idx == idx[:, :1]).all(axis=1)).any():
        idx[bad] = rng.integers(0, n, (int(bad.sum()), n))
    return idx


def compare(metric: Metric, arm: dict, base: dict, ref: Measured, draws: dict, memo: dict) -> Cell:
    """`arm` and `base`: training seed -> the class's generated `Measured`; `draws`: seed -> resamples."""
    changes, boots = [], []
    for seed in arm:
        changes.append(metric.change(metric.value(arm[seed], ref), metric.value(base[seed], ref)))
        gi, ri = draws[seed]
        key = (metric.key, id(base[seed]), seed)
        if key not in memo:  # the baseline's draws serve every arm
            memo[key] = np.array([metric.estimate(base[seed], g, ref, r) for g, r in zip(gi, ri)])
        a = np.array([metric.estimate(arm[seed], g, ref, r) for g, r in zip(gi, ri)])
        boots.append(metric.change(a, memo[key]))
    lo, hi = np.percentile(np.mean(boots, axis=0), [2.5, 97.5])
    return Cell(float(np.mean(changes)), [float(x) for x in changes], float(lo), float(hi))


def floor(metric: Metric, ref: Measured, seed: int = 0) -> float:
    """Real against real: one half of the references against the other, median of many splits."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(FLOOR_SPLITS):
        idx = rng.permutation(len(ref))
        values.append(metric.estimate(ref, idx[: len(idx) // 2], ref, idx[len(idx) // 2:]))
    return float(np.median(values))


def verdict(cells: dict, cost: float) -> list[str]:
    """The target's conditions an arm fails (empty: met). `cells`: metric key -> class -> Cell."""
    failed = []
    by_key = {m.key: m for m in METRICS}
    for key in ("colour", "w1"):
        short = [f"{c} {100 * cell.mean:+.0f} %" for c, cell in cells[key].items() if cell.mean > -TARGET_DROP]
        if short:
            failed.append(f"{'colour distance' if key == 'colour' else 'W1'} not ≥ {100 * TARGET_DROP:.0f} % lower "
                          f"({', '.join(short)})")
    for key, name in (("kid", "KID"), ("off_hue", "off-hue share"), ("diversity", "diversity")):
        m = by_key[key]
        worse = [f"{c} {m.show(cell.mean)} [{m.show(cell.lo)}, {m.show(cell.hi)}]"
                 for c, cell in cells[key].items() if cell.worse_beyond_noise(m.higher_is_worse)]
        if worse:
            failed.append(f"{name} worse beyond noise ({', '.join(worse)})")
    if not cost <= TARGET_COST:
        failed.append(f"cost {cost:.2f}x > {TARGET_COST:.0f}x")
    return failed


# ---------------------------------------------------------------- the tables


def _ratio(results: dict, arm: str, baseline: str, seeds: list[int], key: str) -> float:
    return float(np.mean([results[(arm, s)].get(key, np.nan) / results[(baseline, s)].get(key, np.nan)
                          for s in seeds]))


def evaluate(results: dict, measured: dict, refs: dict, arms: list[str], seeds: list[int], baseline: str,
             draws: int = 2000) -> dict:
    """Every arm's cells and verdict. `results[(arm, seed)]`: a run's record (cpu_seconds, ...);
    `measured[(arm, seed)][class]` and `refs[class]`: `Measured` sets."""
    classes = list(refs)
    index = {c: sorted(class_bank.SPECS).index(c) for c in classes}
    out = {"floor": {m.key: {c: floor(m, refs[c]) for c in classes} for m in METRICS},
           "baseline": {m.key: {c: float(np.mean([m.value(measured[(baseline, s)][c], refs[c]) for s in seeds]))
                                for c in classes} for m in METRICS},
           "arms": {}}
    memo: dict = {}
    for arm in arms:
        if arm == baseline:
            continue
        cells = {}
        for m in METRICS:
            cells[m.key] = {}
            for c in classes:
                n_gen = len(measured[(arm, seeds[0])][c])
                rs = {s: resamples(n_gen, len(refs[c]), s, index[c], draws) for s in seeds}
                cells[m.key][c] = compare(m, {s: measured[(arm, s)][c] for s in seeds},
                                          {s: measured[(baseline, s)][c] for s in seeds}, refs[c], rs, memo)
        cost = _ratio(results, arm, baseline, seeds, "cpu_seconds")
        out["arms"][arm] = {"cells": cells, "cost": cost, "verdict": verdict(cells, cost),
                            "step_cost": _ratio(results, arm, baseline, seeds, "step_seconds")}
    return out


def _schedule(results: dict, arm: str, seed: int) -> tuple[str, str]:
    r = results[(arm, seed)]
    return (str(r["every"]) if r.get("colour_steps") else "–"), str(r.get("colour_steps", "–"))


def render(results: dict, ev: dict, arms: list[str], seeds: list[int], baseline: str, title: str) -> str:
    """table.md: the title, a verdict per arm, then one table per measure (rows: floor, baseline, arms)."""
    classes = list(ev["floor"]["colour"])
    against = "LoRA-only" if baseline == "lora" else f"'{baseline}'"
    lines = [f"## {title}", "",
             f"Verdict against the target (every class: colour distance and W1 ≥ {100 * TARGET_DROP:.0f} % below "
             f"{against}, mean of seeds; KID, off-hue share and diversity not worse beyond the noise; CPU time ≤ "
             f"{TARGET_COST:.0f}x):", "",
             f"| arm | N | colour steps | CPU time vs {against} | step time vs {against} | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for arm in arms:
        n, steps = _schedule(results, arm, seeds[0])
        if arm == baseline:
            lines.append(f"| {arm} (baseline) | {n} | {steps} | 1.00 | 1.00 | – |")
            continue
        a = ev["arms"][arm]
        text = "meets the target" if not a["verdict"] else "fails: " + "; ".join(a["verdict"])
        lines.append(f"| {arm} | {n} | {steps} | {a['cost']:.2f} | {a['step_cost']:.2f} | {text} |")
    for m in METRICS:
        kind = "change, %" if m.relative else f"change{' in' + m.unit if m.unit else ''}"
        lines += ["", f"*{m.title}: {kind} vs {against} [95 % CI] (per seed)*", "",
                  "| arm | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
                  "| real vs real, half against half (floor) | "
                  + " | ".join(_absolute(m, ev["floor"][m.key][c]) for c in classes) + " |",
                  f"| {arm_label(baseline)} (value) | "
                  + " | ".join(_absolute(m, ev["baseline"][m.key][c]) for c in classes) + " |"]
        for arm in arms:
            if arm != baseline:
                cells = ev["arms"][arm]["cells"][m.key]
                lines.append(f"| {arm} | " + " | ".join(_cell(m, cells[c]) for c in classes) + " |")
    return "\n".join(lines) + "\n"


def arm_label(arm: str) -> str:
    return "LoRA only" if arm == "lora" else arm


def _absolute(m: Metric, x: float) -> str:
    return f"{100 * x:.1f} %" if m.key == "off_hue" else f"{x:.{max(m.digits, 3)}f}"


def _cell(m: Metric, cell: Cell) -> str:
    pct = " %" if m.relative else ""
    per_seed = " / ".join(m.show(x) for x in cell.per_seed)
    return f"{m.show(cell.mean)}{pct} [{m.show(cell.lo)}, {m.show(cell.hi)}] ({per_seed})"


def gradient_table(results: dict, arms: list[str], seeds: list[int]) -> str:
    """Median gradient norms on colour steps and how often clipping (at 1.0) acted."""
    lines = ["| arm | colour gradient (median) | diffusion gradient (median) | ratio | colour steps clipped "
             "| plain steps clipped |", "|---|---:|---:|---:|---:|---:|"]
    for arm in arms:
        rs = [results[(arm, s)] for s in seeds]
        if not all(r.get("grad_norm_color") for r in rs):
            continue
        mean = lambda key: float(np.mean([r[key] for r in rs]))  # noqa: E731
        lines.append(f"| {arm} | {mean('grad_norm_color'):.3f} | {mean('grad_norm_diffusion'):.3f} | "
                     f"{mean('grad_ratio'):.1f} | {100 * mean('clipped_colour_steps'):.0f} % | "
                     f"{100 * mean('clipped_plain_steps'):.0f} % |")
    return "\n".join(lines)


# ---------------------------------------------------------------- runs, images, features (cached)


def slug(name: str) -> str:
    return re.sub(r"[^\w.=-]+", "_", name)


def _run_record(rows: list[dict], config, **extra) -> dict:
    colour = [r for r in rows if "color_loss" in r]
    median = lambda key: float(np.median([r[key] for r in colour])) if colour else None  # noqa: E731
    return {**extra, "colour_steps": len(colour), "every": config.hldf.every,
            "step_seconds": sum(r.get("seconds", 0) for r in rows), "total_steps": max(r["step"] for r in rows),
            "colour_seconds": sum(r["color_seconds"] for r in colour),
            "grad_ratio": float(np.median([r["grad_norm_color"] / max(r["grad_norm_diffusion"], 1e-12)
                                           for r in colour])) if colour else None,
            "grad_norm_color": median("grad_norm_color"), "grad_norm_diffusion": median("grad_norm_diffusion"),
            "clipped_colour_steps": float(np.mean([r["grad_norm"] > config.max_grad_norm for r in colour]))
            if colour else None,
            "clipped_plain_steps": float(np.mean([r["grad_norm"] > config.max_grad_norm
                                                  for r in rows if "loss" in r and "color_loss" not in r]))}


def run_arm(name: str, seed: int, train_folder: Path, args) -> dict:
    """Train one (arm, seed), or return its cached record (refusing one made under other settings)."""
    from medart.config import load_config
    from medart.hldf import train

    cache = args.out / f"{slug(name)}-s{seed}.json"
    want = {"base_model": args.base_model, "classes": list(args.classes), "steps": args.steps,
            "settings": ARMS[name], "seed": seed}
    if cache.exists() and not args.rerun:
        record = json.loads(cache.read_text())
        made = {k: record.get(k) for k in want}
        if made != want:
            raise SystemExit(f"{cache} was made with {made}, not {want}: pass another --out, or --rerun to replace it")
        return record
    output = args.out / "runs" / f"{slug(name)}-s{seed}"
    shutil.rmtree(output, ignore_errors=True)  # a fresh run, not the remains of an earlier one
    shutil.rmtree(args.out / "images" / f"{slug(name)}-s{seed}", ignore_errors=True)  # its images are stale
    config = load_config(None, base_model=args.base_model, data=str(train_folder), output=str(output),
                         max_steps=args.steps or None, seed=seed, **ARMS[name])
    t0, c0 = time.perf_counter(), time.process_time()
    train(config)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    rows = [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]
    record = _run_record(rows, config, arm=name, seconds=seconds, cpu_seconds=cpu_seconds, **want)
    atomic_write_json(cache, record)
    return record


def generated_images(name: str, seed: int, classes: list[str], args) -> dict[str, list]:
    """The run's --n-gen images per class caption (seeds 1000 + i), from PNG files in --out;
    missing ones are generated from the run's adapter and saved first."""
    from PIL import Image

    folder = args.out / "images" / f"{slug(name)}-s{seed}"
    out, generator = {}, None
    for c in classes:
        paths = [folder / c / f"{i:03d}.png" for i in range(args.n_gen)]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        if missing:
            if generator is None:
                from medart.generate import Generator

                generator = Generator(args.base_model, args.out / "runs" / f"{slug(name)}-s{seed}" / "adapter")
            images = generator.generate([class_bank.SPECS[c].caption] * len(missing), [1000 + i for i in missing])
            for i, im in zip(missing, images):
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                atomic_write_bytes(paths[i], buf.getvalue())
        out[c] = [Image.open(p).convert("RGB") for p in paths]
    return out


def features(images: list, cache: Path) -> np.ndarray:
    """Inception features of the images, cached in `cache` (.npz) under a digest of their pixels."""
    digest = hashlib.sha256("".join(class_bank.pixel_hash(im) for im in images).encode()).hexdigest()
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            if str(f["digest"]) == digest:
                return f["feats"]
    feats = metrics.extract_features(images).numpy()
    buf = io.BytesIO()
    np.savez(buf, feats=feats, digest=np.array(digest))
    atomic_write_bytes(cache, buf.getvalue())
    return feats


def grid(rows: list[tuple[str, list]], path: Path, n: int = 8) -> None:
    """A PNG of `n` images per row, each row labelled on its left; the labels also go to a
    legend file beside it (`<name>.txt`)."""
    from PIL import Image, ImageDraw

    label_w, size = 200, 64
    out = Image.new("RGB", (label_w + size * n, size * len(rows)), "white")
    draw = ImageDraw.Draw(out)
    for r, (label, images) in enumerate(rows):
        draw.text((4, size * r + size // 2 - 6), label[:32], fill="black")
        for c, im in enumerate(images[:n]):
            out.paste(im.convert("RGB").resize((size, size)), (label_w + size * c, size * r))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".txt"), "".join(f"row {i + 1}: {label}\n" for i, (label, _) in enumerate(rows)))


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=list(SPLITS), default="tune",
                   help="which half of the class bank (tune: where defaults are chosen; test: where they are reported)")
    p.add_argument("--classes", nargs="+", choices=list(class_bank.SPECS),
                   help="a narrower set of the split's classes (default: all of them)")
    p.add_argument("--base-model", default="small", help="small (default); tiny or small-random for quick checks")
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="default: all of them")
    p.add_argument("--define", nargs=2, action="append", default=[], metavar=("NAME", "SETTINGS"),
                   help="an extra arm: NAME 'hldf.grad_steps=1,hldf.every=5' (values parsed as YAML)")
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1])
    p.add_argument("--baseline", default="lora", help="the arm the others are compared with (LoRA only)")
    p.add_argument("--steps", type=int, default=400, help="0: the product's default (15 epochs)")
    p.add_argument("--n-gen", type=int, default=32, help="images generated per class caption (seeds 1000, 1001, ...)")
    p.add_argument("--draws", type=int, default=2000, help="bootstrap draws per training seed")
    p.add_argument("--out", type=Path,
                   help="results folder (default: benchmarks/out/hldf_ablation/<base>-<split>[-<classes>]-T<steps>)")
    p.add_argument("--rerun", action="store_true", help="retrain instead of using cached runs")
    args = p.parse_args(argv)
    half = SPLITS[args.split]
    other = [c for c in args.classes or () if c not in half]
    if other:
        p.error(f"{', '.join(other)} not in the {args.split.upper()} half ({', '.join(half)}); one table never "
                "mixes the tuning and testing halves: run each split on its own")
    narrowed = bool(args.classes) and set(args.classes) != set(half)
    args.classes = [c for c in half if c in (args.classes or half)]  # the bank's order
    if args.n_gen < 2:
        p.error("--n-gen must be at least 2 (KID and diversity compare pairs of images)")
    import yaml

    for name, spec in args.define:
        ARMS[name] = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in spec.split(",") if kv)}
    unknown = [a for a in [*args.arms, args.baseline] if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)} (or add one with --define)")
    if args.out is None:
        which = "-".join([args.split, *(args.classes if narrowed else [])])
        name = f"{args.base_model}-{which}-T{args.steps or 'epochs'}"
        args.out = Path("benchmarks/out/hldf_ablation") / name
    args.arms = list(dict.fromkeys([args.baseline, *args.arms]))
    return args


def main() -> None:
    common.configure()
    args = parse_args()
    from medart.profiles import BaseModelError, resolve

    try:
        resolve(args.base_model)  # a missing base is said before anything is written
    except BaseModelError as e:
        raise SystemExit(str(e)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    train_folder = class_bank.write_train_folder(args.out / "data", tuple(args.classes))
    results, measured = {}, {}
    refs = {c: Measured.of(class_bank.load_class(c).reference,
                           features(class_bank.load_class(c).reference, args.out / "reference" / f"{c}.npz"))
            for c in args.classes}
    images = {}
    for seed in args.seeds:
        for arm in args.arms:
            r = results[(arm, seed)] = run_arm(arm, seed, train_folder, args)
            images[(arm, seed)] = generated_images(arm, seed, args.classes, args)
            folder = args.out / "images" / f"{slug(arm)}-s{seed}"
            measured[(arm, seed)] = {c: Measured.of(ims, features(ims, folder / c / "features.npz"))
                                     for c, ims in images[(arm, seed)].items()}
            print(f"{arm} seed {seed}: {r['seconds']:.1f} s, {r['colour_steps']} colour steps", flush=True)
    for c in args.classes:
        rows = [("real references", class_bank.load_class(c).reference)]
        rows += [(f"{arm_label(a)} (seed {args.seeds[0]})", images[(a, args.seeds[0])][c]) for a in args.arms]
        grid(rows, args.out / f"grid-{c}.png")
    steps = args.steps or f"{results[(args.baseline, args.seeds[0])]['total_steps']} (15 epochs)"
    title = (f"HLDF ablation, {args.split.upper()} half: {', '.join(args.classes)} (base `{args.base_model}`, "
             f"{steps} steps, seeds {args.seeds}, {class_bank.N_TRAIN} training / {class_bank.N_REFERENCE} reference "
             f"tiles and {args.n_gen} generated images per class)")
    ev = evaluate(results, measured, refs, args.arms, args.seeds, args.baseline, args.draws)
    text = render(results, ev, args.arms, args.seeds, args.baseline, title)
    grads = gradient_table(results, args.arms, args.seeds)
    text += "\nGradient norms on colour steps (seed mean of per-run medians):\n\n" + grads + "\n"
    print("\n" + text)
    atomic_write_text(args.out / "table.md", text)


if __name__ == "__main__":
    main()
