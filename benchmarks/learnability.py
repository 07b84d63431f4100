"""Can a base model learn a class? Untuned against LoRA-only KID on the class bank, per class.

    python benchmarks/learnability.py --base-model small                 # every class of the bank
    python benchmarks/learnability.py --base-model small --classes fundus nuclei_fluorescence --steps 300

For each class of `medart.class_bank`: a LoRA-only run (the product's trainer, HLDF off, nothing
else changed from the defaults) on the class's 12 training tiles for --steps steps; then
--n-gen images from the class caption with fixed seeds, from the untuned base and from the
tuned one, and the KID (the shipped FID Inception weights) of each set to the class's 32 unseen
reference tiles. The criterion of a base that can learn a class: tuned KID at most half the
untuned KID, on every class. Also printed: the VAE's reconstruction PSNR on the class's tiles
(which no pretraining saw), the same KID of the training tiles themselves (what a perfect
learner would score), and a PNG grid per class (rows: references, untuned, tuned) in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import common
from medart import class_bank
from medart.config import load_config
from medart.evaluation import metrics
from medart.generate import Generator
from medart.hldf import train


@torch.no_grad()
def vae_psnr(vae, images) -> float:
    """Reconstruction PSNR (dB, pixels in [0, 1]) of the VAE on these images (posterior mean)."""
    x = torch.from_numpy(np.stack([np.asarray(im, np.float32) for im in images])).permute(0, 3, 1, 2) / 127.5 - 1
    y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = float((((y - x) / 2) ** 2).mean())
    return 10 * math.log10(1 / mse)


def grid(rows: list[list], path: Path, n: int = 8) -> None:
    from PIL import Image

    out = Image.new("RGB", (64 * n, 64 * len(rows)))
    for r, images in enumerate(rows):
        for c, im in enumerate(images[:n]):
            out.paste(im.convert("RGB").resize((64, 64)), (64 * c, 64 * r))
    out.save(path)


def run_class(name: str, args, untuned: Generator) -> dict:
    c = class_bank.load_class(name)
    folder = args.out / name
    shutil.rmtree(folder, ignore_errors=True)
    data = class_bank.write_train_folder(folder / "data", (name,))
    extra = {"learning_rate": args.lr} if args.lr else {}
    if args.rank:
        extra["lora.rank"] = args.rank
    config = load_config(None, base_model=args.base_model, data=str(data), output=str(folder / "run"),
                         max_steps=args.steps, seed=args.seed, **{"hldf.enabled": False}, **extra)
    t0 = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - t0
    seeds = [1000 + i for i in range(args.n_gen)]
    prompts = [c.spec.caption] * args.n_gen
    before = untuned.generate(prompts, seeds)
    after = Generator(args.base_model, folder / "run" / "adapter").generate(prompts, seeds)
    feats = {k: metrics.extract_features(v) for k, v in
             (("ref", c.reference), ("train", c.train), ("untuned", before), ("tuned", after))}
    kid = {k: metrics.kid_from_features(feats["ref"], feats[k], subset_size=args.n_gen)[0]
           for k in ("train", "untuned", "tuned")}
    grid([c.reference, before, after], folder / "grid.png")
    return {"class": name, "split": "TUNE" if name in class_bank.TUNE else "TEST", "train_seconds": seconds,
            "vae_psnr_db": vae_psnr(untuned.base.vae, c.train + c.reference),
            "kid_train_tiles": kid["train"], "kid_untuned": kid["untuned"], "kid_tuned": kid["tuned"],
            "ratio": kid["tuned"] / kid["untuned"]}


def main() -> None:
    common.configure()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-model", default="small")
    p.add_argument("--classes", nargs="+", default=list(class_bank.TUNE + class_bank.TEST),
                   choices=list(class_bank.SPECS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lr", type=float, help="LoRA learning rate (default: the product's)")
    p.add_argument("--rank", type=int, help="LoRA rank (default: the product's)")
    p.add_argument("--n-gen", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/learnability"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    untuned = Generator(args.base_model)
    rows = []
    for name in args.classes:
        rows.append(run_class(name, args, untuned))
        r = rows[-1]
        print(json.dumps(r), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{args.base_model}: LoRA only, {args.steps} steps, learning rate {args.lr or 'default'}, rank {args.rank or 'default'}, seed {args.seed}, "
          f"{args.n_gen} images per class, "
          "KID to 32 unseen reference tiles\n")
    print("| class | split | VAE PSNR (dB) | KID training tiles | KID untuned | KID tuned | tuned / untuned |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['class']} | {r['split']} | {r['vae_psnr_db']:.1f} | {r['kid_train_tiles']:.3f} | "
              f"{r['kid_untuned']:.3f} | {r['kid_tuned']:.3f} | {r['ratio']:.2f} |")
    passed = all(r["ratio"] <= 0.5 for r in rows)
    print(f"\ncriterion (tuned KID <= half untuned on every class): {'met' if passed else 'NOT met'}")


if __name__ == "__main__":
    main()
