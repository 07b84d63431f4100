"""The one sampler equals diffusers' PixArt-α and PixArt-Σ pipelines, and its gradients are exact."""

import copy

import pytest
import torch

from medart import dpm_solver, lora
from medart.config import LoraConfig
from medart.losses import color_loss
from medart.profiles import load_base

PROMPT = "An endoscopic image of a polyp, predominantly red with a pink surrounding mucosa."
# About 200 tiny-tokenizer tokens: past PixArt-α's 120, within PixArt-Σ's 300.
LONG_PROMPT = " ".join(["An endoscopic image of a polyp with a glossy red surface and white speckles,"] * 8) + "  "


@pytest.fixture(scope="module")
def base(tiny_dir):
    return load_base("tiny")


@pytest.fixture(scope="module")
def sigma(medart_cache):
    return load_base("tiny-sigma")


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _equals_pipeline(base, prompts, steps, cfg):
    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)
    start = dpm_solver.initial_latents(base, len(prompts), generator=torch.Generator().manual_seed(3))
    expected = pipe(
        prompts, num_inference_steps=steps, guidance_scale=cfg, latents=start.clone(),
        height=64, width=64, use_resolution_binning=False, output_type="latent", clean_caption=False,
    ).images
    with torch.no_grad():
        cond = dpm_solver.conditioning(base, prompts)
    ours = dpm_solver.sample(base.transformer, base.scheduler, start.clone(), *cond, steps=steps, cfg=cfg)
    assert expected.abs().max() > 1.0  # a real, non-trivial output
    assert _rel(ours, expected) <= 1e-5
    return cond


@pytest.mark.parametrize("steps,cfg", [(5, 4.5), (20, 4.5), (10, 1.0)])
def test_sampler_equals_pipeline(base, steps, cfg):
    assert type(base.pipeline()).__name__ == "PixArtAlphaPipeline"
    _equals_pipeline(base, [PROMPT, "a blue square"], steps, cfg)


@pytest.mark.parametrize("steps,cfg", [(8, 1.0), (8, 4.5), (20, 1.0), (20, 4.5)])
def test_sampler_equals_sigma_pipeline(sigma, steps, cfg):
    """PixArt-Σ: prompt and empty negative prompt padded to 300 tokens, no size conditions;
    a 200-token prompt is read whole (PixArt-α would cut it at 120)."""
    assert type(sigma.pipeline()).__name__ == "PixArtSigmaPipeline"
    assert not sigma.transformer.config.use_additional_conditions
    embeds, mask, neg, neg_mask = _equals_pipeline(sigma, [LONG_PROMPT, PROMPT, "a blue square"], steps, cfg)
    assert mask.shape == neg_mask.shape == (3, 300) and embeds.shape[1] == neg.shape[1] == 300
    assert 120 < mask[0].sum() < 300 and neg_mask.sum(1).tolist() == [1, 1, 1]  # "" is the end token alone


def test_prompts_are_lower_cased_and_stripped_as_the_pipelines_do(base):
    seen = []

    def tokenizer(texts, **kw):
        seen.extend(texts)
        return base.tokenizer(texts, **kw)

    dpm_solver.encode_prompts(tokenizer, base.text_encoder, ["  A Polyp, RED. "], max_length=16)
    pipe = base.pipeline()
    assert seen == ["a polyp, red."] == pipe._text_preprocessing(["  A Polyp, RED. "], clean_caption=False)


def _tuned(base, dtype=torch.float32, seed=0):
    """A copy of the tiny base with DiT and T5 LoRA whose B matrices are non-zero."""
    tuned = copy.copy(base)
    tuned.transformer = copy.deepcopy(base.transformer).to(dtype)
    tuned.text_encoder = copy.deepcopy(base.text_encoder).to(dtype)
    tuned.vae = copy.deepcopy(base.vae).to(dtype)
    tuned.dtype = dtype
    params = lora.attach_base(tuned, LoraConfig(rank=4))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in params.values():
            for p in group:
                p.data = (torch.randn(p.shape, generator=gen) * 0.05).to(dtype)
    return tuned, params["dit"] + params["t5"], params


def _loss(tuned, start, target, steps, checkpoint=False, grad_steps=None, calls=None):
    cond = dpm_solver.conditioning(tuned, [PROMPT])
    transformer = tuned.transformer
    if calls is not None:
        def watch(module, inputs, output):  # record the gradient reaching each model call
            if output[0].requires_grad:
                output[0].register_hook(lambda g: calls.append(g.abs().sum().item()))

        handle = transformer.register_forward_hook(watch)
    latents = dpm_solver.sample(transformer, tuned.scheduler, start, *cond, steps=steps, cfg=4.5,
                                grad=True, checkpoint=checkpoint, grad_steps=grad_steps)
    if calls is not None:
        handle.remove()
    return color_loss(dpm_solver.decode(tuned.vae, latents), target)


def test_color_gradients_reach_lora_through_every_step(base):
    steps = 6
    tuned, params, groups = _tuned(base)
    start = dpm_solver.initial_latents(tuned, 1, generator=torch.Generator().manual_seed(1))
    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1

    calls = []
    loss = _loss(tuned, start, target, steps, calls=calls)
    grads = torch.autograd.grad(loss, params)
    assert len(calls) == steps and all(c > 0 for c in calls)  # every solver step got a gradient
    n_dit = len(groups["dit"])
    for name, g in (("dit", grads[:n_dit]), ("t5", grads[n_dit:])):
        assert all(torch.isfinite(x).all() for x in g)
        assert sum(x.abs().sum().item() for x in g) > 0, f"no gradient reached the {name} LoRA"

    ck = torch.autograd.grad(_loss(tuned, start, target, steps, checkpoint=True), params)
    for a, b in zip(grads, ck):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)

    last = torch.autograd.grad(_loss(tuned, start, target, steps, grad_steps=1), params)
    differs = max((a - b).abs().max().item() for a, b in zip(grads, last))
    assert differs > 1e-6  # truncation changes the gradient, so the full one used early steps


def test_color_gradient_matches_finite_differences(base):
    """Float64 networks; diffusers' solver update itself runs in float32, which puts the
    finite-difference noise floor near 1e-4 relative, hence eps = 3e-4 and a 1e-3 tolerance."""
    steps = 4
    tuned, params, _ = _tuned(base, dtype=torch.float64, seed=5)
    start = dpm_solver.initial_latents(tuned, 1, generator=torch.Generator().manual_seed(1))
    target = (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1).double()
    loss = _loss(tuned, start, target, steps, checkpoint=True)
    grads = torch.autograd.grad(loss, params)
    gen = torch.Generator().manual_seed(7)
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()

    eps = 3e-4
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
            values.append(_loss(tuned, start, target, steps).item())
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic) > 1e-6
    assert abs(analytic - numeric) <= 1e-3 * abs(numeric)
