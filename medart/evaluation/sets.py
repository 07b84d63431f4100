"""The image sets of an evaluation: held-out real images and cached generated images.

Real images come from an imagefolder (`metadata.jsonl`/`.csv` with `file_name`, `text`,
`label`, as `medart.workspace.exports` writes it) or a workspace split. Generated images come from
`medart.generate.Generator` (the one sampler), k per caption with seeds fixed by position,
and are cached as PNGs under a key of everything that determines their pixels (base model,
adapter file hash, LoRA strength, caption, seed, steps, guidance, size), so a rerun
generates nothing it already has and a changed adapter never reuses stale images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from medart.constants import IMAGE_SUFFIXES, SPLITS
from medart.data import image_key
from medart.fileio import atomic_write_bytes
from medart.image_container import ContainerRejected, check_container
from medart.pixel_limit import pixel_limit
from medart.run_folder import run_config


Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvaluationError(ValueError):
    """The evaluation cannot run; the message says what is missing and what to do."""


@dataclass
class RealImage:
    """A real image with its caption and class label (either may be empty)."""

    path: Path
    text: str
    label: str

    def load(self) -> Image.Image:
        """The image as RGB; held-out images come from outside, so their structure is checked
        first (`medart.image_container`) and they are decoded under the pixel limit."""
        data = self.path.read_bytes()
        try:
            check_container(data)
            with pixel_limit(), Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")
        except ContainerRejected as e:
            raise EvaluationError(f"held-out image {self.path.name}: {e}") from None
        except MemoryError:
            raise EvaluationError(f"held-out image {self.path.name}: not enough memory to read it here") from None


# --- real images ------------------------------------------------------------------------------


def _metadata_rows(folder: Path, top: Path) -> list[dict] | None:
    """The rows of `folder`'s metadata file (which must lie inside `top`, links followed), or None."""
    jsonl, csv_path = folder / "metadata.jsonl", folder / "metadata.csv"
    for path in (jsonl, csv_path):
        if path.is_file():
            _within(top, path)
    if jsonl.is_file():
        rows = []
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows
    if csv_path.is_file():
        with open(csv_path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return None


def _within(folder: Path, path: Path) -> Path:
    """`path`, when it lies inside `folder` with links and `..` followed: no held-out image is read
    from outside the folder that was named (and checked against the app's roots)."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise EvaluationError(f"{path.relative_to(folder)} leads outside the folder of held-out images (a link or "
                              "'..'); copy the image into the folder")
    return path


def load_image_folder(folder: str | Path) -> list[RealImage]:
    """Images of an imagefolder: `metadata.jsonl`/`.csv` (`file_name`, `text`, `label`) in the
    folder or else in its held-out `test/` (then `validation/`, then `train/`) as an export
    writes them; without metadata, images in class subfolders (no captions)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise EvaluationError(f"the held-out images' folder {folder.name!r} is not a folder")
    for root in (folder, folder / "test", folder / "validation", folder / "train"):
        rows = _metadata_rows(root, folder)
        if rows is not None:
            out = []
            for row in rows:
                path = _within(folder, root / row["file_name"])
                if not path.is_file():
                    raise EvaluationError(f"{path.relative_to(folder)} is listed in the metadata of the held-out "
                                          "images but missing")
                out.append(RealImage(path, str(row.get("text") or "").strip(), str(row.get("label") or "")))
            return out
    out = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and _within(folder, path).is_file():
            label = path.parent.name if path.parent != folder else ""
            out.append(RealImage(path, "", label))
    if not out:
        raise EvaluationError(f"no images in the held-out images' folder {folder.name!r}")
    return out


def load_workspace_split(root: str | Path | None, split: str) -> list[RealImage]:
    """Captioned images of one split (train, validation, test) of a workspace."""
    from medart.workspace import Filter, open_workspace

    with open_workspace(root, create=False) as ws:
        items = [i for i in ws.query(Filter(), limit=None) if i.split == split and i.status != "rejected"]
    if not items:
        raise EvaluationError(f"the workspace has no images in split {split!r}")
    store = Path(ws.root)
    return [RealImage(_within(store, Path(i.image_path)), i.text.strip(), i.label or "") for i in items]


def resolve_real(real: str | None, run: Path) -> tuple[list[RealImage], str]:
    """Held-out real images from `--real`: a folder, `SPLIT` of the default workspace, or
    `WORKSPACE_DIR:SPLIT`. Without it: a `test/` folder beside the run's training data."""
    if real:
        path = Path(real).expanduser()
        if path.is_dir():
            return load_image_folder(path), str(path)
        if ":" in real:
            root, split = real.rsplit(":", 1)
            return load_workspace_split(root, split), f"workspace {root} split {split}"
        if real in SPLITS:
            return load_workspace_split(None, real), f"workspace split {real}"
        raise EvaluationError(f"--real {real!r} is neither a folder nor a workspace split (test, WORKSPACE:test)")
    data = str(run_config(run).get("data") or "")
    candidates = ([Path(data).expanduser() / "test"] if data else []) + [run / "data" / "test"]
    for candidate in candidates:
        if candidate.is_dir():
            return load_image_folder(candidate), str(candidate)
    raise EvaluationError(
        "no held-out real images: pass --real with an imagefolder, a workspace split (e.g. `test`) "
        "or WORKSPACE_DIR:SPLIT"
    )


def training_images(run: Path) -> list[RealImage]:
    """The run's real training images (its `data:` imagefolder's `train/` split when it has one,
    as training reads it; never the held-out splits beside it), for the classifiers."""
    data = str(run_config(run).get("data") or "")
    if not data:
        raise EvaluationError(f"{run}/config.yaml names no training data")
    path = Path(data).expanduser()
    if not path.is_absolute() and not path.exists() and (run / data).exists():
        path = run / data
    if not path.is_dir():
        raise EvaluationError(f"the run's training data {data!r} is not a local folder")
    return load_image_folder(path / "train" if (path / "train").is_dir() else path)


MIN_REAL = 2  # FID's covariance, KID and the colour spread need at least two held-out images


def training_keys(run: Path) -> set[str]:
    """Keys of the images the run trained on: its data.json's `keys`, else the hashes of its
    training data's images as they are now; empty when neither can be read."""
    try:
        keys = json.loads((Path(run) / "data.json").read_text()).get("keys")
    except (OSError, ValueError, AttributeError):
        keys = None
    if keys:
        return set(keys)
    try:
        return {image_key(t.path.read_bytes()) for t in training_images(run)}
    except (EvaluationError, OSError):
        return set()


def held_out_set(real: str | None, run: Path, max_real: int | None = None,
                 keep_seen: bool = False) -> tuple[list[RealImage], str, str | None]:
    """(held-out images, where they came from, a note or None): the images of `resolve_real`
    less those the run trained on (compared by content hash; kept with `keep_seen`, and the
    note then says the numbers overstate). An EvaluationError, before any work, when too few
    are left to measure anything."""
    items, source = resolve_real(real, run)
    if max_real:
        items = items[:max_real]
    keys = training_keys(run)
    seen = [r for r in items if image_key(r.path.read_bytes()) in keys] if keys else []
    note = None
    if seen and len(seen) == len(items) and not keep_seen:
        raise EvaluationError(f"all {len(items)} held-out image(s) in {source} were in this run's training data, so "
                              "they say nothing about how well it generalises; hold out images the run did not train "
                              "on (Data → Organise → Hold out, then train again), or keep them with --keep-seen")
    if seen:
        note = (f"{len(seen)} of {len(items)} held-out images were in this run's training data: the numbers "
                "overstate how well it generalises")
        if keep_seen:
            note += " (kept with --keep-seen)."
        else:
            items = [r for r in items if r not in seen]
            note = note.replace("the numbers overstate", "numbers on them would overstate")
            note += f", so they are left out and {len(items)} are evaluated."
    captioned = sum(1 for r in items if r.text)
    if len(items) < MIN_REAL or captioned == 0:
        what = f"{len(items)} held-out image(s)" + (f", {captioned} with a caption" if items else "")
        raise EvaluationError(f"{source} has {what}: evaluation needs at least {MIN_REAL} captioned held-out images; "
                              "hold out more (Data → Organise → Hold out) or choose another split or folder")
    return items, source, note


# --- generation with a cache ----------------------------------------------------------------


def caption_plan(images: Sequence[RealImage], per_caption: int, seed: int) -> list[tuple[str, int, str]]:
    """(caption, seed, label) for k images per distinct caption, seeds fixed by position."""
    seen: dict[str, str] = {}
    for im in images:
        if im.text and im.text not in seen:
            seen[im.text] = im.label
    return [
        (text, seed + i * per_caption + j, label)
        for i, (text, label) in enumerate(seen.items())
        for j in range(per_caption)
    ]


def adapter_digest(run: str | Path) -> str:
    """SHA-256 over the run's adapter files: a changed adapter never hits an old cache entry."""
    from medart.lora import adapter_dirs

    h = hashlib.sha256()
    for name, folder in sorted(adapter_dirs(run).items()):
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            h.update(f"{name}/{path.relative_to(folder)}".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


class GeneratedImages:
    """Generated images cached as PNGs under a key of what determines their pixels."""

    def __init__(
        self,
        cache_dir: Path,
        base_model: str,
        run: Path,
        steps: int = 20,
        cfg: float = 4.5,
        size: int | None = None,
        batch_size: int = 4,
        progress: Progress | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        self.base_model = base_model
        self.run = Path(run)
        self.steps, self.cfg, self.size = steps, cfg, size
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self._generator = None
        self._digest: str | None = None
        self.generated = 0  # images generated (not from the cache) in this evaluation

    def digest(self) -> str:
        if self._digest is None:
            self._digest = adapter_digest(self.run)
        return self._digest

    def key(self, caption: str, seed: int, tuned: bool) -> str:
        spec = {
            "base_model": self.base_model,
            "adapter": self.digest() if tuned else None,
            "lora_scale": 1.0 if tuned else 0.0,
            "caption": caption,
            "seed": seed,
            "steps": self.steps,
            "cfg": self.cfg,
            "size": self.size,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def generator(self):
        if self._generator is None:
            from medart.generate import Generator

            self._generator = Generator(base_model=self.base_model, lora_path=self.run)
        return self._generator

    def images(self, plan: Sequence[tuple[str, int, str]], tuned: bool, stage: str) -> list[Image.Image]:
        paths = [self.cache_dir / f"{self.key(text, seed, tuned)}.png" for text, seed, _ in plan]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        total = len(plan)
        done = total - len(missing)
        if self.progress:
            self.progress(stage, done, total)
        bs = self.batch_size
        for start in range(0, len(missing), bs):
            chunk = missing[start : start + bs]
            made = self.generator().generate(
                [plan[i][0] for i in chunk],
                [plan[i][1] for i in chunk],
                steps=self.steps,
                cfg=self.cfg,
                size=self.size,
                lora_scale=1.0 if tuned else 0.0,
                batch_size=bs,
            )
            for i, image in zip(chunk, made):
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                atomic_write_bytes(paths[i], buf.getvalue())
            self.generated += len(chunk)
            done += len(chunk)
            if self.progress:
                self.progress(stage, done, total)
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
        return out


def floor_split(labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of two halves of the real set, alternating within each class so that both
    halves hold the same mix of classes (the real-vs-real floor)."""
    by_label: dict[str, list[int]] = {}
    for i, lbl in enumerate(labels):
        by_label.setdefault(lbl, []).append(i)
    a, b = [], []
    turn = 0
    for lbl in sorted(by_label):
        for i in by_label[lbl]:
            (a if turn % 2 == 0 else b).append(i)
            turn += 1
    return sorted(a), sorted(b)
