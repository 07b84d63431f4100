"""What the page shows of a stored image: a PIL copy, never its path.

Gradio serves a file handed to a component by path from `/gradio_api/file=<path>` (and, with
`allowed_paths`, every file beside it). The tabs therefore read thumbnails, samples and plots
here and give the components pixels: Gradio encodes its own copy into the app's private
cache folder (`app.private_page_cache`), which holds only what pages have shown.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image


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
