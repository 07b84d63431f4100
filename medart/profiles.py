"""Named base models and the one place that loads them.

A base model is named by a profile (`pixart-alpha-512`, `tiny`), a local diffusers folder,
or a Hugging Face hub id. Whatever the name, the weights come through diffusers'
`PixArtAlphaPipeline.from_pretrained`, so tests on `tiny` exercise the real loading path.
`build_architecture("pixart-xl-2")` makes the real-size networks with random weights, for
benchmarks only.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from medart import tiny_base


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # hub id, or "" for a model built locally
    resolution: int
    description: str


PROFILES = {
    "pixart-alpha-512": Profile(
        "pixart-alpha-512",
        "PixArt-alpha/PixArt-XL-2-512x512",
        512,
        "PixArt-α XL-2 at 512 px (DiT-XL/2 0.6 B + T5-XXL 4.7 B), the paper's base model",
    ),
    "tiny": Profile("tiny", "", tiny_base.RESOLUTION,
                    "PixArt-α classes at toy size, pretrained on general images (assets/tiny-base), any CPU"),
    "tiny-random": Profile("tiny-random", "", tiny_base.RESOLUTION,
                           "the tiny architecture with random weights from a fixed seed, built locally"),
}
DEFAULT_GPU = "pixart-alpha-512"
DEFAULT_CPU = "tiny"


class BaseModelError(RuntimeError):
    """The base model cannot be loaded; the message says what to do."""


@dataclass
class Base:
    """A loaded base model: the pipeline's parts plus where they live."""

    name: str
    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    device: torch.device
    dtype: torch.dtype
    resolution: int

    def pipeline(self):
        """A stock `PixArtAlphaPipeline` over these very modules (no copy)."""
        from diffusers import PixArtAlphaPipeline

        return PixArtAlphaPipeline(
            transformer=self.transformer,
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            scheduler=self.scheduler,
        )


def cache_dir() -> Path:
    return Path(os.environ.get("MEDART_CACHE", Path.home() / ".cache" / "medart"))


def default_base_model() -> str:
    """`MEDART_BASE_MODEL` if set, else PixArt-α on a CUDA machine and `tiny` elsewhere."""
    env = os.environ.get("MEDART_BASE_MODEL")
    if env:
        return env
    return DEFAULT_GPU if torch.cuda.is_available() else DEFAULT_CPU


