"""A compact image classifier for downstream classification and the domain Fréchet distance.

The paper judges synthetic images two more ways than FID/KID: a classifier trained on
synthetic images and tested on held-out real ones (against the same classifier trained on
real images), and a Fréchet distance in the penultimate features of a classifier trained on
the real images (KFD for Kvasir, HFD for skin lesions). Both use `DomainClassifier`: a
small CNN in plain torch (no torchvision, no pretrained weights) that trains on CPU in
seconds at small sizes and on a GPU at the real ones.

Public pieces: `ClassifierConfig`, `CompactCNN`, `DomainClassifier` (`fit`, `predict`,
`evaluate`, `features`, `save`, `load`), `classification_metrics`, `train_and_evaluate`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medart.color_stats import to_array
from medart.fileio import atomic_write_bytes, atomic_write_json


@dataclass
class ClassifierConfig:
    """Training settings of the compact classifier."""

    image_size: int = 64
    width: int = 32
    feature_dim: int = 128
    epochs: int = 20
    min_steps: int = 300  # small sets: more epochs until this many optimiser steps
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    flips: bool = True  # random horizontal and vertical flips while training
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CompactCNN(nn.Module):
    """Four conv blocks, global average pooling, a `feature_dim` penultimate layer, logits."""

    def __init__(self, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            _block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width), _block(4 * width, 4 * width)
        )
        self.embed_head = nn.Sequential(nn.Linear(4 * width, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N x feature_dim)."""
        h = self.body(x)
        return self.embed_head(h.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def images_to_tensor(images: Sequence, size: int) -> torch.Tensor:
    """Images (PIL or arrays) as float N x 3 x size x size, scaled to [-1, 1]."""
    from PIL import Image

    out = []
    for im in images:
        a = to_array(im)
        if a.shape[:2] != (size, size):
            pil = Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8))
            a = to_array(pil.resize((size, size), Image.BILINEAR))
        out.append(a)
    if not out:
        raise ValueError("no images given")
    t = torch.from_numpy(np.stack(out).astype(np.float32)).permute(0, 3, 1, 2)
    return t * 2 - 1


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (mean of per-class F1 over classes present in `y_true`), per-class
    recall, precision and F1 (None for a class without test images), and the confusion matrix
    (rows: true class, columns: predicted class)."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    recall, precision, f1 = {}, {}, {}
    present = []
    for i, name in enumerate(classes):
        support = confusion[i].sum()
        predicted = confusion[:, i].sum()
        tp = confusion[i, i]
        if support == 0:
            recall[name] = precision[name] = f1[name] = None
            continue
        present.append(name)
        r = tp / support
        p = tp / predicted if predicted else 0.0
        recall[name] = float(r)
        precision[name] = float(p)
        f1[name] = float(2 * p * r / (p + r)) if p + r > 0 else 0.0
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(np.mean([f1[c] for c in present])),
        "per_class_recall": recall,
        "per_class_precision": precision,
        "per_class_f1": f1,
        "confusion": confusion.tolist(),
        "classes": list(classes),
        "n": int(y_true.size),
    }


