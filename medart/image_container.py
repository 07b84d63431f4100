"""Checks of an image file's structure before Pillow reads it, and its EXIF orientation read
without Pillow's EXIF parser.

Pillow reads a TIFF directory's tags when the file is opened, before any size check: every tag
may say it holds megabytes, and all may point at the same bytes, so a 1 MB file can make it
copy gigabytes. The same parser reads EXIF blocks (PNG eXIf, WebP EXIF, JPEG APP1) and JPEG's
MPF block. `check_container(data)` walks the directories Pillow will read (a TIFF's first two
and the EXIF, GPS and interoperability directories of the first; a JPEG's EXIF and MPF blocks,
which Pillow parses when it opens the file) and
refuses more than `MAX_TAGS` tags in one directory, or tag data that would cost more than
`MAX_TAG_COST` in all; it refuses TIFF tiles larger than `MAX_TILE_SIDE` on a side beyond the
image's own size (libtiff reserves a whole tile before decoding), BigTIFF, and JPEG files with
more than `MAX_JPEG_SCANS` scans (each scan is decoded over the whole image).

`orientation(image)` reads the EXIF orientation (1..8) from the first directory of the image's
EXIF block with a bounded walk; `apply_orientation` turns the image accordingly, as
`ImageOps.exif_transpose` would, without parsing the rest of the block.
"""

from __future__ import annotations

import struct

from PIL import Image

MAX_TAGS = 4096  # tags in one directory
MAX_TAG_COST = 32 << 20  # what the tags of all walked directories may cost once read (bytes, estimated)
MAX_IFDS = 16  # directories walked (the first, its sub-directories, the second)
MAX_TILE_SIDE = 1024  # a TIFF tile may exceed the image's size (rounded up to 16) by no more than this
MAX_JPEG_SCANS = 100
# TIFF field type -> (bytes per value, estimated bytes once Pillow has read one value)
_TYPES = {1: (1, 1), 2: (1, 1), 6: (1, 1), 7: (1, 1), 3: (2, 64), 8: (2, 64), 4: (4, 64), 9: (4, 64),
          11: (4, 64), 13: (4, 64), 5: (8, 200), 10: (8, 200), 12: (8, 64), 16: (8, 64), 17: (8, 64), 18: (8, 64)}
_SUB_IFDS = (34665, 34853, 40965)  # EXIF, GPS, interoperability: read by Pillow after a TIFF is loaded
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


class ContainerRejected(ValueError):
    """The file's structure is refused; the message says why (one line)."""


class _Walk:
    """A bounded walk over the directories of one TIFF-structured block."""

    def __init__(self, data: bytes | memoryview, what: str):
        self.data, self.what = data, what
        if len(data) < 8 or bytes(data[:2]) not in (b"II", b"MM"):
            raise ContainerRejected(f"corrupt image: its {what} block is not a TIFF structure")
        self.order = "<" if bytes(data[:2]) == b"II" else ">"
        self.cost, self.ifds, self.seen = 0, 0, set()

    def first(self) -> int:
        return self.unpack("I", 4)[0]

    def unpack(self, fmt: str, at: int) -> tuple:
        size = struct.calcsize(self.order + fmt)
        if at < 0 or at + size > len(self.data):
            raise ContainerRejected(f"corrupt image: its {self.what} block points outside the file")
        return struct.unpack_from(self.order + fmt, self.data, at)

    def ifd(self, at: int) -> tuple[dict[int, tuple[int, int, int]], int]:
        """{tag: (type, count, value or offset)} of the directory at `at`, and the next one's offset."""
        if at in self.seen:
            return {}, 0
        self.seen.add(at)
        self.ifds += 1
        if self.ifds > MAX_IFDS:
            raise ContainerRejected(f"refused: its {self.what} block has more than {MAX_IFDS} directories to read")
        (count,) = self.unpack("H", at)
        if count > MAX_TAGS:
            raise ContainerRejected(f"refused: a directory of its {self.what} block has {count:,} tags (at most "
                                    f"{MAX_TAGS:,})")
        tags = {}
        for k in range(count):
            tag, typ, n, value = self.unpack("HHII", at + 2 + 12 * k)
            unit, cost = _TYPES.get(typ, (0, 0))
            size = unit * n
            if size > 4 and size > len(self.data) - value:
                size = max(0, len(self.data) - value)  # Pillow reads what is there, then drops the tag
                n = size // unit if unit else 0
            self.cost += 64 + n * cost
            if self.cost > MAX_TAG_COST:
                raise ContainerRejected(f"refused: the tags of its {self.what} block would take more than "
                                        f"{MAX_TAG_COST >> 20} MiB to read (a crafted file?)")
            if typ in (3, 8) and n == 1:
                value = self.unpack("H", at + 2 + 12 * k + 8)[0]
            tags[tag] = (typ, n, value)
        (following,) = self.unpack("I", at + 2 + 12 * count) if at + 6 + 12 * count <= len(self.data) else (0,)
        return tags, following

    def walk(self) -> dict[int, tuple[int, int, int]]:
        """The first directory's tags, after walking all that Pillow reads."""
        tags, following = self.ifd(self.first())
        for sub in _SUB_IFDS:
            if sub in tags and tags[sub][1] == 1:
                inner, _ = self.ifd(tags[sub][2])
                if 40965 in inner and inner[40965][1] == 1:
                    self.ifd(inner[40965][2])
        if following:
            self.ifd(following)
        return tags


