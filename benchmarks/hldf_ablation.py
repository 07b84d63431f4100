"""HLDF per-class ablation: which colour-step design helps every class, at what cost.

    python benchmarks/hldf_ablation.py                      # the table in RESULTS.md
    python benchmarks/hldf_ablation.py --arms lora default paper --seeds 42 7 --steps 400
    python benchmarks/hldf_ablation.py --baseline default --seeds 42 7 1 2 \
        --arms "default, caption dropout 0.05" "default, caption dropout 0.1"   # caption dropout

Three classes of real images (`medart.colour_classes`: fundus and histology in colour, an MR
slice in grayscale), 12 training images each at 64 px with one caption per class, 32 unseen
reference tiles per class. Every arm trains the `tiny` base through the product's own
trainer (`medart.hldf.train`, nothing but the arm's settings changed from the defaults) for
the same number of steps and seeds; 16 images per class caption are generated with fixed
seeds; each class's set-level colour distance to its reference tiles is compared with the
LoRA-only arm's (same seeds, paired). Printed per arm and class: the change against
LoRA-only, mean over the training seeds, with a 95 % bootstrap interval (generation seeds
and reference tiles resampled), and the training wall time against LoRA-only.

Results are cached per (arm, seed) in --out (by default one folder per data set and step count),
so arms can be added to a finished table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

import common
from medart import colour_classes
from medart.config import load_config
from medart.generate import Generator
from medart.hldf import train

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


def run_arm(name: str, seed: int, data: colour_classes.ClassSet, args) -> dict:
    slug = re.sub(r"[^\w.=-]+", "_", name)
    cache = args.out / f"{slug}-s{seed}.json"
    if cache.exists() and not args.rerun:
        return json.loads(cache.read_text())
    output = args.out / "runs" / f"{slug}-s{seed}"
    shutil.rmtree(output, ignore_errors=True)  # a fresh run, not the remains of an earlier one
    settings = {"base_model": "tiny", "data": str(data.train), "output": str(output), "max_steps": args.steps or None,
                "seed": seed, **ARMS[name]}
    config = load_config(None, **settings)
    t0, c0 = time.perf_counter(), time.process_time()
    train(config)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    gen = Generator("tiny", output / "adapter")
    stats = {}
    for label, caption in data.captions.items():
        images = gen.generate([caption] * args.n_gen, [1000 + i for i in range(args.n_gen)])
        stats[label] = colour_classes.stat_matrix(images).tolist()
    rows = [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]
    colour = [r for r in rows if "color_loss" in r]
    result = {"arm": name, "seed": seed, "seconds": seconds, "cpu_seconds": cpu_seconds, "stats": stats,
              "settings": ARMS[name],
              "colour_steps": len(colour), "every": config.hldf.every,
              "step_seconds": sum(r.get("seconds", 0) for r in rows),
              "total_steps": max(r["step"] for r in rows),
              "colour_seconds": sum(r["color_seconds"] for r in colour),
              "grad_ratio": float(np.median([r["grad_norm_color"] / max(r["grad_norm_diffusion"], 1e-12)
                                             for r in colour])) if colour else None,
              "grad_norm_color": float(np.median([r["grad_norm_color"] for r in colour])) if colour else None,
              "grad_norm_diffusion": float(np.median([r["grad_norm_diffusion"] for r in colour])) if colour else None,
              "clipped_colour_steps": float(np.mean([r["grad_norm"] > config.max_grad_norm for r in colour]))
              if colour else None,
              "clipped_plain_steps": float(np.mean([r["grad_norm"] > config.max_grad_norm
                                                    for r in rows if "loss" in r and "color_loss" not in r]))}
    cache.write_text(json.dumps(result))
    return result


def table(results: dict, data: colour_classes.ClassSet, arms: list[str], seeds: list[int],
          baseline: str = "lora") -> str:
    ref = {c: colour_classes.stat_matrix(ims) for c, ims in data.reference.items()}
    classes = list(data.captions)
    against = "LoRA-only" if baseline == "lora" else f"'{baseline}'"
    lines = ["| arm | N | colour steps | " + " | ".join(f"{c}: change vs {against} [95 % CI]" for c in classes)
             + f" | worst class | run time vs {against} (CPU) | step time vs {against} |",
             "|---|---:|---:|" + "---|" * len(classes) + "---:|---:|---:|"]
    rng = np.random.default_rng(0)
    floor = {}  # real vs real: one half of the reference tiles against the other, median of 200 splits
    for c in classes:
        halves = []
        for _ in range(200):
            idx = rng.permutation(len(ref[c]))
            half = len(idx) // 2
            halves.append(colour_classes.set_distance(ref[c][idx[:half]], ref[c][idx[half:]]))
        floor[c] = float(np.median(halves))
    lines.append("| real vs real, half against half (floor) | – | – | " + " | ".join(f"{floor[c]:.4f}" for c in classes)
                 + " | – | – | – |")
    for arm in arms:
        if arm == baseline:
            base = [results[(baseline, s)] for s in seeds]
            dist = {c: np.mean([colour_classes.set_distance(np.array(r["stats"][c]), ref[c]) for r in base])
                    for c in classes}
            r0 = results[(baseline, seeds[0])]
            every = r0["every"] if r0["colour_steps"] else "–"
            lines.append(f"| {'LoRA only' if baseline == 'lora' else baseline} (distance) | {every} | "
                         f"{r0['colour_steps']} | " + " | ".join(f"{dist[c]:.4f}" for c in classes)
                         + " | – | 1.00 | 1.00 |")
            continue
        cells, worst = [], -np.inf
        for c in classes:
            changes, boots = [], []
            for s in seeds:
                a = np.array(results[(arm, s)]["stats"][c])
                b = np.array(results[(baseline, s)]["stats"][c])
                d_a, d_b = colour_classes.set_distance(a, ref[c]), colour_classes.set_distance(b, ref[c])
                changes.append(d_a / d_b - 1)
                boot = []
                for _ in range(2000):
                    gi = rng.integers(0, len(a), len(a))
                    ri = rng.integers(0, len(ref[c]), len(ref[c]))
                    boot.append(colour_classes.set_distance(a[gi], ref[c][ri])
                                / colour_classes.set_distance(b[gi], ref[c][ri]) - 1)
                boots.append(np.array(boot))
            mean = float(np.mean(changes))
            pooled = np.mean(boots, axis=0)
            lo, hi = np.percentile(pooled, [2.5, 97.5])
            worst = max(worst, mean)
            per_seed = " / ".join(f"{100 * x:+.0f}" for x in changes)
            cells.append(f"{100 * mean:+.0f} % [{100 * lo:+.0f}, {100 * hi:+.0f}] ({per_seed})")
        key = "cpu_seconds" if all("cpu_seconds" in results[(a, s)] for a in (arm, baseline) for s in seeds) else "seconds"
        t = np.mean([results[(arm, s)][key] / results[(baseline, s)][key] for s in seeds])
        st = np.mean([results[(arm, s)].get("step_seconds", np.nan) / results[(baseline, s)].get("step_seconds", np.nan)
                      for s in seeds])
        r0 = results[(arm, seeds[0])]
        every = r0["every"] if r0["colour_steps"] else "–"
        lines.append(f"| {arm} | {every} | {r0['colour_steps']} | " + " | ".join(cells)
                     + f" | {100 * worst:+.0f} % | {t:.2f} | {st:.2f} |")
    return "\n".join(lines)


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


def main() -> None:
    common.configure()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="default: all of them")
    p.add_argument("--define", nargs=2, action="append", default=[], metavar=("NAME", "SETTINGS"),
                   help="an extra arm: NAME 'hldf.grad_steps=1,hldf.every=5' (values parsed as YAML)")
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 7])
    p.add_argument("--baseline", default="lora", help="the arm the others are compared with (LoRA only)")
    p.add_argument("--steps", type=int, default=400, help="0: the product's default (15 epochs)")
    p.add_argument("--classes", nargs="+", default=list(colour_classes.CAPTIONS), choices=list(colour_classes.CAPTIONS))
    p.add_argument("--n-train", type=int, default=12)
    p.add_argument("--n-reference", type=int, default=32)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--out", type=Path, help="results folder (default: benchmarks/out/hldf_ablation/<set>)")
    p.add_argument("--rerun", action="store_true", help="ignore cached results")
    args = p.parse_args()
    import yaml

    for name, spec in args.define:
        ARMS[name] = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in spec.split(",") if kv)}
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    if args.out is None:
        name = f"{'-'.join(args.classes)}-n{args.n_train}-T{args.steps or 'epochs'}"
        args.out = Path("benchmarks/out/hldf_ablation") / name
    args.out.mkdir(parents=True, exist_ok=True)
    arms = args.arms if args.baseline in args.arms else [args.baseline, *args.arms]
    data = colour_classes.build(args.out / "data", args.n_train, args.n_reference, classes=tuple(args.classes))
    results = {}
    for seed in args.seeds:
        for arm in arms:
            results[(arm, seed)] = run_arm(arm, seed, data, args)
            r = results[(arm, seed)]
            print(f"{arm} seed {seed}: {r['seconds']:.1f} s, {r['colour_steps']} colour steps", flush=True)
    text = table(results, data, arms, args.seeds, args.baseline)
    steps = args.steps or f"{results[(args.baseline, args.seeds[0])]['total_steps']} (15 epochs)"
    print(f"\n{', '.join(args.classes)}: {steps} steps, seeds {args.seeds}, {args.n_train} training / "
          f"{args.n_reference} reference images per class, {args.n_gen} generated per class\n")
    print(text)
    grads = gradient_table(results, arms, args.seeds)
    print("\nGradient norms on colour steps (seed mean of per-run medians):\n")
    print(grads)
    (args.out / "table.md").write_text(text + "\n\n" + grads + "\n")


if __name__ == "__main__":
    main()
