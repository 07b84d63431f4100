"""Evaluation of a run the way the paper does: FID, KID, domain Fréchet distance, colour, classification.

`pipeline.evaluate` runs it (generate, measure, report); `sets` holds the held-out real images
and the cached generated ones; `metrics` the distribution metrics, `classifier` the compact
domain classifier, `report` the Markdown and plots written to `<run>/eval/`.
"""

from medart.evaluation.pipeline import ALL_METRICS, EvalConfig, evaluate, per_class_color
from medart.evaluation.sets import (
    EvaluationError,
    GeneratedImages,
    RealImage,
    caption_plan,
    floor_split,
    load_image_folder,
    load_workspace_split,
    resolve_real,
    training_images,
)

__all__ = [
    "ALL_METRICS",
    "EvalConfig",
    "EvaluationError",
    "GeneratedImages",
    "RealImage",
    "caption_plan",
    "evaluate",
    "floor_split",
    "load_image_folder",
    "load_workspace_split",
    "per_class_color",
    "resolve_real",
    "training_images",
]
