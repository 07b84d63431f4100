"""Image generation from a base model with or without a run's LoRA, through the one sampler.

One `Generator` holds one loaded pipeline; the adapter's strength can be changed between
calls (0 gives the base model exactly), so base and tuned images come from the same modules.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from medart import dpm_solver, lora
from medart.fileio import atomic_write_bytes
from medart.profiles import load_base
from medart.run_folder import run_config


def run_base_model(path: str | Path) -> str | None:
    """The base model a run (or a checkpoint / adapter inside it) was trained on, if recorded."""
    return run_config(path).get("base_model")


class Generator:
    def __init__(self, base_model: str | None = None, lora_path: str | Path | None = None, device=None):
        if lora_path and not base_model:
            base_model = run_base_model(lora_path)
        self.base = load_base(base_model, device=device)
        self.lora_path = lora_path
        self.has_lora = False
        if lora_path:
            lora.load_base_adapters(self.base, lora_path)
            self.has_lora = True

    def set_lora_scale(self, scale: float) -> None:
        if self.has_lora:
            lora.set_scale(self.base.transformer, scale)
            lora.set_scale(self.base.text_encoder, scale)

    @torch.no_grad()
    def generate(self, prompts: list[str], seeds: list[int], steps: int = 20, cfg: float = 4.5,
                 size: int | None = None, lora_scale: float = 1.0, batch_size: int = 4, callback=None):
        """One PIL image per (prompt, seed); the same arguments always give the same pixels."""
        if len(prompts) != len(seeds):
            raise ValueError("give one seed per prompt")
        self.set_lora_scale(lora_scale)
        images = []
        for i in range(0, len(prompts), batch_size):
            chunk, chunk_seeds = prompts[i:i + batch_size], seeds[i:i + batch_size]
            start = torch.cat([
                dpm_solver.initial_latents(self.base, 1, size, torch.Generator().manual_seed(int(s)))
                for s in chunk_seeds
            ])
            cond = dpm_solver.conditioning(self.base, chunk)
            latents = dpm_solver.sample(self.base.transformer, self.base.scheduler, start, *cond,
                                        steps=steps, cfg=cfg)
            images += dpm_solver.to_pil(dpm_solver.decode(self.base.vae, latents))
            if callback:
                callback(len(images), len(prompts))
        return images


def generate_to_file(base_model=None, lora=None, prompt="", seed=0, steps=20, cfg=4.5, size=None,
                     out="sample.png", lora_scale=1.0) -> Path:
    from PIL.PngImagePlugin import PngInfo

    image = Generator(base_model, lora).generate([prompt], [seed], steps, cfg, size, lora_scale)[0]
    info = PngInfo()
    info.add_text("parameters", f"{prompt}\nseed={seed} steps={steps} cfg={cfg} lora={lora or ''} scale={lora_scale}")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
