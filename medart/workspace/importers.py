"""Import images into a workspace: files, zip archives, folders, Hugging Face datasets, DICOM.

What happens to every image (documented conversions):
- PNG, JPEG, TIFF, BMP and WebP are read with Pillow; other formats are rejected. Multi-page
  files (TIFF, animated WebP) contribute their first frame.
- The EXIF orientation is applied, then all metadata (EXIF, ICC profile, text chunks) is
  dropped: the stored image is a fresh 8-bit RGB PNG built from the pixels alone.
- Grayscale and palette images become RGB by repeating the gray value. 16-bit and 32-bit
  grayscale (and float) images are rescaled linearly from their own minimum..maximum to
  0..255 (a constant image becomes black), a band of rows at a time. Alpha (RGBA, LA, transparent palettes) is
  composited onto black. CMYK is converted with Pillow's CMYK->RGB conversion.
- DICOM is read by `medart.workspace.dicom_import` (windowing, validated header values, and files whose
  pixels may show patient data refused unless `allow_burned_in`).
- An image with more pixels than `ImportLimits.max_pixels` (`--max-pixels`) is refused as a
  decompression bomb; that limit is the only one (Pillow's own guard is set to it).
- Every image is stored once under the hash of its pixels; a second copy is reported as a
  duplicate. Importing again what is already in the workspace changes nothing: its label,
  split and caption stay as they are, and the report counts it as already there.
- A caption longer than `MAX_CAPTION_CHARS` is not imported (its image is, without it); one
  longer than the base model reads (`Workspace.token_limit`) is imported and listed, since it
  cannot be approved as it is. A zip or folder without any image says so.

Folders, zip archives and files given together (an upload of several files) bring their
captions along: a `.txt` sidecar with the image's stem, or `metadata.jsonl` / `metadata.csv`
(columns `file_name`, `text` or `caption`, optional `label`) in the image's folder or an
ancestor; files given one by one are matched by name, as if they lay in one folder. Rows of
a metadata file naming images that were not imported with it are counted in a notice, not
as rejected files; documents and code in a folder or zip (README.md, build.py) are skipped as
not images, not rejected. The label is, in order: the
metadata's `label`, the `label` argument, the name of the image's parent folder (when it
is not the imported folder itself or a split name like `train`). Labels taken from folder
names are listed in the import summary, so a person sees them before training.

Paths of DICOM exports carry patients (`Hospital/Doe^Jane_MRN-123/IM0001.dcm`). A folder or
zip archive that holds any DICOM file (by extension, or by the DICM marker of any file not named
as an image: `1.2.840.113619.2.1`, `IM0002.ima`), files given together of which one is DICOM,
and files and zips uploaded through the app (`anonymous`: a file name such as
`Doe^Jane_photo.png` is patient data, and so is a folder name in an uploaded zip until a person
has seen it, so it never becomes a label) are treated as such an export: no part of their
paths is stored, used as a label or shown. Their images are stored as `dicom-<hash>` (or `image-<hash>`) with the label given to
the import (or none), and messages name each file by its position in the order read and its
kind ("file 3 of 7 (PNG)"), so the person importing can find it without the name being kept.

Bounds: a zip archive is opened once, and refused whole when it lists more than
`MAX_ZIP_ENTRIES` members or members whose data overlap; a member is refused before it is read
when its declared size is over the file limit, it inflates more than `MAX_ZIP_RATIO` times
(above 1 MiB) or the members read so far have used the archive's budget (`MAX_ZIP_RATIO` times
its size plus `ZIP_FLOOR`), and while it is read when it inflates past its declared size. An
image's structure is checked before Pillow opens it (`medart.image_container`: TIFF tags and
tiles, JPEG scans; its EXIF is read for the orientation only), then it is decoded under the
pixel limit (Pillow's guard, PNG text chunks at most 1 MiB, the first frame of a multi-page
file only); DICOM is bounded by `medart.workspace.dicom_import`. A file that does not fit in
memory is rejected on its own (`NO_MEMORY`). A local dataset reads no image that lies (or links) outside
its folder; a hub dataset none outside the Hugging Face caches.

Every file that is not imported is reported with its reason (empty, corrupt, unsupported,
decompression bomb, unsafe name, duplicate, ...). An import writes its rows in one
transaction: it either completes or leaves the workspace as it was; a killed import's files
are removed the next time the workspace is opened (`Workspace.importing`).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import stat
import zipfile
import zlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from medart.constants import IMAGE_SUFFIXES
from medart.image_container import ContainerRejected, apply_orientation, check_container
from medart.workspace.dicom_import import DicomRejected, decode_dicom, rescale_8bit
from medart.pixel_limit import BOMB_ERRORS, DEFAULT_MAX_PIXELS, MAX_TEXT_BYTES, pixel_limit
from medart.workspace import MAX_CAPTION_CHARS, NewImage, Workspace, check_split

IMAGE_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP"}
DICOM_EXTS = {".dcm", ".dicom", ".dic"}
METADATA_NAMES = {"metadata.jsonl", "metadata.csv"}
SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "images", "imgs"}
# DICOM Modality code -> caption template (the rest: CT, MR, CR, DX, MG, US, XA, NM, PT -> radiology)
DICOM_TEMPLATES = {"ES": "endoscopy", "SM": "histology", "OP": "fundus", "XC": "custom", "GM": "custom"}
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", ".ds_store"}
KINDS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
         ".webp": "WebP", ".txt": "text", ".jsonl": "metadata", ".csv": "metadata", ".zip": "zip"}
# documents and code beside images in a folder or zip (a README, a script): skipped as not images,
# not rejected; given on their own they are rejected, since someone asked for them. A PDF is not
# among them: it may hold scanned images, so it is said to be unsupported.
NOT_IMAGE_SUFFIXES = {".md", ".rst", ".py", ".ipynb", ".sh", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini",
                      ".log", ".html", ".htm", ".js", ".css", ".doc", ".docx", ".odt", ".rtf", ".xls",
                      ".xlsx", ".ppt", ".pptx", ".tsv"}
MAX_ZIP_RATIO = 100  # a zip member over 1 MiB that inflates more than this many times is refused
MAX_ZIP_ENTRIES = 100_000  # members of one archive
ZIP_FLOOR = 64 << 20  # bytes the members of any archive may inflate to in all, whatever its size
NO_MEMORY = "not enough memory to read it here (free some, or import it on a larger machine)"


@dataclass
class ImportLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused as decompression bombs
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
    present: list[int] = field(default_factory=list)  # of those, ids already in the workspace: left as they are
    empty: list[str] = field(default_factory=list)  # "zip" or "folder" for each that held no image
    long_captions: list[int] = field(default_factory=list)  # characters of captions not imported: too long
    over_tokens: list[tuple[int, int]] = field(default_factory=list)  # (id, T5 tokens) over the base's limit
    token_limit: int | None = None
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)  # hidden/system files, not images
    captions: int = 0  # imported images that brought a caption
    unlisted: int = 0  # metadata rows naming images that were not among the imported files
    folder_labels: Counter = field(default_factory=Counter)  # label -> images that took it from a folder name
    burned_in: list[int] = field(default_factory=list)  # ids imported although they may show patient data
    numbered: int = 0  # files of DICOM exports (numbered in the order they were read)
    sources: int = 0  # sources whose files are named by number
    named_by_number: bool = False  # whether a message names one by its number

    def notices(self, allow: str = "--allow-burned-in") -> list[str]:
        """What a person should look at before training (shown by the CLI and the Data tab);
        `allow` names the switch that let burned-in images in."""
        out = []
        if self.unlisted:
            out.append(f"{self.unlisted} row(s) of the metadata name images that were not imported with it; "
                       "their captions were not used")
        if self.folder_labels:
            labels = ", ".join(f"{k} ({n})" for k, n in sorted(self.folder_labels.items()))
            out.append(f"labels taken from folder names: {labels}; check that none names a patient or a "
                       "hospital (change them with `python -m medart label` or the Organise panel)")
        if self.burned_in:
            ids = " ".join(f"#{i}" for i in self.burned_in)
            out.append(f"imported with {allow} although their pixels may show patient data: {ids}; look at each "
                       "and remove any that shows a name, date or number (`python -m medart remove --ids ...`)")
        if self.empty and (self.added or self.duplicates or self.rejected):
            out.append(self._empty_md())
        if self.long_captions:
            out.append(f"{len(self.long_captions)} caption(s) longer than {MAX_CAPTION_CHARS:,} characters "
                       f"(the longest {max(self.long_captions):,}) were left out; their images came in without them")
        if self.over_tokens:
            ids = " ".join(f"#{i} ({n:,} tokens)" for i, n in self.over_tokens[:10])
            more = f" and {len(self.over_tokens) - 10} more" if len(self.over_tokens) > 10 else ""
            out.append(f"caption(s) longer than the base model reads ({self.token_limit} T5 tokens): {ids}{more}; "
                       "shorten them before approving")
        if self.named_by_number:
            out.append("files of DICOM exports and uploaded files are named by their position in the order read "
                       "and their kind ('file 3 of 7 (PNG)'): their names may carry patient data, so they are "
                       "neither stored nor shown")
        return out

    def headline(self) -> str:
        """The first line: what came in, what was already there and left alone, what did not."""
        if not (self.added or self.duplicates or self.rejected) and self.empty:
            return f"nothing imported: {self._empty_md()}"
        present = len(set(self.present))
        there = (f" ({present} already in the workspace, left as they are: label, split and caption unchanged)"
                 if present else "")
        return (f"imported {len(self.added)} image(s) ({self.captions} with captions), "
                f"{len(self.duplicates)} duplicate(s){there}, {len(self.rejected)} rejected"
                + (f", {len(self.skipped)} skipped (not images)" if self.skipped else ""))

    def _empty_md(self) -> str:
        """"the zip holds no images", "the 2 folders and the zip hold no images"."""
        kinds = [k if self.empty.count(k) == 1 else f"{self.empty.count(k)} {k}s" for k in sorted(set(self.empty))]
        return f"the {' and the '.join(kinds)} hold{'s' if len(self.empty) == 1 else ''} no images"

    def summary(self) -> str:
        lines = [self.headline()]
        lines += self.notices()
        lines += [f"  duplicate: {n} (same pixels as {o})" for n, o in self.duplicates]
        lines += [f"  rejected: {r.name}: {r.reason}" for r in self.rejected]
        lines += [f"  skipped: {r.name}: {r.reason}" for r in self.skipped]
        return "\n".join(lines)


class Rejected(Exception):
    """This file cannot be imported; the message is the reason shown to the user."""


# ---- decoding ---------------------------------------------------------------------------------
def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the rules in the module docstring."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_gray_8bit(image), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def _gray_8bit(image: Image.Image) -> np.ndarray:
    """`rescale_8bit` of a 16-bit, 32-bit or float image, a band of rows at a time (no copy of the
    whole image); an image whose first value is not finite takes numpy's NaN-aware path."""
    lo, hi = image.getextrema()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return rescale_8bit(np.asarray(image))
    out = np.empty((image.height, image.width), np.uint8)
    rows = max(1, (1 << 20) // max(1, image.width))
    for top in range(0, image.height, rows):
        band = image.crop((0, top, image.width, min(image.height, top + rows)))
        out[top:top + band.height] = rescale_8bit(np.asarray(band), lo, hi)
    return out


def decode_image(data: bytes, limits: ImportLimits) -> tuple[Image.Image, str]:
    """(RGB image without metadata, original mode) or Rejected. The file's structure is checked
    first (`medart.image_container`), and Pillow's EXIF parser is never used."""
    if not data:
        raise Rejected("empty file (0 bytes)")
    bomb = (f"decompression bomb: the image is over the limit of {limits.max_pixels:,} pixels "
            "(raise --max-pixels if it is genuine)")
    try:
        check_container(data)
    except ContainerRejected as e:
        raise Rejected(str(e)) from None
    with pixel_limit(limits.max_pixels):  # --max-pixels, not Pillow's default, decides
        try:
            image = Image.open(io.BytesIO(data))
        except BOMB_ERRORS:
            raise Rejected(bomb) from None
        except UnidentifiedImageError:
            raise Rejected("not a readable image (corrupt, or a format other than PNG/JPEG/TIFF/BMP/WebP)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise Rejected(_corrupt("corrupt image", e)) from None
        except MemoryError:
            raise Rejected(NO_MEMORY) from None
        if image.format not in IMAGE_FORMATS:
            raise Rejected(f"unsupported image format {image.format}; convert it to PNG or TIFF")
        w, h = image.size
        if min(w, h) < limits.min_side:
            raise Rejected(f"too small: {w}x{h} pixels (at least {limits.min_side} on each side)")
        mode = image.mode
        try:
            image.seek(0)
            image.load()
            rgb = to_rgb(apply_orientation(image))
            del image
            rgb = rgb._new(rgb.im)  # a plain image on the same pixels, without the file's metadata
            rgb.info.clear()
        except BOMB_ERRORS:
            raise Rejected(bomb) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
            raise Rejected(_corrupt("corrupt or truncated image", e)) from None
        except MemoryError:
            raise Rejected(NO_MEMORY) from None
    return rgb, mode


def _corrupt(what: str, error: Exception) -> str:
    if "MAX_TEXT" in str(error):  # Pillow's bound on PNG text chunks (see medart.pixel_limit)
        return f"decompression bomb: its PNG text chunks hold more than {MAX_TEXT_BYTES:,} bytes"
    return f"{what}: {error}"


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


# ---- sources: one list of entries for folders, zips and single files ----------------------------
@dataclass
class Entry:
    rel: PurePosixPath  # path inside the imported folder or archive
    read: Callable[[], bytes]
    size: int
    display: str  # what the report calls it (unless it belongs to a DICOM export)
    head: Callable[[], bytes] | None = None  # its first bytes, to recognise DICOM without an extension
    problem: str | None = None  # found while listing: why it is rejected
    skip: str | None = None  # found while listing: why it is skipped (not an image)


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in p.parts or (len(name) > 1 and name[1] == ":") or "\x00" in name


def _hidden(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") or part.lower() in SYSTEM_NAMES for part in rel.parts)


def _file_head(path: Path) -> Callable[[], bytes]:
    def head() -> bytes:
        with open(path, "rb") as f:
            return f.read(132)

    return head


def _folder_entries(root: Path) -> Iterator[Entry]:
    root_resolved = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = PurePosixPath(path.relative_to(root).as_posix())
            entry = Entry(rel, path.read_bytes, 0, f"{root.name}/{rel}", _file_head(path))
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = path.resolve()
                    if not target.is_relative_to(root_resolved):
                        entry.problem = "unsafe name: a link that leads outside the folder"
                        yield entry
                        continue
                    st = target.stat()
                if not stat.S_ISREG(st.st_mode):
                    entry.skip = "not a regular file"
                    yield entry
                    continue
            except OSError as e:
                entry.problem = f"cannot read: {e.strerror}"
                yield entry
                continue
            entry.size = st.st_size
            yield entry


def _zip_entries(path: Path, report: ImportReport, limits: ImportLimits, shown: str | None = None,
                 stack: ExitStack | None = None) -> Iterator[Entry]:
    """The members of a zip archive, read from the archive opened once (kept open by `stack`);
    `shown`: what messages call the archive (default: its name). The archive is refused whole
    when it lists more than `MAX_ZIP_ENTRIES` members or members whose data overlap (one stored
    image listed many times, decoded once per listing); members inflate in all at most
    `MAX_ZIP_RATIO` times the archive's size (and `ZIP_FLOOR` bytes) besides their own bounds."""
    try:
        archive = zipfile.ZipFile(path)
        if stack is not None:
            stack.enter_context(archive)
        infos = archive.infolist()
        problem = _zip_problem(infos, archive.start_dir)
    except zipfile.BadZipFile:
        report.rejected.append(Rejection(shown or path.name, "corrupt zip archive (not a zip file, or damaged)"))
        return
    except OSError as e:
        report.rejected.append(Rejection(shown or path.name, f"cannot read the zip archive: {e.strerror}"))
        return
    if problem:
        archive.close()
        report.rejected.append(Rejection(shown or path.name, problem))
        return
    budget = [MAX_ZIP_RATIO * path.stat().st_size + ZIP_FLOOR]  # bytes all members may still inflate to
    for info in infos:
        if info.is_dir():
            continue
        display = f"{shown or path.name}:{info.filename}"
        rel = PurePosixPath(info.filename.replace("\\", "/"))

        def read(info=info, n: int | None = None) -> bytes:
            """The member's bytes (its first `n`), inflated 1 MiB at a time into one buffer: zipfile cuts
            a member at its declared size (then fails its CRC) only after inflating what one read asks for,
            so one large read of a member that lies about its size would inflate all of it first."""
            limit = min(info.file_size, limits.max_file_bytes) if n is None else min(n, info.file_size)
            if n is None and limit > budget[0]:
                raise Rejected(f"zip bomb: the archive's members inflate to more than {MAX_ZIP_RATIO} times its "
                               "size in all; not extracted")
            buffer, size = io.BytesIO(), 0
            try:
                with archive.open(info) as f:
                    while size < limit and (chunk := f.read(min(1 << 20, limit - size))):
                        size += buffer.write(chunk)
                    if n is None and size == limit < info.file_size:
                        raise Rejected(f"larger than {limits.max_file_bytes:,} bytes once decompressed (zip bomb?)")
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error):
                raise Rejected("corrupt zip member: its data does not match the archive's directory, or is damaged") \
                    from None
            if n is None:
                budget[0] -= size
            return buffer.getvalue()  # the buffer's own bytes, not a copy

        entry = Entry(rel, read, info.file_size, display, lambda read=read: read(n=132))
        if _unsafe(info.filename):
            entry.problem = "unsafe name (absolute path or '..'); not extracted"
        elif info.flag_bits & 0x1:
            entry.problem = "encrypted zip member; unzip it with its password first"
        elif info.file_size > 1 << 20 and info.file_size > MAX_ZIP_RATIO * max(1, info.compress_size):
            entry.problem = (f"zip bomb: {info.compress_size:,} bytes that inflate to {info.file_size:,} (more than "
                             f"{MAX_ZIP_RATIO} times); not extracted")
        yield entry


def _zip_problem(infos: list[zipfile.ZipInfo], directory: int) -> str | None:
    """Why the archive is refused whole (too many members, overlapping members), or None."""
    if len(infos) > MAX_ZIP_ENTRIES:
        return f"the zip archive lists {len(infos):,} members (at most {MAX_ZIP_ENTRIES:,}); split it"
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            return "crafted zip archive: its members overlap (one member's data is listed more than once); not opened"
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        end = info.header_offset + 30 + len(name) + info.compress_size
    if end > directory:
        return "crafted zip archive: a member's data overlaps the archive's directory; not opened"
    return None


def _kind(entry: Entry) -> str:
    """What a file is by its extension (or its DICM marker): how messages describe a file whose
    name is not shown."""
    ext = entry.rel.suffix.lower()
    if _looks_dicom(entry):
        return "DICOM"
    if ext in KINDS:
        return KINDS[ext]
    return "no extension" if not ext else ext[1:].upper() if ext[1:].isalnum() and len(ext) <= 6 else "other"


def _looks_dicom(entry: Entry) -> bool:
    """A DICOM file by its extension, or by the DICM marker when its extension is none of an image's
    or a caption's (PACS exports name files `IM0001`, `1.2.840.113619.2.1`, `IM0002.ima`)."""
    ext = entry.rel.suffix.lower()
    if ext in DICOM_EXTS:
        return True
    if ext in IMAGE_SUFFIXES or ext in KINDS or entry.head is None or entry.problem or entry.skip or _hidden(entry.rel):
        return False
    try:
        return is_dicom(entry.head())
    except (OSError, Rejected):
        return False


# ---- captions that come with the files ----------------------------------------------------------
def _parse_metadata(entry: Entry, shown: str, report: ImportReport, names: bool) -> dict[PurePosixPath, dict]:
    """file path (relative to the source root) -> {"text", "label"} from metadata.jsonl/csv.
    `shown` is what messages call the file; `names`: whether they may quote the file names in it."""
    base = entry.rel.parent
    out: dict[PurePosixPath, dict] = {}
    try:
        raw = entry.read().decode("utf-8-sig")
    except (UnicodeDecodeError, Rejected, OSError) as e:
        report.rejected.append(Rejection(shown, f"unreadable metadata file: {e}"))
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
                report.rejected.append(Rejection(f"{shown} line {n}", f"invalid JSON line: {e}" if names else
                                                 "invalid JSON line"))
    else:
        rows = list(csv.DictReader(io.StringIO(raw)))
    for row in rows:
        name = str(row.get("file_name") or "").strip()
        if not name:
            report.rejected.append(Rejection(shown, "a row without file_name"))
            continue
        if _unsafe(name):
            report.rejected.append(Rejection(f"{shown}: {name}" if names else shown,
                                             "unsafe name (absolute path or '..')"))
            continue
        text = row.get("text", row.get("caption"))
        label = row.get("label")
        out[base / PurePosixPath(name.replace("\\", "/"))] = {
            "text": str(text).strip() if text not in (None, "") else "",
            "label": str(label).strip() if label not in (None, "") else None,
        }
    return out


# ---- the import itself ----------------------------------------------------------------------------
@dataclass
class _Row:
    new: NewImage
    folder_label: bool  # its label is a folder's name
    burned_in: bool  # imported only because burned-in annotations were allowed


class _Batch:
    """Collects new rows; writes them in one transaction; on failure removes the files it wrote."""

    def __init__(self, ws: Workspace, report: ImportReport):
        self.ws, self.report = ws, report
        self.rows: list[_Row] = []
        self.names: dict[str, str] = {}  # sha -> name, for duplicates inside this import
        self.written: list[str] = []

    def add(self, image: Image.Image, name: str, mode: str, source: str, label, modality, split, text, prov,
            folder_label: bool = False, burned_in: bool = False) -> None:
        sha, size, new = self.ws.store_image(image)
        if new:
            self.written.append(sha)
        nameless = name in ("dicom-", "image-")  # a DICOM export's or an upload's: named by the pixel hash
        if nameless:
            name = f"{name}{sha[:12]}"
        existing = self.ws.find_sha(sha)
        if existing is not None:  # already there: left as it is (label, split, caption)
            # a nameless file's message quotes no stored name: it would tell an uploader what else is there
            self.report.duplicates.append((name, f"image {existing}" if nameless else
                                           f"image {existing} ({self.ws.get(existing).original_name})"))
            self.report.present.append(existing)
            return
        if sha in self.names:
            self.report.duplicates.append((name, self.names[sha]))
            return
        self.names[sha] = name
        if len((text or "").strip()) > MAX_CAPTION_CHARS:
            self.report.long_captions.append(len(text.strip()))
            text, prov = "", {}
        row = NewImage(sha, name, image.width, image.height, mode, size, source, label, split, modality, text, prov)
        self.rows.append(_Row(row, folder_label, burned_in))

    def commit(self) -> None:
        self.report.added = self.ws.add_images([r.new for r in self.rows])
        self.report.captions = sum(1 for r in self.rows if r.new.text)
        limit = self.report.token_limit = self.ws.token_limit
        for image_id, r in zip(self.report.added, self.rows):
            tokens = self.ws.get(image_id).token_count if limit and r.new.text else None
            if tokens and tokens > limit:
                self.report.over_tokens.append((image_id, tokens))
            if r.folder_label:
                self.report.folder_labels[r.new.label] += 1
            if r.burned_in:
                self.report.burned_in.append(image_id)

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
    allow_burned_in: bool = False,
    anonymous: bool = False,
    given: tuple[dict[int, int], int, str] | None = None,
) -> None:
    report = batch.report
    entries = list(entries)
    # a source holding DICOM is a DICOM export, and uploads are named by no one: none of their paths is stored or shown
    export = anonymous or any(_looks_dicom(e) for e in entries)
    shown = _namer(report, entries, export, given)

    metadata: dict[PurePosixPath, dict] = {}
    sidecars: dict[PurePosixPath, Entry] = {}
    candidates: list[Entry] = []
    for e in entries:
        if e.skip:
            report.skipped.append(Rejection(shown(e), e.skip))
        elif e.rel.suffix.lower() in NOT_IMAGE_SUFFIXES and not single:
            report.skipped.append(Rejection(shown(e), "not an image (a document or code file)"))
        elif e.problem:
            report.rejected.append(Rejection(shown(e), e.problem))
        elif _hidden(e.rel):
            report.skipped.append(Rejection(shown(e), "hidden or system file"))
        elif e.rel.name.lower() in METADATA_NAMES:
            metadata.update(_parse_metadata(e, shown(e), report, names=not export))
        elif e.rel.suffix.lower() == ".txt":
            sidecars[e.rel.with_suffix("")] = e
        else:
            candidates.append(e)
    seen = {e.rel for e in candidates}
    report.unlisted += sum(1 for rel in metadata if rel not in seen)
    stems = {e.rel.with_suffix("") for e in candidates}
    for stem, e in sidecars.items():
        if stem not in stems:
            report.skipped.append(Rejection(shown(e), "text file without an image of the same name"))
    for e in candidates:
        ext = e.rel.suffix.lower()
        burned_in = False
        try:
            if e.size > limits.max_file_bytes:
                raise Rejected(f"file of {e.size:,} bytes is over the limit of {limits.max_file_bytes:,}")
            if ext == ".zip":
                raise Rejected("a zip inside a folder or zip is not opened; import it on its own")
            dicom = ext not in IMAGE_SUFFIXES and _looks_dicom(e)
            if ext and ext not in IMAGE_SUFFIXES and not dicom:
                raise Rejected(f"unsupported file type '{ext}' (PNG, JPEG, TIFF, BMP, WebP, DICOM, zip)")
            data = e.read()
            if dicom:
                d = decode_dicom(data, limits.max_pixels, limits.min_side, allow_burned_in)
                image, mode, dicom_modality, burned_in = d.image, d.mode, d.modality, d.burned_in
                name = "dicom-"  # named by its hash in _Batch
            else:
                image, mode = decode_image(data, limits)
                name, dicom_modality = ("image-" if export else e.rel.name), ""
            del data
        except (Rejected, DicomRejected) as r:
            report.rejected.append(Rejection(shown(e), str(r)))
            continue
        except MemoryError:  # one file too large for this machine is one rejection, not a failed import
            report.rejected.append(Rejection(shown(e), NO_MEMORY))
            continue
        meta = metadata.get(e.rel, {})
        text = meta.get("text") or ""
        prov = {"backend": "import", "source": "metadata"} if text else {}
        if not text and e.rel.with_suffix("") in sidecars:
            sidecar = sidecars[e.rel.with_suffix("")]
            try:
                text = sidecar.read().decode("utf-8-sig").strip()
                prov = {"backend": "import", "source": "sidecar .txt"} if text else {}
            except (UnicodeDecodeError, Rejected, OSError) as err:
                report.rejected.append(Rejection(shown(sidecar), f"unreadable caption: {err}"))
        parent = e.rel.parent.name
        folder_label = None
        if parent and parent.lower() not in SPLIT_NAMES and not single and not export:
            folder_label = parent
        item_label = meta.get("label") or label or folder_label
        item_split = split
        if e.rel.parts and e.rel.parts[0].lower() in ("test", "testing", "val", "valid", "validation"):
            item_split = "test" if e.rel.parts[0].lower().startswith("test") else "validation"
        item_modality = modality or (DICOM_TEMPLATES.get(dicom_modality, "radiology") if dicom else None)
        item_source = "dicom" if export and not anonymous else source
        batch.add(image, name, mode, item_source, item_label, item_modality, item_split, text, prov,
                  folder_label=item_label is not None and item_label == folder_label, burned_in=burned_in)


def _namer(report: ImportReport, entries: list[Entry], export: bool,
           given: tuple[dict[int, int], int, str] | None) -> Callable[[Entry], str]:
    """How messages name the entries of one source: by path, or (a DICOM export, an upload) by
    number and kind. `given`: (position of each loose file among the files given, how many were
    given, the zip they lie in, as "file 3 of 3 (zip)"), so that every given file is counted."""
    numbers = {id(e): k for k, e in enumerate(entries, start=1)} if export else {}
    report.numbered += len(numbers)
    report.sources += bool(numbers)
    positions, total, within = given or ({}, 0, "")
    where = f" in {within}" if within else f" of source {report.sources}" if report.sources > 1 and numbers else ""

    def shown(e: Entry) -> str:
        if not export:
            return e.display
        report.named_by_number = True
        if id(e) in positions:
            return f"file {positions[id(e)]} of {total} ({_kind(e)})"
        return f"file {numbers[id(e)]} of {len(entries)} ({_kind(e)}){where}"

    return shown


def import_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    label: str | None = None,
    modality: str | None = None,
    split: str = "train",
    limits: ImportLimits | None = None,
    progress: Callable[[str], None] | None = None,
    allow_burned_in: bool = False,
    anonymous: bool = False,
) -> ImportReport:
    """Import files, folders and zip archives into `ws` in one transaction; see the module doc.
    `allow_burned_in`: import DICOM whose pixels may show patient data (listed in the report);
    `anonymous`: the files were uploaded, their names are neither stored nor shown."""
    limits = limits or ImportLimits()
    report = ImportReport()
    batch = _Batch(ws, report)
    kw = {"allow_burned_in": allow_burned_in}
    paths = list(paths)
    positions: dict[int, int] = {}  # an upload's loose files: their place among all files given
    with ws.importing(), ExitStack() as archives:
        try:
            loose: list[Entry] = []  # files given on their own: matched with their sidecars by name
            for number, p in enumerate(paths, start=1):
                path = Path(p).expanduser()
                if progress:
                    progress(str(path))
                if not path_exists(path):
                    raise FileNotFoundError(f"{p} does not exist; check the path")
                seen = _outcomes(batch)
                if path.is_dir():
                    _import_entries(batch, _folder_entries(path), path.name, label, modality, split, limits, **kw)
                    _note_empty(batch, seen, "folder")
                elif path.suffix.lower() == ".zip":
                    zipped = _zip_entries(path, report, limits, "an uploaded zip archive" if anonymous else None,
                                          archives)
                    within = f"file {number} of {len(paths)} (zip)" if len(paths) > 1 else ""
                    given = ({}, len(paths), within) if anonymous else None
                    _import_entries(batch, zipped, "upload" if anonymous else path.name, label, modality, split, limits,
                                    anonymous=anonymous, given=given, **kw)
                    if _note_empty(batch, seen, "zip") and anonymous:
                        report.skipped.append(Rejection(given[2] or "the zip", "a zip that holds no images"))
                else:
                    loose.append(Entry(PurePosixPath(path.name), path.read_bytes, path.stat().st_size, path.name,
                                       _file_head(path)))
                    positions[id(loose[-1])] = number
            for group in _by_unique_name(loose):  # as one folder: a DICOM file among them makes all nameless
                source = "upload" if anonymous else group[0].display if len(group) == 1 else "files"
                _import_entries(batch, group, source, label, modality, split, limits, single=True,
                                anonymous=anonymous, given=(positions, len(paths), "") if anonymous else None, **kw)
            batch.commit()
        except BaseException:
            batch.abort()
            raise
    return report


