"""Data tab: bring images into the workspace (upload, zip, DICOM, folder, HF dataset, demo),
browse them by label and split a page at a time, then organise them (labels, splits, removal;
`medart.ui.organise`) and export or share the captions (`medart.ui.data_share`)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import gradio as gr

from captioning.templates import BUILTIN_TEMPLATES
from medart.assets import DEMO_DIR
from medart.fileio import atomic_write_text, read_jsonl
from medart.ui import data_share, organise, pictures
from medart.ui.widgets import on_page_load, refused_beside, said_refusal
from medart.workspace import SPLITS, Filter

REJECT_HEADERS = ["file", "reason"]
PAGE = 60  # thumbnails per gallery page
ALL, NO_LABEL = "all", "(no label)"


def demo_captions(label: str) -> list[Path]:
    """A metadata.jsonl of the shipped demo's captions of one class (public text, rewritten in the
    temporary folder each time), so that importing a class brings its captions and says nothing
    of the other class's rows."""
    rows = [r for r in read_jsonl(DEMO_DIR / "metadata.jsonl") if r.get("label") == label]
    path = Path(tempfile.gettempdir()) / "medart-demo-captions" / label / "metadata.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return [path]


def import_demo(ws) -> tuple:
    """The shipped demo images, by class, with the captions of the demo's metadata.jsonl (as the
    command line's `medart import assets/demo` brings them); the last two images of each class go
    to the held-out `test` split for evaluation. Images already in the workspace are left as they
    are (label, split and caption): loading it again changes nothing."""
    from medart.workspace.importers import import_paths

    reports = []
    for label in ("fundus", "histology"):
        files = sorted(DEMO_DIR.glob(f"{label}_*.jpg"))
        report = import_paths(ws, [*files, *demo_captions(label)], label=label, modality=label)
        reports.append(report)
        last = {f.name for f in files[-2:]}
        held_out = [i.id for i in ws.query(Filter(ids=report.added), limit=None) if i.original_name in last]
        if held_out:
            ws.set_split(held_out, "test")
    return reports


def summarise(reports) -> tuple[str, list[list]]:
    added = sum(len(r.added) for r in reports)
    dup = sum(len(r.duplicates) for r in reports)
    rejected = [[x.name, x.reason] for r in reports for x in r.rejected]
    rejected += [[n, f"duplicate of {o}"] for r in reports for n, o in r.duplicates]
    rejected += [[x.name, f"skipped: {x.reason}"] for r in reports for x in r.skipped]
    n_skipped = sum(len(r.skipped) for r in reports)
    captions = sum(r.captions for r in reports)
    present = sum(len(set(r.present)) for r in reports)
    n_rejected = len([x for r in reports for x in r.rejected])
    if not (added or dup or n_rejected) and any(r.empty for r in reports):
        head = next(r.headline() for r in reports if r.empty)  # "nothing imported: the zip holds no images"
        text = f"**{head[0].upper()}{head[1:]}.**"
    else:
        text = (f"**Imported {added} image(s)**, {captions} with a caption from their metadata or .txt file, "
                f"{dup} duplicate(s)" + (f" (**{present} already in the workspace, left as they are**: label, split "
                                         "and caption unchanged)" if present else "") + f", {n_rejected} rejected"
                + (f", {n_skipped} skipped (not images)." if n_skipped else "."))
    notices = [n for r in reports for n in r.notices(allow="'Allow images that may show burned-in patient data'")]
    text += "".join(f"\n\n⚠ {n}" for n in notices)  # seen before training: folder labels, burned-in images
    return text, rejected


def browse_filter(label: str | None = ALL, split: str | None = ALL) -> Filter:
    """The gallery's filter: "all" does not filter, "(no label)" means unlabelled images."""
    return Filter(label=None if label in (None, "", ALL) else "" if label == NO_LABEL else label,
                  split=None if split in (None, "", ALL) else split)


