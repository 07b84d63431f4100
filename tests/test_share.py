"""Sharing on the Hugging Face Hub: a run's adapter with its model card, a workspace's export
with its dataset card, the CLI commands and the Train tab's handler, all offline (the hub
client's methods are replaced by recorders, or by traps in a dry run)."""

import json
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, HfApi, ModelCard
from PIL import Image

from helpers import PRIVATE_SOURCE, make_finished_run
from medart.cli import main
from medart.sharing import push_dataset, push_model
from medart.sharing.hub import folder_files
from medart.workspace import NewImage, Workspace

SECRET = "hf_notarealtoken_0123456789"
MODEL_FILES = ["README.md", "adapter/dit/adapter_config.json", "adapter/dit/adapter_model.safetensors",
               "adapter/t5/adapter_config.json", "adapter/t5/adapter_model.safetensors",
               "samples/step-000010/00.png", "samples/step-000010/01.png"]
HUB_METHODS = ("create_repo", "upload_folder", "repo_info", "create_commit", "upload_file")


@pytest.fixture
def no_network(monkeypatch):
    """Every hub call the code could make raises."""
    def trap(*args, **kwargs):
        raise AssertionError("a dry run called the hub")

    for name in HUB_METHODS:
        monkeypatch.setattr(HfApi, name, trap)


@pytest.fixture
def hub(monkeypatch):
    """A recording hub: create_repo, repo_info and upload_folder note their arguments (and the
    uploaded folder's files and README) instead of sending anything."""
    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw, self.token))

    def repo_info(self, repo_id, **kw):
        calls.append(("repo_info", repo_id, kw, self.token))
        created = [c[2]["private"] for c in calls if c[0] == "create_repo"]
        private = created[-1] if hub.existing_private is None else hub.existing_private
        return type("Info", (), {"private": private})()

    def upload_folder(self, *, folder_path, repo_id, **kw):
        folder = Path(folder_path)
        calls.append(("upload_folder", repo_id, kw, self.token, folder_files(folder),
                      (folder / "README.md").read_text(encoding="utf-8")))

    for name in HUB_METHODS:
        monkeypatch.setattr(HfApi, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("unexpected call")))
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    hub.existing_private = None  # None: a new repository, as create_repo asked; True/False: an existing one
    hub.calls = calls
    return hub


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def run(tmp_path):
    return make_finished_run(tmp_path / "runs" / "polyps", evaluated=True)


# ---- the model ---------------------------------------------------------------------------------
def test_model_dry_run_writes_exactly_the_upload_and_sends_nothing(run, tmp_path, no_network, no_token):
    out = tmp_path / "preview"
    result = push_model(run, "someone/polyp-lora", dry_run=True, out=out)
    assert result.dry_run and result.url is None and result.private
    assert folder_files(out) == result.files == MODEL_FILES
    assert (out / "adapter" / "dit" / "adapter_model.safetensors").read_bytes() == \
        (run / "adapter" / "dit" / "adapter_model.safetensors").read_bytes()

    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert "base_model" not in data  # the tiny twin is not on the hub: left out, and the card says why
    assert "is not on the hub" in card.text
    assert data["license"] == "openrail++" and data["library_name"] == "peft"
    assert {"text-to-image", "diffusers", "lora", "pixart", "medical-imaging", "medart"} <= set(data["tags"])
    assert data["widget"] == [
        {"text": "An endoscopic image of polyp", "output": {"url": "samples/step-000010/00.png"}},
        {"text": "An endoscopic image of normal", "output": {"url": "samples/step-000010/01.png"}},
    ]
    assert all((out / w["output"]["url"]).is_file() for w in data["widget"])
    text = card.text
    assert "Research use only; not for diagnosis" in text
    assert "| polyp | 4 |" in text and "| normal | 2 |" in text and "6 captioned images in 2 class(es)" in text
    assert "| polyp | 0.4000 | 0.2000 |" in text  # colour distance at step 0 and at the end
    assert "N = 5" in text and "M = 10" in text and "mode `balanced`" in text and "EMA" in text
    assert "| tuned | 150.25 |" in text and "| real | 0.875 | 0.850 |" in text  # the run's evaluation
    assert 'PeftModel.from_pretrained(pipe.transformer, "someone/polyp-lora", subfolder="adapter/dit")' in text
    assert "Doe" not in (out / "README.md").read_text() and "/home/" not in (out / "README.md").read_text()


