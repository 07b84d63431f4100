"""VSG rules: start with the simple caption, no echo, no drift, at most 120 T5 tokens."""

import pytest
from PIL import Image
from transformers import AutoTokenizer

from captioning.base import Caption, Captioner
from captioning.templates import BUILTIN_TEMPLATES, ModalityTemplate, get_builtin
from captioning.vsg import VSGConfig, count_tokens, describe, problems, trim_to_tokens
from medart.tiny_base import TOKENIZER_DIR as TINY_TOKENIZER

SIMPLE = "An endoscopic image of polyps"
GOOD = (
    "An endoscopic image of polyps, predominantly pink with white speckles. The lesion is round and raised, "
    "surrounded by smooth pink mucosa. The surface appears wet and glossy with no bleeding."
)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(TINY_TOKENIZER)


class Scripted(Captioner):
    """Test double: returns queued texts per image index, recording how often each was asked."""

    backend, model = "scripted", "script"

    def __init__(self, scripts):
        self.scripts = [list(s) for s in scripts]
        self.calls = []

    def generate(self, images, simple_captions, template):
        out = []
        for im in images:
            i = im.info["index"]
            self.calls.append(i)
            out.append(Caption(self.scripts[i].pop(0), self.backend, self.model, template.render_prompt("x")))
        return out


def images(n):
    out = []
    for i in range(n):
        im = Image.new("RGB", (8, 8))
        im.info["index"] = i
        out.append(im)
    return out


def test_templates_render_the_papers_prompt():
    t = get_builtin("endoscopy")
    assert t.features == ["specific color", "shape", "surrounding mucosa", "surface texture", "bleeding condition"]
    assert t.simple_caption("polyps") == SIMPLE
    p = t.render_prompt(SIMPLE)
    assert p.startswith(SIMPLE + ". Please describe")
    assert "specific color, shape, surrounding mucosa, surface texture, bleeding condition" in p
    assert f"Start with '{SIMPLE}'" in p and "100 words" in p
    assert set(BUILTIN_TEMPLATES) >= {"endoscopy", "dermoscopy", "histology", "radiology", "custom"}
    with pytest.raises(ValueError, match="unknown placeholders"):
        ModalityTemplate("x", "An image", prompt="{simple_caption} {patient}").validate()
    with pytest.raises(ValueError, match="unknown modality template"):
        get_builtin("nope")


def test_rules_detect_start_echo_drift():
    t = get_builtin("endoscopy")
    cfg = VSGConfig()
    assert problems(GOOD, SIMPLE, t, cfg) == []
    assert problems(GOOD.lower(), SIMPLE, t, cfg) == []  # case does not matter
    assert "start" in problems("Polyps are visible here with a pink, round and smooth surface overall.", SIMPLE, t, cfg)
    echo = SIMPLE + ", specific color, shape, surrounding mucosa, surface texture, bleeding condition."
    assert "echo" in problems(echo, SIMPLE, t, cfg)
    assert "echo" in problems(SIMPLE + ". Color: shape. Texture: surface. Mucosa: bleeding condition shape.", SIMPLE, t, cfg)
    assert "drift" in problems(SIMPLE + ".", SIMPLE, t, cfg)
    assert "drift" in problems(SIMPLE + ". I'm sorry, I cannot describe medical images for you today.", SIMPLE, t, cfg)
    assert "drift" in problems(SIMPLE + " " + "pink " * 20, SIMPLE, t, cfg)
    xray = SIMPLE + ". This chest X-ray shows bright ribs and dark lungs with a round opacity."
    assert problems(xray, SIMPLE, t, cfg) == ["drift"]  # another modality
    assert problems(xray.replace(SIMPLE, "A radiology image of nodules"), "A radiology image of nodules",
                    get_builtin("radiology"), cfg) == []  # fmt: skip


def test_regenerates_until_good_then_stops(tok):
    t = get_builtin("endoscopy")
    echo = SIMPLE + ", specific color, shape, surrounding mucosa, surface texture, bleeding condition."
    cap = Scripted([[echo, "Sorry.", GOOD], [GOOD], [echo, echo, echo, echo]])
    out = describe(cap, images(3), [SIMPLE] * 3, t, tokenizer=tok, config=VSGConfig(max_attempts=3))
    assert cap.calls.count(0) == 3 and cap.calls.count(1) == 1 and cap.calls.count(2) == 3  # limit respected
    assert out[0].text == GOOD and out[0].attempts == 3
    assert out[1].text == GOOD and out[1].attempts == 1 and out[1].rules == []
    assert any(r.startswith("unresolved: echo") for r in out[2].rules)
    assert all(o.token_count == count_tokens(tok, o.text) for o in out)


