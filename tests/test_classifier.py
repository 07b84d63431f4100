"""The compact classifier learns separable synthetic classes; metrics equal hand computations."""

import numpy as np
import pytest
import torch

from medart.evaluation.classifier import (
    ClassifierConfig,
    DomainClassifier,
    classification_metrics,
    train_and_evaluate,
)
from medart.evaluation.metrics import frechet_distance

torch.set_num_threads(1)

CLASSES = ["blue circle", "blue square", "red circle", "red square"]


def shapes(n_per_class, seed, size=32):
    """Coloured shapes with random position, radius, shade and pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images, labels = [], []
    for name in CLASSES:
        colour, shape = name.split()
        for _ in range(n_per_class):
            img = np.full((size, size, 3), rng.uniform(0.35, 0.6), dtype=np.float64)
            cy, cx = rng.uniform(10, size - 10, size=2)
            r = rng.uniform(5, 9)
            if shape == "circle":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            else:
                mask = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
            shade = rng.uniform(0.7, 1.0)
            rgb = (shade, 0.15, 0.15) if colour == "red" else (0.15, 0.2, shade)
            img[mask] = rgb
            img += rng.normal(0, 0.04, size=img.shape)
            images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
            labels.append(name)
    return images, labels


FAST = ClassifierConfig(
    image_size=32, width=16, feature_dim=32, epochs=12, min_steps=0, batch_size=16, learning_rate=5e-3, device="cpu"
)


@pytest.fixture(scope="module")
def trained():
    train_x, train_y = shapes(24, seed=0)
    test_x, test_y = shapes(12, seed=1)
    clf, metrics = train_and_evaluate(train_x, train_y, test_x, test_y, FAST)
    return clf, metrics, test_x, test_y


def test_beats_chance_by_a_wide_margin_on_separable_classes(trained):
    clf, metrics, _, _ = trained
    assert clf.classes == CLASSES
    assert metrics["n"] == 48
    assert metrics["accuracy"] >= 0.8  # chance is 0.25
    assert metrics["macro_f1"] >= 0.75
    assert all(r >= 0.5 for r in metrics["per_class_recall"].values())
    assert clf.history[-1]["loss"] < clf.history[0]["loss"]


def test_untrained_classifier_is_near_chance(trained):
    _, _, test_x, test_y = trained
    untrained = DomainClassifier(CLASSES, FAST)
    assert untrained.evaluate(test_x, test_y)["accuracy"] <= 0.5


def test_features_are_penultimate_and_separate_domains(trained):
    clf, _, test_x, test_y = trained
    f = clf.features(test_x)
    assert f.dtype == torch.float64 and tuple(f.shape) == (48, FAST.feature_dim)
    red = [x for x, y in zip(test_x, test_y) if y.startswith("red")]
    blue = [x for x, y in zip(test_x, test_y) if y.startswith("blue")]
    red_a, red_b = clf.features(red[::2]), clf.features(red[1::2])
    # two halves of one domain are far closer than red vs blue
    assert frechet_distance(red_a, red_b) < 0.5 * frechet_distance(clf.features(red), clf.features(blue))


def test_training_is_reproducible_and_leaves_global_rng_alone():
    x, y = shapes(4, seed=3)
    cfg = ClassifierConfig(image_size=16, width=4, feature_dim=8, epochs=2, min_steps=0, batch_size=8, device="cpu")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = DomainClassifier.fit(x, y, cfg)
    after = torch.rand(1)
    b = DomainClassifier.fit(x, y, cfg)
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_save_and_load_round_trip(trained, tmp_path):
    clf, _, test_x, _ = trained
    clf.save(tmp_path / "clf")
    back = DomainClassifier.load(tmp_path / "clf")
    assert back.classes == clf.classes and back.config.image_size == FAST.image_size
    torch.testing.assert_close(back.features(test_x[:5]), clf.features(test_x[:5]))
    assert back.predict(test_x[:5]) == clf.predict(test_x[:5])
    with pytest.raises(FileNotFoundError):
        DomainClassifier.load(tmp_path / "nothing")


def test_classification_metrics_by_hand():
    classes = ["a", "b", "c", "d"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 1, R 2/3, F1 0.8; b: P 1/2, R 1/2, F1 1/2; c: P 1/2, R 1, F1 2/3; d: absent
    assert m["per_class_recall"] == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 1.0, "d": None}
    assert m["per_class_precision"]["c"] == pytest.approx(0.5)
    assert m["per_class_f1"]["a"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_bad_labels_are_rejected():
    x, y = shapes(2, seed=4, size=24)
    with pytest.raises(ValueError):
        DomainClassifier.fit(x, y, classes=["red circle", "blue circle"])
    with pytest.raises(ValueError):
        DomainClassifier(["only"])


def test_small_sets_train_for_at_least_min_steps_without_single_sample_batches():
    x, y = shapes(2, seed=5, size=24)  # 8 images
    cfg = ClassifierConfig(image_size=16, width=4, feature_dim=8, epochs=1, min_steps=6, batch_size=3, device="cpu")
    clf = DomainClassifier.fit(x, y, cfg)
    # batches of 3, 3, 2 -> 3 steps per epoch -> 2 epochs for 6 steps
    assert clf._batches(8) == [(0, 3), (3, 6), (6, 8)]
    assert len(clf.history) == 2
    assert clf._batches(7) == [(0, 3), (3, 7)]  # a last batch of one joins the previous one
