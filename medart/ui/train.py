"""Train tab: the paper's settings, preflight, launch into the job queue, live monitoring.

The training itself is a background job (`medart.jobs`); this tab only reads the run folder
(status.json, metrics.jsonl, samples/, the job's log) on a `gr.Timer`, so closing the page
or restarting the app never touches a running training.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import pandas as pd

from medart.jobs import hint
from medart.profiles import PROFILES
from medart.run_folder import RunFolder
from medart.jobs.training import TrainSettings, launch, preflight
from medart.ui import pictures
from medart.ui.widgets import (JOB_HEADERS, fmt_seconds, job_rows, on_page_load, progress_bar, state_badge,
                               user_errors)

SERIES = {"diffusion loss": "#2563eb", "diffusion (smoothed)": "#1e3a8a", "colour loss": "#dc2626"}


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


def sample_items(run: Path, per_step: int = 2, max_steps: int = 12) -> list[tuple[Path, str]]:
    """(file, caption) of the sample timeline: two images per step, step 0 and the latest steps."""
    folder = RunFolder(run)
    steps = folder.sample_steps()
    if len(steps) > max_steps:  # keep step 0 and the latest ones
        steps = steps[:1] + steps[-(max_steps - 1):]
    items = []
    for step in steps:
        for k, png in enumerate(sorted((folder.samples / f"step-{step:06d}").glob("*.png"))[:per_step]):
            items.append((png, f"step {step} · #{k}"))
    return items


def monitor(studio, run_name: str | None, smoothing: float):
    """Everything the monitor shows for one run: (status html, loss plot, colour plot, sample files,
    log, message, jobs)."""
    jobs = studio.visible_jobs(studio.jobs.tick())
    table = job_rows(jobs)
    if not run_name:
        return "<small>No run selected.</small>", loss_frame([], 0), None, [], "", "", table
    try:
        run = studio.run_dir(run_name)
    except ValueError as e:
        return f"<small>{html.escape(str(e))}</small>", loss_frame([], 0), None, [], "", "", table
    folder = RunFolder(run)
    status = folder.read_status()
    job = studio.jobs.latest("train", output=str(run))
    state = job.state if job else status.get("state", "unknown")
    step, total = int(status.get("step", 0)), int(status.get("total", 0))
    eta = fmt_seconds(status.get("eta_seconds")) if state == "running" else "–"
    loss = status.get("loss")
    info = (f'<div id="train-status" data-state="{state}" data-step="{step}" data-total="{total}">'
            f"{state_badge(state)} <b>{html.escape(run_name)}</b> · step {step} / {total} · ETA {eta}"
            + (f" · loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
            + (f" · job {job.id}" if job else "") + "</div>" + progress_bar(step, total, "steps"))
    log = ""
    message = ""
    if job:
        from medart.jobs import log_tail

        log = log_tail(job.log_path, lines=25)
        if job.state == "failed":
            text = f"{job.error or ''}\n{job.log_tail or log}"
            advice = hint(text)
            message = f"**Training failed:** {html.escape(job.error or 'see the log')}"
            if advice:
                message += f"\n\n**Hint:** {advice}"
        elif job.state == "cancelled" and any(folder.checkpoints.glob("step-*")):
            message = f"Stopped at step {step}; a checkpoint was written. **Resume** continues from it."
        elif job.state == "done":
            message = "Done: the adapter is in the run folder. Try it in the **Compare** tab."
        elif job.state == "queued":
            message = "Queued: it starts when the job before it ends."
    rows = folder.metrics()
    return info, loss_frame(rows, smoothing), distance_frame(rows), sample_items(run), log, message, table


def build(studio):
    d = TrainSettings.paper(studio.base_model)
    with gr.Tab("Train", id="train") as tab:
        if not studio.training_allowed:
            gr.Markdown("### Training is turned off on this shared Space\nTraining would block the Space for "
                        "everyone. **Duplicate this Space** (⋮ menu → Duplicate this Space) to your account with a "
                        "GPU, then train there. Captioning, Compare and Evaluate work here.", elem_id="train-disabled")
        with gr.Row():
            with gr.Column(scale=2):
                gr.Markdown("Defaults are the paper's settings (Med-Art §3-4), with HLDF's colour steps "
                            "balanced across classes and scheduled so that every run makes enough of them "
                            "(mode `paper` with a fixed N reproduces the paper exactly).")
                name = gr.Textbox(value="medart-run", label="Run name", elem_id="run-name")
                base = gr.Textbox(value="", label="Base model (profile, hub id or folder on the server)",
                                  elem_id="train-base")
                with gr.Row():
                    mode = gr.Dropdown(["balanced", "paper"], value=d.hldf_mode, label="HLDF mode",
                                       elem_id="hldf-mode")
                    every = gr.Number(value=d.hldf_every, label="N: colour loss every N steps (0: automatic)",
                                      precision=0, elem_id="hldf-every")
                    msteps = gr.Number(value=d.hldf_steps, label="M: solver steps", precision=0, elem_id="hldf-steps")
                    cfg = gr.Number(value=d.cfg, label="CFG")
                with gr.Row():
                    rank = gr.Number(value=d.rank, label="LoRA rank", precision=0)
                    t5 = gr.Checkbox(value=d.t5_lora, label="LoRA on T5 too")
                    hldf_on = gr.Checkbox(value=d.hldf, label="HLDF colour loss")
                with gr.Row():
                    lr = gr.Number(value=d.learning_rate, label="Learning rate")
                    steps = gr.Number(value=0, label="Steps (0: use epochs)", precision=0, elem_id="max-steps")
                    epochs = gr.Number(value=d.epochs, label="Epochs", precision=0)
                with gr.Row():
                    res = gr.Number(value=0, label="Resolution (0: the base model's)", precision=0)
                    ckpt = gr.Number(value=d.checkpoint_every, label="Checkpoint every", precision=0,
                                     elem_id="checkpoint-every")
                    val = gr.Number(value=d.validation_every, label="Samples every (0: ~10 per run)", precision=0,
                                    elem_id="validation-every")
                prompts = gr.Textbox(label="Validation prompts (one per line; empty: one caption per class)", lines=2)
                adam8 = gr.Checkbox(value=d.adam_8bit, label="8-bit Adam (CUDA)")
                with gr.Row():
                    pre_b = gr.Button("Preflight", elem_id="preflight")
                    go_b = gr.Button("Launch training", variant="primary", elem_id="launch",
                                     interactive=studio.training_allowed)
                pre_md = gr.Markdown(elem_id="preflight-result")
            with gr.Column(scale=3):
                with gr.Row():
                    runs = gr.Dropdown(choices=[], label="Run", elem_id="run-select",
                                       allow_custom_value=True, scale=3)
                    smooth = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing", scale=2)
                status = gr.HTML(elem_id="train-monitor")
                with gr.Row():
                    stop_b = gr.Button("Stop (checkpoint and exit)", variant="stop", elem_id="stop-train")
                    resume_b = gr.Button("Resume from latest checkpoint", elem_id="resume-train",
                                         interactive=studio.training_allowed)
                message = gr.Markdown(elem_id="train-message")
                with gr.Row():
                    plot = gr.LinePlot(None, x="step", y="loss", color="series", title="Loss",
                                       color_map=SERIES, height=260, elem_id="loss-plot")
                    colour_plot = gr.LinePlot(None, x="step", y="distance", color="class",
                                              title="Colour distance to each class's training images (lower is closer)",
                                              height=260, elem_id="colour-plot")
                samples = gr.Gallery(label="Samples (fixed seeds, from step 0)", columns=6, height=220, object_fit="contain",
                                     allow_preview=True, elem_id="sample-timeline")
                log = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, elem_id="train-log",
                                 autoscroll=True)
        jobs_table = gr.Dataframe(headers=JOB_HEADERS, value=[], label="Jobs",
                                  interactive=False, elem_id="jobs-table")

        form = [name, base, mode, every, msteps, cfg, rank, t5, hldf_on, lr, steps, epochs, res, ckpt, val, prompts,
                adam8]

        def settings(*v) -> TrainSettings:
            (name_, base_, mode_, every_, m_, cfg_, rank_, t5_, hl_, lr_, steps_, ep_, res_, ck_, val_, pr_, a8_) = v
            base_model = studio.base_model
            if (base_ or "").strip():  # a profile, a hub id or a folder inside the allowed roots
                base_model = studio.paths.folder_or_id(base_, "base model", names=[*PROFILES, studio.base_model])
            return TrainSettings(name=name_, base_model=base_model, hldf_mode=mode_,
                                 hldf_every=max(0, int(every_ or 0)), hldf_steps=int(m_ or 0), cfg=float(cfg_),
                                 rank=int(rank_), t5_lora=bool(t5_), hldf=bool(hl_), learning_rate=float(lr_),
                                 max_steps=int(steps_ or 0), epochs=int(ep_ or 0), resolution=int(res_ or 0),
                                 checkpoint_every=int(ck_ or 1), validation_every=max(0, int(val_ or 0)),
                                 validation_prompts=[p for p in (pr_ or "").splitlines() if p.strip()],
                                 adam_8bit=bool(a8_))

        @user_errors
        def do_preflight(*v):
            ws = studio.workspace()
            try:
                return preflight(ws, settings(*v), studio.runs_dir, studio.device).markdown()
            finally:
                ws.close()

        @user_errors
        def do_launch(*v):
            if not studio.training_allowed:
                raise ValueError("training is turned off on this shared Space: duplicate it to train")
            ws = studio.workspace()
            try:
                job, check = launch(ws, settings(*v), studio.runs_dir, studio.jobs, studio.device)
            finally:
                ws.close()
            if job is None:
                return check.markdown(), gr.update()
            names = [r.name for r in studio.runs()]
            md = check.markdown() + f"\n\n**Queued** as job `{job.id}` ({job.state})."
            return md, gr.update(choices=names, value=Path(job.output).name)

        pre_b.click(do_preflight, form, [pre_md], api_name="preflight")
        go_b.click(do_launch, form, [pre_md, runs], api_name="launch_training")

        shown = gr.State(None)  # the sample files on the page: unchanged ones are not sent again
        outs = [status, plot, colour_plot, samples, log, message, jobs_table, shown]

        def view(result, before=None):
            info, frame, colours, files, log_, msg, table = result
            key = [(str(p), p.stat().st_mtime if p.exists() else 0) for p, _ in files]
            gallery = pictures.gallery(files) if key != before else gr.skip()
            return info, frame, colours, gallery, log_, msg, table, key

        def refresh(run_name, smoothing, before=None):
            return view(monitor(studio, run_name, smoothing), before)

        runs.change(refresh, [runs, smooth], outs)
        smooth.release(refresh, [runs, smooth, shown], outs)
        gr.Timer(2.0).tick(refresh, [runs, smooth, shown], outs)

        def run_job(run_name):
            job = studio.jobs.latest("train", output=str(studio.run_dir(run_name)))
            if job is None:
                raise ValueError("no training job for this run")
            return job

        @user_errors
        def do_stop(run_name):
            studio.jobs.stop(run_job(run_name).id)
            return view(monitor(studio, run_name, 0.6))

        @user_errors
        def do_resume(run_name):
            studio.jobs.resume(run_job(run_name).id)
            return view(monitor(studio, run_name, 0.6))

        stop_b.click(do_stop, [runs], outs, api_name="stop_training")
        resume_b.click(do_resume, [runs], outs, api_name="resume_training")

        def on_tab():
            names = [r.name for r in studio.runs()]
            return gr.update(choices=names), job_rows(studio.visible_jobs())

        tab.select(on_tab, outputs=[runs, jobs_table])
        on_page_load(lambda: (*on_tab(), studio.base_model), [runs, jobs_table, base])
    return tab
