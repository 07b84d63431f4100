"""When HLDF's colour steps come in a run, and what they cost: the schedule rule.

The paper adds the colour loss every N = 500 steps. That suits Kvasir (8,000 images x 15
epochs = 120,000 steps, 240 colour steps) but not a clinician's few dozen images: 20 images
x 15 epochs = 300 steps would make none. The rule, used whenever `hldf.every` is left empty:

    N = clamp(total_steps // COLOUR_STEPS, MIN_EVERY, PAPER_EVERY)

"a hundred colour steps, never more often than every MIN_EVERY steps, never less often than
the paper": a run long enough for the paper's schedule (50,000 steps or more) gets N = 500
exactly; a shorter one about a hundred colour steps, down to one every MIN_EVERY steps, the
most often that keeps a whole run under twice a LoRA-only run on the tiny model (a balanced
colour step costs about four plain steps there). The numbers come from the ablation in
benchmarks/hldf_ablation.py. An explicit `hldf.every` always wins.

What a run takes is estimated the same way: the median plain step of the newest earlier run
with the same base model, resolution, batch and checkpointing (`seconds` in metrics.jsonl),
else a reference measurement (the tiny model on a CPU, `benchmarks/RESULTS.md`), times the
plain steps plus the colour steps at their cost. Where neither exists (a large model on a
device no run has used yet) preflight says so and the monitor's ETA follows the first steps.

What a colour step costs is measured where it can be: the newest earlier run with the same
base model, resolution and colour-step settings gives the ratio of its colour steps' time to
its plain steps' (`seconds` in metrics.jsonl). Without one, it is estimated by counting
transformer calls, the unit both steps are made of: a colour step adds M guided forwards
and, through the K solver steps with gradients, their backward (2 each) and under gradient
checkpointing their recomputation (1 each), plus T5 and the VAE decode. On a GPU the calls
are weighted by their batch (a large model is compute-bound; this gave about 12x a plain
step for PixArt-XL-2 by FLOP counts); on a CPU with the tiny model each call costs about the
same whatever its batch (per-call overhead dominates; measured: a default colour step took
about 6-7 plain steps, the estimate gives 6.25).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from medart.fileio import read_jsonl

PAPER_EVERY = 500
COLOUR_STEPS = 100
MIN_EVERY = 5
# seconds of one plain step where no earlier run measured one: (base model, device) ->
# (seconds, where the number comes from). The tiny model's: the median plain step of a
# 150-step run of the browser test on the 2-core CPU machine (0.020 s; its colour steps with
# M = 4 took 0.098 s, 4.9 plain steps, where the call count estimates 4.8).
REFERENCE_STEP_SECONDS = {("tiny", "cpu"): (0.02, "the tiny model's reference step on a 2-core CPU")}
STARTUP_SECONDS = {"tiny": 10}  # starting the job, loading the model, data and caches, validations


@dataclass
class Plan:
    enabled: bool
    every: int  # N
    rule: str  # how N was chosen
    total_steps: int
    colour_steps: int
    images_per_colour_step: int
    cost_ratio: float  # cost of a colour step in plain steps
    added_fraction: float  # extra training time of all colour steps, as a fraction
    cost_source: str = "estimated from transformer calls"
    colour_solver_steps: int = 0  # M
    colour_grad_steps: int = 0  # K: the last K of the M solver steps carry gradients
    step_seconds: float | None = None  # a plain step, measured or a reference
    step_source: str = ""
    def is_colour_step(self, step: int) -> bool:
        """Whether 0-based optimiser step `step` adds the colour loss."""
        return self.enabled and (step + 1) % self.every == 0

    def colour_steps_before(self, step: int) -> int:
        """How many colour steps came before 0-based step `step`."""
        return (step + 1) // self.every - (1 if self.is_colour_step(step) else 0) if self.enabled else 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for preflight, the log and the model card."""
        if not self.enabled:
            return f"HLDF colour loss off: {self.total_steps} plain LoRA steps."
        if self.colour_steps == 0:
            return (f"No colour step: N = {self.every} ({self.rule}) is more than the run's {self.total_steps} "
                    "steps, so this trains LoRA only. Leave N empty for the schedule rule or lower it.")
        return (f"HLDF: a colour step every N = {self.every} steps ({self.rule}): {self.colour_steps} colour "
                f"step(s) in {self.total_steps}, each generating {self.images_per_colour_step} image(s) with "
                f"M = {self.colour_solver_steps} solver steps (gradients through the last "
                f"{self.colour_grad_steps}); they add about {100 * self.added_fraction:.0f} % to the training time "
                f"(a colour step costs about {self.cost_ratio:.1f} plain steps, {self.cost_source}).")

    def estimated_seconds(self) -> float | None:
        """The steps' wall time: plain steps plus colour steps at their cost (None: no step time known)."""
        if self.step_seconds is None:
            return None
        plain = self.total_steps - self.colour_steps
        return self.step_seconds * (plain + self.colour_steps * self.cost_ratio)


