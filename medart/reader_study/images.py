"""The one way a reader-study image becomes the bytes a reader's browser receives.

Blinding rests on this module: real and generated images go through exactly the same steps,

1. decoded to 8-bit RGB (alpha, palette, 16-bit and grey all end as RGB), then, in a study
   whose real images are grey (`grey_study`), to single-channel grey (L) for every image: a
   generated image's three slightly different channels would otherwise tell it from a real
   grey one (R = G = B);
2. centre-cropped to a square and resampled twice, whatever its size: Lanczos to a fixed
   inner size (`INNER` of the display size), then Lanczos to the display size. An image
   already at the display size is resampled as much as a larger one, so neither "was it
   resized" (exact pixels, a JPEG grid, the band an image's detail reaches) nor the stored
   size shows in what is served;
3. rebuilt from raw pixels (no info dict, EXIF, ICC profile, DPI or text is carried over),
4. written as PNG with the same encoder settings: zlib level 0 (stored, uncompressed).

Uncompressed PNG is chosen on purpose: a compressed file is smaller for smoother pictures,
so its length would be a hint. Stored, the file's length and chunk layout (IHDR, IDAT..., IEND)
depend only on the display size, so every image of a study has the same number of bytes.
Images reach the page inline (a `data:` URI) under a random token that is not derived from
the label, the source path or the pixels.
"""

from __future__ import annotations

import base64
import io
import secrets

import numpy as np
from PIL import Image

DISPLAY_FORMAT = "PNG"
ENCODER_SETTINGS = {"compress_level": 0, "optimize": False}
MIN_SIZE, MAX_SIZE = 16, 2048
INNER = 0.75  # every image passes through a square of this fraction of the display size
GREY_TOLERANCE = 3  # most a channel of a grey picture may differ from another (JPEG's colour rounding)


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGBA").convert("RGB") if image.mode in ("P", "LA", "PA") else image.convert("RGB")


def is_grey(image: Image.Image) -> bool:
    """Whether a picture is grey: a grey mode, or R, G and B equal to within `GREY_TOLERANCE`."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    pixels = np.asarray(_rgb(image), dtype=np.int16)
    return bool(np.abs(pixels[..., 0] - pixels[..., 1]).max() <= GREY_TOLERANCE
                and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= GREY_TOLERANCE)


def grey_study(real_images) -> bool:
    """Whether a study is served grey: when all of its real images are grey."""
    real_images = list(real_images)
    return bool(real_images) and all(is_grey(im) for im in real_images)


def display_image(image: Image.Image, size: int, grey: bool = False) -> Image.Image:
    """RGB (or grey, L), centre-cropped to a square, resampled to `INNER` of `size` and then to
    `size` x `size` (Lanczos both times, whatever its size), with no metadata attached."""
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"display size {size} is out of range; choose {MIN_SIZE}..{MAX_SIZE} pixels")
    mode = "L" if grey else "RGB"
    pixels = _rgb(image).convert(mode)
    w, h = pixels.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = pixels.crop((left, top, left + side, top + side))
    inner = round(size * INNER)
    square = square.resize((inner, inner), Image.Resampling.LANCZOS).resize((size, size), Image.Resampling.LANCZOS)
    return Image.frombytes(mode, (size, size), square.tobytes())


def encode(image: Image.Image, size: int, grey: bool = False) -> bytes:
    """The served bytes: `display_image` written as an uncompressed PNG without ancillary chunks."""
    clean = display_image(image, size, grey)
    buf = io.BytesIO()
    clean.save(buf, format=DISPLAY_FORMAT, **ENCODER_SETTINGS)
    return buf.getvalue()


def new_token() -> str:
    """An opaque id for one study image: 24 random hex digits, nothing derived from the image."""
    return secrets.token_hex(12)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
