"""The offline describer names what is in the pixels: colours, shape, size, position, texture."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from captioning import get_builtin, make_captioner
from captioning.offline import NAMES, color_name_map, describe_pixels, hsv

SIMPLE = "An endoscopic image of polyps"


def scene(bg, fg=None, shape="ellipse", box=(176, 176, 336, 336), size=512):
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    if fg is not None:
        if shape == "ellipse":
            d.ellipse(box, fill=fg)
        elif shape == "star":
            c, r1, r2 = 256, 200, 50
            pts = []
            for k in range(16):
                r = r1 if k % 2 == 0 else r2
                a = np.pi * k / 8
                pts.append((c + r * np.cos(a), c + r * np.sin(a)))
            d.polygon(pts, fill=fg)
    return im


@pytest.mark.parametrize(
    "rgb, name",
    [
        ((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((0, 160, 0), "green"), ((255, 255, 0), "yellow"),
        ((255, 192, 203), "pink"), ((139, 69, 19), "brown"), ((128, 0, 128), "purple"), ((255, 255, 255), "white"),
        ((0, 0, 0), "black"), ((128, 128, 128), "gray"), ((255, 140, 0), "orange"), ((120, 10, 10), "dark red"),
    ],
)  # fmt: skip
def test_colour_names_of_pure_colours(rgb, name):
    a = np.array([[rgb]], dtype=np.float32) / 255
    assert NAMES[int(color_name_map(*hsv(a))[0, 0])] == name
    text = describe_pixels(Image.new("RGB", (64, 64), rgb), SIMPLE)
    assert text.startswith(f"{SIMPLE}, predominantly {name}.")


def test_two_colours_region_and_surroundings():
    text = describe_pixels(scene((255, 192, 203), (200, 0, 0)), SIMPLE, "mucosa")
    assert text.startswith(f"{SIMPLE}, predominantly pink with patches of red.")
    # a centred circle of 160 px in 512 px covers ~7.7% of the view
    assert "medium-sized, round red region lies in the center of the view, surrounded by pink mucosa" in text
    assert "with a sharp border" in text
    assert "The surface appears smooth." in text


def test_position_size_and_elongation():
    text = describe_pixels(scene((0, 0, 200), (255, 255, 0), box=(20, 20, 100, 60)), SIMPLE)
    assert "small, oval yellow region lies in the upper left part of the view" in text
    text = describe_pixels(scene((0, 0, 200), (255, 255, 0), box=(40, 380, 480, 440)), SIMPLE)
    assert "elongated" in text and "lower part of the view" in text
    text = describe_pixels(scene((0, 0, 200), (255, 255, 0), box=(30, 30, 482, 482)), SIMPLE)
    assert "very large, round yellow region lies in the center" in text


def test_irregular_shape():
    text = describe_pixels(scene((0, 120, 0), (255, 255, 255), shape="star"), SIMPLE)
    assert "irregularly shaped white region" in text


def test_brightness_contrast_saturation():
    dark = describe_pixels(Image.new("RGB", (64, 64), (20, 20, 20)), SIMPLE)
    assert "The image is dark with low contrast and almost no color." in dark
    bright = describe_pixels(Image.new("RGB", (64, 64), (250, 250, 250)), SIMPLE)
    assert "The image is bright" in bright
    vivid = describe_pixels(scene((0, 0, 0), (255, 255, 255), box=(0, 0, 256, 512)), SIMPLE)
    assert "high contrast" in vivid


def test_texture_and_highlights():
    rng = np.random.default_rng(0)
    base = np.full((512, 512, 3), (200, 60, 60), np.float32)
    noisy = np.clip(base + rng.normal(0, 60, (512, 512, 1)), 0, 255).astype(np.uint8)
    text = describe_pixels(Image.fromarray(noisy), SIMPLE)
    assert "The surface appears smooth" not in text
    assert any(w in text for w in ("textured", "rough and coarse", "finely granular"))
    im = Image.new("RGB", (512, 512), (200, 60, 60))
    d = ImageDraw.Draw(im)
    for x, y in ((100, 100), (300, 200), (400, 400)):
        d.ellipse((x, y, x + 12, y + 12), fill=(255, 255, 255))
    text = describe_pixels(im, SIMPLE)
    assert "a few small white specular highlights" in text


def test_deterministic_and_provenance():
    cap = make_captioner("offline")
    im = scene((255, 192, 203), (200, 0, 0))
    a = cap.describe(im, SIMPLE, get_builtin("endoscopy"))
    b = cap.describe(im.copy(), SIMPLE, get_builtin("endoscopy"))
    assert a.text == b.text and a.text.startswith(SIMPLE)
    prov = a.provenance()
    assert prov["backend"] == "offline" and prov["model"] == "pixel-describer-1"
    assert "text" not in prov and prov["seconds"] >= 0 and prov["created_at"]


def test_grayscale_and_tiny_images():
    gray = Image.new("L", (30, 20), 128)
    text = describe_pixels(gray, "A radiology image")
    assert text.startswith("A radiology image, predominantly gray.")


def _colour_words(text: str) -> set[str]:
    first = text.split(".")[0]  # the colour sentence
    return {n for n in NAMES if f" {n}" in first.replace(",", " ")}


def test_real_images_get_the_colours_they_show():
    """Real images whose colours are known: immunohistochemistry (brown DAB, blue haematoxylin
    nuclei on a white background) and a fundus photograph (a red-orange retina in a black frame)."""
    from skimage import data

    ihc = Image.fromarray(data.immunohistochemistry())
    words = _colour_words(describe_pixels(ihc, "A histology image with IHC staining", "tissue"))
    assert {"white", "brown", "blue"} <= words and not words & {"green", "red", "yellow", "purple"}
    rgb = np.asarray(ihc, dtype=np.float32) / 255
    bluish = (rgb[..., 2] - np.maximum(rgb[..., 0], rgb[..., 1]) > 0.05).mean()
    assert bluish > 0.03  # the nuclei the caption names are there (about 6 % of the pixels)

    retina = Image.fromarray(data.retina())
    words = _colour_words(describe_pixels(retina, "A fundus image", "retina"))
    assert {"red", "black"} <= words and not words & {"blue", "green", "purple", "white"}


def test_every_colour_over_the_share_is_named():
    """Five colours of 30, 25, 20, 15 and 10 %: all named, none left out for want of room."""
    bands = [((255, 255, 255), 30), ((139, 69, 19), 25), ((255, 140, 0), 20), ((0, 0, 255), 15), ((0, 160, 0), 10)]
    im = Image.new("RGB", (100, 100))
    d, x = ImageDraw.Draw(im), 0
    for rgb, width in bands:
        d.rectangle((x, 0, x + width - 1, 99), fill=rgb)
        x += width
    words = _colour_words(describe_pixels(im, SIMPLE))
    assert {"white", "brown", "orange", "blue", "green"} <= words


def test_simple_captions_say_nothing_twice():
    assert get_builtin("fundus").simple_caption("fundus") == "A fundus image"
    assert get_builtin("fundus").simple_caption("Retina") == "A fundus image"
    assert get_builtin("endoscopy").simple_caption("endoscopic") == "An endoscopic image"
    assert get_builtin("histology").simple_caption("ihc") == "A histology image with IHC staining"
    assert get_builtin("histology").simple_caption("H&E") == "A histology image with H&E staining"
    assert get_builtin("histology").simple_caption("carcinoma") == "A histology image of carcinoma"
    assert get_builtin("custom").simple_caption("fundus") == "A medical image of fundus"


def test_images_without_a_modality_get_the_neutral_template(tmp_path):
    """A histology image imported without a modality into a workspace whose first import was
    fundus images is described as a medical image, not as a fundus."""
    from medart.assets import DEMO_DIR
    from medart.workspace import Workspace
    from medart.workspace.describe import OFFLINE, caption_by_describer, group_by_describer, targets
    from medart.workspace.importers import import_paths

    with Workspace(tmp_path / "ws") as ws:
        import_paths(ws, sorted(DEMO_DIR.glob("fundus_*.jpg"))[:1], label="fundus", modality="fundus")
        import_paths(ws, sorted(DEMO_DIR.glob("histology_*.jpg"))[:1], label="ihc")
        caption_by_describer(ws, group_by_describer(ws, targets(ws), explicit=OFFLINE))
        fundus, histology = ws.query(limit=None)
        assert fundus.text.startswith("A fundus image, ")  # no "of fundus"
        assert histology.text.startswith("A medical image of ihc, ")
        assert "fundus" not in histology.text and "retina" not in histology.text