def path_exists(path: Path) -> bool:
    """Whether `path` exists; a path the system cannot even look up is a one-line ValueError."""
    try:
        return path.exists()
    except OSError as e:
        too_long = e.errno == errno.ENAMETOOLONG
        raise ValueError(f"a path of {len(str(path)):,} characters cannot be read: "
                         + ("it is too long for this system (names up to 255 characters, paths up to 4,096)"
                            if too_long else "the system refuses to look it up")) from None


def _outcomes(batch: _Batch) -> int:
    """How many files the import has dealt with so far (new, already there, duplicate, rejected)."""
    r = batch.report
    return len(batch.rows) + len(r.present) + len(r.duplicates) + len(r.rejected)


def _note_empty(batch: _Batch, before: int, kind: str) -> bool:
    """Note a zip or folder that brought no image at all (only text, hidden files or nothing);
    whether it was such."""
    if _outcomes(batch) == before:
        batch.report.empty.append(kind)
        return True
    return False


def _by_unique_name(entries: list[Entry]) -> list[list[Entry]]:
    """The entries in groups whose names are unique (two files of one name cannot share a sidecar)."""
    groups: list[list[Entry]] = []
    for e in entries:
        for group in groups:
            if all(other.rel != e.rel for other in group):
                group.append(e)
                break
        else:
            groups.append([e])
    return groups


