"""The `tiny` base model: PixArt-α's exact classes at toy size, for tests, CI and the offline demo.

The profile `tiny` loads `assets/tiny-base/`, these networks pretrained on general
(non-medical) images by `medart/tiny_pretrain.py`, so that the offline demo, like the real
product, tunes a general base model on medical images. The profile `tiny-random` (and `tiny`
where that folder is absent) is built here from config with a fixed seed and saved once as an
ordinary diffusers pipeline folder. Either way it is loaded through the same `from_pretrained`
path as the real PixArt-α. Its tokenizer is a small Unigram (sentencepiece-style) tokenizer trained on
English word frequencies; it ships as `assets/tiny-tokenizer/` so that building the model
needs no download. It counts about 2 tokens per English word (real T5: about 1.4), so the
120-token caption limit bites a little earlier on `tiny` than on PixArt-α.

The profile `tiny-sigma` is the same networks saved as a `PixArtSigmaPipeline` folder
(`sigma_twin`), built from `tiny` (or `tiny-random`) at first use: what differs for PixArt-Σ
is the pipeline class, captions of up to 300 tokens, and a DiT with no size conditioning
(`use_additional_conditions=False`) and an explicit `interpolation_scale`. The real Σ
decodes with the SDXL VAE; the tiny twin keeps the tiny VAE (its scaling factor is its own
either way), so it tests Σ's code path, not Σ's pictures.

The profile `small` is the same classes and tokenizer at the `small` sizes of ARCHS, loaded from
`assets/small-base/` (built by `python -m medart.tiny_pretrain --arch small`); `small-random` is
that architecture with random weights from a fixed seed, built here like `tiny-random`.

Rebuild the tokenizer (needs `pip install wordfreq`):  python -m medart.tiny_base --tokenizer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from medart.assets import ASSETS
from medart.constants import MAX_CAPTION_TOKENS, MAX_CAPTION_TOKENS_SIGMA
from medart.fileio import atomic_dir

TOKENIZER_DIR = ASSETS / "tiny-tokenizer"
PRETRAINED_DIR = ASSETS / "tiny-base"  # made by `python -m medart.tiny_pretrain --out assets/tiny-base`
SMALL_DIR = ASSETS / "small-base"  # made by `python -m medart.tiny_pretrain --arch small --out assets/small-base`
SEED = 0
RESOLUTION = 64  # pixels; the VAE downsamples by 4, so latents are 16x16

# Sizes of the offline architectures (same classes, same 64 px, same tokenizer). `tiny` is for
# fast tests: its few-channel VAE decodes each latent pixel as a flat 4x4 block, so it can
# learn a class's average colour but not its texture. `small` is meant as the stand-in for
# science: a VAE wide enough to reconstruct texture (28-41 dB PSNR on the class bank's tiles after
# its 4000 pretraining steps, where tiny's VAE gives 18-25 dB) and a wider DiT and T5, still about 0.5 s per balanced colour step and
# 0.1-0.2 s per plain LoRA step on one CPU thread.
ARCHS = {
    "tiny": dict(
        dit=dict(num_layers=2, attention_head_dim=16, num_attention_heads=2),
        vae=dict(block_out_channels=[8, 16, 32], layers_per_block=1, norm_num_groups=4),
        t5=dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
    ),
    "small": dict(
        dit=dict(num_layers=6, attention_head_dim=32, num_attention_heads=4),
        vae=dict(block_out_channels=[32, 64, 128], layers_per_block=1, norm_num_groups=16),
        t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
    ),
}

# Scheduler settings of PixArt-alpha/PixArt-XL-2-512x512 (scheduler/scheduler_config.json).
PIXART_SCHEDULER = dict(
    algorithm_type="dpmsolver++",
    beta_end=0.02,
    beta_schedule="linear",
    beta_start=0.0001,
    lower_order_final=True,
    num_train_timesteps=1000,
    prediction_type="epsilon",
    solver_order=2,
    solver_type="midpoint",
    steps_offset=0,
    thresholding=False,
    timestep_spacing="linspace",
    use_karras_sigmas=False,
)


# What every PixArt-α DiT, VAE and T5 encoder share; sizes are set per model (tiny, real size).
PIXART_DIT = dict(
    in_channels=4, out_channels=8, patch_size=2, attention_bias=True, activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    use_additional_conditions=False,
)
T5_ENCODER = dict(feed_forward_proj="gated-gelu", is_encoder_decoder=False)


def sd_vae(blocks: int) -> dict:
    """The SD-style VAE settings (RGB in, 4 latent channels) for a VAE of `blocks` levels."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
        down_block_types=["DownEncoderBlock2D"] * blocks, up_block_types=["UpDecoderBlock2D"] * blocks,
    )


