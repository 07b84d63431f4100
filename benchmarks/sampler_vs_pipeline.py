"""Our DPM-Solver++ sampler against the base's diffusers pipeline (PixArtAlphaPipeline, or
PixArtSigmaPipeline for a PixArt-Σ base), no grad, same model and noise.

    python benchmarks/sampler_vs_pipeline.py [--base-model tiny|tiny-sigma] [--arch pixart-xl-2] [--steps 20]

Prints median seconds of each and the ratio ours / pipeline (goal <= 1.05), interleaving the
two so that machine noise hits both alike.
"""

import argparse

import common
import torch

from medart import dpm_solver
from medart.profiles import build_architecture, default_device_dtype, load_base

PROMPT = "An endoscopic image of a polyp, predominantly pink with white speckles."


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", default="tiny")
    p.add_argument("--arch", help="pixart-xl-2: real-size architecture with random weights (CUDA)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    if args.arch:
        device, dtype = default_device_dtype()
        base = build_architecture(args.arch, device, dtype)
    else:
        base = load_base(args.base_model)
    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)
    start = dpm_solver.initial_latents(base, 1, generator=torch.Generator().manual_seed(0))
    size = base.resolution

    def theirs():
        return pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=4.5, latents=start.clone(),
                    height=size, width=size, use_resolution_binning=False, output_type="latent",
                    clean_caption=False).images

    @torch.no_grad()
    def ours():
        cond = dpm_solver.conditioning(base, [PROMPT])  # prompt encoding is timed on both sides
        return dpm_solver.sample(base.transformer, base.scheduler, start.clone(), *cond,
                                 steps=args.steps, cfg=4.5)

    a, b = theirs(), ours()
    rel = ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
    times = {"pipeline": [], "ours": []}
    for _ in range(args.repeats):  # interleaved
        times["pipeline"] += common.timed(theirs, 1)
        times["ours"] += common.timed(ours, 1)
    t_p, t_o = common.median(times["pipeline"]), common.median(times["ours"])
    print(f"model: {args.arch or args.base_model} ({type(pipe).__name__}) on {base.device} ({base.dtype}), "
          f"{args.steps} steps, CFG 4.5, {size} px, {args.repeats} interleaved repeats")
    print(f"max relative difference of the latents: {rel:.2e}")
    print(f"pipeline  median {t_p * 1000:9.2f} ms")
    print(f"ours      median {t_o * 1000:9.2f} ms")
    print(f"ratio ours / pipeline: {t_o / t_p:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
