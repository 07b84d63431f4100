"""The `train` and `generate` commands: HLDF fine-tuning of a base model, and one image from it.

Training runs unchanged under `accelerate launch` for several GPUs. Registered by
`medart.cli` through `add_parsers(sub)`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def train_config(args):
    """The TrainConfig of a parsed `train` command line: the config file, then the flags."""
    from medart.config import load_config

    overrides = {
        "base_model": args.base_model,
        "data": args.data,
        "output": args.output,
        "max_steps": args.max_steps,
        "epochs": args.epochs,
        "resolution": args.resolution,
        "learning_rate": args.lr,
        "seed": args.seed,
        "resume": args.resume,
        "hldf.mode": args.hldf_mode,
        "hldf.every": args.hldf_every,
        "hldf.steps": args.hldf_steps,
        "hldf.cfg": args.cfg,
        "hldf.weight": args.color_weight,
        "hldf.grad_steps": args.hldf_grad_steps,
        "hldf.enabled": False if args.no_hldf else None,
        "lora.rank": args.rank,
        "lora.alpha": args.lora_alpha,
        "lora.t5": False if args.no_t5_lora else None,
        "adam_8bit": True if args.adam_8bit else None,
        "validation_every": args.validation_every,
        "checkpoint_every": args.checkpoint_every,
        "validation_prompts": args.validation_prompt,
    }
    return load_config(args.config, **overrides)


def cmd_train(args) -> int:
    from medart.hldf import train

    config = train_config(args)
    if not config.data:
        raise SystemExit("error: no training data; pass --data DIR_OR_DATASET_ID or set `data:` in the config")
    if args.preflight:
        from medart import hldf_plan
        from medart.data import count_examples

        images, groups = count_examples(config)
        steps_per_epoch = max(1, images // config.batch_size)
        total = config.max_steps or config.epochs * steps_per_epoch
        parent = Path(config.output).parent
        runs = [d for d in parent.iterdir() if d.is_dir()] if parent.is_dir() else []
        plan = hldf_plan.plan(config, total, len(groups), runs)
        print(f"{images} training image(s) in {len(groups)} class(es) ({', '.join(groups)}): "
              f"{total} steps of batch {config.batch_size}.")
        print(plan.summary())
        if plan.enabled and plan.colour_steps == 0:
            print("warning: this run makes no colour step; HLDF would train LoRA only.", file=sys.stderr)
        return 0
    train(config, command=" ".join(sys.argv))
    return 0


def cmd_generate(args) -> int:
    from medart.generate import generate_to_file

    path = generate_to_file(
        base_model=args.base_model,
        lora=args.lora,
        prompt=args.prompt,
        seed=args.seed,
        steps=args.steps,
        cfg=args.cfg,
        size=args.size,
        out=args.out,
        lora_scale=args.lora_scale,
    )
    print(path)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="HLDF LoRA fine-tuning of a base model on captioned images")
    p.add_argument("config", nargs="?", help="YAML or JSON config; flags override it")
    p.add_argument("--base-model", help="profile (pixart-alpha-512, tiny), local folder or hub id")
    p.add_argument("--data", help="imagefolder with metadata.jsonl/csv, or a load_dataset id")
    p.add_argument("--output", help="run folder")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--resolution", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", help="'latest' or a checkpoint folder")
    p.add_argument("--preflight", action="store_true",
                   help="check the data and print the plan (N, colour steps, their cost), then exit")
    p.add_argument("--hldf-mode", choices=["balanced", "paper"],
                   help="balanced (default: each class's own colour target, classes in turn, gradients "
                        "through the last 2 solver steps, weight 1) or paper (the paper's exact formulation)")
    p.add_argument("--hldf-every", type=int,
                   help="N: colour loss every N steps (default: the schedule rule, about 20 colour steps, "
                        "at most the paper's 500)")
    p.add_argument("--hldf-steps", type=int, help="M: solver steps of the in-graph image (paper: 20)")
    p.add_argument("--hldf-grad-steps", type=int, help="backpropagate through the last K steps only")
    p.add_argument("--cfg", type=float, help="guidance of the in-graph image (paper: 4.5)")
    p.add_argument("--color-weight", type=float, help="weight of the colour loss (paper: 1/M)")
    p.add_argument("--no-hldf", action="store_true", help="plain LoRA fine-tuning, no colour loss")
    p.add_argument("--rank", type=int, help="LoRA rank (paper: 8)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: = rank, as the paper)")
    p.add_argument("--no-t5-lora", action="store_true", help="LoRA on the DiT only")
    p.add_argument("--adam-8bit", action="store_true", help="8-bit AdamW (bitsandbytes, CUDA)")
    p.add_argument("--validation-every", type=int)
    p.add_argument("--validation-prompt", action="append", help="repeatable")
    p.add_argument("--checkpoint-every", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="one image from the base model or a tuned run")
    p.add_argument("--base-model", help="profile, local folder or hub id (default: the run's base)")
    p.add_argument("--lora", help="run folder or adapter folder")
    p.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength (0 = base model)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=4.5)
    p.add_argument("--size", type=int, help="pixels (default: the base model's)")
    p.add_argument("--out", default="sample.png")
    p.set_defaults(func=cmd_generate)
