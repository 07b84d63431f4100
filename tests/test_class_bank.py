"""The class bank: a fixed, disjoint tune/test split of real medical classes, colour and gray."""

import numpy as np
import pytest

from medart import class_bank


def test_split_is_fixed_disjoint_and_balanced():
    assert class_bank.TUNE == ("fundus", "ihc", "mr_abdomen", "cell")
    assert class_bank.TEST == ("he_histology", "nuclei_fluorescence", "ct_head", "brain_t1")
    assert not set(class_bank.TUNE) & set(class_bank.TEST)
    assert set(class_bank.TUNE) | set(class_bank.TEST) == set(class_bank.SPECS)
    assert len(class_bank.SPECS) >= 8
    for half in (class_bank.TUNE, class_bank.TEST):
        colours = [class_bank.SPECS[c].colour for c in half]
        assert colours.count(True) == 2 and colours.count(False) == 2
    captions = [s.caption for s in class_bank.SPECS.values()]
    assert len(set(captions)) == len(captions)


@pytest.mark.parametrize("name", class_bank.TUNE + class_bank.TEST)
def test_training_tiles_never_overlap_references(name):
    c = class_bank.load_class(name)
    assert len(c.train) == class_bank.N_TRAIN and len(c.reference) >= 32
    assert {im.size for im in c.train + c.reference} == {(64, 64)}
    train_hashes = {class_bank.pixel_hash(im) for im in c.train}
    ref_hashes = {class_bank.pixel_hash(im) for im in c.reference}
    assert len(train_hashes) == len(c.train) and len(ref_hashes) == len(c.reference)
    assert not train_hashes & ref_hashes
    regions = c.train_regions + c.reference_regions
    for i, a in enumerate(regions):
        for b in regions[i + 1:]:
            assert not a.overlaps(b), (a, b)
    if len({r.frame for r in regions}) > 1:  # a volume: references come from other slices
        assert not {r.frame for r in c.train_regions} & {r.frame for r in c.reference_regions}
    # colour classes are coloured, gray classes are gray
    pixels = np.stack([np.asarray(im, np.int16) for im in c.reference])
    spread = np.abs(pixels - pixels.mean(axis=3, keepdims=True)).mean()
    assert (spread > 5) == c.spec.colour, spread


def test_tiles_are_the_same_on_every_load():
    first = [class_bank.pixel_hash(im) for im in class_bank.load_class("ihc").train]
    class_bank.load_class.cache_clear()
    assert [class_bank.pixel_hash(im) for im in class_bank.load_class("ihc").train] == first


def test_region_overlap():
    a = class_bank.Region(0, 0, 0, 64)
    assert a.overlaps(class_bank.Region(0, 63, 63, 64))
    assert not a.overlaps(class_bank.Region(0, 64, 0, 64))
    assert not a.overlaps(class_bank.Region(1, 0, 0, 64))


def test_train_folder_has_every_class_caption(tmp_path):
    import json

    train = class_bank.write_train_folder(tmp_path, ("fundus", "cell"))
    rows = [json.loads(line) for line in (train / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all((train / r["file_name"]).is_file() for r in rows)
    assert {r["text"] for r in rows} == {class_bank.SPECS["fundus"].caption, class_bank.SPECS["cell"].caption}
