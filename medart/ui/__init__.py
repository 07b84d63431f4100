"""The Gradio app: one module per tab (data, captions, train, compare, evaluate) and layout.

Only this package and `app.py` import gradio. `build_app(studio)` returns the Blocks;
`launch_kwargs(studio)` the arguments its `launch()` needs (theme, CSS, shortcuts).
"""

from medart.ui.layout import build_app, launch_kwargs

__all__ = ["build_app", "launch_kwargs"]
