"""Evaluate tab: evaluate a run as a background job (`python -m medart evaluate`) and show its report.

The table puts base, tuned and the real-vs-real floor side by side (FID, KID, domain FD,
colour distance), read from `<run>/eval/metrics.json`; the plots are the report's PNGs, handed
to image components as pixels (never by path), and the report's text points to them.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import gradio as gr
import pandas as pd

from medart.constants import SPLITS
from medart.evaluation import ALL_METRICS
from medart.jobs.kinds import evaluation_settings
from medart.studio import finished_runs
from medart.ui import pictures
from medart.ui.widgets import on_page_load, progress_bar, state_badge, user_errors

METRIC_NAMES = {"fid": "FID", "kid_mean": "KID", "kid_std": "KID std", "dfd": "domain FD",
                "color_distance": "colour distance"}


def results_table(results: dict) -> pd.DataFrame:
    dist = results.get("distribution", {})
    order = ["base", "tuned", "real vs real (floor)"]
    dist = {k: dist[k] for k in sorted(dist, key=lambda k: (order.index(k) if k in order else len(order), k))}
    keys = [k for k in METRIC_NAMES if any(k in row for row in dist.values())]
    keys += sorted({k for row in dist.values() for k in row} - set(keys))
    rows = [[name] + [round(row[k], 4) if isinstance(row.get(k), (int, float)) else None for k in keys]
            for name, row in dist.items()]
    for name, res in results.get("classification", {}).items():
        rows.append([f"classifier trained on {name}: accuracy {res['accuracy']:.3f}, "
                     f"macro-F1 {res['macro_f1']:.3f}"] + [None] * len(keys))
    return pd.DataFrame(rows, columns=["model"] + [METRIC_NAMES.get(k, k) for k in keys])


FIGURE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$", re.MULTILINE)


def report_text(report: str) -> tuple[str, dict[str, str]]:
    """The report's Markdown with each `![caption](file.png)` turned into a pointer to the plot
    shown above it, and {file name: caption} for those plots' labels."""
    captions = {Path(f).name: c for c, f in FIGURE.findall(report)}
    return FIGURE.sub(lambda m: f"*Figure: {m.group(1)} (shown above).*", report), captions


def real_argument(studio, real: str | None) -> str:
    """`--real` for the evaluation job: a split of this app's workspace (test, validation,
    train), a folder or WORKSPACE:SPLIT inside the roots the owner allows."""
    text = (real or "").strip() or "test"
    if text in SPLITS:
        return f"{studio.workspace_dir}:{text}"
    root, sep, split = text.rpartition(":")
    if sep and split in SPLITS:
        return f"{studio.paths.folder(root, 'workspace')}:{split}"
    return str(studio.paths.folder(text, "folder of held-out images"))


def eval_view(studio, run_name: str | None):
    if not run_name:
        return "<small>No run selected.</small>", pd.DataFrame(), [], ""
    try:
        run = studio.run_dir(run_name)
    except ValueError as e:
        return f"<small>{html.escape(str(e))}</small>", pd.DataFrame(), [], ""
    job = studio.jobs.latest("evaluate", output=str(run))
    status = "<small>Not evaluated yet.</small>"
    if job:
        prog = studio.jobs.progress(job)
        status = (f'<div id="eval-status" data-state="{job.state}">{state_badge(job.state)} {job.id} '
                  + (progress_bar(*prog) if prog and job.state == "running" else "") + "</div>")
        if job.state == "failed":
            status += f"<pre>{html.escape(job.error or '')}\n{html.escape(job.log_tail or '')}</pre>"
    metrics = run / "eval" / "metrics.json"
    if not metrics.exists():
        return status, pd.DataFrame(), [], ""
    results = json.loads(metrics.read_text())
    report = (run / "eval" / "report.md").read_text() if (run / "eval" / "report.md").exists() else ""
    report, captions = report_text(report)
    plots = [(p, captions.get(p.name) or p.stem.replace("_", " ")) for p in sorted((run / "eval").glob("*.png"))]
    return status, results_table(results), plots, report


