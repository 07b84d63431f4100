"""The `train`, `generate` and `export-adapter` commands: HLDF fine-tuning of a base model, one
image from it, and its adapter as one file for ComfyUI.

Training runs unchanged under `accelerate launch` for several GPUs. Registered by
`medart.cli` through `add_parsers(sub)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medart.cli.flags import add_setting_flags, setting_overrides


def train_config(args):
    """The TrainConfig of a parsed `train` command line: the config file, then the flags."""
    from medart.config import load_config

    return load_config(args.config, **setting_overrides(args))


def cmd_train(args) -> int:
    from medart.hldf import train

    config = train_config(args)
    if not config.data:
        raise SystemExit("error: no training data; pass --data DIR_OR_DATASET_ID or set `data:` in the config")
    from medart.data import check_source

    check_source(config.data)
    if args.preflight:
        from medart import hldf_plan
        from medart.data import count_examples

        images, groups = count_examples(config)
        steps_per_epoch = max(1, images // config.batch_size)
        held = None
        if config.buckets:
            from medart import buckets
            from medart.data import image_sizes
            from medart.profiles import resolve

            resolution = config.resolution or resolve(config.base_model)[1]
            held = buckets.counts(image_sizes(config), resolution, buckets.model_multiple(config.base_model))
            steps_per_epoch = max(1, sum(n // config.batch_size for n in held.values()))
        total = config.max_steps or config.epochs * steps_per_epoch
        parent = Path(config.output).parent
        runs = [d for d in parent.iterdir() if d.is_dir()] if parent.is_dir() else []
        import torch

        plan = hldf_plan.plan(config, total, len(groups), runs, "cuda" if torch.cuda.is_available() else "cpu")
        print(f"{images} training image(s) in {len(groups)} class(es) ({', '.join(groups)}): "
              f"{total} steps of batch {config.batch_size}.")
        if held is not None:
            print(buckets.summary(held, config.batch_size))
        from medart.jobs.training import plan_line

        print(plan_line(plan, config, markdown=False))
        print(plan.summary())
        if plan.enabled and plan.colour_steps == 0:
            print("error: HLDF is on but this run makes no colour step: lower --hldf-every, leave it out for the "
                  "schedule rule, or pass --no-hldf to train LoRA only", file=sys.stderr)
            return 2
        return 0
    from medart.run_folder import RunFolder

    path = train(config, command=" ".join(sys.argv))
    status = RunFolder(path).read_status()
    if status.get("state") == "done":
        print(f"done: adapter at {path / 'adapter'}")
    else:
        print(f"{status.get('state', 'stopped')} at step {status.get('step')} of {status.get('total')}; "
              f"resume with: medart train {path / 'config.yaml'} --resume latest")
    return 0


def cmd_generate(args) -> int:
    from medart.generate import generate_to_file

    if not args.prompt.strip():  # as the app's Compare tab: an empty prompt describes nothing
        raise ValueError("--prompt is empty: write what to generate, e.g. a caption of one of your images")
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


def cmd_export_adapter(args) -> int:
    from medart.comfyui import export

    done = export(args.run, args.out)
    meta = done["metadata"]
    networks = " and ".join(f"{n} {'DiT' if k == 'dit' else 'T5'} modules" for k, n in done["modules"].items())
    print(f"{done['path']}: {networks}, rank {meta['medart.rank']}, alpha {meta['medart.lora_alpha']}; "
          f"weights: {meta['medart.weights']}; base model: {meta['medart.base_model_source']}.")
    print("Put it in ComfyUI/models/loras/ and load it with a LoraLoader node on PixArt-α and its T5 text encoder.")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="HLDF LoRA fine-tuning of a base model on captioned images",
                       description="Every flag is a setting of medart.config.TrainConfig; a config file gives the "
                                   "rest (YAML keys: the settings, nested under lora: and hldf:).")
    p.add_argument("config", nargs="?", help="YAML or JSON config (a run's config.yaml); flags override it")
    p.add_argument("--preflight", action="store_true",
                   help="check the data and print the plan (N, colour steps, their cost), then exit")
    add_setting_flags(p)
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

    p = sub.add_parser("export-adapter", help="a run's LoRA (DiT and T5) as one .safetensors file for ComfyUI")
    p.add_argument("run", help="run folder (its adapter, else its latest checkpoint), adapter folder or checkpoint")
    p.add_argument("--format", choices=("comfyui",), default="comfyui",
                   help="comfyui: the key names ComfyUI's LoRA loader resolves for PixArt, alpha per module")
    p.add_argument("--out", required=True, help="the .safetensors file to write, e.g. ComfyUI/models/loras/NAME.safetensors")
    p.set_defaults(func=cmd_export_adapter)
