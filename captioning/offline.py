"""The offline describer: a deterministic VSG-style description computed from the pixels.

No weights and no network. It names what it measures: the dominant colours, the brightness,
contrast and saturation, the texture, the main region's colour, shape, size and position
against its surroundings, and specular highlights. Every word comes from a measurement on
the image (at a 128-pixel working size), so two runs on the same image give the same text.

Colour names come from HSV thresholds (documented in `color_name_map`); every colour that
covers at least COLOUR_SHARE of the image is named (the pale blue of haematoxylin-stained
nuclei included: cool hues count as colours from a lower saturation than warm ones, because
stains are pale). The main region is the largest connected area whose colour differs from
the dominant background colour.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from scipy import ndimage

from captioning.base import Caption, Captioner
from captioning.templates import ModalityTemplate

WORK_SIZE = 128
COLOUR_SHARE = 0.03  # a colour covering at least this share of the image is named
GRAY_SATURATION = 0.18  # below: gray or white ...
COOL_GRAY_SATURATION = 0.07  # ... except blue to purple hues (pale stains), gray only below this
NAMES = (
    "black", "gray", "white", "red", "dark red", "orange", "brown", "beige", "yellow",
    "green", "cyan", "blue", "purple", "magenta", "pink",
)  # fmt: skip
SURROUNDINGS = {
    "endoscopy": "mucosa",
    "dermoscopy": "skin",
    "histology": "tissue",
    "fundus": "retina",
    "radiology": "background",
}


def to_array(image: Image.Image, size: int = WORK_SIZE) -> np.ndarray:
    """RGB float32 in [0, 1], longest side at most `size` (box-filtered)."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    if max(image.size) > size:
        scale = size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BOX
        )
    return np.asarray(image, dtype=np.float32) / 255.0


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(-1)
    minc = rgb.min(-1)
    delta = maxc - minc
    s = np.where(maxc > 0, delta / np.maximum(maxc, 1e-6), 0.0)
    safe = np.maximum(delta, 1e-6)
    h = np.where(
        maxc == r, ((g - b) / safe) % 6, np.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h = np.where(delta > 0, h * 60.0, 0.0)
    return h, s, maxc


def color_name_map(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index into NAMES per pixel.

    black: value < 0.18; white / gray: saturation < 0.18 (white when value > 0.8), or below
    0.07 for blue and purple hues (195-310°: pale stains such as haematoxylin are colours);
    hues: red < 15° or ≥ 345°, orange 15-40°, yellow 40-70°, green 70-160°, cyan 160-195°,
    blue 195-255°, purple 255-310°, magenta 310-345°; then dark red (red, value < 0.5),
    brown (15-50°, value < 0.6), beige (15-50°, saturation < 0.4, value > 0.65),
    pink (red or magenta hue, saturation < 0.55, value > 0.6).
    """
    idx = {n: i for i, n in enumerate(NAMES)}
    out = np.full(h.shape, idx["red"], dtype=np.int16)
    for name, lo, hi in (
        ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 160), ("cyan", 160, 195),
        ("blue", 195, 255), ("purple", 255, 310), ("magenta", 310, 345),
    ):  # fmt: skip
        out[(h >= lo) & (h < hi)] = idx[name]
    reddish = (h < 15) | (h >= 345)
    warm = (h >= 15) & (h < 50)
    out[reddish & (v < 0.5)] = idx["dark red"]
    out[warm & (v < 0.6)] = idx["brown"]
    out[warm & (s < 0.4) & (v > 0.65)] = idx["beige"]
    out[(reddish | (h >= 310)) & (s < 0.55) & (v > 0.6)] = idx["pink"]
    cool = (h >= 195) & (h < 310)
    gray = np.where(cool, s < COOL_GRAY_SATURATION, s < GRAY_SATURATION)
    out[gray] = idx["gray"]
    out[gray & (v > 0.8)] = idx["white"]
    out[v < 0.18] = idx["black"]
    return out


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _colour_phrase(fractions: list[tuple[str, float]]) -> str:
    """Every colour of `fractions` (name, share; each at least COLOUR_SHARE, largest first) in
    one phrase: the dominant one, areas of those over 15 %, patches of the rest."""
    (c1, f1), rest = fractions[0], fractions[1:]
    major = [c for c, f in rest if f >= 0.15]
    minor = [c for c, f in rest if f < 0.15]
    if f1 >= 0.5:
        phrase = f"predominantly {c1}"
    elif major:
        phrase = f"mainly {c1} and {major[0]}"
        major = major[1:]
    else:
        phrase = f"mostly {c1}"
    if major:
        phrase += f" with areas of {_join(major)}"
    if minor:
        phrase += f" {'and' if major else 'with'} patches of {_join(minor)}"
    return phrase


def _position(cy: float, cx: float) -> str:
    vert = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else ""
    horiz = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if not vert and not horiz:
        return "in the center of the view"
    if vert and horiz:
        return f"in the {vert} {horiz} part of the view"
    return f"in the {vert or horiz} part of the view"


def _shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([ys - cy, xs - cx])) if len(ys) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov + np.eye(2) * 1e-6)
    b, a = 2 * np.sqrt(evals)  # semi-axes of the ellipse with the same second moments
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    d = np.stack([yy - cy, xx - cx], -1) @ evecs
    ellipse = (d[..., 1] / a) ** 2 + (d[..., 0] / b) ** 2 <= 1.0
    iou = (ellipse & mask).sum() / max(1, (ellipse | mask).sum())
    elongation = a / max(b, 1e-6)
    outline = "round" if elongation < 1.3 else "oval" if elongation < 2.2 else "elongated"
    if iou >= 0.88:
        return outline
    if iou >= 0.7:
        return f"roughly {outline}" if outline != "elongated" else "elongated, slightly irregular"
    return "irregularly shaped"


def describe_pixels(image: Image.Image, simple_caption: str, surroundings: str = "background") -> str:
    """The description itself (see the module docstring)."""
    rgb = to_array(image)
    h, s, v = hsv(rgb)
    names = color_name_map(h, s, v)
    n = names.size
    counts = np.bincount(names.ravel(), minlength=len(NAMES)) / n
    order = np.argsort(-counts, kind="stable")
    fractions = [(NAMES[i], float(counts[i])) for i in order if counts[i] >= COLOUR_SHARE]
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    sentences = [f"{simple_caption}, {_colour_phrase(fractions)}."]

    # main region: the largest connected area whose colour differs from the background, the
    # commonest colour of the image's lit border (or of the whole image when the border is dark)
    frame = np.zeros(names.shape, bool)
    frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = True, True, True, True
    lit_frame = frame & (v >= 0.18)
    if lit_frame.sum() >= 0.25 * frame.sum():
        background = int(np.argmax(np.bincount(names[lit_frame], minlength=len(NAMES))))
    else:
        background = int(order[0])
    bg = rgb[names == background].mean(0)
    bg_dark = bg.max() < 0.25
    differs = np.linalg.norm(rgb - bg, axis=-1) > 0.2
    if not bg_dark:
        differs &= v >= 0.18  # a black frame or vignette is not a finding
    differs = ndimage.binary_opening(differs, structure=np.ones((3, 3), bool))
    labels, count = ndimage.label(differs, structure=np.ones((3, 3), int))
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        biggest = int(np.argmax(sizes)) + 1
        area = sizes[biggest - 1] / n
        if area >= 0.01 and area < 0.9:
            mask = labels == biggest
            region_names = np.bincount(names[mask], minlength=len(NAMES))
            region_colour = NAMES[int(np.argmax(region_names))]
            outside = ~mask & (v >= 0.18) if not bg_dark else ~mask
            around = NAMES[int(np.argmax(np.bincount(names[outside], minlength=len(NAMES))))] if outside.any() else ""
            size = "small" if area < 0.05 else "medium-sized" if area < 0.2 else "large" if area < 0.5 else "very large"
            ys, xs = np.nonzero(mask)
            where = _position(ys.mean() / mask.shape[0], xs.mean() / mask.shape[1])
            shape = _shape(mask)
            sentence = f"{_article(size).capitalize()} {size}, {shape} {region_colour} region lies {where}"
            if around and around != region_colour:
                sentence += f", surrounded by {around} {surroundings}"
            edge = np.abs(luma[mask].mean() - luma[outside].mean()) if outside.any() else 0.0
            sentence += ", with a sharp border." if edge > 0.15 else ", with a soft border."
            if count > 3 and (sizes >= 0.002 * n).sum() > 3:
                sentence = sentence[:-1] + f", among {int((sizes >= 0.002 * n).sum()) - 1} smaller spots."
            sentences.append(sentence)

    # texture: mean absolute difference between the luma and its 3x3 box blur
    detail = float(np.abs(luma - ndimage.uniform_filter(luma, 3)).mean())
    texture = (
        "smooth" if detail < 0.01 else "finely granular" if detail < 0.03 else "textured" if detail < 0.06 else "rough and coarse"
    )
    bright = (v > 0.9) & (s < 0.25)
    bright_frac = float(bright.mean())
    highlight = ""
    if 0.0005 <= bright_frac < 0.08 and counts[NAMES.index("white")] < 0.3:
        spots = ndimage.label(bright)[1]
        highlight = f" with {'a few' if spots <= 3 else 'scattered'} small white specular highlights"
    sentences.append(f"The surface appears {texture}{highlight}.")

    mean_l, std_l = float(luma.mean()), float(luma.std())
    brightness = "dark" if mean_l < 0.25 else "dim" if mean_l < 0.45 else "moderately bright" if mean_l < 0.65 else "bright"
    contrast = "low" if std_l < 0.08 else "moderate" if std_l < 0.2 else "high"
    lit = v >= 0.18
    mean_s = float(s[lit].mean()) if lit.any() else 0.0
    saturation = (
        "almost no color" if mean_s < 0.08 else "muted colors" if mean_s < 0.3 else "moderately saturated colors" if mean_s < 0.55 else "vivid colors"
    )
    sentences.append(f"The image is {brightness} with {contrast} contrast and {saturation}.")
    return " ".join(sentences)


class OfflineDescriber(Captioner):
    """Describes images from their pixels; deterministic, no weights, no network."""

    backend = "offline"
    model = "pixel-describer-1"

    def __init__(self, batch_size: int = 16, **_ignored):
        self.batch_size = batch_size

    def generate(self, images, simple_captions, template: ModalityTemplate) -> list[Caption]:
        surroundings = SURROUNDINGS.get(template.name, "background")
        out = []
        for image, simple in zip(images, simple_captions):
            t0 = time.perf_counter()
            text = describe_pixels(image, simple, surroundings)
            out.append(
                Caption(
                    text=text,
                    backend=self.backend,
                    model=self.model,
                    prompt=f"template:{template.name} (pixel measurements; no prompt)",
                    sampling={"deterministic": True, "work_size": WORK_SIZE},
                    seconds=round(time.perf_counter() - t0, 4),
                )
            )
        return out
