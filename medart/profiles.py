"""Named base models and the one place that loads them.

A base model is named by a profile (`pixart-alpha-512`, `pixart-sigma-512`, `tiny`,
`tiny-sigma`, `small`), a local diffusers folder, or a Hugging Face hub id. It is of one of two kinds,
PixArt-α or PixArt-Σ (the same DiT class; Σ has the SDXL VAE and reads captions of up to 300
T5 tokens instead of 120). A profile states its kind; a folder or hub id is of the kind its
model_index.json's `_class_name` names. Whatever the name, the weights come through that
kind's diffusers pipeline, `PixArtAlphaPipeline.from_pretrained` or
`PixArtSigmaPipeline.from_pretrained`, so tests on `tiny` and `tiny-sigma` exercise the real
loading path. The public Σ checkpoints hold the DiT only: their profiles name the repository
of the VAE, T5, tokenizer and scheduler (`components`), and the DiT is passed into the
pipeline as PixArt-Σ's own instructions do. `build_architecture("pixart-xl-2")` makes the
real-size networks with random weights, for benchmarks only.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from medart import tiny_base
from medart.constants import MAX_CAPTION_TOKENS, MAX_CAPTION_TOKENS_SIGMA


@dataclass(frozen=True)
class Kind:
    """What a family of base models shares: its diffusers pipeline and how many T5 tokens of a
    caption it reads (the pipeline's `max_sequence_length`)."""

    name: str
    pipeline: str
    max_caption_tokens: int


KINDS = {
    "alpha": Kind("PixArt-α", "PixArtAlphaPipeline", MAX_CAPTION_TOKENS),
    "sigma": Kind("PixArt-Σ", "PixArtSigmaPipeline", MAX_CAPTION_TOKENS_SIGMA),
}


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # hub id, or "" for a model built locally
    resolution: int
    description: str
    kind: str = "alpha"
    components: str = ""  # hub id of the VAE, T5, tokenizer and scheduler where `source` holds only the DiT


# The VAE (SDXL's), T5-XXL, tokenizer and scheduler every public PixArt-Σ DiT is used with.
SIGMA_COMPONENTS = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers"

PROFILES = {
    "pixart-alpha-512": Profile(
        "pixart-alpha-512",
        "PixArt-alpha/PixArt-XL-2-512x512",
        512,
        "PixArt-α XL-2 at 512 px (DiT-XL/2 0.6 B + T5-XXL 4.7 B), the paper's base model",
    ),
    "pixart-sigma-512": Profile(
        "pixart-sigma-512",
        "PixArt-alpha/PixArt-Sigma-XL-2-512-MS",
        512,
        "PixArt-Σ XL-2 at 512 px (DiT-XL/2 0.6 B, SDXL VAE, T5-XXL reading captions of up to 300 tokens)",
        "sigma",
        SIGMA_COMPONENTS,
    ),
    "pixart-sigma-1024": Profile(
        "pixart-sigma-1024",
        "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
        1024,
        "PixArt-Σ XL-2 at 1024 px (as pixart-sigma-512; four times the pixels, a large GPU)",
        "sigma",
        SIGMA_COMPONENTS,
    ),
    "tiny": Profile("tiny", "", tiny_base.RESOLUTION,
                    "PixArt-α classes at toy size, pretrained on general images (assets/tiny-base), any CPU"),
    "tiny-random": Profile("tiny-random", "", tiny_base.RESOLUTION,
                           "the tiny architecture with random weights from a fixed seed, built locally"),
    "tiny-sigma": Profile("tiny-sigma", "", tiny_base.RESOLUTION,
                          "the tiny networks as a PixArt-Σ pipeline (300-token captions; the tiny VAE stands in "
                          "for Σ's SDXL VAE), built from `tiny` at first use, any CPU", "sigma"),
    "small": Profile("small", "", tiny_base.RESOLUTION,
                     "PixArt-α classes at a small size meant to learn a class's texture and colour (a VAE that "
                     "reconstructs texture), pretrained on general images and textures (assets/small-base), any CPU"),
    "small-random": Profile("small-random", "", tiny_base.RESOLUTION,
                            "the small architecture with random weights from a fixed seed, built locally"),
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
    kind: str = "alpha"  # a key of KINDS

    @property
    def max_caption_tokens(self) -> int:
        """How many T5 tokens of a caption this base reads (α 120, Σ 300)."""
        return KINDS[self.kind].max_caption_tokens

    def pipeline(self):
        """A stock diffusers pipeline of this base's kind (`PixArtAlphaPipeline` or
        `PixArtSigmaPipeline`) over these very modules (no copy)."""
        import diffusers

        return getattr(diffusers, KINDS[self.kind].pipeline)(
            transformer=self.transformer,
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            scheduler=self.scheduler,
        )


def is_tiny(base_model: str) -> bool:
    """Whether `base_model` is one of the offline profiles built locally (tiny, tiny-random,
    tiny-sigma, small, small-random)."""
    return base_model in PROFILES and not PROFILES[base_model].source


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
        if profile.name == "small":
            if not (tiny_base.SMALL_DIR / "model_index.json").exists():
                raise BaseModelError(
                    f"The small base's weights are not in {tiny_base.SMALL_DIR}. Build them (a few CPU-hours; "
                    "needs scikit-image) with `python -m medart.tiny_pretrain --arch small --out assets/small-base "
                    "--state ~/.cache/medart-small-pretrain` (add --resume to continue an interrupted build), "
                    "or use --base-model tiny.")
            return str(tiny_base.SMALL_DIR), profile.resolution
        if profile.name == "small-random":
            return str(tiny_base.ensure_tiny(cache_dir() / "small-random", arch="small")), profile.resolution
        if profile.name == "tiny-sigma":  # rebuilt whenever the tiny base's files change
            alpha = Path(resolve("tiny")[0])
            folder = cache_dir() / f"tiny-sigma-{_folder_digest(alpha)}"
            return str(tiny_base.sigma_twin(alpha, folder)), profile.resolution
        return profile.source, profile.resolution
    path = Path(base_model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            dit_only = (path / "transformer" / "config.json").exists()
            raise BaseModelError(
                f"{path} is a folder but not a diffusers pipeline (no model_index.json). "
                + ("It holds a DiT alone, as PixArt-Σ's checkpoints do: use --base-model pixart-sigma-512 "
                   f"(or pixart-sigma-1024), which adds the VAE and T5 of {SIGMA_COMPONENTS}."
                   if dit_only else "Point --base-model at the folder made by `huggingface-cli download "
                   "PixArt-alpha/PixArt-XL-2-512x512 --local-dir DIR`.")
            )
        return str(path), _native_resolution(path)
    if looks_like_hub_id(base_model):
        return base_model, 512  # hub id; the pipeline's sample_size decides below
    known = ", ".join(PROFILES)
    raise BaseModelError(
        f"Unknown base model {base_model!r}: not a profile ({known}), not an existing folder, "
        "not a hub id of the form owner/name."
    )


def looks_like_hub_id(name: str) -> bool:
    """Whether `name` has the form of a hub repository id (owner/name), not of a path."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and "\\" not in name


def _folder_digest(folder: Path) -> str:
    """A short hash of every file in `folder` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _kind_of_index(index: dict, where: str) -> str:
    """The kind a model_index.json names in `_class_name`."""
    name = index.get("_class_name")
    for key, kind in KINDS.items():
        if kind.pipeline == name:
            return key
    known = " and ".join(f"{k.name} ({k.pipeline})" for k in KINDS.values())
    raise BaseModelError(f"{where} is a {name or 'unnamed'} pipeline; the base model must be {known}.")


def kind_of(base_model: str | None = None) -> str:
    """The kind (a key of KINDS) of a base model, without loading weights: a profile's own, a
    folder's or cached hub model's model_index.json's; "alpha", the shorter caption limit,
    for a hub id not downloaded yet (loading it reads its model_index.json)."""
    name = base_model or default_base_model()
    if name in PROFILES:
        return PROFILES[name].kind
    index = Path(name).expanduser() / "model_index.json"
    if index.is_file():
        return _kind_of_index(json.loads(index.read_text()), name)
    if looks_like_hub_id(name):
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "model_index.json")
        except ValueError:  # not a valid repository id: loading it will say so
            cached = None
        if isinstance(cached, str):
            return _kind_of_index(json.loads(Path(cached).read_text()), name)
    return "alpha"


def kind_or_alpha(base_model: str | None = None) -> str:
    """`kind_of`, or "alpha" (the shorter caption limit) where the base names no pipeline this
    package loads (describing such a base must not fail; loading it says what is wrong)."""
    try:
        return kind_of(base_model)
    except BaseModelError:
        return "alpha"


def caption_limit(kind: str, requested: int | None = None) -> int:
    """The caption token limit of a run on a base of `kind`: `requested` if given (at most
    what the base reads, else a ValueError), else all the base reads (α 120, Σ 300)."""
    most = KINDS[kind]
    if requested is None:
        return most.max_caption_tokens
    if requested > most.max_caption_tokens:
        raise ValueError(
            f"max_caption_tokens {requested} is more than {most.name} reads ({most.max_caption_tokens} T5 tokens): "
            f"the rest of a longer caption would be cut off. Leave it empty for {most.max_caption_tokens}"
            + (f", or train on a PixArt-Σ base (--base-model pixart-sigma-512), which reads "
               f"{MAX_CAPTION_TOKENS_SIGMA}." if most.max_caption_tokens < MAX_CAPTION_TOKENS_SIGMA else ".")
        )
    return requested


def _native_resolution(folder: Path) -> int:
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


def _pipeline(base_model: str, source: str, dtype: torch.dtype, local: bool):
    """(pipeline, kind) through the kind's `from_pretrained`; a profile whose repository holds
    only the DiT gets the rest from its `components` repository. Loading shows no progress bars
    ("Loading pipeline components", checkpoint shards): they say nothing a person acts on."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    profile = PROFILES.get(base_model)
    if profile is not None:
        kind = profile.kind
    else:
        index = diffusers.DiffusionPipeline.load_config(source, local_files_only=local)
        kind = _kind_of_index(index, source)
    cls = getattr(diffusers, KINDS[kind].pipeline)
    if profile is not None and profile.components:
        # Σ's pipeline passes no size conditions: its DiT must not expect them (the 1024 px
        # checkpoint's first config left the setting out, which means "on" at 128 latents).
        transformer = diffusers.PixArtTransformer2DModel.from_pretrained(
            source, subfolder="transformer", dtype=dtype, local_files_only=local,
            use_additional_conditions=False,
        )
        return cls.from_pretrained(profile.components, transformer=transformer, dtype=dtype,
                                   local_files_only=local), kind
    return cls.from_pretrained(source, dtype=dtype, local_files_only=local), kind


def _offline_help(base_model: str, source: str) -> str:
    """What to do when `source`'s weights are not here and the hub cannot be reached."""
    profile = PROFILES.get(base_model)
    if profile is not None and profile.components:
        return (
            f"The weights of {source} (the DiT) and {profile.components} (VAE, T5, tokenizer, scheduler) are "
            "not in the local Hugging Face cache and the hub cannot be reached. On a machine with internet run "
            f"`huggingface-cli download {source}` and `huggingface-cli download {profile.components}`, copy "
            "that machine's Hugging Face cache (~/.cache/huggingface/hub) to the same place here (or point "
            f"HF_HOME at the copy) and pass --base-model {base_model} again. Without a GPU, use --base-model "
            "tiny-sigma."
        )
    return (
        f"The weights of {source} are not in the local Hugging Face cache and the hub cannot be "
        "reached. On a machine with internet run `huggingface-cli download "
        f"{source} --local-dir ./{source.split('/')[-1]}`, copy the folder here and pass "
        f"--base-model ./{source.split('/')[-1]} (or set MEDART_BASE_MODEL). "
        "Without a GPU, use --base-model tiny."
    )


def load_base(base_model: str | None = None, device=None, dtype: torch.dtype | None = None) -> Base:
    """Load a base model by profile name, local folder or hub id, frozen and in eval mode."""
    base_model = base_model or default_base_model()
    source, resolution = resolve(base_model)
    device, default_dtype = default_device_dtype(device)
    dtype = dtype or default_dtype
    local = Path(source).is_dir()
    try:
        pipe, kind = _pipeline(base_model, source, dtype, local=True)
    except (OSError, ValueError) as e:
        if local:
            raise BaseModelError(f"Could not load the PixArt pipeline in {source}: {e}") from e
        if not hub_reachable():
            raise BaseModelError(_offline_help(base_model, source)) from None
        try:
            pipe, kind = _pipeline(base_model, source, dtype, local=False)
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
        kind=kind,
    )


def load_tokenizer(base_model: str | None = None):
    """The base model's T5 tokenizer alone (to count caption tokens without loading weights)."""
    from transformers import AutoTokenizer

    name = base_model or default_base_model()
    source, _ = resolve(name)
    profile = PROFILES.get(name)
    source = profile.components if profile is not None and profile.components else source
    try:
        return AutoTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=True)
    except OSError:
        if Path(source).is_dir() or not hub_reachable():
            raise BaseModelError(f"The tokenizer of {source} is not available offline.") from None
        return AutoTokenizer.from_pretrained(source, subfolder="tokenizer")


