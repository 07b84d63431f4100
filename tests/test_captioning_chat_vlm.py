"""The chat-template VLM families behind the suggested models, through the transformers backend.

Tiny random models of the real classes (Idefics3, which SmolVLM uses, and LLaVA-NeXT), each
with a word-level tokenizer built here and a chat template that renders messages the way the
real model's does, are saved to a folder and loaded back by `make_captioner`, as a user's
model would be. The checks look at what the backend hands to `generate` (the chat prompt,
image tokens, padding, pixels) and at what it makes of the answer.
"""

import gc
import json
import os
import shutil
import weakref
from contextlib import contextmanager

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from captioning import make_captioner  # noqa: E402
from captioning.base import SamplingConfig  # noqa: E402
from captioning.templates import get_builtin  # noqa: E402

torch.set_num_threads(1)

TEMPLATE = get_builtin("endoscopy")
SIMPLE = ["An endoscopic image of polyps", "An endoscopic image of a polyp with bleeding", "An endoscopic image"]
COLOURS = {"red": 0, "green": 1, "blue": 2}  # colour -> the RGB channel that dominates its pixels

# SmolVLM's template: "<|im_start|>User:<image>{prompt}<end_of_utterance>\nAssistant:"
SMOLVLM_CHAT = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# llama3-llava-next's template: a Llama 3 header per turn, the images first, then the text.
LLAVA_NEXT_CHAT = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + '<|eot_id|>' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def word_tokenizer(special: list[str], bos: str, eos: str, pad: str, adds_bos: bool):
    """A fast word-level tokenizer that knows every word of the VSG prompts used here, with
    `special` as atomic special tokens; `adds_bos` makes it prepend BOS like Llama 3's does."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    text = " ".join(TEMPLATE.render_prompt(s) for s in SIMPLE) + " user assistant"
    words = sorted({w.lower() for w, _ in split.pre_tokenize_str(text)})
    tok = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(["<unk>", *words])}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = split
    tok.add_special_tokens(special)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token=bos, eos_token=eos, pad_token=pad)


def text_config(tokenizer) -> dict:
    return dict(
        model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip


def build_tiny_idefics3(folder):
    """SmolVLM's architecture: 64 px tiles of 8 px patches, pixel-shuffled by 2 -> 16 image tokens."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    special = ["<pad>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"]
    tokenizer = word_tokenizer(special, bos="<|im_start|>", eos="<end_of_utterance>", pad="<pad>", adds_bos=False)
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 64}, do_image_splitting=False
    )
    processor = Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=16, chat_template=SMOLVLM_CHAT
    )
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=64, patch_size=8),
        text_config=text_config(tokenizer),
        scale_factor=2, image_token_id=processor.image_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava_next(folder, bos_in_template: bool):
    """LLaVA-NeXT with a CLIP tower of 8 px patches on 32 px crops and any-res grids up to 64 px.
    `bos_in_template` writes `{{ bos_token }}` first, as Llama-3.2-Vision's and Gemma 3's templates do."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    special = ["<|begin_of_text|>", "<|eot_id|>", "<pad>", "<|start_header_id|>", "<|end_header_id|>", "<image>"]
    tokenizer = word_tokenizer(special, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<pad>", adds_bos=True)
    grid = [[32, 32], [32, 64], [64, 32]]
    images = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=grid
    )
    chat = ("{{ bos_token }}" if bos_in_template else "") + LLAVA_NEXT_CHAT
    processor = LlavaNextProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=chat,
    )  # fmt: skip
    config = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32),
        text_config=text_config(tokenizer),
        image_token_index=processor.image_token_id, image_grid_pinpoints=grid, vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=16,
    )  # fmt: skip
    torch.manual_seed(0)
    LlavaNextForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def idefics3_dir(tmp_path_factory):
    return build_tiny_idefics3(tmp_path_factory.mktemp("idefics3"))


@contextmanager
def recorded_generate(net):
    """Record every `net.generate` call: its inputs and the ids it returned."""
    calls = []
    original = net.generate

    def generate(**kwargs):
        out = original(**kwargs)
        calls.append({**kwargs, "output": out})
        return out

    net.generate = generate
    try:
        yield calls
    finally:
        del net.generate


def subsequence_at(row: list[int], part: list[int]) -> int:
    """Where `part` occurs contiguously in `row` (-1 when it does not)."""
    return next((i for i in range(len(row) - len(part) + 1) if row[i : i + len(part)] == part), -1)


def check_chat_family(folder, model_class: str, image_tokens_per_row: int, tiles_per_image: int, tile_px: int):
    """The production path on a saved chat VLM: one batched generate call whose inputs carry
    the chat prompt, the image tokens and each image's pixels, and captions that are the
    answers only, with provenance, reproducible under a seed; `close()` frees the weights."""
    from transformers.utils import is_torchvision_available

    sampling = SamplingConfig(max_new_tokens=8, seed=11)
    cap = make_captioner("transformers", str(folder), sampling=sampling, batch_size=3)
    assert type(cap.net).__name__ == model_class
    assert cap.net.training is False and not any(m.training for m in cap.net.modules())
    assert cap.chat is True and not cap.encoder_decoder
    image_processor = type(cap.processor.image_processor).__name__
    # the folder names the torchvision class; without torchvision transformers loads the PIL one
    assert image_processor.endswith("ImageProcessor" if is_torchvision_available() else "ImageProcessorPil")

    ims = [Image.new("RGB", (48, 48), c) for c in COLOURS]
    with recorded_generate(cap.net) as calls:
        out = cap.generate(ims, SIMPLE, TEMPLATE)
    assert len(calls) == 1 and len(out) == 3  # the three images went through as one batch
    call = calls[0]
    tokenizer = cap.processor.tokenizer
    ids, mask = call["input_ids"], call["attention_mask"]
    assert ids.shape[0] == 3

    features = tokenizer(", ".join(TEMPLATE.features), add_special_tokens=False)["input_ids"]
    image_id = cap.processor.image_token_id
    for i, simple in enumerate(SIMPLE):
        row = ids[i].tolist()
        n_pad = int((mask[i] == 0).sum())
        assert mask[i, n_pad:].all() and row[:n_pad] == [tokenizer.pad_token_id] * n_pad  # padded on the left
        assert row[n_pad] == tokenizer.bos_token_id and row.count(tokenizer.bos_token_id) == 1
        assert row.count(image_id) == image_tokens_per_row
        assert tokenizer.unk_token_id not in row  # the whole prompt was understood
        prompt = tokenizer(TEMPLATE.render_prompt(simple), add_special_tokens=False)["input_ids"]
        at = subsequence_at(row, prompt)
        assert at > max(j for j, t in enumerate(row) if t == image_id)  # the image, then the VSG prompt
        assert subsequence_at(row, features) > at  # which asks for the template's features
    assert int((mask == 0).sum(1).max()) > 0  # the prompts differ in length, so padding was exercised

    pixels = call["pixel_values"]
    assert tuple(pixels.shape) == (3, tiles_per_image, 3, tile_px, tile_px)
    for i, channel in enumerate(COLOURS.values()):  # each row carries its own image, in order
        assert int(pixels[i].float().mean(dim=(0, 2, 3)).argmax()) == channel

    n = ids.shape[1]
    generated = call["output"]
    assert torch.equal(generated[:, :n], ids) and 0 < generated.shape[1] - n <= sampling.max_new_tokens
    for i, r in enumerate(out):
        assert r.text == tokenizer.decode(generated[i, n:], skip_special_tokens=True).strip()  # the answer only
        assert r.text and "<" not in r.text
        assert r.backend == "transformers" and r.model == str(folder)
        assert r.sampling == sampling.as_dict() and r.prompt == TEMPLATE.render_prompt(SIMPLE[i])

    assert [r.text for r in cap.generate(ims, SIMPLE, TEMPLATE)] == [r.text for r in out]  # seeded
    other_seed = SamplingConfig(max_new_tokens=8, seed=12)
    with make_captioner("transformers", str(folder), sampling=other_seed, batch_size=3) as other:
        assert [r.text for r in other.generate(ims, SIMPLE, TEMPLATE)] != [r.text for r in out]  # it is sampled

    net = weakref.ref(cap.net)
    cap.close()
    gc.collect()
    assert net() is None and not hasattr(cap, "net") and not hasattr(cap, "processor")


@pytest.mark.slow  # builds and runs a vision-language model
def test_smolvlm_family_through_the_production_path(idefics3_dir):
    # one 64 px tile: <fake><global-img> 16 x <image> <fake>
    check_chat_family(idefics3_dir, "Idefics3ForConditionalGeneration", 16, tiles_per_image=1, tile_px=64)


@pytest.mark.slow  # builds and runs a vision-language model
@pytest.mark.parametrize("bos_in_template", [False, True], ids=["tokenizer-adds-bos", "template-writes-bos"])
def test_llava_next_family_through_the_production_path(tmp_path, bos_in_template):
    folder = build_tiny_llava_next(tmp_path / "llava-next", bos_in_template)
    # a square image fits the 32 px grid: 16 base features + 4 x 4 tile features + 4 row newlines = 36
    # tokens (the CLS token is dropped by the "default" feature strategy); pixels are base + one tile
    check_chat_family(folder, "LlavaNextForConditionalGeneration", 36, tiles_per_image=2, tile_px=32)


def test_smolvlm_hub_layout_loads_its_image_processor_without_torchvision(idefics3_dir, tmp_path):
    """SmolVLM on the hub keeps its image processor in preprocessor_config.json under the
    torchvision class name; the folder must load and caption whether torchvision is there or not."""
    from transformers.utils import is_torchvision_available

    folder = tmp_path / "hub-layout"
    shutil.copytree(idefics3_dir, folder)
    processor_config = json.loads((folder / "processor_config.json").read_text())
    image_config = processor_config.pop("image_processor")
    assert image_config["image_processor_type"] == "Idefics3ImageProcessor"
    image_config["processor_class"] = "Idefics3Processor"
    (folder / "preprocessor_config.json").write_text(json.dumps(image_config))
    (folder / "processor_config.json").write_text(json.dumps(processor_config))

    with make_captioner("transformers", str(folder), sampling=SamplingConfig(max_new_tokens=4, seed=1)) as cap:
        image_processor = cap.processor.image_processor
        expected = "Idefics3ImageProcessor" if is_torchvision_available() else "Idefics3ImageProcessorPil"
        assert type(image_processor).__name__ == expected
        assert image_processor.max_image_size == {"longest_edge": 64} and image_processor.do_image_splitting is False
        assert cap.processor.image_seq_len == 16
        with recorded_generate(cap.net) as calls:
            out = cap.generate([Image.new("RGB", (80, 80), "blue")], SIMPLE[:1], TEMPLATE)
        assert len(out) == 1 and out[0].text
        assert calls[0]["input_ids"][0].tolist().count(cap.processor.image_token_id) == 16
