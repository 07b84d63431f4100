"""Evaluate tab: evaluate a run as a background job (`python -m medart evaluate`) and show its report.

The table puts base, tuned and (with enough real images) the real-vs-real floor side by side
(FID, KID, domain FD, colour distance), read from `<run>/eval/metrics.json`, with a line on what
each number means and, when the sets are too small for FID and KID to compare with published
numbers, a warning that says how many images are needed; downstream classification has a table
of its own. The plots are the report's PNGs, handed to image
components as pixels (never by path), and the report's text points to them. While the job
runs, each stage shows how far it is and about how long is left (`<run>/eval/progress.json`);
results of an earlier evaluation stay labelled as the previous one's until the new one finishes.
A held-out set that is empty, too small to measure, or all images the run trained on is refused
before a job starts; held-out images the run trained on are left out, and the page says so.
The newest finished run is chosen when the page opens.
"""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from medart.constants import SPLITS
from medart.evaluation import ALL_METRICS
from medart.evaluation.progress import read_progress, stage_rows
from medart.evaluation.sets import held_out_set
from medart.jobs.kinds import evaluation_settings
from medart.studio import finished_runs
from medart.ui import pictures
from medart.ui.widgets import beside, on_page_load, state_badge

METRIC_NAMES = {"fid": "FID", "kid_mean": "KID", "kid_std": "KID std", "dfd": "domain FD",
                "color_distance": "colour distance"}
METRIC_HELP = """**What the numbers are** (lower is closer to the real images in every column; with enough real
images, a **real vs real (floor)** row compares two halves of them: about the best a model could reach at that size;
with few, there is no such row and a note above the table says why):
- **FID**: Fréchet distance between Inception features of the real and the generated images (means and covariances).
- **KID** ± **KID std**: kernel distance in the same features, unbiased at any size; the std is its spread over subsets.
- **domain FD**: the same Fréchet distance in the features of a classifier trained on the real training images
  (the paper's KFD / HFD): does it look like this domain?
- **colour distance**: √(Σ over R, G, B of Δmean² + Δstd²) between the sets' average per-channel statistics
  (0–1 scale), what HLDF's colour loss compares.
- **Downstream classification** (its own table): a small classifier trained on real, base or tuned images, tested on
  the held-out real images: accuracy (share right) and macro-F1 (per-class F1 averaged); higher is better there."""
CLASSIFY_HEADERS = ["classifier trained on", "accuracy", "macro-F1", "held-out real images tested"]


def empty_table() -> pd.DataFrame:
    """The table before any result: its columns, no rows."""
    return pd.DataFrame(columns=["model", *METRIC_NAMES.values()])


DECIMALS = {"fid": 1, "dfd": 2}  # FID in the hundreds: a fourth decimal is noise, not information
STAGE_MARKS = {"done": "✓", "running": "▶", "waiting": "·", "stopped": "■"}


def results_table(results: dict) -> pd.DataFrame:
    dist = results.get("distribution", {})
    order = ["base", "tuned", "real vs real (floor)"]
    dist = {k: dist[k] for k in sorted(dist, key=lambda k: (order.index(k) if k in order else len(order), k))}
    keys = [k for k in METRIC_NAMES if any(k in row for row in dist.values())]
    keys += sorted({k for row in dist.values() for k in row} - set(keys))
    rows = [[name] + [round(row[k], DECIMALS.get(k, 4)) if isinstance(row.get(k), (int, float)) else None for k in keys]
            for name, row in dist.items()]
    return pd.DataFrame(rows, columns=["model"] + [METRIC_NAMES.get(k, k) for k in keys])


def classifier_table(results: dict) -> pd.DataFrame:
    """Downstream classification, one row per training set (real, base, tuned images)."""
    rows = [[f"{name} images", round(res["accuracy"], 3), round(res["macro_f1"], 3), res.get("n")]
            for name, res in results.get("classification", {}).items()]
    return pd.DataFrame(rows, columns=CLASSIFY_HEADERS)


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


