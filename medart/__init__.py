"""Med-Art Studio: turn a small set of medical images into a text-to-image model whose colours are right.

The paper's core is flat and first (Med-Art, arXiv 2506.20449): `config` (every training
setting, once), `profiles` and `tiny_base` (base models), `lora`, `dpm_solver` (the one
sampler), `losses`, `color_stats`, `data`, `hldf` and `hldf_plan` (the training), `checkpoints`
and `state_files`, `run_folder`, `generate`. The services build on it, one package per concern:
`workspace` (images, captions, import, export, splits), `evaluation`, `reader_study` and `jobs`;
`studio` is the app's state without the UI. `cli` (the command line) and `ui` (the Gradio app,
the only part that imports gradio) sit on top. Imports point down only: ui and cli ->
services -> core.
"""

__version__ = "0.1.0"
