"""A run whose adapter was swapped or damaged (issue 18, point 9): `generate` in the command line
and the Compare tab say in one line what is wrong and what to do: no traceback, no absolute
path of the machine, whatever was done to the files."""

from __future__ import annotations

import shutil

import pytest

from helpers import make_tuned_run


def damage(run, how: str, other) -> None:
    dit = run / "adapter" / "dit"
    if how == "swapped":  # another run's weights (rank 8) under this run's config (rank 4)
        shutil.copyfile(other / "adapter" / "dit" / "adapter_model.safetensors", dit / "adapter_model.safetensors")
    elif how == "truncated":
        data = (dit / "adapter_model.safetensors").read_bytes()
        (dit / "adapter_model.safetensors").write_bytes(data[:300])
    elif how == "crossed":  # the T5 adapter's weights in the DiT's folder
        shutil.copyfile(run / "adapter" / "t5" / "adapter_model.safetensors", dit / "adapter_model.safetensors")
    elif how == "config":
        (dit / "adapter_config.json").write_text("{not json")


HOWS = ("swapped", "truncated", "crossed", "config")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, medart_cache):
    from medart.config import LoraConfig

    root = tmp_path_factory.mktemp("damaged")
    other = make_tuned_run(root / "other", lora_config=LoraConfig(rank=8))
    out = {}
    for how in HOWS:
        run = make_tuned_run(root / "home" / "runs" / f"run-{how}")
        damage(run, how, other)
        out[how] = run
    return root, out


@pytest.mark.parametrize("how", HOWS)
def test_generate_on_a_damaged_adapter_says_one_line(runs, how, capsys):
    from medart.cli import main

    root, found = runs
    code = main(["generate", "--lora", str(found[how]), "--prompt", "a polyp", "--steps", "2",
                 "--out", str(root / f"{how}.png")])
    out = capsys.readouterr().err
    err = [line for line in out.splitlines() if line.strip() and "Loading pipeline" not in line]  # progress bars
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: the adapter in run-{how}/adapter/dit cannot be used: ")
    assert "Traceback" not in out and str(root) not in out and "Choose another run" in err[0]
    assert not (root / f"{how}.png").exists()


def test_compare_tab_on_a_damaged_adapter_says_one_line(runs):
    import gradio as gr

    from medart.studio import Studio
    from medart.ui import compare
    from medart.ui.widgets import user_errors

    root, found = runs
    studio = Studio(home=root / "home", base_model="tiny")
    handler = user_errors(lambda run: compare.compare(studio, run, "a polyp", 0, 2, 4.5, 1.0, None))
    for how in HOWS:
        with pytest.raises(gr.Error) as shown:
            handler(f"run-{how}")
        text = shown.value.message
        assert text.startswith(f"the adapter in run-{how}/adapter/dit cannot be used: ") and "\n" not in text
        assert str(root) not in text and "Traceback" not in text


def test_page_errors_name_no_server_path_and_carry_no_traceback(tmp_path):
    """The system's own errors reach the page without the path they name: a 20,000-character
    folder name ([Errno 36] with the server's absolute path), a file gone, a fault's long text."""
    import gradio as gr

    from medart.studio import Studio
    from medart.ui import data
    from medart.ui.widgets import user_errors

    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[str(tmp_path)])
    handler = user_errors(data.import_folder)
    with pytest.raises(gr.Error) as shown:
        handler(studio, str(tmp_path / ("a" * 20_000)), "", "", "train", False)
    text = shown.value.message
    assert "too long" in text or "longer than" in text
    assert str(tmp_path) not in text and "Errno" not in text and "\n" not in text

    def faults(error):
        def fn():
            raise error
        return user_errors(fn)

    secret = str(tmp_path / "home" / "workspace" / "workspace.db")
    cases = [FileNotFoundError(2, "No such file or directory", secret),
             PermissionError(13, "Permission denied", secret), KeyError(secret), RuntimeError(f"Error(s) in loading\n\t{secret}\n\tmore")]
    for error in cases:
        with pytest.raises(gr.Error) as shown:
            faults(error)()
        text = shown.value.message
        assert secret not in text and "\n" not in text and "Traceback" not in text, text
    with pytest.raises(gr.Error, match="does not exist; check"):  # a message written for people stays whole
        faults(FileNotFoundError("the run 'x' does not exist; check its name"))()


def test_the_command_line_says_one_line_for_the_systems_errors(tmp_path, monkeypatch, capsys):
    """A 20,000-character path and an output folder that cannot exist: `error: ...`, exit 2, no
    traceback; MEDART_DEBUG=1 keeps the traceback for whoever debugs."""
    from medart.cli import main

    monkeypatch.setenv("MEDART_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDART_DEBUG", raising=False)
    assert main(["import", str(tmp_path / ("a" * 20_000))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "too long" in err[0] and len(err[0]) < 300
    assert str(tmp_path) not in err[0] and "Errno" not in err[0]
    (tmp_path / "a-file").write_text("not a folder")
    blocked = ["import", str(tmp_path / "a-file"), "--workspace", str(tmp_path / "a-file" / "ws")]
    assert main(blocked) == 2  # the workspace's folder cannot be made under a file: the system's own error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    monkeypatch.setenv("MEDART_DEBUG", "1")
    with pytest.raises(OSError):
        main(blocked)
