"""The Gradio app: one module per tab (data, captions, train, compare, evaluate, reader_study) and
layout; `reader_page` is the reader server's only page; `pictures` hands images to components as
pixels, `login` slows wrong logins down, `sessions` gives each visitor of the shared Space a
workspace of their own.

Only this package and `app.py` import gradio. `build_app(studio)` returns the Blocks;
`launch_kwargs(studio)` the arguments its `launch()` needs (theme, CSS, shortcuts).
"""

from medart.ui.layout import build_app, launch_kwargs

__all__ = ["build_app", "launch_kwargs"]
