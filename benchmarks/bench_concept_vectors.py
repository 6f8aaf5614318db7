"""Concept vectors at a 512-channel layer (issue 5): learning vectors for every
pixel concept of the bundled dataset in one streaming pass plus the solve,
against captum's TCAV CAV training for the same concepts, same run; and the
streaming accumulation that dominated the fit, core against batched torch.

Run (about 3-4 minutes on a 2-core machine):

    PYTHONPATH=$PWD:$PWD/benchmarks python -m pytest benchmarks/bench_concept_vectors.py \\
        --benchmark-only -q -p no:cacheprovider --benchmark-columns=min,median,max,rounds

Model: ResNet-18 (benchmarks/resnet18.py, random weights seeded: the timing
does not depend on them) on the bundled concept dataset (2,500 images at
64x64, generated on first use), layer ``layer4`` (512 x 2 x 2).  Concepts:
the 17 pixel-level labels (11 colours, 6 shapes).

Groups:

* ``learn 17 concept vectors``:
  - ours, ``ConceptVectors`` on all 2,000 training images: semantic vectors
    (from the pixel masks) and CAVs (``method="cav"``: every image containing
    the concept against as many random ones, SGD, on spatial means): one
    streaming pass (model, quantile sketch, sample; the activations cached),
    the exact-threshold pass and the best-unit + calibration pass from the
    cache, and the 17 solves.  ``extra_info`` splits the time (``timings``).
  - ours and captum, TCAV's CAVs from image-level examples, the same sets
    for both: per concept 100 training images that contain it, three random
    sets of 100 training images; every concept against random sets 1 and 2,
    and random set 0 against random sets 1 and 2 (the reference CAVs of the
    significance test): 36 CAVs, 2,000 images through the model.  Ours with
    the SGD classifier (captum's settings) and with the mean difference
    (FastCAV); captum ``TCAV.compute_cavs`` with its ``DefaultClassifier``
    (sklearn SGD), CAVs saved to a temporary directory as captum does.
    Images are decoded before timing (the same tensors for both).
* ``unit x concept tally``: the best-unit pass's accumulation over 500 images
  (512 unit maps 2x2 upsampled to 64x64, thresholded, intersected with 17
  concept masks): the core's ``IoUTally`` (what ``ConceptVectors`` uses), the
  batched torch version it replaced (float64 upsampling + einsum), and the same
  in float32.  The counts are checked equal before timing.
"""
from __future__ import annotations

import tempfile
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from interp_engine import IoUTally  # noqa: E402
from interp_engine.data import BrodenDataset  # noqa: E402
from interp_engine.data.concepts import concept_dataset  # noqa: E402
from interp_engine.methods.concept_vectors import ConceptVectors  # noqa: E402
from interp_engine.methods.tcav import TCAV  # noqa: E402

from resnet18 import ResNet18  # noqa: E402

LAYER = "layer4"
PER_SET = 100
N_TALLY = 500


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return ResNet18(num_classes=27).eval()


@pytest.fixture(scope="module")
def train():
    return BrodenDataset(concept_dataset(), split="train", transform="unit")


@pytest.fixture(scope="module")
def concepts(train):
    names = [n for n in train.label_names[1:]
             if train.categories[int(train.label_category[train.label_names.index(n)])] in
             train.pixel_categories]
    return names


@pytest.fixture(scope="module")
def example_sets(train, concepts):
    """(concept -> image tensor (PER_SET, 3, 64, 64), [3 random image tensors])."""
    labels_only = train.with_fields(image=False)
    present = np.zeros((len(train), len(train.label_names)), dtype=bool)
    for i in range(len(train)):
        pl = labels_only[i]["pixel_labels"].numpy().ravel()
        present[i, np.unique(pl)] = True
    rng = np.random.default_rng(0)

    def images(idx):
        return torch.stack([train[int(i)]["image"] for i in idx])

    sets = {}
    for c in concepts:
        have = np.flatnonzero(present[:, train.label_names.index(c)])
        sets[c] = images(rng.choice(have, min(PER_SET, len(have)), replace=False))
    perm = rng.permutation(len(train))
    randoms = [images(perm[k * PER_SET:(k + 1) * PER_SET]) for k in range(3)]
    return sets, randoms


