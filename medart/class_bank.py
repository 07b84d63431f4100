"""A bank of real medical image classes with a fixed tune/test split, for choosing and then
measuring HLDF's defaults on different classes.

Why a fixed split: a default chosen on the classes whose gains are then reported flatters
itself. So the classes are cut in two halves here, in code, once: `TUNE` classes are the only
ones any default (solver steps with gradients, M, weight, schedule, targets, EMA, balance) may
be chosen on; `TEST` classes are only measured, with the defaults fixed beforehand, and are the
figures to report first. The three classes the earlier defaults were chosen on (fundus, IHC
histology, abdominal MR; `medart.colour_classes`) are tuning classes for that reason. Each half
holds two colour and two grayscale classes.

Every class is real medical imaging that ships inside a package from PyPI (nothing is
downloaded at run time): its own plain caption, `n_train` training tiles and at least 32
disjoint unseen reference tiles, 64 px. Tiles are cut on a non-overlapping grid of the source
image(s) (tiles that are mostly background or flat are skipped) and split with a fixed seed; where a
class comes from a volume, its training tiles come from one set of slices and its references
from other slices at least 6 mm away. Each tile records where it came from (`Region`), so that
disjointness can be checked by region as well as by pixels.

| class | split | kind | source (package) | licence |
|---|---|---|---|---|
| fundus | TUNE | colour | `skimage.data.retina()` (scikit-image; M. Häggström, Wikimedia) | CC0 |
| ihc | TUNE | colour | `skimage.data.immunohistochemistry()` (scikit-image; CMMI, colonic glands, DAB + haematoxylin) | no known copyright restrictions |
| mr_abdomen | TUNE | gray | pydicom `examples_overlay.dcm` (abdominal MR) | pydicom test data (MIT/BSD-licensed package) |
| cell | TUNE | gray | `skimage.data.cell()` (scikit-image), quantitative phase image of a cell in saline | CC0 |
| he_histology | TEST | colour | stardist `data/images/histo.jpg` (H&E, The Cancer Imaging Archive) | stardist BSD-3; TCIA data, CC BY 3.0 |
| nuclei_fluorescence | TEST | colour (pseudo) | stardist `data/images/img2d.tif` (2018 Data Science Bowl, BBBC038) | CC0 |
| ct_head | TEST | gray | pydicom `693_J2KI.dcm` (axial head CT) | pydicom test data |
| brain_t1 | TEST | gray | nilearn `mni_icbm152_t1_tal_nlin_sym_09a` (MNI ICBM152 2009a T1 template) | ICBM licence: free use with copyright notice (McConnell Brain Imaging Centre) |

`nuclei_fluorescence` is a one-channel fluorescence image shown as such images conventionally
are, in the blue of a DAPI/Hoechst nuclear stain (intensity times pure blue): the colour is a
display convention, the structure is real. No shipped real source of a green class was found;
a fundus photograph's green channel alone would be a fake colour and is not used.
`brain_t1` is an average of 152 subjects' T1 MR images, not one patient's scan.

Needs scikit-image and pydicom (both product dependencies) and, for the testing half,
`stardist`, `nilearn` and `nibabel` (benchmarks/requirements.txt; only their data files are
read, so stardist and nilearn install with --no-deps).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from medart.fileio import atomic_write_text

TUNE = ("fundus", "ihc", "mr_abdomen", "cell")
TEST = ("he_histology", "nuclei_fluorescence", "ct_head", "brain_t1")
SEED = 0
SIZE = 64
N_TRAIN = 12
N_REFERENCE = 32


@dataclass(frozen=True)
class Region:
    """Where a tile came from: source frame (slice) index and its pixel box in that frame."""

    frame: int
    y: int
    x: int
    size: int

    def overlaps(self, other: "Region") -> bool:
        """Whether the two boxes share a pixel of the same frame."""
        return (self.frame == other.frame and self.y < other.y + other.size and other.y < self.y + self.size
                and self.x < other.x + other.size and other.x < self.x + self.size)


@dataclass(frozen=True)
class ClassSpec:
    name: str
    caption: str
    colour: bool
    source: str
    licence: str
    tile: int  # source pixels per tile side (resized to SIZE)
    max_dark: float  # skip tiles with more than this share of near-black pixels


SPECS = {s.name: s for s in (
    ClassSpec("fundus", "A fundus photograph of the retina, orange-red background with dark red branching vessels.",
              True, "skimage.data.retina()", "CC0", 128, 0.02),
    ClassSpec("ihc", "A histology image with brown stained nuclei scattered on a pale blue background.",
              True, "skimage.data.immunohistochemistry()", "no known copyright restrictions", 64, 1.0),
    ClassSpec("mr_abdomen", "A grayscale MRI slice of the abdomen, grey soft tissue and bright organs between dark gaps.",
              False, "pydicom test file examples_overlay.dcm", "pydicom test data", 40, 0.35),
    ClassSpec("cell", "A grayscale phase microscopy image, smooth mid-grey background with faint darker bands.",
              False, "skimage.data.cell()", "CC0", 64, 1.0),
    ClassSpec("he_histology", "An H&E stained histology image, dense purple nuclei in pink tissue.",
              True, "stardist data/images/histo.jpg (TCIA)", "CC BY 3.0 (TCIA); package BSD-3", 48, 1.0),
    ClassSpec("nuclei_fluorescence", "A fluorescence microscopy image, bright blue oval nuclei on a black background.",
              True, "stardist data/images/img2d.tif (BBBC038, 2018 Data Science Bowl), shown in DAPI blue",
              "CC0", 64, 1.0),
    ClassSpec("ct_head", "A grayscale CT slice of the head, bright white skull around smooth grey brain.",
              False, "pydicom test file 693_J2KI.dcm", "pydicom test data", 48, 0.35),
    ClassSpec("brain_t1", "A grayscale T1 MRI slice of the brain, white matter brighter than grey cortex folds.",
              False, "nilearn MNI ICBM152 2009a T1 template", "ICBM licence (notice kept)", 48, 0.3),
)}


# ---------------------------------------------------------------- sources (lists of frames)


def _window(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def _package_file(package: str, relative: str) -> Path:
    """A data file shipped inside `package`, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the class bank's testing classes need the package {package!r}: "
            "pip install -r benchmarks/requirements.txt")
    return Path(spec.submodule_search_locations[0]) / relative


