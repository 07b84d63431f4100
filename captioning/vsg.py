"""The VSG rules: a caption starts with its simple caption, does not echo the feature list,
does not drift (too short, a refusal, degenerate repetition, or another modality's words),
and fits PixArt-α's 120-token text limit.

`describe()` runs a backend over a batch, regenerates the captions that break a rule (up to
`max_attempts` generations per image, as the authors did in a loop), and shortens long
ones: with a simplify pass when a text model is configured, otherwise (and as a final
guarantee) by trimming at sentence boundaries. Token counts use the active base model's T5
tokenizer, counted as PixArt-α counts them (special tokens included).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from captioning.base import Caption, Captioner
from captioning.templates import ModalityTemplate
from medart.constants import MAX_CAPTION_TOKENS

REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "unable to", "i apologize")
PROMPT_ECHOES = ("please describe", "does not exceed", "following visual features", "start with '")
# words that place a caption in one modality: a caption naming another modality has drifted
MODALITY_WORDS = {
    "endoscopy": ("endoscop", "colonoscop", "gastroscop"),
    "dermoscopy": ("dermoscop", "dermatoscop"),
    "histology": ("histolog", "microscop", "micrograph"),
    "radiology": ("x-ray", "radiograph", "ct scan", "mri ", "computed tomography", "magnetic resonance"),
    "fundus": ("fundus", "retina", "optic disc"),
}
_WORD = re.compile(r"[a-z]+")
_STOP = {"a", "an", "the", "and", "or", "of", "with", "in", "on", "is", "are", "other", "relevant", "details", "its"}


@dataclass
class VSGConfig:
    """Rules of the Visual Symptom Generator; defaults are the paper's."""

    max_tokens: int = MAX_CAPTION_TOKENS  # PixArt-α's text length limit
    max_attempts: int = 3  # generations per image before the best one is kept and repaired
    min_words: int = 6  # fewer words after the simple caption counts as drift
    echo_overlap: float = 0.6  # share of the remaining words that are feature-list words
    simplifier: Callable[[str, int], str] | None = None  # (text, max_tokens) -> shorter text


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of `text` as the T5 text encoder sees them (the end-of-sequence token included)."""
    return len(tokenizer(text)["input_ids"])


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def strip_wrapping(text: str) -> str:
    """Whitespace, quotes and a leading 'Caption:' / 'Description:' that chat models add."""
    text = text.strip().strip("\"'“”").strip()
    text = re.sub(r"^(caption|description|answer)\s*:\s*", "", text, flags=re.I)
    return re.sub(r"\s+", " ", text).strip()


def starts_with_simple(text: str, simple: str) -> bool:
    return _norm(text).startswith(_norm(simple).rstrip(". "))


def problems(text: str, simple: str, template: ModalityTemplate, config: VSGConfig) -> list[str]:
    """The rules `text` breaks (empty when it is a good VSG caption)."""
    found = []
    low = _norm(text)
    if not starts_with_simple(text, simple):
        found.append("start")
    rest = low[len(_norm(simple)) :] if "start" not in found else low
    words = _WORD.findall(rest)
    feature_text = _norm(", ".join(template.features))
    if feature_text and feature_text in low or any(e in low for e in PROMPT_ECHOES):
        found.append("echo")
    else:
        feature_words = set(_WORD.findall(feature_text)) - _STOP
        content = [w for w in words if w not in _STOP]
        if content and feature_words and sum(w in feature_words for w in content) / len(content) >= config.echo_overlap:
            found.append("echo")
    others = [w for name, ws in MODALITY_WORDS.items() if name != template.name for w in ws]
    if len(words) < config.min_words or any(r in low for r in REFUSALS):
        found.append("drift")
    elif template.name in MODALITY_WORDS and any(w in rest + " " for w in others):
        found.append("drift")  # talks about another modality
    elif len(words) >= 10 and Counter(words).most_common(1)[0][1] / len(words) > 0.3:
        found.append("drift")  # degenerate repetition
    return found


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def trim_to_tokens(text: str, tokenizer, max_tokens: int = MAX_CAPTION_TOKENS) -> str:
    """The longest run of whole leading sentences within `max_tokens`; if even the first
    sentence is too long, its longest word prefix that fits, closed with a full stop."""
    if count_tokens(tokenizer, text) <= max_tokens:
        return text
    kept: list[str] = []
    for sentence in _sentences(text):
        candidate = " ".join(kept + [sentence])
        if count_tokens(tokenizer, candidate) > max_tokens:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    words = text.split()
    lo, hi = 0, len(words)  # binary search for the longest fitting word prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(tokenizer, " ".join(words[:mid]).rstrip(",;:") + ".") <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return (" ".join(words[:lo]).rstrip(",;:") + ".") if lo else ""


def repair_start(text: str, simple: str) -> str:
    """Make the caption start with the simple caption, keeping the model's words after it."""
    head = simple.rstrip(". ")
    if starts_with_simple(text, simple):
        return head + text.strip()[len(head) :]  # the simple caption exactly as written
    body = text.strip()
    if body:
        body = body[0].upper() + body[1:]
        return f"{head}. {body}"
    return simple