def _once(benchmark, fn):
    out = {}

    def run():
        t0 = time.perf_counter()
        out["result"] = fn()
        out["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1)
    return out


GROUP = f"learn 17 concept vectors, ResNet-18 {LAYER} (512 ch), bundled dataset"


@pytest.mark.parametrize("method", ["semantic", "cav"])
def test_concept_vectors(benchmark, model, train, concepts, method):
    benchmark.group = GROUP
    benchmark.extra_info.update({"impl": f"interp_engine ConceptVectors {method}, 2000 images (ours)"})
    out = _once(benchmark, lambda: ConceptVectors(model, LAYER, method=method, seed=0).fit(train, split=None))
    cv = out["result"]
    assert len(cv.concepts) == len(concepts)
    for k, v in cv.timings.items():
        benchmark.extra_info[k] = round(v, 3)
    benchmark.extra_info["note"] = ", ".join(f"{k} {v:.1f} s" for k, v in cv.timings.items())


@pytest.mark.parametrize("classifier", ["sgd", "mean_difference"])
def test_tcav_cavs_ours(benchmark, model, example_sets, classifier):
    sets, randoms = example_sets
    benchmark.group = GROUP
    benchmark.extra_info.update({"impl": f"interp_engine TCAV CAVs, {classifier} (ours)"})
    tc = TCAV(model, LAYER, num_random=2, classifier=classifier, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn convergence warnings on random features
        out = _once(benchmark, lambda: tc.fit(sets, randoms))
    assert len(out["result"].cavs) == 2 * (len(sets) + 1)
    benchmark.extra_info["cavs"] = len(tc.cavs)


def test_tcav_cavs_captum(benchmark, model, example_sets):
    pytest.importorskip("captum.concept")
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept

    sets, randoms = example_sets
    benchmark.group = GROUP
    benchmark.extra_info.update({"impl": "captum TCAV.compute_cavs (peer)"})

    def loader(x):
        return torch.utils.data.DataLoader(x, batch_size=64)

    rand = [Concept(100 + k, f"random_{k}", loader(r)) for k, r in enumerate(randoms)]
    cons = [Concept(i, c, loader(x)) for i, (c, x) in enumerate(sets.items())]
    experimental = [[c, r] for c in cons + [rand[0]] for r in rand[1:]]

    def run():
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tc = CaptumTCAV(model, [LAYER], save_path=tmp)
            return tc.compute_cavs(experimental)

    out = _once(benchmark, run)
    assert len(out["result"]) == len(experimental)
    benchmark.extra_info["cavs"] = len(experimental)


# ----------------------------------------------------------------------------- the accumulation

@pytest.fixture(scope="module")
def tally_data(model, train, concepts):
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, range(N_TALLY)), batch_size=100)
    acts, pls = [], []
    feats = {}
    h = model.layer4.register_forward_hook(lambda m, i, o: feats.update(a=o))
    try:
        with torch.inference_mode():
            for b in loader:
                model(b["image"])
                acts.append(feats["a"].clone())
                pls.append(b["pixel_labels"])
    finally:
        h.remove()
    a = torch.cat(acts)
    thr = np.quantile(a.double().transpose(0, 1).reshape(a.shape[1], -1).numpy(), 0.995, axis=1)
    labels = [train.label_names.index(c) for c in concepts]
    return a, torch.cat(pls), thr, labels, tuple(int(s) for s in train.pixel_size), len(train.label_names)


def _tally_core(a, pl, thr, labels, size, num_labels):
    t = IoUTally(a.shape[1], num_labels, np.zeros(num_labels, np.int64), 1, output_size=size)
    for s in range(0, a.shape[0], 100):
        t.update(a[s:s + 100], thr, pixel_labels=pl[s:s + 100], image_categories=np.ones((len(a[s:s + 100]), 1), bool))
    return t.intersection[:, labels], t.unit_pixels[:, 0]


def _tally_torch(a, pl, thr, labels, size, num_labels, dtype):
    thr_t = torch.as_tensor(thr, dtype=dtype)[None, :, None, None]
    lab = torch.as_tensor(labels, dtype=pl.dtype)
    inter = 0
    upix = 0
    for s in range(0, a.shape[0], 100):
        up = F.interpolate(a[s:s + 100].to(dtype), size=size, mode="bilinear", align_corners=False)
        u = (up > thr_t).to(torch.float32)
        m = (pl[s:s + 100, :, None] == lab[None, None, :, None, None]).any(1).to(torch.float32)
        inter = inter + torch.einsum("bkhw,blhw->kl", u, m).round().to(torch.int64)
        upix = upix + u.sum((0, 2, 3)).to(torch.int64)
    return inter.numpy(), upix.numpy()


TALLY_IMPLS = {
    "interp_engine IoUTally (ours)": _tally_core,
    "torch float64 upsample + einsum (previous)": lambda *x: _tally_torch(*x, torch.float64),
    "torch float32 upsample + einsum": lambda *x: _tally_torch(*x, torch.float32),
}


@pytest.mark.parametrize("impl", list(TALLY_IMPLS))
def test_unit_concept_tally(benchmark, tally_data, impl):
    benchmark.group = f"unit x concept tally: {N_TALLY} images, 512 units 2x2 -> 64x64, 17 concepts"
    benchmark.extra_info["impl"] = impl
    ref_i, ref_u = _tally_core(*tally_data)
    got_i, got_u = TALLY_IMPLS[impl](*tally_data)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_u, ref_u)
    benchmark.pedantic(TALLY_IMPLS[impl], args=tally_data, rounds=3, iterations=1)
