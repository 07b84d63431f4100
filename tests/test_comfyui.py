"""`export-adapter --format comfyui`: one .safetensors that ComfyUI's LoRA loader applies to PixArt-α
exactly as peft does, and the model card's snippet that runs as written.

ComfyUI is not a dependency, so its resolution of a LoRA file is re-enacted here from its
source (comfy/lora.py `model_lora_keys_unet` for `model_base.PixArt` and `model_lora_keys_clip`,
comfy/utils.py `pixart_to_diffusers`, comfy/weight_adapter/lora.py `LoRAAdapter`): ComfyUI keeps
PixArt in its own module layout (fused `attn.qkv`, `cross_attn.q_linear` + fused
`cross_attn.kv_linear`, ...), maps each `transformer.<diffusers module>` key onto a weight of that
layout or a slice of one, and adds alpha / rank x B @ A to it; its T5 keeps transformers' module
names under `t5xxl.transformer.`.
"""

import re
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from helpers import make_data, make_tuned_run
from medart import lora
from medart.cli import main as cli_main
from medart.config import LoraConfig, load_config
from medart.profiles import load_base
from medart.run_folder import usage_snippet

KEY = re.compile(r"(transformer\.|text_encoders\.t5xxl\.transformer\.)(.+)\.(lora_A\.weight|lora_B\.weight|alpha)")


# ---- ComfyUI's resolution, re-enacted ------------------------------------------------------------
def comfy_pixart_map(depth: int, hidden: int) -> dict:
    """diffusers weight name -> ComfyUI PixArt weight name, or (name, (dim, start, size)) for a slice
    of a fused weight: the map of comfy/utils.py `pixart_to_diffusers`."""
    out = {}
    for i in range(depth):
        d, c = f"transformer_blocks.{i}", f"diffusion_model.blocks.{i}"
        for end in ("weight", "bias"):
            for j, p in enumerate("qkv"):
                out[f"{d}.attn1.to_{p}.{end}"] = (f"{c}.attn.qkv.{end}", (0, j * hidden, hidden))
            out[f"{d}.attn2.to_q.{end}"] = f"{c}.cross_attn.q_linear.{end}"
            out[f"{d}.attn2.to_k.{end}"] = (f"{c}.cross_attn.kv_linear.{end}", (0, 0, hidden))
            out[f"{d}.attn2.to_v.{end}"] = (f"{c}.cross_attn.kv_linear.{end}", (0, hidden, hidden))
        for native, diffusers in (("scale_shift_table", "scale_shift_table"), ("attn.proj", "attn1.to_out.0"),
                                  ("mlp.fc1", "ff.net.0.proj"), ("mlp.fc2", "ff.net.2"),
                                  ("cross_attn.proj", "attn2.to_out.0")):
            ends = ("",) if native == "scale_shift_table" else (".weight", ".bias")
            for end in ends:
                out[f"{d}.{diffusers}{end}"] = f"{c}.{native}{end}"
    basic = {
        "adaln_single.emb.resolution_embedder.linear_{}": "csize_embedder.mlp.{}",
        "adaln_single.emb.aspect_ratio_embedder.linear_{}": "ar_embedder.mlp.{}",
        "adaln_single.emb.timestep_embedder.linear_{}": "t_embedder.mlp.{}",
        "caption_projection.linear_{}": "y_embedder.y_proj.fc{}",
    }
    for diffusers, native in basic.items():
        for n, m in ((1, 0 if "mlp" in native else 1), (2, 2)):
            for end in ("weight", "bias"):
                out[f"{diffusers.format(n)}.{end}"] = f"diffusion_model.{native.format(m)}.{end}"
    for diffusers, native in (("pos_embed.proj", "x_embedder.proj"), ("adaln_single.linear", "t_block.1"),
                              ("proj_out", "final_layer.linear")):
        for end in ("weight", "bias"):
            out[f"{diffusers}.{end}"] = f"diffusion_model.{native}.{end}"
    out["caption_projection.y_embedding"] = "diffusion_model.y_embedder.y_embedding"
    out["scale_shift_table"] = "diffusion_model.final_layer.scale_shift_table"
    return out


def to_native(state: dict, mapping: dict) -> dict:
    """A diffusers state dict in ComfyUI's layout (slices concatenated into their fused weight)."""
    native, parts = {}, {}
    for key, value in state.items():
        target = mapping.get(key, key)
        if isinstance(target, tuple):
            parts.setdefault(target[0], []).append((target[1][1], value))
        else:
            native[target] = value.clone()
    for name, pieces in parts.items():
        native[name] = torch.cat([v for _, v in sorted(pieces, key=lambda p: p[0])])
    return native


