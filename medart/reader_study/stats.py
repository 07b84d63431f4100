"""Statistics of a reader study: can readers tell generated images from real ones?

For each reader, and for all answers pooled:
- accuracy (answer equals truth) against the 50 % chance line, with the Wilson score
  interval (95 % by default) and the exact two-sided binomial p-value against 0.5, both from
  scipy.stats.binomtest (exact for any number of answers);
- sensitivity and specificity with "generated" as the positive class: sensitivity is the
  share of generated images called generated, specificity the share of real images called real;
- accuracy per class (the images' class labels);
- mean realism score (1-5) of real and of generated images, over the answers that gave one.
With two or more readers, Cohen's kappa of every pair on the images both answered.

Accuracy near 50 % (an interval that contains 0.5) means readers could not tell the two
apart. Pooled answers are treated as independent, which overstates the precision when
readers differ; the per-reader rows do not have that problem. Pure functions of answer rows
(anything with `reader`, `item_id`, `truth`, `label`, `answer`, `realism`): no database here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable, Sequence

from scipy.stats import binomtest

CONFIDENCE = 0.95
POOLED = "all readers"


def binomial_test(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(exact two-sided binomial p-value against 0.5, Wilson interval low, high) of `successes`
    in `n`, by scipy.stats.binomtest; NaNs when there is nothing to test."""
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    result = binomtest(successes, n, 0.5)
    interval = result.proportion_ci(confidence_level=confidence, method="wilson")
    return float(result.pvalue), float(interval.low), float(interval.high)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class ReaderResult:
    """The numbers of one reader (or of all answers pooled)."""

    reader: str
    n: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    sensitivity: float | None  # generated images called generated
    specificity: float | None  # real images called real
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (correct, n)
    realism_real: float | None = None
    realism_generated: float | None = None
    n_realism_real: int = 0
    n_realism_generated: int = 0

    def class_accuracy(self, label: str) -> float | None:
        correct, n = self.per_class.get(label, (0, 0))
        return _ratio(correct, n)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["per_class"] = {k: {"correct": c, "n": n, "accuracy": _ratio(c, n)} for k, (c, n) in self.per_class.items()}
        return d


@dataclass
class Agreement:
    reader_a: str
    reader_b: str
    n: int  # images both answered
    observed: float | None  # share of those with the same answer
    kappa: float | None  # None when undefined (both gave one answer only) or nothing in common


@dataclass
class StudyResults:
    readers: list[ReaderResult]  # one per reader, in the order they joined
    pooled: ReaderResult
    agreements: list[Agreement]

    @property
    def mean_kappa(self) -> float | None:
        values = [a.kappa for a in self.agreements if a.kappa is not None]
        return _mean(values)

    def as_dict(self) -> dict:
        return {"readers": [r.as_dict() for r in self.readers], "pooled": self.pooled.as_dict(),
                "agreements": [a.__dict__ for a in self.agreements], "mean_kappa": self.mean_kappa}


def reader_result(name: str, answers: Iterable, confidence: float = CONFIDENCE) -> ReaderResult:
    answers = list(answers)
    n = len(answers)
    correct = sum(a.answer == a.truth for a in answers)
    gen = [a for a in answers if a.truth == "generated"]
    real = [a for a in answers if a.truth == "real"]
    per_class: dict[str, tuple[int, int]] = {}
    for a in answers:
        c, m = per_class.get(a.label or "", (0, 0))
        per_class[a.label or ""] = (c + (a.answer == a.truth), m + 1)
    p_value, low, high = binomial_test(correct, n, confidence) if n else (None, None, None)
    realism_real = [a.realism for a in real if a.realism is not None]
    realism_gen = [a.realism for a in gen if a.realism is not None]
    return ReaderResult(
        reader=name, n=n, correct=correct, accuracy=_ratio(correct, n), ci_low=low, ci_high=high,
        p_value=p_value,
        sensitivity=_ratio(sum(a.answer == "generated" for a in gen), len(gen)),
        specificity=_ratio(sum(a.answer == "real" for a in real), len(real)),
        per_class=dict(sorted(per_class.items())),
        realism_real=_mean(realism_real), realism_generated=_mean(realism_gen),
        n_realism_real=len(realism_real), n_realism_generated=len(realism_gen),
    )


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two readers' answers on the same images (same order)."""
    if len(first) != len(second):
        raise ValueError("kappa needs the two readers' answers on the same images")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    categories = set(first) | set(second)
    expected = sum((first.count(c) / n) * (second.count(c) / n) for c in categories)
    if expected >= 1.0:
        return None  # both readers gave one and the same answer throughout: kappa is undefined
    return (observed - expected) / (1 - expected)


def agreement(name_a: str, answers_a: Iterable, name_b: str, answers_b: Iterable) -> Agreement:
    by_a = {a.item_id: a.answer for a in answers_a}
    by_b = {b.item_id: b.answer for b in answers_b}
    common = sorted(set(by_a) & set(by_b))
    first, second = [by_a[i] for i in common], [by_b[i] for i in common]
    observed = _ratio(sum(x == y for x, y in zip(first, second)), len(common))
    return Agreement(name_a, name_b, len(common), observed, cohen_kappa(first, second))


def summarise(answers: Iterable, confidence: float = CONFIDENCE) -> StudyResults:
    """Per-reader and pooled results, and pairwise Cohen's kappa when there are 2+ readers."""
    answers = list(answers)
    by_reader: dict[str, list] = {}
    for a in answers:
        by_reader.setdefault(a.reader, []).append(a)
    readers = [reader_result(name, rows, confidence) for name, rows in by_reader.items()]
    agreements = [agreement(x, by_reader[x], y, by_reader[y]) for x, y in combinations(by_reader, 2)]
    return StudyResults(readers, reader_result(POOLED, answers, confidence), agreements)
