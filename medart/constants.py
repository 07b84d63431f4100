"""Facts the whole product shares, each stated once."""

from __future__ import annotations

# PixArt-α's T5 reads at most this many tokens of a caption: longer captions are cut off in
# training and generation, so captions are checked and trimmed against it. It is also the
# workspace's conservative default, which every base model reads in full.
MAX_CAPTION_TOKENS = 120
# PixArt-Σ reads up to 300 (its pipeline's max_sequence_length); the limit of a training run
# is its base model's (`medart.profiles.Base.max_caption_tokens`).
MAX_CAPTION_TOKENS_SIGMA = 300

# The splits of a workspace and of an export: training reads `train` only.
SPLITS = ("train", "validation", "test")

# The image files the product reads (imports, training folders, evaluation folders).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".webp"})

# validation samples: one per class, for this many classes at most
SAMPLE_CLASSES = 8