def from_native(native: dict, state_keys, mapping: dict) -> dict:
    out = {}
    for key in state_keys:
        target = mapping.get(key, key)
        if isinstance(target, tuple):
            dim, start, size = target[1]
            out[key] = native[target[0]].narrow(dim, start, size).clone()
        else:
            out[key] = native[target]
    return out


def comfy_apply(native: dict, key_map: dict, lora_sd: dict, strength: float = 1.0) -> set:
    """What ComfyUI's loader does with `lora_sd` given `key_map` (LoRA key -> weight or slice):
    W += strength x alpha / rank x B @ A; returns the LoRA keys it used."""
    used = set()
    for x, target in key_map.items():
        if f"{x}.lora_B.weight" not in lora_sd:
            continue
        up, down = lora_sd[f"{x}.lora_B.weight"].double(), lora_sd[f"{x}.lora_A.weight"].double()
        alpha = lora_sd[f"{x}.alpha"].item() if f"{x}.alpha" in lora_sd else None
        used |= {f"{x}.lora_B.weight", f"{x}.lora_A.weight", f"{x}.alpha"} & set(lora_sd)
        name, offset = (target, None) if isinstance(target, str) else target
        weight = native[name]
        if offset is not None:
            weight = weight.narrow(*offset)
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        weight += strength * scale * (up.flatten(start_dim=1) @ down.flatten(start_dim=1)).reshape(weight.shape)
    return used


