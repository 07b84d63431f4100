"""From reviewed captions to a queued training job: preflight, data snapshot, the run's config.

A training is asked for as a run name and a `TrainConfig` (the Train tab fills one from its
form). `preflight` says whether the run can start (blocking problems: no approved captions,
drafts not yet reviewed, captions over the token limit, bad settings, HLDF on but no colour
step in the run) and what to watch (VRAM, disk), and states the plan: the steps, N, M, the
colour steps and an estimated time. `launch` exports the approved captions of the training split into the run folder
(`runs/<name>/data`, with its manifest: the run knows exactly what it trained on), writes the
run's `config.yaml` and queues a training job that runs it (`python -m medart train
runs/<name>/config.yaml`).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medart import buckets, tracking
from medart.config import TrainConfig, save_config
from medart.constants import MAX_CAPTION_TOKENS
from medart.fileio import slugify
from medart.workspace import Filter, Workspace

# Rough peak GPU memory of one HLDF colour step with checkpointing, bf16, batch 1 (GB), by
# resolution for PixArt-α XL-2 (field measurements at 512 px; scaled by pixel count).
VRAM_512_GB = 1.4 + 9.5 + 2.5  # activations + T5-XXL + DiT, VAE, optimiser state


@dataclass
class Preflight:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    headline: str = ""  # what a person decides on: images and classes, time, what HLDF does (one sentence)
    details: list[str] = field(default_factory=list)  # the schedule's arithmetic, behind a fold

    @property
    def ok(self) -> bool:
        return not self.errors

    def markdown(self) -> str:
        lines = ["**Preflight passed.**"] if self.ok else []
        if self.headline:
            lines.append(self.headline)
        if self.errors:
            lines.append("**Cannot start yet:**")
            lines += [f"- **Blocked:** {e}" for e in self.errors]
        if self.warnings:
            lines.append("**Check:**")
            lines += [f"- **Warning:** {w}" for w in self.warnings]
        if self.info:
            lines += [f"- {i}" for i in self.info]
        if self.details:
            lines += ["", '<details class="preflight-details"><summary>Details: the schedule and its cost</summary>',
                      "", *[f"- {d}" for d in self.details], "", "</details>"]
        return "\n".join(lines)


def safe_name(name: str) -> str:
    name = slugify(name)
    if not name:
        raise ValueError("give the run a name (letters, digits, - and _)")
    return name


def training_ids(ws: Workspace) -> list[int]:
    """Approved captions of the training split (held-out splits stay out of training)."""
    return [i.id for i in ws.query(Filter(status="approved", split="train"), limit=None) if i.text.strip()]


def preflight(ws: Workspace, name: str, config: TrainConfig, runs_dir: Path, device: str = "cpu",
              max_tokens: int | None = None) -> Preflight:
    """Whether run `name` with `config` can start on the workspace's approved training captions
    (captions over `max_tokens`, by default the run's limit, block it)."""
    from medart.profiles import PROFILES, BaseModelError, caption_limit, is_tiny, kind_of, resolve

    p = Preflight()
    try:  # a base that is no profile, folder or hub id stops here with the job's own message
        resolve(config.base_model) if config.base_model not in PROFILES else None
    except BaseModelError as e:
        p.errors.append(str(e))
        return p
    try:
        max_tokens = max_tokens or caption_limit(kind_of(config.base_model), config.max_caption_tokens)
    except (ValueError, BaseModelError) as e:
        p.errors.append(f"Settings rejected: {e}")
        max_tokens = MAX_CAPTION_TOKENS
    items = ws.query(Filter(split="train"), limit=None)
    if not items:
        p.errors.append("The workspace has no training images: import images in the Data tab.")
        return p
    approved = [i for i in items if i.status == "approved"]
    missing = [i for i in items if i.status != "rejected" and not i.text.strip()]
    unreviewed = [i for i in items if i.status in ("draft", "edited") and i.text.strip()]
    too_long = [i for i in approved if (i.token_count or 0) > max_tokens]
    if missing:
        p.errors.append(f"{len(missing)} image(s) have no caption (e.g. #{missing[0].id}): caption them or reject them.")
    if unreviewed:
        p.errors.append(f"{len(unreviewed)} caption(s) are not approved yet (e.g. #{unreviewed[0].id}): "
                        "approve or reject them in the Captions tab.")
    if too_long:
        p.errors.append(f"{len(too_long)} approved caption(s) are longer than {max_tokens} T5 tokens "
                        f"(e.g. #{too_long[0].id}, {too_long[0].token_count} tokens): shorten them.")
    if not approved:
        p.errors.append("No approved captions: approve captions in the Captions tab.")
    try:
        name = safe_name(name)
        run = runs_dir / name
        if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
            p.errors.append(f"A run named {name!r} already exists with checkpoints: choose another name or resume it.")
    except ValueError as e:
        p.errors.append(str(e))
    if not config.max_steps and config.epochs <= 0:
        p.errors.append("Set the number of steps or epochs.")
    if config.adam_8bit and device != "cuda":
        p.errors.append("8-bit Adam needs a CUDA GPU: turn it off on this machine.")
    if config.hldf.enabled and config.hldf.color_steps < 1:
        p.errors.append("M (solver steps of the colour loss) must be at least 1.")
    try:
        tracking.check_available(config.report_to)
    except ValueError as e:
        p.errors.append(str(e))
    if config.report_to == "wandb":
        p.info.append("Weights & Biases: offline unless WANDB_MODE=online is set for the app; online, the numbers, "
                      "validation images and captions leave this machine.")
    if not ws.count(Filter(split="test")):
        p.warnings.append("No held-out images (split test): Evaluate and the reader study compare against them. "
                          "Hold some out now (Data → Organise) so that training never sees them.")
    if approved:
        labels = sorted({i.label or "(no label)" for i in approved})
        p.headline = f"**{len(approved)} approved caption(s) will be trained on** ({', '.join(labels)})."
        if config.buckets:
            try:
                p.details.append(buckets.summary(bucket_counts_of(config, approved), config.batch_size))
            except ValueError as e:
                p.errors.append(f"Settings rejected: {e}")
        try:
            plan = hldf_plan_of(config, approved, runs_dir, device)
        except ValueError as e:
            p.errors.append(f"Settings rejected: {e}")
        else:
            p.headline = headline(plan, config, len(approved), labels)
            p.details[:0] = [plan_line(plan, config), plan.summary()]
            if plan.enabled and plan.colour_steps == 0:
                p.errors.append(f"HLDF is on but this run makes no colour step (N = {plan.every} is more than its "
                                f"{plan.total_steps} steps): set N to 0 for the schedule rule, lower N, or turn the "
                                "HLDF colour loss off to train LoRA only.")
    # resources
    tiny = is_tiny(config.base_model)
    profile = PROFILES.get(config.base_model)
    res = config.resolution or (profile.resolution if profile else 512)
    if not tiny:
        need = VRAM_512_GB * max(1.0, (res / 512) ** 2 * 0.5 + 0.5)
        if device != "cuda":
            p.warnings.append(f"{config.base_model} on a CPU is impractically slow; use a GPU or the tiny base model.")
        else:
            try:
                import torch

                total = torch.cuda.get_device_properties(0).total_memory / 2**30
                if total < need:
                    p.warnings.append(f"About {need:.0f} GB of GPU memory is needed at {res} px; this GPU has "
                                      f"{total:.0f} GB. Lower the resolution, turn on 8-bit Adam or lower M.")
            except Exception:
                pass
    free = shutil.disk_usage(runs_dir if runs_dir.exists() else runs_dir.parent).free / 2**30
    ckpt_gb = 0.02 if tiny else 0.25
    if free < 3 * ckpt_gb + 1:
        p.warnings.append(f"Only {free:.1f} GB free on disk for checkpoints and samples.")
    return p


def fmt_duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def headline(plan, config: TrainConfig, images: int, labels: list[str]) -> str:
    """The run in one plain sentence: what it trains on, how long it takes, what HLDF does."""
    from medart.hldf_plan import STARTUP_SECONDS

    seconds = plan.estimated_seconds()
    when = ("its time shows after the first steps" if seconds is None
            else f"about {fmt_duration(seconds + STARTUP_SECONDS.get(config.base_model, 0))}")
    if plan.enabled and plan.colour_steps:
        hldf = (f"{plan.colour_steps} times along the way HLDF draws images from the captions and pulls their "
                "colours towards the real images' of their class")
    else:
        hldf = "HLDF makes no colour correction (LoRA only)"
    return (f"**{images} approved caption(s) will be trained on** ({len(labels)} class(es): {', '.join(labels)}) in "
            f"{plan.total_steps} steps, {when}; {hldf}.")


def plan_line(plan, config: TrainConfig, markdown: bool = True) -> str:
    """The run in one line: steps, N, M, colour steps and the estimated time."""
    from medart.hldf_plan import STARTUP_SECONDS

    hldf = (f"N = {plan.every}, M = {plan.colour_solver_steps}, {plan.colour_steps} colour step(s)" if plan.enabled
            else "HLDF off (no colour step)")
    seconds = plan.estimated_seconds()
    if seconds is None:
        when = f"no time estimate yet ({plan.step_source}; the monitor shows the ETA after the first steps)"
    else:
        start = STARTUP_SECONDS.get(config.base_model)
        extra = f" + about {fmt_duration(start)} to load and validate" if start else " + loading and validations"
        when = (f"estimated time about {fmt_duration(seconds)}{extra} (a plain step {plan.step_seconds:.2f} s, "
                f"{plan.step_source}")
        when += f"; a colour step about {plan.cost_ratio:.1f} plain steps)" if plan.enabled else ")"
    steps = f"**{plan.total_steps} steps**" if markdown else f"{plan.total_steps} steps"
    return f"{steps}, {hldf}; {when}."


def bucket_counts_of(config: TrainConfig, approved: list) -> dict:
    """Images per aspect-ratio bucket of the approved images (their stored width and height)."""
    from medart.profiles import resolve

    resolution = config.resolution or resolve(config.base_model)[1]
    return buckets.counts([(i.width, i.height) for i in approved], resolution,
                          buckets.model_multiple(config.base_model))


def hldf_plan_of(config: TrainConfig, approved: list, runs_dir: Path | None = None, device: str = "cpu"):
    """The colour-step plan of `config` on the approved images, priced by the step times of
    earlier runs in `runs_dir` where one matches."""
    from medart import hldf_plan

    groups = {(i.label or "").strip() or i.text.strip() for i in approved}
    if config.buckets:  # batches come from one bucket each; a bucket's remainder sits an epoch out
        per_epoch = sum(n // config.batch_size for n in bucket_counts_of(config, approved).values())
    else:
        per_epoch = len(approved) // config.batch_size
    total = config.max_steps or config.epochs * max(1, per_epoch)
    runs = [d for d in runs_dir.iterdir() if d.is_dir()] if runs_dir and runs_dir.is_dir() else []
    return hldf_plan.plan(config, total, len(groups), runs, device)


def launch(ws: Workspace, name: str, config: TrainConfig, runs_dir: Path, jobs, device: str = "cpu"):
    """Preflight, snapshot the approved captions into the run folder, write the run's config.yaml
    (the data snapshot and the run folder filled in) and queue it as a training job.
    Returns (job, preflight); job is None when preflight blocks."""
    from medart.workspace.exports import export

    check = preflight(ws, name, config, runs_dir, device)
    if not check.ok:
        return None, check
    run = runs_dir / safe_name(name)
    run.mkdir(parents=True, exist_ok=True)
    export(ws, run / "data", fmt="imagefolder", approved_only=True, flt=Filter(ids=training_ids(ws)), overwrite=True)
    config = dataclasses.replace(config, data=str(run / "data"), output=str(run))
    save_config(config, run / "config.yaml")
    job = jobs.submit("train", run / "config.yaml", title=run.name, output=str(run))
    return job, check
