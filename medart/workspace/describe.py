"""Batch captioning of a workspace with the Visual Symptom Generator.

Each caption is committed as soon as it is written, so an interrupted job loses at most the
batch in flight; `only_missing=True` resumes it (images that already have text are left
alone). Reviewed captions (edited, approved, rejected) are never overwritten by default,
and images removed from the workspace while the job runs are skipped, not an error.
The template of an image is the job's, else the image's modality, else the template a person
chose for images without a modality (`NO_MODALITY` setting: the Captions tab's "Use for images
without a modality", `template NAME --default`), else the neutral `custom` ("A medical
image"): an image imported without a modality is never described as another modality's.

The describer of an image (which backend, model and server write its caption) is the job's
explicit choice, else its template's, else the workspace default (the `caption_backend`,
`caption_model` and `caption_url` settings), else `offline`. `caption_by_describer` groups
the images by describer and loads one captioner per group, closing it before the next is
loaded, so two large models are never in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from PIL import Image

import captioning
from captioning.base import Captioner, CaptionerError, SamplingConfig
from captioning.templates import BACKENDS, ModalityTemplate
from captioning.vsg import VSGConfig, describe
from medart.workspace import Filter, Workspace


@dataclass(frozen=True)
class Describer:
    """Which captioner writes a caption: a backend, its model and (openai) its server URL."""

    backend: str
    model: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        text = " ".join(x for x in (self.backend, self.model) if x)
        return f"{text} @ {self.url}" if self.url else text


@dataclass
class DescriberGroup:
    """The images one describer captions, and where that choice came from."""

    describer: Describer
    ids: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "the job's choice", "template 'dermoscopy'", ...


OFFLINE = Describer("offline")
NO_MODALITY = "no_modality_template"  # setting: the template a person chose for images without a modality
NEUTRAL = "custom"


def untyped_template(ws: Workspace) -> str:
    """The template of images without a modality: the one a person chose, else the neutral one."""
    return ws.get_setting(NO_MODALITY) or NEUTRAL


@dataclass
class CaptionJobReport:
    total: int = 0
    done: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    repaired: int = 0  # captions the rules changed (prefixed, trimmed, simplified)
    reviewed_meanwhile: list[int] = field(default_factory=list)  # left alone: reviewed during the job
    removed_meanwhile: list[int] = field(default_factory=list)  # skipped: removed during the job


def overwrite_statuses(include_edited: bool = False, include_approved: bool = False) -> tuple[str, ...]:
    """The statuses a job may replace: drafts, and reviewed ones only when asked (rejected never)."""
    return ("draft",) + (("edited",) if include_edited else ()) + (("approved",) if include_approved else ())


def targets(ws: Workspace, only_missing: bool = False, include_edited: bool = False, flt: Filter | None = None,
            include_approved: bool = False) -> list[int]:
    """Ids the job would caption: drafts (and edited or approved ones if asked), optionally only empty ones."""
    base = flt or Filter()
    statuses = list(overwrite_statuses(include_edited, include_approved))
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
    report: CaptionJobReport | None = None,
    change_id: int | None = None,
) -> CaptionJobReport:
    """Caption `ids` in batches of `captioner.batch_size`, committing every caption. A caption
    whose status is no longer in `overwrite` when its text is ready (a reviewer got there
    first) is left as it is. A `report` passed in (a job of several describers) is added to,
    its `total` being the whole job's."""
    config = config or VSGConfig()
    report = report if report is not None else CaptionJobReport(total=len(ids))
    default = untyped_template(ws)
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
                    written = ws.set_caption(item.id, cap.text, prov, status="draft", only_if=overwrite,
                                             change_id=change_id)
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


# ---- one describer per template -------------------------------------------------------------
def workspace_describer(ws: Workspace) -> Describer | None:
    """The workspace default describer (the settings the Captions tab saves), if one is set."""
    backend = ws.get_setting("caption_backend")
    if backend not in BACKENDS:
        return None
    return Describer(backend, ws.get_setting("caption_model") or None, ws.get_setting("caption_url") or None)


def template_describer(tmpl: ModalityTemplate) -> Describer | None:
    return Describer(tmpl.backend, tmpl.model, tmpl.url) if tmpl.backend else None


