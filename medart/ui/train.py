"""Train tab: the paper's settings, preflight, launch into the job queue, live monitoring.

The form's inputs are settings of `medart.config.TrainConfig`, named by their paths (`FORM`);
`form_config` turns what the form holds into the run name and a TrainConfig, which
`medart.jobs.training` checks and queues as the run's config.yaml. The training itself is a
background job (`medart.jobs`); this tab only reads the run folder (status.json,
metrics.jsonl, samples/, the job's log) on a `gr.Timer` that runs while the run's job is
queued, running or stopping, so closing the page or restarting the app never touches a
running training. States are the jobs' vocabulary everywhere (queued, running, stopping,
stopped, done, failed): the badge, the message, the jobs table and `python -m medart jobs`.
The log shows its last lines, newest at the bottom. A finished run can be shared on the
Hugging Face Hub from here (`share_run`: the same `medart.sharing.push_model` as `python -m
medart push`, in the request with a progress message: an upload is network work that should not
wait behind a training for the job queue's slot). The token is never shown. The handlers are
module-level functions of the studio and the inputs' values, testable without a browser.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr
import pandas as pd

from medart.config import TrainConfig, load_config, setting_named
from medart.constants import SAMPLE_CLASSES
from medart.jobs import ACTIVE, RunComplete, hint, log_tail
from medart.jobs.training import launch, preflight
from medart.profiles import PROFILES
from medart.run_folder import RunFolder
from medart.sharing import hub_token, login_help, push_model
from medart.sharing.hub import check_repo_id
from medart.ui import pictures
from medart.ui.widgets import (JOB_HEADERS, pushed_markdown, fmt_seconds, job_rows, on_page_load, progress_bar, beside,
                               state_badge)

# The form's TrainConfig settings, in the order of its inputs after the run name and the base
# model (and of the `preflight` / `launch_training` API's arguments). 0 in a number that may be
# empty (N, steps, resolution, samples every) means empty: the automatic choice.
FORM = ("hldf.mode", "hldf.every", "hldf.steps", "hldf.cfg", "lora.rank", "lora.t5", "hldf.enabled",
        "learning_rate", "max_steps", "epochs", "resolution", "checkpoint_every", "validation_every",
        "validation_prompts", "adam_8bit", "buckets", "caption_dropout", "report_to")
# three hues: the raw diffusion loss grey, its smoothed curve blue, the colour loss red
SERIES = {"diffusion loss": "#9ca3af", "diffusion (smoothed)": "#2563eb", "colour loss": "#dc2626"}
# the classes' hues on the colour chart: none of the loss chart's (no red, blue or grey), so a
# colour means one thing on this page
CLASS_PALETTE = ("#0d9488", "#ea580c", "#7c3aed", "#65a30d", "#db2777", "#a16207", "#0891b2", "#4d7c0f",
                 "#c026d3", "#b45309")


def class_colours(classes) -> dict[str, str]:
    """A colour per class for the colour chart, from CLASS_PALETTE in the classes' sorted order."""
    return {c: CLASS_PALETTE[k % len(CLASS_PALETTE)] for k, c in enumerate(sorted(set(classes)))}


def loss_frame(rows: list[dict], smoothing: float) -> pd.DataFrame | None:
    """Long-format losses for gr.LinePlot: diffusion (raw and EMA-smoothed) and colour as series."""
    out = []
    ema = None
    for r in rows:
        if "loss" not in r:
            continue
        out.append((r["step"], r["loss"], "diffusion loss"))
        ema = r["loss"] if ema is None else smoothing * ema + (1 - smoothing) * r["loss"]
        if smoothing > 0:
            out.append((r["step"], ema, "diffusion (smoothed)"))
        if "color_loss" in r:
            out.append((r["step"], r["color_loss"], "colour loss"))
    if not out:
        return None  # an empty frame would fix the plot's axes before data arrives
    present = {series for _, _, series in out}
    for series in SERIES:  # every series from the start, so the legend and colours stay put
        if series not in present and (series != "diffusion (smoothed)" or smoothing > 0):
            out.append((out[0][0], float("nan"), series))
    frame = pd.DataFrame(out, columns=["step", "loss", "series"])
    return frame.astype({"step": "int64", "loss": "float64", "series": "str"})


