"""Bounded decoding (issue 18, point 3): small crafted files that inflate to far more than the
pixel limit are refused before they inflate. Each bomb is built here and imported in a child
process whose peak memory (ru_maxrss) may grow by at most GROWTH_MB over its warmed-up
baseline, whatever the bomb's inflated size (256 MiB each here); the message says what was
refused. Header checks (frames, encapsulated frame sizes and dimensions) are checked directly."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless,
                         generate_uid)

from medart.workspace import Workspace
from medart.workspace.dicom_import import DicomRejected, decode_dicom
from medart.workspace.importers import ImportLimits, decode_image, import_paths, Rejected

ROOT = Path(__file__).resolve().parents[1]
GROWTH_MB = 24  # the most a refused bomb may add to the importing process's peak memory
BOMB = 256 << 20  # bytes each memory bomb inflates to (kept small enough to run on the old code)
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def header(rows, cols, syntax=ExplicitVRLittleEndian, frames=1, bits=16, samples=1) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = CT_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.Modality = CT_CLASS, "CT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def file_bytes(ds: Dataset, body: bytes) -> bytes:
    """Preamble, file meta and `body` (the dataset as its transfer syntax stores it)."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(bytes(128) + b"DICM")
    write_file_meta_info(fp, ds.file_meta)
    return fp.getvalue() + body


def elements(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def deflated(ds: Dataset, pixel_bytes: int, pixels: bytes | None = None) -> bytes:
    """A Deflated Explicit VR file whose Pixel Data is `pixels`, or `pixel_bytes` zeros streamed
    through the compressor (nothing of that size is held here)."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(elements(ds) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))]
    if pixels is not None:
        parts.append(z.compress(pixels))
    else:
        chunk = bytes(1 << 20)
        for _ in range(pixel_bytes >> 20):
            parts.append(z.compress(chunk))
        parts.append(z.compress(bytes(pixel_bytes % (1 << 20))))
    parts.append(z.flush())
    return file_bytes(ds, b"".join(parts))


def encapsulated(ds: Dataset, frames: list[bytes]) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    write_dataset(fp, ds)
    return file_bytes(ds, fp.getvalue())


def rle_frame(segment: bytes) -> bytes:
    return struct.pack("<16I", 1, 64, *[0] * 14) + segment


def png_with_text(chunks: int, each: int) -> bytes:
    """A 16x16 PNG carrying `chunks` zTXt chunks of `each` zero bytes once inflated."""
    info = PngImagePlugin.PngInfo()
    text = zlib.compress(bytes(each), 9)
    for n in range(chunks):
        info.add(b"zTXt", f"k{n}".encode() + b"\0\0" + text)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def zip_bomb(path: Path, inflated: int, declared: int | None = None) -> Path:
    """A zip with one member of `inflated` zeros; `declared`: the size its headers claim instead."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("scan.png", "w") as f:
        chunk = bytes(1 << 20)
        for _ in range(inflated >> 20):
            f.write(chunk)
    if declared is not None:
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
            at = data.find(signature) + offset
            data[at:at + 4] = struct.pack("<I", declared)
        path.write_bytes(bytes(data))
    return path


CHILD = r"""
import json, resource, sys
from pydicom.data import get_testdata_file
from PIL import Image
from medart.workspace import Workspace
from medart.workspace.dicom_import import decode_dicom
from medart.workspace.importers import ImportLimits, import_paths

source, workspace = sys.argv[1], sys.argv[2]
Image.init()
with open(get_testdata_file("MR_small_RLE.dcm"), "rb") as f:
    decode_dicom(f.read(), 10**8, 8)  # loads every lazily imported decoder before the baseline
with Workspace(workspace) as ws:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = import_paths(ws, [source], limits=ImportLimits())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_mb": (peak - base) / 1024, "added": len(report.added),
                  "rejected": [r.reason for r in report.rejected]}))
"""


def import_in_child(path: Path, tmp_path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "ws")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["deflated-dicom", "rle-dicom", "zip", "zip-lying", "png-text"])
def test_bombs_are_refused_before_they_inflate(tmp_path, kind):
    if kind == "deflated-dicom":  # the bomb: Rows = Columns = 2, then 256 MiB of zeros
        path, data = tmp_path / "scan.dcm", deflated(header(2, 2), BOMB)
        reason = "decompression bomb: its deflated data inflates to more than the 8 bytes of pixels its header declares"
    elif kind == "rle-dicom":  # an 8x8 frame whose RLE segment repeats a byte 128 times per 2 bytes
        path = tmp_path / "scan.dcm"
        data = encapsulated(header(8, 8, RLELossless, bits=8), [rle_frame(b"\x81\x00" * (BOMB // 128))])
        reason = "decompression bomb: a compressed frame of"
    elif kind == "zip":
        path, data = zip_bomb(tmp_path / "scans.zip", BOMB), None
        reason = "zip bomb:"
    elif kind == "zip-lying":  # its headers say 1,000 bytes: no ratio to see before reading
        path, data = zip_bomb(tmp_path / "scans.zip", BOMB, declared=1000), None
        reason = "corrupt zip member: its data does not match"
    else:  # 200 zTXt chunks of 1 MiB each, under Pillow's own limits per chunk
        path, data = tmp_path / "photo.png", png_with_text(200, (1 << 20) - 64)
        reason = "decompression bomb: its PNG text chunks hold more than"
    if data is not None:
        path.write_bytes(data)
    assert path.stat().st_size < 5 << 20  # a small upload
    result = import_in_child(path, tmp_path)
    assert result["added"] == 0 and len(result["rejected"]) == 1
    assert result["rejected"][0].startswith(reason), result["rejected"]
    assert result["grown_mb"] < GROWTH_MB, result


def test_frames_count_against_the_pixel_limit():
    """64 frames of 128x128 are 1,048,576 pixels: over a limit of 500,000 although each frame is not;
    genuine files pass."""
    ds = header(128, 128, bits=8, frames=64)
    pixels = np.zeros((64, 128, 128), np.uint8).tobytes()
    native = file_bytes(ds, elements(ds) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels)) + pixels)
    for data in (native, deflated(ds, len(pixels), pixels)):
        with pytest.raises(DicomRejected, match=r"64 frames of 128x128 pixels \(1,048,576 pixels\) is over the limit "
                                                r"of 500,000"):
            decode_dicom(data, 500_000, 8)
        assert decode_dicom(data, 2_000_000, 8).image.size == (128, 128)  # genuine: imported with a higher limit
    # genuine compressed files (deflated, RLE, JPEG, JPEG 2000) pass every bound
    gray = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 7).astype(np.uint16)
    image = decode_dicom(deflated(header(48, 64), gray.nbytes, gray.tobytes()), 10**8, 8).image
    assert image.size == (64, 48) and np.asarray(image)[..., 0].max() == 255
    for name in ("MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_dcmd.dcm", "JPEG2000.dcm"):
        path = pydicom.data.get_testdata_file(name)
        ds = pydicom.dcmread(path)
        assert decode_dicom(Path(path).read_bytes(), 10**8, 1, allow_burned_in=True).image.size == (ds.Columns, ds.Rows)


def test_an_rle_frame_decoding_past_its_pixels_is_refused_uncounted():
    """Within the compressed-size bound (4 KB for 8x8 pixels) but decoding to 128 KB."""
    data = encapsulated(header(8, 8, RLELossless, bits=8), [rle_frame(b"\x81\x00" * 1024)])
    with pytest.raises(DicomRejected, match="an RLE frame that decodes to more than its 8x8 pixels"):
        decode_dicom(data, 10**8, 8)


def test_a_jpeg_frame_must_have_its_header_size():
    """The DICOM header says 256x256; the JPEG inside says 4000x4000 (48 MB once decoded)."""
    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (90, 90, 90)).save(buf, "JPEG", quality=5)
    ds = header(256, 256, JPEGBaseline8Bit, bits=8, samples=3)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    with pytest.raises(DicomRejected, match="a compressed frame's own size is not its header's 256x256 pixels"):
        decode_dicom(encapsulated(ds, [buf.getvalue()]), 10**8, 8)


