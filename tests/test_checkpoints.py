"""Checkpoints hold no pickle: optimizer and scheduler state round-trip exactly through
safetensors + JSON, and a crafted pickle in a checkpoint never runs on resume."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from helpers import make_data

from medart import checkpoints
from medart.cli import main as cli_main
from medart.state_files import StateFileError, load_state, save_state


class Payload:
    """What an attacker would put into a pickled checkpoint: unpickling it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _rewrite_manifest(ckpt: Path) -> None:
    """Recompute the manifest's hashes so the tampered checkpoint looks consistent."""
    files = {str(p.relative_to(ckpt)): checkpoints._sha256(p) for p in sorted(ckpt.rglob("*"))
             if p.is_file() and p.name != checkpoints.MANIFEST}
    step = json.loads((ckpt / checkpoints.MANIFEST).read_text())["step"]
    (ckpt / checkpoints.MANIFEST).write_text(json.dumps({"step": step, "files": files}))
    assert checkpoints.is_complete(ckpt)


def _model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 3))
    return model, opt, sched


def _steps(model, opt, sched, start, stop):
    for step in range(start, stop):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 6, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_optimizer_state_round_trips_exactly(tmp_path):
    model, opt, sched = _model_and_optimizer()
    _steps(model, opt, sched, 0, 5)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    save_state({"optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(), "odd": {1: (float("inf"), None)}},
               tmp_path / "s.safetensors", tmp_path / "s.json")
    _steps(model, opt, sched, 5, 10)  # the uninterrupted run

    resumed, opt2, sched2 = _model_and_optimizer(seed=1)
    resumed.load_state_dict(weights)
    state = load_state(tmp_path / "s.safetensors", tmp_path / "s.json")
    assert state["odd"] == {1: (float("inf"), None)}
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["lr_scheduler"])
    _steps(resumed, opt2, sched2, 5, 10)
    for a, b in zip(resumed.parameters(), model.parameters()):
        assert torch.equal(a, b)  # bit for bit
    assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(TypeError, match="without pickle"):
        save_state({"x": Payload(tmp_path / "m")}, tmp_path / "t.safetensors", tmp_path / "t.json")
    (tmp_path / "s.json").write_text('{"optimizer": {"$tensor": "nowhere"}}')
    with pytest.raises(StateFileError, match="nowhere"):
        load_state(tmp_path / "s.safetensors", tmp_path / "s.json")


@pytest.mark.slow  # trains
def test_resume_never_unpickles(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=2)
    run = tmp_path / "run"
    marker = tmp_path / "pwned"

    def train(*extra):
        return cli_main(["train", "--base-model", "tiny", "--data", str(data), "--output", str(run),
                         "--checkpoint-every", "2", "--validation-every", "1000", "--hldf-every", "2",
                         "--hldf-steps", "2", *extra])

    assert train("--max-steps", "2") == 0
    ckpt = run / "checkpoints" / "step-000002"
    names = sorted(p.name for p in ckpt.iterdir())
    assert "training_state.json" in names and "training_state.safetensors" in names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin", ".pkl"))]
    pristine = tmp_path / "pristine"
    shutil.copytree(ckpt, pristine)

    # 1. a pickle beside the new files, manifest consistent: never opened, resume works
    torch.save({"optimizer": Payload(marker)}, ckpt / "training_state.pt")
    _rewrite_manifest(ckpt)
    assert train("--max-steps", "4", "--resume", str(ckpt)) == 0
    assert not marker.exists()

    # 2. a checkpoint in the old layout (the state only in the pickle): refused with what to do
    shutil.rmtree(ckpt)
    shutil.copytree(pristine, ckpt)
    for name in ("training_state.json", "training_state.safetensors"):
        (ckpt / name).unlink()
    with open(ckpt / "training_state.pt", "wb") as f:
        pickle.dump({"optimizer": Payload(marker), "lr_scheduler": {}}, f)
    _rewrite_manifest(ckpt)
    capsys.readouterr()
    assert train("--max-steps", "4", "--resume", str(ckpt)) == 2
    err = capsys.readouterr().err
    assert "older version" in err and "not read" in err and "without --resume" in err and "another --output" in err
    assert not marker.exists()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"

    # 3. a state document that does not fit: a clear refusal, not a traceback
    shutil.rmtree(ckpt)
    shutil.copytree(pristine, ckpt)
    (ckpt / "training_state.json").write_text(json.dumps({"optimizer": {"$tensor": "elsewhere"}, "lr_scheduler": {}}))
    _rewrite_manifest(ckpt)
    assert train("--max-steps", "4", "--resume", str(ckpt)) == 2
    assert "cannot resume from" in capsys.readouterr().err
    assert not marker.exists()
