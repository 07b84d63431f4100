"""A workspace's captions as a Hugging Face dataset: `python -m medart push-dataset --repo OWNER/NAME`.

What is uploaded is the imagefolder export (`medart.workspace.exports.export`: approved
captions only unless asked otherwise, files named by image id, never by their original names)
with a dataset card as README.md:

    README.md                      the dataset card (huggingface_hub.DatasetCard)
    manifest.json                  the export's counts and hash
    train/ validation/ test/       each with its images and metadata.jsonl (file_name, text, label)

It loads with `datasets.load_dataset("OWNER/NAME")` on the hub and with
`load_dataset("imagefolder", data_dir=DIR)` from a dry run's folder. The card gives the counts
per split and label, how the captions were made, a research-only note and leaves the licence
for the data's owner to set.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

from huggingface_hub import DatasetCard, DatasetCardData

from medart.fileio import read_jsonl
from medart.model_card import table_cell
from medart.profiles import looks_like_hub_id
from medart.sharing.hub import ShareResult, check_repo_id, share
from medart.workspace import SPLITS, Filter, Workspace
from medart.workspace.exports import ExportReport, export


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _rows(folder: Path) -> dict[str, list[dict]]:
    """{split: metadata rows} of an imagefolder export."""
    found = {}
    for split in SPLITS:
        meta = folder / split / "metadata.jsonl"
        if meta.is_file():
            found[split] = read_jsonl(meta)
    return found


def _describer(provenance: dict) -> str:
    """Who wrote a caption, without local paths (a model folder's path can carry names)."""
    backend = provenance.get("backend")
    if not backend:
        return "brought with the image at import, or typed by a person"
    if backend == "offline":
        return "the Visual Symptom Generator's offline template (no model)"
    model = str(provenance.get("model") or "")
    named = f" `{model}`" if looks_like_hub_id(model) else " (a local model)" if model else ""
    return f"the Visual Symptom Generator with the {backend} describer{named}"


def dataset_card(ws: Workspace, folder: Path, repo_id: str, approved_only: bool = True) -> DatasetCard:
    """The card of the imagefolder export in `folder`, taken from `ws`."""
    rows = _rows(folder)
    total = sum(len(r) for r in rows.values())
    labels = sorted({r.get("label") or "" for split in rows.values() for r in split})
    ids = [int(r["file_name"].split(".")[0].split("-")[0]) for split in rows.values() for r in split]
    items = ws.query(Filter(ids=ids), limit=None) if ids else []
    writers = Counter(_describer(item.provenance or {}) for item in items)
    modalities = Counter(item.modality or "not set" for item in items)
    data = DatasetCardData(task_categories=["text-to-image"], tags=["medical-imaging", "medart"],
                           size_categories=[_size_category(total)], pretty_name=repo_id.split("/")[1])
    per_label = ["| label | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for label in labels:
        counts = [sum(1 for r in group if (r.get("label") or "") == label) for group in rows.values()]
        per_label.append(f"| {table_cell(label) or '(none)'} | " + " | ".join(str(n) for n in counts) + " |")
    which = "approved captions only" if approved_only else "every caption with text that was not rejected"
    body = "\n".join([
        f"# {repo_id.split('/')[1]}", "",
        "**Research use only; not for diagnosis.** These images and captions are for research on generating and "
        "describing medical images. They are not a medical device and must not be used for diagnosis, treatment "
        "or any clinical decision.", "",
        "**Licence: not set.** The owner of this dataset must add a `license:` field to this card's metadata: "
        "what may be shared depends on where the images come from and what their owners and the patients' "
        "consent allow. Until then, no licence is granted.", "",
        "## Contents", "",
        f"{total} images, each with one English caption (`text`) and a class `label`, exported from a "
        f"Med-Art Studio workspace ({which}). "
        "Each split is a folder with its images and `metadata.jsonl`:", "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id}")',
        "```", "",
        "| split | images |", "|---|---:|",
        *[f"| {split} | {len(group)} |" for split, group in rows.items()], "",
        *per_label, "",
        "## How the captions were made", "",
        "Captions were written by the following and then reviewed in Med-Art Studio"
        + (", where a person approved every one:" if approved_only else ":"), "",
        *[f"- {who}: {n}" for who, n in writers.most_common()], "",
        "Modality templates: " + ", ".join(f"{m} ({n})" for m, n in modalities.most_common()) + ".", "",
        "## Privacy", "",
        "Files are named by image id; original file names were left out. Image metadata (EXIF, DICOM headers) was "
        "stripped when the images were imported. Text burned into the pixels is not removed by that: look at the "
        "images before making this dataset public.", "",
    ])
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def build_dataset_folder(ws: Workspace, folder: Path, repo_id: str, approved_only: bool = True,
                         flt: Filter | None = None) -> ExportReport:
    """Fill `folder` with what a dataset push uploads (the module docstring's layout)."""
    staging = folder / ".export"
    report = export(ws, staging, fmt="imagefolder", approved_only=approved_only, flt=flt, keep_names=False)
    for path in staging.iterdir():
        path.rename(folder / path.name)
    shutil.rmtree(staging)
    report.path = folder
    (folder / "README.md").write_text(str(dataset_card(ws, folder, repo_id, approved_only)), encoding="utf-8")
    return report


def push_dataset(ws: Workspace, repo_id: str, private: bool = True, dry_run: bool = False,
                 out: str | Path | None = None, overwrite: bool = False, token: str | None = None,
                 approved_only: bool = True, flt: Filter | None = None,
                 progress: Callable[[str], None] | None = None) -> ShareResult:
    """Push the workspace's export with its card to the dataset repository `repo_id` (private by
    default); with `dry_run`, write that folder to `out` and send nothing."""
    repo_id = check_repo_id(repo_id)
    return share(lambda folder: build_dataset_folder(ws, folder, repo_id, approved_only, flt), repo_id, "dataset",
                 private=private, dry_run=dry_run, out=out, overwrite=overwrite, token=token, progress=progress)