def test_model_card_of_a_hub_base_names_it(tmp_path, no_network):
    run = make_finished_run(tmp_path / "alpha", base_model="pixart-alpha-512")
    data = ModelCard.load(push_model(run, "a/b", dry_run=True, out=tmp_path / "o").folder / "README.md").data
    assert data.base_model == "PixArt-alpha/PixArt-XL-2-512x512"


def test_model_push_creates_a_private_repo_and_uploads_the_same_folder(run, tmp_path, hub):
    preview = push_model(run, "someone/polyp-lora", dry_run=True, out=tmp_path / "preview")
    result = push_model(run, "someone/polyp-lora")
    assert result.url == "https://huggingface.co/someone/polyp-lora" and result.folder is None
    (create, _, kw, token), info, upload = hub.calls
    assert create == "create_repo" and kw == {"repo_type": "model", "private": True, "exist_ok": True}
    assert info[:2] == ("repo_info", "someone/polyp-lora")
    assert upload[1] == "someone/polyp-lora" and upload[2]["repo_type"] == "model"
    assert upload[2]["delete_patterns"] == "*"  # the repo becomes exactly the folder
    assert upload[4] == MODEL_FILES and upload[5] == (preview.folder / "README.md").read_text()
    assert token == SECRET and SECRET not in result.describe()

    hub.calls.clear()
    assert not push_model(run, "someone/public-lora", private=False).private
    assert hub.calls[0][2]["private"] is False and [c[0] for c in hub.calls] == ["create_repo", "repo_info",
                                                                                 "upload_folder"]
    hub.existing_private = True  # an existing private repository stays private, and the result says so
    assert "(private)" in push_model(run, "someone/private-lora", private=False).describe()


def test_model_push_refuses_a_public_repo_when_private_was_asked(run, hub):
    hub.existing_private = False
    with pytest.raises(ValueError, match="exists on the hub and is public"):
        push_model(run, "someone/already-public")
    assert [c[0] for c in hub.calls] == ["create_repo", "repo_info"]  # nothing uploaded