def distance_frame(rows: list[dict]) -> pd.DataFrame | None:
    """Per-class colour distance of the validation samples to that class's training images,
    one series per class, from step 0 (the rows that carry `color_distance`)."""
    out = [(r["step"], value, group) for r in rows for group, value in (r.get("color_distance") or {}).items()]
    if not out:
        return None
    frame = pd.DataFrame(out, columns=["step", "distance", "class"])
    return frame.astype({"step": "int64", "distance": "float64", "class": "str"})


def sample_items(run: Path, per_step: int = SAMPLE_CLASSES, max_steps: int = 12) -> list[tuple[Path, str]]:
    """(file, caption) of the sample timeline: every sample of a step (one per class, up to
    SAMPLE_CLASSES classes), each named by its class, the newest step first, down to step 0."""
    folder = RunFolder(run)
    steps = folder.sample_steps()
    if len(steps) > max_steps:  # keep step 0 and the latest ones
        steps = steps[:1] + steps[-(max_steps - 1):]
    items = []
    for step in reversed(steps):
        labels = folder.sample_labels(step)
        for k, png in enumerate(sorted((folder.samples / f"step-{step:06d}").glob("*.png"))[:per_step]):
            items.append((png, f"step {step} · {labels[k] if k < len(labels) else f'sample {k + 1}'}"))
    return items


def form_default(path: str):
    """What the form shows for a setting before anyone types: TrainConfig's default (empty as 0 or "")."""
    default = setting_named(path).default
    if isinstance(default, list):
        return "\n".join(default)
    return 0 if default is None else default


def field_help(path: str) -> str:
    """A setting's help text from TrainConfig, as the form's field says it: the command line's
    flags become what the field does ("--no-hldf: ..." is "off: ...")."""
    text = setting_named(path).help
    text = re.sub(r"--no-[\w-]+:", "off:", text)
    text = text.replace(" (repeatable)", "").replace("empty:", "empty or 0:")
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def form_value(path: str, value):
    """A form input's value as the setting at `path` takes it."""
    s = setting_named(path)
    if s.type == list[str]:
        return [line.strip() for line in str(value or "").splitlines() if line.strip()]
    if s.type is bool:
        return bool(value)
    if value in (None, ""):
        return None if s.optional else s.default
    value = int(value) if s.type is int else s.type(value)
    return None if s.optional and value == 0 else value


def form_config(studio, name: str, base: str, *values) -> tuple[str, TrainConfig]:
    """(run name, TrainConfig) of the form: the base model (a profile, a hub id or a folder inside
    the allowed roots; empty: the app's), then the FORM settings."""
    if len(values) != len(FORM):
        raise ValueError(f"the Train form has {len(FORM)} settings, {len(values)} were given")
    base_model = studio.base_model
    if (base or "").strip():
        base_model = studio.paths.folder_or_id(base, "base model", names=[*PROFILES, studio.base_model])
    overrides = {path: form_value(path, value) for path, value in zip(FORM, values)}
    return name, load_config(None, base_model=base_model, **overrides)


def preflight_md(studio, name: str, base: str, *values) -> str:
    """The Preflight button: what blocks the run and what to watch, as Markdown."""
    name, config = form_config(studio, name, base, *values)
    with studio.workspace() as ws:
        return preflight(ws, name, config, studio.runs_dir, studio.device).markdown()


def launch_run(studio, name: str, base: str, *values) -> tuple[str, str | None]:
    """The Launch button: (Markdown, the queued run's name or None when preflight blocks)."""
    if not studio.training_allowed:
        raise ValueError("training is turned off on this shared Space: duplicate it to train")
    name, config = form_config(studio, name, base, *values)
    with studio.workspace() as ws:
        job, check = launch(ws, name, config, studio.runs_dir, studio.jobs, studio.device)
    if job is None:
        return check.markdown(), None
    return (check.markdown() + f"\n\n**Launched** run `{Path(job.output).name}` as job `{job.id}`; the monitor "
            "on the right follows it.", Path(job.output).name)


def run_job(studio, run_name: str | None):
    """The latest training job of a run (ValueError when it has none)."""
    job = studio.jobs.latest("train", output=str(studio.run_dir(run_name)))
    if job is None:
        raise ValueError("no training job for this run")
    return job


