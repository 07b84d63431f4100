"""Workspace: captions, statuses, history and undo, find/replace, filters, templates, durability."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image
from transformers import AutoTokenizer

from captioning.templates import ModalityTemplate
from medart.tiny_base import TOKENIZER_DIR as TINY_TOKENIZER
from medart.workspace import Filter, NewImage, Workspace


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(TINY_TOKENIZER)


def fill(ws, n, labels=("polyps", "normal"), texts=None):
    rows = []
    for k in range(n):
        sha, size, _ = ws.store_image(Image.new("RGB", (16, 16), (k % 256, k // 256, 7)))
        text = texts[k] if texts else ""
        rows.append(NewImage(sha, f"img{k}.png", 16, 16, "RGB", size, "test", labels[k % len(labels)], text=text))
    return ws.add_images(rows)


@pytest.fixture
def ws(tmp_path, tok):
    w = Workspace(tmp_path / "ws", tokenizer=tok)
    yield w
    w.close()


def test_layout_and_wal(ws):
    ids = fill(ws, 3)
    assert ids == [1, 2, 3]
    assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    item = ws.get(1)
    assert item.image_path.exists() and item.thumb_path.exists()
    assert item.image_path.name == f"{item.sha256}.png" and item.image_path.parent.name == item.sha256[:2]
    assert (item.status, item.text, item.token_count) == ("draft", "", 0)
    with Image.open(item.thumb_path) as t:
        assert max(t.size) <= 256
    assert fill(ws, 3) == [1, 2, 3]  # same pixels: same rows, nothing added
    assert ws.stats()["total"] == 3


def test_edit_approve_reject_undo(ws, tok):
    fill(ws, 3, texts=["first caption", "", ""])
    assert ws.get(1).status == "edited"  # imported text counts as a reviewer's
    item = ws.set_text(1, "  A new caption for the first image.  ")
    assert item.text == "A new caption for the first image." and item.status == "edited"
    assert item.token_count == len(tok(item.text)["input_ids"])
    assert ws.approve([1]) == 1 and ws.get(1).status == "approved"
    assert ws.approve([1]) == 0  # no change, no history row
    with pytest.raises(ValueError, match="no caption text"):
        ws.approve([2])
    ws.set_caption(2, "An endoscopic image of normal, pink.", {"backend": "offline", "model": "m"})
    assert ws.get(2).status == "draft" and ws.get(2).provenance["backend"] == "offline"
    assert ws.reject([2]) == 1 and ws.get(2).status == "rejected"

    undone = ws.undo()
    assert undone.ids == [2] and undone.describe() == "Undid the rejection of #2 (now: caption draft)."
    assert ws.get(2).status == "draft"
    assert ws.undo().ids == [2]
    assert ws.get(2).text == "" and ws.get(2).provenance == {}
    assert ws.undo().describe() == "Undid the approval of #1 (now: caption edited)." and ws.get(1).status == "edited"
    assert ws.undo().ids == [1] and ws.get(1).text == "first caption"
    assert ws.undo() is None and ws.get(1).text == "first caption"
    hist = ws.history(1)
    assert [h["action"] for h in hist] == ["edit", "approve"] and all(h["undone"] for h in hist)


def test_undo_of_one_image_leaves_others(ws):
    fill(ws, 2)
    ws.set_text(1, "one a")
    ws.set_text(2, "two a")
    ws.set_text(1, "one b")
    assert ws.undo(2).ids == [2] and ws.get(2).text == ""
    assert ws.get(1).text == "one b"
    assert ws.undo(1).ids == [1] and ws.get(1).text == "one a"


def test_find_replace_preview_apply_and_one_undo(ws):
    texts = ["pink polyp, pink mucosa", "red polyp", "Pink lesion", "nothing here"]
    fill(ws, 4, texts=texts)
    ws.approve([3])
    p = ws.find_replace(r"\bpink\b", "salmon")
    assert (p.captions, p.matches, p.change_id) == (1, 2, None)
    assert ws.get(1).text == texts[0]  # a preview changes nothing
    p = ws.find_replace(r"\bpink\b", "salmon", ignore_case=True)
    assert (p.captions, p.matches) == (2, 3)
    p = ws.find_replace(r"(\w+) polyp", r"\1 lesion", flt=Filter(label="normal"), apply=True)
    assert p.captions == 1 and ws.get(2).text == "red lesion" and ws.get(1).text == texts[0]
    ws.undo()
    p = ws.find_replace(r"pink", "salmon", ignore_case=True, apply=True)
    assert p.captions == 2 and p.change_id is not None
    assert ws.get(1).text == "salmon polyp, salmon mucosa" and ws.get(3).text == "salmon lesion"
    assert ws.get(3).status == "approved"  # an approved caption stays approved
    assert ws.find_replace("polyp", "x", flt=Filter(ids=[2])).captions == 1  # a selection
    undone = ws.undo()
    assert undone.ids == [1, 3]  # the whole replace is one undo step
    assert undone.describe() == "Undid the find/replace 'pink' → 'salmon': 2 caption(s) restored."
    assert [ws.get(i).text for i in (1, 2, 3, 4)] == texts
    assert ws.find_replace("a.b", "x", regex=False).captions == 0  # literal, not a regex
    with pytest.raises(ValueError, match="invalid regular expression"):
        ws.find_replace("([", "x")


def test_filters_paging_and_next_unreviewed(ws):
    fill(ws, 10, texts=[f"caption number {k}" if k % 3 else "" for k in range(10)])
    ws.approve([2, 5])
    ws.reject([8])
    assert ws.count(Filter(status="approved")) == 2
    assert ws.count(Filter(label="polyps")) == 5
    assert ws.count(Filter(missing=True)) == 4
    assert ws.count(Filter(text="NUMBER 7")) == 1
    # unreviewed (draft or edited): ids 1, 3, 4, 6, 7, 9, 10
    assert [i.id for i in ws.page(Filter(status=["draft", "edited"]), offset=2, limit=3)] == [4, 6, 7]
    toks = ws.get(2).token_count
    assert ws.count(Filter(min_tokens=toks, max_tokens=toks)) >= 1
    assert ws.count(Filter(max_tokens=0)) == 4  # empty captions count 0 tokens
    assert ws.next_unreviewed().id == 1
    assert ws.next_unreviewed(after_id=4).id == 6  # 5 is approved
    assert ws.next_unreviewed(after_id=9).id == 10
    assert ws.next_unreviewed(after_id=10).id == 1  # wraps
    assert ws.next_unreviewed(flt=Filter(label="normal")).id == 4  # normal: 2 (approved), 4, ...
    ws.approve([i for i in ws.ids(Filter(missing=False)) if ws.get(i).status != "rejected"])
    ws.reject(ws.ids(Filter(missing=True)))
    assert ws.next_unreviewed() is None
    with pytest.raises(ValueError, match="unknown status"):
        ws.count(Filter(status="done"))


def test_templates_saved_in_workspace(ws):
    t = ws.get_template("endoscopy")
    t.features.append("vascular pattern")
    ws.save_template(t)
    assert ws.get_template("endoscopy").features[-1] == "vascular pattern"
    ws.save_template(ModalityTemplate("colposcopy", "A colposcopic image", ["color", "acetowhite areas"]))
    assert [t.name for t in ws.list_templates()][-1] == "colposcopy"
    ws.reset_template("endoscopy")
    assert "vascular pattern" not in ws.get_template("endoscopy").features
    with pytest.raises(ValueError, match="unknown placeholders"):
        ws.save_template(ModalityTemplate("bad", "An image", prompt="{oops}"))


def test_remove_and_garbage_collection(ws):
    fill(ws, 3)
    path = ws.get(2).image_path
    assert ws.remove([2]) == 1 and not path.exists()
    stray = ws.root / "images" / "ab" / ("ab" + "0" * 62 + ".png")
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"x")
    assert ws.collect_garbage() == 1 and not stray.exists()
    assert ws.get(1).image_path.exists() and ws.stats()["total"] == 2


def test_a_new_workspace_opens_while_another_connection_creates_it(tmp_path):
    import threading

    root = tmp_path / "ws"
    root.mkdir()
    other = sqlite3.connect(root / "workspace.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE early (x)")  # a second opener, half-way through creating the database
    commit = threading.Timer(0.3, other.execute, ["COMMIT"])
    commit.start()
    with Workspace(root) as w:  # SQLite says "locked" at once here; the workspace waits instead
        assert w.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    commit.join()
    other.close()


WRITER = r"""
import sys
from medart.workspace import Workspace
ws = Workspace(sys.argv[1])
k = 0
while True:
    image_id = k % 5 + 1
    ws.set_text(image_id, f"edit {k}")
    print(k, flush=True)
    k += 1
