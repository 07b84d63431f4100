"""DICOM files as plain images, keeping nothing of the patient.

Pixels: the modality LUT (rescale slope/intercept) is applied, then the file's VOI window
(WindowCenter/WindowWidth) when it has one, else its min..max range, to 8 bits; MONOCHROME1
is inverted; of a multi-frame file the middle frame is taken; colour files stay RGB.

Bounds (a file of any size costs at most a fixed multiple of the pixel limit): before any
pixel is decoded the header's Rows x Columns x frames must be within `max_pixels`, and its
pixel data within what that many pixels of its samples and bits take; a pixel of more than
`MAX_PIXEL_BYTES` bytes (all samples) or a sample over 32 bits is refused. A Deflated Explicit VR
file is inflated a header's worth first (64 KiB, then up to `HEADER_BYTES`), then only up to
the pixel bytes its header declares (and `TRAILER_BYTES` after them); more is refused. Of an
encapsulated file (RLE, JPEG, JPEG-LS, JPEG 2000) each compressed frame must be smaller than
twice its decoded size (plus `FRAME_OVERHEAD`), an RLE frame's segments must decode to Rows x
Columns bytes each (counted without decoding), and a JPEG-family frame's own dimensions must
be the header's; Pillow decodes under the same pixel limit. Video transfer syntaxes are
refused.

Header values: the dataset is dropped as soon as the pixels are read. Of the header only two
values leave this module, each checked against DICOM's defined terms first: the Modality
(0008,0060), kept when it is one of the terms of CID 33 (as pydicom ships them) and dropped
otherwise, and the Photometric Interpretation (0028,0004), whose unknown values are refused.
No message quotes a header value or the text of a pydicom error (which can quote one), and
pydicom's own warnings and log lines are silenced while a file is read.

Pixels can carry patient data too (DICOM PS3.15 E.1, Burned In Annotation): a file whose
Burned In Annotation (0028,0301) is YES, and a secondary capture (its SOP class, or Modality
OT or SC) or an ultrasound image (its SOP class, or Modality US) that does not say NO, is
refused with that reason unless `allow_burned_in` is set (so is a visible-light photograph:
VL Endoscopic, VL Photographic, Ophthalmic Photography, dermoscopy and microscopy classes, or
Modality ES, XC, OP, DMS, GM, SM); then it is imported and flagged so the import summary
lists it for a person to check.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

from medart.pixel_limit import BOMB_ERRORS, pixel_limit

SECONDARY_CAPTURE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
}
ULTRASOUND_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
    "1.2.840.10008.5.1.4.1.1.6.3",  # Photoacoustic Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
}
PHOTOGRAPHIC_CLASSES = {  # visible-light photographs: camera images often show a name or a date
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.3",  # VL Slide-Coordinates Microscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # Ophthalmic Photography 16 Bit Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.5.5",  # Wide Field Ophthalmic Photography Stereographic Projection
    "1.2.840.10008.5.1.4.1.1.77.1.5.6",  # Wide Field Ophthalmic Photography 3D Coordinates
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy Image Storage (its label images)
    "1.2.840.10008.5.1.4.1.1.77.1.7",  # Dermoscopic Photography Image Storage
}
PHOTOGRAPHIC_MODALITIES = {"ES", "XC", "OP", "DMS", "GM", "SM"}  # endoscopy, camera, ophthalmic, dermoscopy, microscopy
HEADER_BYTES = 16 << 20  # a deflated file's header (everything before its pixel data) is read up to this size
TRAILER_BYTES = 1 << 20  # a deflated file's elements after its pixel data (padding, signatures) up to this size
MAX_PIXEL_BYTES = 8  # bytes one decoded pixel may take, all samples together
FRAME_OVERHEAD = 64 << 10  # bytes a compressed frame may carry beyond twice its decoded size (markers, tables)
PIXEL_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}  # Pixel Data, Float and Double Float Pixel Data
ALLOW_HINT = (
    "if you have checked that the images show no name, date or number, import them with --allow-burned-in "
    "(Data tab: 'Allow images that may show burned-in patient data')"
)
_lock = threading.Lock()


class DicomRejected(Exception):
    """This DICOM file is not imported; the message (which quotes no header value) says why."""


@dataclass
class DicomImage:
    image: Image.Image  # 8-bit RGB
    mode: str  # e.g. "DICOM CT MONOCHROME2 int16": validated values only
    modality: str  # a DICOM defined term, or "" when the file's value is not one
    burned_in: bool  # imported only because burned-in annotations were allowed


@functools.cache
def modalities() -> frozenset[str]:
    """DICOM's Modality defined terms (CID 33, PS3.3 C.7.3.1.1.1), from pydicom's code tables."""
    from pydicom.sr.codedict import Collection

    return frozenset(code.value for code in Collection("CID33").concepts.values())


@functools.cache
def photometric_terms() -> frozenset[str]:
    from pydicom.pixels.common import PhotometricInterpretation

    return frozenset(p.value for p in PhotometricInterpretation)


@contextmanager
def _quiet_pydicom():
    """No pydicom warning or log line (they quote header values) while a file is read."""
    import pydicom.config as config

    logger = logging.getLogger("pydicom")
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        disabled, mode = logger.disabled, config.settings.reading_validation_mode
        logger.disabled = True
        config.settings.reading_validation_mode = config.IGNORE
        try:
            yield
        finally:
            logger.disabled = disabled
            config.settings.reading_validation_mode = mode


def _text(ds, keyword: str) -> str:
    """A header string, upper-cased and stripped; "" when absent or unreadable."""
    try:
        value = ds.get(keyword, "")
        if value is None:
            return ""
        if not isinstance(value, (str, bytes)) and hasattr(value, "__getitem__"):
            value = value[0] if len(value) else ""
        return str(value).strip().upper()
    except Exception:  # a damaged element: treated as absent
        return ""


def _number(ds, keyword: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword, default)
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError, OverflowError):
        raise DicomRejected(f"invalid DICOM header: {keyword} is not a number") from None


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


def rescale_8bit(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """`a` mapped linearly from lo..hi (default: its own min..max) to 0..255; flat when hi <= lo.
    Converted a block of rows at a time: at most a few MiB of float copies besides the result."""
    a = np.asarray(a).reshape(-1) if np.ndim(a) == 0 else np.asarray(a)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    out = np.zeros(a.shape, np.uint8)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo or not a.size:
        return out
    flat_in, flat_out = a.reshape(a.shape[0], -1), out.reshape(out.shape[0], -1)
    step = max(1, (1 << 19) // max(1, flat_in.shape[1]))
    for s in range(0, flat_in.shape[0], step):
        block = np.nan_to_num(flat_in[s:s + step].astype(np.float64), nan=lo)
        flat_out[s:s + step] = np.clip((block - lo) / (hi - lo), 0, 1) * 255 + 0.5
    return out


def burned_in_reason(ds) -> str | None:
    """Why the pixels may show patient data (PS3.15 E.1), or None."""
    burned = _text(ds, "BurnedInAnnotation")
    if burned == "YES":
        return "its Burned In Annotation is YES: the pixels show text that may identify the patient"
    if burned == "NO":
        return None
    sop = _text(ds, "SOPClassUID") or _text(getattr(ds, "file_meta", {}), "MediaStorageSOPClassUID")
    modality = _text(ds, "Modality")
    if sop in SECONDARY_CAPTURE_CLASSES or modality in ("OT", "SC"):
        return ("a secondary capture (often a screenshot with the patient's name on it) whose Burned In "
                "Annotation does not say NO")
    if sop in ULTRASOUND_CLASSES or modality == "US":
        return "an ultrasound image (the scanner usually writes patient data into it) whose Burned In Annotation does not say NO"
    if sop in PHOTOGRAPHIC_CLASSES or modality in PHOTOGRAPHIC_MODALITIES:
        return ("a photograph (endoscopy, ophthalmology, dermatology, microscopy or camera; these often show a name "
                "or a date) whose Burned In Annotation does not say NO")
    return None


@dataclass
class _Geometry:
    rows: int
    cols: int
    frames: int
    samples: int
    sample_bytes: int  # bytes one sample takes decoded (Bits Allocated rounded up)

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.cols * self.samples * self.sample_bytes


def _bomb(what: str, max_pixels: int) -> DicomRejected:
    return DicomRejected(f"decompression bomb: {what} is over the limit of {max_pixels:,} "
                         "(raise --max-pixels if the image is genuine)")


def _geometry(ds, max_pixels: int) -> _Geometry:
    """The header's pixel dimensions, refused as a bomb when all frames together exceed the limit."""
    rows, cols = _number(ds, "Rows", 0), _number(ds, "Columns", 0)
    frames = max(1, _number(ds, "NumberOfFrames", 1))
    samples, bits = _number(ds, "SamplesPerPixel", 1), _number(ds, "BitsAllocated", 8)
    if rows < 1 or cols < 1 or not 1 <= samples <= 4 or not 1 <= bits <= 64:
        raise DicomRejected("corrupt DICOM header: Rows, Columns, Samples per Pixel or Bits Allocated is out of range")
    if bits > 32 or samples * math.ceil(bits / 8) > MAX_PIXEL_BYTES:
        raise DicomRejected(f"unsupported pixel format: {samples} sample(s) of {bits} bits per pixel (at most 32 bits "
                            f"a sample and {MAX_PIXEL_BYTES} bytes a pixel); export it with Bits Allocated 8 or 16")
    if rows * cols > max_pixels:
        raise _bomb(f"{cols}x{rows} pixels", max_pixels)
    if rows * cols * frames > max_pixels:
        raise _bomb(f"{frames:,} frames of {cols}x{rows} pixels ({rows * cols * frames:,} pixels)", max_pixels)
    return _Geometry(rows, cols, frames, samples, math.ceil(bits / 8))


