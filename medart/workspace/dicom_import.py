"""DICOM files as plain images, keeping nothing of the patient.

Pixels: the modality LUT (rescale slope/intercept) is applied, then the file's VOI window
(WindowCenter/WindowWidth) when it has one, else its min..max range, to 8 bits; MONOCHROME1
is inverted; of a multi-frame file the middle frame is taken; colour files stay RGB.

Header values: the dataset is dropped as soon as the pixels are read. Of the header only two
values leave this module, each checked against DICOM's defined terms first: the Modality
(0008,0060), kept when it is one of the terms of CID 33 (as pydicom ships them) and dropped
otherwise, and the Photometric Interpretation (0028,0004), whose unknown values are refused.
No message quotes a header value or the text of a pydicom error (which can quote one), and
pydicom's own warnings and log lines are silenced while a file is read.

Pixels can carry patient data too (DICOM PS3.15 E.1, Burned In Annotation): a file whose
Burned In Annotation (0028,0301) is YES, and a secondary capture (its SOP class, or Modality
OT or SC) or an ultrasound image (its SOP class, or Modality US) that does not say NO, is
refused with that reason unless `allow_burned_in` is set; then it is imported and flagged so
the import summary lists it for a person to check.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

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
    """`a` mapped linearly from lo..hi (default: its own min..max) to 0..255; flat when hi <= lo."""
    a = a.astype(np.float64)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return (np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


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
    return None


def decode_dicom(data: bytes, max_pixels: int, min_side: int, allow_burned_in: bool = False) -> DicomImage:
    """The image of a DICOM file (see the module docstring) or DicomRejected."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    if not data:
        raise DicomRejected("empty file (0 bytes)")
    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception:  # pydicom raises many types for broken files; their text can quote values
            raise DicomRejected("corrupt DICOM file: its header cannot be read") from None
        if "PixelData" not in ds:
            raise DicomRejected("DICOM file without an image (no PixelData); it may be a report or a plan")
        reason = burned_in_reason(ds)
        if reason and not allow_burned_in:
            raise DicomRejected(f"may show patient data in its pixels: {reason}; {ALLOW_HINT}")
        rows, cols = _number(ds, "Rows", 0), _number(ds, "Columns", 0)
        frames = max(1, _number(ds, "NumberOfFrames", 1))
        samples = _number(ds, "SamplesPerPixel", 1)
        if rows * cols > max_pixels:
            raise DicomRejected(
                f"decompression bomb: {cols}x{rows} pixels is over the limit of {max_pixels:,} "
                "(raise --max-pixels if the image is genuine)"
            )
        photometric = _text(ds, "PhotometricInterpretation") or "MONOCHROME2"
        if photometric not in photometric_terms():
            raise DicomRejected(
                "unsupported Photometric Interpretation (not one of DICOM's defined terms); "
                "export the image again as MONOCHROME2 or RGB"
            )
        modality = _text(ds, "Modality")
        modality = modality if modality in modalities() else ""
        try:
            pixels = ds.pixel_array
        except Exception:  # missing decoders or broken data; the error's text can quote header values
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            known = syntax is not None and syntax.is_transfer_syntax
            raise DicomRejected(
                f"cannot decode the DICOM pixels (transfer syntax: {syntax.name if known else 'not a known one'}). "
                "Compressed DICOM needs `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`; otherwise "
                "export the images uncompressed, or the pixel data is damaged"
            ) from None
        try:
            if frames > 1 and pixels.ndim >= 3 and pixels.shape[0] == frames:
                pixels = pixels[frames // 2]
            if samples == 3:
                rgb = pixels if pixels.dtype == np.uint8 else rescale_8bit(pixels)
                image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8), "RGB")
            else:
                values = apply_modality_lut(pixels, ds)
                center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
                if center is not None and width is not None and width > 0:
                    gray = rescale_8bit(values, center - width / 2, center + width / 2)
                else:
                    gray = rescale_8bit(values)
                if photometric == "MONOCHROME1":
                    gray = 255 - gray
                image = Image.fromarray(np.repeat(gray[..., None], 3, -1), "RGB")
        except DicomRejected:
            raise
        except Exception:  # inconsistent pixel module (shape, LUT, window)
            raise DicomRejected("corrupt DICOM image: its pixel data does not match its header") from None
        del ds
    if min(image.size) < min_side:
        raise DicomRejected(f"too small: {image.width}x{image.height} pixels (at least {min_side} on each side)")
    mode = " ".join(part for part in ("DICOM", modality, photometric, str(pixels.dtype)) if part)
    return DicomImage(image, mode, modality, burned_in=bool(reason))
