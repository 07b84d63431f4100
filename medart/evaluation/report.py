"""The evaluation report: PNG plots and a markdown page written from a dict of results.

Every number shown comes from the `results` dict (as produced by the evaluation); nothing
here computes or invents a metric. The same dict is written as JSON beside the page.

Expected keys (each optional; sections without data are left out):

- `title`, `run`, `base_model`, `created`: strings for the header;
- `settings`: flat dict of how the evaluation ran (steps, cfg, images per caption, ...);
- `distribution`: {row name: {"fid", "kid_mean", "kid_std", "dfd", "color_distance"}}, each
  row one image set compared with the real images (e.g. base, tuned, real-vs-real floor);
- `color`: {set name: `color_stats.set_stats` dict};
- `color_histograms`: {set name: {"r", "g", "b": lists of bin frequencies}};
- `classification`: {training source: `classifier.classification_metrics` dict};
- `warnings`: list of strings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medart.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

DISTRIBUTION_COLUMNS = [
    ("fid", "FID ↓", "{:.2f}"),
    ("kid_mean", "KID ↓", "{:.4f}"),
    ("dfd", "Domain FD ↓", "{:.3f}"),
    ("color_distance", "Colour distance ↓", "{:.4f}"),
]
COLOR_COLUMNS = [
    ("mean_r", "mean R"),
    ("mean_g", "mean G"),
    ("mean_b", "mean B"),
    ("std_r", "std R"),
    ("std_g", "std G"),
    ("std_b", "std B"),
    ("saturation", "saturation"),
    ("colourfulness", "colourfulness"),
]
CHANNEL_COLOURS = {"r": "#c0392b", "g": "#27ae60", "b": "#2c6fbb"}
SET_STYLES = ["-", "--", ":", "-."]

COLOR_HIST_PNG = "color_histograms.png"
PER_CLASS_PNG = "per_class_recall.png"


def _fmt(value, pattern: str = "{:.4f}") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "—"
    if isinstance(value, (int, float, np.floating, np.integer)):
        return pattern.format(float(value))
    return str(value)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


# how each image set is drawn in every channel's panel: the real images black, the base model
# gray and dashed, the tuned model solid in the channel's colour (None)
SET_LOOKS = {"real": ("-", "#111827", 2.0), "reference": ("-", "#111827", 2.0), "base": ("--", "#9ca3af", 1.8),
             "tuned": ("-", None, 2.2)}


def histogram_figure(histograms: Mapping[str, Mapping[str, object]], width: float = 12, height: float = 3.4,
                     title: str = "Colour histograms"):
    """One small panel per channel (R, G, B), one line per image set (real or reference, base,
    tuned) in each: which set is nearer the real colours reads at a glance."""
    if not histograms:
        raise ValueError("no histograms to plot")
    fig = _figure(width, height)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, channel, name_ in zip(axes, ("r", "g", "b"), ("Red", "Green", "Blue")):
        for i, (name, hist) in enumerate(histograms.items()):
            values = np.asarray(hist[channel], dtype=float)
            centres = (np.arange(len(values)) + 0.5) / len(values)
            style, colour, width_ = SET_LOOKS.get(name, (SET_STYLES[i % len(SET_STYLES)], None, 2.0))
            ax.plot(centres, values, style, color=colour or CHANNEL_COLOURS[channel], linewidth=width_, label=name)
        ax.set_title(f"{name_} channel", color=CHANNEL_COLOURS[channel])
        ax.set_xlabel("value (0 dark, 1 bright)")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("fraction of pixels")
    fig.suptitle(title)
    return fig


def figure_png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_color_histograms(histograms: Mapping[str, Mapping[str, object]], path: str | Path) -> Path:
    """One panel per channel (R, G, B), one line per image set (e.g. real, base, tuned)."""
    return _save_png(histogram_figure(histograms), Path(path))


def class_gaps(classification: Mapping[str, Mapping[str, object]], key: str = "per_class_recall",
               without_training: Sequence[str] = ()) -> dict[str, str]:
    """{class: why it has no bars}: "no test images" (no held-out image of it to score) or "no
    training images" (nothing of it to learn from)."""
    classes = {c for res in classification.values() for c in res[key]}
    out = {}
    for c in sorted(classes):
        if all(res[key].get(c) is None for res in classification.values()):
            out[c] = "no test images"
        elif c in without_training:
            out[c] = "no training images"
    return out