def default_device_dtype(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """bf16 on CUDA; fp32 elsewhere (bf16 matmuls are far slower than fp32 on CPUs)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def resolve(base_model: str) -> tuple[str, int]:
    """(folder or hub id to load, native resolution) for a profile name, folder or hub id."""
    if base_model in PROFILES:
        profile = PROFILES[base_model]
        if profile.name == "tiny" and (tiny_base.PRETRAINED_DIR / "model_index.json").exists():
            return str(tiny_base.PRETRAINED_DIR), profile.resolution
        if profile.name in ("tiny", "tiny-random"):
            return str(tiny_base.ensure_tiny(cache_dir() / "tiny-random")), profile.resolution
        return profile.source, profile.resolution
    path = Path(base_model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise BaseModelError(
                f"{path} is a folder but not a diffusers pipeline (no model_index.json). "
                "Point --base-model at the folder made by `huggingface-cli download "
                "PixArt-alpha/PixArt-XL-2-512x512 --local-dir DIR`."
            )
        return str(path), _native_resolution(path)
    if base_model.count("/") == 1 and not base_model.startswith((".", "/")):
        return base_model, 512  # hub id; the pipeline's sample_size decides below
    known = ", ".join(PROFILES)
    raise BaseModelError(
        f"Unknown base model {base_model!r}: not a profile ({known}), not an existing folder, "
        "not a hub id of the form owner/name."
    )


def _native_resolution(folder: Path) -> int:
    import json

    cfg = folder / "transformer" / "config.json"
    vae_cfg = folder / "vae" / "config.json"
    if cfg.exists() and vae_cfg.exists():
        sample = json.loads(cfg.read_text())["sample_size"]
        blocks = len(json.loads(vae_cfg.read_text())["block_out_channels"])
        return sample * 2 ** (blocks - 1)
    return 512


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection within `timeout` seconds (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    result = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def load_base(base_model: str | None = None, device=None, dtype: torch.dtype | None = None) -> Base:
    """Load a base model by profile name, local folder or hub id, frozen and in eval mode."""
    from diffusers import PixArtAlphaPipeline

    base_model = base_model or default_base_model()
    source, resolution = resolve(base_model)
    device, default_dtype = default_device_dtype(device)
    dtype = dtype or default_dtype
    local = Path(source).is_dir()
    try:
        pipe = PixArtAlphaPipeline.from_pretrained(source, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        if local:
            raise BaseModelError(f"Could not load the PixArt-α pipeline in {source}: {e}") from e
        if not hub_reachable():
            raise BaseModelError(
                f"The weights of {source} are not in the local Hugging Face cache and the hub cannot be "
                "reached. On a machine with internet run `huggingface-cli download "
                f"{source} --local-dir ./{source.split('/')[-1]}`, copy the folder here and pass "
                f"--base-model ./{source.split('/')[-1]} (or set MEDART_BASE_MODEL). "
                "Without a GPU, use --base-model tiny."
            ) from None
        try:
            pipe = PixArtAlphaPipeline.from_pretrained(source, dtype=dtype)
        except OSError as e:
            raise BaseModelError(f"Could not download {source}: {e}") from e
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval().to(device)
    sample = pipe.transformer.config.sample_size * pipe.vae_scale_factor
    return Base(
        name=base_model,
        transformer=pipe.transformer,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
        device=device,
        dtype=dtype,
        resolution=sample or resolution,
    )


def load_tokenizer(base_model: str | None = None):
    """The base model's T5 tokenizer alone (to count caption tokens without loading weights)."""
    from transformers import AutoTokenizer

    source, _ = resolve(base_model or default_base_model())
    try:
        return AutoTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=True)
    except OSError:
        if Path(source).is_dir() or not hub_reachable():
            raise BaseModelError(f"The tokenizer of {source} is not available offline.") from None
        return AutoTokenizer.from_pretrained(source, subfolder="tokenizer")


def caption_tokenizer(base_model: str | None = None) -> tuple[str, object]:
    """(name, tokenizer) of the base model whose T5 counts caption tokens (default: the active one)."""
    name = base_model or default_base_model()
    if name == "tiny":
        from transformers import AutoTokenizer

        return name, AutoTokenizer.from_pretrained(tiny_base.TOKENIZER_DIR)
    return name, load_tokenizer(name)


def build_architecture(arch: str, device, dtype: torch.dtype) -> Base:
    """Real-size networks with random weights (no download), to measure time and memory."""
    if arch != "pixart-xl-2":
        raise BaseModelError(f"Unknown architecture {arch!r}; known: pixart-xl-2")
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    device = torch.device(device)
    with torch.device(device):
        transformer = PixArtTransformer2DModel(
            sample_size=64, num_layers=28, attention_head_dim=72, num_attention_heads=16,
            cross_attention_dim=1152, caption_channels=4096, **tiny_base.PIXART_DIT,
        ).to(dtype)
        text_encoder = T5EncoderModel(  # T5-XXL v1.1
            T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     **tiny_base.T5_ENCODER)
        ).to(dtype)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512], layers_per_block=2, sample_size=512, **tiny_base.sd_vae(4),
        ).to(dtype)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base.TOKENIZER_DIR)  # ids only drive the timing
    for module in (transformer, vae, text_encoder):
        module.requires_grad_(False).eval()
    return Base(
        arch, transformer, vae, text_encoder, tokenizer,
        DPMSolverMultistepScheduler(**tiny_base.PIXART_SCHEDULER), device, dtype, 512,
    )