def stages_html(progress: dict | None, running: bool) -> str:
    """The evaluation's stages: done (time taken), running (how far, about how long left), waiting."""
    if not progress or not progress.get("stages"):
        return ""
    rows = stage_rows(progress, running=running)
    current = next((k for k, (state, _, _) in enumerate(rows) if state == "running"), None)
    head = f"<small>stage {current + 1} of {len(rows)}</small>" if current is not None else ""
    items = "".join(f'<li class="eval-stage" data-state="{state}">{STAGE_MARKS[state]} {html.escape(name)}: '
                    f"{html.escape(text)}</li>" for state, name, text in rows)
    return f'<div id="eval-stages">{head}<ul style="list-style:none;padding-left:0;margin:4px 0">{items}</ul></div>'


def eval_view(studio, run_name: str | None):
    """(status html, results table, classifier table, plot files, report Markdown, notes Markdown:
    the sample-size warning and why there is no floor)."""
    if not run_name:
        return "<small>No run selected.</small>", empty_table(), classifier_table({}), [], "", ""
    try:
        run = studio.run_dir(run_name)
    except ValueError as e:
        return f"<small>{html.escape(str(e))}</small>", empty_table(), classifier_table({}), [], "", ""
    job = studio.jobs.latest("evaluate", output=str(run))
    metrics = run / "eval" / "metrics.json"
    status = job_status(job, run) if job else "<small>Not evaluated yet.</small>"
    if not metrics.exists():
        return status, empty_table(), classifier_table({}), [], "", ""
    if job and job.state != "done" and metrics.stat().st_mtime < job.created:
        finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(metrics.stat().st_mtime))
        now = "is running" if job.state in ("queued", "running", "stopping") else f"{job.state}"
        status += (f'<p id="eval-previous"><b>The results below are the previous evaluation\'s</b> (finished {finished}), '
                   f"not this one's: this evaluation {now}.</p>")
    results = json.loads(metrics.read_text())
    report = (run / "eval" / "report.md").read_text() if (run / "eval" / "report.md").exists() else ""
    report, captions = report_text(report)
    plots = [(p, captions.get(p.name) or p.stem.replace("_", " ")) for p in sorted((run / "eval").glob("*.png"))]
    notes = [n for n in (results.get("seen_note"), results.get("classification_note"),
                         results.get("settings", {}).get("sample_size_warning"), results.get("floor_note")) if n]
    return (status, results_table(results), classifier_table(results), plots, report,
            "\n\n".join(f"⚠ {n}" for n in notes))


def job_status(job, run: Path) -> str:
    """The latest evaluation job's badge, its stages (only when its own: a progress file older
    than the job is a previous evaluation's) and, when it failed, why."""
    running = job.state in ("queued", "running", "stopping")
    progress = read_progress(run / "eval")
    if progress and progress.get("started", 0) < job.created:
        progress = None
    stages = stages_html(progress, running) if job.state != "queued" else ""
    status = (f'<div id="eval-status" data-state="{job.state}">{state_badge(job.state)} {job.id}</div>'
              + (stages if running or job.state in ("failed", "stopped") else ""))
    if job.state == "failed":
        status += f"<pre>{html.escape(job.error or '')}\n{html.escape(job.log_tail or '')}</pre>"
    return status


def check_start(studio, run_name: str | None, real: str | None, chosen) -> tuple[Path, str]:
    """(run folder, --real) of an evaluation that can start; a ValueError saying what to do otherwise."""
    if not studio.training_allowed:
        raise ValueError("evaluation is turned off on this shared Space: duplicate it to evaluate")
    if not run_name:
        if not studio.runs():
            raise ValueError("there is no run to evaluate yet: train one in the Train tab first")
        raise ValueError("choose a run in the Run list first")
    if not chosen:
        raise ValueError("choose at least one metric")
    run_dir, real_arg = studio.run_dir(run_name), real_argument(studio, real)
    held_out_set(real_arg, run_dir)  # an empty or too small set, or one the run trained on, is refused here
    return run_dir, real_arg


def start(studio, run_name: str | None, real: str | None, k, chosen) -> tuple:
    """Start evaluation: queue an evaluation job of the run (its config file: `kinds.evaluation_settings`)."""
    run_dir, real_arg = check_start(studio, run_name, real, chosen)
    settings = evaluation_settings(run_dir, real_arg, int(k or 1), chosen)
    studio.jobs.submit("evaluate", settings, title=f"eval-{run_name}", output=str(run_dir))
    return eval_view(studio, run_name)


PLOT_SLOTS = 4


