"""Batch captioning of a workspace with the Visual Symptom Generator.

Each caption is committed as soon as it is written, so an interrupted job loses at most the
batch in flight; `only_missing=True` resumes it (images that already have text are left
alone). Reviewed captions (edited, approved, rejected) are never overwritten by default,
and images removed from the workspace while the job runs are skipped, not an error.
The template of an image is the job's, else the image's modality, else the workspace's
default (`modality` setting), else `custom`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from captioning.base import Captioner, CaptionerError
from captioning.vsg import VSGConfig, describe
from medart.workspace import Filter, Workspace


@dataclass
class CaptionJobReport:
    total: int = 0
    done: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    repaired: int = 0  # captions the rules changed (prefixed, trimmed, simplified)
    reviewed_meanwhile: list[int] = field(default_factory=list)  # left alone: reviewed during the job
    removed_meanwhile: list[int] = field(default_factory=list)  # skipped: removed during the job


def targets(ws: Workspace, only_missing: bool = False, include_edited: bool = False, flt: Filter | None = None) -> list[int]:
    """Ids the job would caption: drafts (and edited ones if asked), optionally only empty ones."""
    base = flt or Filter()
    statuses = ["draft", "edited"] if include_edited else ["draft"]
    return ws.ids(Filter(**{**base.__dict__, "status": statuses, "missing": True if only_missing else base.missing}))


def caption_workspace(
    ws: Workspace,
    captioner: Captioner,
    ids: list[int],
    template: str | None = None,
    tokenizer=None,
    config: VSGConfig | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: tuple[str, ...] = ("draft",),
) -> CaptionJobReport:
    """Caption `ids` in batches of `captioner.batch_size`, committing every caption. A caption
    whose status is no longer in `overwrite` when its text is ready (a reviewer got there
    first) is left as it is."""
    config = config or VSGConfig()
    report = CaptionJobReport(total=len(ids))
    default = ws.get_setting("modality") or "custom"
    size = max(1, captioner.batch_size)
    for start in range(0, len(ids), size):
        groups: dict[str, list] = {}
        for item in _still_there(ws, ids[start : start + size], report):
            groups.setdefault(template or item.modality or default, []).append(item)
        for name, group in groups.items():
            tmpl = ws.get_template(name)
            images, kept = [], []
            for item in group:
                try:
                    with Image.open(item.image_path) as im:
                        images.append(im.convert("RGB"))
                    kept.append(item)
                except FileNotFoundError:  # removed between the lookup and now
                    report.removed_meanwhile.append(item.id)
            if not kept:
                continue
            simple = [tmpl.simple_caption(item.label) for item in kept]
            try:
                captions = describe(captioner, images, simple, tmpl, tokenizer=tokenizer, config=config)
            except CaptionerError as e:
                raise CaptionerError(
                    f"{e} ({report.done} of {report.total} captioned and saved; rerun with --only-missing to continue)"
                ) from e
            for item, cap in zip(kept, captions):
                prov = cap.provenance() | {"template": tmpl.name, "simple_caption": tmpl.simple_caption(item.label)}
                try:
                    written = ws.set_caption(item.id, cap.text, prov, status="draft", only_if=overwrite)
                except ValueError:
                    if _still_there(ws, [item.id], report):
                        raise
                    continue  # removed while it was being described
                if not written:
                    report.reviewed_meanwhile.append(item.id)
                    continue
                report.done += 1
                report.repaired += any(r.startswith(("prefixed", "trimmed", "simplified")) for r in cap.rules)
                if progress:
                    progress(1)
    return report


def _still_there(ws: Workspace, ids: list[int], report: CaptionJobReport) -> list:
    """The items of `ids` that are still in the workspace; the others go to `removed_meanwhile`."""
    found = {item.id: item for item in ws.query(Filter(ids=list(ids)), limit=None)}
    report.removed_meanwhile += [i for i in ids if i not in found]
    return [found[i] for i in ids if i in found]
