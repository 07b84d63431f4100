"""Colour statistics equal hand computations on small known images."""

import math

import numpy as np
import pytest
from PIL import Image

from medart.color_stats import (
    STAT_KEYS,
    channel_histograms,
    color_distance,
    image_stats,
    set_stats,
    to_array,
)


def uniform(r, g, b, size=(3, 2)):
    arr = np.empty(size + (3,), dtype=np.float64)
    arr[...] = (r, g, b)
    return arr


# A 1x2 image: one pure red pixel and one pure blue pixel.
RED_BLUE = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)


def test_to_array_scales_uint8_and_keeps_float():
    a = to_array(np.array([[[0, 51, 255]]], dtype=np.uint8))
    assert a.dtype == np.float64 and a.shape == (1, 1, 3)
    np.testing.assert_allclose(a[0, 0], [0.0, 0.2, 1.0])
    f = to_array(np.array([[[0.1, 0.2, 0.3]]], dtype=np.float32))
    np.testing.assert_allclose(f[0, 0], [0.1, 0.2, 0.3], rtol=1e-6)


def test_to_array_grayscale_becomes_three_equal_channels():
    gray = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    for src in (gray, gray[:, :, None], Image.fromarray(gray, mode="L")):
        a = to_array(src)
        assert a.shape == (2, 2, 3)
        for c in range(3):
            np.testing.assert_allclose(a[:, :, c], gray / 255.0)


def test_to_array_drops_alpha():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    for src in (rgba, Image.fromarray(rgba, mode="RGBA")):
        a = to_array(src)
        assert a.shape == (1, 2, 3)
        np.testing.assert_allclose(a * 255, rgba[:, :, :3])


def test_to_array_rejects_bad_shapes():
    with pytest.raises(ValueError):
        to_array(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError):
        to_array(np.zeros((2, 2, 3), dtype=np.int32))


def test_image_stats_red_blue_by_hand():
    s = image_stats(RED_BLUE)
    assert set(s) == set(STAT_KEYS)
    # R = (1, 0), G = (0, 0), B = (0, 1): mean 0.5 / 0 / 0.5, population std 0.5 / 0 / 0.5.
    assert s["mean_r"] == pytest.approx(0.5)
    assert s["mean_g"] == pytest.approx(0.0)
    assert s["mean_b"] == pytest.approx(0.5)
    assert s["std_r"] == pytest.approx(0.5)
    assert s["std_g"] == pytest.approx(0.0)
    assert s["std_b"] == pytest.approx(0.5)
    # Both pixels fully saturated.
    assert s["saturation"] == pytest.approx(1.0)
    # 0..255: rg = (255, 0), yb = (127.5, -255)
    # mean rg 127.5, std rg 127.5; mean yb -63.75, std yb 191.25.
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)
    assert s["colourfulness"] == pytest.approx(expected)
    assert s["colourfulness"] == pytest.approx(272.618, abs=1e-3)


def test_image_stats_pil_equals_array():
    a = image_stats(RED_BLUE)
    b = image_stats(Image.fromarray(RED_BLUE))
    for k in STAT_KEYS:
        assert a[k] == pytest.approx(b[k])


def test_saturation_by_hand():
    # pixels: gray (0), black (0 by convention), orange (1, .5, 0) -> 1, (.5, .25, .25) -> .5
    arr = np.array([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.5, 0.25, 0.25]]])
    assert image_stats(arr)["saturation"] == pytest.approx((0 + 0 + 1 + 0.5) / 4)


def test_gray_image_has_zero_colourfulness_and_saturation():
    s = image_stats(uniform(0.3, 0.3, 0.3))
    assert s["colourfulness"] == pytest.approx(0.0, abs=1e-12)
    assert s["saturation"] == pytest.approx(0.0)
    assert s["std_r"] == pytest.approx(0.0)


def test_uniform_colour_colourfulness_is_mean_term_only():
    # (0.2, 0.6, 0.4) * 255 = (51, 153, 102): rg = -102, yb = 102 - 102 = 0; no spread.
    s = image_stats(uniform(0.2, 0.6, 0.4))
    assert s["colourfulness"] == pytest.approx(0.3 * 102.0)


