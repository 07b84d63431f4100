"""Pretrain the offline base models (`tiny`, `small`) on general (non-medical) images, so that they draw pictures.

`medart.tiny_base` builds PixArt-α's classes at toy (`tiny`) or small (`small`) size with random
weights; those generate noise. This script trains the very same architecture (same configs,
built by `tiny_base.build_components`) on licence-clean general images that ship with
scikit-image plus synthetic pictures, and saves an ordinary diffusers `PixArtAlphaPipeline`
folder. It knows nothing medical.

Recipe (RECIPES holds each architecture's defaults; all on one CPU thread):
1. data: 64x64 random crops of public-domain / CC0 photos from `skimage.data`, with
   simple captions, mixed with rendered shapes, plain colours and gradients whose captions
   come from their parameters ("a red circle on a blue background"); for `small` also
   textures (`medart.textures`: noise, stripes, dots, cells, blobs in many colours, captioned
   from their parameters) and closer photo crops, so that colour and texture words mean something;
2. VAE (AutoencoderKL): L1 + MSE reconstruction + a small KL term; then its
   `scaling_factor` is set to 1 / std of the latents and written into its config;
3. VAE frozen; transformer (PixArtTransformer2DModel) and the T5 encoder trained
   jointly on epsilon prediction (MSE on the noise half of the output), DDPM timesteps
   uniform over 1000, each sample's MSE weighted by 1/SNR(t) clipped to [1, 100],
   10% empty captions so that classifier-free guidance works; an exponential moving
   average of the weights is what gets saved.

`tiny` takes about 20-25 minutes; `small` a few hours, so give it a --state folder: it keeps
atomic checkpoints there (weights, optimizer, EMA, random generators) every
--checkpoint-every steps, and --resume continues an interrupted run exactly where it stopped.
Progress lines say the step rate and the time left.

Needs scikit-image (`pip install scikit-image`) to run; the app itself does not, since the
produced weights are committed.

    python -m medart.tiny_pretrain --out assets/tiny-base
    python -m medart.tiny_pretrain --arch small --out assets/small-base --state ~/.cache/medart-small-pretrain
    python -m medart.tiny_pretrain --arch small --out assets/small-base --state ~/.cache/medart-small-pretrain --resume
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medart import tiny_base
from medart.constants import MAX_CAPTION_TOKENS
from medart.fileio import atomic_dir

RES = tiny_base.RESOLUTION

# skimage.data images used, with captions and the licence stated in their docstrings.
# Only images bundled with the wheel (no download) and free to reuse are listed.
PHOTOS = {
    "astronaut": (["a photo of an astronaut", "a portrait of an astronaut", "a photo of a woman"],
                  "NASA; public domain"),
    "coffee": (["a cup of coffee", "a photo of a coffee cup", "a cup of coffee on a table"],
               "Rachel Michetti (Pikolo Espresso Bar); CC0"),
    "chelsea": (["a photo of a cat", "a cat", "a ginger cat"], "Stefan van der Walt; CC0"),
    "rocket": (["a photo of a rocket launch", "a rocket", "a rocket taking off"],
               "SpaceX; public domain"),
    "coins": (["a black and white photo of coins", "old coins"],
              "Brooklyn Museum; no known copyright restrictions"),
    "camera": (["a black and white photo of a man with a camera", "a photographer"],
               "Lav Varshney; CC0"),
    "horse": (["a black silhouette of a horse on a white background", "a horse silhouette"],
              "Andreas Preuss (openclipart); CC0"),
    "hubble_deep_field": (["a photo of galaxies in deep space", "stars and galaxies"],
                          "NASA Hubble; public domain"),
    "clock": (["a blurry black and white photo of a clock", "a wall clock"],
              "Stefan van der Walt; public domain"),
    "grass": (["a black and white photo of grass", "grass"], "CC0 (DeviantArt linolafett)"),
    "gravel": (["a black and white photo of gravel", "gravel"], "CC0 (CC0Textures)"),
    "brick": (["a black and white photo of a brick wall", "a brick wall"], "CC0 (CC0Textures)"),
}

COLOURS = {
    "red": (220, 30, 30), "green": (40, 170, 50), "blue": (30, 60, 220),
    "yellow": (245, 220, 30), "orange": (245, 140, 20), "purple": (130, 40, 170),
    "pink": (245, 140, 190), "cyan": (40, 210, 225), "white": (245, 245, 245),
    "black": (15, 15, 15), "gray": (128, 128, 128), "brown": (125, 75, 30),
}
SHAPES = ("circle", "square", "triangle")
DEFAULT_PROMPTS = (
    "a red circle on a blue background", "a green square", "a yellow triangle on a black background",
    "a plain purple background", "a gradient from orange to cyan", "a photo of a cat",
    "a cup of coffee", "a photo of galaxies in deep space",
)


# ---------------------------------------------------------------- data


def load_photos() -> dict[str, np.ndarray]:
    """The listed skimage.data images as float RGB arrays in [0, 1] (raises if one is missing)."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        img = img.astype(np.float32) / (1.0 if img.dtype == bool else 255.0)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos[name] = img[..., :3]
    return photos


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray((img * 255).round().astype(np.uint8))
    return np.asarray(pil.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def photo_crop(rng: np.random.Generator, img: np.ndarray, crop_min: float = 0.35) -> np.ndarray:
    """A random square crop (`crop_min`-100% of the short side), resized to RES, maybe mirrored."""
    h, w = img.shape[:2]
    side = max(RES // 2, int(min(h, w) * rng.uniform(crop_min, 1.0)))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    out = _resize(img[y:y + side, x:x + side], RES)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _colour(rng: np.random.Generator, name: str) -> np.ndarray:
    return np.clip(np.array(COLOURS[name], np.float32) + rng.normal(0, 10, 3), 0, 255)


def render_synthetic(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A rendered picture and a caption made from its parameters."""
    names = list(COLOURS)
    yy, xx = np.mgrid[0:RES, 0:RES].astype(np.float32) + 0.5
    kind = rng.random()
    if kind < 0.12:  # plain colour
        c = names[rng.integers(len(names))]
        img = np.broadcast_to(_colour(rng, c), (RES, RES, 3)).copy()
        return img.astype(np.uint8), rng.choice([f"a plain {c} background", f"solid {c}"])
    if kind < 0.24:  # vertical gradient
        a, b = rng.choice(len(names), 2, replace=False)
        t = (yy / RES)[..., None]
        img = (1 - t) * _colour(rng, names[a]) + t * _colour(rng, names[b])
        return img.astype(np.uint8), f"a gradient from {names[a]} to {names[b]}"
    # one shape on a plain background, edges anti-aliased through a signed distance
    fg, bg = rng.choice(len(names), 2, replace=False)
    shape = SHAPES[rng.integers(len(SHAPES))]
    r = rng.uniform(9, 22)
    cy, cx = rng.uniform(r + 2, RES - r - 2, 2)
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        sd = np.sqrt(dx**2 + dy**2) - r
    elif shape == "square":
        sd = np.maximum(np.abs(dx), np.abs(dy)) - r * 0.85
    else:  # upright equilateral triangle, r = distance from centre to a vertex
        s3 = math.sqrt(3) / 2
        sd = np.maximum.reduce([dy - r / 2, -s3 * dx - dy / 2 - r / 2, s3 * dx - dy / 2 - r / 2])
    cover = np.clip(0.5 - sd, 0, 1)[..., None]
    img = cover * _colour(rng, names[fg]) + (1 - cover) * _colour(rng, names[bg])
    if rng.random() < 0.75:
        caption = f"a {names[fg]} {shape} on a {names[bg]} background"
    else:
        caption = f"a {names[fg]} {shape}"
    return img.astype(np.uint8), caption


def make_dataset(n: int, seed: int, photos: dict, photo_share: float = 0.35, texture_share: float = 0.0,
                 crop_min: float = 0.35):
    """n images (uint8, N x RES x RES x 3) and captions; photos are picked uniformly. A share
    `texture_share` are `medart.textures` pictures (none for `tiny`, whose data stays as built)."""
    from medart.textures import render_texture

    rng = np.random.default_rng(seed)
    names = list(PHOTOS)
    imgs = np.empty((n, RES, RES, 3), np.uint8)
    caps = []
    for i in range(n):
        u = rng.random()
        if u < photo_share:
            name = names[rng.integers(len(names))]
            imgs[i] = photo_crop(rng, photos[name], crop_min)
            options = PHOTOS[name][0]
            caps.append(options[rng.integers(len(options))])
        elif u < photo_share + texture_share:
            imgs[i], cap = render_texture(rng, RES)
            caps.append(cap)
        else:
            imgs[i], cap = render_synthetic(rng)
            caps.append(str(cap))
    return imgs, caps


def to_tensor(imgs: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], as the pipeline's VAE expects."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------- training


def _lr(step: int, steps: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


class TrainState:
    """Periodic, atomic checkpoints of a training phase in `folder` (None: none kept), and resume.

    Each phase ("vae", "dit") is one subfolder, replaced in one rename: its modules' weights and
    the optimizer's tensors as safetensors, the data generator's state, the step reached and
    the running loss as JSON; torch's global generator too (T5's dropout draws from it).
    Nothing is unpickled. Resuming restores all of it, so that a
    resumed run continues exactly as an uninterrupted one would on the same machine."""

    def __init__(self, folder: Path | None, every: int, log):
        self.folder, self.every, self.log = (Path(folder) if folder else None), every, log

    def save(self, phase: str, step: int, modules: dict, opt, gen: torch.Generator, extra: dict) -> None:
        """Write the phase's checkpoint (replacing the previous one in one rename)."""
        from safetensors.torch import save_file

        if self.folder is None:
            return
        tensors = {}
        for name, module in modules.items():
            tensors.update({f"{name}.{k}": v.detach().contiguous().clone() for k, v in module.state_dict().items()})
        opt_state = opt.state_dict()
        for idx, st in opt_state["state"].items():
            tensors.update({f"opt.{idx}.{k}": torch.as_tensor(v).clone() for k, v in st.items()})
        groups = opt_state["param_groups"]
        tensors["rng"] = gen.get_state()
        tensors["torch_rng"] = torch.get_rng_state()  # dropout draws from torch's global generator
        with atomic_dir(self.folder / phase, prefix=f".{phase}.") as tmp:
            save_file(tensors, tmp / "state.safetensors")
            (tmp / "progress.json").write_text(json.dumps({"step": step, "param_groups": groups, **extra}))
        self.log(f"{phase}: checkpoint at step {step} in {self.folder / phase}")

    def progress(self, phase: str) -> dict | None:
        path = self.folder / phase / "progress.json" if self.folder else None
        return json.loads(path.read_text()) if path and path.exists() else None

    def load(self, phase: str, modules: dict, opt, gen: torch.Generator) -> dict:
        """Restore a phase's checkpoint into these objects; returns its progress (step, extras)."""
        from safetensors.torch import load_file

        progress = self.progress(phase)
        tensors = load_file(self.folder / phase / "state.safetensors")
        for name, module in modules.items():
            module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        opt.load_state_dict({"state": state, "param_groups": progress["param_groups"]})
        gen.set_state(tensors["rng"])
        torch.set_rng_state(tensors["torch_rng"])
        self.log(f"{phase}: resumed at step {progress['step']}")
        return progress


class Progress:
    """Log lines with the step rate and the time left of a phase."""

    def __init__(self, phase: str, start: int, steps: int, log, every: int):
        self.phase, self.start, self.steps, self.log, self.every = phase, start, steps, log, every
        self.t0 = time.time()

    def __call__(self, step: int, text: str) -> None:
        if step % self.every and step != self.steps - 1:
            return
        done = step + 1 - self.start
        rate = (time.time() - self.t0) / max(done, 1)
        left = rate * (self.steps - step - 1)
        self.log(f"{self.phase} step {step:6d}/{self.steps}  {text}  {rate:.2f} s/step, {left / 60:.1f} min left")


def _resume_or_start(state: TrainState, phase: str, modules: dict, opt, gen) -> tuple[int, float | None]:
    if state.progress(phase) is None:
        return 0, None
    progress = state.load(phase, modules, opt, gen)
    return progress["step"], progress.get("run")


def train_vae(vae, imgs: np.ndarray, steps: int, lr: float, kl_weight: float, seed: int, log,
              full_share: float = 0.2, state: TrainState | None = None):
    """Reconstruction (L1 + MSE) plus a small KL; returns the final running loss.

    The networks are convolutional, so most steps use random 32x32 crops (batch 32, about
    3x cheaper per image); the last `full_share` of the steps use whole 64x64 images
    (batch 16) so that the mid-block attention sees its real 16x16 latent grid."""
    state = state or TrainState(None, 0, log)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    start, run = _resume_or_start(state, "vae", {"vae": vae}, opt, g)
    report = Progress("vae", start, steps, log, 100)
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup=50)
        if step < steps * (1 - full_share):
            idx = torch.randint(0, len(imgs), (32,), generator=g).numpy()
            y0, x0 = torch.randint(0, RES // 2 + 1, (2,), generator=g).tolist()
            x = to_tensor(imgs[idx, y0:y0 + RES // 2, x0:x0 + RES // 2])
        else:
            x = to_tensor(imgs[torch.randint(0, len(imgs), (16,), generator=g).numpy()])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        y = vae.decode(z).sample
        rec = (y - x).abs().mean() + F.mse_loss(y, x)
        loss = rec + kl_weight * post.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run = rec.item() if run is None else 0.95 * run + 0.05 * rec.item()
        report(step, f"rec {run:.4f}")
        if state.every and ((step + 1) % state.every == 0 or step + 1 == steps):
            state.save("vae", step + 1, {"vae": vae}, opt, g, {"run": run})
    vae.eval()
    return run


@torch.no_grad()
def encode_all(vae, imgs: np.ndarray, batch: int = 128):
    """Posterior mean and std of every image (sampled afresh at each training step)."""
    means, stds = [], []
    for i in range(0, len(imgs), batch):
        post = vae.encode(to_tensor(imgs[i:i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def vae_error(vae, imgs: np.ndarray) -> dict:
    """Reconstruction error on held-out images, pixel values in [0, 1]."""
    x = to_tensor(imgs)
    y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    x, y = (x + 1) / 2, (y + 1) / 2
    mse = F.mse_loss(y, x).item()
    return {"l1": (y - x).abs().mean().item(), "mse": mse, "psnr_db": 10 * math.log10(1 / mse)}


def train_dit(parts, means, stds, caps, steps, batch, lr, drop, ema_decay, seed, log, max_weight=100.0,
              state: TrainState | None = None):
    """Epsilon prediction on the frozen VAE's latents; returns (EMA transformer, EMA text
    encoder, final running plain noise MSE).

    Each sample's noise MSE is weighted by 1/SNR(t) clipped to [1, max_weight]. With plain
    uniform weighting this tiny network never learned the high-noise steps well enough:
    there a small noise error becomes a large error in the predicted image, so samples
    followed the seed, not the prompt, and the prompt changed the output by under 1%."""
    from diffusers import DDPMScheduler

    transformer, text_encoder, tokenizer = parts["transformer"], parts["text_encoder"], parts["tokenizer"]
    noise_sched = DDPMScheduler.from_config(parts["scheduler"].config)  # PixArt's linear betas
    alphas = noise_sched.alphas_cumprod
    weights = ((1 - alphas) / alphas).clamp(1.0, max_weight)
    tok = tokenizer(sorted(set(caps)) + [""], padding=False, truncation=True, max_length=MAX_CAPTION_TOKENS)
    ids = dict(zip(sorted(set(caps)) + [""], tok.input_ids))
    cap_ids = [ids[c] for c in caps]
    empty = ids[""]

    models = torch.nn.ModuleList([transformer, text_encoder]).train()
    ema = copy.deepcopy(models).eval().requires_grad_(False)
    opt = torch.optim.AdamW(models.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    state = state or TrainState(None, 0, log)
    start, run = _resume_or_start(state, "dit", {"model": models, "ema": ema}, opt, g)
    report = Progress("dit", start, steps, log, 250)
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr)
        idx = torch.randint(0, len(caps), (batch,), generator=g)
        keep = torch.rand(batch, generator=g) >= drop
        seqs = [cap_ids[i] if k else empty for i, k in zip(idx.tolist(), keep.tolist())]
        # Padding to the batch's longest caption matches the pipeline's 120-token padding:
        # padded tokens are masked out in T5 and in the cross-attention.
        width = max(map(len, seqs))
        input_ids = torch.full((batch, width), tokenizer.pad_token_id)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for j, s in enumerate(seqs):
            input_ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        z0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=g)) * parts["vae"].config.scaling_factor
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,), generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        emb = text_encoder(input_ids, attention_mask=mask)[0]
        out = transformer(
            zt, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=t,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        # the learned-variance half of the output is left untrained
        per_sample = ((out[:, : z0.shape[1]] - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (weights[t] * per_sample).mean() / weights.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), models.parameters()):
                pe.lerp_(pm, 1 - d)
        mse = per_sample.mean().item()
        run = mse if run is None else 0.99 * run + 0.01 * mse
        report(step, f"noise mse {run:.4f}  weighted loss {loss.item():.4f}")
        if state.every and ((step + 1) % state.every == 0 or step + 1 == steps):
            state.save("dit", step + 1, {"model": models, "ema": ema}, opt, g, {"run": run})
    return ema[0], ema[1], run


# ---------------------------------------------------------------- output


def save_pipeline(parts: dict, out: Path) -> None:
    """Save as a diffusers pipeline folder (safetensors), replacing `out` atomically."""
    from diffusers import PixArtAlphaPipeline

    with atomic_dir(out, mode=0o755) as tmp:
        PixArtAlphaPipeline(**parts).save_pretrained(tmp, safe_serialization=True)


def sample_grid(folder: Path, prompts, png: Path, seeds=(0, 1, 2, 3), scale: int = 2) -> None:
    """Generate with the stock pipeline (20 steps, CFG 4.5) and save one row per prompt."""
    from diffusers import PixArtAlphaPipeline
    from PIL import Image

    pipe = PixArtAlphaPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for p in prompts:
        row = []
        for s in seeds:
            img = pipe(
                p, num_inference_steps=20, guidance_scale=4.5, height=RES, width=RES,
                use_resolution_binning=False, clean_caption=False,
                generator=torch.Generator().manual_seed(s), output_type="np",
            ).images[0]
            row.append((img * 255).round().astype(np.uint8))
        rows.append(np.concatenate(row, axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(png)


INTROS = {
    "tiny": """# tiny-base: a toy PixArt-α pretrained on general images

A toy for demos and tests, not a model of anything medical. It is the `tiny` architecture
of `medart/tiny_base.py` (PixArt-α's classes at 64x64 px, about 2.5 MB) trained briefly
on general, non-medical pictures, so that its output depends on the prompt instead of
being noise. With 20 steps and guidance 4.5 one prompt gives similar colours across
seeds and some colour words come through (a blue background, cyan, red-brown for
coffee, dark for deep space), but many colours are wrong and shapes are not drawn; photo
captions give coloured textures. No medical images were used.""",
    "small": """# small-base: a small PixArt-α pretrained on general images and textures

The stand-in base for measuring the method offline, not a model of anything medical. It is
the `small` architecture of `medart/tiny_base.py` (PixArt-α's classes at 64x64 px: a 6-layer
DiT of width 128, a 2-layer T5 of width 128 and a VAE of widths 32-64-128, about 5.8 M
parameters) pretrained on general, non-medical pictures and rendered textures, so that a
LoRA run on a dozen tiles of a medical class can learn that class's colour and texture
(measured per class of `medart.class_bank` by `benchmarks/learnability.py`; the figures are
in benchmarks/RESULTS.md). Its own samples draw colour words, shapes and the five texture
kinds of its data, coarsely. No medical images were used.""",
}


def _data_section(stats: dict, arch: str) -> str:
    recipe = {**RECIPES[arch], **{k: float(v) for k, v in stats["args"].items()
                                   if k in ("photo_share", "texture_share", "crop_min") and v != "None"}}
    photo, texture = recipe["photo_share"], recipe["texture_share"]
    rows = "\n".join(f"| `skimage.data.{n}()` | {lic} | {'; '.join(caps)} |" for n, (caps, lic) in PHOTOS.items())
    textures = (f"""- about {texture:.0%} textures rendered by `medart/textures.py`: smooth noise, stripes, dots,
  cells and soft blobs in two of its colours at several scales, captioned from what was drawn
  (e.g. "thin green diagonal stripes on a black background");
""" if texture else "")
    return f"""{stats["images"]} images of 64x64 px drawn with a fixed seed:

- about {1 - photo - texture:.0%} synthetic pictures rendered by `medart/tiny_pretrain.py`: one circle, square
  or triangle of one of {len(COLOURS)} colours on a plain background, plain colours, and
  vertical two-colour gradients, captioned from their parameters (e.g. "a red circle on a
  blue background", "a plain purple background", "a gradient from orange to cyan");
{textures}- about {photo:.0%} random square crops ({recipe["crop_min"]:.0%}-100% of the short side, resized, randomly mirrored)
  of these photographs that ship inside the scikit-image wheel (no download), with the
  licence stated in scikit-image's documentation of each:

| image | source / licence | captions |
|---|---|---|
{rows}"""


def write_source(out: Path, stats: dict, arch: str = "tiny") -> None:
    """SOURCE.md: where the weights come from and how to rebuild them."""
    sec = stats["seconds"]
    err = stats["vae_heldout"]
    rebuild = ("python -m medart.tiny_pretrain --out assets/tiny-base" if arch == "tiny" else
               "python -m medart.tiny_pretrain --arch small --out assets/small-base --state ~/.cache/medart-small-pretrain\n"
               "    # interrupted? the same command with --resume continues where it stopped")
    resumed = (" This build was resumed from its checkpoints; the times count only the process that finished it."
               if stats.get("resumed") else "")
    (out / "SOURCE.md").write_text(f"""{INTROS[arch]}

## Data

{_data_section(stats, arch)}

## Training

1. VAE (AutoencoderKL): L1 + MSE reconstruction and a small KL term, AdamW, {stats["args"]["vae_steps"]} steps;
   most steps on random 32x32 crops, the last fifth on whole images. Held-out reconstruction
   (256 images, pixels in [0, 1]): L1 {err["l1"]:.4f}, MSE {err["mse"]:.5f}
   (PSNR {err["psnr_db"]:.1f} dB). `scaling_factor` = 1 / std of the latents =
   {stats["scaling_factor"]}.
2. VAE frozen; transformer and the 2-layer T5 encoder trained together on epsilon
   prediction (MSE on the noise half of the output; the learned-variance half is left
   untrained), DDPM timesteps uniform over 1000 with PixArt-α's linear betas, each
   sample's MSE weighted by 1/SNR(t) clipped to [1, {stats["args"]["max_weight"]}] (unweighted, a small network
   ignored the prompt at the high-noise steps that fix colours and layout), batch
   {stats["args"]["dit_batch"]}, {stats["args"]["dit_steps"]} steps, 10% empty captions for classifier-free guidance.
   The saved weights are an exponential moving average. Final running noise MSE
   (unweighted): {stats["dit_loss"]:.4f}.

Training took {sec["total"] / 60:.0f} minutes on one CPU thread of a shared 2-core machine
(VAE {sec["vae"] / 60:.1f} min including latent encoding, transformer {sec["dit"] / 60:.1f} min).{resumed}

## Rebuild

    pip install scikit-image   # 0.26; needed only to rebuild, not by the app
    {rebuild}

All randomness comes from `--seed`; on one CPU thread a rebuild should give the same
weights, though other torch versions or CPUs may differ slightly.
""")


# Per architecture: the data mix and the length of each phase (flags override them).
RECIPES = {
    "tiny": dict(images=16000, photo_share=0.35, texture_share=0.0, crop_min=0.35, vae_steps=1200, vae_lr=2e-3,
                 dit_steps=3000, dit_batch=64, dit_lr=1e-3),
    "small": dict(images=20000, photo_share=0.3, texture_share=0.45, crop_min=0.1, vae_steps=4000, vae_lr=1e-3,
                  dit_steps=20000, dit_batch=32, dit_lr=5e-4),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    parser.add_argument("--arch", choices=sorted(RECIPES), default="tiny", help="architecture (medart.tiny_base.ARCHS)")
    parser.add_argument("--seed", type=int, default=tiny_base.SEED)
    parser.add_argument("--images", type=int, help="training images (fixed pool)")
    parser.add_argument("--vae-steps", type=int)
    parser.add_argument("--vae-from", type=Path, help="reuse the VAE of an earlier build (skips its training)")
    parser.add_argument("--dit-steps", type=int)
    parser.add_argument("--dit-batch", type=int)
    parser.add_argument("--max-weight", type=float, default=100.0, help="clip of the 1/SNR loss weight")
    parser.add_argument("--state", type=Path, help="folder for periodic checkpoints (model, optimizer, EMA, "
                                                   "data generator) so that an interrupted run can resume")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints (with --state)")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoints are in --state")
    parser.add_argument("--grid", type=Path, help="also save a sample grid PNG here")
    parser.add_argument("--stats", type=Path, help="also write timings and losses as JSON here")
    args = parser.parse_args(argv)
    for key, value in RECIPES[args.arch].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def check_state(args, log) -> None:
    """A --state folder belongs to one run: the same settings, started once, resumed with --resume."""
    if args.state is None:
        if args.resume:
            raise SystemExit("--resume needs --state, the folder the interrupted run kept its checkpoints in")
        return
    keep = ("arch", "seed", "images", "vae_steps", "vae_from", "dit_steps", "dit_batch", "max_weight")
    settings = {k: str(getattr(args, k)) for k in keep}
    run_file = args.state / "run.json"
    if run_file.exists():
        if not args.resume:
            raise SystemExit(f"{args.state} already holds a run: pass --resume to continue it, or another --state")
        earlier = json.loads(run_file.read_text())
        if earlier != settings:
            diff = ", ".join(f"{k} {earlier.get(k)} -> {v}" for k, v in settings.items() if earlier.get(k) != v)
            raise SystemExit(f"{args.state} holds a run with other settings ({diff}); resume it with those")
    elif args.resume:
        raise SystemExit(f"nothing to resume in {args.state} (no run.json); start without --resume")
    else:
        from medart.fileio import atomic_write_json

        atomic_write_json(run_file, settings)
    log(f"checkpoints every {args.checkpoint_every} steps in {args.state}")


def build_vae(args, parts, imgs, held_out, state, log) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Train (or reuse) the VAE, set its scaling factor; returns (held-out error, latent means, stds)."""
    vae = parts["vae"]
    if args.vae_from:
        from diffusers import AutoencoderKL

        vae = parts["vae"] = AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae")
    else:
        train_vae(vae, imgs, args.vae_steps, lr=args.vae_lr, kl_weight=1e-4, seed=args.seed + 1, log=log, state=state)
    vae.eval().requires_grad_(False)
    vae_err = vae_error(vae, held_out)
    means, stds = encode_all(vae, imgs)
    std = torch.sqrt((stds**2).mean() + means.var()).item()  # std of sampled latents
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    log(f"vae: held-out {vae_err}; latent mean {means.mean().item():.4f} std {std:.4f} -> scaling_factor {vae.config.scaling_factor}")
    return vae_err, means, stds


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # small ops on a shared CPU; more threads only spin
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} {time.time() - t0:7.1f}s] {msg}", flush=True)

    check_state(args, log)
    state = TrainState(args.state, args.checkpoint_every, log)
    torch.manual_seed(args.seed)
    photos = load_photos()
    mix = dict(photo_share=args.photo_share, texture_share=args.texture_share, crop_min=args.crop_min)
    imgs, caps = make_dataset(args.images, args.seed, photos, **mix)
    held_out, _ = make_dataset(256, args.seed + 1000, photos, **mix)
    log(f"data: {len(imgs)} images, {len(set(caps))} distinct captions")

    parts = tiny_base.build_components(args.seed, args.arch)
    t_vae = time.time()
    vae_err, means, stds = build_vae(args, parts, imgs, held_out, state, log)
    t_vae = time.time() - t_vae

    t_dit = time.time()
    transformer, text_encoder, dit_loss = train_dit(
        parts, means, stds, caps, args.dit_steps, args.dit_batch, lr=args.dit_lr, drop=0.1,
        ema_decay=0.999, seed=args.seed + 2, log=log, max_weight=args.max_weight, state=state,
    )
    t_dit = time.time() - t_dit
    parts.update(transformer=transformer.requires_grad_(True), text_encoder=text_encoder.requires_grad_(True))
    save_pipeline(parts, args.out)
    total = time.time() - t0
    log(f"saved {args.out} (vae {t_vae:.0f}s, dit {t_dit:.0f}s, total {total:.0f}s in this process)")

    stats = dict(
        images=len(imgs), vae_heldout=vae_err, scaling_factor=parts["vae"].config.scaling_factor,
        dit_loss=dit_loss, seconds=dict(vae=t_vae, dit=t_dit, total=total),
        args={k: str(v) for k, v in vars(args).items()}, resumed=bool(args.resume),
    )
    if not args.vae_from:  # a reused VAE's training is not described by this run
        write_source(args.out, stats, args.arch)
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=2))
    if args.grid:
        sample_grid(args.out, DEFAULT_PROMPTS, args.grid)
        log(f"grid {args.grid}")


if __name__ == "__main__":
    main()
