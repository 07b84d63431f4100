"""The one captioner interface: image + simple caption + modality template in, caption with provenance out.

A backend implements `generate(images, simple_captions, template)` and returns one raw
`Caption` per image; the VSG rules (`captioning.vsg`) decide whether to keep, regenerate
or trim it. `Caption.provenance()` is what the workspace stores next to the text, so that a
reviewer (and a training run) can always tell which model wrote which words, how.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from PIL import Image

from captioning.templates import ModalityTemplate


class CaptionerError(RuntimeError):
    """A backend could not produce a caption; the message says what to do."""


@dataclass
class SamplingConfig:
    """Sampling of the VLM; defaults are the paper's (LLaVA-NeXT in the authors' VSG)."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.9
    max_new_tokens: int = 150
    do_sample: bool = True
    seed: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Caption:
    """A caption and where it came from."""

    text: str
    backend: str
    model: str
    prompt: str
    sampling: dict = field(default_factory=dict)
    seconds: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    attempts: int = 1
    token_count: int | None = None
    rules: list[str] = field(default_factory=list)  # what the VSG rules did: "trimmed", "prefixed", ...

    def provenance(self) -> dict:
        """Everything but the text, as stored in the workspace."""
        d = asdict(self)
        d.pop("text")
        return d


class Captioner(ABC):
    """A captioning backend. Use as a context manager so weights are freed after a job."""

    backend: str = ""
    model: str = ""
    batch_size: int = 1

    @abstractmethod
    def generate(
        self, images: list[Image.Image], simple_captions: list[str], template: ModalityTemplate
    ) -> list[Caption]:
        """One raw caption per image, in order (no rules applied)."""

    def describe(self, image: Image.Image, simple_caption: str, template: ModalityTemplate) -> Caption:
        return self.generate([image], [simple_caption], template)[0]

    def close(self) -> None:
        """Free weights and connections (a no-op for backends that hold none)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def timed_captions(
    texts: list[str],
    backend: str,
    model: str,
    prompts: list[str],
    sampling: dict,
    started: float,
) -> list[Caption]:
    """Captions for a batch, the batch's wall time split evenly over its images."""
    per = (time.perf_counter() - started) / max(1, len(texts))
    return [
        Caption(text=t, backend=backend, model=model, prompt=p, sampling=dict(sampling), seconds=round(per, 4))
        for t, p in zip(texts, prompts)
    ]
