"""The Visual Symptom Generator (VSG): visual descriptions of medical images for PixArt-α's T5.

Backends (`offline`, `transformers`, `openai`) share one interface (`base.Captioner`);
`templates` holds the modality templates and `vsg` the rules every caption must pass
(start with the simple caption, no echo of the feature list, no drift, at most 120 tokens),
with `simplify` as the optional text-model shortening pass.
This package never imports gradio or the UI.
"""

from captioning.base import Caption, Captioner, CaptionerError, SamplingConfig
from captioning.templates import BACKENDS, BUILTIN_TEMPLATES, ModalityTemplate, get_builtin, simple_caption
from captioning.vsg import VSGConfig, describe, trim_to_tokens


def make_captioner(backend: str = "offline", model: str | None = None, **kwargs) -> Captioner:
    """A captioner by backend name: `offline`, `transformers` (model = hub id or folder; default
    the suggested model for this machine) or `openai` (model = served model name, `base_url=`)."""
    if backend == "offline":
        from captioning.offline import OfflineDescriber

        return OfflineDescriber(**kwargs)
    if backend == "transformers":
        from captioning.hf_vlm import TransformersVLMCaptioner, suggested_model

        return TransformersVLMCaptioner(model or suggested_model(), **kwargs)
    if backend == "openai":
        from captioning.openai_api import OpenAICompatibleCaptioner

        if not model:
            raise ValueError("the openai backend needs --model NAME (the model name the server serves)")
        return OpenAICompatibleCaptioner(model=model, **kwargs)
    raise ValueError(f"unknown captioning backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "BUILTIN_TEMPLATES",
    "Caption",
    "Captioner",
    "CaptionerError",
    "ModalityTemplate",
    "SamplingConfig",
    "VSGConfig",
    "describe",
    "get_builtin",
    "make_captioner",
    "simple_caption",
    "trim_to_tokens",
]