def test_missing_start_is_regenerated_then_repaired(tok):
    t = get_builtin("endoscopy")
    body = "Pink round polyp with a glossy surface, surrounded by smooth mucosa and no visible bleeding at all."
    cap = Scripted([[body, body]])
    out = describe(cap, images(1), [SIMPLE], t, tokenizer=tok, config=VSGConfig(max_attempts=2))
    assert out[0].text == f"{SIMPLE}. {body}"
    assert "prefixed simple caption" in out[0].rules
    # a case-different start is normalised to the simple caption's own spelling
    cap = Scripted([['"' + GOOD.upper() + '"']])
    out = describe(cap, images(1), [SIMPLE], t, tokenizer=tok)
    assert out[0].text.startswith(SIMPLE + ", PREDOMINANTLY PINK")


def test_trim_keeps_whole_sentences_within_120_tokens(tok):
    sentences = [GOOD] + [f"Detail number {k} shows a pink and white glossy surface with fine folds." for k in range(30)]
    long = " ".join(sentences)
    assert count_tokens(tok, long) > 300
    short = trim_to_tokens(long, tok, 120)
    n = count_tokens(tok, short)
    assert 90 <= n <= 120
    assert short.startswith(GOOD) and short.endswith(".")
    assert long.startswith(short)  # whole leading sentences only
    kept = short.count("Detail number")
    assert count_tokens(tok, short + " " + sentences[1 + kept]) > 120
    # a single overlong sentence is cut at a word boundary
    one = SIMPLE + ", " + ", ".join(["pink glossy folds"] * 80) + "."
    cut = trim_to_tokens(one, tok, 120)
    assert count_tokens(tok, cut) <= 120 and cut.startswith(SIMPLE) and cut.endswith(".")
    assert trim_to_tokens(GOOD, tok, 120) == GOOD


def test_simplifier_is_used_then_trim_guarantees_limit(tok):
    t = get_builtin("endoscopy")
    long = " ".join([GOOD] + ["Another long sentence about pink glossy mucosa and folds."] * 30)
    seen = []

    def simplifier(text, max_tokens):
        seen.append((text, max_tokens))
        return "polyps, pink and round. " + " ".join(["Glossy pink surface."] * 60)  # still too long

    out = describe(Scripted([[long]]), images(1), [SIMPLE], t, tokenizer=tok, config=VSGConfig(simplifier=simplifier))
    assert seen and seen[0][1] == 120
    assert out[0].token_count <= 120 and out[0].text.startswith(SIMPLE)
    assert any(r.startswith("simplified") for r in out[0].rules) and any(r.startswith("trimmed") for r in out[0].rules)


def test_offline_describer_passes_the_rules(tok):
    from captioning.offline import OfflineDescriber

    t = get_builtin("dermoscopy")
    im = Image.new("RGB", (128, 128), (230, 190, 160))
    out = describe(OfflineDescriber(), [im], [t.simple_caption("nevus")], t, tokenizer=tok)
    assert out[0].text.startswith("A dermoscopic image of nevus, ")
    assert out[0].attempts == 1 and out[0].rules == [] and out[0].token_count <= 120


@pytest.mark.slow  # builds and runs a T5
def test_transformers_simplifier_with_a_tiny_t5(tmp_path, tok):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from captioning.simplify import TransformersSimplifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    long = " ".join([GOOD] + ["Another long sentence about pink glossy mucosa and folds."] * 30)
    with TransformersSimplifier(str(tmp_path / "t5"), num_beams=2) as simplifier:
        short = simplifier(long, 40)
        assert short and 29 <= len(tok(short)["input_ids"]) <= 40  # within the 75%..100% target
        out = describe(Scripted([[long]]), images(1), [SIMPLE], get_builtin("endoscopy"), tokenizer=tok,
                       config=VSGConfig(simplifier=simplifier))  # fmt: skip
    assert any(r.startswith("simplified") for r in out[0].rules)
    assert out[0].text.startswith(SIMPLE) and out[0].token_count <= 120
    with pytest.raises(ValueError, match="could not load the simplify model"):
        TransformersSimplifier(str(tmp_path / "missing"))

    # the CLI wiring: a tight token limit makes the offline captions go through the simplifier
    from medart.cli import main
    from medart.workspace import Workspace

    Image.new("RGB", (64, 64), (230, 120, 120)).save(tmp_path / "a.png")
    w = ["--workspace", str(tmp_path / "ws"), "--base-model", "tiny"]
    assert main(["import", str(tmp_path / "a.png"), "--label", "polyps", "--modality", "endoscopy", *w]) == 0
    assert main(["caption", "--simplify-model", str(tmp_path / "t5"), "--max-caption-tokens", "30", *w]) == 0
    with Workspace(tmp_path / "ws") as ws:
        item = ws.get(1)
    assert any(r.startswith("simplified") for r in item.provenance["rules"])
    assert item.text.startswith(SIMPLE) and item.token_count <= 30
