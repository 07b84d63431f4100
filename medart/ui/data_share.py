"""The Data tab's "Export and share" section: what `python -m medart export` and `python -m medart
push-dataset` do, from the page.

Export writes the captions (approved only, unless asked otherwise) as an imagefolder, a CSV or
.txt sidecars into a folder on the server, inside the roots the app's owner allows
(`medart.workspace.exports.export`, the CLI's own function). Share builds the same folder as
`push-dataset` (`medart.sharing.push_dataset`): a dry run writes it under the home folder's
`hub-dry-runs/` and lists its files, sending nothing; a push needs a Hugging Face token. A
refusal is one plain line beside the button pressed (`widgets.beside`), no toast, and no
component shows an error it took no part in.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from medart.sharing import hub_token, login_help, push_dataset
from medart.sharing.hub import check_repo_id
from medart.ui.widgets import beside, pushed_markdown
from medart.workspace import Filter
from medart.workspace.exports import FORMATS, describe_export, export


def export_folder(studio, value: str | None) -> Path:
    """The folder an export goes to, inside the allowed roots: a relative one inside the app's home
    folder; it and its missing parents are created by the export."""
    text = (value or "").strip()
    if not text:
        raise ValueError("type the folder on this machine to export into first (it is created if absent)")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = studio.home / path
    return studio.paths.check(str(path), "folder to export into", action="write to")


def check_export(studio, fmt: str, folder: str | None, overwrite: bool) -> Path:
    """The export's folder, when the export can run; a ValueError saying what to do otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"choose a format: {', '.join(FORMATS)}")
    out = export_folder(studio, folder)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{folder!r} is a file: choose a folder to export into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{folder!r} is not empty: choose a new folder, or tick 'Replace what is there'")
    return out


def export_captions(studio, fmt: str, folder: str | None, approved_only: bool, label: str | None,
                    overwrite: bool) -> str:
    """The Export button: Markdown of what was written where (the CLI's `export` line)."""
    out = check_export(studio, fmt, folder, overwrite)
    with studio.workspace() as ws:
        report = export(ws, out, fmt=fmt, approved_only=bool(approved_only), flt=Filter(label=(label or "").strip()
                                                                                        or None),
                        overwrite=bool(overwrite))
    line = describe_export(report)
    return f"**{html.escape(line[:1].upper() + line[1:])}.**" if report.count else (
        f"**Nothing to export:** {html.escape(line)}. Approve captions in the Captions tab first, or untick "
        "'Approved captions only'.")


def dataset_dry_run_folder(studio, repo: str) -> Path:
    """Where the app writes a dataset's dry run (replaced by the next one of the same repository)."""
    return studio.home / "hub-dry-runs" / ("dataset-" + check_repo_id(repo).replace("/", "--"))


def check_share(studio, repo: str | None, dry_run: bool) -> str:
    """The repository id of a push or dry run that can start; a ValueError saying what to do otherwise."""
    if not studio.sharing_allowed:
        raise ValueError("sharing on the Hugging Face Hub is turned off on this shared Space: duplicate it to share")
    repo_id = check_repo_id(repo or "")
    if not dry_run and not hub_token():
        raise ValueError(f"pushing to the Hugging Face Hub needs a token: {login_help()}, then reload this page. "
                         "A dry run works without one.")
    return repo_id


def share_dataset(studio, repo: str | None, private: bool, approved_only: bool, label: str | None, dry_run: bool,
                  progress=None) -> str:
    """The dataset's Dry run and Push buttons: Markdown of what was written or sent."""
    repo_id = check_share(studio, repo, dry_run)
    out = dataset_dry_run_folder(studio, repo_id) if dry_run else None
    with studio.workspace() as ws:
        result = push_dataset(ws, repo_id, private=bool(private), dry_run=bool(dry_run), out=out, overwrite=True,
                              approved_only=bool(approved_only), flt=Filter(label=(label or "").strip() or None),
                              progress=progress)
    return pushed_markdown(result, "dataset card")


def build(studio) -> None:
    """The section, inside the Data tab's layout."""
    with gr.Accordion("Export and share the captions", open=False, elem_id="data-export"):
        gr.Markdown("The captions with their images, as the command line's `medart export` and `medart "
                    "push-dataset` write them: files named by image id, never by their original names.")
        with gr.Row():
            approved = gr.Checkbox(True, label="Approved captions only", elem_id="export-approved",
                                   info="untick: every caption with text that is not rejected")
            label = gr.Textbox(label="Only this label (empty: all)", elem_id="export-label")
        with gr.Row():
            fmt = gr.Dropdown(list(FORMATS), value="imagefolder", label="Format", elem_id="export-format",
                              info="imagefolder: a folder per split with metadata.jsonl (what training reads); "
                                   "csv: one metadata.csv; txt: a .txt caption beside each image")
            folder = gr.Textbox(label="Folder on this machine to export into", elem_id="export-folder",
                                info="created if absent, with its parents; a relative path (exports/mydata) is "
                                     "inside the app's home folder, where its runs are kept; inside the folders "
                                     "the app's owner allows")
            overwrite = gr.Checkbox(False, label="Replace what is there", elem_id="export-overwrite")
        export_b = gr.Button("Export", elem_id="export-go")
        export_md = gr.Markdown(elem_id="export-result")
        with gr.Row():
            repo = gr.Textbox(label="Hugging Face dataset repository (OWNER/NAME)", elem_id="dataset-repo",
                              placeholder="your-name/medart-captions", scale=3)
            private = gr.Checkbox(True, label="Private", elem_id="dataset-private")
        with gr.Row():
            dry_b = gr.Button("Dry run (write the folder, send nothing)", elem_id="dataset-dry-run")
            push_b = gr.Button("Push dataset", variant="primary", elem_id="dataset-push")
        share_note = gr.Markdown(elem_id="dataset-note")  # a refusal, beside the buttons
        share_md = gr.Markdown(elem_id="dataset-result")

    # a refusal is one line beside the button pressed (the export's result line, the dataset's note):
    # no toast; the last dry-run result stays readable
    def on_export(fmt_, folder_, approved_, label_, overwrite_):
        check_export(studio, fmt_, folder_, overwrite_)
        return export_captions(studio, fmt_, folder_, approved_, label_, overwrite_)

    beside(export_b.click, on_export, [fmt, folder, approved, label, overwrite], [export_md], export_md,
           api_name="export_captions")

    def sharing(dry_run: bool):
        def on_share(repo_, private_, approved_, label_, progress_=gr.Progress()):
            check_share(studio, repo_, dry_run)
            return share_dataset(studio, repo_, private_, approved_, label_, dry_run, lambda m: progress_(0, desc=m))

        return on_share

    for button, dry_run, api in ((dry_b, True, "dataset_dry_run"), (push_b, False, "dataset_push")):
        beside(button.click, sharing(dry_run), [repo, private, approved, label], [share_md], share_note, api_name=api,
               show_progress_on=[share_note])