LOG_LINES = 40


def log_html(text: str) -> str:
    """The log's last lines in a box that shows its bottom (newest line) without scripting."""
    return ('<div class="log-tail" style="max-height:14em;overflow:auto;display:flex;flex-direction:column-reverse;'
            'background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:4px 8px">'
            f'<pre style="margin:0;white-space:pre-wrap;font-size:0.8em">{html.escape(text or "(no log yet)")}</pre>'
            "</div>")


def state_message(job, state: str, step: int, total: int, has_checkpoint: bool) -> str:
    """One line on what the run's state means and what to do next."""
    if job is not None and state == "failed":
        text = f"{job.error or ''}\n{job.log_tail or ''}"
        advice = hint(text)
        message = f"**Training failed:** {html.escape(job.error or 'see the log')}"
        return message + (f"\n\n**Hint:** {advice}" if advice else "")
    if state == "stopped":
        if has_checkpoint:
            return f"Stopped at step {step} of {total}; a checkpoint was written. **Resume** continues from it."
        return f"Stopped at step {step} of {total}, before its first checkpoint: launch it again to start over."
    if state == "stopping":
        return "Stopping: the current step finishes and a checkpoint is written."
    if state == "done":
        return f"Done: all {total} steps; the adapter is in the run folder. Try it in the **Compare** tab."
    if state == "queued":
        return "Queued: it starts when the job before it ends."
    if state == "running":
        return f"Running: step {step} of {total}." if total else "Running: starting… (loading the model and data)"
    return ""


