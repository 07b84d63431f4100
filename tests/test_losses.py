"""color_loss and diffusion_loss against hand computations."""

import pytest
import torch

from medart.losses import color_loss, diffusion_loss


def test_color_loss_equals_hand_computation():
    # Two images, three channels, 2x2 pixels with statistics easy to do by hand.
    gen = torch.tensor([
        [[[0.0, 0.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]], [[-1.0, 1.0], [-1.0, 1.0]]],
        [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
    ])
    real = torch.zeros_like(gen)
    # image 0: means (0.5, 0.5, 0), unbiased stds (sqrt(1/3), 0, sqrt(4/3)); image 1: means (1, 0, 0), stds 0
    per_image_sum = torch.tensor([0.25 + 1 / 3 + 0.25 + 0 + 0 + 4 / 3, 1.0])
    assert color_loss(gen, real).item() == pytest.approx(per_image_sum.mean().item(), rel=1e-6)
    assert color_loss(gen, real, reduction="mean").item() == pytest.approx(per_image_sum.mean().item() / 3, rel=1e-6)
    assert color_loss(real, real).item() == 0.0
    with pytest.raises(ValueError, match="reduction"):
        color_loss(gen, real, reduction="max")


def test_color_loss_mean_is_the_two_mses_of_the_authors():
    g = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.2
    mse = torch.nn.functional.mse_loss
    authors = mse(g.mean((2, 3)), r.mean((2, 3))) + mse(g.std((2, 3)), r.std((2, 3)))
    assert color_loss(g, r, reduction="mean").item() == pytest.approx(authors.item(), rel=1e-6)
    assert color_loss(g, r).item() == pytest.approx(3 * authors.item(), rel=1e-6)


def test_diffusion_loss_uses_the_noise_half_only():
    noise = torch.ones(2, 4, 8, 8)
    out = torch.cat([torch.full((2, 4, 8, 8), 3.0), torch.full((2, 4, 8, 8), 100.0)], dim=1)  # variance half ignored
    assert diffusion_loss(out, noise).item() == pytest.approx(4.0)
    assert diffusion_loss(noise, noise).item() == 0.0


def test_set_colour_loss_compares_the_sets_average_moments():
    """per_target=k: k generated images per target, their moments averaged, then compared: a set
    whose average matches the target costs nothing although each of its images differs."""
    from medart.losses import channel_moments, color_loss_to_moments

    low, high = torch.full((1, 3, 4, 4), -0.5), torch.full((1, 3, 4, 4), 0.5)
    target_mean, target_std = torch.zeros(1, 3), torch.zeros(1, 3)
    pair = torch.cat([low, high])
    assert color_loss_to_moments(pair, target_mean, target_std, per_target=2).item() == 0.0
    assert color_loss_to_moments(low, target_mean, target_std).item() == pytest.approx(0.75)  # 3 x 0.5^2
    g = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    mean, std = torch.randn(3, 3) * 0.1, torch.rand(3, 3)
    mu, sd = channel_moments(g)
    by_hand = ((mu.view(3, 2, 3).mean(1) - mean) ** 2 + (sd.view(3, 2, 3).mean(1) - std) ** 2).sum(1).mean()
    assert color_loss_to_moments(g, mean, std, per_target=2).item() == pytest.approx(by_hand.item(), rel=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        color_loss_to_moments(g, mean, std, per_target=3)