def finalize(caption: Caption, simple: str, tokenizer, config: VSGConfig) -> Caption:
    """Apply the start and length rules in place: prefix if needed, simplify or trim to fit."""
    text = strip_wrapping(caption.text)
    if not starts_with_simple(text, simple):
        caption.rules.append("prefixed simple caption")
    text = repair_start(text, simple)
    if tokenizer is not None:
        n = count_tokens(tokenizer, text)
        if n > config.max_tokens and config.simplifier is not None:
            simplified = repair_start(strip_wrapping(config.simplifier(text, config.max_tokens)), simple)
            caption.rules.append(f"simplified {n}->{count_tokens(tokenizer, simplified)} tokens")
            text = simplified
            n = count_tokens(tokenizer, text)
        if n > config.max_tokens:
            text = trim_to_tokens(text, tokenizer, config.max_tokens)
            caption.rules.append(f"trimmed {n}->{count_tokens(tokenizer, text)} tokens")
        caption.token_count = count_tokens(tokenizer, text)
    caption.text = text
    return caption


def describe(
    captioner: Captioner,
    images: list[Image.Image],
    simple_captions: list[str],
    template: ModalityTemplate,
    tokenizer=None,
    config: VSGConfig | None = None,
) -> list[Caption]:
    """VSG captions for a batch: generate, regenerate rule-breakers, then fit the length."""
    config = config or VSGConfig()
    if len(images) != len(simple_captions):
        raise ValueError("describe() needs one simple caption per image")
    best: list[Caption | None] = [None] * len(images)
    best_problems: list[list[str] | None] = [None] * len(images)
    pending = list(range(len(images)))
    for attempt in range(1, config.max_attempts + 1):
        if not pending:
            break
        out = captioner.generate([images[i] for i in pending], [simple_captions[i] for i in pending], template)
        still = []
        for i, cap in zip(pending, out):
            cap.text = strip_wrapping(cap.text)
            cap.attempts = attempt
            found = problems(cap.text, simple_captions[i], template, config)
            # keep the attempt breaking the fewest rules; a missing start is the cheapest to repair
            score = (len([p for p in found if p != "start"]), len(found))
            if best[i] is None or score < (
                len([p for p in best_problems[i] if p != "start"]),
                len(best_problems[i]),
            ):
                best[i], best_problems[i] = cap, found
            if found:
                still.append(i)
        pending = still
    results = []
    for i, cap in enumerate(best):
        left = [p for p in best_problems[i] if p != "start"]
        if cap.attempts > 1 or best_problems[i]:
            cap.rules.append(f"attempts: {cap.attempts}")
        if left:
            cap.rules.append("unresolved: " + ", ".join(left))
        results.append(finalize(cap, simple_captions[i], tokenizer, config))
    return results