def build_tokenizer(out_dir: Path = TOKENIZER_DIR) -> None:
    """Train the tiny tokenizer from `wordfreq`'s English list (deterministic) and save it."""
    import wordfreq
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = wordfreq.top_n_list("en", 40000)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=8000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    # Frequent words are repeated so that they become whole tokens, as in a real corpus.
    corpus = (w for rank, w in enumerate(words) for _ in range(max(1, 2000 // (rank // 100 + 1))))
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=MAX_CAPTION_TOKENS
    )
    fast.save_pretrained(out_dir)


def build_components(seed: int = SEED, arch: str = "tiny") -> dict:
    """The `arch` pipeline's parts (random weights from `seed`; an ARCHS key), as keyword
    arguments for `PixArtAlphaPipeline`. Training scripts start from these so the architecture stays one."""
    from transformers import AutoTokenizer

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        return _build(tokenizer, ARCHS[arch])


def _build(tokenizer, sizes: dict):
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    dit = sizes["dit"]
    transformer = PixArtTransformer2DModel(
        sample_size=RESOLUTION // 4, caption_channels=sizes["t5"]["d_model"],
        cross_attention_dim=dit["attention_head_dim"] * dit["num_attention_heads"], **dit, **PIXART_DIT,
    )
    vae = AutoencoderKL(sample_size=RESOLUTION, **sizes["vae"], **sd_vae(len(sizes["vae"]["block_out_channels"])))
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer), **sizes["t5"],
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **T5_ENCODER,
        )
    )
    scheduler = DPMSolverMultistepScheduler(**PIXART_SCHEDULER)
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def ensure_tiny(folder: Path, arch: str = "tiny") -> Path:
    """Build and save the `arch` pipeline (random weights, fixed seed) at `folder` unless it is
    already there (atomic)."""
    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    from diffusers import PixArtAlphaPipeline

    with atomic_dir(folder, keep_existing=True) as tmp:  # another process may finish first
        PixArtAlphaPipeline(**build_components(arch=arch)).save_pretrained(tmp)
    return folder


def sigma_twin(alpha_folder: Path, folder: Path) -> Path:
    """Save the tiny PixArt-α pipeline in `alpha_folder` as a PixArt-Σ pipeline at `folder`
    (atomic; kept if already there): the same weights, loaded and saved through diffusers'
    own classes, with Σ's 300-token captions and Σ's DiT settings written into its config."""
    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    from diffusers import PixArtAlphaPipeline, PixArtSigmaPipeline

    alpha = PixArtAlphaPipeline.from_pretrained(alpha_folder, local_files_only=True)
    transformer = alpha.transformer
    # Σ never passes size conditions; interpolation_scale is written out as the real Σ
    # checkpoints do (1 at 512 px, 2 at 1024 px; here the value the tiny DiT already used).
    scale = transformer.config.interpolation_scale or max(transformer.config.sample_size // 64, 1)
    transformer.register_to_config(interpolation_scale=scale, use_additional_conditions=False)
    alpha.tokenizer.model_max_length = MAX_CAPTION_TOKENS_SIGMA
    sigma = PixArtSigmaPipeline(transformer=transformer, vae=alpha.vae, text_encoder=alpha.text_encoder,
                                tokenizer=alpha.tokenizer, scheduler=alpha.scheduler)
    with atomic_dir(folder, keep_existing=True) as tmp:
        sigma.save_pretrained(tmp, safe_serialization=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", action="store_true", help="rebuild assets/tiny-tokenizer")
    parser.add_argument("--out", type=Path, help="also save the tiny pipeline to this folder")
    args = parser.parse_args()
    if args.tokenizer:
        build_tokenizer()
        print(f"wrote {TOKENIZER_DIR}")
    if args.out:
        print(f"saved {ensure_tiny(args.out)}")


if __name__ == "__main__":
    main()
