"""Train / validation / test splits of a workspace: counts per class and a stratified hold-out.

`hold_out` reassigns images per class label: round(fraction x n) of each class go to `test`
(and `validation`), at least one when the class has two or more images, never all of them;
the rest go to `train`. Images already held out stay where they are (up to the share): only
the difference moves, and the caller is told which images moved in which direction. The images are drawn in the order of a hash keyed by (seed, label,
image content), so the same seed over the same images gives the same split (in any
workspace, whatever the import order), a larger fraction with the same seed keeps the
smaller one's test images, and a new class leaves the others' split as it was.
Everything here works on a `Workspace` (which does the reading and writing); the CLI and the
Data tab both call it.
"""

from __future__ import annotations

import hashlib
import math

from medart.workspace import SPLITS, Filter, Workspace

MAX_IDS = 1_000_000  # a typo like 1-9999999999 should fail, not fill the memory


def parse_ids(values) -> list[int]:
    """Image ids from text such as "3, 5-9" or ["3", "5-9", "12,14"]: sorted, once each."""
    if isinstance(values, str):
        values = [values]
    ids: set[int] = set()
    for value in values or []:
        for part in str(value).replace(",", " ").split():
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(f"{part!r} is not an image id or a range; write ids like 3, 5-9")
            lo, hi = int(first), int(last or first)
            if hi < lo:
                raise ValueError(f"the range {part!r} runs backwards; write it as {hi}-{lo}")
            if hi - lo >= MAX_IDS:
                raise ValueError(f"the range {part!r} is too long; no workspace has that many images")
            ids.update(range(lo, hi + 1))
    return sorted(ids)


def split_counts(ws: Workspace, flt: Filter | None = None) -> dict[str, dict[str, int]]:
    """{label: {split: count}} over the (filtered) images; "" is the label of unlabelled ones.
    Every label has all of SPLITS; a split outside SPLITS (an old import) is counted too."""
    rows = ws.split_counts(flt)
    counts: dict[str, dict[str, int]] = {}
    for label, split, n in rows:
        counts.setdefault(label, dict.fromkeys(SPLITS, 0))[split] = n
    return counts


def totals(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """{split: images} summed over the labels of a {label: {split: count}} table."""
    return {s: sum(c.get(s, 0) for c in counts.values()) for s in SPLITS}


def table(counts: dict[str, dict[str, int]]) -> tuple[list[str], list[list]]:
    """(headers, rows) of label x split counts with a total column and a total row."""
    splits = list(SPLITS) + sorted({s for c in counts.values() for s in c} - set(SPLITS))
    headers = ["label", *splits, "total"]
    rows = []
    for label, c in counts.items():
        row = [c.get(s, 0) for s in splits]
        rows.append([label or "(no label)", *row, sum(row)])
    if counts:
        totals = [sum(r[k] for r in rows) for k in range(1, len(headers))]
        rows.append(["all", *totals])
    return headers, rows


def format_table(counts: dict[str, dict[str, int]]) -> str:
    """The label x split table as aligned text for the terminal."""
    headers, rows = table(counts)
    if not rows:
        return "no images"
    cells = [headers] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths))) for r in cells
    )


def _rank(seed: int, label: str, sha: str) -> str:
    """An image's place in its class's draw: a keyed hash of its pixels' hash, so the draw
    depends on the images, not on import order or ids, and a new image leaves the others'
    order as it was."""
    return hashlib.sha256(f"{seed}:{label}:{sha}".encode()).hexdigest()


def _share(fraction: float, n: int) -> int:
    """round(fraction x n), halves rounded up (2.5 -> 3, as people expect, not Python's 2)."""
    return math.floor(fraction * n + 0.5 + 1e-9)


def held_out_sizes(n: int, test: float, validation: float) -> tuple[int, int]:
    """(test, validation) image counts for a class of n images; train keeps at least one."""
    if n < 2:
        return 0, 0
    n_test = max(1, _share(test, n)) if test > 0 else 0
    n_val = max(1, _share(validation, n)) if validation > 0 else 0
    n_test = min(n_test, n - 1)
    n_val = min(n_val, n - 1 - n_test)  # a tiny class gives up validation before test
    return n_test, n_val