def _dicom(name: str) -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name)).pixel_array


def _frames(name: str) -> list[np.ndarray]:
    """The class's source frames as uint8 arrays (gray HxW or RGB HxWx3)."""
    from skimage import data

    if name == "fundus":
        return [data.retina()]
    if name == "ihc":
        return [data.immunohistochemistry()]
    if name == "cell":
        return [data.cell()]
    if name == "mr_abdomen":
        return [_window(_dicom("examples_overlay.dcm"))]
    if name == "ct_head":
        return [_window(_dicom("693_J2KI.dcm"))]
    if name == "he_histology":
        return [np.asarray(Image.open(_package_file("stardist", "data/images/histo.jpg")).convert("RGB"))]
    if name == "nuclei_fluorescence":
        import tifffile

        gray = _window(tifffile.imread(_package_file("stardist", "data/images/img2d.tif")))
        rgb = np.zeros(gray.shape + (3,), np.uint8)
        rgb[..., 2] = gray  # DAPI blue, as fluorescence nuclei are conventionally shown
        rgb[..., 1] = (gray.astype(np.uint16) * 90 // 255).astype(np.uint8)  # DAPI's slight cyan tint
        return [rgb]
    if name == "brain_t1":
        import nibabel

        path = _package_file("nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
        vol = np.asarray(nibabel.load(path).dataobj)
        # axial slices 6 mm apart through the brain, radiological display (rotated upright)
        return [_window(np.rot90(vol[:, :, z])) for z in range(40, 155, 6)]
    raise KeyError(f"unknown class {name!r}; known: {', '.join(SPECS)}")


# ---------------------------------------------------------------- tiles and split


@dataclass
class ClassTiles:
    spec: ClassSpec
    train: list[Image.Image]
    reference: list[Image.Image]
    train_regions: list[Region]
    reference_regions: list[Region]


def _grid(frames: list[np.ndarray], spec: ClassSpec) -> list[tuple[Region, np.ndarray]]:
    out = []
    for f, image in enumerate(frames):
        h, w = image.shape[:2]
        for y in range(0, h - spec.tile + 1, spec.tile):
            for x in range(0, w - spec.tile + 1, spec.tile):
                t = image[y:y + spec.tile, x:x + spec.tile]
                g = t if t.ndim == 2 else t.mean(axis=2)
                if (g < 20).mean() <= spec.max_dark and g.std() >= 1.0:  # not background, not flat
                    out.append((Region(f, y, x, spec.tile), t))
    return out


@lru_cache(maxsize=None)
def load_class(name: str, n_train: int = N_TRAIN, n_reference: int = N_REFERENCE, size: int = SIZE) -> ClassTiles:
    """A class's training and reference tiles (fixed by SEED). A class from several slices takes
    its training tiles from even-numbered slices and its references from odd-numbered ones."""
    spec = SPECS[name]
    tiles = _grid(_frames(name), spec)
    rng = np.random.default_rng([SEED, sorted(SPECS).index(name)])
    order = [tiles[i] for i in rng.permutation(len(tiles))]
    if max(r.frame for r, _ in tiles) > 0:
        train_pool = [t for t in order if t[0].frame % 2 == 0]
        ref_pool = [t for t in order if t[0].frame % 2 == 1]
    else:
        train_pool, ref_pool = order[:n_train], order[n_train:]
    if len(train_pool) < n_train or len(ref_pool) < n_reference:
        raise ValueError(f"class {name!r} has {len(train_pool)} training and {len(ref_pool)} reference tiles; "
                         f"{n_train} and {n_reference} were asked for")
    train, ref = train_pool[:n_train], ref_pool[:n_reference]

    def image(t: np.ndarray) -> Image.Image:
        return Image.fromarray(t).convert("RGB").resize((size, size), Image.LANCZOS)

    return ClassTiles(spec, [image(t) for _, t in train], [image(t) for _, t in ref],
                      [r for r, _ in train], [r for r, _ in ref])


def pixel_hash(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def write_train_folder(folder: str | Path, classes: tuple[str, ...]) -> Path:
    """An imagefolder (train/ + metadata.jsonl with file_name, text, label) of the classes'
    training tiles, for `python -m medart train --data`; returns the train/ folder."""
    train = Path(folder) / "train"
    train.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in classes:
        c = load_class(name)
        for k, img in enumerate(c.train):
            file_name = f"{name}_{k:02d}.png"
            img.save(train / file_name)
            rows.append({"file_name": file_name, "text": c.spec.caption, "label": name})
    atomic_write_text(train / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return train
