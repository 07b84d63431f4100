"""Training data: an HF imagefolder or `load_dataset` id, checked up front, served deterministically.

Checks run before any training: every image must decode, every caption must exist and fit
the base model's 120-token limit; all problems are reported at once, each with its file.
Batches are a pure function of (seed, epoch, position), so a resumed run sees exactly the
images an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medart.config import TrainConfig
from medart.constants import IMAGE_SUFFIXES, MAX_CAPTION_TOKENS, MAX_CAPTION_TOKENS_SIGMA
from medart.pixel_limit import pixel_limit

# folders of held-out images that an imagefolder may hold beside its images: not training data
OTHER_SPLITS = {"test", "testing", "eval", "validation", "valid", "val", "dev"}


class DataError(ValueError):
    """The training data cannot be used; the message lists every problem and what to do."""


@dataclass
class Example:
    name: str
    data: bytes
    caption: str
    key: str  # content hash of the image bytes
    size: tuple[int, int]  # (width, height) in pixels
    label: str = ""  # the image's class, when the data has a label column

    @property
    def group(self) -> str:
        """The colour group: the class label, or the caption where there is none."""
        return self.label or self.caption


def load_local_imagefolder(folder: str | Path, split: str = "train"):
    """`datasets.load_dataset("imagefolder")` of a folder on this machine, without the progress
    bars datasets labels "Downloading" and "Generating" for files that are only read here."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset("imagefolder", data_dir=str(folder), split=split)
    finally:
        if was:
            datasets.enable_progress_bars()


def _load_dataset(source: str):
    import datasets
    from datasets.data_files import EmptyDatasetError

    path = Path(source).expanduser()
    try:
        if path.is_dir():
            return load_local_imagefolder(path)
        if path.exists():
            raise DataError(f"{path} is a file; --data takes an imagefolder directory or a dataset id.")
        return datasets.load_dataset(source, split="train")
    except DataError:
        raise
    except EmptyDatasetError:
        raise DataError(f"No images found in {source!r}. Add images and a metadata.jsonl with captions.") from None
    except Exception as e:  # datasets raises many types for a missing or malformed source
        raise DataError(
            f"Could not load training data from {source!r}: {e}. Give an imagefolder (images plus "
            "metadata.jsonl with `file_name` and `text`) or a Hugging Face dataset id."
        ) from e


def count_examples(config: TrainConfig) -> tuple[int, list[str]]:
    """How many training rows the data has, and its classes (labels; captions where there is
    no label column), without decoding any image: the numbers preflight plans with."""
    ds = _load_dataset(config.data)
    captions = ds[config.caption_column] if config.caption_column in ds.column_names else [""] * len(ds)
    labels = ds[config.label_column] if config.label_column in ds.column_names else [""] * len(ds)
    groups = sorted({str(label or "").strip() or str(caption or "").strip() for label, caption in zip(labels, captions)})
    return len(ds), groups


