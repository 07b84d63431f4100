"""The one sampler: DPM-Solver++(2M) with classifier-free guidance, differentiable end to end.

Training (the HLDF colour loss), validation samples, Compare and evaluation all generate
through `sample`. The solver arithmetic is diffusers' `DPMSolverMultistepScheduler` (data
prediction, midpoint, lower-order final step: PixArt-α's own scheduler config), which has
no in-place tensor ops and so is differentiable. It is stateful (it advances a step index
and keeps the previous model output), so a fresh scheduler is made per call and only the
transformer call is wrapped in gradient checkpointing: recomputing `step` in backward would
advance its index twice.

With `grad=True` gradients flow from the final latents back through every solver step into
whatever requires grad (LoRA weights, prompt embeddings); `grad_steps=K` runs the first M-K
steps without autograd, a cheaper truncated backpropagation.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch
import torch.utils.checkpoint
from diffusers import DPMSolverMultistepScheduler

from medart.constants import MAX_CAPTION_TOKENS



def encode_prompts(tokenizer, text_encoder, prompts: list[str], device=None, max_length: int = MAX_CAPTION_TOKENS):
    """T5 embeddings and attention mask, exactly as the pipelines' `encode_prompt` makes them
    with `clean_caption=False`: each prompt lower-cased and stripped (PixArt's T5 is
    case-sensitive and was trained on lower-cased captions), padded to `max_length` (the
    base's limit, PixArt-α's 120 or PixArt-Σ's 300). Differentiable when the encoder has LoRA."""
    device = device or text_encoder.device
    tokens = tokenizer(
        [p.lower().strip() for p in prompts], padding="max_length", max_length=max_length, truncation=True,
        add_special_tokens=True, return_tensors="pt",
    )
    mask = tokens.attention_mask.to(device)
    embeds = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
    return embeds, mask


def conditioning(base, prompts: list[str], negative: str = ""):
    """(embeds, mask, negative embeds, negative mask) for CFG, from a loaded base model; both
    padded to the base's caption length, as its pipeline pads prompt and negative prompt."""
    length = base.max_caption_tokens
    embeds, mask = encode_prompts(base.tokenizer, base.text_encoder, prompts, base.device, length)
    neg, neg_mask = encode_prompts(base.tokenizer, base.text_encoder, [negative] * len(prompts), base.device, length)
    return embeds, mask, neg, neg_mask


def initial_latents(base, batch: int, size: int | None = None, generator=None):
    """Gaussian start latents for `batch` images of `size` pixels (default: the model's own).

    Drawn where the generator lives (the CPU for a CPU generator), so a seed gives the same
    image on any device."""
    size = size or base.resolution
    factor = 2 ** (len(base.vae.config.block_out_channels) - 1)
    if size % (factor * base.transformer.config.patch_size):
        raise ValueError(f"size {size} must be a multiple of {factor * base.transformer.config.patch_size}")
    shape = (batch, base.transformer.config.in_channels, size // factor, size // factor)
    gen_device = generator.device if generator is not None else base.device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return noise.to(device=base.device, dtype=base.dtype)


def sample(
    transformer: torch.nn.Module,
    scheduler,
    latents: torch.Tensor,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    neg_embeds: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    steps: int = 20,
    cfg: float = 4.5,
    grad: bool = False,
    checkpoint: bool = False,
    grad_steps: int | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run M = `steps` DPM-Solver++ steps from `latents`; returns the final latents.

    `scheduler` is the base model's scheduler (or its config): it is copied, never advanced.
    `cfg` > 1 needs the negative (empty-prompt) embeddings. `callback(i, steps)` is called
    after each step (for progress bars).
    """
    scheduler = _fresh(scheduler)
    scheduler.set_timesteps(steps, device=latents.device)
    scheduler.set_begin_index(0)
    guided = cfg > 1.0
    if guided:
        if neg_embeds is None:
            raise ValueError("classifier-free guidance needs the negative prompt embeddings")
        embeds = torch.cat([neg_embeds, embeds])
        mask = torch.cat([neg_mask, mask])
    added = size_conditions(transformer, latents, latents.shape[0] * (2 if guided else 1), embeds.dtype)
    learned_sigma = transformer.config.out_channels // 2 == transformer.config.in_channels
    first_grad = steps - (steps if grad_steps is None else min(grad_steps, steps))

    def model(x, t, e, m):
        out = transformer(x, encoder_hidden_states=e, encoder_attention_mask=m, timestep=t,
                          added_cond_kwargs=added, return_dict=False)[0]
        return out

    for i, t in enumerate(scheduler.timesteps):
        track = grad and i >= first_grad
        with torch.enable_grad() if track else torch.no_grad():
            x = torch.cat([latents] * 2) if guided else latents
            x = scheduler.scale_model_input(x, t)
            timestep = t[None].to(x.device).expand(x.shape[0])
            if track and checkpoint:
                out = torch.utils.checkpoint.checkpoint(model, x, timestep, embeds, mask, use_reentrant=False)
            else:
                out = model(x, timestep, embeds, mask)
            if guided:
                uncond, cond = out.chunk(2)
                out = uncond + cfg * (cond - uncond)
            if learned_sigma:
                out = out.chunk(2, dim=1)[0]  # PixArt predicts noise and variance; the solver uses noise
            latents = scheduler.step(out, t, latents, return_dict=False)[0]
        if callback is not None:
            callback(i + 1, steps)
    return latents


def size_conditions(transformer, latents: torch.Tensor, batch: int | None = None, dtype=None) -> dict:
    """The transformer's `added_cond_kwargs`: the image's (height, width) in pixels and its
    aspect ratio where the model is size-conditioned (PixArt-α 1024 px,
    `use_additional_conditions`), as `PixArtAlphaPipeline` passes them (the latents' size
    times the VAE's 8); None for the others (PixArt-α 512 px, the tiny twin)."""
    conditioned = getattr(transformer, "use_additional_conditions", transformer.config.sample_size == 128)
    if not conditioned:
        return {"resolution": None, "aspect_ratio": None}
    batch = latents.shape[0] if batch is None else batch
    dtype = dtype or latents.dtype
    h, w = (latents.shape[-2] * 8, latents.shape[-1] * 8)
    return {
        "resolution": torch.tensor([[h, w]], dtype=dtype, device=latents.device).repeat(batch, 1),
        "aspect_ratio": torch.tensor([[h / w]], dtype=dtype, device=latents.device).repeat(batch, 1),
    }


def _fresh(scheduler) -> DPMSolverMultistepScheduler:
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        return copy.deepcopy(scheduler)  # ~0.7 ms, a third of building one from its config
    config = getattr(scheduler, "config", scheduler)
    return DPMSolverMultistepScheduler.from_config(config)


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode to images in [-1, 1] (differentiable)."""
    return vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]


def to_pil(images: torch.Tensor):
    """[-1, 1] image batch to a list of PIL images (the pipeline's own post-processing)."""
    from PIL import Image

    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]


@contextlib.contextmanager
def block_checkpointing_off(transformer):
    """Turn diffusers' per-block checkpointing off while the sampler checkpoints whole calls
    (nesting both would recompute every block twice in backward)."""
    was = getattr(transformer, "gradient_checkpointing", False)
    if was:
        transformer.disable_gradient_checkpointing()
    try:
        yield
    finally:
        if was:
            transformer.enable_gradient_checkpointing()