def caption_tokenizer(base_model: str | None = None) -> tuple[str, object]:
    """(name, tokenizer) of the base model whose T5 counts caption tokens (default: the active one)."""
    name = base_model or default_base_model()
    if is_tiny(name):  # every tiny profile has the tiny tokenizer
        from transformers import AutoTokenizer

        return name, AutoTokenizer.from_pretrained(tiny_base.TOKENIZER_DIR)
    return name, load_tokenizer(name)


def pipeline_code(base_model: str, folder: str | None = None) -> str:
    """Python lines that load `base_model` into a stock diffusers pipeline called `pipe` (model
    cards); `folder` names a base that has no hub id (default: the folder it loads from here)."""
    profile = PROFILES.get(base_model)
    cls = KINDS[kind_or_alpha(base_model)].pipeline
    if profile is not None and profile.components:
        return (f"from diffusers import PixArtTransformer2DModel, {cls}\n\n"
                f'transformer = PixArtTransformer2DModel.from_pretrained("{profile.source}", subfolder="transformer",\n'
                "                                                       use_additional_conditions=False)\n"
                f'pipe = {cls}.from_pretrained("{profile.components}", transformer=transformer)')
    if profile is not None and is_tiny(base_model):
        source = folder or str(Path(resolve(base_model)[0]).resolve())
    elif profile is not None:
        source = profile.source
    elif Path(base_model).expanduser().is_dir():
        source = folder or str(Path(base_model).expanduser().resolve())
    else:
        source = base_model
    return f'from diffusers import {cls}\n\npipe = {cls}.from_pretrained("{source}")'


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