def workspace_view(studio, label: str | None = ALL, split: str | None = ALL, page=1) -> tuple[str, list, int, int]:
    """(summary Markdown, gallery page, page shown, number of pages) for the chosen label and split."""
    flt = browse_filter(label, split)
    with studio.workspace() as ws:
        s = ws.stats()
        n = ws.count(flt)
        pages = max(1, math.ceil(n / PAGE))
        page = min(max(1, int(page or 1)), pages)
        items = ws.query(flt, offset=(page - 1) * PAGE, limit=PAGE)
        # "validation" would not fit under a thumbnail
        gallery = pictures.thumbnails(items, lambda i: f"#{i.id} {i.split.replace('validation', 'val')}")
    labels = ", ".join(f"{k or '(none)'}: {v}" for k, v in s["labels"].items()) or "–"
    shown = f"{(page - 1) * PAGE + 1}–{(page - 1) * PAGE + len(items)} of {n}" if items else f"none of {n}"
    md = (f"**Workspace:** {s['total']} image(s) · draft {s['draft']} · edited {s['edited']} · "
          f"approved {s['approved']} · rejected {s['rejected']} · without caption {s['missing']}  \n"
          f"**Labels:** {labels}  \n**Gallery:** {shown}" + (f" (page {page} of {pages})" if pages > 1 else ""))
    return md, gallery, page, pages


def label_choices(studio) -> list[str]:
    with studio.workspace() as ws:
        labels = ws.stats()["labels"]
    return [ALL] + sorted(k for k in labels if k) + ([NO_LABEL] if "" in labels else [])


# ---- the import buttons: (studio, inputs) -> import reports ------------------------------------------
def load_demo(studio) -> list:
    with studio.workspace() as ws:
        return import_demo(ws)


def _import(studio, paths, label, modality, split, allow_burned_in, anonymous=False) -> list:
    from medart.workspace.importers import import_paths

    with studio.workspace() as ws:
        return [import_paths(ws, paths, label=label or None, modality=modality or None, split=split or "train",
                             allow_burned_in=bool(allow_burned_in), anonymous=anonymous)]


@pictures.deleting_uploads
def import_uploads(studio, paths, label, modality, split, allow_burned_in) -> list:
    """Uploaded files (Gradio accepts only files uploaded by this client here); their names may
    carry patient data, so they are neither stored nor shown (files are named by position and kind)."""
    if not paths:
        raise ValueError("choose files to import first")
    return _import(studio, [paths] if isinstance(paths, str) else paths, label, modality, split, allow_burned_in,
                   anonymous=True)


def import_folder(studio, folder, label, modality, split, allow_burned_in) -> list:
    """A folder on the server, inside the roots the owner allows (else one line, no listing)."""
    return _import(studio, [studio.paths.folder(folder, "folder")], label, modality, split, allow_burned_in)


def import_hf_dataset(studio, name, ds_split, label, modality, split="train") -> list:
    """Split `ds_split` of a Hugging Face dataset id, or of an imagefolder inside the allowed roots,
    into the workspace split `split`."""
    from medart.workspace.importers import import_dataset

    if not (name or "").strip():
        raise ValueError("give a dataset id (owner/name) or a local imagefolder path")
    source = studio.paths.dataset(name, "dataset")
    with studio.workspace() as ws:
        return [import_dataset(ws, source, split=ds_split or "train", label=label or None, modality=modality or None,
                               into=split or "train", shown=name.strip())]


