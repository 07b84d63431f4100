"""Compare tab: base and tuned model from the same seed, one pipeline, the adapter toggled.

Both images come from `Studio.generator(run)`: one loaded pipeline with the run's adapter,
generated with LoRA strength 0 (the base model, exactly) and with the chosen strength. The
colour statistics (per-channel mean and std, HSV saturation, colourfulness) are those of
`medart.color_stats`, the same numbers the evaluation report uses.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from medart import color_stats
from medart.ui.widgets import on_page_load, user_errors
from medart.workspace import Filter

STAT_COLUMNS = ["image", "mean R", "mean G", "mean B", "std R", "std G", "std B", "saturation", "colourfulness",
                "distance to reference"]

try:  # ZeroGPU on Hugging Face Spaces: generation borrows a GPU for the call
    import spaces

    _gpu = spaces.GPU(duration=60)
except ImportError:
    def _gpu(fn):
        return fn


@_gpu
def generate_pair(studio, run, prompt, seed, steps, cfg, strength):
    gen = studio.generator(run)
    base = gen.generate([prompt], [int(seed)], steps=int(steps), cfg=float(cfg), lora_scale=0.0)[0]
    tuned = gen.generate([prompt], [int(seed)], steps=int(steps), cfg=float(cfg), lora_scale=float(strength))[0]
    return base, tuned


def stats_table(images: dict[str, Image.Image], reference: Image.Image | None) -> pd.DataFrame:
    rows = []
    for name, im in images.items():
        s = color_stats.image_stats(im)
        dist = (color_stats.color_distance([im], [reference]) if reference is not None and name != "reference"
                else None)
        rows.append([name] + [round(s[k], 4) for k in color_stats.STAT_KEYS[:6]]
                    + [round(s["saturation"], 4), round(s["colourfulness"], 2),
                       round(dist, 4) if dist is not None else None])
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


HIST_COLOURS = {
    f"{name} · {ch}": colour
    for name, shades in {"base": ("#fca5a5", "#86efac", "#93c5fd"), "tuned": ("#dc2626", "#16a34a", "#2563eb"),
                         "reference": ("#7f1d1d", "#14532d", "#1e3a8a")}.items()
    for ch, colour in zip("RGB", shades)
}


def histogram_frame(images: dict[str, Image.Image], bins: int = 32) -> pd.DataFrame:
    centres = (np.arange(bins) + 0.5) / bins
    out = []
    for name, im in images.items():
        hist = color_stats.channel_histograms([im], bins=bins)
        for ch in color_stats.CHANNELS:
            out += [(float(x), float(y), f"{name} · {ch.upper()}") for x, y in zip(centres, hist[ch])]
    frame = pd.DataFrame(out, columns=["intensity", "fraction", "series"])
    return frame.astype({"intensity": "float64", "fraction": "float64", "series": "str"})


MAX_REFERENCES = 300  # a dropdown, not a gallery: held-out images first, then training images


def reference_choices(studio) -> list[tuple[str, int]]:
    with studio.workspace() as ws:
        items = ws.query(Filter(split="test"), limit=MAX_REFERENCES)
        items += [i for i in ws.query(limit=MAX_REFERENCES) if i.split != "test"][:MAX_REFERENCES - len(items)]
    return [("none", 0)] + [(f"#{i.id} {i.label or ''} {i.original_name} ({i.split})", i.id) for i in items]


def build(studio):
    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown("The same prompt and seed through **one** pipeline: LoRA strength 0 is the base model, "
                    "the chosen strength is the tuned one.")
        with gr.Row():
            with gr.Column(scale=2):
                run = gr.Dropdown(choices=[], label="Tuned run",
                                  elem_id="compare-run", allow_custom_value=True)
                prompt = gr.Textbox(label="Prompt", lines=3, elem_id="compare-prompt",
                                    value="A fundus image of fundus, predominantly orange with dark red vessels.")
                with gr.Row():
                    seed = gr.Number(value=0, label="Seed", precision=0)
                    steps = gr.Slider(1, 50, value=20, step=1, label="Steps")
                with gr.Row():
                    cfg = gr.Slider(1, 10, value=4.5, step=0.5, label="CFG")
                    strength = gr.Slider(0, 2, value=1.0, step=0.05, label="LoRA strength")
                ref = gr.Dropdown(choices=[("none", 0)], value=0, label="Real reference image (workspace)",
                                  elem_id="compare-reference")
                go = gr.Button("Generate both", variant="primary", elem_id="compare-go")
            with gr.Column(scale=3):
                slider = gr.ImageSlider(label="Base ⟷ tuned", type="pil", elem_id="compare-slider", height=300)
                with gr.Row():
                    base_img = gr.Image(label="Base", type="pil", elem_id="compare-base", height=200)
                    tuned_img = gr.Image(label="Tuned", type="pil", elem_id="compare-tuned", height=200)
                    ref_img = gr.Image(label="Reference", type="pil", elem_id="compare-ref", height=200)
        hist = gr.LinePlot(None, x="intensity", y="fraction", color="series",
                           title="Per-channel histograms (light: base, mid: tuned, dark: reference)",
                           color_map=HIST_COLOURS, height=260, elem_id="compare-hist")
        table = gr.Dataframe(headers=STAT_COLUMNS, label="Colour statistics", interactive=False,
                             elem_id="compare-stats")

        @user_errors
        def do_compare(run_name, prompt_, seed_, steps_, cfg_, strength_, ref_id):
            if not run_name:
                raise ValueError("choose a tuned run (train one in the Train tab first)")
            if not (prompt_ or "").strip():
                raise ValueError("write a prompt")
            base, tuned = generate_pair(studio, studio.run_dir(run_name), prompt_.strip(), seed_, steps_, cfg_,
                                        strength_)
            reference = None
            if ref_id:
                with studio.workspace() as ws:
                    with Image.open(ws.get(int(ref_id)).image_path) as im:
                        reference = im.convert("RGB").resize(base.size, Image.Resampling.LANCZOS)
            images = {"base": base, "tuned": tuned}
            if reference is not None:
                images["reference"] = reference
            return ((base, tuned), base, tuned, reference, histogram_frame(images), stats_table(images, reference))

        go.click(do_compare, [run, prompt, seed, steps, cfg, strength, ref],
                 [slider, base_img, tuned_img, ref_img, hist, table], api_name="compare")

        def on_tab():
            return (gr.update(choices=[r.name for r in studio.tuned_runs()]),
                    gr.update(choices=reference_choices(studio)))

        tab.select(on_tab, outputs=[run, ref])
        on_page_load(lambda: gr.update(choices=[r.name for r in studio.tuned_runs()]), [run])
    return tab