def _read_header(data: bytes):
    """(the dataset up to its pixel data, the pixel data's length: None when there is none, -1 when
    undefined as in encapsulated data); nothing of the pixels is read."""
    from pydicom.filereader import read_partial

    reached = []

    def at_pixels(tag, vr, length) -> bool:
        if tag in PIXEL_TAGS:
            reached.append(-1 if length == 0xFFFFFFFF else length)
        return bool(reached)

    try:
        return read_partial(io.BytesIO(data), stop_when=at_pixels), (reached or [None])[0]
    except Exception:  # pydicom raises many types for broken files; their text can quote values
        raise DicomRejected("corrupt DICOM file: its header cannot be read") from None


def _inflated(data: bytes, max_pixels: int) -> bytes:
    """`data`; or, for a Deflated Explicit VR Little Endian file, the same file as Explicit VR Little
    Endian, inflated a header's worth first and then only as far as the pixels that header declares."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    fp = io.BytesIO(data)
    try:
        preamble = read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception:
        raise DicomRejected("corrupt DICOM file: its header cannot be read") from None
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return data
    body = memoryview(data)[fp.tell():]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write((preamble or bytes(128)) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=False)
    prefix = out.getvalue()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        head, pending = b"", body
        for size in (64 << 10, HEADER_BYTES):  # most headers are a few KB; a few hold MBs of private data
            head += inflater.decompress(pending, size - len(head))
            pending = inflater.unconsumed_tail
            more = bool(pending) or not inflater.eof
            header, pixel_length = _read_header(prefix + head)
            if pixel_length is not None or not more:
                break
        if pixel_length is None:
            if len(head) >= HEADER_BYTES:
                raise DicomRejected(f"DICOM header larger than {HEADER_BYTES >> 20} MiB once inflated")
            if more:
                raise DicomRejected("corrupt DICOM file: its deflated data ends before its pixel data")
            return prefix + head
        g = _geometry(header, max_pixels)
        limit = g.frame_bytes * g.frames + TRAILER_BYTES  # the pixels, then elements after them (padding)
        rest = inflater.decompress(pending, limit) if more else b""
        if inflater.unconsumed_tail or (not inflater.eof and len(rest) >= limit):
            raise DicomRejected("decompression bomb: its deflated data inflates to more than the "
                                f"{g.frame_bytes * g.frames:,} bytes of pixels its header declares "
                                f"({g.frames:,} frame(s) of {g.cols}x{g.rows})")
    except zlib.error:
        raise DicomRejected("corrupt DICOM file: its deflated data cannot be inflated") from None
    return prefix + head + rest


def _rle_length(frame: bytes, start: int, end: int, limit: int) -> int:
    """Bytes an RLE segment decodes to (PS3.5 G.3.1), counted without decoding; stops past `limit`."""
    pos, n = start, 0
    while pos < end and n <= limit:
        header = frame[pos]
        if header > 128:
            n, pos = n + 257 - header, pos + 2
        elif header < 128:
            n, pos = n + header + 1, pos + header + 2
        else:
            pos += 1
    return n


def _check_rle(frame: bytes, g: _Geometry) -> None:
    count = struct.unpack_from("<I", frame)[0] if len(frame) >= 64 else 0
    if count != g.samples * g.sample_bytes:
        raise DicomRejected("corrupt DICOM image: its RLE frame does not match its header")
    offsets = list(struct.unpack_from(f"<{count}I", frame, 4))
    for start, end in zip(offsets, offsets[1:] + [len(frame)]):
        if not 64 <= start <= end <= len(frame):
            raise DicomRejected("corrupt DICOM image: its RLE frame does not match its header")
        if _rle_length(frame, start, end, g.rows * g.cols + 1) > g.rows * g.cols + 1:
            raise DicomRejected(f"decompression bomb: an RLE frame that decodes to more than its {g.cols}x{g.rows} "
                                "pixels")


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(columns, rows) a JPEG, JPEG-LS or JPEG 2000 codestream declares in its header, or None."""
    if frame[:2] == b"\xff\xd8":  # JPEG and JPEG-LS: the SOF marker segment
        pos = 2
        while pos + 9 <= len(frame) and frame[pos] == 0xFF:
            marker = frame[pos + 1]
            if marker == 0xFF:
                pos += 1
            elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:
                rows, cols = struct.unpack_from(">HH", frame, pos + 5)
                return cols, rows
            else:
                pos += 2 + struct.unpack_from(">H", frame, pos + 2)[0]
        return None
    soc = frame.find(b"\xff\x4f\xff\x51", 0, FRAME_OVERHEAD)  # JPEG 2000: SOC, then SIZ (in a JP2 box or not)
    if soc < 0 or soc + 24 > len(frame):
        return None
    xsiz, ysiz, x0, y0 = struct.unpack_from(">IIII", frame, soc + 8)
    return xsiz - x0, ysiz - y0


