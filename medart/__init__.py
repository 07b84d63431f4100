"""Med-Art Studio: turn a small set of medical images into a text-to-image model whose colours are right.

The core (config, profiles, lora, dpm_solver, losses, hldf, color_stats) follows the paper
(Med-Art, arXiv 2506.20449); services and the CLI build on it; the Gradio UI lives in
`medart.ui` and is the only part that imports gradio.
"""

__version__ = "0.1.0"