def dataset_builders() -> frozenset[str]:
    """The names `datasets.load_dataset` takes for a file format (imagefolder, csv, json, parquet,
    ...): given alone they read the working directory, so they are no dataset id."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES)


def _dataset_roots(local: Path) -> tuple[Path, ...]:
    """The folders a dataset's image files may lie in: a local dataset's own folder, else the
    Hugging Face caches a hub dataset is downloaded into."""
    if local.is_dir():
        return (local.resolve(),)
    if local.is_file():
        return (local.resolve().parent,)
    from datasets import config
    from huggingface_hub import constants

    return tuple(Path(p).expanduser().resolve() for p in (config.HF_DATASETS_CACHE, constants.HF_HUB_CACHE))


def _dataset_file(path: Path, roots: tuple[Path, ...], limits: ImportLimits) -> bytes:
    """The bytes of a dataset's image file, when it lies (links followed) inside `roots`."""
    try:
        target = path.resolve()
        if not any(target.is_relative_to(root) for root in roots):
            raise Rejected("unsafe name: an image file outside the dataset's folder (or a link that leads out of it); "
                           "not read")
        size = target.stat().st_size
        if size > limits.max_file_bytes:
            raise Rejected(f"file of {size:,} bytes is over the limit of {limits.max_file_bytes:,}")
        return target.read_bytes()
    except OSError as e:
        raise Rejected(f"cannot read: {e.strerror}") from None


