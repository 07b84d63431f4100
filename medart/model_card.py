"""The model card of a run: one definition for the run's own `adapter/README.md` and the card
a push to the Hugging Face Hub uploads (`medart.sharing.model`).

Everything comes from the run folder (`medart.run_folder`): config.yaml (base model, LoRA,
HLDF and training settings), data.json (image count and images per class; never the data's
source path or file names, which can carry patient names), metrics.jsonl (losses, colour
distances at step 0 and at the end, step times), the last validation's fixed-seed samples
(the card's `widget`) and, when the run was evaluated, eval/metrics.json. The metadata is
`huggingface_hub.ModelCardData`: base_model is a hub id or left out (the `tiny` twin and a
local folder are not on the hub, and the card says so), license openrail++ (PixArt-α's).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from medart.config import load_config
from medart.hldf_plan import Plan
from medart.run_folder import RunFolder, usage_snippet

LICENSE = "openrail++"  # PixArt-α's licence; an adapter of it is a derivative
TAGS = ["text-to-image", "diffusers", "lora", "pixart", "medical-imaging", "medart"]
RESEARCH_ONLY = ("**Research use only; not for diagnosis.** Not a medical device, and not for treatment or any "
                 "clinical decision. Generated images are synthetic and may look plausible while being wrong.")


def base_hub_id(base_model: str) -> str | None:
    """The hub id of a base model name (profile, hub id or folder); None where it has none."""
    from medart.profiles import PROFILES, looks_like_hub_id

    if base_model in PROFILES:
        return PROFILES[base_model].source or None
    if Path(base_model).expanduser().exists():
        return None
    return base_model if looks_like_hub_id(base_model) else None


def _base_text(base_model: str, hub_id: str | None) -> str:
    from medart.profiles import PROFILES, is_tiny

    if hub_id:
        return f"[`{hub_id}`](https://huggingface.co/{hub_id})"
    if is_tiny(base_model):
        return (f"Med-Art Studio's `{base_model}` model: {PROFILES[base_model].description}. It is not on the hub, "
                "so this adapter only works with that model; it shows the method, not medical image quality")
    return "a local diffusers folder that does not name its hub id; load the same weights to use this adapter"


def _fmt(value, pattern: str = "{:.4f}") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return pattern.format(value)
    return "—"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def step_times(rows: list[dict]) -> dict:
    """Measured time of a run's steps: all of them, and the colour part of its colour steps."""
    colour = [r for r in rows if "color_seconds" in r]
    return {"colour_steps": len(colour), "colour_seconds": round(sum(r["color_seconds"] for r in colour), 3),
            "seconds": round(sum(r.get("seconds", 0) for r in rows), 3)}


def last_samples(run: str | Path) -> tuple[int | None, list[tuple[Path, str]]]:
    """(step, [(png, prompt)]) of the run's last validation (image i of prompt i, made with the
    seed at i of prompts.json's `seeds`); (None, []) when it has none."""
    folder = RunFolder(run)
    steps = folder.sample_steps()
    if not steps:
        return None, []
    step_dir = folder.samples / f"step-{steps[-1]:06d}"
    prompts = _read_json(step_dir / "prompts.json").get("prompts") or []
    found = []
    for i, prompt in enumerate(prompts):
        png = step_dir / f"{i:02d}.png"
        if png.is_file():
            found.append((png, str(prompt)))
    return steps[-1], found


def widget(run: str | Path) -> list[dict]:
    """The card's `widget`: each fixed-seed sample of the last validation, its prompt as the text
    and its path inside the run folder (the same path in a pushed repository) as the output."""
    run = Path(run)
    return [{"text": prompt, "output": {"url": png.relative_to(run).as_posix()}}
            for png, prompt in last_samples(run)[1]]


