"""Cost of HLDF: a plain LoRA step against a colour step (the paper's, and the default balanced
one, which backpropagates through the last 2 solver steps only), gradient checkpointing on and off.

    python benchmarks/hldf_step.py                       # tiny base, CPU (64 px)
    python benchmarks/hldf_step.py --arch pixart-xl-2    # real-size PixArt-XL-2 + T5-XXL, random
                                                         # weights, 512 px, bf16, CUDA only

Each configuration runs in its own process (so peak memory is its own) through the real
`Trainer.train_step`; printed: median step time, peak memory, FLOPs of one step (counted by
torch's FlopCounterMode, forward and backward), achieved TFLOP/s, and ratios to the plain step.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent


def one(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medart.config import load_config
    from medart.hldf import Trainer, peak_memory_mb
    from medart.profiles import build_architecture, default_device_dtype, load_base

    colour = args.mode != "plain"
    mode = {"hldf.mode": args.mode} if colour else {}
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, base_model=args.arch or args.base_model, data="synthetic", output=out,
                          max_steps=10_000, validation_every=10_000, checkpoint_every=10_000,
                          gradient_checkpointing=args.checkpointing, cache_latents=False,
                          **{"hldf.enabled": colour, "hldf.every": 1, "hldf.steps": args.steps,
                             "lora.t5": True, **mode})
        if args.arch:
            device, dtype = default_device_dtype()
            base = build_architecture(args.arch, device, dtype)
        else:
            base = load_base(args.base_model)
        trainer = Trainer(cfg, base=base, examples=common.synthetic_examples(4, base.resolution))
        trainer.train_step()  # warm-up
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        times = common.timed(trainer.train_step, args.repeats)
        peak = peak_memory_mb(trainer.device)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step()
        flops = counter.get_total_flops()
    t = common.median(times)
    return {"mode": args.mode, "checkpointing": args.checkpointing, "seconds": t, "peak_mb": peak,
            "tflop": flops / 1e12, "tflops_per_s": flops / 1e12 / t, "device": str(trainer.device)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", default="tiny")
    p.add_argument("--arch", help="pixart-xl-2: real-size random-weight networks (CUDA)")
    p.add_argument("--steps", type=int, help="M, solver steps of the colour step (default: each mode's: paper 20, "
                                          "balanced 10)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--mode", choices=["plain", "paper", "balanced"], help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:  # child process: one configuration
        print(json.dumps(one(args)))
        return
    if args.arch:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--arch pixart-xl-2 needs a CUDA GPU (about 20 GB for weights alone in bf16)")
    rows = []
    for mode, ckpt in (("plain", 1), ("plain", 0), ("paper", 1), ("paper", 0), ("balanced", 1), ("balanced", 0)):
        cmd = [sys.executable, str(HERE / "hldf_step.py"), "--mode", mode, "--checkpointing", str(ckpt),
               "--repeats", str(args.repeats), "--base-model", args.base_model]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.arch:
            cmd += ["--arch", args.arch]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"{mode} checkpointing={ckpt}: failed\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    plain = next(r for r in rows if r["mode"] == "plain" and r["checkpointing"])
    m = args.steps or "each mode's (paper 20, balanced 10)"
    print(f"model: {args.arch or args.base_model} on {plain['device']}, LoRA on DiT and T5, M = {m}, "
          f"batch 1, median of {args.repeats}")
    print(f"{'step':<10}{'ckpt':<6}{'seconds':>10}{'x plain':>9}{'peak MB':>10}{'x plain':>9}{'GFLOP':>12}{'GFLOP/s':>10}")
    for r in rows:
        print(f"{r['mode']:<10}{'on' if r['checkpointing'] else 'off':<6}{r['seconds']:>10.3f}"
              f"{r['seconds'] / plain['seconds']:>9.2f}{r['peak_mb']:>10.0f}{r['peak_mb'] / plain['peak_mb']:>9.2f}"
              f"{r['tflop'] * 1e3:>12.4g}{r['tflops_per_s'] * 1e3:>10.4g}")


if __name__ == "__main__":
    main()