def test_set_stats_is_mean_of_per_image_values():
    a = uniform(0.2, 0.4, 0.6)
    s = set_stats([a, RED_BLUE])
    assert s["mean_r"] == pytest.approx((0.2 + 0.5) / 2)
    assert s["mean_g"] == pytest.approx((0.4 + 0.0) / 2)
    assert s["std_b"] == pytest.approx((0.0 + 0.5) / 2)
    assert s["saturation"] == pytest.approx(((0.6 - 0.2) / 0.6 + 1.0) / 2)
    assert s["colourfulness"] == pytest.approx(
        (image_stats(a)["colourfulness"] + image_stats(RED_BLUE)["colourfulness"]) / 2
    )
    with pytest.raises(ValueError):
        set_stats([])


def test_color_distance_by_hand():
    a = [uniform(0.2, 0.4, 0.6)]
    b = [uniform(0.5, 0.4, 0.2)]
    # means differ by (0.3, 0, 0.4); stds are all zero -> 0.5
    assert color_distance(a, b) == pytest.approx(0.5)
    assert color_distance(a, a) == pytest.approx(0.0)
    # std term: RED_BLUE has stds (0.5, 0, 0.5) and means (0.5, 0, 0.5)
    c = [uniform(0.5, 0.0, 0.5)]
    assert color_distance([RED_BLUE], c) == pytest.approx(math.sqrt(0.5**2 + 0.5**2))


def test_color_distance_uses_set_means_of_per_image_stats():
    # Black and white images: per-image std 0, set-mean of means 0.5 -> equals a gray image.
    # (Pooling the pixels would give std 0.5 and a non-zero distance.)
    bw = [uniform(0, 0, 0), uniform(1, 1, 1)]
    assert color_distance(bw, [uniform(0.5, 0.5, 0.5)]) == pytest.approx(0.0, abs=1e-12)