def _check_frames(ds, g: _Geometry) -> None:
    """Refuse video, and encapsulated frames larger than their pixels or declaring another size."""
    from pydicom import uid
    from pydicom.encaps import generate_frames

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax in uid.MPEGTransferSyntaxes:
        raise DicomRejected("a DICOM video (MPEG/HEVC); export single frames as images")
    if syntax is None or not syntax.is_transfer_syntax or not syntax.is_encapsulated:
        return
    codestreams = {*uid.JPEGTransferSyntaxes, *uid.JPEGLSTransferSyntaxes, *uid.JPEG2000TransferSyntaxes}
    limit = 2 * g.frame_bytes + FRAME_OVERHEAD
    try:
        for frame in generate_frames(ds.PixelData, number_of_frames=g.frames):
            if len(frame) > limit:
                raise DicomRejected(f"decompression bomb: a compressed frame of {len(frame):,} bytes for "
                                    f"{g.cols}x{g.rows} pixels (at most {limit:,})")
            if syntax in uid.RLETransferSyntaxes:
                _check_rle(frame, g)
            elif syntax in codestreams and _codestream_size(frame) != (g.cols, g.rows):
                raise DicomRejected("corrupt DICOM image: a compressed frame's own size is not its header's "
                                    f"{g.cols}x{g.rows} pixels")
    except (DicomRejected, MemoryError):
        raise
    except Exception:  # broken encapsulation; the error's text can quote header values
        raise DicomRejected("corrupt DICOM image: its compressed frames cannot be read") from None


