"""The caption workspace: images, captions, their history and templates, and what is done with them.

`store` is the SQLite store (the only module of the workspace that speaks SQL, with numbered
migrations); `importers` (with `dicom_import`) bring images in, patient data stripped;
`describe` captions them with the Visual Symptom Generator as a batch; `splits` organises them
into train, validation and test; `exports` writes the approved captions for training.
No gradio here: the app and the CLI both use this package.
"""

from medart.constants import SPLITS
from medart.workspace.store import (
    MAX_CAPTION_CHARS,
    EditConflict,
    ReplaceMatch,
    STATUSES,
    Filter,
    Item,
    NewImage,
    ReplacePreview,
    Undone,
    Workspace,
    check_split,
    default_workspace,
    open_workspace,
    pixel_hash,
)

__all__ = ["MAX_CAPTION_CHARS", "SPLITS", "STATUSES", "EditConflict", "Filter", "Item", "NewImage", "ReplaceMatch",
           "ReplacePreview", "Undone", "Workspace", "check_split", "default_workspace", "open_workspace", "pixel_hash"]
