"""EMA of the LoRA weights: what the adapter and the samples hold, and exact resume."""

import os
import signal

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from helpers import make_data
from medart import checkpoints
from medart.config import load_config
from medart.hldf import Trainer, train


def _config(data, out, **kw):
    settings = {"base_model": "tiny", "data": str(data), "output": str(out), "max_steps": 8, "ema_decay": 0.9,
                "checkpoint_every": 100, "validation_every": 100, "learning_rate": 1e-3,
                "hldf.every": 2, "hldf.steps": 3}
    settings.update(kw)
    return load_config(None, **settings)


def _adapter_key(ema_key: str) -> tuple[str, str]:
    """('dit', 'base_model.model.<name>') for the EMA key 'dit.<name with .default>'."""
    net, name = ema_key.split(".", 1)
    return net, "base_model.model." + name.replace(".default", "")


def test_adapter_holds_the_ema_and_the_ema_follows_its_formula(tmp_path):
    data = make_data(tmp_path / "data", n=2)
    trainer = Trainer(_config(data, tmp_path / "run"))
    ema = {k: v.clone() for k, v in trainer.ema.items()}
    for step in range(3):  # ema = d * ema + (1 - d) * w, with the warm-up d = min(0.9, (1 + t) / (10 + t))
        trainer.train_step()
        d = min(0.9, (1 + step + 1) / (10 + step + 1))
        weights = checkpoints.trainable_state(trainer.models)
        for k in ema:
            ema[k] = d * ema[k] + (1 - d) * weights[k]
    assert all(torch.allclose(ema[k], trainer.ema[k], atol=1e-7) for k in ema)
    raw = checkpoints.trainable_state(trainer.models)
    assert any(not torch.equal(raw[k], trainer.ema[k]) for k in raw)  # the two differ after training
    trainer.run_loop()
    adapters = {net: load_file(tmp_path / "run" / "adapter" / net / "adapter_model.safetensors") for net in ("dit", "t5")}
    for key, value in trainer.ema.items():
        net, name = _adapter_key(key)
        assert torch.equal(adapters[net][name], value.float()), key
    raw = checkpoints.trainable_state(trainer.models)  # the models hold the trained weights again
    assert any(not torch.equal(raw[k], trainer.ema[k]) for k in raw)
    card = ModelCard.load(tmp_path / "run" / "adapter" / "README.md")  # the card a push uploads too
    assert "EMA" in card.text and card.data.license == "openrail++" and "base_model" not in card.data.to_dict()
    assert card.data.widget and all((tmp_path / "run" / w["output"]["url"]).is_file() for w in card.data.widget)
    assert {w["output"]["url"].split("/")[1] for w in card.data.widget} == {f"step-{trainer.step:06d}"}


@pytest.mark.slow  # trains twice
def test_resume_restores_the_ema_exactly(tmp_path):
    data = make_data(tmp_path / "data", n=2)
    train(_config(data, tmp_path / "whole"))

    def stop_at_3(step, total, last):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = train(_config(data, tmp_path / "resumed"), progress=stop_at_3)
    ckpt = checkpoints.complete(stopped / "checkpoints")[-1]
    assert ckpt.name == "step-000004" and (ckpt / checkpoints.EMA).is_file()
    train(_config(data, tmp_path / "resumed", resume="latest"))
    for net in ("dit", "t5"):
        whole = load_file(tmp_path / "whole" / "adapter" / net / "adapter_model.safetensors")
        resumed = load_file(tmp_path / "resumed" / "adapter" / net / "adapter_model.safetensors")
        assert whole.keys() == resumed.keys()
        assert all(torch.allclose(whole[k], resumed[k], rtol=1e-6, atol=1e-7) for k in whole), net