def _check_fractions(test: float, validation: float) -> None:
    for name, f in (("test", test), ("validation", validation)):
        if not 0 <= f < 1:
            raise ValueError(f"the {name} share must be a fraction from 0 to below 1 (e.g. 0.2 for 20 %), got {f}")
    if test + validation >= 1:
        raise ValueError(f"test {test} + validation {validation} leaves nothing to train on; keep the sum below 1")


def _fill(ranked: list[int], current: dict[int, str], want: dict[str, int]) -> dict[str, list[int]]:
    """{split: ids} of one class: images already in test (then validation) stay there up to that
    split's share, the excess (last in the draw) going back to train; the shares are topped up
    from the training images in the order of the draw, then from the other held-out split."""
    groups: dict[str, list[int]] = {"test": [], "validation": []}
    for split in ("test", "validation"):
        groups[split] = [i for i in ranked if current.get(i) == split][: want[split]]
    taken = set(groups["test"]) | set(groups["validation"])
    for split in ("test", "validation"):
        other = "validation" if split == "test" else "test"
        pool = [i for i in ranked if i not in taken and current.get(i) not in ("test", "validation")]
        pool += [i for i in ranked if i not in taken and current.get(i) == other]
        extra = pool[: want[split] - len(groups[split])]
        groups[split] += extra
        taken.update(extra)
    groups["train"] = [i for i in ranked if i not in taken]
    return groups


def moves_text(moved: dict[str, list[int]]) -> str:
    """What a hold-out moved, in each direction, e.g. "3 to test (#4, #9, #12), 1 out of test to
    train (#7)", or that it moved nothing; ids beyond ten are counted, not listed."""
    def ids(group: list[int]) -> str:
        shown = ", ".join(f"#{i}" for i in group[:10])
        return shown + (f" and {len(group) - 10} more" if len(group) > 10 else "")

    parts = [f"{len(group)} {direction} ({ids(group)})" for direction, group in moved.items() if group]
    return "moved " + "; ".join(parts) if parts else "moved nothing (the splits already had these shares)"


def hold_out(
    ws: Workspace, test: float = 0.2, validation: float = 0.0, seed: int = 0, flt: Filter | None = None,
    moved: dict[str, list[int]] | None = None,
) -> dict[str, dict[str, int]]:
    """Reassign the splits of the images matching `flt` (all when None), per class label, in
    one transaction (one undo step; see the module docstring). Images already in test or
    validation stay there (up to the share); only the difference moves. Returns {label:
    {split: count}} of those images; `moved`, when given, receives {direction: ids} of what moved
    ("to test", "out of test to train", ...), for `moves_text`."""
    _check_fractions(test, validation)
    counts: dict[str, dict[str, int]] = {}
    changes: dict[str, list[int]] = {}

    def assign(rows: list[tuple[int, str, str, str]]) -> list[tuple[str, int]]:
        by_label: dict[str, list[tuple[str, int]]] = {}
        current = {image_id: split for image_id, _, _, split in rows}
        for image_id, label, sha, _ in rows:
            by_label.setdefault(label, []).append((_rank(seed, label, sha), image_id))
        updates = []
        for label in sorted(by_label):
            ids = [image_id for _, image_id in sorted(by_label[label])]
            n_test, n_val = held_out_sizes(len(ids), test, validation)
            groups = _fill(ids, current, {"test": n_test, "validation": n_val})
            counts[label] = {split: len(groups[split]) for split in SPLITS}
            for split, group in groups.items():
                for i in group:
                    updates.append((split, i))
                    if current[i] != split:
                        key = f"to {split}" if current[i] == "train" else f"out of {current[i]} to {split}"
                        changes.setdefault(key, []).append(i)
        return updates

    detail = f"({100 * test:g} % test" + (f", {100 * validation:g} % validation" if validation else "") + f", seed {seed})"
    ws.reassign_splits(flt, assign, detail=detail)
    if moved is not None:
        moved.update({k: sorted(v) for k, v in sorted(changes.items())})
    return counts
