"""The page: status line and banners, the tabs, theme, CSS and keyboard shortcuts.

What the browser gets: components' values (images as pixels Gradio encodes into its cache
folder, never a workspace or run file by path: `launch_kwargs` allows no folder), filled on
page load when they name runs, studies, labels or paths (`widgets.on_page_load`).
"""

from __future__ import annotations

import html

import gradio as gr

from medart.ui import captions, compare, data, evaluate, reader_study, sessions, train
from medart.ui.widgets import on_page_load

CSS = """
#sample-timeline .caption-label {white-space: normal; overflow-wrap: anywhere; max-width: 92%}
#caption-gallery .caption-label {max-width: calc(100% - 8px)}
#status-line {font-size: 0.9em; color: #374151; padding: 4px 8px; background: #f3f4f6; border-radius: 6px}
#demo-banner {background: #fef3c7; border: 1px solid #f59e0b; border-radius: 6px; padding: 6px 10px}
#space-banner {background: #dbeafe; border: 1px solid #3b82f6; border-radius: 6px; padding: 6px 10px}
footer {display: none !important}
#batch-confirm {border: 1px solid #f59e0b; background: #fffbeb; border-radius: 6px; padding: 6px}
#review-note {min-height: 1.5em}
"""

# Alt+A approve and next, Alt+N next, Alt+P previous, Alt+U next unreviewed, Alt+S save, Alt+Z undo.
SHORTCUTS = """<script>
document.addEventListener('keydown', function (e) {
  if (!e.altKey || e.ctrlKey || e.metaKey) return;
  var ids = {a: 'approve-next', n: 'next-caption', p: 'prev-caption', u: 'next-unreviewed', s: 'save-caption', z: 'undo-caption'};
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
        own = (" Your images and captions live in a temporary workspace of this browser session, which no other "
               "visitor sees and which is removed when you close the page." if studio.per_session else "")
        parts.append('<div id="space-banner"><b>Shared Space:</b> training is off here. Duplicate the Space to '
                     f"train on your own hardware.{own}</div>")
    return "".join(parts)


# Gradio's cached copies of what pages showed: checked hourly, removed after a day (and at exit)
DELETE_CACHE = (3600, 86400)


def build_app(studio) -> gr.Blocks:
    with gr.Blocks(title="Med-Art Studio", delete_cache=DELETE_CACHE) as demo:
        with gr.Row():
            gr.Markdown("## Med-Art Studio\nFine-tune PixArt-α on a few medical images so that the colours are right.")
        status = gr.HTML(elem_id="status-box")
        on_page_load(lambda: status_html(studio), [status])
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
            jobs = studio.visible_jobs(studio.jobs.tick())
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
        sessions.attach(studio, demo)
    return demo


def launch_kwargs(studio) -> dict:
    """Theme, CSS and shortcuts. No `allowed_paths`: Gradio serves no folder of this machine, only
    the copies in its cache folder of what pages were given. No run history: Gradio would keep
    every call's inputs and outputs (images, captions) in the browser, or in a Hugging Face
    bucket the user connects. No monitoring: Gradio's would count every user's requests for anyone
    (`/monitoring/summary`) and print a dashboard key into the log. `UploadGuard` in front: each
    upload in a random folder of its own, none served back by URL."""
    from starlette.middleware import Middleware

    from medart.ui.uploads import UploadGuard

    return {"css": CSS, "head": SHORTCUTS, "theme": gr.themes.Soft(), "run_history": False,
            "enable_monitoring": False, "app_kwargs": {"middleware": [Middleware(UploadGuard)]}}