def choose_every(total_steps: int) -> tuple[int, str]:
    """N by the schedule rule, and the rule's description."""
    every = min(PAPER_EVERY, max(MIN_EVERY, total_steps // COLOUR_STEPS))
    if every == PAPER_EVERY:
        return every, "the paper's N, the run is long enough"
    return every, f"schedule rule: about {COLOUR_STEPS} colour steps, N = steps // {COLOUR_STEPS}, at least {MIN_EVERY}"


def images_per_colour_step(config, groups: int) -> int:
    hl = config.hldf
    per_class = hl.color_per_class if hl.color_target == "group" else 1
    if hl.color_coverage == "groups":
        return max(1, min(groups, hl.max_groups)) * per_class
    if hl.color_coverage == "rotate":
        return per_class
    return config.batch_size


def cost_ratio(config, images: int, device: str = "cuda") -> float:
    """Estimated cost of a colour step in plain steps, counted in transformer calls (see the
    module docstring). On a GPU a call costs in proportion to its batch (compute-bound); on a
    CPU with the tiny model, in proportion to the number of calls (overhead-bound)."""
    hl = config.hldf
    m, k, b = hl.color_steps, hl.color_grad_steps, config.batch_size
    ckpt = 1 if config.gradient_checkpointing else 0
    guided = 2 if hl.cfg > 1 else 1  # a guided call runs the prompt and the empty prompt together
    if device == "cuda":
        # plain: DiT forward + backward, and T5 (as large as the DiT in PixArt-α) with its LoRA
        plain = 3 * b + 3 * b
        colour = images * (guided * (m + k * (2 + ckpt)) + 3 + 3)  # + T5 and the VAE decode, both with backward
    else:
        plain = 4  # T5 forward, DiT forward, one backward through both
        colour = m + k * (2 + ckpt) + 5  # + T5 for the prompts and the empty prompt, the VAE decode and its backward
    return (plain + colour) / plain


def _cost_key(config, images: int) -> tuple:
    hl = config.hldf
    return (config.base_model, config.resolution, config.batch_size, config.gradient_checkpointing, hl.color_steps,
            hl.cfg > 1, hl.color_grad_steps, images)


def measured_cost(config, images: int, runs: list[Path]) -> tuple[float, str] | None:
    """(colour step in plain steps, run name) from the newest of `runs` trained with the same
    cost-relevant settings that has timed at least 5 plain and 2 colour steps."""
    from medart.config import load_config

    want = _cost_key(config, images)
    for run in sorted((r for r in runs if (r / "metrics.jsonl").is_file()), key=lambda r: r.stat().st_mtime,
                      reverse=True):
        try:
            other = load_config(run / "config.yaml")
            rows = read_jsonl(run / "metrics.jsonl")
        except (OSError, ValueError, TypeError):
            continue
        colour = [r for r in rows if "color_seconds" in r and "seconds" in r]
        if not colour:
            continue
        have = _cost_key(other, images_per_colour_step(other, len(colour[-1].get("color_groups") or [1])))
        if config.resolution is None:  # not resolved yet (the base model's own): any
            have = (have[0], None, *have[2:])
        if have != want:
            continue
        plain = [r["seconds"] for r in rows if "loss" in r and "color_seconds" not in r and "seconds" in r]
        if len(plain) >= 5 and len(colour) >= 2:
            return statistics.median(r["seconds"] for r in colour) / statistics.median(plain), run.name
    return None


def _step_key(config) -> tuple:
    return (config.base_model, config.resolution, config.batch_size, config.gradient_checkpointing, config.lora.t5)


def measured_step(config, runs: list[Path]) -> tuple[float, str] | None:
    """(median plain step in seconds, run name) of the newest of `runs` with the same base model,
    resolution, batch, checkpointing and T5 LoRA that timed at least 5 plain steps."""
    from medart.config import load_config

    want = _step_key(config)
    for run in sorted((r for r in runs if (r / "metrics.jsonl").is_file()), key=lambda r: r.stat().st_mtime,
                      reverse=True):
        try:
            have = _step_key(load_config(run / "config.yaml"))
            rows = read_jsonl(run / "metrics.jsonl")
        except (OSError, ValueError, TypeError):
            continue
        if config.resolution is None:
            have = (have[0], None, *have[2:])
        plain = [r["seconds"] for r in rows if "loss" in r and "color_seconds" not in r and "seconds" in r]
        if have == want and len(plain) >= 5:
            return statistics.median(plain), run.name
    return None


def step_time(config, runs: list[Path], device: str) -> tuple[float | None, str]:
    """(seconds of a plain step or None, where the number comes from)."""
    measured = measured_step(config, list(runs))
    if measured:
        return measured[0], f"measured in run {measured[1]}"
    if (config.base_model, device) in REFERENCE_STEP_SECONDS:
        return REFERENCE_STEP_SECONDS[(config.base_model, device)]
    return None, f"no run of {config.base_model} on this machine's {device.upper()} has been timed yet"


def plan(config, total_steps: int, groups: int = 1, runs: list[Path] = (), device: str = "cuda") -> Plan:
    """The colour-step plan of a run of `total_steps` steps over `groups` classes on `device`
    ("cuda" or "cpu"); `runs`: earlier run folders whose measured step times price the colour
    steps."""
    hl = config.hldf
    if hl.every is not None:
        every, rule = int(hl.every), "set explicitly"
    else:
        every, rule = choose_every(total_steps)
    images = images_per_colour_step(config, groups)
    count = total_steps // every if hl.enabled else 0
    measured = measured_cost(config, images, list(runs)) if hl.enabled and runs else None
    if measured:
        ratio, source = measured[0], f"as measured in run {measured[1]}"
    else:
        ratio, source = cost_ratio(config, images, device), "estimated from transformer calls"
    added = count * (ratio - 1) / max(1, total_steps)
    seconds, step_source = step_time(config, list(runs), device)
    return Plan(hl.enabled, every, rule, total_steps, count, images, ratio, added, source,
                hl.color_steps, hl.color_grad_steps, seconds, step_source)
