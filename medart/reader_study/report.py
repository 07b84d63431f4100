"""How a reader study's results are shown: a Markdown summary and a matplotlib plot (PNG).

The plot has two panels: each reader's accuracy (and all readers pooled) with its Wilson 95 %
interval against the dashed 50 % chance line, and the mean realism score of real and of
generated images. Used by the Reader study tab and `python -m medart reader-study results`.
"""

from __future__ import annotations

import io
from pathlib import Path

from medart.fileio import atomic_write_bytes
from medart.reader_study.stats import StudyResults


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _num(value, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def markdown(results: StudyResults, title: str = "") -> str:
    """A summary table per reader (and pooled), classes, and agreement between readers."""
    lines = [f"### {title}" if title else "", ""]
    if not results.readers:
        return "\n".join(lines + ["No answers yet."])
    lines += [
        "| reader | answers | accuracy | 95 % CI (Wilson) | p vs 50 % | sensitivity (generated) | "
        "specificity | realism real | realism generated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = results.readers + ([results.pooled] if len(results.readers) > 1 else [])
    for r in rows:
        ci = "–" if r.ci_low is None else f"{100 * r.ci_low:.1f}–{100 * r.ci_high:.1f} %"
        lines.append(f"| {r.reader} | {r.n} | {_pct(r.accuracy)} | {ci} | {_num(r.p_value, '{:.3g}')} | "
                     f"{_pct(r.sensitivity)} | {_pct(r.specificity)} | {_num(r.realism_real)} | "
                     f"{_num(r.realism_generated)} |")
    pooled = results.pooled
    if pooled.per_class:
        lines += ["", "| class | answers | accuracy |", "|---|---|---|"]
        for label, (correct, n) in pooled.per_class.items():
            lines.append(f"| {label or '(none)'} | {n} | {_pct(correct / n if n else None)} |")
    if results.agreements:
        lines += ["", "| readers | common images | agreement | Cohen's kappa |", "|---|---|---|---|"]
        for a in results.agreements:
            lines.append(f"| {a.reader_a} / {a.reader_b} | {a.n} | {_pct(a.observed)} | {_num(a.kappa, '{:.3f}')} |")
        if results.mean_kappa is not None:
            lines.append(f"\nMean Cohen's kappa: **{results.mean_kappa:.3f}**")
    lines += ["", "Accuracy near 50 % (an interval containing 50 %) means the readers could not tell generated "
                  "images from real ones. Sensitivity: generated images called generated; specificity: real "
                  "images called real."]
    return "\n".join(lines)


def plot_png(results: StudyResults, title: str = "") -> bytes:
    """The two-panel results figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = results.readers + ([results.pooled] if len(results.readers) > 1 else [])
    fig = Figure(figsize=(9, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2, width_ratios=[3, 2])
    names = [r.reader for r in rows] or ["(no answers)"]
    acc = [(r.accuracy or 0.0) for r in rows] or [0.0]
    err_low = [(r.accuracy - r.ci_low) if r.accuracy is not None else 0.0 for r in rows] or [0.0]
    err_high = [(r.ci_high - r.accuracy) if r.accuracy is not None else 0.0 for r in rows] or [0.0]
    x = list(range(len(names)))
    ax.bar(x, acc, color=["#2563eb"] * len(results.readers) + ["#6b7280"] * (len(names) - len(results.readers)))
    ax.errorbar(x, acc, yerr=[err_low, err_high], fmt="none", ecolor="black", capsize=4)
    ax.axhline(0.5, color="#dc2626", linestyle="--", label="chance (50 %)")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95 % Wilson CI)")
    ax.set_title("Real or generated: accuracy")
    ax.legend(loc="upper right", fontsize=8)
    pooled = results.pooled
    means = [pooled.realism_real, pooled.realism_generated]
    bx.bar([0, 1], [m or 0.0 for m in means], color=["#16a34a", "#d97706"])
    for i, m in enumerate(means):
        bx.text(i, (m or 0.0) + 0.08, "–" if m is None else f"{m:.2f}", ha="center", fontsize=9)
    bx.set_xticks([0, 1], [f"real (n={pooled.n_realism_real})", f"generated (n={pooled.n_realism_generated})"])
    bx.set_ylim(0, 5.5)
    bx.set_ylabel("mean realism (1-5)")
    bx.set_title("Realism score")
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_plot(results: StudyResults, path: str | Path, title: str = "") -> Path:
    path = Path(path)
    atomic_write_bytes(path, plot_png(results, title))
    return path