def _header_checks(header, max_pixels: int, allow_burned_in: bool) -> tuple[str | None, _Geometry, str]:
    """(burned-in reason, geometry, photometric interpretation) of the header, or DicomRejected."""
    reason = burned_in_reason(header)
    if reason and not allow_burned_in:
        raise DicomRejected(f"may show patient data in its pixels: {reason}; {ALLOW_HINT}")
    g = _geometry(header, max_pixels)
    photometric = _text(header, "PhotometricInterpretation") or "MONOCHROME2"
    if photometric not in photometric_terms():
        raise DicomRejected(
            "unsupported Photometric Interpretation (not one of DICOM's defined terms); "
            "export the image again as MONOCHROME2 or RGB"
        )
    return reason, g, photometric


def _decode_pixels(ds, max_pixels: int) -> np.ndarray:
    """The pixel array, decoded with Pillow's guard set to the pixel limit."""
    try:
        with pixel_limit(max_pixels):
            return ds.pixel_array
    except BOMB_ERRORS:
        raise _bomb("a compressed frame", max_pixels) from None
    except MemoryError:
        raise
    except Exception:  # missing decoders or broken data; the error's text can quote header values
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        known = syntax is not None and syntax.is_transfer_syntax
        raise DicomRejected(
            f"cannot decode the DICOM pixels (transfer syntax: {syntax.name if known else 'not a known one'}). "
            "Compressed DICOM needs `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`; otherwise "
            "export the images uncompressed, or the pixel data is damaged"
        ) from None