def model_card(run: str | Path, repo_id: str | None = None) -> ModelCard:
    """The model card of the run folder `run`; `repo_id` (owner/name) names where it is pushed,
    for the loading example (None: the run folder on disk)."""
    from medart.profiles import KINDS, kind_or_alpha

    run = Path(run)
    folder = RunFolder(run)
    config = load_config(run / "config.yaml")
    data = _read_json(run / "data.json")
    rows = folder.metrics()
    hub_id = base_hub_id(config.base_model)
    kind = kind_or_alpha(config.base_model)
    card_data = ModelCardData(
        base_model=hub_id, library_name="peft", license=LICENSE, tags=[*TAGS, f"pixart-{kind}"],
        pipeline_tag="text-to-image",
        widget=widget(run),
    )
    body = "\n".join([
        f"# Med-Art LoRA adapter: {run.name}", "",
        RESEARCH_ONLY, "",
        f"LoRA adapters for the DiT{' and the T5 text encoder' if config.lora.t5 else ''} of a {KINDS[kind].name} "
        "pipeline, trained with HLDF (Med-Art, arXiv 2506.20449): the diffusion loss plus a pixel-space colour "
        "loss on images generated in the training graph.", "",
        f"- **Base model**: {_base_text(config.base_model, hub_id)}.",
        f"- **Weights**: {_weights(config)}.", "",
        *_data_section(data),
        *_method_section(config, data, rows),
        *_distance_section(rows),
        *_evaluation_section(_read_json(run / "eval" / "metrics.json")),
        *_samples_section(run),
        *_use_section(config, repo_id),
    ])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _weights(config) -> str:
    if config.ema_decay > 0:
        return (f"an EMA (exponential moving average) of the LoRA weights, decay {config.ema_decay:g}: the weights "
                "the validation samples were made with")
    return "the LoRA weights of the last training step"


def _data_section(data: dict) -> list[str]:
    classes = data.get("classes") or {}
    lines = ["## Training data", "",
             f"{data.get('images', '?')} captioned images in {len(classes)} class(es). The images and captions are "
             "not part of this repository; file names and where the data came from are left out of this card "
             "(they can carry patient names).", ""]
    if classes:
        lines += ["| class | images |", "|---|---:|"]
        lines += [f"| {table_cell(name) or '(none)'} | {n} |" for name, n in classes.items()]
        lines.append("")
    return lines


