"""Data tab, Organise section: the label x split table, a stratified hold-out for evaluation, and
label / split / remove of chosen images (by the `#id` the gallery shows under each image, or by
clicking thumbnails).

Each action is a plain function `(studio, ...) -> (message, table)` that raises ValueError
with what to do; `build` wires them to the page through `widgets.beside` (a refusal is the
status line's one line, no toast). Relabelling, moving and holding out are changes of the
workspace that "Undo last change" reverts (here or in the Captions tab); removing is not.
"""

from __future__ import annotations

import re

import gradio as gr

from medart.workspace.splits import hold_out, moves_text, parse_ids, split_counts, table, totals
from medart.ui.widgets import beside
from medart.workspace import SPLITS

HEADERS = ["label", *SPLITS, "total"]


def split_view(studio) -> dict:
    """The label x split table of the studio's workspace, as the Dataframe takes it: a total row
    last, and a column for any split outside SPLITS that an old import left."""
    with studio.workspace() as ws:
        headers, rows = table(split_counts(ws))
    return {"headers": headers, "data": rows}


def _chosen(ids_text: str) -> list[int]:
    ids = parse_ids(ids_text or "")
    if not ids:
        raise ValueError("type the ids of the images first, e.g. 3, 5-9 (the gallery shows #id under each image)")
    return ids


def hold_out_images(studio, test_pct, validation_pct, seed) -> tuple[str, dict]:
    """Per class, test_pct % of the images to test and validation_pct % to validation, the rest to train;
    images already held out stay, and the message says what moved in each direction."""
    moved: dict[str, list[int]] = {}
    with studio.workspace() as ws:
        counts = hold_out(ws, test=(test_pct or 0) / 100, validation=(validation_pct or 0) / 100, seed=int(seed or 0),
                          moved=moved)
    held = totals(counts)
    return (f"**Held out** {held['test']} test and {held['validation']} validation image(s) across "
            f"{len(counts)} class(es), seed {int(seed or 0)}; {held['train']} in train. Images already held out "
            f"stayed; {moves_text(moved)}. Undo reverses it in one step.", split_view(studio))


def _apply(studio, ids_text: str, change) -> int:
    """`change(ws, ids)` on the typed ids, in the studio's workspace; returns its count."""
    ids = _chosen(ids_text)
    with studio.workspace() as ws:
        return change(ws, ids)


def relabel(studio, ids_text: str, label: str) -> tuple[str, dict]:
    label = (label or "").strip()
    if not label:
        _chosen(ids_text)  # the ids are asked for first
        raise ValueError("type the new class label first")
    n = _apply(studio, ids_text, lambda ws, ids: ws.set_labels(ids, label))
    return f"**Labelled** {n} image(s) “{label}”.", split_view(studio)


def move(studio, ids_text: str, split: str) -> tuple[str, dict]:
    n = _apply(studio, ids_text, lambda ws, ids: ws.set_split(ids, split))
    return f"**Moved** {n} image(s) to {split}.", split_view(studio)


def remove_images(studio, ids_text: str, confirmed: bool) -> tuple[str, dict]:
    if not confirmed:
        n = len(_chosen(ids_text))
        raise ValueError(f"tick “Yes, remove them” to remove {n} image(s); removing cannot be undone")
    n = _apply(studio, ids_text, lambda ws, ids: ws.remove(ids))
    return f"**Removed** {n} image(s) with their captions and history.", split_view(studio)


def undo_last(studio) -> tuple[str, dict]:
    """Undo the workspace's last change (a relabelling, a move, a hold-out, or a caption change
    made in the Captions tab) and say what it was."""
    with studio.workspace() as ws:
        undone = ws.undo()
    return (undone.describe() if undone else "Nothing to undo."), split_view(studio)


def toggle_id(ids_text: str | None, caption: str | None) -> tuple[str, str]:
    """A clicked thumbnail (its caption "#id split") added to the typed ids, or taken out when it
    is there already: (the ids as text, a line saying what happened)."""
    found = re.match(r"#(\d+)\b", caption or "")
    if not found:
        return ids_text or "", ""
    image = int(found.group(1))
    try:
        ids = parse_ids(ids_text or "")
    except ValueError:  # what was typed is no list of ids: the click starts a new one
        ids = []
    chosen = [i for i in ids if i != image] if image in ids else sorted([*ids, image])
    said = (f"#{image} taken out of" if image in ids else f"#{image} added to") + " the selected images"
    return ", ".join(map(str, chosen)), f"{said} ({len(chosen)} selected)."


