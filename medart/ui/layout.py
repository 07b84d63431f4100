"""The page: status line and banners, the five tabs, theme, CSS and keyboard shortcuts."""

from __future__ import annotations

import html

import gradio as gr

from medart.ui import captions, compare, data, evaluate, reader_study, train

CSS = """
#status-line {font-size: 0.9em; color: #374151; padding: 4px 8px; background: #f3f4f6; border-radius: 6px}
#demo-banner {background: #fef3c7; border: 1px solid #f59e0b; border-radius: 6px; padding: 6px 10px}
#space-banner {background: #dbeafe; border: 1px solid #3b82f6; border-radius: 6px; padding: 6px 10px}
footer {display: none !important}
"""

# Alt+A approve and next, Alt+N next, Alt+P previous, Alt+U next unreviewed, Alt+S save.
SHORTCUTS = """<script>
document.addEventListener('keydown', function (e) {
  if (!e.altKey || e.ctrlKey || e.metaKey) return;
  var ids = {a: 'approve-next', n: 'next-caption', p: 'prev-caption', u: 'next-unreviewed', s: 'save-caption'};
  var id = ids[(e.key || '').toLowerCase()] || ids[(e.code || '').replace('Key', '').toLowerCase()];
  if (!id) return;
  var el = document.getElementById(id);
  if (el && el.offsetParent !== null) { e.preventDefault(); el.click(); }
});
</script>"""


def status_html(studio) -> str:
    return f'<div id="status-line">{html.escape(studio.status_line())}</div>'


def banners(studio) -> str:
    parts = []
    if studio.offline_demo:
        parts.append('<div id="demo-banner"><b>Offline demo mode.</b> The tiny base model (64 px, CPU), the offline '
                     "describer and the shipped demo images: every step works end to end, but the pictures are "
                     "toys. Start with a GPU and <code>--base-model pixart-alpha-512</code> for real results. "
                     "Research use only; not for diagnosis.</div>")
    if not studio.training_allowed:
        parts.append('<div id="space-banner"><b>Shared Space:</b> training is off here. Duplicate the Space to '
                     "train on your own hardware.</div>")
    return "".join(parts)


def build_app(studio) -> gr.Blocks:
    with gr.Blocks(title="Med-Art Studio") as demo:
        with gr.Row():
            gr.Markdown("## Med-Art Studio\nFine-tune PixArt-α on a few medical images so that the colours are right.")
        gr.HTML(status_html(studio))
        if banners(studio):
            gr.HTML(banners(studio))
        with gr.Tabs():
            data.build(studio)
            captions.build(studio)
            train.build(studio)
            compare.build(studio)
            evaluate.build(studio)
            reader_study.build(studio)

        def api_status():
            """Base model, device, demo mode and the job list, for scripts (gradio_client)."""
            jobs = studio.jobs.tick()
            return {
                "base_model": studio.base_model,
                "device": studio.device,
                "offline_demo": studio.offline_demo,
                "training_allowed": studio.training_allowed,
                "jobs": [{"id": j.id, "kind": j.kind, "state": j.state, "pid": j.pid, "output": j.output,
                          "error": j.error} for j in jobs],
            }

        hidden = gr.JSON(visible=False)
        gr.Button(visible=False).click(api_status, outputs=[hidden], api_name="status")
    return demo


def launch_kwargs(studio) -> dict:
    # the workspace's images, run samples and evaluation plots live under the home folder
    return {"css": CSS, "head": SHORTCUTS, "theme": gr.themes.Soft(), "allowed_paths": [str(studio.home)]}