def spread(view) -> tuple:
    """(status, table, classifier table, plot files, report, notes) -> one value per output, plots (as
    pixels) into the image slots; the classifier table shows only when there are classifier results."""
    status, table, classify, plots, report, warning = view
    images = [gr.update(value=im, visible=True, label=caption)
              for im, caption in pictures.gallery(plots[:PLOT_SLOTS])]
    images += [gr.update(value=None, visible=False)] * (PLOT_SLOTS - len(images))
    return (status, table, gr.update(value=classify, visible=len(classify) > 0), *images, report, warning)


def newest_finished(studio, current=None) -> tuple[list[str], str | None]:
    """(finished runs, the one to show): the current one if still there, else the newest."""
    names = [r.name for r in finished_runs(studio)]
    return names, (current if current in names else names[0] if names else None)


def build(studio):
    with gr.Tab("Evaluate", id="evaluate") as tab:
        gr.Markdown("FID, KID, the domain-classifier Fréchet distance (the paper's KFD/HFD), colour fidelity and "
                    "downstream classification, for the base and the tuned model against held-out real images.")
        with gr.Row():
            run = gr.Dropdown(choices=[], label="Run", elem_id="eval-run", allow_custom_value=True)
            real = gr.Textbox(value="test", label="Held-out real images (a split of this workspace: test, "
                              "validation; or an imagefolder or WORKSPACE:SPLIT on the server)", elem_id="eval-real")
            per_caption = gr.Number(value=4, precision=0, label="Images per caption (k)", elem_id="eval-k",
                                    info="generated per held-out caption, by each model")
        metrics = gr.CheckboxGroup(list(ALL_METRICS), value=list(ALL_METRICS), label="Metrics", elem_id="eval-metrics")
        if not studio.training_allowed:
            gr.Markdown("Evaluation is turned off on this shared Space: its results would land in run folders "
                        "every visitor sees. **Duplicate the Space** to evaluate.", elem_id="eval-disabled")
        go = gr.Button("Start evaluation (background job)", variant="primary", elem_id="eval-go",
                       interactive=studio.training_allowed)
        note = gr.Markdown(elem_id="eval-note")  # a refusal, beside the button
        status = gr.HTML(elem_id="eval-status-box")
        warning = gr.Markdown(elem_id="eval-sample-warning")
        table = gr.Dataframe(label="Distance to the held-out real images (lower is closer)", interactive=False,
                             elem_id="eval-table")
        classify = gr.Dataframe(headers=CLASSIFY_HEADERS, label="Downstream classification (higher is better)",
                                interactive=False, visible=False, elem_id="eval-classify-table")
        gr.Markdown(METRIC_HELP, elem_id="eval-help")
        with gr.Column(elem_id="eval-plots"):
            slots = [gr.Image(visible=False, interactive=False, show_label=True) for _ in range(PLOT_SLOTS)]
        with gr.Accordion("Report", open=False):
            report = gr.Markdown()

        timer = gr.Timer(2.0, active=False)  # polls while the run's evaluation is queued or running
        outs = [status, table, classify, *slots, report, warning]

        def active(run_name):
            job = _latest(studio, run_name)
            return gr.Timer(active=job is not None and job.state in ("queued", "running", "stopping"))

        # a refusal is one line beside the button: no toast, no "Error" over the results
        beside(go.click, lambda *a: (*spread(start(studio, *a)), active(a[0])), [run, real, per_caption, metrics],
               [*outs, timer], note, api_name="evaluate")
        run.change(lambda r: (*spread(eval_view(studio, r)), active(r)), [run], [*outs, timer])
        seen = gr.State("")

        def poll(run_name, prev):
            job = _latest(studio, run_name)
            key = f"{job.id}:{job.state}" if job else ""
            view = eval_view(studio, run_name)
            if key == prev:  # only the stages move: the table, plots and report stay as they are
                return (view[0], key, active(run_name)) + (gr.update(),) * (len(outs) - 1)
            return (view[0], key, active(run_name)) + spread(view)[1:]

        timer.tick(poll, [run, seen], [status, seen, timer, *outs[1:]], show_progress="hidden")

        def on_open(current=None):
            names, chosen = newest_finished(studio, current)
            return gr.update(choices=names, value=chosen)

        tab.select(on_open, [run], [run])
        on_page_load(on_open, [run])
    return tab


def _latest(studio, run_name):
    try:
        out = str(studio.run_dir(run_name))
    except ValueError:
        return None
    return studio.jobs.latest("evaluate", output=out)