def build(studio, view, view_outputs: list, view_inputs: list = (), gallery=None):
    """The Organise accordion. After every action the table and `view_outputs` (filled by
    `view(*view_inputs)`: the tab's stats and gallery) are refreshed. Clicking a thumbnail of
    `gallery` selects that image (or unselects it) and opens the section. Returns the table."""
    with gr.Accordion("Organise: labels, splits, removal", open=False, elem_id="org-section") as section:
        gr.Markdown("Training uses the **train** split; Evaluate and the reader study use **test** by default.")
        with gr.Row():
            with gr.Column(scale=3):
                grid = gr.Dataframe(headers=HEADERS, value=[], label="Images per label and split",
                                    interactive=False, elem_id="org-table")
                message = gr.Markdown(elem_id="org-message")
            with gr.Column(scale=2):
                gr.Markdown("**Hold out for evaluation**: per class, this share of the images goes to "
                            "test (and validation), the rest to train. The same seed gives the same split.")
                test_pct = gr.Slider(0, 50, value=20, step=1, label="Test %", elem_id="org-test")
                val_pct = gr.Slider(0, 50, value=0, step=1, label="Validation %", elem_id="org-validation")
                seed = gr.Number(0, precision=0, label="Seed", elem_id="org-seed")
                hold_btn = gr.Button("Hold out", variant="primary", elem_id="org-hold-out")
            with gr.Column(scale=3):
                gr.Markdown("**Selected images**: click their thumbnails in the gallery (again to unselect) "
                            "or type their ids (the `#id` under each image), then act on them.")
                ids = gr.Textbox(label="Image ids", placeholder="3, 5-9", elem_id="org-ids")
                with gr.Row(equal_height=True):
                    label = gr.Textbox(label="New label", show_label=False, placeholder="New label",
                                       elem_id="org-label", scale=2)
                    label_btn = gr.Button("Set label", elem_id="org-set-label", scale=1)
                with gr.Row(equal_height=True):
                    split = gr.Dropdown(list(SPLITS), value="test", label="Split", show_label=False,
                                        elem_id="org-split", scale=2)
                    split_btn = gr.Button("Move to split", elem_id="org-set-split", scale=1)
                undo_btn = gr.Button("Undo last change", elem_id="org-undo", size="sm")
                with gr.Row(equal_height=True):
                    confirm = gr.Checkbox(False, label="Yes, remove them (cannot be undone)",
                                          elem_id="org-remove-confirm", scale=2)
                    remove_btn = gr.Button("Remove", variant="stop", elem_id="org-remove", scale=1)

    def refreshed(action):
        def handler(*args):
            split_at = len(args) - len(view_inputs)
            text, grid_value = action(studio, *args[:split_at])
            return (text, grid_value, *view(*args[split_at:]))

        return handler

    outputs = [message, grid, *view_outputs]
    quiet = {"show_progress": "hidden"}
    # quick; a refusal is the one line of `message`, beside the buttons: no toast, nothing blanked
    said = {"show_progress_on": [message]}
    section.expand(lambda: split_view(studio), outputs=[grid], **quiet)
    beside(hold_btn.click, refreshed(hold_out_images), [test_pct, val_pct, seed, *view_inputs], outputs, message,
           api_name="hold_out", **said)
    beside(label_btn.click, refreshed(relabel), [ids, label, *view_inputs], outputs, message, api_name="set_label",
           **said)
    beside(split_btn.click, refreshed(move), [ids, split, *view_inputs], outputs, message, api_name="set_split", **said)
    beside(undo_btn.click, refreshed(undo_last), view_inputs, outputs, message, api_name="org_undo", **said)
    beside(remove_btn.click, refreshed(remove_images), [ids, confirm, *view_inputs], outputs, message,
           api_name="remove_images", **said).success(lambda: False, outputs=[confirm], **quiet)
    if gallery is not None:
        def on_select(ids_text, evt: gr.SelectData):
            caption = evt.value.get("caption") if isinstance(evt.value, dict) else None
            chosen, said = toggle_id(ids_text, caption)
            return chosen, said, gr.Accordion(open=True)

        gallery.select(on_select, [ids], [ids, message, section], **quiet)
    return grid