class DomainClassifier:
    """A `CompactCNN` with its class names and input size: train, predict, evaluate, embed."""

    def __init__(self, classes: Sequence[str], config: ClassifierConfig | None = None):
        self.classes = list(classes)
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes; got {self.classes}")
        self.config = config or ClassifierConfig()
        self.model = CompactCNN(len(self.classes), self.config.width, self.config.feature_dim)
        self.model.to(self.config.device)
        self.history: list[dict] = []

    # --- training -----------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: Sequence,
        labels: Sequence[str],
        config: ClassifierConfig | None = None,
        classes: Sequence[str] | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> "DomainClassifier":
        """Train a new classifier on images with string labels.

        `classes` fixes the class order (default: sorted labels); `progress(epoch, epochs,
        mean_loss)` is called after every epoch.
        """
        config = config or ClassifierConfig()
        classes = list(classes) if classes is not None else sorted(set(labels))
        unknown = set(labels) - set(classes)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not among the classes {classes}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        x = images_to_tensor(images, config.image_size)
        y = torch.tensor([classes.index(lbl) for lbl in labels], dtype=torch.long)
        # same seed, same weights and dropout masks; the caller's random state is left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            clf = cls(classes, config)
            clf._train(x, y, progress)
        return clf

    def _train(self, x: torch.Tensor, y: torch.Tensor, progress=None) -> None:
        cfg = self.config
        device = torch.device(cfg.device)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        steps_per_epoch = len(self._batches(len(x)))
        epochs = max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=epochs * steps_per_epoch)
        self.model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            losses = []
            for start, stop in self._batches(len(x)):
                idx = order[start:stop]
                xb, yb = x[idx], y[idx]
                if cfg.flips:
                    flip_h = torch.rand(len(idx), generator=gen) < 0.5
                    flip_v = torch.rand(len(idx), generator=gen) < 0.5
                    xb = torch.where(flip_h[:, None, None, None], xb.flip(3), xb)
                    xb = torch.where(flip_v[:, None, None, None], xb.flip(2), xb)
                xb, yb = xb.to(device), yb.to(device)
                loss = F.cross_entropy(self.model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            mean_loss = float(np.mean(losses)) if losses else float("nan")
            self.history.append({"epoch": epoch + 1, "loss": mean_loss})
            if progress is not None:
                progress(epoch + 1, epochs, mean_loss)
        self.model.eval()

    def _batches(self, n: int) -> list[tuple[int, int]]:
        """(start, stop) of each training batch; a last batch of one joins the previous one
        (BatchNorm needs two samples)."""
        bs = max(2, self.config.batch_size)
        bounds = [(s, min(s + bs, n)) for s in range(0, n, bs)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    # --- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def _batched(self, images: Sequence, fn) -> torch.Tensor:
        self.model.eval()
        device = torch.device(self.config.device)
        out = []
        bs = max(1, self.config.batch_size)
        for start in range(0, len(images), bs):
            x = images_to_tensor(images[start : start + bs], self.config.image_size).to(device)
            out.append(fn(x).float().cpu())
        if not out:
            raise ValueError("no images given")
        return torch.cat(out)

    def predict_indices(self, images: Sequence) -> np.ndarray:
        return self._batched(list(images), self.model).argmax(dim=1).numpy()

    def predict(self, images: Sequence) -> list[str]:
        return [self.classes[i] for i in self.predict_indices(images)]

    def evaluate(self, images: Sequence, labels: Sequence[str]) -> dict:
        """`classification_metrics` of this classifier on labelled images."""
        unknown = set(labels) - set(self.classes)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not among the classes {self.classes}")
        y_true = [self.classes.index(lbl) for lbl in labels]
        return classification_metrics(y_true, self.predict_indices(images), self.classes)

    def features(self, images: Sequence) -> torch.Tensor:
        """Penultimate features (N x feature_dim, float64): the space of the domain Fréchet distance."""
        return self._batched(list(images), self.model.embed).double()

    # --- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write `classifier.safetensors` and `classifier.json` into `folder`."""
        from safetensors.torch import save as save_tensors

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write_bytes(folder / "classifier.safetensors", save_tensors(state))
        meta = {"classes": self.classes, "config": asdict(self.config), "history": self.history}
        meta["config"].pop("device", None)
        atomic_write_json(folder / "classifier.json", meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> "DomainClassifier":
        """A classifier saved by `save` (a user-given checkpoint folder)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
        if not meta_path.is_file() or not weights.is_file():
            raise FileNotFoundError(
                f"{folder} is not a classifier checkpoint: expected classifier.json and classifier.safetensors"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = ClassifierConfig(**meta["config"])
        if device is not None:
            config.device = device
        clf = cls(meta["classes"], config)
        clf.model.load_state_dict(load_file(str(weights), device=config.device))
        clf.model.eval()
        clf.history = meta.get("history", [])
        return clf


def train_and_evaluate(
    train_images: Sequence,
    train_labels: Sequence[str],
    test_images: Sequence,
    test_labels: Sequence[str],
    config: ClassifierConfig | None = None,
    classes: Sequence[str] | None = None,
    progress=None,
) -> tuple[DomainClassifier, dict]:
    """Train on one set, test on another (e.g. synthetic -> held-out real); (classifier, metrics)."""
    classes = list(classes) if classes is not None else sorted(set(train_labels) | set(test_labels))
    clf = DomainClassifier.fit(train_images, train_labels, config, classes=classes, progress=progress)
    return clf, clf.evaluate(test_images, test_labels)
