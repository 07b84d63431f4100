"""Sharing on the Hugging Face Hub (`medart.sharing`):

    python -m medart push RUN --repo OWNER/NAME [--private|--no-private] [--dry-run --out DIR]
    python -m medart push-dataset --repo OWNER/NAME [--private|--no-private] [--dry-run --out DIR]

`push` uploads a finished run's adapter, its last fixed-seed samples and its model card;
`push-dataset` the workspace's approved captions as an imagefolder with a dataset card.
Both are private unless --no-private. A dry run writes exactly the folder that would be
uploaded and sends nothing; a real push needs a token (`hf auth login` or HF_TOKEN).
Registered by `medart.cli` through `add_parsers(sub)`.
"""

from __future__ import annotations

import argparse
import sys


def _progress(message: str) -> None:
    print(message + " ...", file=sys.stderr)


def _report(result) -> int:
    print(result.describe())
    if result.dry_run:
        for name in result.files:
            print(f"  {name}")
    return 0


def cmd_push(args) -> int:
    from medart.sharing import push_model

    return _report(push_model(args.run, args.repo, private=args.private, dry_run=args.dry_run, out=args.out,
                              overwrite=args.overwrite, progress=_progress))


def cmd_push_dataset(args) -> int:
    from medart.sharing import push_dataset
    from medart.workspace import Filter, Workspace

    with Workspace(args.workspace) as ws:
        return _report(push_dataset(ws, args.repo, private=args.private, dry_run=args.dry_run, out=args.out,
                                    overwrite=args.overwrite, approved_only=not args.all,
                                    flt=Filter(label=args.label), progress=_progress))


def _common(p) -> None:
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the hub repository (created if absent)")
    p.add_argument("--private", action=argparse.BooleanOptionalAction, default=True,
                   help="a private repository (the default); --no-private makes a new one public")
    p.add_argument("--dry-run", action="store_true", help="write the folder that would be uploaded to --out, send "
                   "nothing (no token needed)")
    p.add_argument("--out", metavar="DIR", help="where the folder to upload is written (required with --dry-run; "
                   "otherwise a temporary folder)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")


def add_parsers(sub) -> None:
    from medart.workspace import default_workspace

    p = sub.add_parser("push", help="share a finished run's adapter, samples and model card on the Hugging Face Hub")
    p.add_argument("run", metavar="RUN", help="the run folder, e.g. runs/NAME")
    _common(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("push-dataset", help="share the workspace's approved captions as a Hugging Face dataset "
                       "with a dataset card")
    p.add_argument("--workspace", default=str(default_workspace()),
                   help="workspace folder (default: $MEDART_WORKSPACE, else <home>/workspace, as the app)")
    _common(p)
    p.add_argument("--label", help="only images with this label")
    p.add_argument("--all", action="store_true", help="every caption with text that is not rejected, not only "
                   "approved ones")
    p.set_defaults(func=cmd_push_dataset)
