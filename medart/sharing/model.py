"""A run's adapter on the Hugging Face Hub: `python -m medart push RUN --repo OWNER/NAME`.

The repository mirrors the run folder's layout, so the paths in the card hold in both:

    README.md                          the model card (`medart.model_card`, as adapter/README.md)
    adapter/dit/  adapter/t5/          the exported peft adapters (adapter_config.json + safetensors)
    samples/step-NNNNNN/NN.png         the fixed-seed samples of the last validation (the widget)

Only a finished run is shared: its exported adapter (`medart.run_folder.adapter_path`), never
a checkpoint's optimiser state, the training data, its cache or the logs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from medart.model_card import last_samples, model_card
from medart.run_folder import RunFolder, adapter_path
from medart.sharing.hub import ShareResult, check_repo_id, share

NETS = ("dit", "t5")


def exported_adapter(run: str | Path) -> Path:
    """The run's exported adapter folder; a clear error for a run without one."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.yaml); give the folder a training wrote, "
                                "e.g. runs/NAME")
    found = adapter_path(run)
    if found is None:
        raise ValueError(f"run {run.name} has no adapter to share: it has not finished training (and wrote no "
                         "checkpoint). Train it to the end, then push it")
    if found != run / "adapter":
        status = RunFolder(run).read_status()
        raise ValueError(f"run {run.name} stopped at step {status.get('step', '?')} of {status.get('total', '?')} "
                         f"and has only a checkpoint ({found.name}), no exported adapter. Resume it to the end "
                         f"(`python -m medart train {run / 'config.yaml'} --resume latest` or the Train tab's "
                         "Resume), then push it")
    return found


def build_model_folder(run: str | Path, folder: Path, repo_id: str | None = None) -> None:
    """Fill `folder` with what a push of `run` uploads (the module docstring's layout)."""
    run = Path(run)
    adapter = exported_adapter(run)
    for net in NETS:
        if (adapter / net).is_dir():
            shutil.copytree(adapter / net, folder / "adapter" / net)
    for png, _ in last_samples(run)[1]:
        target = folder / png.relative_to(run)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
    (folder / "README.md").write_text(str(model_card(run, repo_id)), encoding="utf-8")


def push_model(run: str | Path, repo_id: str, private: bool = True, dry_run: bool = False,
               out: str | Path | None = None, overwrite: bool = False, token: str | None = None,
               progress: Callable[[str], None] | None = None) -> ShareResult:
    """Push a finished run's adapter, samples and model card to the model repository `repo_id`
    (private by default); with `dry_run`, write that folder to `out` and send nothing."""
    repo_id = check_repo_id(repo_id)
    exported_adapter(run)  # refuse before asking for a token
    return share(lambda folder: build_model_folder(run, folder, repo_id), repo_id, "model", private=private,
                 dry_run=dry_run, out=out, overwrite=overwrite, token=token, progress=progress)
