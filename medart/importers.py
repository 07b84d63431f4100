"""Import images into a workspace: files, zip archives, folders, Hugging Face datasets, DICOM.

What happens to every image (documented conversions):
- PNG, JPEG, TIFF, BMP and WebP are read with Pillow; other formats are rejected. Multi-page
  files (TIFF, animated WebP) contribute their first frame.
- The EXIF orientation is applied, then all metadata (EXIF, ICC profile, text chunks) is
  dropped: the stored image is a fresh 8-bit RGB PNG built from the pixels alone.
- Grayscale and palette images become RGB by repeating the gray value. 16-bit and 32-bit
  grayscale (and float) images are rescaled linearly from their own minimum..maximum to
  0..255 (a constant image becomes black). Alpha (RGBA, LA, transparent palettes) is
  composited onto black. CMYK is converted with Pillow's CMYK->RGB conversion.
- DICOM is read with pydicom: the modality LUT (rescale slope/intercept) is applied, then
  the file's VOI window (WindowCenter/WindowWidth) when it has one, else its min..max range,
  to 8 bits; MONOCHROME1 is inverted; of a multi-frame file the middle frame is taken.
  Nothing from the DICOM header is stored except its Modality code; the original file and
  folder names (which often carry a patient's name) are replaced by `dicom-<hash>` / `dicom`.
- Every image is stored once under the hash of its pixels; a second copy is reported as a
  duplicate.

Folders and zip archives bring their captions along: a `.txt` sidecar with the image's
stem, or `metadata.jsonl` / `metadata.csv` (columns `file_name`, `text` or `caption`,
optional `label`) in the image's folder or an ancestor. The label is, in order: the
metadata's `label`, the `label` argument, the name of the image's parent folder (when it
is not the imported folder itself or a split name like `train`).

Every file that is not imported is reported with its reason (empty, corrupt, unsupported,
decompression bomb, unsafe name, duplicate, ...). An import writes its rows in one
transaction: it either completes or leaves the workspace as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medart.workspace import NewImage, Workspace

IMAGE_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".webp"}
DICOM_EXTS = {".dcm", ".dicom", ".dic"}
METADATA_NAMES = {"metadata.jsonl", "metadata.csv"}
SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "images", "imgs"}
# DICOM Modality code -> caption template (the rest: CT, MR, CR, DX, MG, US, XA, NM, PT -> radiology)
DICOM_TEMPLATES = {"ES": "endoscopy", "SM": "histology", "OP": "fundus", "XC": "custom", "GM": "custom"}
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", ".ds_store"}


@dataclass
class ImportLimits:
    max_pixels: int = 100_000_000  # larger images are treated as decompression bombs
    max_file_bytes: int = 1 << 30  # 1 GiB per file (zip members included)
    min_side: int = 8  # smaller images are rejected as too small


@dataclass
class Rejection:
    name: str
    reason: str


@dataclass
class ImportReport:
    added: list[int] = field(default_factory=list)  # new image ids
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, what it duplicates)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)  # hidden/system files, not images
    captions: int = 0  # imported images that brought a caption

    def summary(self) -> str:
        lines = [
            f"imported {len(self.added)} image(s) ({self.captions} with captions), "
            f"{len(self.duplicates)} duplicate(s), {len(self.rejected)} rejected"
        ]
        lines += [f"  duplicate: {n} (same pixels as {o})" for n, o in self.duplicates]
        lines += [f"  rejected: {r.name}: {r.reason}" for r in self.rejected]
        lines += [f"  skipped: {r.name}: {r.reason}" for r in self.skipped]
        return "\n".join(lines)


class Rejected(Exception):
    """This file cannot be imported; the message is the reason shown to the user."""


# ---- decoding ---------------------------------------------------------------------------------
def _rescale(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    a = a.astype(np.float64)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return (np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the rules in the module docstring."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _rescale(np.asarray(image))
        return Image.fromarray(np.repeat(gray[..., None], 3, -1), "RGB")
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, limits: ImportLimits) -> tuple[Image.Image, str]:
    """(RGB image without metadata, original mode) or Rejected."""
    if not data:
        raise Rejected("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Rejected(f"decompression bomb: {e}") from None
        except UnidentifiedImageError:
            raise Rejected("not a readable image (corrupt, or a format other than PNG/JPEG/TIFF/BMP/WebP)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise Rejected(f"corrupt image: {e}") from None
        if image.format not in IMAGE_FORMATS:
            raise Rejected(f"unsupported image format {image.format}; convert it to PNG or TIFF")
        w, h = image.size
        if w * h > limits.max_pixels:
            raise Rejected(
                f"decompression bomb: {w}x{h} = {w * h:,} pixels is over the limit of {limits.max_pixels:,} "
                "(raise --max-pixels if the image is genuine)"
            )
        if min(w, h) < limits.min_side:
            raise Rejected(f"too small: {w}x{h} pixels (at least {limits.min_side} on each side)")
        mode = image.mode
        try:
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Rejected(f"decompression bomb: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
            raise Rejected(f"corrupt or truncated image: {e}") from None
    return Image.frombytes("RGB", rgb.size, rgb.tobytes()), mode


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _first(value) -> float | None:
    """The first of a DICOM multi-value (or the value itself) as a float."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__getitem__"):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def decode_dicom(data: bytes, limits: ImportLimits) -> tuple[Image.Image, str, str]:
    """(RGB image, original description, modality code) or Rejected. Reads pixels and the
    display tags only; the dataset (with any patient tags) is dropped right here."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    if not data:
        raise Rejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every oddity of a broken file
            ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise Rejected(f"corrupt DICOM file: {e}") from None
    if "PixelData" not in ds:
        raise Rejected("DICOM file without an image (no PixelData); it may be a report or a plan")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > limits.max_pixels:
        raise Rejected(f"decompression bomb: {cols}x{rows} pixels is over the limit of {limits.max_pixels:,}")
    try:
        pixels = ds.pixel_array
    except Exception as e:  # pydicom raises many types for missing decoders or broken data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise Rejected(
            f"cannot decode the DICOM pixels (transfer syntax {name}): {e}. Compressed DICOM needs "
            "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`, or export uncompressed"
        ) from None
    modality = str(ds.get("Modality", "") or "")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    if samples == 3:
        rgb = pixels if pixels.dtype == np.uint8 else _rescale(pixels)
        image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8), "RGB")
        desc = f"DICOM {modality} {photometric}".strip()
    else:
        values = apply_modality_lut(pixels, ds)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            gray = _rescale(values, center - width / 2, center + width / 2)
        else:
            gray = _rescale(values)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        image = Image.fromarray(np.repeat(gray[..., None], 3, -1), "RGB")
        desc = f"DICOM {modality} {photometric} {pixels.dtype}".strip()
    del ds
    if min(image.size) < limits.min_side:
        raise Rejected(f"too small: {image.width}x{image.height} pixels")
    return image, desc, modality


# ---- sources: one list of entries for folders, zips and single files ----------------------------
@dataclass
class Entry:
    rel: PurePosixPath  # path inside the imported folder or archive
    read: Callable[[], bytes]
    size: int
    display: str  # what the report calls it


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in p.parts or (len(name) > 1 and name[1] == ":") or "\x00" in name


def _hidden(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") or part.lower() in SYSTEM_NAMES for part in rel.parts)


def _folder_entries(root: Path, report: ImportReport) -> Iterator[Entry]:
    root_resolved = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = PurePosixPath(path.relative_to(root).as_posix())
            display = f"{root.name}/{rel}"
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = path.resolve()
                    if not target.is_relative_to(root_resolved):
                        report.rejected.append(Rejection(display, "unsafe name: a link that leads outside the folder"))
                        continue
                    st = target.stat()
                if not stat.S_ISREG(st.st_mode):
                    report.skipped.append(Rejection(display, "not a regular file"))
                    continue
            except OSError as e:
                report.rejected.append(Rejection(display, f"cannot read: {e.strerror}"))
                continue
            yield Entry(rel, path.read_bytes, st.st_size, display)


def _zip_entries(path: Path, report: ImportReport, limits: ImportLimits) -> Iterator[Entry]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        report.rejected.append(Rejection(path.name, f"corrupt zip archive: {e}"))
        return
    for info in infos:
        if info.is_dir():
            continue
        display = f"{path.name}:{info.filename}"
        if _unsafe(info.filename):
            report.rejected.append(Rejection(display, "unsafe name (absolute path or '..'); not extracted"))
            continue
        if info.flag_bits & 0x1:
            report.rejected.append(Rejection(display, "encrypted zip member; unzip it with its password first"))
            continue

        def read(info=info) -> bytes:
            try:
                with zipfile.ZipFile(path) as z, z.open(info) as f:
                    data = f.read(limits.max_file_bytes + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise Rejected(f"corrupt zip member: {e}") from None
            if len(data) > limits.max_file_bytes:
                raise Rejected(f"larger than {limits.max_file_bytes:,} bytes once decompressed (zip bomb?)")
            return data

        yield Entry(PurePosixPath(info.filename.replace("\\", "/")), read, info.file_size, display)


# ---- captions that come with the files ----------------------------------------------------------
def _parse_metadata(entry: Entry, report: ImportReport) -> dict[PurePosixPath, dict]:
    """file path (relative to the source root) -> {"text", "label"} from metadata.jsonl/csv."""
    base = entry.rel.parent
    out: dict[PurePosixPath, dict] = {}
    try:
        raw = entry.read().decode("utf-8-sig")
    except (UnicodeDecodeError, Rejected, OSError) as e:
        report.rejected.append(Rejection(entry.display, f"unreadable metadata file: {e}"))
        return out
    if entry.rel.name == "metadata.jsonl":
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
                rows.append(row)
            except ValueError as e:
                report.rejected.append(Rejection(f"{entry.display} line {n}", f"invalid JSON line: {e}"))
    else:
        rows = list(csv.DictReader(io.StringIO(raw)))
    for row in rows:
        name = str(row.get("file_name") or "").strip()
        if not name:
            report.rejected.append(Rejection(entry.display, "a row without file_name"))
            continue
        if _unsafe(name):
            report.rejected.append(Rejection(f"{entry.display}: {name}", "unsafe name (absolute path or '..')"))
            continue
        text = row.get("text", row.get("caption"))
        label = row.get("label")
        out[base / PurePosixPath(name.replace("\\", "/"))] = {
            "text": str(text).strip() if text not in (None, "") else "",
            "label": str(label).strip() if label not in (None, "") else None,
        }
    return out


# ---- the import itself ----------------------------------------------------------------------------
class _Batch:
    """Collects new rows; writes them in one transaction; on failure removes the files it wrote."""

    def __init__(self, ws: Workspace, report: ImportReport):
        self.ws, self.report = ws, report
        self.rows: list[NewImage] = []
        self.names: dict[str, str] = {}  # sha -> name, for duplicates inside this import
        self.written: list[str] = []

    def add(self, image: Image.Image, name: str, mode: str, source: str, label, modality, split, text, prov) -> None:
        sha, size, new = self.ws.store_image(image)
        if new:
            self.written.append(sha)
        if name == "dicom-":
            name = f"dicom-{sha[:12]}"
        existing = self.ws.find_sha(sha)
        if existing is not None:
            self.report.duplicates.append((name, f"image {existing} ({self.ws.get(existing).original_name})"))
            return
        if sha in self.names:
            self.report.duplicates.append((name, self.names[sha]))
            return
        self.names[sha] = name
        self.rows.append(
            NewImage(sha, name, image.width, image.height, mode, size, source, label, split, modality, text, prov)
        )

    def commit(self) -> None:
        self.report.added = self.ws.add_images(self.rows)
        self.report.captions = sum(1 for r in self.rows if r.text)

    def abort(self) -> None:
        for sha in self.written:
            if self.ws.find_sha(sha) is None:
                self.ws.image_path(sha).unlink(missing_ok=True)
                self.ws.thumb_path(sha).unlink(missing_ok=True)


def _import_entries(
    batch: _Batch,
    entries: Iterable[Entry],
    source: str,
    label: str | None,
    modality: str | None,
    split: str,
    limits: ImportLimits,
    single: bool = False,
) -> None:
    report = batch.report
    entries = list(entries)
    metadata: dict[PurePosixPath, dict] = {}
    sidecars: dict[PurePosixPath, Entry] = {}
    candidates: list[Entry] = []
    for e in entries:
        if _hidden(e.rel):
            report.skipped.append(Rejection(e.display, "hidden or system file"))
        elif e.rel.name.lower() in METADATA_NAMES:
            metadata.update(_parse_metadata(e, report))
        elif e.rel.suffix.lower() == ".txt":
            sidecars[e.rel.with_suffix("")] = e
        else:
            candidates.append(e)
    seen = {e.rel for e in candidates}
    for rel in metadata:
        if rel not in seen:
            report.rejected.append(Rejection(f"{source}/{rel}", "listed in metadata but not found"))
    stems = {e.rel.with_suffix("") for e in candidates}
    for stem, e in sidecars.items():
        if stem not in stems:
            report.skipped.append(Rejection(e.display, "text file without an image of the same name"))
    for e in candidates:
        ext = e.rel.suffix.lower()
        try:
            if e.size > limits.max_file_bytes:
                raise Rejected(f"file of {e.size:,} bytes is over the limit of {limits.max_file_bytes:,}")
            if ext == ".zip":
                raise Rejected("a zip inside a folder or zip is not opened; import it on its own")
            if ext not in IMAGE_EXTS | DICOM_EXTS and ext != "":
                raise Rejected(f"unsupported file type '{ext}' (PNG, JPEG, TIFF, BMP, WebP, DICOM, zip)")
            data = e.read()
            dicom = ext in DICOM_EXTS or (ext == "" and is_dicom(data))
            if dicom:
                image, mode, dicom_modality = decode_dicom(data, limits)
                name = "dicom-"  # the real name may carry the patient's; replaced by the hash in _Batch
            else:
                image, mode = decode_image(data, limits)
                name, dicom_modality = e.rel.name, ""
            del data
        except Rejected as r:
            report.rejected.append(Rejection(e.display, str(r)))
            continue
        meta = metadata.get(e.rel, {})
        text = meta.get("text") or ""
        prov = {"backend": "import", "source": "metadata"} if text else {}
        if not text and e.rel.with_suffix("") in sidecars:
            try:
                text = sidecars[e.rel.with_suffix("")].read().decode("utf-8-sig").strip()
                prov = {"backend": "import", "source": "sidecar .txt"} if text else {}
            except (UnicodeDecodeError, Rejected, OSError) as err:
                report.rejected.append(Rejection(sidecars[e.rel.with_suffix("")].display, f"unreadable caption: {err}"))
        parent = e.rel.parent.name
        folder_label = parent if parent and parent.lower() not in SPLIT_NAMES and not single else None
        item_label = meta.get("label") or label or folder_label
        item_split = split
        if e.rel.parts and e.rel.parts[0].lower() in ("test", "testing", "val", "valid", "validation"):
            item_split = "test" if e.rel.parts[0].lower().startswith("test") else "validation"
        item_modality = modality or (DICOM_TEMPLATES.get(dicom_modality, "radiology") if dicom else None)
        # DICOM file and folder names often carry the patient's name: neither is stored
        batch.add(image, name, mode, "dicom" if dicom else source, item_label, item_modality, item_split, text, prov)


def import_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    label: str | None = None,
    modality: str | None = None,
    split: str = "train",
    limits: ImportLimits | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import files, folders and zip archives into `ws` in one transaction; see the module doc."""
    limits = limits or ImportLimits()
    report = ImportReport()
    batch = _Batch(ws, report)
    ws.collect_garbage(min_age_s=3600)  # files left by an import killed long ago
    try:
        for p in paths:
            path = Path(p).expanduser()
            if progress:
                progress(str(path))
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist; check the path")
            if path.is_dir():
                _import_entries(batch, _folder_entries(path, report), path.name, label, modality, split, limits)
            elif path.suffix.lower() == ".zip":
                _import_entries(batch, _zip_entries(path, report, limits), path.name, label, modality, split, limits)
            else:
                entry = Entry(PurePosixPath(path.name), path.read_bytes, path.stat().st_size, path.name)
                _import_entries(batch, [entry], path.name, label, modality, split, limits, single=True)
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    return report