def load_examples(config: TrainConfig, tokenizer) -> list[Example]:
    """Read and check every example; raises DataError listing all problems."""
    import datasets

    ds = _load_dataset(config.data)
    if len(ds) == 0:
        raise DataError(f"No images found in {config.data!r}. Add images and a metadata.jsonl with captions.")
    if config.caption_column not in ds.column_names:
        raise DataError(
            f"No caption column {config.caption_column!r} in {config.data!r} (columns: {ds.column_names}). "
            "An imagefolder needs a metadata.jsonl (or metadata.csv) with `file_name` and `text` for every image."
        )
    if config.image_column not in ds.column_names:
        raise DataError(f"No image column {config.image_column!r} in {config.data!r} (columns: {ds.column_names}).")
    ds = ds.cast_column(config.image_column, datasets.Image(decode=False))
    has_label = config.label_column in ds.column_names
    examples, problems = [], []
    limit = config.max_caption_tokens or MAX_CAPTION_TOKENS
    longer = (f" (PixArt-α reads {MAX_CAPTION_TOKENS} T5 tokens; a PixArt-Σ base, --base-model pixart-sigma-512, "
              f"reads {MAX_CAPTION_TOKENS_SIGMA})" if limit == MAX_CAPTION_TOKENS else "")
    folder = Path(config.data).expanduser()
    if folder.is_dir():  # imagefolder silently skips images that have no metadata row
        listed = {Path(im["path"]).resolve() for im in ds[config.image_column] if im.get("path")}
        root = folder / "train" if (folder / "train").is_dir() else folder
        for path in sorted(root.rglob("*")):
            if root == folder and path.relative_to(folder).parts[0] in OTHER_SPLITS:
                continue  # held-out images beside the training split
            if path.suffix.lower() in IMAGE_SUFFIXES and path.resolve() not in listed:
                problems.append(f"{path.name}: missing caption (no row in metadata.jsonl/metadata.csv)")
    for i, row in enumerate(ds):
        image = row[config.image_column]
        name = Path(image.get("path") or f"row {i}").name
        data = image.get("bytes")
        if data is None and image.get("path"):
            data = Path(image["path"]).read_bytes()
        caption = row[config.caption_column]
        if not caption or not str(caption).strip():
            problems.append(f"{name}: missing caption")
            continue
        try:
            with pixel_limit(), Image.open(io.BytesIO(data)) as im:  # decompression bombs are refused
                im.load()
                size = im.size
        except Exception as e:
            problems.append(f"{name}: unreadable image ({type(e).__name__}: {e})")
            continue
        n_tokens = len(tokenizer(str(caption)).input_ids)
        if n_tokens > limit:
            problems.append(f"{name}: caption has {n_tokens} tokens, over the limit of {limit}; shorten it{longer}")
            continue
        label = str(row[config.label_column] or "").strip() if has_label else ""
        examples.append(Example(name, data, str(caption).strip(), hashlib.sha256(data).hexdigest()[:20], size, label))
    examples.sort(key=lambda ex: (ex.name, ex.key))  # a stable order, whatever the loader's
    if problems:
        shown = "\n  ".join(problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise DataError(f"{len(problems)} problem(s) in the training data {config.data!r}:\n  {shown}{more}")
    return examples


def _generator(*parts: int) -> torch.Generator:
    seed = int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(seed)


class TrainData:
    """Deterministic batches: epoch e is a permutation drawn from (seed, e); each process of a
    multi-GPU run takes every world-th example of it."""

    def __init__(self, examples: list[Example], config: TrainConfig, resolution: int, rank: int = 0, world: int = 1):
        self.examples = examples
        self.config = config
        self.resolution = resolution
        self.rank, self.world = rank, world
        self.steps_per_epoch = max(1, len(examples) // (config.batch_size * world))

    def groups(self) -> dict[str, list[int]]:
        """Indices of the examples of each colour group (class), groups in sorted order."""
        found: dict[str, list[int]] = {}
        for i, ex in enumerate(self.examples):
            found.setdefault(ex.group, []).append(i)
        return dict(sorted(found.items()))

    def full_view(self, ex: Example) -> torch.Tensor:
        """The whole image resized to the training resolution (no crop): what a class's colour
        statistics are measured on. (3, R, R) in [-1, 1]."""
        r = self.resolution
        with pixel_limit(), Image.open(io.BytesIO(ex.data)) as im:
            im = im.convert("RGB").resize((r, r), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    def deterministic(self, ex: Example) -> bool:
        """Whether the example always gives the same pixels (so its VAE latents may be cached)."""
        if self.config.random_flip:
            return False
        return self.config.center_crop or ex.size[0] == ex.size[1]

    def pixels(self, ex: Example, epoch: int, index: int) -> torch.Tensor:
        """Resize the short side to the resolution, crop (random unless center_crop), maybe flip;
        (3, R, R) in [-1, 1]."""
        r = self.resolution
        with pixel_limit(), Image.open(io.BytesIO(ex.data)) as im:
            im = im.convert("RGB")
            scale = r / min(im.size)
            size = (max(r, round(im.width * scale)), max(r, round(im.height * scale)))
            im = im.resize(size, Image.BICUBIC)
        gen = _generator(self.config.seed, epoch, index)
        if self.config.center_crop:
            left, top = (im.width - r) // 2, (im.height - r) // 2
        else:
            left = int(torch.randint(0, im.width - r + 1, (1,), generator=gen))
            top = int(torch.randint(0, im.height - r + 1, (1,), generator=gen))
        im = im.crop((left, top, left + r, top + r))
        if self.config.random_flip and torch.rand(1, generator=gen).item() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
        return arr.permute(2, 0, 1)

    def batch(self, step: int) -> tuple[list[Example], torch.Tensor, int]:
        """Examples, pixels and epoch of the 0-based optimiser step `step` for this process."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = torch.randperm(len(self.examples), generator=_generator(self.config.seed, epoch)).tolist()
        bs = self.config.batch_size
        start = (pos * self.world + self.rank) * bs
        idx = order[start:start + bs]
        exs = [self.examples[i] for i in idx]
        pixels = torch.stack([self.pixels(ex, epoch, i) for ex, i in zip(exs, idx)])
        return exs, pixels, epoch