def test_png_text_within_bounds_is_dropped_not_refused():
    image, mode = decode_image(png_with_text(3, 1000), ImportLimits())
    assert image.size == (16, 16) and mode == "RGB" and not image.info
    with pytest.raises(Rejected, match="PNG text chunks hold more than 1,048,576 bytes"):
        decode_image(png_with_text(2, 700_000), ImportLimits())
    assert PngImagePlugin.MAX_TEXT_MEMORY == 64 * PngImagePlugin.MAX_TEXT_CHUNK  # Pillow's own, restored


def test_a_zip_member_is_bounded_by_its_ratio(tmp_path):
    path = tmp_path / "scans.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", bytes(2 << 20))  # 2 MiB that deflate about 1000 times
        z.writestr("photo.png", png_with_text(0, 0))
    with Workspace(tmp_path / "ws") as ws:
        report = import_paths(ws, [path])
    assert len(report.added) == 1
    assert [r.reason.split(":")[0] for r in report.rejected] == ["zip bomb"]


def test_a_deflated_header_is_read_within_its_bound():
    """A 300 KB private element still imports; a cut stream and a 17 MiB header are refused."""
    gray = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 7).astype(np.uint16)
    ds = header(48, 64)
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 1200)
    data = deflated(ds, gray.nbytes, gray.tobytes())
    assert decode_dicom(data, 10**8, 8).image.size == (64, 48)
    with pytest.raises(DicomRejected, match="its deflated data ends before its pixel data"):
        decode_dicom(data[:600], 10**8, 8)  # the meta, then the start of the deflated header
    ds.add_new(0x00291010, "OB", bytes(17 << 20))
    with pytest.raises(DicomRejected, match="DICOM header larger than 16 MiB once inflated"):
        decode_dicom(deflated(ds, gray.nbytes, gray.tobytes()), 10**8, 8)
