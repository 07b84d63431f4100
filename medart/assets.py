"""Where the files that ship with Med-Art Studio are: demo images, the tiny model, its tokenizer.

(The tiny model's folders are named in `medart.tiny_base`.)

In a checkout they are the repository's `assets/` folder beside `medart/`; an installed copy
(`pip install .`) carries the same folder as the package `medart_assets` (pyproject.toml).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _assets() -> Path:
    if (_CHECKOUT / "assets").is_dir():
        return _CHECKOUT / "assets"
    spec = importlib.util.find_spec("medart_assets")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return _CHECKOUT / "assets"


ASSETS = _assets()
DEMO_DIR = ASSETS / "demo"  # the demo images (sources and licences in SOURCE.md)
APP_SCRIPT = _CHECKOUT / "app.py"  # the app's entry point (`python app.py`)