def plot_per_class(
    classification: Mapping[str, Mapping[str, object]], path: str | Path, key: str = "per_class_recall",
    without_training: Sequence[str] = (),
) -> Path:
    """Grouped bars: one group per class, one bar per training source (e.g. real, base, tuned); a
    class with no held-out test images, or none to train on (`without_training`), says so in
    words where its bars would be, instead of an empty gap that reads as zero."""
    if not classification:
        raise ValueError("no classification results to plot")
    sources = list(classification)
    classes: list[str] = []
    for res in classification.values():
        for c in res[key]:
            if c not in classes:
                classes.append(c)
    fig = _figure(max(6.0, 1.2 * len(classes) + 2), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(sources)
    x = np.arange(len(classes))
    for i, src in enumerate(sources):
        vals = [classification[src][key].get(c) for c in classes]
        heights = [np.nan if v is None else float(v) for v in vals]
        ax.bar(x + (i - (len(sources) - 1) / 2) * width, heights, width, label=src)
    for j, c in enumerate(classes):
        words = class_gaps(classification, key, without_training).get(c)
        if words:
            ax.text(j, 0.5, words, ha="center", va="center", rotation=90, fontsize=8, color="#555555")
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(key.replace("per_class_", "").replace("_", " "))
    ax.set_title("Per-class " + key.replace("per_class_", "").replace("_", " ") + " on held-out real images")
    ax.legend(fontsize=8, title="trained on", title_fontsize=8)
    return _save_png(fig, Path(path))


def render_markdown(results: Mapping, plots: Mapping[str, str] | None = None) -> str:
    """The report page (markdown) from the results dict; `plots` maps captions to file names."""
    lines: list[str] = [f"# {results.get('title', 'Evaluation report')}", ""]
    header = [(k, results.get(k)) for k in ("run", "base_model", "created")]
    for key, value in header:
        if value:
            lines.append(f"- **{key.replace('_', ' ')}**: {value}")
    if any(v for _, v in header):
        lines.append("")
    if results.get("seen_note"):
        lines += [f"> **Warning:** {results['seen_note']}", ""]
    for section in (_settings_section, _distribution_section, _colour_section, _per_class_section,
                    _classification_section):
        lines += section(results)
    if plots:
        lines += ["## Plots", ""]
        for caption, file_name in plots.items():
            lines += [f"![{caption}]({file_name})", ""]
    warnings = results.get("warnings")
    if warnings:
        lines += ["## Notes", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)


def _settings_section(results: Mapping) -> list[str]:
    settings = results.get("settings")
    if not settings:
        return []
    lines = ["## Settings", "", "| setting | value |", "|---|---|"]
    for key, value in settings.items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    return lines + [""]


def _distribution_section(results: Mapping) -> list[str]:
    dist = results.get("distribution")
    if not dist:
        return []
    lines = [
        "## Distance to the real images",
        "",
        "Lower is better. FID and KID use Inception features; the domain Fréchet distance "
        "uses the penultimate features of a classifier trained on the real images (the "
        "paper's KFD / HFD); the colour distance compares per-channel mean and std. "
        + ("The real-vs-real row is the floor: two halves of the real set compared with each other (each half is "
           "smaller than the sets the models are measured with, so the floor sits a little high)."
           if "real vs real (floor)" in dist else results.get("floor_note", "")),
        "",
        "| images | " + " | ".join(title for _, title, _ in DISTRIBUTION_COLUMNS) + " |",
        "|---|" + "---:|" * len(DISTRIBUTION_COLUMNS),
    ]
    for name, row in dist.items():
        cells = []
        for key, _, pattern in DISTRIBUTION_COLUMNS:
            cell = _fmt(row.get(key), pattern)
            if key == "kid_mean" and row.get("kid_std") is not None and cell != "—":
                cell += " ± " + _fmt(row["kid_std"], pattern)
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _colour_section(results: Mapping) -> list[str]:
    color = results.get("color")
    if not color:
        return []
    lines = [
        "## Colour statistics",
        "",
        "Means over images of each image's statistic; channels on a [0, 1] scale, "
        "colourfulness after Hasler and Süsstrunk (2003).",
        "",
        "| images | " + " | ".join(title for _, title in COLOR_COLUMNS) + " |",
        "|---|" + "---:|" * len(COLOR_COLUMNS),
    ]
    for name, stats in color.items():
        cells = [_fmt(stats.get(k), "{:.2f}" if k == "colourfulness" else "{:.4f}") for k, _ in COLOR_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _per_class_section(results: Mapping) -> list[str]:
    per_class = results.get("color_per_class")
    if not per_class:
        return []
    names = [n for n in ("base", "tuned") if any(n in row for row in per_class.values())]
    lines = [
        "## Colour distance per class",
        "",
        "Each class's generated images (from its own captions) against its own held-out real images: "
        "the colour loss on the two sets' average per-channel mean and std, images in [-1, 1]; "
        "lower is closer. HLDF's per-class curves in training use the same measure.",
        "",
        "| class | real images | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for label, row in per_class.items():
        lines.append(f"| {label} | {row.get('real images', '')} | "
                     + " | ".join(_fmt(row.get(n), "{:.4f}") for n in names) + " |")
    return lines + [""]


def _classification_section(results: Mapping) -> list[str]:
    cls = results.get("classification")
    if not cls:
        return []
    classes: list[str] = []
    for res in cls.values():
        for c in res.get("per_class_recall", {}):
            if c not in classes:
                classes.append(c)
    lines = [
        "## Downstream classification",
        "",
        "The same classifier trained on each image source, tested on held-out real images.",
        "",
        "| trained on | accuracy | macro-F1 | " + " | ".join(f"recall: {c}" for c in classes) + " |",
        "|---|---:|---:|" + "---:|" * len(classes),
    ]
    for src, res in cls.items():
        recalls = [_fmt(res.get("per_class_recall", {}).get(c), "{:.3f}") for c in classes]
        lines.append(
            f"| {src} | {_fmt(res.get('accuracy'), '{:.3f}')} | {_fmt(res.get('macro_f1'), '{:.3f}')} | "
            + " | ".join(recalls)
            + " |"
        )
    return lines + [""]


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_report(results: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write `report.md`, `metrics.json` and the PNG plots the results allow into `out_dir`.

    Returns the written paths by name ("report", "metrics", "color_histograms", "per_class").
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plots: dict[str, str] = {}
    if results.get("color_histograms"):
        written["color_histograms"] = plot_color_histograms(results["color_histograms"], out_dir / COLOR_HIST_PNG)
        plots["Colour histograms of real and generated images"] = COLOR_HIST_PNG
    if results.get("classification"):
        written["per_class"] = plot_per_class(results["classification"], out_dir / PER_CLASS_PNG,
                                              without_training=results.get("classes_without_training", ()))
        plots["Per-class recall on held-out real images"] = PER_CLASS_PNG
    data = _jsonable(results)
    atomic_write_json(out_dir / "metrics.json", data)
    written["metrics"] = out_dir / "metrics.json"
    atomic_write_text(out_dir / "report.md", render_markdown(data, plots))
    written["report"] = out_dir / "report.md"
    return written
