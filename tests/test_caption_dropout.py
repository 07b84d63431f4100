"""Caption dropout: which captions a diffusion step trains on, the same after a resume, never on colour steps."""

import pytest
import torch

from medart import dpm_solver
from medart.config import load_config
from medart.hldf import Trainer, caption_drops
from medart.run_folder import RunFolder
from helpers import make_data


def test_the_drop_pattern_is_a_function_of_seed_step_and_process():
    """What makes a resumed run drop what an uninterrupted one would: the draw depends on
    (seed, step, process) only, not on the global random state nor on what came before."""
    first = [caption_drops(42, step, 0, 4, 0.3) for step in range(50)]
    torch.manual_seed(0)
    torch.rand(1000)  # whatever the training drew in between
    assert [caption_drops(42, step, 0, 4, 0.3) for step in reversed(range(50))][::-1] == first
    assert first != [caption_drops(7, step, 0, 4, 0.3) for step in range(50)]
    assert first != [caption_drops(42, step, 1, 4, 0.3) for step in range(50)]  # processes draw their own
    state = torch.get_rng_state()
    assert caption_drops(42, 3, 0, 4, 0.3) == first[3] and torch.equal(torch.get_rng_state(), state)
    assert all(caption_drops(42, s, 0, 4, 1.0) == [True] * 4 for s in range(50))
    assert all(caption_drops(42, s, 0, 4, 0.0) == [False] * 4 for s in range(50))
    rate = sum(sum(caption_drops(42, s, 0, 8, 0.1)) for s in range(1000)) / 8000
    assert 0.09 < rate < 0.11


def test_caption_dropout_is_a_probability():
    assert load_config(None).caption_dropout == 0.0  # the default, chosen by benchmarks/hldf_ablation.py
    with pytest.raises(ValueError, match="caption_dropout is a probability between 0 and 1, not 1.5"):
        load_config(None, caption_dropout=1.5)


def _spy(monkeypatch, empty=False):
    """Record, per training step, every list of captions `Trainer._text` encodes and the
    embeddings it returns (the first call of a step is the diffusion batch's); with `empty`,
    also the unconditional embedding the sampler's CFG makes at the start of the step."""
    steps = []
    text, train_step = Trainer._text, Trainer.train_step

    def spy_text(self, captions):
        out = text(self, captions)
        steps[-1]["calls"].append((list(captions), out[0].detach().clone()))
        return out

    def spy_step(self):
        steps.append({"calls": []})
        if empty:
            with torch.no_grad():
                steps[-1]["empty"] = dpm_solver.conditioning(self.base, ["x"])[2][0]
        return train_step(self)

    monkeypatch.setattr(Trainer, "_text", spy_text)
    monkeypatch.setattr(Trainer, "train_step", spy_step)
    return steps


def _config(data, output, **kw):
    settings = {"base_model": "tiny", "data": str(data), "output": str(output), "max_steps": 4,
                "validation_every": 1000, "checkpoint_every": 1000, "hldf.every": 2, "hldf.steps": 3}
    settings.update(kw)
    return load_config(None, **settings)


@pytest.mark.slow  # trains 4 steps
@pytest.mark.parametrize("dropout, settings", [
    (1.0, {}),  # T5 LoRA, the default mode (colour steps take a class's captions)
    (1.0, {"lora.t5": False, "cache_text": True, "hldf.mode": "paper"}),  # cached embeddings; the batch's captions
    (0.0, {}),
], ids=["all-t5-lora", "all-cached-text-paper", "none"])
def test_dropout_empties_every_diffusion_caption_or_none_and_never_a_colour_steps(tmp_path, monkeypatch, dropout,
                                                                                   settings):
    steps = _spy(monkeypatch, empty=True)
    data = make_data(tmp_path / "data", n=2)
    trainer = Trainer(_config(data, tmp_path / "run", caption_dropout=dropout, **settings))
    trainer.run_loop()
    captions = {ex.caption for ex in trainer.data.examples}
    assert len(steps) == 4
    for step, seen in enumerate(steps):
        (diffusion, embeds), *colour = seen["calls"]
        if dropout == 1.0:  # the unconditional prompt exactly as the sampler's CFG makes it at that step
            assert diffusion == [""] and torch.allclose(embeds[0], seen["empty"], atol=1e-6), step
        else:
            assert diffusion and set(diffusion) <= captions, step
        if step % 2 == 1:  # a colour step: its images come from real captions, against the empty one
            generated = [c for texts, _ in colour for c in texts if c]
            assert generated and set(generated) <= captions, step
            assert [""] * len(generated) in [texts for texts, _ in colour]
        else:
            assert not colour
    rows = [r for r in trainer.run.metrics() if "loss" in r]
    assert [r.get("captions_dropped") for r in rows] == ([1] * 4 if dropout else [None] * 4)


@pytest.mark.slow  # trains 4 + 2 + 2 steps
def test_a_resumed_run_drops_the_captions_an_uninterrupted_one_drops(tmp_path, monkeypatch):
    steps = _spy(monkeypatch)
    data = make_data(tmp_path / "data", n=2)
    kw = {"caption_dropout": 0.5, "checkpoint_every": 2, "learning_rate": 1e-3}
    Trainer(_config(data, tmp_path / "whole", **kw)).run_loop()
    whole = [seen["calls"][0][0] for seen in steps]
    assert [""] in whole and any(c != [""] for c in whole)  # both kinds of step in four

    steps.clear()
    first = Trainer(_config(data, tmp_path / "split", **kw))
    first.progress = lambda step, total, last: setattr(first, "stop_requested", step == 1)  # read after step 2
    first.run_loop()
    assert first.run.read_status()["step"] == 2
    assert first.run.read_status()["state"] == "stopped"
    Trainer(_config(data, tmp_path / "split", resume="latest", **kw)).run_loop()
    assert [seen["calls"][0][0] for seen in steps] == whole

    def rows(run):
        return {r["step"]: (r["loss"], r.get("color_loss") or 0.0, r["captions_dropped"])
                for r in RunFolder(tmp_path / run).metrics() if "loss" in r}

    assert "Caption dropout 0.5: that share of the diffusion steps' examples" in (tmp_path / "split" / "adapter" / "README.md").read_text()
    resumed, expected = rows("split"), rows("whole")
    assert sorted(resumed) == [1, 2, 3, 4]
    for step, row in expected.items():
        assert resumed[step] == pytest.approx(row, rel=1e-6, abs=1e-7), step
