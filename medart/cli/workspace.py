"""Workspace commands of the CLI: import, caption, export, the review commands and the
organising ones (label, split, remove).

Each command is one `cmd_<name>(args) -> int`; all take `--workspace` (default
`MEDART_WORKSPACE`, else `<home>/workspace`: the app's, `medart.places`). Errors are raised as ValueError/FileNotFoundError with
what to do; `medart.cli.main` prints them and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from medart.cli.flags import add_config_file
from medart.constants import MAX_CAPTION_TOKENS
from medart.pixel_limit import DEFAULT_MAX_PIXELS
from medart.workspace.splits import format_table, hold_out, moves_text, parse_ids, split_counts, totals
from medart.workspace import SPLITS, STATUSES, Filter, Workspace, check_split, default_workspace


# ---- shared helpers ---------------------------------------------------------------------------
def _open(args, tokens: str | None = None, create: bool = False) -> Workspace:
    """Open the workspace; with tokens="required" (captioning) or "optional" (import, edits),
    with the base model's T5 tokenizer to count caption tokens. An optional tokenizer that
    cannot be loaded leaves counts empty with a warning instead of failing the command."""
    from medart.profiles import KINDS, BaseModelError, caption_tokenizer, kind_or_alpha

    tokenizer = name = None
    if tokens:
        try:
            name, tokenizer = caption_tokenizer(getattr(args, "base_model", None))
        except (BaseModelError, OSError, ValueError) as e:
            if tokens == "required":
                raise
            print(f"warning: caption token counts unavailable ({e})", file=sys.stderr)
    limit = KINDS[kind_or_alpha(getattr(args, "base_model", None))].max_caption_tokens  # approvals stop past it
    ws = Workspace(args.workspace, tokenizer=tokenizer, create=create, token_limit=limit)
    if tokenizer is not None and ws.get_setting("token_base_model") != name:
        ws.recount_tokens()
        ws.set_setting("token_base_model", name)
    return ws


def _filter(args) -> Filter:
    ids = parse_ids(getattr(args, "ids", None))
    return Filter(
        status=getattr(args, "status", None),
        label=getattr(args, "label", None),
        text=getattr(args, "contains", None),
        min_tokens=getattr(args, "min_tokens", None),
        max_tokens=getattr(args, "max_tokens", None),
        ids=ids or None,
        missing=True if getattr(args, "missing", False) else None,
        split=getattr(args, "in_split", None),
    )


def _add_filter_flags(p, status: bool = True) -> None:
    if status:
        p.add_argument("--status", choices=STATUSES, action="append", help="repeatable")
    p.add_argument("--label", help="only images with this label")
    p.add_argument("--contains", help="only captions containing this text (case-insensitive)")
    p.add_argument("--min-tokens", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--ids", nargs="+", help="image ids: 3 7 9, 3,7,9 or 10-20")
    p.add_argument("--in-split", help=f"only images of this split ({', '.join(SPLITS)})")


# ---- commands ---------------------------------------------------------------------------------
def cmd_import(args) -> int:
    from medart.workspace.importers import ImportLimits, import_dataset, import_paths, path_exists

    if not args.paths and not args.hf_dataset:
        raise ValueError("nothing to import: give files, folders or zip archives, or --hf-dataset ID_OR_DIR")
    check_split(args.split)  # an unknown name would make a split nothing trains or evaluates on
    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be a positive number of pixels (got {args.max_pixels})")
    missing = [p for p in args.paths or [] if not path_exists(Path(p).expanduser())]
    if missing:  # before the workspace is created: a typo leaves nothing behind
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    limits = ImportLimits(max_pixels=args.max_pixels)
    with _open(args, tokens="optional", create=True) as ws:
        if args.modality:
            ws.get_template(args.modality)  # fail early on a template that does not exist
        reports = []
        if args.paths:
            reports.append(import_paths(ws, args.paths, label=args.label, modality=args.modality, split=args.split,
                                        limits=limits, allow_burned_in=args.allow_burned_in))
        if args.hf_dataset:
            reports.append(
                import_dataset(
                    ws, args.hf_dataset, split=args.hf_split, image_column=args.image_column,
                    text_column=args.text_column, label_column=args.label_column, label=args.label,
                    modality=args.modality, limits=limits, into=args.split,
                )  # fmt: skip
            )
        for r in reports:
            print(r.summary())
        stats = ws.stats()
        print(f"workspace {ws.root}: {stats['total']} image(s), {stats['missing']} without caption")
    return 0


def cmd_caption(args) -> int:
    from tqdm import tqdm

    from captioning.base import CaptionerError, SamplingConfig
    from captioning.vsg import VSGConfig
    from medart.workspace.describe import (Describer, caption_by_describer, group_by_describer, open_captioner,
                                           overwrite_statuses, targets)

    if args.backend is None and (args.model or args.url):
        raise ValueError(
            "--model and --url go with --backend; without --backend each image's template chooses its describer "
            "(python -m medart template NAME shows it)"
        )
    with _open(args, tokens="required") as ws:
        if args.template:
            ws.get_template(args.template)
        ids = targets(ws, only_missing=args.only_missing, include_edited=args.include_edited, flt=_filter(args),
                      include_approved=args.include_approved)
        if args.limit is not None:
            ids = ids[: args.limit]
        if not ids:
            print("nothing to caption (every selected image already has a caption; see --include-edited, --ids)")
            return 0
        reviewed = _reviewed_counts(ws, ids)
        if reviewed and not args.yes:
            raise ValueError(f"this would replace {reviewed} caption(s), reviewed by a person; add --yes to replace them "
                             "(one `python -m medart undo` restores them all)")
        explicit = Describer(args.backend, args.model, args.url) if args.backend else None
        groups = group_by_describer(ws, ids, template=args.template, explicit=explicit)
        not_openai = [str(g.describer) for g in groups if g.describer.backend != "openai"]
        if args.simplify and not_openai:
            raise ValueError(
                f"--simplify uses the caption server (--backend openai), not {', '.join(not_openai)}; "
                "for a local text model pass --simplify-model ID_OR_DIR"
            )
        sampling = SamplingConfig(
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            max_new_tokens=args.max_new_tokens, seed=args.seed,
        )  # fmt: skip
        api_key = os.environ.get(args.api_key_env) if args.api_key_env else None

        def load(describer):
            return open_captioner(describer, sampling=sampling, batch_size=args.batch_size, device=args.device,
                                  api_key=api_key)

        config = VSGConfig(max_tokens=args.max_caption_tokens, max_attempts=args.max_attempts)
        simplifier = None
        try:
            if args.simplify_model:
                from captioning.simplify import TransformersSimplifier

                simplifier = config.simplifier = TransformersSimplifier(args.simplify_model, device=args.device)
            with tqdm(total=sum(len(g.ids) for g in groups), unit="img", desc="captioning") as bar:

                def on_group(group):
                    bar.set_description(f"captioning ({group.describer.backend})")
                    tqdm.write(f"{len(group.ids)} image(s) with {group.describer} ({', '.join(group.sources)})")

                report = caption_by_describer(
                    ws, groups, load, template=args.template, tokenizer=ws.tokenizer, config=config,
                    progress=bar.update, overwrite=overwrite_statuses(args.include_edited, args.include_approved),
                    simplify_with_captioner=args.simplify, on_group=on_group,
                )  # fmt: skip
        except CaptionerError as e:
            raise ValueError(str(e)) from None
        finally:
            if simplifier is not None:
                simplifier.close()
        print(f"captioned {report.done} image(s); the rules repaired {report.repaired}. Review them, then approve "
              "(one `python -m medart undo` reverts the whole batch).")
        if report.reviewed_meanwhile:
            print(f"left {len(report.reviewed_meanwhile)} caption(s) alone that were reviewed while the job ran")
        if report.removed_meanwhile:
            print(f"skipped {len(report.removed_meanwhile)} image(s) removed from the workspace while the job ran")
    return 0


def _reviewed_counts(ws: Workspace, ids: list[int]) -> str:
    """'3 edited and 1 approved' among `ids` (empty when none is reviewed)."""
    counts = {s: ws.count(Filter(ids=ids, status=s)) for s in ("edited", "approved")}
    return " and ".join(f"{n} {s}" for s, n in counts.items() if n)


def cmd_export(args) -> int:
    from medart.workspace.exports import describe_export, export

    with _open(args) as ws:
        flt = Filter(label=args.label)
        splits = None if not args.split else SPLITS if args.split == "all" else args.split.replace(",", " ").split()
        if args.push_to_hub and (args.format != "imagefolder" or args.keep_names):
            raise ValueError("--push-to-hub shares an imagefolder without original file names: drop --keep-names "
                             "and --format (see also `python -m medart push-dataset --dry-run`)")
        report = export(
            ws, args.out, fmt=args.format, approved_only=args.approved_only and not args.all, flt=flt,
            overwrite=args.overwrite,
            keep_names=args.keep_names, splits=splits,
        )  # fmt: skip
        print(describe_export(report))
        if args.push_to_hub:
            from medart.sharing import push_dataset

            token = os.environ.get(args.hub_token_env) if args.hub_token_env else None
            print(push_dataset(ws, args.push_to_hub, private=True, token=token, approved_only=args.approved_only
                               and not args.all, flt=flt).describe())
    return 0


def cmd_approve(args) -> int:
    return _status(args, "approved")


def cmd_reject(args) -> int:
    return _status(args, "rejected")


def _status(args, status: str) -> int:
    flt = _filter(args)
    if flt == Filter() and not args.all:
        raise ValueError("say which captions: image ids (--ids 3 4 10-20), a filter (--status edited, --label L) or --all")
    with _open(args) as ws:
        ids = ws.ids(flt)
        if status == "approved" and not args.ids:  # a filter skips empty captions and ones too long to train on
            empty = set(ws.ids(Filter(**{**flt.__dict__, "missing": True})))
            long = set(ws.ids(Filter(**{**flt.__dict__, "min_tokens": ws.token_limit + 1})))
            ids = [i for i in ids if i not in empty | long]
            if long:
                print(f"left {len(long)} caption(s) longer than the base model reads ({ws.token_limit} T5 tokens) "
                      f"unapproved: {' '.join(f'#{i}' for i in sorted(long)[:10])}; shorten them first")
        n = ws.set_status(ids, status, action="approve" if status == "approved" else "reject")
        print(f"{status}: {n} caption(s) changed ({len(ids)} selected)")
    return 0


def cmd_edit(args) -> int:
    with _open(args, tokens="optional") as ws:
        item = ws.set_text(args.id, args.text, approve=args.approve)
        print(f"image {item.id}: {item.status}, {item.token_count} tokens")
    return 0


def cmd_undo(args) -> int:
    with _open(args) as ws:
        undone = ws.undo(args.id)
        print(undone.describe() if undone else "nothing to undo")
    return 0


def cmd_replace(args) -> int:
    with _open(args, tokens="optional") as ws:
        preview = ws.find_replace(
            args.pattern, args.replacement, flt=_filter(args), regex=not args.literal,
            ignore_case=args.ignore_case, apply=args.yes,
        )  # fmt: skip
        print(f"{preview.matches} match(es) in {preview.captions} caption(s)")
        for m in preview.samples:  # each match in its context: the matched text in [brackets]
            print(f"  [{m.id}] {m.left}[{m.old}]{m.right}\n     -> {m.left}[{m.new}]{m.right}")
        if preview.more:
            print(f"  ... and {preview.more} more")
        if args.yes:
            print(f"replaced; undo with `python -m medart undo --workspace {ws.root}`")
        elif preview.captions:
            print("preview only; pass --yes to apply")
    return 0


LIST_WIDTH = 80  # a caption's characters on its line in `list` (unless --full)


def listed_text(text: str, full: bool = False) -> tuple[str, bool]:
    """A caption on one line of `list`: whole with `full`, else cut at LIST_WIDTH characters with
    "…" marking the cut. (the text, whether it was cut)."""
    one_line = " ".join((text or "").split())
    if full or len(one_line) <= LIST_WIDTH:
        return one_line, False
    return one_line[:LIST_WIDTH - 1].rstrip() + "…", True


def cmd_list(args) -> int:
    with _open(args) as ws:
        items = ws.query(_filter(args), offset=args.offset, limit=args.limit)
        cut = False
        for item in items:
            if args.json:
                print(json.dumps({"id": item.id, "name": item.original_name, "label": item.label, "status": item.status,
                                  "tokens": item.token_count, "text": item.text}))  # fmt: skip
            else:
                text, was_cut = listed_text(item.text, args.full)
                cut = cut or was_cut
                print(f"{item.id:>6} {item.status:<8} {str(item.token_count or '-'):>4} {item.label or '-':<16} {text}")
        print(f"{ws.count(_filter(args))} matching", file=sys.stderr)
        if cut:
            print(f"captions longer than {LIST_WIDTH} characters end in \"…\"; --full (or --json) shows them whole",
                  file=sys.stderr)
    return 0


def cmd_next(args) -> int:
    with _open(args) as ws:
        item = ws.next_unreviewed(args.after, _filter(args))
        if item is None:
            print("every caption is reviewed")
        else:
            print(f"{item.id} {item.status} {item.label or '-'} {item.image_path}\n{item.text}")
    return 0


def cmd_stats(args) -> int:
    with _open(args) as ws:
        print(json.dumps(ws.stats(), indent=2))
    return 0


def _selection(ws: Workspace, args, verb: str) -> list[int]:
    """The ids a command acts on: the filter flags (--ids narrowed by the others; every id
    given must exist) or, with --all, every image."""
    flt = _filter(args)
    if flt == Filter() and not getattr(args, "all", False):
        raise ValueError(f"say which images to {verb}: ids (--ids 3 4 10-20) or a filter (--label L, --in-split train, "
                         "--status rejected, ...)" + (" or --all" if hasattr(args, "all") else ""))
    if flt.ids:
        ws.check_ids(flt.ids)
    ids = ws.ids(flt)
    if not ids:
        raise ValueError("no images match the filter; nothing was changed (see them with `python -m medart list ...`)")
    return ids


def cmd_label(args) -> int:
    label = args.new_label.strip()
    if not label:
        raise ValueError("give the new class label, e.g. `python -m medart label polyps --ids 3 5-9`")
    with _open(args) as ws:
        n = ws.set_labels(_selection(ws, args, "label"), label)
        print(f"labelled {n} image(s) {label!r}")
        print(format_table(split_counts(ws)))
    return 0


def cmd_split(args) -> int:
    fractions = args.test is not None or args.validation is not None
    if args.to and fractions:
        raise ValueError("give either --to SPLIT (move chosen images) or --test/--validation (a stratified hold-out)")
    with _open(args) as ws:
        if args.to:
            n = ws.set_split(_selection(ws, args, "move"), check_split(args.to))
            print(f"moved {n} image(s) to {args.to}")
        elif fractions:
            flt = _filter(args)
            if flt.ids:
                ws.check_ids(flt.ids)
            moved: dict[str, list[int]] = {}
            counts = hold_out(ws, test=args.test or 0.0, validation=args.validation or 0.0, seed=args.seed, flt=flt,
                              moved=moved)
            held = totals(counts)
            print(f"per class, seed {args.seed}: {held['test']} test, {held['validation']} validation, "
                  f"{held['train']} train image(s); images already held out stayed; {moves_text(moved)}")
        else:
            print("nothing changed: pass --test 0.2 [--validation 0.1] for a stratified hold-out, "
                  "or --to test --ids 3 5-9 to move chosen images")
        print(format_table(split_counts(ws)))
    return 0


def cmd_remove(args) -> int:
    with _open(args) as ws:
        ids = _selection(ws, args, "remove")
        if not args.yes:
            for item in ws.query(Filter(ids=ids), limit=50):
                print(f"{item.id:>6} {item.label or '-':<16} {item.split:<10} {item.original_name}")
            if len(ids) > 50:
                print(f"   ... and {len(ids) - 50} more")
            print(f"would remove {len(ids)} image(s) with their captions and history; nothing was removed. "
                  "Pass --yes to remove them (this cannot be undone)")
            return 0
        n = ws.remove(ids)
        print(f"removed {n} image(s) with their captions and history")
        print(format_table(split_counts(ws)))
    return 0


def cmd_template(args) -> int:
    from captioning.templates import ModalityTemplate
    from medart.workspace.describe import NO_MODALITY

    with _open(args, create=True) as ws:
        if not args.name:
            for t in ws.list_templates():
                print(f"{t.name:<12} {t.image_phrase!r}: {', '.join(t.features)}")
            return 0
        if args.reset:
            ws.reset_template(args.name)
        elif any(v is not None for v in (args.image_phrase, args.features, args.prompt, args.max_words,
                                         args.backend, args.model, args.url)):
            try:
                t = ws.get_template(args.name)
            except ValueError:
                if not args.image_phrase:
                    raise ValueError("a new template needs --image-phrase, e.g. 'A colposcopic image'") from None
                t = ModalityTemplate(args.name, args.image_phrase)
            if args.image_phrase:
                t.image_phrase = args.image_phrase
            if args.features is not None:
                t.features = [f.strip() for f in args.features.split(",") if f.strip()]
            if args.prompt:
                t.prompt = args.prompt
            if args.max_words:
                t.max_words = args.max_words
            for field in ("backend", "model", "url"):  # "" clears: the job's choice / workspace default
                if getattr(args, field) is not None:
                    setattr(t, field, getattr(args, field).strip() or None)
            ws.save_template(t)
        if args.default:
            ws.get_template(args.name)
            ws.set_setting(NO_MODALITY, args.name)
        t = ws.get_template(args.name)
        print(json.dumps(t.to_dict(), indent=2))
    return 0


# ---- parsers ----------------------------------------------------------------------------------
def add_parsers(sub) -> None:
    def parser(name: str, help: str, func):
        p = sub.add_parser(name, help=help)
        p.add_argument(
            "--workspace", default=str(default_workspace()), help="workspace folder (default: $MEDART_WORKSPACE, else <home>/workspace with <home> $MEDART_HOME or ., as the app)"
        )
        p.set_defaults(func=func)
        return p

    _bringing_in(parser)
    _reviewing(parser)
    _organising(parser)


def _bringing_in(parser) -> None:
    """import, caption, export."""
    p = parser("import", "import images (files, folders, zip, DICOM, HF dataset) into the workspace", cmd_import)
    p.add_argument("paths", nargs="*", help="image files, folders (with .txt/metadata.jsonl/metadata.csv) or zip archives")
    p.add_argument("--label", help="class label for images that bring none (DICOM: the only source of a label)")
    p.add_argument("--modality", help="template for these images: endoscopy, dermoscopy, histology, radiology, fundus, custom")
    p.add_argument("--split", default="train", help=f"{', '.join(SPLITS)} (default train)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="larger images are rejected as decompression bombs (the only pixel limit; raise it for huge scans)")
    p.add_argument("--allow-burned-in", action="store_true",
                   help="import DICOM whose pixels may show patient data (Burned In Annotation YES, or secondary "
                        "captures and ultrasound that do not say NO); the summary lists them to check")
    p.add_argument("--hf-dataset", help="a Hugging Face dataset id or a local imagefolder")
    p.add_argument("--hf-split", default="train", help="which split of the dataset to read (the workspace split "
                   "its images go to is --split)")
    p.add_argument("--image-column")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--base-model", help="whose T5 tokenizer counts caption tokens (default: the active base model)")

    p = parser("caption", "describe images with the Visual Symptom Generator (resumable)", cmd_caption)
    add_config_file(p)
    p.add_argument(
        "--backend", choices=("offline", "transformers", "openai"), default=None,
        help="one describer for every image; default: per template (each image's template's describer, "
             "else the workspace default, else offline)",
    )  # fmt: skip
    p.add_argument("--model", help="with --backend: transformers: hub id or folder (default: LLaVA-NeXT 8B on GPU, SmolVLM-256M on CPU); openai: the served model name")
    p.add_argument("--url", help="with --backend openai: server URL, e.g. http://gpu-box:8000/v1")
    p.add_argument("--api-key-env", help="openai backend: environment variable holding the API key")
    p.add_argument("--only-missing", action="store_true", help="only images without caption text (resume a job)")
    p.add_argument("--include-edited", action="store_true", help="also replace captions a reviewer edited (with --yes)")
    p.add_argument("--include-approved", action="store_true", help="also replace approved captions (with --yes)")
    p.add_argument("--yes", action="store_true", help="confirm replacing the edited or approved captions counted")
    p.add_argument("--template", help="modality template for all images (default: each image's modality)")
    _add_filter_flags(p, status=False)
    p.add_argument("--limit", type=int, help="at most this many images")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-attempts", type=int, default=3, help="generations per image before repairing the best")
    p.add_argument("--max-caption-tokens", type=int, default=MAX_CAPTION_TOKENS)
    p.add_argument("--simplify", action="store_true", help="openai backend: shorten long captions with the served model")
    p.add_argument("--simplify-model", help="a local/hub text model (e.g. t5-large) that shortens long captions")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="transformers backend: cpu, cuda, cuda:1")
    p.add_argument("--base-model", help="whose T5 tokenizer counts caption tokens (default: the active base model)")

    p = parser("export", "export captions for training (imagefolder, csv, txt)", cmd_export)
    p.add_argument("--format", choices=("imagefolder", "csv", "txt"), default="imagefolder")
    p.add_argument("--out", required=True)
    p.add_argument("--approved-only", action=argparse.BooleanOptionalAction, default=True,
                   help="only approved captions (the default); --no-approved-only: every caption with text that "
                        "is not rejected")
    p.add_argument("--all", action="store_true", help="every caption with text that is not rejected "
                   "(= --no-approved-only)")
    p.add_argument("--label", help="only this label")
    p.add_argument("--split", help="train, validation, test (comma-separated) or all; default: imagefolder all, "
                   "each split in its own folder; csv and txt train only")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--keep-names", action="store_true", help="keep original file stems in exported names")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload as a private HF dataset with a dataset "
                   "card (as `push-dataset`)")
    p.add_argument("--hub-token-env", help="environment variable with the write token (default HF_TOKEN)")



def _reviewing(parser) -> None:
    """approve, reject, edit, undo, replace, list, next, stats."""
    for name, func, help in (
        ("approve", cmd_approve, "approve captions (by ids or filter)"),
        ("reject", cmd_reject, "reject captions (by ids or filter); rejected ones are never exported"),
    ):
        p = parser(name, help, func)
        _add_filter_flags(p)
        p.add_argument("--all", action="store_true", help="every caption (with text, for approve)")

    p = parser("edit", "set the text of one caption", cmd_edit)
    p.add_argument("id", type=int)
    p.add_argument("text")
    p.add_argument("--approve", action="store_true")
    p.add_argument("--base-model")

    p = parser("undo", "undo the workspace's last change (captions, labels, splits; or with --id the last change of "
                       "one image's caption) and say what it was", cmd_undo)
    p.add_argument("--id", type=int)

    p = parser("replace", "find/replace (regex) over captions: preview, then --yes to apply", cmd_replace)
    p.add_argument("pattern")
    p.add_argument("replacement")
    p.add_argument("--literal", action="store_true", help="pattern is plain text, not a regex")
    p.add_argument("--ignore-case", action="store_true")
    p.add_argument("--yes", action="store_true", help="apply (otherwise only the preview count)")
    _add_filter_flags(p)
    p.add_argument("--base-model")

    p = parser("list", "list captions", cmd_list)
    _add_filter_flags(p)
    p.add_argument("--missing", action="store_true", help="only images without caption text")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--full", action="store_true", help=f"whole captions (else cut at {LIST_WIDTH} characters, "
                                                       "marked with …)")

    p = parser("next", "the next unreviewed caption", cmd_next)
    p.add_argument("--after", type=int, help="after this image id (wraps around)")
    _add_filter_flags(p, status=False)

    parser("stats", "counts per status and label", cmd_stats)



def _organising(parser) -> None:
    """label, split, remove, template."""
    p = parser("label", "set the class label of chosen images (by ids or filter)", cmd_label)
    p.add_argument("new_label", metavar="LABEL", help="the class label to give them")
    _add_filter_flags(p)
    p.add_argument("--all", action="store_true", help="every image")

    p = parser("split", "hold out a stratified test/validation share, or move chosen images to a split", cmd_split)
    p.add_argument("--test", type=float, help="per class, this fraction goes to test (e.g. 0.2); the rest to train")
    p.add_argument("--validation", type=float, help="per class, this fraction goes to validation (e.g. 0.1)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same split (default 0)")
    p.add_argument("--to", metavar="SPLIT", help=f"move the chosen images to this split ({', '.join(SPLITS)})")
    _add_filter_flags(p)
    p.add_argument("--all", action="store_true", help="with --to: every image")

    p = parser("remove", "remove chosen images with their captions (lists them; --yes removes)", cmd_remove)
    _add_filter_flags(p)
    p.add_argument("--yes", action="store_true", help="remove (otherwise only list what would be removed)")

    p = parser("template", "list, show, edit or add modality templates", cmd_template)
    p.add_argument("name", nargs="?")
    p.add_argument("--image-phrase", help="e.g. 'An endoscopic image' (simple caption: '<phrase> of <label>')")
    p.add_argument("--features", help="comma-separated visual features to ask for")
    p.add_argument("--prompt", help="prompt with {simple_caption} {features} {max_words} {label}")
    p.add_argument("--max-words", type=int)
    p.add_argument("--backend", help="describer for this modality: offline, transformers, openai ('' clears it)")
    p.add_argument("--model", help="its model: transformers hub id or folder; openai served name ('' clears)")
    p.add_argument("--url", help="openai: the server URL, e.g. http://gpu-box:8000/v1 ('' clears)")
    p.add_argument("--reset", action="store_true", help="back to the built-in version")
    p.add_argument("--default", action="store_true", help="use it for images without a modality")