def build(studio):
    modalities = [""] + list(BUILTIN_TEMPLATES)
    with gr.Tab("Data", id="data") as tab:
        gr.Markdown("Import the images to fine-tune on. Every image is stored once, stripped of "
                    "metadata (patient data included). Captions come next, in the Captions tab.")
        with gr.Row():
            with gr.Column(scale=1):
                demo_btn = gr.Button("Load demo images", variant="primary", elem_id="load-demo")
                files = gr.File(label="Images, zip or DICOM files (+ metadata.jsonl / .csv / .txt captions)", file_count="multiple", type="filepath",
                                elem_id="import-upload")
                with gr.Row():
                    label = gr.Textbox(label="Class label (when the files bring none; DICOM takes only this)",
                                       elem_id="import-label")
                    modality = gr.Dropdown(modalities, value="", label="Modality (caption template)")
                    split = gr.Dropdown(list(SPLITS), value="train", label="Split")
                burned = gr.Checkbox(False, label="Allow images that may show burned-in patient data (DICOM "
                                     "secondary captures, ultrasound, Burned In Annotation YES); check them after",
                                     elem_id="import-burned-in")
                upload_btn = gr.Button("Import uploaded files", elem_id="import-files")
                with gr.Accordion("From a folder or a Hugging Face dataset", open=False):
                    folder = gr.Textbox(label="Folder on the server (inside the folders the app's owner allows; "
                                        "with .txt sidecars or metadata.jsonl)", elem_id="import-folder")
                    folder_btn = gr.Button("Import folder")
                    dataset = gr.Textbox(label="Hugging Face dataset id or imagefolder on the server",
                                         elem_id="import-dataset")
                    ds_split = gr.Textbox(value="train", label="Dataset split")
                    dataset_btn = gr.Button("Import dataset")
            with gr.Column(scale=1):
                summary = gr.Markdown(elem_id="import-summary")
                rejected = gr.Dataframe(headers=REJECT_HEADERS, value=[], label="Not imported (with reasons)",
                                        interactive=False, wrap=True, column_widths=["30%", "70%"],
                                        elem_id="import-rejected")
                stats = gr.Markdown(elem_id="workspace-stats")
                gallery = gr.Gallery(label="Workspace", columns=5, height=260, allow_preview=False,
                                     elem_id="data-gallery")
                with gr.Row():
                    label_f = gr.Dropdown([ALL], value=ALL, label="Label", elem_id="data-label-filter", scale=3,
                                          min_width=100)
                    split_f = gr.Dropdown([ALL, *SPLITS], value=ALL, label="Split", elem_id="data-split-filter",
                                          scale=3, min_width=100)
                with gr.Row(elem_classes="pager"):
                    prev_b = gr.Button("◀ Page", elem_id="data-prev", size="sm", scale=1, min_width=80)
                    page = gr.Number(1, precision=0, minimum=1, show_label=False, container=False,
                                     elem_id="data-page", scale=1, min_width=60)
                    next_b = gr.Button("Page ▶", elem_id="data-next", size="sm", scale=1, min_width=80)

        def view(label_, split_, page_):
            """(stats, gallery, page, label choices) for the browsing controls."""
            md, gal, shown, _ = workspace_view(studio, label_, split_, page_)
            return md, gal, shown, gr.update(choices=label_choices(studio))

        browse_in, browse_out = [label_f, split_f, page], [stats, gallery, page, label_f]
        split_table = organise.build(studio, view, browse_out, browse_in, gallery=gallery)
        data_share.build(studio)

        def finish(reports, *browse):
            text, rows = summarise(reports)
            return (text, rows, *view(*browse), organise.split_view(studio))

        outputs = [summary, rejected, *browse_out, split_table, files]

        def finished(action):
            @refused_beside
            def handler(*args):
                *inputs, label_, split_, page_ = args
                done = finish(action(studio, *inputs), label_, split_, page_)
                return (*done, None if action is import_uploads else gr.skip())  # imported files leave the box

            return handler

        # progress on the summary alone (the gallery, counts and filters take no part); a refusal is
        # then said in the summary, where the result would have been
        said = {"show_progress_on": [summary]}
        refusal = {"fn": lambda: said_refusal("**Not imported:** "), "outputs": [summary], "show_progress": "hidden"}
        demo_btn.click(finished(load_demo), browse_in, outputs, api_name="load_demo", **said).failure(**refusal)
        upload_btn.click(finished(import_uploads), [files, label, modality, split, burned, *browse_in], outputs,
                         api_name="import_files", **said).failure(**refusal)
        folder_btn.click(finished(import_folder), [folder, label, modality, split, burned, *browse_in], outputs,
                         api_name="import_folder", **said).failure(**refusal)
        dataset_btn.click(finished(import_hf_dataset), [dataset, ds_split, label, modality, split, *browse_in], outputs,
                          api_name="on_dataset", **said).failure(**refusal)
        quiet = {"show_progress": "hidden"}
        gr.on([label_f.input, split_f.input], lambda lab, spl: view(lab, spl, 1), [label_f, split_f], browse_out,
              **quiet)  # a new filter starts at its first page
        page.submit(view, browse_in, browse_out, **quiet)
        prev_b.click(lambda lab, spl, p: view(lab, spl, (p or 1) - 1), browse_in, browse_out, **quiet)
        next_b.click(lambda lab, spl, p: view(lab, spl, (p or 1) + 1), browse_in, browse_out, **quiet)
        tab.select(lambda *b: (*view(*b), organise.split_view(studio)), browse_in, [*browse_out, split_table])
        on_page_load(lambda *b: view(*b), browse_out, browse_in)
    return tab, [stats, gallery]
