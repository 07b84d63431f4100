"""Export captions for training: HF imagefolder, the authors' metadata.csv, or .txt sidecars.

- `imagefolder`: one folder per split (`train/`, `validation/`, `test/`, those that have
  images), each with its images and `metadata.jsonl` (`file_name`, `text`, `label`), loadable
  with `datasets.load_dataset("imagefolder", data_dir=OUT)` as a DatasetDict. Training reads
  `train/` only, so held-out images never leak into a run.
- `csv`: the images with `metadata.csv` (`file_name`, `text`, `label`) in the same folder,
  as the authors' training code reads it.
- `txt`: each image with a `.txt` sidecar of the same stem.

The flat formats (csv, txt) export the `train` split unless asked for others; with several
splits each goes into its own subfolder.

Files are named by image id (`000042.png`); original file names, which can carry patient
names, are left out unless `keep_names=True`.

Only approved captions are exported unless `approved_only=False` (then every caption with
text that is not rejected). Each export also writes `manifest.json` (counts, filters and a
hash over file names and texts) so a training run knows exactly what it trained on. The
export is built in a temporary folder and renamed into place: it is complete or absent.
Sharing an export on the Hugging Face Hub, with its dataset card, is `medart.sharing.dataset`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from medart.fileio import atomic_dir, slugify
from medart.workspace import SPLITS, Filter, Workspace, check_split

FORMATS = ("imagefolder", "csv", "txt")


@dataclass
class ExportReport:
    path: Path
    format: str
    count: int
    skipped_empty: int
    digest: str
    per_split: dict[str, int]


def _file_name(item, keep_names: bool) -> str:
    """`000042.png`; with keep_names, `000042-<original stem>.png` (original names can carry
    patient names, so they stay out of exports unless asked for)."""
    if not keep_names:
        return f"{item.id:06d}.png"
    stem = slugify(Path(item.original_name).stem, keep="-", sep="_", max_len=40)
    return f"{item.id:06d}-{stem or 'image'}.png"


def export(
    ws: Workspace,
    out: str | Path,
    fmt: str = "imagefolder",
    approved_only: bool = True,
    flt: Filter | None = None,
    overwrite: bool = False,
    keep_names: bool = False,
    splits: list[str] | tuple[str, ...] | None = None,
) -> ExportReport:
    """Write an export of `ws` to `out` (see the module docstring). `splits`: which splits to
    export (default: all for imagefolder, `train` for csv and txt)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if splits is None:
        splits = SPLITS if fmt == "imagefolder" else ("train",)
    for split in splits:
        check_split(split)
    splits = [s for s in SPLITS if s in splits]
    if not splits:
        raise ValueError(f"choose at least one split to export: {', '.join(SPLITS)}")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; choose a new --out folder or pass --overwrite")
    base = flt or Filter()
    statuses = ["approved"] if approved_only else ["draft", "edited", "approved"]
    if base.status:
        wanted = [base.status] if isinstance(base.status, str) else list(base.status)
        statuses = [s for s in statuses if s in wanted]
    items = ws.query(Filter(**{**base.__dict__, "status": statuses}), limit=None) if statuses else []
    items = [i for i in items if i.split in splits]
    skipped = sum(1 for i in items if not i.text.strip())
    items = [i for i in items if i.text.strip()]
    if not items:
        what = "approved captions" if approved_only else "captions with text"
        raise ValueError(
            f"nothing to export: the workspace {ws.root} has no {what} in the split(s) {', '.join(splits)} "
            "matching the filter. Approve captions (`python -m medart approve ...`), export drafts too with "
            "--all, or choose other splits with --split"
        )
    by_split = {s: [i for i in items if i.split == s] for s in splits}
    by_split = {s: group for s, group in by_split.items() if group}
    rows = []
    digest = hashlib.sha256()
    with atomic_dir(out) as tmp:
        for split, group in by_split.items():
            nested = fmt == "imagefolder" or len(splits) > 1
            rows += _write_split(tmp / split if nested else tmp, split, group, fmt, keep_names, digest)
        manifest = {
            "format": fmt,
            "count": len(rows),
            "splits": {split: len(group) for split, group in by_split.items()},
            "approved_only": approved_only,
            "statuses": statuses,
            "labels": sorted({r["label"] for r in rows}),
            "sha256": digest.hexdigest(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
    return ExportReport(out, fmt, len(rows), skipped, digest.hexdigest(),
                        {split: len(group) for split, group in by_split.items()})


def _write_split(folder: Path, split: str, group: list, fmt: str, keep_names: bool, digest) -> list[dict]:
    """One split's images and captions in `folder` as `fmt` wants them; its metadata rows."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in group:
        name = _file_name(item, keep_names)
        shutil.copyfile(item.image_path, folder / name)
        row = {"file_name": name, "text": item.text.strip(), "label": item.label or ""}
        written.append(row)
        digest.update(json.dumps([split, name, item.sha256, row["text"], row["label"]]).encode())
        if fmt == "txt":
            (folder / name).with_suffix(".txt").write_text(row["text"] + "\n", encoding="utf-8")
    if fmt == "imagefolder":
        with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
            for row in written:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "text", "label"])
            writer.writeheader()
            writer.writerows(written)
    return written


def describe_export(report: ExportReport) -> str:
    """One line for the CLI and the app."""
    parts = ", ".join(f"{split} {n}" for split, n in report.per_split.items())
    line = f"exported {report.count} caption(s) ({parts}) as {report.format} to {report.path}"
    if report.skipped_empty:
        line += f" ({report.skipped_empty} without text left out)"
    return line