def table_cell(text) -> str:
    """`text` as one cell of a markdown table: on one line, its pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _method_section(config, data: dict, rows: list[dict]) -> list[str]:
    hl = config.hldf
    steps = max((r.get("step", 0) for r in rows), default=0)
    lines = ["## Training", ""]
    if hl.enabled:
        lines += [
            f"- HLDF mode `{hl.mode}`: a colour step every N = {hl.every if hl.every else '(schedule rule)'} "
            f"optimiser steps; each generates images in the graph with M = {hl.color_steps} DPM-Solver++ steps at "
            f"CFG {hl.cfg:g}, gradients through the last K = {hl.color_grad_steps}; colour loss weight "
            f"{hl.color_weight:g}, compared with the {'class' if hl.color_target == 'group' else 'image'}'s colour "
            f"statistics; classes covered by `{hl.color_coverage}`.",
        ]
    else:
        lines.append("- Diffusion loss only (the HLDF colour loss was off).")
    plan = data.get("hldf_plan")
    if plan:
        try:
            lines.append(f"- Colour-step plan: {Plan(**plan).summary()}")
        except TypeError:
            pass
    times = step_times(rows)
    if times["colour_steps"]:
        lines.append(f"- Measured: the colour part of the {times['colour_steps']} colour steps took "
                     f"{times['colour_seconds']:.1f} s of the {times['seconds']:.1f} s the training steps took.")
    lines += [
        f"- LoRA rank {config.lora.rank} on the DiT{' and T5' if config.lora.t5 else ''}; {steps} steps, batch "
        f"{config.batch_size}, learning rate {config.learning_rate:g}, resolution "
        f"{config.resolution or 'the base model’s'}, seed {config.seed}.",
    ]
    if config.caption_dropout > 0:
        lines.append(f"- Caption dropout {config.caption_dropout:g}: that share of the diffusion steps' examples "
                     "trained on the empty caption.")
    if config.buckets:
        sizes = ", ".join(f"{size} px ({n} image{'s' if n != 1 else ''})" for size, n in (data.get("buckets") or {}).items())
        lines.append("- Aspect-ratio buckets (images resized to cover their bucket, no square crop)"
                     + (f": {sizes}." if sizes else "."))
    losses = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]
    if losses:
        lines.append(f"- Last diffusion loss: {_fmt(losses[-1])}.")
    return lines + [""]


def _distance_section(rows: list[dict]) -> list[str]:
    measured = [r for r in rows if r.get("color_distance")]
    if not measured:
        return []
    first, last = measured[0], measured[-1]
    lines = ["## Colour distance per class", "",
             "Set-level colour distance (per-channel mean and std, images in [-1, 1]) between the fixed-seed "
             "validation samples of each class's caption and that class's training images; lower is closer.", "",
             f"| class | step {first.get('step', 0)} | step {last.get('step', '?')} |", "|---|---:|---:|"]
    for group, value in last["color_distance"].items():
        lines.append(f"| {table_cell(group)} | {_fmt(first['color_distance'].get(group))} | {_fmt(value)} |")
    return lines + [""]


EVAL_COLUMNS = (("fid", "FID", "{:.2f}"), ("kid_mean", "KID", "{:.4f}"), ("dfd", "domain FD", "{:.3f}"),
                ("color_distance", "colour distance", "{:.4f}"))


def _evaluation_section(results: dict) -> list[str]:
    """The numbers of the run's evaluation (eval/metrics.json, `medart.evaluation`), if any."""
    dist, classes = results.get("distribution") or {}, results.get("classification") or {}
    if not dist and not classes:
        return []
    settings = results.get("settings") or {}
    lines = ["## Evaluation", "",
             f"From the run's evaluation ({results.get('created', 'undated')}): {settings.get('n_real', '?')} held-out "
             f"real images, {settings.get('n_generated_per_model', '?')} generated per model "
             f"({settings.get('steps', '?')} solver steps, CFG {settings.get('cfg', '?')}). Lower is better.", ""]
    if dist:
        lines += ["| images | " + " | ".join(title for _, title, _ in EVAL_COLUMNS) + " |",
                  "|---|" + "---:|" * len(EVAL_COLUMNS)]
        for name, row in dist.items():
            lines.append(f"| {table_cell(name)} | " + " | ".join(_fmt(row.get(k), p) for k, _, p in EVAL_COLUMNS) + " |")
        lines.append("")
    if classes:
        lines += ["A compact classifier trained on each image set, tested on the held-out real images:", "",
                  "| trained on | accuracy | macro-F1 |", "|---|---:|---:|"]
        for name, res in classes.items():
            scores = " | ".join(_fmt(res.get(key), "{:.3f}") for key in ("accuracy", "macro_f1"))
            lines.append(f"| {table_cell(name)} | {scores} |")
        lines.append("")
    if settings.get("sample_size_warning"):
        lines += [f"Note: {settings['sample_size_warning']}", ""]
    return lines


def _samples_section(run: Path) -> list[str]:
    step, samples = last_samples(run)
    if not samples:
        return []
    seeds = _read_json(samples[0][0].parent / "prompts.json").get("seeds") or []
    lines = [f"## Samples (step {step}, fixed seeds)", "",
             "The images of the last validation (the widget shows them), each from its prompt and seed:", ""]
    for i, (png, prompt) in enumerate(samples):
        seed = f" (seed {seeds[i]})" if i < len(seeds) else ""
        lines.append(f"- `{png.relative_to(run).as_posix()}`{seed}: {table_cell(prompt)}")
    return lines + [""]


def _use_section(config, repo_id: str | None) -> list[str]:
    where = "" if repo_id else "Run this in the run folder (the folder that holds `adapter/`):\n\n"
    # a published card names no folder of this machine: the base's hub id, else where it lives in Med-Art Studio
    base = None if not repo_id else "assets/tiny-base" if config.base_model == "tiny" else "PATH/TO/THE/SAME/BASE"
    return ["## Use without Med-Art Studio", "", where + usage_snippet(config, repo_id, base), "",
            "Captions were used as written (no caption cleaning), so pass `clean_caption=False`.", ""]