"""


def test_sigkill_during_a_stream_of_edits_loses_nothing_committed(tmp_path):
    root = tmp_path / "ws"
    with Workspace(root) as w:
        fill(w, 5)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    acked = -1
    deadline = time.time() + 60
    while acked < 150 and time.time() < deadline:
        acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acked >= 150
    # every edit acknowledged before the kill is there; at most the one in flight is extra
    con = sqlite3.connect(root / "workspace.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Workspace(root) as w:
        latest = {}
        for i in range(1, 6):
            k = int(w.get(i).text.split()[1])
            assert k % 5 + 1 == i
            latest[i] = k
        last_acked = {i: max(k for k in range(acked + 1) if k % 5 + 1 == i) for i in range(1, 6)}
        for i in range(1, 6):
            assert latest[i] in (last_acked[i], last_acked[i] + 5)
        history = w.conn.execute("SELECT count(*) FROM history").fetchone()[0]
        assert history in (acked + 1, acked + 2)
        assert w.undo(1).ids == [1] and int(w.get(1).text.split()[1]) == latest[1] - 5


def test_cli_templates(tmp_path, capsys):
    import json

    from medart.cli import main

    w = ["--workspace", str(tmp_path / "ws")]
    assert main(["template", "endoscopy", "--features", "color, shape, vessels", *w]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == ["color", "shape", "vessels"]
    assert main(["template", "colposcopy", "--features", "color", *w]) == 2
    assert "needs --image-phrase" in capsys.readouterr().err
    assert main(["template", "colposcopy", "--image-phrase", "A colposcopic image", "--default", *w]) == 0
    capsys.readouterr()
    assert main(["template", *w]) == 0
    listing = capsys.readouterr().out
    assert "vessels" in listing and listing.strip().splitlines()[-1].startswith("colposcopy")
    with Workspace(tmp_path / "ws") as ws:
        assert ws.get_setting("no_modality_template") == "colposcopy"
        assert ws.get_template("colposcopy").simple_caption("CIN2") == "A colposcopic image of CIN2"
    assert main(["template", "endoscopy", "--reset", *w]) == 0
    assert "vessels" not in capsys.readouterr().out


def test_undo_reverts_the_last_change_whatever_it_was(ws):
    """Labels, splits and a hold-out are changes like caption edits: undo takes the newest,
    whichever image it touched, and says what it was."""
    from medart.workspace.splits import hold_out

    fill(ws, 6, texts=["a caption"] * 6)
    ws.set_text(1, "edited first", approve=True)
    assert ws.set_labels([2, 3], "nevi") == 2
    assert ws.set_split([4], "test") == 1
    hold_out(ws, test=0.5, seed=1)
    moved = [i for i in range(1, 7) if ws.get(i).split == "test"]
    assert moved and moved != [4]
    undone = ws.undo()  # the hold-out, all of its images at once
    assert undone.action == "hold out" and "50 % test, seed 1" in undone.describe()
    assert [ws.get(i).split for i in range(1, 7)] == ["train", "train", "train", "test", "train", "train"]
    assert ws.undo().describe() == "Undid the move to test of #4 (now: split train)."
    assert ws.get(4).split == "train"
    undone = ws.undo()
    assert undone.describe() == "Undid the relabelling to nevi: 2 image(s) back to their label and split."
    assert [ws.get(i).label for i in (2, 3)] == ["normal", "polyps"]
    assert ws.undo().describe() == "Undid the approval of #1 (now: caption edited)."
    assert (ws.get(1).text, ws.get(1).status) == ("a caption", "edited")
    ws.set_labels([5], "polyps")  # its label already: no change, nothing to undo later
    assert ws.undo() is None


def test_a_batch_written_caption_by_caption_is_one_undo_step(ws):
    fill(ws, 4)
    ws.set_text(4, "a reviewer's caption")
    batch = ws.begin_change("caption batch", "(3 image(s), offline)")
    for i in (1, 2, 3):
        assert ws.set_caption(i, f"draft {i}", {"backend": "offline"}, only_if=("draft",), change_id=batch)
    assert not ws.set_caption(4, "not this one", {"backend": "offline"}, only_if=("draft",), change_id=batch)
    undone = ws.undo()
    assert undone.ids == [1, 2, 3] and undone.describe() == (
        "Undid the batch captioning (3 image(s), offline): 3 caption(s) restored.")
    assert [ws.get(i).text for i in (1, 2, 3, 4)] == ["", "", "", "a reviewer's caption"]


# ---- two people on one workspace, and bounds on what one request may cost ----------------------
def test_an_edit_over_someone_elses_newer_change_is_refused_and_says_what_it_is_now(ws, tmp_path, tok):
    from medart.workspace import EditConflict

    (i,) = fill(ws, 1, texts=["A draft."])
    loaded = ws.get(i).updated_at  # what one person's editor loaded
    with Workspace(tmp_path / "ws", tokenizer=tok) as other:  # a second person, another connection
        theirs = other.set_text(i, "Their newer caption.", approve=True)
    assert (theirs.text, theirs.status) == ("Their newer caption.", "approved") and theirs.updated_at > loaded
    with pytest.raises(EditConflict, match="changed by someone else") as refused:
        ws.set_text(i, "My older edit.", expected=loaded)
    assert refused.value.item.text == "Their newer caption." and "Their newer caption." in str(refused.value)
    assert ws.get(i).text == "Their newer caption." and len(ws.history(i)) == 1  # nothing written
    mine = ws.set_text(i, "My edit, over theirs on purpose.", expected=theirs.updated_at)
    assert (mine.text, mine.status) == ("My edit, over theirs on purpose.", "edited")
    assert ws.undo().describe() == "Undid the edit of #1 (now: caption approved)."
    assert ws.get(i).updated_at > mine.updated_at  # an undo is a new version too: stamps only grow


def test_concurrent_saves_answer_with_what_each_saved_and_never_overwrite_unaware(tmp_path, tok):
    import threading

    from medart.workspace import EditConflict

    with Workspace(tmp_path / "ws", tokenizer=tok) as w:
        (i,) = fill(w, 1, texts=["Start."])
    results = {"a": [], "b": []}

    def client(name):
        with Workspace(tmp_path / "ws", tokenizer=tok) as mine:
            for k in range(60):
                loaded = mine.get(i)
                text = f"{name} edit {k}."
                try:
                    saved = mine.set_text(i, text, expected=loaded.updated_at)
                    results[name].append(("saved", text, saved.text, loaded.text))
                except EditConflict as e:
                    results[name].append(("conflict", text, e.item.text, loaded.text))

    threads = [threading.Thread(target=client, args=(n,)) for n in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = results["a"] + results["b"]
    saves = [r for r in rows if r[0] == "saved"]
    assert len(rows) == 120 and saves and all(r[1] == r[2] for r in saves)  # a save answers with its own text
    assert all(r[2] != r[3] for r in rows if r[0] == "conflict")  # a conflict names a newer text than was loaded
    with Workspace(tmp_path / "ws", tokenizer=tok) as w:
        history = w.history(i)
        assert len(history) == len(saves)  # every save is one change, each made over the text its editor loaded
        assert [h["old_text"] for h in history[1:]] == [h["new_text"] for h in history[:-1]]


def test_a_runaway_pattern_is_stopped_with_a_message_and_holds_no_one_else(ws, tmp_path, tok, monkeypatch):
    import threading

    from medart.workspace import store

    ids = fill(ws, 3, texts=["a" * 39 + "b", "a" * 40, "A polyp."])
    t0 = time.monotonic()
    nested = ws.find_replace(r"^(a+)+$", "x", regex=True)  # exponential in Python's re; fine here
    assert time.monotonic() - t0 < 30 and nested.matches == 1  # no exponential backtracking (a hang guard)
    waited = []

    def other_client():  # another person's request while the pattern runs
        time.sleep(0.2)
        with Workspace(tmp_path / "ws", tokenizer=tok) as w:
            w.get(ids[2])
            w.set_text(ids[2], "Another person's edit.")
            waited.append(time.monotonic())  # when the other person's write was done

    thread = threading.Thread(target=other_client)
    thread.start()
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"took too long and was stopped; nothing was changed"):
        ws.find_replace(r"^(a|aa)+$", "x", regex=True, apply=True)
    ended = time.monotonic()
    thread.join()
    assert ended - t0 < 30  # stopped (Python's re: hours for 40 characters)
    assert [ws.get(i).text for i in ids[:2]] == ["a" * 39 + "b", "a" * 40] and waited
    assert waited[0] < ended  # the other write did not wait for the search: no interpreter or write lock held
    fill(ws, 50, texts=["A fundus image, red with pink areas near the optic disc."] * 50)
    monkeypatch.setattr(store, "REGEX_SECONDS", 0.0)  # a workspace's size adds to the budget: a plain pattern
    monkeypatch.setattr(store, "REGEX_PER_CAPTION", 0.02)  # over many captions is not cut short
    assert ws.find_replace(r"\bpink\b", "salmon").captions == ws.count(Filter(text="pink")) > 40


def test_caption_length_is_bounded_on_every_write(ws):
    from medart.workspace import MAX_CAPTION_CHARS

    (i, j) = fill(ws, 2, texts=["A polyp.", ""])
    huge = "reddish " * (3_000_000 // 8)  # 3 MB
    for write in (lambda: ws.set_text(i, huge), lambda: ws.set_caption(j, huge, {"backend": "x"}),
                  lambda: ws.find_replace("polyp", "p" * (MAX_CAPTION_CHARS + 1), regex=False, apply=True)):
        with pytest.raises(ValueError, match=r"characters long, over the limit of 10,000; shorten it"):
            write()
    sha, size, _ = ws.store_image(Image.new("RGB", (16, 16), (1, 2, 250)))
    with pytest.raises(ValueError, match="over the limit"):
        ws.add_images([NewImage(sha, "x.png", 16, 16, "RGB", size, "test", text=huge)])
    assert [ws.get(k).text for k in (i, j)] == ["A polyp.", ""] and ws.count() == 2 and not ws.history(i)
    assert ws.set_text(i, "x" * MAX_CAPTION_CHARS).text == "x" * MAX_CAPTION_CHARS


def test_patterns_that_would_compile_for_long_are_refused_before_compiling(ws, monkeypatch):
    """Issue 18, F3: compiling unrolls counted repeats (a{10000000}: seconds and gigabytes), so
    such patterns, deep nesting and long patterns are refused with one message, uncompiled."""
    from medart.workspace import store

    (i,) = fill(ws, 1, texts=["A polyp, aaa."])
    compiled = []
    real_compile = store.regex_engine.compile
    monkeypatch.setattr(store.regex_engine, "compile", lambda *a, **k: compiled.append(a) or real_compile(*a, **k))
    bad = ["a{3000000}", "a{10000000}", "a{4294967294}", "x{2,99999}", "(?:a{1000}){1000}", "((a{40}){40})",
           "(" * 5000 + "a" + ")" * 5000, "(" * 25 + "a" + ")" * 25, "a" * 501]
    for pattern in bad:
        with pytest.raises(ValueError, match=r"nothing was changed\. Use a shorter, simpler pattern") as e:
            ws.find_replace(pattern, "b", apply=True)
        assert "\n" not in str(e.value)
    assert compiled == [] and ws.get(i).text == "A polyp, aaa." and not ws.history(i)
    assert ws.find_replace(r"a{3}\.|\d{1,4}|(ab){2,5}|[{]", "x").matches == 1  # ordinary counts still work
    assert ws.find_replace("a" * 500, "b").matches == 0


def test_a_replacement_is_bounded_before_the_caption_is_built(ws):
    """Issue 18, F5: a long replacement is refused, and a caption that would grow past
    MAX_CAPTION_CHARS stops being built there: not hundreds of megabytes, then refused."""
    import tracemalloc

    from medart.workspace import MAX_CAPTION_CHARS

    (i,) = fill(ws, 1, texts=["x" * 5000])
    with pytest.raises(ValueError, match=r"the replacement is 3,000,000 characters long, over the limit of 10,000"):
        ws.find_replace("x?", "y" * 3_000_000, apply=True)
    tracemalloc.start()
    try:
        t = time.perf_counter()
        with pytest.raises(ValueError, match=r"#\d+'s caption after the replacement would be over the limit of 10,000"):
            ws.find_replace("x?", "y" * MAX_CAPTION_CHARS, apply=True)  # 5,001 matches: 50 million characters
        took, (_, peak) = time.perf_counter() - t, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, (took, peak)
    assert ws.get(i).text == "x" * 5000 and not ws.history(i)
    ws.set_text(i, "x" * 80)
    assert ws.find_replace("x", "yy", apply=True).matches == 80 and ws.get(i).text == "y" * 160


def test_find_replace_shows_each_match_in_context_and_how_many_more(ws):
    prefix = "An endoscopic image of the sigmoid colon showing a sessile lesion with "
    ids = fill(ws, 5, texts=[prefix + "a reddish rim and reddish vessels."] * 5)
    p = ws.find_replace("reddish", "red", regex=False)
    assert (p.matches, p.captions, len(p.samples), p.more) == (10, 5, 8, 2)
    first, second = p.samples[:2]
    assert (first.id, first.old, first.new) == (ids[0], "reddish", "red")
    assert (first.left, first.right) == ("…a sessile lesion with a ", " rim and reddish vessels.")  # whole words
    assert (second.left, second.right) == ("…with a reddish rim and ", " vessels.")
    assert ws.find_replace(r"(\w+) rim", r"\1 border", regex=True).samples[0].new == "reddish border"


def test_a_caption_longer_than_the_base_reads_cannot_be_approved(tmp_path, tok):
    long = "An endoscopic image of a polyp with " + "reddish mucosa, pale rim and dark vessels, " * 40
    with Workspace(tmp_path / "ws", tokenizer=tok, token_limit=120) as w:
        i, j = fill(w, 2, texts=[long, "A short caption."])
        assert w.get(i).token_count > 120
        for approve in (lambda: w.set_text(i, long, approve=True), lambda: w.approve([i, j])):
            with pytest.raises(ValueError, match=r"#1's caption is [\d,]+ T5 tokens long and the base model reads "
                                                 r"120: shorten it before approving"):
                approve()
        assert [w.get(k).status for k in (i, j)] == ["edited", "edited"]  # all or nothing
        assert w.approve([j]) == 1 and w.set_text(i, "A polyp.", approve=True).status == "approved"


def test_cli_replace_previews_matches_in_context_and_approve_leaves_long_captions(tmp_path, capsys, tok):
    from medart.cli import main

    long = "An endoscopic image of a polyp with " + "reddish mucosa, pale rim and dark vessels, " * 40
    with Workspace(tmp_path / "ws", tokenizer=tok) as w:
        fill(w, 10, texts=["A sessile lesion of the sigmoid colon with a reddish rim."] * 9 + [long])
    w_ = ["--workspace", str(tmp_path / "ws"), "--base-model", "tiny"]
    assert main(["replace", "reddish", "red", *w_]) == 0
    out = capsys.readouterr().out
    assert "  [1] …of the sigmoid colon with a [reddish] rim.\n     -> …of the sigmoid colon with a [red] rim." \
        in out and "  ... and 41 more" in out
    assert main(["approve", "--all", *w_[:2]]) == 0  # the default base here: tiny, a PixArt-α twin
    out = capsys.readouterr().out
    assert "left 1 caption(s) longer than the base model reads (120 T5 tokens) unapproved: #10" in out
    assert "approved: 9 caption(s) changed" in out
    with Workspace(tmp_path / "ws", tokenizer=tok) as w:
        w.set_text(1, "a" * 39 + "b")
    assert main(["replace", r"^(a|aa)+$", "x", *w_]) == 2
    assert "took too long" in capsys.readouterr().err

