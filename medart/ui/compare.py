"""Compare tab: base and tuned model from the same seed, one pipeline, the adapter toggled.

Both images come from `Studio.generator(run)`: one loaded pipeline with the run's adapter,
generated with LoRA strength 0 (the base model, exactly) and with the chosen strength. The
colour statistics (per-channel mean and std, HSV saturation, colourfulness) are those of
`medart.color_stats`, the same numbers the evaluation report uses, and the page says in a
line what each one means. The newest finished run is chosen when the page opens (filled on
page load: run names are never part of the page's initial config); a reference image's
caption becomes the prompt in one click; the slider's halves are labelled; the histograms
are one small panel per channel with base, tuned and reference in each.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from medart import color_stats
from medart.evaluation.report import histogram_figure
from medart.studio import finished_runs
from medart.ui import pictures
from medart.ui.widgets import beside, on_page_load, user_errors
from medart.workspace import Filter

STAT_COLUMNS = ["image", "mean R", "mean G", "mean B", "std R", "std G", "std B", "saturation", "colourfulness",
                "distance to reference"]
STAT_HELP = """**What the numbers are** (each image's pixels, channels on a 0–1 scale):
- **mean R / G / B**: the average red, green and blue value; the image's overall colour cast.
- **std R / G / B**: how much each channel varies across the image (contrast within the channel).
- **saturation**: the average HSV saturation, 0 gray to 1 pure colour.
- **colourfulness**: Hasler and Süsstrunk's colourfulness (0 gray; above about 50 quite colourful).
- **distance to reference**: √(Σ over R, G, B of Δmean² + Δstd²) against the reference image; 0 is the same
  colours, lower is closer. It compares what HLDF's colour loss compares."""
DEFAULT_PROMPT = "A fundus image, predominantly orange with dark red vessels."
SLIDER_PX = 256  # the slider's copies are scaled up to at least this, to carry a readable label

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


def histogram_image(images: dict[str, Image.Image], bins: int = 32) -> Image.Image:
    """R, G and B panels side by side, the reference (black), base (gray, dashed) and tuned lines in each."""
    order = [name for name in ("reference", "base", "tuned") if name in images]
    hists = {name: color_stats.channel_histograms([images[name]], bins=bins) for name in order}
    fig = histogram_figure(hists, width=10, height=2.8, title="Colour histograms: reference, base and tuned")
    from medart.evaluation.report import figure_png
    import io

    with Image.open(io.BytesIO(figure_png(fig))) as im:
        return im.convert("RGB")


LABEL_BOX = (17, 24, 39)  # the label's background


def labelled(image: Image.Image, text: str, right: bool = False) -> Image.Image:
    """A copy for the slider, scaled up to SLIDER_PX and labelled in its bottom corner (left for
    base, right for tuned), so each half says what it is while the handle moves."""
    out = image.convert("RGB")
    if max(out.size) < SLIDER_PX:
        scale = SLIDER_PX / max(out.size)
        out = out.resize((round(out.width * scale), round(out.height * scale)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(12, out.height // 14))
    box = draw.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0] + 12, box[3] - box[1] + 10
    x = out.width - w - 6 if right else 6
    y = out.height - h - 6
    draw.rectangle((x, y, x + w, y + h), fill=LABEL_BOX)
    draw.text((x + 6 - box[0], y + 5 - box[1]), text, fill=(255, 255, 255), font=font)
    return out


MAX_REFERENCES = 300  # a dropdown, not a gallery: held-out images first, then training images


def reference_choices(studio) -> list[tuple[str, int]]:
    with studio.workspace() as ws:
        items = ws.query(Filter(split="test"), limit=MAX_REFERENCES)
        items += [i for i in ws.query(limit=MAX_REFERENCES) if i.split != "test"][:MAX_REFERENCES - len(items)]
    return [("none", 0)] + [(f"#{i.id} {i.label or ''} {i.original_name} ({i.split})", i.id) for i in items]


def reference_view(studio, ref_id) -> tuple[str | None, str]:
    """(the page's copy of the reference image, its caption as a line) for the chosen reference."""
    if not ref_id:
        return None, ""
    with studio.workspace() as ws:
        item = ws.get(int(ref_id))
    caption = item.text or "(no caption yet)"
    return pictures.shown(item.image_path, item.sha256, max_side=512), f"**Its caption:** {caption}"


def reference_caption(studio, ref_id) -> str:
    """The reference image's caption, for the prompt (ValueError when there is none)."""
    if not ref_id:
        raise ValueError("choose a reference image first")
    with studio.workspace() as ws:
        text = ws.get(int(ref_id)).text.strip()
    if not text:
        raise ValueError("this reference image has no caption yet: write one in the Captions tab")
    return text


def run_choice(studio, current=None) -> tuple[list[str], str | None]:
    """(tuned runs, the one to show): the current one if still there, else the newest finished
    run (an exported adapter), else the newest run with a checkpoint."""
    names = [r.name for r in studio.tuned_runs()]
    if current in names:
        return names, current
    finished = [r.name for r in finished_runs(studio)]
    return names, (finished[0] if finished else names[0] if names else None)


def check(studio, run_name, prompt) -> None:
    """What must hold before generating (a ValueError that says what to do otherwise)."""
    if not run_name:
        raise ValueError("there is no tuned run yet: train one in the Train tab first")
    studio.run_dir(run_name)
    if not (prompt or "").strip():
        raise ValueError("write a prompt (or put a reference image's caption in it)")


def compare(studio, run_name, prompt, seed, steps, cfg, strength, ref_id) -> tuple:
    """(slider pair, base, tuned, reference, histogram image, statistics table)."""
    check(studio, run_name, prompt)
    base, tuned = generate_pair(studio, studio.run_dir(run_name), prompt.strip(), seed, steps, cfg, strength)
    reference = None
    if ref_id:
        with studio.workspace() as ws:
            with Image.open(ws.get(int(ref_id)).image_path) as im:
                reference = im.convert("RGB").resize(base.size, Image.Resampling.LANCZOS)
    images = {"base": base, "tuned": tuned}
    if reference is not None:
        images["reference"] = reference
    pair = (labelled(base, "base"), labelled(tuned, "tuned", right=True))
    return pair, base, tuned, reference, histogram_image(images), stats_table(images, reference)


def build(studio):
    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown("The same prompt and seed through **one** pipeline: LoRA strength 0 is the base model, "
                    "the chosen strength is the tuned one.")
        with gr.Row():
            with gr.Column(scale=2):
                run = gr.Dropdown(choices=[], label="Tuned run (the newest finished one is chosen)",
                                  elem_id="compare-run", allow_custom_value=True)
                ref = gr.Dropdown(choices=[("none", 0)], value=0, label="Real reference image (workspace)",
                                  elem_id="compare-reference")
                ref_caption = gr.Markdown(elem_id="compare-ref-caption")
                use_caption = gr.Button("Use its caption as the prompt", size="sm", elem_id="compare-use-caption")
                prompt = gr.Textbox(label="Prompt", lines=3, elem_id="compare-prompt", value=DEFAULT_PROMPT)
                with gr.Row():
                    seed = gr.Number(value=0, label="Seed", precision=0, info="the starting noise: same seed, "
                                     "same image")
                    steps = gr.Slider(1, 50, value=20, step=1, label="Steps", info="DPM-Solver++ steps (the "
                                      "paper: 20)")
                with gr.Row():
                    cfg = gr.Slider(1, 10, value=4.5, step=0.5, label="CFG", info="how strongly the prompt "
                                    "steers (the paper: 4.5)")
                    strength = gr.Slider(0, 2, value=1.0, step=0.05, label="LoRA strength", info="0: the base "
                                         "model; 1: the adapter as trained")
                go = gr.Button("Generate both", variant="primary", elem_id="compare-go")
                note = gr.Markdown(elem_id="compare-note")  # a refusal, beside the button
            with gr.Column(scale=3):
                # square, so that the whole image (and the labels in its bottom corners) shows; PNG, so that
                # the colours on the page are the generated ones (WebP would shift them)
                slider = gr.ImageSlider(label="Base (left) ⟷ tuned (right)", type="pil",
                                        elem_id="compare-slider", height=340, width=340, format="png")
                with gr.Row():
                    base_img = gr.Image(label="Base", type="pil", elem_id="compare-base", height=200, format="png")
                    tuned_img = gr.Image(label="Tuned", type="pil", elem_id="compare-tuned", height=200, format="png")
                    ref_img = gr.Image(label="Reference", type="pil", elem_id="compare-ref", height=200, format="png")
        hist = gr.Image(label="Per-channel histograms", type="pil", interactive=False, elem_id="compare-hist",
                        show_label=True)
        table = gr.Dataframe(headers=STAT_COLUMNS, label="Colour statistics", interactive=False,
                             elem_id="compare-stats")
        gr.Markdown(STAT_HELP, elem_id="compare-help")

        # a refusal (a missing prompt) is one line beside the button, not "Error" on every panel
        # (a failed event marks every component its progress shows on, so the check runs first, on
        # the note alone, and only a checked request generates, with progress on the images)
        beside(go.click, lambda r, p: check(studio, r, p), [run, prompt], [], note, api_name=False).success(
            user_errors(lambda *a: compare(studio, *a)), [run, prompt, seed, steps, cfg, strength, ref],
            [slider, base_img, tuned_img, ref_img, hist, table], api_name="compare",
            show_progress_on=[slider, base_img, tuned_img])
        ref.change(user_errors(lambda r: reference_view(studio, r)), [ref], [ref_img, ref_caption],
                   show_progress="hidden")
        beside(use_caption.click, lambda r: reference_caption(studio, r), [ref], [prompt], note, api_name="use_caption")

        def on_open(current=None):
            names, chosen = run_choice(studio, current)
            return gr.update(choices=names, value=chosen), gr.update(choices=reference_choices(studio))

        tab.select(on_open, [run], [run, ref])
        on_page_load(on_open, [run, ref])
    return tab
