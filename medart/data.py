"""Training data: an HF imagefolder or `load_dataset` id, checked up front, served deterministically.

Checks run before any training: every image must decode, every caption must exist and fit
the base model's 120-token limit; all problems are reported at once, each with its file.
Batches are a pure function of (seed, epoch, position), so a resumed run sees exactly the
images an uninterrupted run would have seen. With `buckets` on, images keep (about) their
shape: each trains at its aspect-ratio bucket (`medart.buckets`) and every batch comes from
one bucket, in an order that is again a pure function of (seed, epoch).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medart import buckets
from medart.config import TrainConfig
from medart.constants import IMAGE_SUFFIXES, MAX_CAPTION_TOKENS, MAX_CAPTION_TOKENS_SIGMA
from medart.image_container import check_container
from medart.pixel_limit import pixel_limit

# folders of held-out images that an imagefolder may hold beside its images: not training data
OTHER_SPLITS = {"test", "testing", "eval", "validation", "valid", "val", "dev"}


def image_key(data: bytes) -> str:
    """An image's key, as the run's data.json records it: the first 20 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:20]


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


def looks_like_path(source: str) -> bool:
    """Whether `source` names a place on this machine rather than a hub dataset (owner/name): it
    is not of the hub's form, or its first part is a folder here (`exports/train` beside an
    `exports/` folder)."""
    from medart.profiles import looks_like_hub_id

    if not looks_like_hub_id(source) or source.endswith("/"):
        return True
    return Path(source.split("/", 1)[0]).expanduser().is_dir()


def check_source(source: str) -> None:
    """Refuse at once a training data source that names a folder this machine does not have, so
    that a mistyped path is never looked up on the hub, and a hub id when the hub cannot be
    reached within the base models' probe time."""
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise DataError(f"{source} is a file; --data takes an imagefolder directory or a dataset id.")
    if looks_like_path(source):
        raise DataError(f"no such folder: {source} (give an imagefolder directory, e.g. one made by "
                        "`medart export`, or a hub dataset id owner/name)")
    from medart.profiles import hub_reachable

    if not hub_reachable():  # at most ~3 s, and none with HF_HUB_OFFLINE: never datasets' minute of retries
        raise DataError(f"no such folder here: {source} (and no hub dataset of that name could be reached; give "
                        "an imagefolder directory, e.g. one made by `medart export`)")


