"""Modality templates: the simple caption's wording, the visual features to ask for, the prompt,
and optionally the describer (backend, model, server URL) that captions the modality.

The endoscopy template carries the paper's feature list (specific color, shape, surrounding
mucosa, surface texture, bleeding condition). The others follow the same pattern for their
modality; the paper did not publish a dermoscopy list, so ours is our own. Templates are
plain data: the workspace stores edited copies and custom ones as JSON.

A template's describer is optional: `backend=None` leaves the choice to the captioning job
(or the workspace default), so a workspace can caption endoscopy with one VLM and
dermoscopy with another while templates without a describer follow the job.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field, replace

DEFAULT_PROMPT = (
    "{simple_caption}. Please describe this image using the following visual features: "
    "{features}, and other relevant details. Start with '{simple_caption}' and ensure the "
    "description does not exceed {max_words} words."
)
PLACEHOLDERS = {"simple_caption", "features", "max_words", "label"}
BACKENDS = ("offline", "transformers", "openai")
FIELDS = ("name", "image_phrase", "features", "prompt", "max_words", "description", "backend", "model", "url")
# Labels that name the modality itself rather than what the image shows: "A fundus image of
# fundus" says nothing twice, so such a label adds nothing to the simple caption.
SAME_AS_MODALITY = {
    "endoscopy": {"endoscopy", "endoscopic", "colonoscopy", "gastroscopy"},
    "dermoscopy": {"dermoscopy", "dermoscopic", "dermatoscopy", "dermatoscopic"},
    "histology": {"histology", "histological", "histopathology", "histopathological", "pathology"},
    "radiology": {"radiology", "radiological", "radiograph"},
    "fundus": {"fundus", "fundus photograph", "fundus image", "retina", "retinal"},
    "custom": {"medical", "medical image"},
}
# Stains named as labels: "A histology image of ihc" reads as "A histology image with IHC staining".
STAINS = {
    "ihc": "IHC", "immunohistochemistry": "immunohistochemical", "dab": "DAB",
    "he": "H&E", "h&e": "H&E", "h and e": "H&E", "hematoxylin and eosin": "H&E", "haematoxylin and eosin": "H&E",
    "pas": "PAS", "masson": "Masson's trichrome", "trichrome": "trichrome", "giemsa": "Giemsa",
}
_PHRASE_FILLER = {"a", "an", "the", "image", "of", "photo", "photograph", "picture", "scan"}


def _norm_label(label: str) -> str:
    return re.sub(r"[\s_\-]+", " ", label.strip().lower())


@dataclass
class ModalityTemplate:
    """How to caption one imaging modality."""

    name: str
    image_phrase: str  # "An endoscopic image": the simple caption is "<image_phrase> of <label>"
    features: list[str] = field(default_factory=list)
    prompt: str = DEFAULT_PROMPT
    max_words: int = 100
    description: str = ""
    backend: str | None = None  # None: the job's or the workspace's describer
    model: str | None = None  # transformers: hub id or folder; openai: the served model name
    url: str | None = None  # openai: the server's URL

    def __post_init__(self):
        # an empty form field means "not set"
        self.backend, self.model, self.url = (
            (v.strip() or None) if isinstance(v, str) else v for v in (self.backend, self.model, self.url)
        )

    def simple_caption(self, label: str | None) -> str:
        """"<image phrase> of <label>", without tautologies: a label that only names the
        modality (the template's name, a word of its image phrase, a synonym) is left out, and
        a stain named as a histology label says so ("... with IHC staining")."""
        label = (label or "").strip()
        if not label:
            return self.image_phrase
        norm = _norm_label(label)
        phrase_words = {w for w in re.findall(r"[a-z]+", self.image_phrase.lower()) if w not in _PHRASE_FILLER}
        same = SAME_AS_MODALITY.get(self.name, set()) | phrase_words | {_norm_label(self.name)}
        if norm in same:
            return self.image_phrase
        if norm in STAINS and ("histolog" in self.image_phrase.lower() or self.name == "histology"):
            return f"{self.image_phrase} with {STAINS[norm]} staining"
        return f"{self.image_phrase} of {label}"

    def render_prompt(self, simple_caption: str, label: str | None = None) -> str:
        return self.prompt.format(
            simple_caption=simple_caption,
            features=", ".join(self.features),
            max_words=self.max_words,
            label=label or "",
        )

    def validate(self) -> "ModalityTemplate":
        """Raise ValueError (saying what to fix) unless the template can render prompts."""
        if not self.name.strip():
            raise ValueError("a template needs a name")
        if not self.image_phrase.strip():
            raise ValueError("a template needs an image phrase such as 'An endoscopic image'")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.prompt) if f is not None}
        except ValueError as e:
            raise ValueError(f"the prompt of template {self.name!r} is not a valid format string: {e}") from e
        unknown = fields - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"the prompt of template {self.name!r} uses unknown placeholders {sorted(unknown)}; "
                f"allowed: {sorted(PLACEHOLDERS)} (write literal braces as {{{{ and }}}})"
            )
        if self.max_words < 5:
            raise ValueError("max_words must be at least 5")
        self._validate_describer()
        return self

    def _validate_describer(self) -> None:
        """The describer fields must name a backend that can be loaded with them."""
        who = f"template {self.name!r}"
        if self.backend is None:
            if self.model or self.url:
                raise ValueError(
                    f"{who} names a model or URL but no describer backend; choose the backend they belong to "
                    f"({', '.join(BACKENDS)})"
                )
            return
        if self.backend not in BACKENDS:
            raise ValueError(
                f"{who}: unknown describer backend {self.backend!r}; choose one of {', '.join(BACKENDS)} "
                "(or none, to use the job's choice)"
            )
        if self.backend == "offline" and (self.model or self.url):
            raise ValueError(f"{who}: the offline describer takes no model or URL")
        if self.backend == "transformers" and self.url:
            raise ValueError(f"{who}: a server URL is for the openai backend; transformers loads a hub id or folder")
        if self.backend == "openai" and not self.model:
            raise ValueError(f"{who}: the openai backend needs the model name the server serves")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{who}: the URL must start with http:// or https:// (got {self.url!r})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModalityTemplate":
        """A template from its JSON; fields it predates (the describer) keep their defaults."""
        return cls(**{k: d[k] for k in FIELDS if k in d}).validate()


BUILTIN_TEMPLATES: dict[str, ModalityTemplate] = {
    t.name: t
    for t in (
        ModalityTemplate(
            "endoscopy",
            "An endoscopic image",
            ["specific color", "shape", "surrounding mucosa", "surface texture", "bleeding condition"],
            description="GI endoscopy; the paper's feature list (Kvasir)",
        ),
        ModalityTemplate(
            "dermoscopy",
            "A dermoscopic image",
            ["specific color", "shape", "border regularity", "pigment network", "surrounding skin", "symmetry"],
            description="skin lesions under a dermatoscope",
        ),
        ModalityTemplate(
            "histology",
            "A histology image",
            ["stain colors", "cell density", "nuclear shape", "tissue architecture", "texture"],
            description="stained tissue sections (H&E, IHC)",
        ),
        ModalityTemplate(
            "radiology",
            "A radiology image",
            ["brightness", "contrast", "shape of the main structure", "position", "texture", "symmetry"],
            description="X-ray, CT, MRI slices (grayscale)",
        ),
        ModalityTemplate(
            "fundus",
            "A fundus image",
            ["specific color", "optic disc", "blood vessels", "lesions", "brightness"],
            description="retinal photographs",
        ),
        ModalityTemplate(
            "custom",
            "A medical image",
            ["specific color", "shape", "texture", "size", "position"],
            description="anything else; edit the image phrase and features",
        ),
    )
}


def get_builtin(name: str) -> ModalityTemplate:
    try:
        return replace(BUILTIN_TEMPLATES[name], features=list(BUILTIN_TEMPLATES[name].features))
    except KeyError:
        raise ValueError(
            f"unknown modality template {name!r}; built in: {', '.join(BUILTIN_TEMPLATES)} "
            "(or save a custom one in the workspace)"
        ) from None


def simple_caption(template: ModalityTemplate | str, label: str | None) -> str:
    """'An endoscopic image of <label>' for the template (by name or object)."""
    if isinstance(template, str):
        template = get_builtin(template)
    return template.simple_caption(label)
