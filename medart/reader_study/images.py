"""The one way a reader-study image becomes the bytes a reader's browser receives.

Blinding rests on this module: real and generated images go through exactly the same steps,

1. decoded to 8-bit RGB (alpha, palette, 16-bit and grey all end as RGB),
2. centre-cropped to a square and resized to the study's display size (Lanczos),
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

from PIL import Image

DISPLAY_FORMAT = "PNG"
ENCODER_SETTINGS = {"compress_level": 0, "optimize": False}
MIN_SIZE, MAX_SIZE = 16, 2048


def display_image(image: Image.Image, size: int) -> Image.Image:
    """RGB, centre-cropped to a square, `size` x `size`, with no metadata attached."""
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"display size {size} is out of range; choose {MIN_SIZE}..{MAX_SIZE} pixels")
    rgb = image.convert("RGBA").convert("RGB") if image.mode in ("P", "LA", "PA") else image.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return Image.frombytes("RGB", (size, size), square.tobytes())


def encode(image: Image.Image, size: int) -> bytes:
    """The served bytes: `display_image` written as an uncompressed PNG without ancillary chunks."""
    clean = display_image(image, size)
    buf = io.BytesIO()
    clean.save(buf, format=DISPLAY_FORMAT, **ENCODER_SETTINGS)
    return buf.getvalue()


def new_token() -> str:
    """An opaque id for one study image: 24 random hex digits, nothing derived from the image."""
    return secrets.token_hex(12)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
