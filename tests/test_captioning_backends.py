"""The transformers VLM backend (a tiny random BLIP saved and reloaded through the production
path) and the OpenAI-compatible backend (against a real local HTTP server)."""

import json
import os
import subprocess

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from captioning import make_captioner  # noqa: E402
from captioning.base import CaptionerError, SamplingConfig  # noqa: E402
from captioning.templates import get_builtin  # noqa: E402
from captioning.vsg import describe  # noqa: E402
from helpers import WORDS, ChatHandler, build_tiny_blip  # noqa: E402

torch.set_num_threads(1)
CHAT = "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"


@pytest.mark.slow  # builds and runs a vision-language model
def test_tiny_vlm_through_the_production_path(blip_dir):
    from transformers import AutoModelForImageTextToText

    assert AutoModelForImageTextToText.from_pretrained(blip_dir).__class__.__name__ == "BlipForConditionalGeneration"
    sampling = SamplingConfig(max_new_tokens=12, seed=7)
    cap = make_captioner("transformers", str(blip_dir), sampling=sampling, batch_size=2)
    assert cap.chat is False and cap.net.training is False
    ims = [Image.new("RGB", (64, 64), c) for c in ("red", "blue", "white")]
    t = get_builtin("endoscopy")
    simple = "an endoscopic image of polyps"
    raw = cap.generate(ims, [simple] * 3, t)
    assert len(raw) == 3
    for r in raw:  # BLIP continues the simple caption it is given as prefix
        assert r.text.startswith(simple) and len(r.text.split()) > len(simple.split())
        assert set(r.text.replace(",", " ").replace(".", " ").replace("'", " ").replace(":", " ").split()) <= set(WORDS)
        assert r.backend == "transformers" and r.model == str(blip_dir)
        assert r.sampling["temperature"] == 0.8 and r.sampling["top_k"] == 50 and r.sampling["top_p"] == 0.9
    again = make_captioner("transformers", str(blip_dir), sampling=sampling, batch_size=2).generate(ims, [simple] * 3, t)
    assert [a.text for a in again] == [r.text for r in raw]  # seeded sampling is reproducible
    out = describe(cap, ims[:1], [simple], t, config=None)
    assert out[0].text.lower().startswith(simple)
    cap.close()
    assert not hasattr(cap, "net")


def test_tiny_vlm_with_chat_template_returns_the_answer_only(tmp_path):
    folder = build_tiny_blip(tmp_path / "chat", chat_template=CHAT)
    cap = make_captioner("transformers", str(folder), sampling=SamplingConfig(max_new_tokens=8, seed=1))
    assert cap.chat is True
    t = get_builtin("endoscopy")
    out = cap.generate([Image.new("RGB", (40, 40), "red")], ["an endoscopic image of polyps"], t)
    assert out[0].prompt == t.render_prompt("an endoscopic image of polyps")
    assert "please describe" not in out[0].text  # the echoed prompt is cut off
    assert 1 <= len(out[0].text.split()) <= 8


def test_missing_model_gives_a_clear_error(tmp_path):
    with pytest.raises(CaptionerError, match="could not load the captioning model"):
        make_captioner("transformers", str(tmp_path / "nothing-here"))
    with pytest.raises(CaptionerError, match="SmolVLM"):  # the CPU default is not in the offline cache
        make_captioner("transformers", None)


def test_openai_backend_captions_through_a_local_server(server):
    cap = make_captioner("openai", "served-vlm", base_url=server, api_key="k123", batch_size=2)
    t = get_builtin("endoscopy")
    ims = [Image.new("RGB", (64, 48), (200, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 220))]
    out = describe(cap, ims, ["An endoscopic image of polyps"] * 2, t)
    assert out[0].text.startswith("An endoscopic image of polyps, predominantly red.")
    assert out[1].text.startswith("An endoscopic image of polyps, predominantly blue.")  # wrapper stripped
    assert out[0].backend == "openai" and out[0].model == f"served-vlm @ {server}"
    reqs = ChatHandler.requests
    assert len(reqs) == 2 and all(r["path"] == "/v1/chat/completions" for r in reqs)
    body = reqs[0]["body"]
    assert reqs[0]["auth"] == "Bearer k123"
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (0.8, 0.9, 50, 150)
    assert body["messages"][0]["content"][0]["text"] == t.render_prompt("An endoscopic image of polyps")
    assert cap.simplify("long text", 120) == "An endoscopic image of polyps, pink and round."
    assert ChatHandler.requests[-1]["body"]["max_tokens"] == 120