def _dataset_error(error: BaseException, name_or_dir: str, local: Path) -> str:
    """One line of `error` (or of its cause, when it is the datasets library's generic wrapper) in
    which the dataset's folder is called as it was given and no other absolute path is shown."""
    if error.__cause__ is not None and type(error).__name__ == "DatasetGenerationError":
        error = error.__cause__
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    places = {str(local.absolute()): name_or_dir, str(local.resolve()): name_or_dir, str(Path.cwd()): ".",
              str(Path.home()): "~"}
    for where in sorted(places, key=len, reverse=True):
        line = line.replace(where, places[where])
    return line


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
    into: str = "train",
    shown: str | None = None,
) -> ImportReport:
    """Import split `split` of a Hugging Face dataset (a `load_dataset` id, or a local imagefolder)
    with its image, text and label columns (found by type and name when not given) into the
    workspace split `into` (train, validation, test). `shown`: what messages call the dataset
    (default `name_or_dir`; the app passes what the person typed, not the resolved folder)."""
    import datasets

    limits = limits or ImportLimits()
    check_split(into)
    local = Path(name_or_dir).expanduser()
    if not path_exists(local) and name_or_dir.strip().lower() in dataset_builders():
        raise ValueError(f"{name_or_dir.strip()!r} is a dataset format, not a dataset (it would read the working "
                         "directory); give the folder that holds the images, or a hub dataset id")
    readable = _dataset_roots(local)
    try:
        if local.is_dir():
            from medart.data import load_local_imagefolder

            ds = load_local_imagefolder(local, split)
        else:
            ds = datasets.load_dataset(name_or_dir, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError, datasets.exceptions.DatasetGenerationError) as e:
        shown = shown or name_or_dir
        reason = _dataset_error(e, shown, local)
        raise ValueError(
            f"could not load the dataset {shown!r} (split {split!r}): {reason}. Give a local imagefolder or a "
            "hub dataset id reachable from here; pick the split with --hf-split"
        ) from None
    features = ds.features
    if image_column is None:
        image_column = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    if image_column not in features:
        raise ValueError(f"no image column in {shown or name_or_dir!r} (columns: {', '.join(features)}); "
                         "pass --image-column")
    if text_column is None:
        text_column = next((k for k in ("text", "caption", "captions", "description") if k in features), None)
    if label_column is None:
        label_column = next((k for k in ("label", "labels", "class", "category") if k in features), None)
    names = getattr(features.get(label_column), "names", None) if label_column else None
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    report = ImportReport()
    batch = _Batch(ws, report)
    source = f"dataset {local.name if local.is_dir() else name_or_dir}:{split}"
    with ws.importing():
        try:
            for n, row in enumerate(ds):
                if max_rows is not None and n >= max_rows:
                    break
                cell = row[image_column] or {}
                display = f"{source} row {n}" + (f" ({Path(cell['path']).name})" if cell.get("path") else "")
                try:
                    data = cell.get("bytes")
                    if data is None and cell.get("path"):
                        data = _dataset_file(Path(cell["path"]), readable, limits)
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
                          into, text, prov)  # fmt: skip
            batch.commit()
        except BaseException:
            batch.abort()
            raise
    return report