def start(studio, run_name: str | None, real: str | None, k, chosen) -> tuple:
    """Start evaluation: queue an evaluation job of the run (its config file: `kinds.evaluation_settings`)."""
    if not studio.training_allowed:
        raise ValueError("evaluation is turned off on this shared Space: duplicate it to evaluate")
    if not run_name:
        raise ValueError("choose a run")
    if not chosen:
        raise ValueError("choose at least one metric")
    run_dir = studio.run_dir(run_name)
    settings = evaluation_settings(run_dir, real_argument(studio, real), int(k or 1), chosen)
    studio.jobs.submit("evaluate", settings, title=f"eval-{run_name}", output=str(run_dir))
    return eval_view(studio, run_name)


PLOT_SLOTS = 4


def spread(view) -> tuple:
    """(status, table, plot files, report) -> one value per output, plots (as pixels) into the image slots."""
    status, table, plots, report = view
    images = [gr.update(value=im, visible=True, label=caption)
              for im, caption in pictures.gallery(plots[:PLOT_SLOTS])]
    images += [gr.update(value=None, visible=False)] * (PLOT_SLOTS - len(images))
    return (status, table, *images, report)


def build(studio):
    with gr.Tab("Evaluate", id="evaluate") as tab:
        gr.Markdown("FID, KID, the domain-classifier Fréchet distance (the paper's KFD/HFD), colour fidelity and "
                    "downstream classification, for the base and the tuned model against held-out real images.")
        with gr.Row():
            run = gr.Dropdown(choices=[], label="Run", elem_id="eval-run", allow_custom_value=True)
            real = gr.Textbox(value="test", label="Held-out real images (a split of this workspace: test, "
                              "validation; or an imagefolder or WORKSPACE:SPLIT on the server)", elem_id="eval-real")
            per_caption = gr.Number(value=4, precision=0, label="Images per caption (k)", elem_id="eval-k")
        metrics = gr.CheckboxGroup(list(ALL_METRICS), value=list(ALL_METRICS), label="Metrics", elem_id="eval-metrics")
        if not studio.training_allowed:
            gr.Markdown("Evaluation is turned off on this shared Space: its results would land in run folders "
                        "every visitor sees. **Duplicate the Space** to evaluate.", elem_id="eval-disabled")
        go = gr.Button("Start evaluation (background job)", variant="primary", elem_id="eval-go",
                       interactive=studio.training_allowed)
        status = gr.HTML(elem_id="eval-status-box")
        table = gr.Dataframe(label="Base vs tuned vs real-vs-real floor", interactive=False, elem_id="eval-table")
        with gr.Column(elem_id="eval-plots"):
            slots = [gr.Image(visible=False, interactive=False, show_label=True) for _ in range(PLOT_SLOTS)]
        with gr.Accordion("Report", open=False):
            report = gr.Markdown()

        outs = [status, table, *slots, report]
        go.click(user_errors(lambda *a: spread(start(studio, *a))), [run, real, per_caption, metrics], outs,
                 api_name="evaluate")
        run.change(lambda r: spread(eval_view(studio, r)), [run], outs)
        seen = gr.State("")

        def poll(run_name, prev):
            job = _latest(studio, run_name)
            key = f"{job.id}:{job.state}" if job else ""
            view = eval_view(studio, run_name)
            if key == prev:
                return (view[0], key) + (gr.update(),) * (len(outs) - 1)
            return (view[0], key) + spread(view)[1:]

        gr.Timer(3.0).tick(poll, [run, seen], [status, seen, table, *slots, report])
        tab.select(lambda: gr.update(choices=[r.name for r in finished_runs(studio)]), outputs=[run])
        on_page_load(lambda: gr.update(choices=[r.name for r in finished_runs(studio)]), [run])
    return tab


def _latest(studio, run_name):
    try:
        out = str(studio.run_dir(run_name))
    except ValueError:
        return None
    return studio.jobs.latest("evaluate", output=out)