def import_dataset(
    ws: Workspace,
    name_or_dir: str,
    split: str = "train",
    image_column: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label: str | None = None,
    modality: str | None = None,
    limits: ImportLimits | None = None,
    max_rows: int | None = None,
) -> ImportReport:
    """Import a Hugging Face dataset (a `load_dataset` id, or a local imagefolder) with its
    image, text and label columns (found by type and name when not given)."""
    import datasets

    limits = limits or ImportLimits()
    local = Path(name_or_dir).expanduser()
    try:
        if local.is_dir():
            ds = datasets.load_dataset("imagefolder", data_dir=str(local), split=split)
        else:
            ds = datasets.load_dataset(name_or_dir, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        raise ValueError(
            f"could not load the dataset {name_or_dir!r} (split {split!r}): {e}. Give a local imagefolder or a hub "
            "dataset id reachable from here; pick the split with --hf-split"
        ) from e
    features = ds.features
    if image_column is None:
        image_column = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    if image_column not in features:
        raise ValueError(f"no image column in {name_or_dir!r} (columns: {', '.join(features)}); pass --image-column")
    if text_column is None:
        text_column = next((k for k in ("text", "caption", "captions", "description") if k in features), None)
    if label_column is None:
        label_column = next((k for k in ("label", "labels", "class", "category") if k in features), None)
    names = getattr(features.get(label_column), "names", None) if label_column else None
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    report = ImportReport()
    batch = _Batch(ws, report)
    source = f"dataset {local.name if local.is_dir() else name_or_dir}:{split}"
    try:
        for n, row in enumerate(ds):
            if max_rows is not None and n >= max_rows:
                break
            cell = row[image_column] or {}
            display = f"{source} row {n}" + (f" ({Path(cell['path']).name})" if cell.get("path") else "")
            try:
                data = cell.get("bytes")
                if data is None and cell.get("path"):
                    data = Path(cell["path"]).read_bytes()
                image, mode = decode_image(data or b"", limits)
            except Rejected as r:
                report.rejected.append(Rejection(display, str(r)))
                continue
            text = str(row.get(text_column) or "").strip() if text_column else ""
            value = row.get(label_column) if label_column else None
            item_label = (names[value] if names and isinstance(value, int) else value) if value is not None else None
            name = Path(cell["path"]).name if cell.get("path") else f"row-{n:06d}.png"
            prov = {"backend": "import", "source": source} if text else {}
            batch.add(image, name, mode, source, str(item_label) if item_label is not None else label, modality,
                      "train", text, prov)  # fmt: skip
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    return report
