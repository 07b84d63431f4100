"""The `evaluate` command: `python -m medart evaluate --run RUN ...` (see `medart.evaluation`).

Registered by `medart.cli` through `add_parsers(sub)`; prints where the report went and
the headline numbers, with a progress bar per stage (one line per stage into a pipe).
"""

from __future__ import annotations

import sys

from medart.cli.flags import add_config_file
from medart.evaluation import ALL_METRICS


def _metrics_arg(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown or not names:
        import argparse

        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown}; choose from {','.join(ALL_METRICS)}")
    return names


class _Bars:
    """One tqdm bar per stage on stderr when it is a terminal, else (a pipe, a log file) one line
    per stage as it starts; and the stages in progress.json for the app."""

    def __init__(self, record=None):
        self.bars = {}
        self.record = record
        self.lines = not sys.stderr.isatty()  # as `train`'s bar: none into a pipe

    def plan(self, stages: list[str]) -> None:
        if self.record is not None:
            self.record.plan(stages)

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.record is not None:
            self.record(stage, done, total)
        bar = self.bars.get(stage)
        if bar is None and self.lines:
            print(f"{stage}: {total} step(s)…", file=sys.stderr, flush=True)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=True, disable=self.lines)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()

    def __enter__(self) -> "_Bars":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cmd_evaluate(args) -> int:
    from medart.evaluation.classifier import ClassifierConfig
    from medart.evaluation import EvalConfig, evaluate

    classifier = ClassifierConfig()
    if args.classifier_epochs:
        classifier.epochs = args.classifier_epochs
    if args.classifier_size:
        classifier.image_size = args.classifier_size
    config = EvalConfig(
        per_caption=args.per_caption,
        steps=args.steps,
        cfg=args.cfg,
        size=args.size,
        seed=args.seed,
        metrics=args.metrics,
        batch_size=args.batch_size,
        max_real=args.max_real,
        classifier=classifier,
        classifier_checkpoint=args.classifier,
        keep_seen=args.keep_seen,
    )
    from pathlib import Path

    from medart.evaluation.progress import PROGRESS_FILE, StageProgress

    stages = StageProgress(Path(args.run) / "eval" / PROGRESS_FILE)
    with _Bars(stages) as bars:
        results = evaluate(args.run, base_model=args.base_model, real=args.real, config=config, progress=bars)
    if results.get("seen_note"):
        print(f"warning: {results['seen_note']}")
    print(f"{args.run}/eval/report.md")
    for name, row in results.get("distribution", {}).items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
        print(f"  {name}: {shown}")
    for name, res in results.get("classification", {}).items():
        print(f"  classifier trained on {name}: accuracy={res['accuracy']:.3f} macro_f1={res['macro_f1']:.3f}")
    for note in results.get("warnings", []):
        if note != results.get("seen_note"):
            print(f"  note: {note}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="FID, KID, domain FD, colour and classification of a run vs real images")
    add_config_file(p)
    p.add_argument("--run", required=True, help="run folder (its adapter is the tuned model)")
    p.add_argument("--base-model", help="profile, local folder or hub id (default: the run's base)")
    p.add_argument(
        "--real",
        help="held-out real images: imagefolder, workspace split (test) or WORKSPACE_DIR:SPLIT "
        "(default: test/ beside the run's training data)",
    )
    p.add_argument("--per-caption", type=int, default=4, help="k generated images per caption (default 4)")
    p.add_argument(
        "--metrics",
        type=_metrics_arg,
        default=ALL_METRICS,
        help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: all)",
    )
    p.add_argument("--steps", type=int, default=20, help="solver steps (default 20)")
    p.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (default 4.5)")
    p.add_argument("--size", type=int, help="pixels (default: the base model's)")
    p.add_argument("--seed", type=int, default=0, help="first seed; image j of caption i uses seed + i*k + j")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-real", type=int, help="use at most this many held-out real images")
    p.add_argument("--keep-seen", action="store_true",
                   help="keep held-out images the run trained on (found by content hash); by default they are left "
                   "out and the report says how many, since numbers on them overstate how well the run generalises")
    p.add_argument("--classifier", help="domain classifier checkpoint folder for the domain FD")
    p.add_argument("--classifier-epochs", type=int, help="training epochs of the compact classifier")
    p.add_argument("--classifier-size", type=int, help="input size of the compact classifier (default 64)")
    p.set_defaults(func=cmd_evaluate)
