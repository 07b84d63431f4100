"""The one pixel limit for images read from outside: an import's `--max-pixels`, and the same
default when training reads its data.

Pillow has its own decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`, 89.5 M pixels by
default: a warning above it, an error above twice that) which fires while an image is opened,
before any caller can check the size. `pixel_limit(n)` sets that guard to `n` for the block
and turns its warning into an error, so an image is refused exactly when it has more than `n`
pixels, whether `n` is below Pillow's default or above it. The previous value is restored
after; a lock keeps concurrent blocks from mixing their limits. In the same block PNG text
chunks (tEXt, zTXt, iTXt, which the import drops anyway) may hold at most `MAX_TEXT_BYTES`
in all, inflated, instead of Pillow's 64 MB.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

from PIL import Image, PngImagePlugin

DEFAULT_MAX_PIXELS = 100_000_000
MAX_TEXT_BYTES = 1 << 20  # PNG text chunks, all together, once inflated
BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_lock = threading.RLock()


@contextmanager
def pixel_limit(max_pixels: int = DEFAULT_MAX_PIXELS):
    """Inside the block Pillow refuses (raises one of BOMB_ERRORS for) images over `max_pixels`."""
    if max_pixels < 1:
        raise ValueError(f"the pixel limit must be at least 1 (got {max_pixels})")
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY
        Image.MAX_IMAGE_PIXELS = int(max_pixels)
        PngImagePlugin.MAX_TEXT_CHUNK = min(previous[1], MAX_TEXT_BYTES)
        PngImagePlugin.MAX_TEXT_MEMORY = min(previous[2], MAX_TEXT_BYTES)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = previous