def _to_image(pixels: np.ndarray, ds, g: _Geometry, photometric: str) -> Image.Image:
    """8-bit RGB of the (middle frame of the) pixels: modality LUT, window, MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut

    try:
        if g.frames > 1 and pixels.ndim >= 3 and pixels.shape[0] == g.frames:
            pixels = pixels[g.frames // 2]
        if g.samples == 3:
            rgb = pixels if pixels.dtype == np.uint8 else rescale_8bit(pixels)
            return Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8), "RGB")
        values = apply_modality_lut(pixels, ds)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            gray = rescale_8bit(values, center - width / 2, center + width / 2)
        else:
            gray = rescale_8bit(values)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        return Image.fromarray(np.repeat(gray[..., None], 3, -1), "RGB")
    except Exception:  # inconsistent pixel module (shape, LUT, window)
        raise DicomRejected("corrupt DICOM image: its pixel data does not match its header") from None


def decode_dicom(data: bytes, max_pixels: int, min_side: int, allow_burned_in: bool = False) -> DicomImage:
    """The image of a DICOM file (see the module docstring) or DicomRejected; every bound is
    checked before the pixels are inflated or decoded."""
    import pydicom

    if not data:
        raise DicomRejected("empty file (0 bytes)")
    with _quiet_pydicom():
        data = _inflated(data, max_pixels)
        header, pixel_length = _read_header(data)
        if pixel_length is None:
            raise DicomRejected("DICOM file without an image (no PixelData); it may be a report or a plan")
        reason, g, photometric = _header_checks(header, max_pixels, allow_burned_in)
        if pixel_length > g.frame_bytes * g.frames + FRAME_OVERHEAD:
            raise DicomRejected(f"corrupt DICOM image: its pixel data holds {pixel_length:,} bytes, more than its "
                                f"header's {g.frames:,} frame(s) of {g.cols}x{g.rows} pixels take")
        modality = _text(header, "Modality")
        modality = modality if modality in modalities() else ""
        del header
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception:  # pydicom raises many types for broken files; their text can quote values
            raise DicomRejected("corrupt DICOM file: its header cannot be read") from None
        if "PixelData" not in ds:
            raise DicomRejected("DICOM file without an image (no PixelData); it may be a report or a plan")
        _check_frames(ds, g)
        pixels = _decode_pixels(ds, max_pixels)
        image = _to_image(pixels, ds, g, photometric)
        del ds
    if min(image.size) < min_side:
        raise DicomRejected(f"too small: {image.width}x{image.height} pixels (at least {min_side} on each side)")
    mode = " ".join(part for part in ("DICOM", modality, photometric, str(pixels.dtype)) if part)
    return DicomImage(image, mode, modality, burned_in=bool(reason))