def test_channel_histograms_by_hand():
    arr = np.array([[[0.0, 0.1, 1.0], [0.3, 0.1, 1.0], [0.6, 0.1, 1.0], [1.0, 0.1, 1.0]]])
    h = channel_histograms([arr], bins=4)
    assert set(h) == {"r", "g", "b"}
    np.testing.assert_allclose(h["r"], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(h["g"], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(h["b"], [0.0, 0.0, 0.0, 1.0])  # 1.0 falls in the last bin


def test_channel_histograms_pool_images_and_normalise():
    h = channel_histograms([uniform(0, 0, 0, size=(1, 1)), uniform(1, 1, 1, size=(1, 3))])
    assert len(h["r"]) == 32
    assert h["r"].sum() == pytest.approx(1.0)
    assert h["r"][0] == pytest.approx(0.25) and h["r"][-1] == pytest.approx(0.75)


def test_std_is_the_population_std_while_the_colour_loss_uses_bessels_as_documented():
    """color_stats says: population std (ddof=0); the colour loss's torch std is Bessel-corrected,
    less than 1e-4 apart at 64 px. Both halves of that sentence, measured."""
    import torch

    from medart.losses import channel_moments

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    ours = np.array([image_stats(pixels)[f"std_{c}"] for c in "rgb"])
    assert ours == pytest.approx(pixels.reshape(-1, 3).std(axis=0, ddof=0) / 255)
    as_loss = torch.from_numpy(pixels.astype(np.float64) / 127.5 - 1).permute(2, 0, 1)[None]  # [-1, 1], as the VAE
    _, loss_std = channel_moments(as_loss)
    loss_std = loss_std[0].numpy() / 2  # back to [0, 1]
    n = 64 * 64
    assert loss_std == pytest.approx(ours * math.sqrt(n / (n - 1)), rel=1e-9)  # Bessel's correction
    assert 0 < np.abs(loss_std - ours).max() < 1e-4


# ---------------------------------------------------------------- per-channel Wasserstein


def test_channel_wasserstein_of_identical_sets_is_zero_and_of_a_tint_is_its_shift():
    from medart.color_stats import channel_wasserstein

    rng = np.random.default_rng(0)
    grey = [rng.integers(60, 200, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    assert channel_wasserstein(grey, [g.copy() for g in grey]) == 0.0
    # every pixel +51 in R and -51 in B (no clipping in 60..200): W1 0.2, 0, 0.2 -> mean 0.4 / 3
    tinted = [(g.astype(np.int16) + np.array([51, 0, -51])).astype(np.uint8) for g in grey]
    assert channel_wasserstein(grey, tinted) == pytest.approx(0.4 / 3, abs=1e-12)


def test_channel_wasserstein_sees_a_wrong_distribution_behind_right_moments():
    from medart.color_stats import channel_wasserstein, moment_distance

    # two-level pixels {0.25, 0.75} against a four-level set with the same mean 0.5 and std 0.25
    two = np.array([[[0.25] * 3, [0.75] * 3]] * 2)
    b = 0.5 - 0.25 * np.sqrt(2), 0.5 + 0.25 * np.sqrt(2)
    four = np.array([[[0.5] * 3, [0.5] * 3], [[b[0]] * 3, [b[1]] * 3]])
    assert moment_distance(set_stats([two]), set_stats([four])) == pytest.approx(0.0, abs=1e-12)
    # by hand (levels rounded to 1/255): |CDF difference| integrated over [0, 1]
    levels = lambda v: np.round(np.asarray(v) * 255) / 255  # noqa: E731
    lo, hi, q1, q3 = levels([b[0], b[1], 0.25, 0.75])
    expected = 0.25 * (q1 - lo) + 0.25 * (0.5 - q1) + 0.25 * (q3 - 0.5) + 0.25 * (hi - q3)
    assert channel_wasserstein([two], [four]) == pytest.approx(expected, abs=1e-12)
    assert expected > 0.1


def test_channel_wasserstein_from_counts_equals_scipy_on_the_raw_pixels():
    from scipy.stats import wasserstein_distance

    from medart.color_stats import channel_counts, channel_wasserstein, channel_wasserstein_from_counts

    rng = np.random.default_rng(1)
    a = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(4)]
    b = [rng.integers(0, 120, (7, 7, 3), dtype=np.uint8) for _ in range(3)]
    counts_a, counts_b = channel_counts(a), channel_counts(b)
    assert counts_a.shape == (4, 3, 256) and counts_a.sum() == 4 * 30 * 3
    raw = np.mean([wasserstein_distance(np.concatenate([x[..., i].ravel() for x in a]) / 255,
                                        np.concatenate([x[..., i].ravel() for x in b]) / 255) for i in range(3)])
    assert channel_wasserstein_from_counts(counts_a, counts_b) == pytest.approx(raw, rel=1e-9)
    # a resampled set is its images' summed counts: image 0 twice and image 2 once
    twice = channel_wasserstein([a[0], a[0], a[2]], b)
    assert channel_wasserstein_from_counts(counts_a[[0, 0, 2]].sum(axis=0), counts_b) == pytest.approx(twice)


# ---------------------------------------------------------------- hue fidelity


def test_hue_counts_bins_by_hand():
    from medart.color_stats import hue_counts

    # red 0°, yellow 60°, green 120°, blue 240°, magenta 300°, a faint tint (chroma 0.05), grey
    pixels = np.array([[[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0.5, 0.5, 0.45], [0.3, 0.3, 0.3]]])
    counts = hue_counts([pixels])[0]
    assert counts.shape == (13,)
    assert counts[[0, 2, 4, 8, 10]].tolist() == [1, 1, 1, 1, 1]
    assert counts[:12].sum() == 5 and counts[12] == 2  # the faint tint and grey are achromatic


def test_off_hue_share_grey_real_tinted_generated_and_a_rare_hue():
    from medart.color_stats import off_hue_share

    grey = [uniform(0.4, 0.4, 0.4, (4, 4)), uniform(0.7, 0.7, 0.7, (4, 4))]
    tinted = [uniform(0.6, 0.4, 0.4, (4, 4)), uniform(0.4, 0.4, 0.4, (4, 4))]  # half the pixels reddish
    assert off_hue_share(grey, grey) == 0.0
    assert off_hue_share(tinted, grey) == pytest.approx(0.5)  # a gray class: every chromatic pixel is off-hue
    # real: 199 red pixels and 1 green (0.5 % of its chromatic pixels: below 1 %, so green is off-hue)
    real = np.zeros((1, 200, 3))
    real[0, :, 0] = 1.0
    real[0, 0] = (0, 1, 0)
    generated = np.zeros((1, 10, 3))
    generated[0, :, 0] = 1.0
    generated[0, :3] = (0, 1, 0)  # 3 green of 10
    generated[0, 3] = (0.5, 0.5, 0.5)  # grey is never off-hue
    assert off_hue_share([generated], [real]) == pytest.approx(0.3)
    assert off_hue_share([generated], [real], min_share=0.001) == 0.0  # now green counts as the real set's
    assert off_hue_share([real], [real]) == pytest.approx(1 / 200)  # the real set's own rare pixel
