"""What the page shows of a stored image: a copy made for the page, never the stored file's path.

Gradio serves a file handed to a component by path from `/gradio_api/file=<path>` (and, with
`allowed_paths`, every file beside it). The tabs therefore never hand a workspace or run file
to a component. Two ways to show one:

- `load` / `gallery`: a PIL copy; Gradio encodes it into its private cache folder
  (`app.private_page_cache`). Right for run samples and plots, which change under one name.
- `shown`: a copy of a content-addressed workspace file (thumbnail, editor image) written once
  into `shown/` of that same cache folder and handed to the component by that path. Gradio
  serves it as is: no re-encoding and no copy on later clicks, which keeps the review loop fast
  (a gallery page of 48 thumbnails costs 48 path strings, not 48 image encodings). The folder
  holds only what pages have shown, like the rest of the cache. A copy's name is a keyed hash
  (a secret of this process) of the workspace file's path and content hash: nobody can compute
  it from an image they have, and each workspace (each visitor's, on the public Space) names
  the same image differently, so a URL tells nothing about what another session imported.

Uploads live in folders of their own, `upload-<128 random bits>/` of that cache folder (see
`medart.ui.uploads`, which moves each one there and serves none back by URL): only the page that
sent a file learns its path. `uploaded_paths` accepts a handler's paths only when each is such an
upload; anything else (a server path, a page copy, a missing file, a folder) gets one refusal
that says nothing of what is there. `discard_uploads` deletes the raw files a client uploaded
(DICOM headers, names) once a handler is done with them; `deleting_uploads` makes a handler of
uploads check its paths and delete them when it returns or fails.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import stat
import shutil
import tempfile
from pathlib import Path

from PIL import Image

_NAME_KEY = secrets.token_bytes(32)  # names of the page copies; never leaves this process
UPLOAD_PREFIX = "upload-"
_UPLOAD_FOLDER = re.compile(UPLOAD_PREFIX + "[0-9a-f]{32}")
NOT_UPLOADED = "these files were not uploaded to this page: upload them again"


def load(path: str | Path, max_side: int | None = None) -> Image.Image | None:
    """The image at `path`, fully read and detached from the file (at most `max_side` pixels a
    side); None when it is missing or unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            out = im.convert("RGB") if im.mode not in ("RGB", "RGBA", "L") else im.copy()
    except (OSError, ValueError):
        return None
    if max_side and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def gallery(items) -> list[tuple[Image.Image, str]]:
    """(path, caption) pairs as (image, caption) for gr.Gallery; unreadable files are left out."""
    out = []
    for path, caption in items:
        im = load(path)
        if im is not None:
            out.append((im, caption))
    return out


def page_cache() -> Path:
    """Gradio's cache folder of this process (where it keeps what pages were given)."""
    folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def shown_name(path: str | Path, key: str, max_side: int | None = None) -> str:
    """The page copy's file name: a keyed hash of the file's absolute path (which names its
    workspace), its content hash `key` and the size, unknowable without this process's secret."""
    message = f"{Path(path).absolute()}\0{key}\0{max_side or 0}".encode()
    return hmac.new(_NAME_KEY, message, hashlib.sha256).hexdigest()[:40]


def shown(path: str | Path, key: str, max_side: int | None = None) -> str | None:
    """The page's copy of the content-addressed file at `path` (`key`: its content hash), made
    once, at most `max_side` pixels a side (a larger image is scaled down, losslessly encoded);
    None when the file is missing or unreadable."""
    source = Path(path)
    suffix = source.suffix.lower() or ".png"
    name = shown_name(source, key, max_side)
    target = page_cache() / "shown" / name[:2] / f"{name}{suffix}"
    if target.exists():
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=suffix)
        os.close(fd)
        try:
            _copy(source, Path(staging), max_side)
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
    except (OSError, ValueError):
        return None
    return str(target)


def _copy(source: Path, target: Path, max_side: int | None) -> None:
    if max_side:
        with Image.open(source) as im:
            if max(im.size) > max_side:
                im.load()
                small = im.convert("RGB")
                small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                small.save(target, format="PNG", compress_level=1)
                return
    shutil.copyfile(source, target)


def thumbnails(items, caption) -> list[tuple[str, str]]:
    """(page copy of each item's thumbnail, caption(item)) for gr.Gallery; missing files are left out."""
    out = []
    for item in items:
        path = shown(item.thumb_path, item.sha256)
        if path is not None:
            out.append((path, caption(item)))
    return out


def upload_folder_of(path: str | Path) -> bool:
    """Whether `path` (resolved) lies in one upload's own folder of the page cache."""
    file = Path(path)
    return file.parent.parent == page_cache() and bool(_UPLOAD_FOLDER.fullmatch(file.parent.name))


def uploaded_paths(paths) -> list[str]:
    """The given paths (str or FileData), each an upload to this page: an absolute path, with no
    link or `..` in it, of a regular file in an upload's own folder. Anything else raises one
    ValueError, the same for a missing file, a folder or a path elsewhere (no errno, no path)."""
    out = []
    for path in paths:
        raw = str(getattr(path, "path", path) or "")
        try:
            real = Path(raw).resolve(strict=True)
            ok = (raw == str(real) and upload_folder_of(real)
                  and stat.S_ISREG(os.lstat(real).st_mode))
        except (OSError, RuntimeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(NOT_UPLOADED)
        out.append(str(real))
    return out


def discard_uploads(paths) -> int:
    """Delete uploaded files (and the folders made for them) from the upload cache; a path that
    is not an upload (elsewhere, a page copy, a file Gradio made for a page) is never touched.
    Returns how many went."""
    gone = 0
    for path in paths or []:
        path = getattr(path, "path", path)  # a FileData, or the path itself
        try:
            file = Path(str(path)).resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        if not upload_folder_of(file):
            continue
        try:
            file.unlink(missing_ok=True)
            gone += 1
            file.parent.rmdir()  # the upload's own folder, once empty
        except OSError:
            pass
    return gone


def deleting_uploads(handler):
    """`handler(studio, paths, ...)` of uploaded files: refused with one line unless every path is
    an upload to this page (`uploaded_paths`); the uploads are deleted when it returns or fails
    (imported, refused or not): the workspace keeps only its stripped copies. Uploads already
    deleted (a second click) get the same line, asking for them again."""

    @functools.wraps(handler)
    def run(studio, paths, *args, **kwargs):
        listed = [paths] if isinstance(paths, str) else list(paths or [])
        try:
            uploaded_paths(listed)
            return handler(studio, paths, *args, **kwargs)
        finally:
            discard_uploads(listed)

    return run