def dit_output(transformer, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    x = torch.randn(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g, dtype=torch.float64)
    text = torch.randn(1, 6, cfg.caption_channels, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return transformer(x, encoder_hidden_states=text, timestep=torch.tensor([500]),
                           added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]


def t5_output(text_encoder):
    ids = torch.tensor([[5, 17, 42, 9, 1]])
    with torch.no_grad():
        return text_encoder(ids).last_hidden_state


# ---- tests ------------------------------------------------------------------------------------
def test_comfyui_file_applied_as_comfyui_does_equals_peft(tmp_path, capsys):
    torch.manual_seed(0)  # peft's random A matrices
    run = make_tuned_run(tmp_path / "run", seed=1, lora_config=LoraConfig(rank=4, alpha=8.0))
    (run / "config.yaml").write_text(yaml.safe_dump({"base_model": "tiny", "ema_decay": 0.99, "lora": {"rank": 4}}))
    (run / "status.json").write_text('{"state": "done", "step": 12}')
    out = tmp_path / "loras" / "demo.safetensors"
    assert cli_main(["export-adapter", str(run), "--format", "comfyui", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "27 DiT modules and 14 T5 modules" in printed and "ComfyUI/models/loras" in printed

    lora_sd = load_file(out)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["medart.base_model"] == "tiny" and meta["medart.weights"].startswith("EMA")
    assert meta["medart.rank"] == "4" and meta["medart.lora_alpha"] == "8" and meta["medart.step"] == "12"
    assert meta["medart.source"] == "adapter" and meta["medart.networks"] == "dit,t5"

    # every key is of the documented form, and every module has A, B and alpha (= lora_alpha)
    modules: dict[str, set] = {}
    for key in lora_sd:
        m = KEY.fullmatch(key)
        assert m, key
        modules.setdefault(m.group(1) + m.group(2), set()).add(m.group(3))
    assert all(parts == {"lora_A.weight", "lora_B.weight", "alpha"} for parts in modules.values())
    assert all(lora_sd[f"{m}.alpha"].dtype == torch.float32 and lora_sd[f"{m}.alpha"].item() == 8.0 for m in modules)
    assert sum(m.startswith("text_encoders.") for m in modules) == 14 and len(modules) == 27 + 14

    # compared in float64: with large random adapters the tiny network amplifies float32 rounding
    tuned = load_base("tiny", device="cpu", dtype=torch.float64)  # the production load path: peft
    lora.load_base_adapters(tuned, run)
    plain = load_base("tiny", device="cpu", dtype=torch.float64)
    base_dit = dit_output(plain.transformer)

    # DiT: keys resolved through ComfyUI's PixArt map, onto its fused layout, then back
    cfg = plain.transformer.config
    mapping = comfy_pixart_map(cfg.num_layers, cfg.num_attention_heads * cfg.attention_head_dim)
    unet_keys = {"transformer." + k[: -len(".weight")]: v for k, v in mapping.items() if k.endswith(".weight")}
    state = plain.transformer.state_dict()
    native = to_native(state, mapping)
    used = comfy_apply(native, unet_keys, lora_sd)
    plain.transformer.load_state_dict(from_native(native, state.keys(), mapping))

    # T5: `text_encoders.<weight name>` of ComfyUI's text-encoder model, T5 under t5xxl.transformer.
    clip_keys = {f"text_encoders.t5xxl.transformer.{k[: -len('.weight')]}": f"t5xxl.transformer.{k}"
                 for k in plain.text_encoder.state_dict() if k.endswith(".weight")}
    t5_native = {f"t5xxl.transformer.{k}": v.clone() for k, v in plain.text_encoder.state_dict().items()}
    used |= comfy_apply(t5_native, clip_keys, lora_sd)
    plain.text_encoder.load_state_dict({k.removeprefix("t5xxl.transformer."): v for k, v in t5_native.items()})

    assert used == set(lora_sd)  # ComfyUI would load every key ("lora key not loaded": none)
    ours, theirs = dit_output(plain.transformer), dit_output(tuned.transformer)
    assert (theirs - base_dit).abs().max() > 1e-2  # the adapter matters
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t5_output(plain.text_encoder), t5_output(tuned.text_encoder), atol=1e-5, rtol=1e-5)
    assert (t5_output(tuned.text_encoder) - t5_output(load_base("tiny", device="cpu", dtype=torch.float64).text_encoder)).abs().max() > 1e-3


def test_dit_only_run_and_bad_input(tmp_path, capsys):
    run = make_tuned_run(tmp_path / "run", lora_config=LoraConfig(rank=2, t5=False))
    out = tmp_path / "dit.safetensors"
    assert cli_main(["export-adapter", str(run / "adapter"), "--out", str(out)]) == 0
    keys = load_file(out)
    assert keys and all(k.startswith("transformer.") for k in keys)
    assert all(v.item() == 2.0 for k, v in keys.items() if k.endswith(".alpha"))
    with safe_open(out, "pt") as f:
        assert f.metadata()["medart.weights"] == "not recorded"  # config.yaml says nothing of an EMA

    # a run still training: its latest complete checkpoint's adapter, with that step
    step = run / "checkpoints" / "step-000005"
    step.mkdir(parents=True)
    (run / "adapter").rename(step / "adapters")
    (step / "adapters" / "dit").rename(step / "dit")
    (step / "manifest.json").write_text("{}")
    (step / "trainer_state.json").write_text('{"step": 5}')
    (run / "config.yaml").write_text(yaml.safe_dump({"base_model": "pixart-alpha-512", "ema_decay": 0.0}))
    assert cli_main(["export-adapter", str(run), "--out", str(out)]) == 0
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert (meta["medart.source"], meta["medart.step"]) == ("checkpoints/step-000005", "5")
    assert meta["medart.weights"] == "LoRA weights of the last step"
    assert meta["medart.base_model_source"] == "PixArt-alpha/PixArt-XL-2-512x512"

    assert cli_main(["export-adapter", str(run), "--out", str(tmp_path / "x.pt")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert cli_main(["export-adapter", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "No run folder" in capsys.readouterr().err

    # a DiT module that ComfyUI's PixArt map does not hold is refused, not silently dropped
    weights = step / "dit" / lora.WEIGHTS
    state = {k.replace("attn1.to_out.0", "attn1.norm_q"): v for k, v in load_file(weights).items()}
    save_file(state, weights)
    assert cli_main(["export-adapter", str(run), "--out", str(out)]) == 2
    assert "attn1.norm_q" in capsys.readouterr().err


def test_usage_snippet_names_the_runs_base_and_its_networks():
    tiny = usage_snippet(load_config(None, base_model="tiny", resolution=64))
    assert "assets/tiny-base" in tiny and "PixArt-XL-2" not in tiny
    assert "height=64, width=64, use_resolution_binning=False" in tiny and '"adapter/t5"' in tiny
    real = usage_snippet(load_config(None, base_model="pixart-alpha-512", resolution=512, **{"lora.t5": False}))
    assert '"PixArt-alpha/PixArt-XL-2-512x512"' in real and "adapter/t5" not in real


@pytest.mark.slow  # trains a tiny run, then runs its model card's code in a fresh interpreter
@pytest.mark.parametrize("base", ["tiny", "tiny-sigma"])
def test_model_card_snippet_runs_as_written(tmp_path, base):
    data = make_data(tmp_path / "data", n=2)
    from medart.hldf import train

    run = train(load_config(None, base_model=base, data=str(data), output=str(tmp_path / "run"), max_steps=2,
                            validation_every=1000, checkpoint_every=1000, **{"hldf.every": 2, "hldf.steps": 2}))
    card = (run / "adapter" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert ("PixArtSigmaPipeline" in code) == (base == "tiny-sigma")
    assert f"Med-Art Studio's `{base}` model" in card  # the card names the offline base, not "a local folder"
    assert ("of a PixArt-Σ pipeline" in card) == (base == "tiny-sigma")
    result = subprocess.run([sys.executable, "-c", code], cwd=run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    image = Image.open(run / "generated.png")
    assert image.size == (64, 64)