def monitor(studio, run_name: str | None, smoothing: float):
    """Everything the monitor shows for one run: (status html, loss plot, colour plot, sample files,
    log html, message, jobs)."""
    jobs = studio.visible_jobs(studio.jobs.tick())
    table = job_rows(jobs)
    if not run_name:
        return "<small>No run selected.</small>", loss_frame([], 0), None, [], log_html(""), "", table
    try:
        run = studio.run_dir(run_name)
    except ValueError as e:
        return f"<small>{html.escape(str(e))}</small>", loss_frame([], 0), None, [], log_html(""), "", table
    folder = RunFolder(run)
    status = folder.read_status()
    job = studio.jobs.latest("train", output=str(run))
    state = job.state if job else status.get("state", "unknown")
    step, total = int(status.get("step", 0)), int(status.get("total", 0))
    eta = fmt_seconds(status.get("eta_seconds")) if state == "running" else "–"
    loss = status.get("loss")
    if total:
        where = f"step {step} / {total} · ETA {eta}"
    else:  # no step count yet
        where = "starting…" if state in ("running", "queued") else "no step yet"
    info = (f'<div id="train-status" data-state="{state}" data-step="{step}" data-total="{total}">'
            f"{state_badge(state)} <b>{html.escape(run_name)}</b> · {where}"
            + (f" · loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
            + (f" · job {job.id}" if job else "") + "</div>" + (progress_bar(step, total, "steps") if total else ""))
    log = log_tail(job.log_path, lines=LOG_LINES) if job else log_tail(run / "log.txt", lines=LOG_LINES)
    message = state_message(job, state, step, total, any(folder.checkpoints.glob("step-*")))
    rows = folder.metrics()
    return info, loss_frame(rows, smoothing), distance_frame(rows), sample_items(run), log_html(log), message, table


def shared_run(studio, run_name: str) -> str:
    """The run a push or dry run packages, and its adapter, in words: "run **cli1** (its adapter
    `cli1/adapter`, step 40 of 40)"."""
    run = studio.run_dir(run_name)
    status = RunFolder(run).read_status()
    step = f", step {status['step']} of {status['total']}" if status.get("total") else ""
    return f"run **{html.escape(run.name)}** (its adapter `{html.escape(run.name)}/adapter`{step})"


def share_help(studio, run_name: str | None = None) -> str:
    """What the Share section says: which run it shares, and about the hub token (never the token)."""
    if not studio.sharing_allowed:
        return ""
    which = ""
    if run_name and share_visible(studio, run_name):
        which = f"Shares {shared_run(studio, run_name)}: the run chosen above.\n\n"
    if hub_token():
        return which + ("A Hugging Face token is configured (from HF_TOKEN or `hf auth login`). **Push** uploads the "
                        "run's adapter, its last fixed-seed samples and its model card; **Dry run** only writes that "
                        "folder on the server.")
    return which + (f"**No Hugging Face token is configured.** To push, {login_help()}, then reload this page. A dry "
                    "run works without one: it writes the folder that would be uploaded and sends nothing.")


def share_visible(studio, run_name: str | None) -> bool:
    """The Share section shows for a finished run (one with an exported adapter)."""
    if not (studio.sharing_allowed and run_name):
        return False
    try:
        return (studio.run_dir(run_name) / "adapter" / "dit").is_dir()
    except ValueError:
        return False


def dry_run_folder(studio, run_name: str) -> Path:
    """Where the app writes a run's dry run (replaced by the next one)."""
    return studio.home / "hub-dry-runs" / studio.run_dir(run_name).name


def check_share(studio, run_name: str | None, repo: str | None, dry_run: bool) -> Path:
    """The run folder of a push or dry run that can start; a ValueError saying what to do otherwise."""
    if not studio.sharing_allowed:
        raise ValueError("sharing on the Hugging Face Hub is turned off on this shared Space: duplicate it to share")
    if not run_name:
        raise ValueError("choose a finished run first")
    run = studio.run_dir(run_name)
    check_repo_id(repo or "")
    if not dry_run and not hub_token():
        raise ValueError(f"pushing to the Hugging Face Hub needs a token: {login_help()}, then reload this page. "
                         "A dry run works without one.")
    return run


def share_run(studio, run_name: str | None, repo: str, private: bool, dry_run: bool, progress=None) -> str:
    """The Share buttons: push the run (or, dry, write what would be pushed); Markdown of what happened."""
    run = check_share(studio, run_name, repo, dry_run)
    out = dry_run_folder(studio, run_name) if dry_run else None
    result = push_model(run, repo, private=bool(private), dry_run=bool(dry_run), out=out, overwrite=True,
                        progress=progress)
    return f"Packaged {shared_run(studio, run_name)}.\n\n" + pushed_markdown(result, "model card")


def _share_panel(studio):
    """The Share section (shown for a finished run): repository, private, dry run, push."""
    with gr.Accordion("Share on the Hugging Face Hub", open=False, visible=False, elem_id="share-hub") as box:
        help_md = gr.Markdown(elem_id="share-help")
        with gr.Row():
            repo = gr.Textbox(label="Repository (OWNER/NAME)", placeholder="your-name/medart-polyps", scale=3,
                              elem_id="share-repo")
            private = gr.Checkbox(value=True, label="Private", elem_id="share-private")
        with gr.Row():
            dry_b = gr.Button("Dry run (write the folder, send nothing)", elem_id="share-dry-run")
            push_b = gr.Button("Push", variant="primary", elem_id="share-push")
        note = gr.Markdown(elem_id="share-note")  # a refusal, beside the buttons
        result = gr.Markdown(elem_id="share-result")
    return box, help_md, repo, private, dry_b, push_b, note, result


def _form(studio):
    """The settings column: (run name, base model, {setting path: input}, preflight and launch
    buttons, the preflight result)."""
    fields = {}

    def ask(path, label, **kw):
        s, value = setting_named(path), form_default(path)
        kw.setdefault("info", field_help(path))
        if s.type is bool:
            fields[path] = gr.Checkbox(value=value, label=label, **kw)
        elif s.choices:
            fields[path] = gr.Dropdown(list(s.choices), value=value, label=label, **kw)
        elif s.type == list[str]:
            fields[path] = gr.Textbox(value=value, label=label, lines=2, **kw)
        else:
            fields[path] = gr.Number(value=value, label=label, precision=0 if s.type is int else None, **kw)

    gr.Markdown("Defaults are the paper's settings (Med-Art §3-4), with HLDF's colour steps "
                "balanced across classes and scheduled so that every run makes enough of them "
                "(mode `paper` with a fixed N reproduces the paper exactly).")
    name = gr.Textbox(value="medart-run", label="Run name", elem_id="run-name")
    base = gr.Textbox(value="", label="Base model (profile, hub id or folder on the server)", elem_id="train-base")
    with gr.Row():
        ask("hldf.mode", "HLDF mode", elem_id="hldf-mode")
        ask("hldf.every", "N: colour loss every N steps (0: automatic)", elem_id="hldf-every")
        ask("hldf.steps", "M: solver steps", elem_id="hldf-steps")
        ask("hldf.cfg", "CFG")
    with gr.Row():
        ask("lora.rank", "LoRA rank")
        ask("lora.t5", "LoRA on T5 too")
        ask("hldf.enabled", "HLDF colour loss")
    with gr.Row():
        ask("learning_rate", "Learning rate")
        ask("max_steps", "Steps (0: use epochs)", elem_id="max-steps")
        ask("epochs", "Epochs")
    with gr.Row():
        ask("resolution", "Resolution (0: the base model's)")
        ask("checkpoint_every", "Checkpoint every", elem_id="checkpoint-every")
        ask("validation_every", "Samples every (0: ~10 per run)", elem_id="validation-every")
    ask("validation_prompts", "Validation prompts (one per line; empty: one caption per class)")
    with gr.Row():
        ask("buckets", "Aspect-ratio buckets (no square crop)")
        ask("adam_8bit", "8-bit Adam (CUDA)")
    with gr.Row():
        ask("caption_dropout", "Caption dropout (0: none, the paper)", elem_id="caption-dropout")
        ask("report_to", "Experiment tracker (wandb: offline unless WANDB_MODE=online)", elem_id="report-to")
    with gr.Row():
        pre_b = gr.Button("Preflight", elem_id="preflight")
        go_b = gr.Button("Launch training", variant="primary", elem_id="launch", interactive=studio.training_allowed)
    pre_md = gr.Markdown(elem_id="preflight-result")
    assert set(fields) == set(FORM), "every FORM setting has an input, and only those"
    return name, base, [fields[path] for path in FORM], pre_b, go_b, pre_md


def _monitor_panel(studio):
    """The monitor column: run choice, smoothing, status, stop/resume, message, plots, samples, log."""
    with gr.Row():
        runs = gr.Dropdown(choices=[], label="Run", elem_id="run-select", allow_custom_value=True, scale=3)
        smooth = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing", scale=2)
    status = gr.HTML(elem_id="train-monitor")
    with gr.Row():
        stop_b = gr.Button("Stop (checkpoint and exit)", variant="stop", elem_id="stop-train")
        resume_b = gr.Button("Resume from latest checkpoint", elem_id="resume-train",
                             interactive=studio.training_allowed)
    message = gr.Markdown(elem_id="train-message")
    # one above the other, each the column's width: side by side, the legends were cut off
    plot = gr.LinePlot(None, x="step", y="loss", color="series", title="Loss", color_map=SERIES, height=240,
                       elem_id="loss-plot")
    colour_plot = gr.LinePlot(None, x="step", y="distance", color="class", title="Colour distance per class",
                              height=240, elem_id="colour-plot")
    gr.Markdown("Colour distance: per-channel mean and std of each class's fixed-seed samples against that "
                "class's training images (HLDF's colour loss on the two sets' averages); lower is closer, 0 is "
                "a match.", elem_id="colour-plot-help")
    samples = gr.Gallery(label=f"Samples: one per class (the first {SAMPLE_CLASSES} classes), fixed seeds, the "
                         "newest step first", columns=4, height=320, object_fit="contain",
                         allow_preview=True, elem_id="sample-timeline")
    gr.Markdown("**Log** (its last lines, the newest at the bottom)")
    log = gr.HTML(log_html(""), elem_id="train-log")
    return runs, smooth, stop_b, resume_b, [status, plot, colour_plot, samples, log, message]


def view(result, before=None) -> tuple:
    """`monitor`'s result as the page's values; sample files unchanged since `before` are not sent again."""
    info, frame, colours, files, log_, msg, table = result
    key = [(str(p), p.stat().st_mtime if p.exists() else 0) for p, _ in files]
    steps = len({label.split(" · ")[0] for _, label in files}) or 1
    per_row = max(1, min(4, -(-len(files) // steps)))  # a step's samples side by side, one class each
    gallery = gr.update(value=pictures.gallery(files), columns=per_row) if key != before else gr.skip()
    if colours is not None:
        colours = gr.update(value=colours, color_map=class_colours(colours["class"]))
    return info, frame, colours, gallery, log_, msg, table, key


def build(studio):
    with gr.Tab("Train", id="train") as tab:
        if not studio.training_allowed:
            gr.Markdown("### Training is turned off on this shared Space\nTraining would block the Space for "
                        "everyone. **Duplicate this Space** (⋮ menu → Duplicate this Space) to your account with a "
                        "GPU, then train there. Captioning, Compare and Evaluate work here.", elem_id="train-disabled")
        with gr.Row():
            with gr.Column(scale=2):
                name, base, settings, pre_b, go_b, pre_md = _form(studio)
            with gr.Column(scale=3):
                runs, smooth, stop_b, resume_b, shown_parts = _monitor_panel(studio)
                share_box, share_md, repo, private, dry_b, push_b, share_note, share_result = _share_panel(studio)
        jobs_table = gr.Dataframe(headers=JOB_HEADERS, value=[], label="Jobs", interactive=False, elem_id="jobs-table")

        def run_choices(selected=None):
            return gr.update(choices=[r.name for r in studio.runs()], **({"value": selected} if selected else {}))

        timer = gr.Timer(2.0, active=False)  # runs while a job is queued, running or stopping

        def polling():
            busy = any(j.state in ACTIVE or j.state == "queued" for j in studio.visible_jobs())
            return gr.Timer(active=busy)

        def on_launch(*form):
            md, run_name = launch_run(studio, *form)
            return md, run_choices(run_name) if run_name else gr.update(), polling()

        # A refusal is one line beside the button pressed (preflight's result, the monitor's message,
        # the share note): no toast, and no component that took no part shows an error.
        form = [name, base, *settings]
        beside(pre_b.click, lambda *v: preflight_md(studio, *v), form, [pre_md], pre_md, api_name="preflight")
        beside(go_b.click, on_launch, form, [pre_md, runs, timer], pre_md, api_name="launch_training")

        shown = gr.State(None)  # the sample files on the page: unchanged ones are not sent again
        outs = [*shown_parts, jobs_table, shown, timer, share_box, share_md]

        def refresh(run_name, smoothing, before=None):
            return (*view(monitor(studio, run_name, smoothing), before), polling(),
                    gr.update(visible=share_visible(studio, run_name)), share_help(studio, run_name))

        runs.change(refresh, [runs, smooth], outs)
        smooth.release(refresh, [runs, smooth, shown], outs)
        timer.tick(refresh, [runs, smooth, shown], outs, show_progress="hidden")

        def on_stop(run_name):
            studio.jobs.stop(run_job(studio, run_name).id)
            return refresh(run_name, 0.6)

        def on_resume(run_name):
            try:
                studio.jobs.resume(run_job(studio, run_name).id)
            except RunComplete as e:  # nothing to continue: say so, queue nothing
                values = list(refresh(run_name, 0.6))
                values[len(shown_parts) - 1] = str(e)
                return tuple(values)
            return refresh(run_name, 0.6)

        message = shown_parts[-1]  # the monitor's message, under Stop and Resume
        beside(stop_b.click, on_stop, [runs], outs, message, api_name="stop_training")
        beside(resume_b.click, on_resume, [runs], outs, message, api_name="resume_training")

        def share(dry_run):
            def on_share(run_name, repo_id, private_, progress_=gr.Progress()):
                return share_run(studio, run_name, repo_id, private_, dry_run, lambda m: progress_(0, desc=m))
            return on_share

        # a refusal is the note beside the buttons; the last result stays readable under it
        for button, dry_run, api in ((dry_b, True, "share_dry_run"), (push_b, False, "share_push")):
            beside(button.click, share(dry_run), [runs, repo, private], [share_result], share_note, api_name=api,
                   show_progress_on=[share_note])

        def on_tab(current=None):
            names = [r.name for r in studio.runs()]
            chosen = current if current in names else (names[0] if names else None)  # the newest run
            return (gr.update(choices=names, value=chosen), job_rows(studio.visible_jobs()), polling(),
                    share_help(studio, chosen))

        tab.select(on_tab, [runs], [runs, jobs_table, timer, share_md])
        on_page_load(lambda: (*on_tab(), studio.base_model), [runs, jobs_table, timer, share_md, base])
    return tab