def _load_dataset(source: str):
    import datasets
    from datasets.data_files import EmptyDatasetError

    path = Path(source).expanduser()
    check_source(source)
    try:
        if path.is_dir():
            return load_local_imagefolder(path)
        return datasets.load_dataset(source, split="train")
    except DataError:
        raise
    except EmptyDatasetError:
        raise DataError(f"No images found in {source!r}. Add images and a metadata.jsonl with captions.") from None
    except Exception as e:  # datasets raises many types for a missing or malformed source
        raise DataError(
            f"Could not load training data from {source!r} (no such folder here, so it was taken for a hub "
            f"dataset id): {e}. Give an imagefolder (images plus "
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


def image_sizes(config: TrainConfig) -> list[tuple[int, int]]:
    """(width, height) of every training image, read from the file headers (nothing decoded):
    what preflight sorts into aspect-ratio buckets. Unreadable images are left out here
    (training reports them)."""
    import datasets

    ds = _load_dataset(config.data)
    if config.image_column not in ds.column_names:
        raise DataError(f"No image column {config.image_column!r} in {config.data!r} (columns: {ds.column_names}).")
    found = []
    for image in ds.cast_column(config.image_column, datasets.Image(decode=False))[config.image_column]:
        source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image.get("path")
        try:
            with pixel_limit(), Image.open(source) as im:
                found.append(im.size)
        except Exception:
            continue
    return found


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
            check_container(data)  # tags, tiles and scans bounded before Pillow reads them
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
        examples.append(Example(name, data, str(caption).strip(), image_key(data), size, label))
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
    multi-GPU run takes every world-th example of it.

    With `config.buckets` each example trains at its bucket's size (`size_of`); an epoch
    shuffles each bucket's examples, cuts them into whole batches of batch x world (a bucket's
    remainder sits the epoch out) and shuffles the batches, all drawn from (seed, epoch); each
    process takes its batch_size share of a batch, so all processes train on one bucket at a
    time. `multiple`: what bucket sides must be a multiple of (`buckets.size_multiple`)."""

    def __init__(self, examples: list[Example], config: TrainConfig, resolution: int, rank: int = 0, world: int = 1,
                 multiple: int = buckets.PIXART_MULTIPLE):
        self.examples = examples
        self.config = config
        self.resolution = resolution
        self.rank, self.world = rank, world
        self.steps_per_epoch = max(1, len(examples) // (config.batch_size * world))
        self.buckets: dict[tuple[int, int], list[int]] = {}  # (width, height) -> example indices
        self._bucket_of: dict[tuple[int, int], tuple[int, int]] = {}  # image size -> bucket
        self._epoch: tuple[int, list[list[int]]] | None = None
        if config.buckets:
            sizes = buckets.bucket_sizes(resolution, multiple)
            for i, ex in enumerate(examples):
                if ex.size not in self._bucket_of:
                    self._bucket_of[ex.size] = buckets.nearest(ex.size, sizes)
                self.buckets.setdefault(self._bucket_of[ex.size], []).append(i)
            self.buckets = {s: self.buckets[s] for s in sizes if s in self.buckets}  # widest first
            per = config.batch_size * world
            self.steps_per_epoch = sum(len(idx) // per for idx in self.buckets.values())
            if self.steps_per_epoch == 0:
                raise DataError(
                    f"No aspect-ratio bucket holds a whole batch of {per} image(s) "
                    f"({buckets.summary(self.bucket_counts(), config.batch_size, world)}); lower --batch-size or "
                    "train without --buckets.")

    def bucket_counts(self) -> dict[tuple[int, int], int]:
        """Images per bucket (empty without buckets)."""
        return {s: len(idx) for s, idx in self.buckets.items()}

    def size_of(self, ex: Example) -> tuple[int, int]:
        """(width, height) the example trains at: its bucket, else the square resolution."""
        if not self.config.buckets:
            return self.resolution, self.resolution
        return self._bucket_of[ex.size]

    def cache_tag(self, ex: Example) -> str:
        """What, beside the image, its cached latents depend on: the resolution or the bucket."""
        return buckets.name(self.size_of(ex)) if self.config.buckets else str(self.resolution)

    def dominant_size(self, groups: list[str]) -> tuple[int, int]:
        """The bucket holding most images of `groups` (classes); a tie goes to the squarer."""
        held: dict[tuple[int, int], int] = {}
        for group, idx in self.groups().items():
            if group in groups:
                for i in idx:
                    size = self.size_of(self.examples[i])
                    held[size] = held.get(size, 0) + 1
        return max(held, key=lambda s: (held[s], -abs(s[0] - s[1])))

    def groups(self) -> dict[str, list[int]]:
        """Indices of the examples of each colour group (class), groups in sorted order."""
        found: dict[str, list[int]] = {}
        for i, ex in enumerate(self.examples):
            found.setdefault(ex.group, []).append(i)
        return dict(sorted(found.items()))

    def full_view(self, ex: Example) -> torch.Tensor:
        """The whole image resized to the training resolution (no crop; with buckets, to its
        bucket's size): what a class's colour statistics are measured on. (3, H, W) in [-1, 1]."""
        with pixel_limit(), Image.open(io.BytesIO(ex.data)) as im:
            im = im.convert("RGB").resize(self.size_of(ex), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    def deterministic(self, ex: Example) -> bool:
        """Whether the example always gives the same pixels (so its VAE latents may be cached)."""
        if self.config.random_flip:
            return False
        if self.config.buckets:
            return self.config.center_crop or _cover(ex.size, self.size_of(ex)) == self.size_of(ex)
        return self.config.center_crop or ex.size[0] == ex.size[1]

    def pixels(self, ex: Example, epoch: int, index: int) -> torch.Tensor:
        """Resize to cover the training size (the resolution's square, or the example's
        bucket), crop to it (random unless center_crop), maybe flip; (3, H, W) in [-1, 1]."""
        w, h = self.size_of(ex)
        with pixel_limit(), Image.open(io.BytesIO(ex.data)) as im:
            im = im.convert("RGB")
            im = im.resize(_cover(im.size, (w, h)), Image.BICUBIC)
        gen = _generator(self.config.seed, epoch, index)
        if self.config.center_crop:
            left, top = (im.width - w) // 2, (im.height - h) // 2
        else:
            left = int(torch.randint(0, im.width - w + 1, (1,), generator=gen))
            top = int(torch.randint(0, im.height - h + 1, (1,), generator=gen))
        im = im.crop((left, top, left + w, top + h))
        if self.config.random_flip and torch.rand(1, generator=gen).item() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
        return arr.permute(2, 0, 1)

    def batch(self, step: int) -> tuple[list[Example], torch.Tensor, int]:
        """Examples, pixels and epoch of the 0-based optimiser step `step` for this process."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        bs = self.config.batch_size
        if self.config.buckets:
            idx = self.bucket_batches(epoch)[pos][self.rank * bs:(self.rank + 1) * bs]
        else:
            order = torch.randperm(len(self.examples), generator=_generator(self.config.seed, epoch)).tolist()
            start = (pos * self.world + self.rank) * bs
            idx = order[start:start + bs]
        exs = [self.examples[i] for i in idx]
        pixels = torch.stack([self.pixels(ex, epoch, i) for ex, i in zip(exs, idx)])
        return exs, pixels, epoch

    def bucket_batches(self, epoch: int) -> list[list[int]]:
        """Epoch `epoch`'s batches of batch x world example indices, each from one bucket."""
        if self._epoch is None or self._epoch[0] != epoch:
            per, seed, batches = self.config.batch_size * self.world, self.config.seed, []
            for k, idx in enumerate(self.buckets.values()):  # the tags (-1, k), (-2) keep these draws apart
                perm = torch.randperm(len(idx), generator=_generator(seed, epoch, -1, k)).tolist()
                batches += [[idx[j] for j in perm[b:b + per]] for b in range(0, len(idx) - per + 1, per)]
            order = torch.randperm(len(batches), generator=_generator(seed, epoch, -2)).tolist()
            self._epoch = (epoch, [batches[j] for j in order])
        return self._epoch[1]


def _cover(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The size an image of `size` is resized to so that it covers `target` (aspect kept)."""
    (w, h), (tw, th) = size, target
    scale = max(tw / w, th / h)
    return max(tw, round(w * scale)), max(th, round(h * scale))
