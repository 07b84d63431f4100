"""Data tab: bring images into the workspace (upload, zip, DICOM, folder, HF dataset, demo),
then organise them (labels, splits, removal; `medart.ui.organise`)."""

from __future__ import annotations

import gradio as gr

from captioning.templates import BUILTIN_TEMPLATES
from medart.studio import DEMO_DIR
from medart.ui import organise
from medart.ui.widgets import user_errors

REJECT_HEADERS = ["file", "reason"]


def import_demo(ws) -> tuple:
    """The shipped demo images, by class, as drafts (no captions: the Captions tab writes them);
    the last two images of each class go to the held-out `test` split for evaluation."""
    from medart.importers import import_paths

    reports = []
    for label in ("fundus", "histology"):
        files = sorted(DEMO_DIR.glob(f"{label}_*.jpg"))
        reports.append(import_paths(ws, files, label=label, modality=label))
        held_out = [i.id for i in ws.query(limit=None) if i.original_name in {f.name for f in files[-2:]}]
        ws.set_split(held_out, "test")
    if ws.get_setting("modality") is None:
        ws.set_setting("modality", "custom")
    return reports


def summarise(reports) -> tuple[str, list[list]]:
    added = sum(len(r.added) for r in reports)
    dup = sum(len(r.duplicates) for r in reports)
    rejected = [[x.name, x.reason] for r in reports for x in r.rejected]
    rejected += [[n, f"duplicate of {o}"] for r in reports for n, o in r.duplicates]
    text = f"**Imported {added} image(s)**, {dup} duplicate(s), {len([x for r in reports for x in r.rejected])} rejected."
    return text, rejected


def workspace_view(studio):
    ws = studio.workspace()
    try:
        s = ws.stats()
        items = ws.query(limit=64)
        # "validation" would not fit under a thumbnail
        gallery = [(str(i.thumb_path), f"#{i.id} {i.split.replace('validation', 'val')}") for i in items]
    finally:
        ws.close()
    labels = ", ".join(f"{k or '(none)'}: {v}" for k, v in s["labels"].items()) or "–"
    md = (f"**Workspace:** {s['total']} image(s) · draft {s['draft']} · edited {s['edited']} · "
          f"approved {s['approved']} · rejected {s['rejected']} · without caption {s['missing']}  \n"
          f"**Labels:** {labels}")
    return md, gallery


def build(studio):
    modalities = [""] + list(BUILTIN_TEMPLATES)
    with gr.Tab("Data", id="data") as tab:
        gr.Markdown("Import the images to fine-tune on. Every image is stored once, stripped of "
                    "metadata (patient data included). Captions come next, in the Captions tab.")
        with gr.Row():
            with gr.Column(scale=1):
                demo_btn = gr.Button("Load demo images", variant="primary", elem_id="load-demo")
                files = gr.File(label="Images, zip archives or DICOM files", file_count="multiple", type="filepath")
                with gr.Row():
                    label = gr.Textbox(label="Class label (when the files bring none)", elem_id="import-label")
                    modality = gr.Dropdown(modalities, value="", label="Modality (caption template)")
                    split = gr.Dropdown(["train", "validation", "test"], value="train", label="Split")
                upload_btn = gr.Button("Import uploaded files", elem_id="import-files")
                with gr.Accordion("From a folder or a Hugging Face dataset", open=False):
                    folder = gr.Textbox(label="Folder on this machine (with .txt sidecars or metadata.jsonl)")
                    folder_btn = gr.Button("Import folder")
                    dataset = gr.Textbox(label="Hugging Face dataset id or local imagefolder")
                    ds_split = gr.Textbox(value="train", label="Dataset split")
                    dataset_btn = gr.Button("Import dataset")
            with gr.Column(scale=1):
                summary = gr.Markdown(elem_id="import-summary")
                rejected = gr.Dataframe(headers=REJECT_HEADERS, value=[], label="Not imported (with reasons)",
                                        interactive=False, wrap=True)
                stats = gr.Markdown(elem_id="workspace-stats")
                gallery = gr.Gallery(label="Workspace", columns=5, height=260, allow_preview=False)
        split_table = organise.build(studio, lambda: workspace_view(studio), [stats, gallery])

        def finish(reports):
            text, rows = summarise(reports)
            md, gal = workspace_view(studio)
            return text, rows, md, gal, organise.split_view(studio)

        outputs = [summary, rejected, stats, gallery, split_table]

        @user_errors
        def on_demo():
            ws = studio.workspace()
            try:
                return finish(import_demo(ws))
            finally:
                ws.close()

        @user_errors
        def on_paths(paths, label, modality, split):
            from medart.importers import import_paths

            if not paths:
                raise ValueError("choose files or a folder to import first")
            paths = [paths] if isinstance(paths, str) else paths
            ws = studio.workspace()
            try:
                if modality and ws.get_setting("modality") is None:
                    ws.set_setting("modality", modality)
                return finish([import_paths(ws, paths, label=label or None, modality=modality or None,
                                            split=split or "train")])
            finally:
                ws.close()

        @user_errors
        def on_dataset(name, ds_split, label, modality):
            from medart.importers import import_dataset

            if not name:
                raise ValueError("give a dataset id (owner/name) or a local imagefolder path")
            ws = studio.workspace()
            try:
                return finish([import_dataset(ws, name.strip(), split=ds_split or "train", label=label or None,
                                              modality=modality or None)])
            finally:
                ws.close()

        demo_btn.click(on_demo, outputs=outputs, api_name="load_demo")
        upload_btn.click(on_paths, [files, label, modality, split], outputs)
        folder_btn.click(on_paths, [folder, label, modality, split], outputs)
        dataset_btn.click(on_dataset, [dataset, ds_split, label, modality], outputs)
        tab.select(lambda: (*workspace_view(studio), organise.split_view(studio)),
                   outputs=[stats, gallery, split_table])
    return tab, [stats, gallery]
