"""FID, KID and the Fréchet distance on a small deterministic feature extractor (fast, CPU)."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from medart.evaluation.metrics import (
    MetricsError,
    extract_features,
    fid,
    frechet_distance,
    images_to_uint8,
    kid,
    kid_from_features,
    kid_subset_size,
)

torch.set_num_threads(1)


class TinyFeatures(nn.Module):
    """A fixed, seeded conv net plus per-channel mean and std: 14-d features of uint8 images."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.zero_()
        self.num_features = 14

    def forward(self, x):
        x = x.float() / 255
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return torch.cat([h, x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def textures(n=40, size=16, seed=0):
    """n random uint8 textures: a random base colour plus pixel noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 160, size=(n, 1, 1, 3))
    noise = rng.normal(0, 25, size=(n, size, size, 3))
    return [np.clip(b + z, 0, 255).astype(np.uint8) for b, z in zip(base, noise)]


def red_shift(images, delta):
    out = []
    for im in images:
        a = im.astype(np.int16)
        a[..., 0] += delta
        out.append(np.clip(a, 0, 255).astype(np.uint8))
    return out


DELTAS = [0, 10, 25, 50, 100]


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_colour_shift():
    feature = TinyFeatures()
    real = textures()
    real_f = extract_features(real, feature)
    values = [frechet_distance(real_f, extract_features(red_shift(real, d), feature)) for d in DELTAS]
    assert abs(values[0]) < 1e-9
    assert values[1] > 1e-4
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_kid_of_a_set_against_itself_is_near_zero_and_grows_with_colour_shift():
    feature = TinyFeatures()
    real = textures()
    real_f = extract_features(real, feature)
    means = [
        kid_from_features(real_f, extract_features(red_shift(real, d), feature), subsets=20, subset_size=40)[0]
        for d in DELTAS
    ]
    # The unbiased MMD^2 of a set with itself is slightly negative (order 1/n, see below).
    assert abs(means[0]) < 0.02 * means[-1]
    assert all(b > a for a, b in zip(means, means[1:])), means


def test_kid_of_a_set_against_itself_is_the_small_negative_unbiased_offset():
    # With x on both sides: MMD^2 = -2/m * (mean diagonal kernel - mean off-diagonal kernel).
    x = extract_features(textures(12, seed=2), TinyFeatures()).numpy()
    m, d = x.shape
    kern = (x @ x.T / d + 1.0) ** 3
    offdiag = (kern.sum() - np.trace(kern)) / (m * (m - 1))
    expected = -2.0 / m * (np.trace(kern) / m - offdiag)
    mean, _ = kid_from_features(x, x, subsets=3, subset_size=m)
    assert mean == pytest.approx(expected, rel=1e-9)
    assert abs(mean) < 0.01


def test_fid_and_kid_wrappers_take_images_and_an_injected_extractor():
    feature = TinyFeatures()
    real = textures(20, seed=1)
    shifted = red_shift(real, 40)
    assert fid(real, real, feature=feature) == pytest.approx(0.0, abs=1e-9)
    assert fid(real, shifted, feature=feature) > 1e-3
    k_same, _ = kid(real, real, feature=feature, subsets=5, subset_size=20)
    k_shift, _ = kid(real, shifted, feature=feature, subsets=5, subset_size=20)
    assert k_shift > k_same + 1e-4


def test_frechet_distance_by_hand_in_one_dimension():
    # a: mean 1, var 2 (N-1); b: mean 5, var 4 -> (1-5)^2 + (sqrt2 - 2)^2
    a = np.array([[0.0], [2.0]])
    b = np.array([[3.0], [5.0], [7.0]])
    assert frechet_distance(a, b) == pytest.approx(16 + (math.sqrt(2) - 2) ** 2, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_by_hand_diagonal_gaussians():
    # Independent columns: FD = sum over dims of (mu diff)^2 + (sd_a - sd_b)^2
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    a[:, 1] = [2.0, 2.0, -2.0, -2.0]
    b = a * np.array([3.0, 1.0]) + np.array([0.5, -1.0])
    sd_a = np.sqrt(4 / 3)  # column 0 of a: +-1, N-1 = 3
    sd_a1 = np.sqrt(16 / 3)
    expected = 0.5**2 + (sd_a - 3 * sd_a) ** 2 + 1.0 + 0.0 * sd_a1
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_kid_equals_unbiased_polynomial_mmd_by_hand():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 3))
    y = rng.normal(loc=0.5, size=(6, 3))
    d = x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1.0) ** 3

    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    # one subset of the whole set: the permutation does not change the value
    mean, std = kid_from_features(x, y, subsets=1, subset_size=6)
    assert mean == pytest.approx(mmd, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_subset_size_adapts_to_small_sets_with_a_warning():
    with pytest.warns(UserWarning, match=r"KID compares random subsets of 7 images \(usually 1000\): there are "
                                         "only 7 real and 12 generated images"):
        assert kid_subset_size(7, 12) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kid_subset_size(50, 60, subset_size=40) == 40
    with pytest.raises(MetricsError):
        kid_subset_size(1, 10)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(11, 4))
    with pytest.warns(UserWarning, match="subsets of 9 images"):
        first = kid_from_features(x, y, subsets=10, seed=1)
    with pytest.warns(UserWarning):
        again = kid_from_features(x, y, subsets=10, seed=1)
    assert first == again  # fixed seed: same subsets, same numbers


def test_fid_needs_two_samples_per_side():
    with pytest.raises(MetricsError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(MetricsError):
        frechet_distance(np.zeros((5, 3)), np.zeros((1, 3)))


def test_images_to_uint8_layout_and_sizes():
    a = np.zeros((4, 5, 3), dtype=np.uint8)
    a[0, 1] = (10, 20, 30)
    t = images_to_uint8([a, a])
    assert t.dtype == torch.uint8 and tuple(t.shape) == (2, 3, 4, 5)
    assert t[0, :, 0, 1].tolist() == [10, 20, 30]
    with pytest.raises(ValueError):
        images_to_uint8([a, np.zeros((6, 6, 3), dtype=np.uint8)])
    assert tuple(images_to_uint8([a, np.zeros((6, 6, 3), dtype=np.uint8)], size=8).shape) == (2, 3, 8, 8)


def test_extract_features_batches_by_size_and_reports_progress():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x.float().mean(dim=(2, 3))

    ims = [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(5)] + [np.zeros((6, 6, 3), dtype=np.uint8)]
    progress = []
    f = extract_features(ims, Recorder(), batch_size=2, progress=lambda d, t: progress.append((d, t)))
    assert seen == [(2, 3, 4, 4), (2, 3, 4, 4), (1, 3, 4, 4), (1, 3, 6, 6)]
    assert f.dtype == torch.float64 and tuple(f.shape) == (6, 3)
    assert f[:, 0].tolist() == [0, 1, 2, 3, 4, 0]
    assert progress[-1] == (6, 6)


def test_fid_and_kid_equal_torchmetrics_used_directly_with_the_same_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real = textures(12, seed=6)
    fake = red_shift(textures(12, seed=7), 30)
    fid_tm = FrechetInceptionDistance(feature=TinyFeatures())
    with pytest.warns(UserWarning, match="save all extracted features"):
        kid_tm = KernelInceptionDistance(feature=TinyFeatures(), subsets=1, subset_size=12)
    for metric in (fid_tm, kid_tm):
        metric.update(images_to_uint8(real), real=True)
        metric.update(images_to_uint8(fake), real=False)
    assert fid(real, fake, feature=TinyFeatures()) == pytest.approx(float(fid_tm.compute()), rel=1e-5)
    ours, _ = kid(real, fake, feature=TinyFeatures(), subsets=1, subset_size=12)
    assert ours == pytest.approx(float(kid_tm.compute()[0]), rel=1e-4)  # torchmetrics here: float32 features


def test_extract_features_takes_a_uint8_tensor_too():
    ims = textures(5, seed=8)
    feature = TinyFeatures()
    from_list = extract_features(ims, feature, batch_size=2)
    from_tensor = extract_features(images_to_uint8(ims), feature, batch_size=3)
    torch.testing.assert_close(from_list, from_tensor)


def test_diversity_of_identical_sets_is_one_and_scales_with_spread():
    from medart.evaluation.metrics import diversity, mean_pairwise_distance

    feats = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 0.0]])
    assert mean_pairwise_distance(feats) == pytest.approx((5 + 6 + 5) / 3)
    assert diversity(feats, feats.copy()) == pytest.approx(1.0)
    assert diversity(2 * feats + 7, feats) == pytest.approx(2.0)  # twice as spread, shifted: twice as varied
    collapsed = np.repeat(feats[:1], 4, axis=0)
    assert diversity(collapsed, feats) == 0.0
    with pytest.raises(MetricsError, match="at least 2"):
        mean_pairwise_distance(feats[:1])
    with pytest.raises(MetricsError, match="all alike"):
        diversity(feats, collapsed)