def test_openai_backend_retries_an_overloaded_server_with_backoff(server):
    ChatHandler.failures = 2
    cap = make_captioner("openai", "served-vlm", base_url=server, retries=2)
    out = cap.describe(Image.new("RGB", (32, 32), (0, 0, 220)), "An endoscopic image of polyps", get_builtin("endoscopy"))
    assert "An endoscopic image of polyps, predominantly blue" in out.text and len(ChatHandler.requests) == 3
    ChatHandler.failures = 5
    with pytest.raises(CaptionerError, match="answered 503"):
        make_captioner("openai", "served-vlm", base_url=server, retries=1).describe(
            Image.new("RGB", (16, 16)), "An image", get_builtin("endoscopy"))
    assert len(ChatHandler.requests) == 5  # one try and one retry, no more
    cap.close()


def test_openai_backend_errors_say_what_to_do(server):
    t = get_builtin("endoscopy")
    with pytest.raises(CaptionerError, match="answered 404.*Check --model"):
        make_captioner("openai", "other", base_url=server).describe(Image.new("RGB", (16, 16)), "An image", t)
    with pytest.raises(CaptionerError, match="cannot reach the caption server"):
        make_captioner("openai", "served-vlm", base_url="http://127.0.0.1:9/v1", retries=0, timeout=2).describe(
            Image.new("RGB", (16, 16)), "An image", t
        )
    with pytest.raises(ValueError, match="needs the server's URL"):
        make_captioner("openai", "served-vlm", base_url=None)


@pytest.mark.slow  # runs caption jobs in subprocesses
def test_cli_caption_with_each_backend(tmp_path, blip_dir, server, capsys):
    from medart.cli import main

    ws = tmp_path / "ws"
    src = tmp_path / "in"
    src.mkdir()
    for k, c in enumerate(("red", "blue", "green")):
        Image.new("RGB", (64, 64), c).save(src / f"{k}.png")

    def run(*args):
        capsys.readouterr()
        code = main([*args, "--workspace", str(ws)])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    r = run("import", str(src), "--label", "polyps", "--modality", "endoscopy", "--base-model", "tiny")
    assert r.returncode == 0, r.stderr
    r = run("caption", "--backend", "transformers", "--model", str(blip_dir), "--ids", "1", "--max-new-tokens", "10", "--base-model", "tiny")
    assert r.returncode == 0, r.stderr
    r = run("caption", "--backend", "openai", "--model", "served-vlm", "--url", server, "--ids", "2", "--base-model", "tiny")
    assert r.returncode == 0, r.stderr
    r = run("caption", "--only-missing", "--base-model", "tiny")
    assert r.returncode == 0, r.stderr
    assert "captioned 1 image" in r.stdout
    r = run("list", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["status"] for x in rows] == ["draft"] * 3
    assert rows[1]["text"].startswith("An endoscopic image of polyps, predominantly blue.")
    assert rows[2]["text"].startswith("An endoscopic image of polyps, predominantly green.")
    assert rows[0]["text"].lower().startswith("an endoscopic image of polyps")
    assert all(0 < x["tokens"] <= 120 for x in rows)


def test_cli_caption_errors_exit_2(tmp_path, capsys):
    from medart.cli import main

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (32, 32), "red").save(src / "a.png")
    w = ["--workspace", str(tmp_path / "ws"), "--base-model", "tiny"]
    assert main(["import", str(src), *w]) == 0
    capsys.readouterr()
    assert main(["caption", "--backend", "transformers", "--model", str(tmp_path / "no-model"), *w]) == 2
    assert "could not load the captioning model" in capsys.readouterr().err
    assert main(["caption", "--simplify", *w]) == 2
    assert "--simplify-model" in capsys.readouterr().err
    assert main(["caption", "--backend", "openai", "--model", "m", *w]) == 2
    assert "needs the server's URL" in capsys.readouterr().err
    assert main(["caption", "--template", "nope", *w]) == 2
    assert "unknown modality template 'nope'" in capsys.readouterr().err
