"""Rebuild the demo images from the public-domain medical images that ship with scikit-image.

    pip install scikit-image==0.26.0 && python assets/demo/build.py

Two classes, eight 128x128 crops each: `fundus` (from skimage.data.retina, CC0) and
`histology` (from skimage.data.immunohistochemistry, no known copyright restrictions).
See SOURCE.md beside this file.
"""

import json
from pathlib import Path

from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
SIZE = 128


def crops():
    retina = data.retina()  # 1411x1411, the fundus disc centred on black
    for i, (y, x) in enumerate([(330, 330), (330, 780), (780, 330), (780, 780),
                                (560, 250), (560, 860), (250, 560), (860, 560)]):
        tile = retina[y:y + 300, x:x + 300]
        yield f"fundus_{i}.jpg", "fundus", Image.fromarray(tile).resize((SIZE, SIZE), Image.LANCZOS)
    ihc = data.immunohistochemistry()  # 512x512
    for i in range(8):  # every other tile of the 4x4 grid of 128x128 tiles, at native scale
        y, x = (i // 2) * 128, (2 * (i % 2) + (i // 2) % 2) * 128
        tile = ihc[y:y + 128, x:x + 128]
        yield f"histology_{i}.jpg", "histology", Image.fromarray(tile).resize((SIZE, SIZE), Image.LANCZOS)


CAPTIONS = {
    "fundus": "A fundus photograph of a retina, predominantly orange red with dark red vessels.",
    "histology": "A histology image of colonic glands, brown and blue stain on a pale background.",
}


def main():
    rows = []
    for name, label, image in crops():
        image.save(HERE / name, quality=92)
        rows.append({"file_name": name, "text": CAPTIONS[label], "label": label})
    (HERE / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} images to {HERE}")


if __name__ == "__main__":
    main()
