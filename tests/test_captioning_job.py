"""Batch captioning of a workspace: drafts only, provenance stored, resumable after a failure."""

import signal
import subprocess
import sys

import pytest
from PIL import Image
from transformers import AutoTokenizer

from captioning.base import CaptionerError
from captioning.offline import OfflineDescriber
from helpers import run_cli_killed
from medart.workspace.describe import caption_workspace, targets
from medart.workspace import Filter, NewImage, Workspace
from medart.tiny_base import TOKENIZER_DIR as TINY_TOKENIZER


class FailingAfter(OfflineDescriber):
    """The offline describer that loses its 'server' after `n` images."""

    def __init__(self, n):
        super().__init__(batch_size=2)
        self.left = n

    def generate(self, images, simple_captions, template):
        if self.left < len(images):
            raise CaptionerError("connection lost")
        self.left -= len(images)
        return super().generate(images, simple_captions, template)


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws", tokenizer=AutoTokenizer.from_pretrained(TINY_TOKENIZER))
    rows = []
    colours = [(220, 0, 0), (0, 0, 220), (0, 160, 0), (255, 192, 203), (128, 128, 128), (250, 250, 250), (139, 69, 19)]
    for k, c in enumerate(colours):
        sha, size, _ = w.store_image(Image.new("RGB", (48, 48), c))
        modality = "dermoscopy" if k == 6 else None
        rows.append(NewImage(sha, f"{k}.png", 48, 48, "RGB", size, "t", "polyps", modality=modality))
    w.add_images(rows)
    w.set_setting("no_modality_template", "endoscopy")  # a person's choice for images without a modality
    yield w
    w.close()


def test_job_writes_drafts_with_provenance_and_resumes(ws):
    ws.set_text(5, "A reviewer's caption.")
    ids = targets(ws)
    assert ids == [1, 2, 3, 4, 6, 7]  # the edited caption is left alone
    with pytest.raises(CaptionerError, match="2 of 6 captioned and saved; rerun with --only-missing"):
        caption_workspace(ws, FailingAfter(3), ids)
    assert ws.count(Filter(missing=False)) == 3  # two captions + the reviewer's
    rest = targets(ws, only_missing=True)
    assert rest == [3, 4, 6, 7]
    seen = []
    report = caption_workspace(ws, OfflineDescriber(), rest, progress=seen.append)
    assert report.done == 4 and sum(seen) == 4 and targets(ws, only_missing=True) == []
    one = ws.get(1)
    assert one.status == "draft" and one.text.startswith("An endoscopic image of polyps, predominantly red.")
    assert ws.get(2).text.startswith("An endoscopic image of polyps, predominantly blue.")
    assert ws.get(7).text.startswith("A dermoscopic image of polyps, predominantly brown.")  # its own modality
    prov = one.provenance
    assert prov["backend"] == "offline" and prov["template"] == "endoscopy"
    assert prov["simple_caption"] == "An endoscopic image of polyps" and "created_at" in prov
    assert 0 < one.token_count <= 120
    assert ws.get(5).text == "A reviewer's caption."
    assert ws.undo(1).ids == [1] and ws.get(1).text == ""  # a describe step is undoable too


def test_job_never_overwrites_a_caption_reviewed_while_it_runs(ws):
    class ReviewerMeanwhile(OfflineDescriber):
        def generate(self, images, simple_captions, template):
            ws.set_text(2, "Written by a reviewer during the job.")
            return super().generate(images, simple_captions, template)

    report = caption_workspace(ws, ReviewerMeanwhile(batch_size=4), targets(ws))
    assert report.reviewed_meanwhile == [2] and report.done == 6
    assert ws.get(2).text == "Written by a reviewer during the job." and ws.get(2).status == "edited"
    assert ws.get(1).status == "draft" and ws.get(1).text.startswith("An endoscopic image of polyps")


def test_images_removed_while_the_job_runs_are_skipped(ws):
    class RemoverMeanwhile(OfflineDescriber):
        calls = 0

        def generate(self, images, simple_captions, template):
            self.calls += 1
            if self.calls == 1:
                ws.remove([2, 5])  # one in the batch being described, one in a later batch
            return super().generate(images, simple_captions, template)

    report = caption_workspace(ws, RemoverMeanwhile(batch_size=3), [1, 2, 3, 4, 5, 6])
    assert sorted(report.removed_meanwhile) == [2, 5] and report.done == 4
    assert [i.id for i in ws.query(Filter(missing=False), limit=None)] == [1, 3, 4, 6]


@pytest.mark.slow  # two CLI processes over 120 images
def test_cli_caption_job_killed_then_resumed(tmp_path):
    import os

    root = tmp_path / "ws2"
    with Workspace(root) as w:
        rows = []
        for k in range(120):
            sha, size, _ = w.store_image(Image.new("RGB", (64, 64), (k * 2, 255 - k * 2, 90)))
            rows.append(NewImage(sha, f"{k}.png", 64, 64, "RGB", size, "t", "polyps", modality="endoscopy"))
        w.add_images(rows)
    argv = ["caption", "--workspace", str(root), "--base-model", "tiny", "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    killed = run_cli_killed("captions", 10, argv, env)  # dies right after the 10th caption is committed
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with Workspace(root) as w:
        assert w.count(Filter(missing=False)) == 10
    resumed = subprocess.run([sys.executable, "-m", "medart", *argv, "--only-missing"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "captioned 110 image(s)" in resumed.stdout
    with Workspace(root) as w:
        assert w.count(Filter(missing=True)) == 0
        assert w.count(Filter(text="An endoscopic image of polyps, predominantly")) == 120
        assert w.conn.execute("SELECT count(*) FROM history").fetchone()[0] == 120  # each image described once


def test_the_command_replaces_reviewed_captions_only_with_yes_and_one_undo_restores_them(ws, capsys):
    from medart.cli import main

    ws.set_text(1, "A reviewer's caption.")
    ws.set_text(2, "An approved caption.", approve=True)
    w = ["--workspace", str(ws.root), "--base-model", "tiny", "--backend", "offline"]
    assert main(["caption", *w]) == 0  # drafts only, by default
    assert (ws.get(1).text, ws.get(2).text) == ("A reviewer's caption.", "An approved caption.")
    assert main(["caption", "--include-edited", "--include-approved", *w]) == 2
    assert "would replace 1 edited and 1 approved caption(s), reviewed by a person; add --yes" in capsys.readouterr().err
    assert main(["caption", "--include-edited", "--include-approved", "--yes", *w]) == 0
    assert ws.get(1).status == ws.get(2).status == "draft"
    assert main(["undo", "--workspace", str(ws.root)]) == 0  # the whole batch in one step
    assert "Undid the batch captioning (7 image(s), offline): " in capsys.readouterr().out
    assert (ws.get(1).text, ws.get(2).status) == ("A reviewer's caption.", "approved")