def test_model_push_refusals_say_what_to_do(run, tmp_path, no_network, no_token):
    with pytest.raises(ValueError, match="hf auth login"):
        push_model(run, "someone/polyp-lora")
    with pytest.raises(ValueError, match="OWNER/NAME"):
        push_model(run, "polyp-lora", dry_run=True, out=tmp_path / "x")
    with pytest.raises(ValueError, match="--out"):
        push_model(run, "someone/polyp-lora", dry_run=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        push_model(run, "someone/polyp-lora", dry_run=True, out=tmp_path / "full")
    assert folder_files(tmp_path / "full") == ["keep.txt"]

    stopped = make_finished_run(tmp_path / "stopped")
    (stopped / "adapter").rename(stopped / "gone")
    (stopped / "checkpoints" / "step-000010" / "manifest.json").write_text("{}")
    (stopped / "checkpoints" / "step-000010" / "dit").mkdir()
    with pytest.raises(ValueError, match="only a checkpoint .* Resume it"):
        push_model(stopped, "someone/x", dry_run=True, out=tmp_path / "y")
    for sub in ("checkpoints", "gone"):
        (stopped / sub).rename(tmp_path / f"moved-{sub}")
    with pytest.raises(ValueError, match="has no adapter to share"):
        push_model(stopped, "someone/x", dry_run=True, out=tmp_path / "y")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        push_model(tmp_path, "someone/x", dry_run=True, out=tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_push_cli(run, tmp_path, capsys, no_network, no_token):
    out = tmp_path / "cli-preview"
    assert main(["push", str(run), "--repo", "someone/polyp-lora", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing was sent" in printed and "(private)" in printed and "  samples/step-000010/01.png" in printed
    assert folder_files(out) == MODEL_FILES
    assert main(["push", str(run), "--repo", "someone/polyp-lora"]) == 2
    assert "hf auth login" in capsys.readouterr().err


def test_the_run_card_and_the_pushed_card_are_one_definition(run, tmp_path, no_network):
    from medart.model_card import model_card

    pushed = push_model(run, "someone/polyp-lora", dry_run=True, out=tmp_path / "o").folder / "README.md"
    assert pushed.read_text() == str(model_card(run, "someone/polyp-lora"))
    local = str(model_card(run))  # the trainer writes this one into adapter/README.md
    use = "## Use without Med-Art Studio"
    assert local.split(use)[0] == pushed.read_text().split(use)[0]  # only the loading example differs
    local_use, pushed_use = local.split(use)[1], pushed.read_text().split(use)[1]
    assert 'PeftModel.from_pretrained(pipe.transformer, "adapter/dit")' in local_use  # run in the run folder
    assert '"someone/polyp-lora", subfolder="adapter/dit"' in pushed_use
    assert '"someone/polyp-lora", subfolder="adapter/t5"' in pushed_use
    assert str(Path.home()) not in pushed_use and "/tmp" not in pushed_use  # no folder of this machine
    assert 'from_pretrained("assets/tiny-base"' in pushed_use


# ---- the dataset -------------------------------------------------------------------------------
@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    rows = []
    colours = [("red", "polyp", "train"), ("pink", "normal", "train"), ("blue", "polyp", "train"),
               ("green", "normal", "test"), ("white", "polyp", "test")]
    for k, (colour, label, split) in enumerate(colours):
        sha, size, _ = w.store_image(Image.new("RGB", (20 + k, 16), colour))
        rows.append(NewImage(sha, f"Doe_Jane {k}.jpg", 20 + k, 16, "RGB", size, "upload", label, split,
                             modality="endoscopy"))
    w.add_images(rows)
    for i in range(1, 6):
        w.set_text(i, f"An endoscopic image of {colours[i - 1][1]}, {colours[i - 1][0]}.")
    w.set_caption(1, "An endoscopic image of polyp, red and round.",
               {"backend": "transformers", "model": "/home/doe/models/llava"}, status="edited")
    w.approve([1, 2, 4, 5])
    yield w
    w.close()


def test_dataset_dry_run_loads_with_datasets_and_sends_nothing(ws, tmp_path, no_network, no_token):
    import datasets

    out = tmp_path / "dataset-preview"
    result = push_dataset(ws, "someone/polyp-captions", dry_run=True, out=out)
    assert result.files == folder_files(out) == [
        "README.md", "manifest.json", "test/000004.png", "test/000005.png", "test/metadata.jsonl",
        "train/000001.png", "train/000002.png", "train/metadata.jsonl"]
    ds = datasets.load_dataset("imagefolder", data_dir=str(out))
    assert sorted(ds) == ["test", "train"] and (ds["train"].num_rows, ds["test"].num_rows) == (2, 2)
    assert ds["train"][0]["text"] == "An endoscopic image of polyp, red and round."
    assert ds["train"][0]["image"].size == (20, 16)

    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["text-to-image"] and "license" not in data
    assert "Licence: not set" in card.text and "Research use only; not for diagnosis" in card.text
    assert "| train | 2 |" in card.text and "| test | 2 |" in card.text
    assert "| polyp | 1 | 1 |" in card.text and "| normal | 1 | 1 |" in card.text
    assert "the transformers describer (a local model): 1" in card.text  # a model folder's path is not shown
    assert "typed by a person: 3" in card.text and "endoscopy (4)" in card.text
    assert "Doe" not in (out / "README.md").read_text() and "/home/" not in (out / "README.md").read_text()


def test_dataset_push_and_cli(ws, tmp_path, hub, capsys):
    result = push_dataset(ws, "someone/polyp-captions")
    assert result.url == "https://huggingface.co/datasets/someone/polyp-captions"
    create, _, upload = hub.calls
    assert create[2] == {"repo_type": "dataset", "private": True, "exist_ok": True} and create[3] == SECRET
    assert upload[2]["repo_type"] == "dataset" and "train/metadata.jsonl" in upload[4] and len(upload[4]) == 8
    assert "Licence: not set" in upload[5]

    hub.calls.clear()
    assert main(["push-dataset", "--workspace", str(ws.root), "--repo", "someone/polyp-captions", "--no-private"]) == 0
    assert hub.calls[0][2]["private"] is False and "(public)" in capsys.readouterr().out
    out = tmp_path / "cli-preview"
    hub.calls.clear()
    assert main(["push-dataset", "--workspace", str(ws.root), "--repo", "someone/polyp-captions", "--dry-run",
                 "--out", str(out)]) == 0
    assert not hub.calls and (out / "README.md").is_file() and len(folder_files(out)) == 8

    hub.calls.clear()  # export --push-to-hub is the same push
    assert main(["export", "--workspace", str(ws.root), "--out", str(tmp_path / "exp"), "--push-to-hub",
                 "someone/polyp-captions"]) == 0
    assert [c[0] for c in hub.calls] == ["create_repo", "repo_info", "upload_folder"]
    assert hub.calls[2][4] == folder_files(out)
    assert main(["export", "--workspace", str(ws.root), "--out", str(tmp_path / "exp2"), "--keep-names",
                 "--push-to-hub", "someone/polyp-captions"]) == 2
    assert "--keep-names" in capsys.readouterr().err


def test_data_tab_exports_and_shares_the_captions_as_the_cli_does(tmp_path, hub, monkeypatch):
    """Parity: the app's export (imagefolder, CSV) and dataset dry run / push give the CLI's files."""
    from medart.studio import Studio
    from medart.ui import data_share

    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[tmp_path])
    ws = Workspace(studio.workspace_dir)
    for k, (colour, label, split) in enumerate([("red", "polyp", "train"), ("blue", "normal", "train"),
                                                ("white", "polyp", "test")]):
        sha, size, _ = ws.store_image(Image.new("RGB", (20, 16), colour))
        ws.add_images([NewImage(sha, f"Doe_Jane {k}.jpg", 20, 16, "RGB", size, "upload", label, split)])
        ws.set_text(k + 1, f"An endoscopic image of {label}, {colour}.", approve=k != 1)
    ws.close()

    said = data_share.export_captions(studio, "imagefolder", str(tmp_path / "app-export"), True, "", False)
    assert said == f"**Exported 2 caption(s) (train 1, test 1) as imagefolder to {tmp_path / 'app-export'}.**"
    assert main(["export", "--workspace", str(studio.workspace_dir), "--out", str(tmp_path / "cli-export")]) == 0
    assert folder_files(tmp_path / "app-export") == folder_files(tmp_path / "cli-export")
    data_share.export_captions(studio, "csv", str(tmp_path / "app-csv"), False, "", False)
    rows = (tmp_path / "app-csv" / "metadata.csv").read_text().splitlines()
    assert len(rows) == 3 and "An endoscopic image of normal, blue." in rows[2]  # all with text, train split
    with pytest.raises(ValueError, match="is not empty"):
        data_share.export_captions(studio, "csv", str(tmp_path / "app-csv"), False, "", False)
    with pytest.raises(ValueError, match="not inside a folder this app may write to"):
        data_share.export_captions(studio, "csv", "/elsewhere/out", True, "", False)
    assert not (studio.home / "exports").exists()  # relative: inside the home folder, parents created
    said = data_share.export_captions(studio, "csv", "exports/mydata", True, "", False)
    assert said.endswith(f"as csv to {studio.home / 'exports' / 'mydata'}.**")
    assert (studio.home / "exports" / "mydata" / "metadata.csv").read_text().count("\n") == 2  # header + 1 caption
    data_share.export_captions(studio, "txt", str(tmp_path / "new" / "deeper" / "out"), True, "", False)
    assert len(list((tmp_path / "new" / "deeper" / "out").rglob("*.txt"))) == 1

    dry = data_share.share_dataset(studio, "someone/polyp-captions", True, True, "", True)
    assert dry.startswith("**Dry run:** 6 file(s)") and dry.lower().count("dry run") == 1 and not hub.calls
    out = studio.home / "hub-dry-runs" / "dataset-someone--polyp-captions"
    assert "train/metadata.jsonl" in dry and folder_files(out)[0] == "README.md"
    pushed = data_share.share_dataset(studio, "someone/polyp-captions", True, True, "", False)
    assert "https://huggingface.co/datasets/someone/polyp-captions" in pushed and hub.calls[-1][4] == folder_files(out)

    monkeypatch.delenv("HF_TOKEN")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ValueError, match="needs a token: .*A dry run works without one"):
        data_share.check_share(studio, "someone/polyp-captions", False)
    data_share.check_share(studio, "someone/polyp-captions", True)  # a dry run needs none


# ---- the Train tab -----------------------------------------------------------------------------
def test_train_tab_share_handler(tmp_path, hub, monkeypatch):
    from medart.studio import Studio
    from medart.ui.train import share_help, share_run, share_visible

    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    make_finished_run(studio.runs_dir / "polyps")
    (studio.runs_dir / "unfinished").mkdir()
    (studio.runs_dir / "unfinished" / "config.yaml").write_text("base_model: tiny\n")
    assert share_visible(studio, "polyps") and not share_visible(studio, "unfinished")
    assert not share_visible(studio, None) and not share_visible(studio, "../x")
    assert "token is configured" in share_help(studio) and SECRET not in share_help(studio)

    said = []
    dry = share_run(studio, "polyps", "someone/polyp-lora", True, True, said.append)
    assert "**Dry run:**" in dry and "samples/step-000010/00.png" in dry and not hub.calls
    assert "\n\n**Dry run:** 7 file(s)" in dry and dry.lower().count("dry run") == 1  # said once, after the run
    assert folder_files(studio.home / "hub-dry-runs" / "polyps") == MODEL_FILES
    assert share_run(studio, "polyps", "someone/polyp-lora", True, True) == dry  # a second dry run replaces it

    pushed = share_run(studio, "polyps", " someone/polyp-lora ", True, False, said.append)
    assert "https://huggingface.co/someone/polyp-lora" in pushed and "(private)" in pushed
    assert hub.calls[0][2]["private"] is True and hub.calls[-1][4] == MODEL_FILES
    assert any(m.startswith("uploading 7 file(s)") for m in said)
    assert all(SECRET not in text for text in (dry, pushed, *said))
    with pytest.raises(ValueError, match="has no adapter"):
        share_run(studio, "unfinished", "someone/x", True, False)
    with pytest.raises(ValueError, match="choose a finished run"):
        share_run(studio, None, "someone/x", True, True)

    monkeypatch.delenv("HF_TOKEN")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert "No Hugging Face token is configured" in share_help(studio) and "hf auth login" in share_help(studio)
    with pytest.raises(ValueError, match="needs a token"):
        share_run(studio, "polyps", "someone/polyp-lora", True, False)

    monkeypatch.setenv("SPACE_ID", "medart/studio")  # the shared public Space: the owner's token is not lent
    assert not studio.sharing_allowed and not share_visible(studio, "polyps") and share_help(studio) == ""
    with pytest.raises(ValueError, match="turned off on this shared Space"):
        share_run(studio, "polyps", "someone/polyp-lora", True, True)


def test_train_tab_builds_with_the_share_section(tmp_path):
    from medart.studio import Studio
    from medart.ui import build_app

    demo = build_app(Studio(home=tmp_path / "home", base_model="tiny", import_roots=[]))
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"share-hub", "share-repo", "share-private", "share-dry-run", "share-push"} <= ids
    names = {dep.api_name for dep in demo.fns.values()}
    assert {"share_dry_run", "share_push"} <= names


def test_private_source_is_in_the_run_but_never_shared(run, tmp_path, no_network):
    # the fixture's run does carry the name (data.json, log.txt); only the pushed folder is clean
    assert "Doe_Jane" in (run / "data.json").read_text() and PRIVATE_SOURCE in (run / "log.txt").read_text()
    out = push_model(run, "someone/polyp-lora", dry_run=True, out=tmp_path / "o").folder
    for name in folder_files(out):
        data = (out / name).read_bytes()
        assert b"Doe" not in data and b"/home/" not in data, name
    assert json.loads((out / "adapter" / "dit" / "adapter_config.json").read_text())["peft_type"] == "LORA"


@pytest.mark.slow  # starts the app's server
def test_share_dry_run_through_the_app(tmp_path, no_network, no_token):
    from gradio_client import Client

    from apphelpers import free_port
    from medart.studio import Studio
    from medart.ui import build_app, launch_kwargs

    studio = Studio(home=tmp_path / "home", base_model="tiny", import_roots=[])
    make_finished_run(studio.runs_dir / "polyps")
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_kwargs(studio))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        shown = client.predict("polyps", "someone/polyp-lora", True, api_name="/share_dry_run")
        assert "**Dry run:**" in shown and "adapter/t5/adapter_model.safetensors" in shown
        with pytest.raises(Exception, match="needs a token"):
            client.predict("polyps", "someone/polyp-lora", True, api_name="/share_push")
    finally:
        demo.close()
    assert folder_files(studio.home / "hub-dry-runs" / "polyps") == MODEL_FILES