def _check_tiff(data: bytes) -> None:
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        raise ContainerRejected("BigTIFF is not supported; save the image as a standard TIFF or a PNG")
    tags = _Walk(data, "TIFF").walk()
    width, height = (tags.get(t, (0, 0, 0))[2] for t in (256, 257))
    for tag, side in ((322, width), (323, height)):
        if tag in tags and tags[tag][2] > -(-side // 16) * 16 + MAX_TILE_SIDE:
            raise ContainerRejected(f"refused: its tiles ({tags[322][2] if 322 in tags else '?'}x"
                                    f"{tags[323][2] if 323 in tags else '?'}) are far larger than the image "
                                    f"({width}x{height}); a crafted file?")


def _check_jpeg(data: bytes) -> None:
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        if marker == 0xDA:
            break
        (length,) = struct.unpack_from(">H", data, at + 2)
        segment = memoryview(data)[at + 4:at + 2 + length]
        if marker == 0xE2 and bytes(segment[:4]) == b"MPF\x00":
            _Walk(segment[4:], "MPF").walk()
        elif marker == 0xE1 and bytes(segment[:6]) == b"Exif\x00\x00":  # Pillow reads it on open, for the dpi
            _Walk(segment[6:], "EXIF").walk()
        at += 2 + length
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise ContainerRejected(f"refused: the JPEG has {scans:,} scans (at most {MAX_JPEG_SCANS}); a crafted file?")


def check_container(data: bytes) -> None:
    """Refuse (ContainerRejected) a TIFF or JPEG whose structure would make Pillow spend more
    than a fixed amount of memory or work before the image's size is known; others pass."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _check_tiff(data)
    elif data[:2] == b"\xff\xd8":
        _check_jpeg(data)


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 when absent or unreadable), read with a bounded walk."""
    if image.format == "TIFF":
        value = getattr(image, "tag_v2", {}).get(274, 1)  # the first directory: already read, bounded
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    raw = image.info.get("exif")
    if not isinstance(raw, (bytes, bytearray)):
        return 1
    raw = memoryview(raw)[6:] if bytes(raw[:6]) == b"Exif\x00\x00" else memoryview(raw)
    try:
        walk = _Walk(raw, "EXIF")
        (count,) = walk.unpack("H", walk.first())
        for k in range(min(count, MAX_TAGS)):
            tag, typ = walk.unpack("HH", walk.first() + 2 + 12 * k)
            if tag == 274 and typ == 3:
                value = walk.unpack("H", walk.first() + 2 + 12 * k + 8)[0]
                return value if 1 <= value <= 8 else 1
    except ContainerRejected:
        return 1
    return 1


def apply_orientation(image: Image.Image) -> Image.Image:
    """`image` turned upright by its EXIF orientation (itself when there is nothing to do)."""
    method = _TRANSPOSE.get(orientation(image))
    return image.transpose(method) if method is not None else image
