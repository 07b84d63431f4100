"""The two training losses of HLDF: the pixel-space colour loss and the diffusion loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def channel_moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation of a (B, C, H, W) batch, each (B, C).

    The standard deviation is torch's default (Bessel-corrected); at training resolutions the
    correction is below 1e-5 relative."""
    flat = images.flatten(2)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()  # statistics in fp32 under mixed precision
    return flat.mean(dim=2), flat.std(dim=2)


def color_loss(generated: torch.Tensor, real: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L_color = E_x[ sum_c (mu_c(x~) - mu_c(x))^2 + (sigma_c(x~) - sigma_c(x))^2 ].

    Images are (B, C, H, W) in [-1, 1], as the VAE decodes them and as the authors' code
    compares them. `reduction="sum"` sums over channels (the paper's formula); "mean"
    averages over channels, which is what the authors' code computes (two MSEs over
    batch x channels), a factor 1/C smaller. Both average over the batch.
    """
    if generated.shape[:2] != real.shape[:2]:
        raise ValueError(f"batch/channels differ: {tuple(generated.shape)} vs {tuple(real.shape)}")
    return color_loss_to_moments(generated, *channel_moments(real), reduction=reduction)


def color_loss_to_moments(generated: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                          reduction: str = "sum", per_target: int = 1) -> torch.Tensor:
    """The colour loss against target moments given directly, each (T, C): a training image's
    own (`color_loss`), or the average over a class's training images (HLDF's class target).

    With `per_target` = k > 1 the generated batch holds k images per target (T * k, in order)
    and their moments are averaged before the comparison: the loss of a *set* of generated
    images against a set's statistics, which does not push every single image to the average."""
    mu_g, sd_g = channel_moments(generated)
    if per_target > 1:
        mu_g = mu_g.view(-1, per_target, mu_g.shape[1]).mean(1)
        sd_g = sd_g.view(-1, per_target, sd_g.shape[1]).mean(1)
    if mean.shape != mu_g.shape or std.shape != mu_g.shape:
        raise ValueError(f"target moments {tuple(mean.shape)} do not match the images {tuple(generated.shape)} "
                         f"({per_target} per target)")
    per_channel = (mu_g - mean.to(mu_g)) ** 2 + (sd_g - std.to(sd_g)) ** 2
    if reduction == "sum":
        return per_channel.sum(dim=1).mean()
    if reduction == "mean":
        return per_channel.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")


def diffusion_loss(model_output: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """MSE between the predicted and the true noise; PixArt-α's output carries noise and
    variance (8 channels for 4 latent channels), and only the noise half is supervised."""
    if model_output.shape[1] == 2 * noise.shape[1]:
        model_output = model_output.chunk(2, dim=1)[0]
    return F.mse_loss(model_output.float(), noise.float())