def group_by_describer(
    ws: Workspace, ids: list[int], template: str | None = None, explicit: Describer | None = None
) -> list[DescriberGroup]:
    """`ids` grouped by the describer that captions them, in order of first appearance: the
    job's `explicit` choice, else the image's template's, else the workspace default, else
    offline. The image's template is found as `caption_workspace` finds it; ids no longer in
    the workspace are left out."""
    if explicit is not None:
        return [DescriberGroup(explicit, list(ids), ["the job's choice"])] if ids else []
    default_name = untyped_template(ws)
    fallback = workspace_describer(ws)
    groups: dict[Describer, DescriberGroup] = {}
    templates: dict[str, ModalityTemplate] = {}
    for item in ws.query(Filter(ids=list(ids)), limit=None):
        name = template or item.modality or default_name
        if name not in templates:
            templates[name] = ws.get_template(name)
        describer, source = _resolve(templates[name], fallback)
        group = groups.setdefault(describer, DescriberGroup(describer))
        group.ids.append(item.id)
        if source not in group.sources:
            group.sources.append(source)
    order = {i: k for k, i in enumerate(ids)}
    for group in groups.values():
        group.ids.sort(key=order.__getitem__)
    return sorted(groups.values(), key=lambda g: order[g.ids[0]])


def _resolve(tmpl: ModalityTemplate, fallback: Describer | None) -> tuple[Describer, str]:
    own = template_describer(tmpl)
    if own is not None:
        return own, f"template {tmpl.name!r}"
    if fallback is not None:
        return fallback, "the workspace default"
    return OFFLINE, "the offline default"


def open_captioner(
    describer: Describer,
    sampling: SamplingConfig | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    api_key: str | None = None,
) -> Captioner:
    """Load the captioner of `describer`, passing each backend only the options it takes."""
    kwargs: dict = {}
    if sampling is not None:
        kwargs["sampling"] = sampling
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if describer.backend == "transformers" and device:
        kwargs["device"] = device
    if describer.backend == "openai":
        kwargs.update(base_url=describer.url, api_key=api_key)
    return captioning.make_captioner(describer.backend, describer.model, **kwargs)


def caption_by_describer(
    ws: Workspace,
    groups: list[DescriberGroup],
    load: Callable[[Describer], Captioner] = open_captioner,
    template: str | None = None,
    tokenizer=None,
    config: VSGConfig | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: tuple[str, ...] = ("draft",),
    simplify_with_captioner: bool = False,
    on_group: Callable[[DescriberGroup], None] | None = None,
    action: str = "caption batch",
) -> CaptionJobReport:
    """Caption each group with its own captioner: load it, caption the group with
    `caption_workspace` (all its guarantees hold), close it, then the next group. With
    `simplify_with_captioner` each captioner also shortens long captions (`.simplify`).
    Everything written is one change of the workspace (`action`), undone in one step.
    Errors name the describer and where it came from."""
    config = config or VSGConfig()
    report = CaptionJobReport(total=sum(len(g.ids) for g in groups))
    who = ", ".join(dict.fromkeys(str(g.describer) for g in groups))
    change_id = ws.begin_change(action, f"({report.total} image(s), {who})" if report.total != 1 else f"({who})")
    for group in groups:
        if on_group:
            on_group(group)
        where = f"{group.describer} ({', '.join(group.sources)})"
        try:
            captioner = load(group.describer)
        except (CaptionerError, ValueError) as e:
            saved = f" ({report.done} of {report.total} captioned and saved; rerun with --only-missing to continue)"
            kind = CaptionerError if isinstance(e, CaptionerError) else ValueError
            raise kind(f"{where}: {e}" + (saved if report.done else "")) from e
        with captioner:
            cfg = replace(config, simplifier=captioner.simplify) if simplify_with_captioner else config
            try:
                caption_workspace(ws, captioner, group.ids, template=template, tokenizer=tokenizer, config=cfg,
                                  progress=progress, overwrite=overwrite, report=report, change_id=change_id)
            except CaptionerError as e:
                raise CaptionerError(f"{where}: {e}") from e
    return report
