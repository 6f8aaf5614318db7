"""Benchmark of IoUTally (Network Dissection counts) against its baseline and
peers, in one pytest-benchmark group, on one data set:

  B = 256 images, K = 512 units at 7x7 upsampled to 112x112, 6 pixel label
  maps + 2 image-level labels per image, 1,200 labels in 6 categories,
  thresholds at the 99.5th percentile of each unit.  Activations are ReLU of
  smoothed Gaussian fields (spatially correlated, like conv features), label
  maps are blobs (argmax of smooth random fields, parts masked to regions).

  (a) ours: IoUTally.update on the whole batch (float32 activations, int16
      label maps read in place; every variant gets the same arrays), the
      steady state of a dissection run: one tally that has taken a batch of
      the same size before is updated round after round, as a run does batch
      after batch; (a0) is the first update of a new tally, its construction
      included (allocating and first touching the ~5 MB of (K, num_labels)
      counts and the work buffers)
  (b) a NetDissect-Lite-style Python loop (per image, per unit: skip if the
      map's max <= T, upsample, argwhere, bincount), timed on the first
      LITE_IMAGES images and scaled per image to 256
  (c) the fastest vectorized torch CPU version we wrote: only maps that can
      fire (max > T - margin), F.interpolate in float64 in chunks, compare,
      nonzero, bincount / index_add on the active pixels only
  (d) a ResNet-18 forward pass (plain torch, random weights, eval,
      inference_mode) at 224x224, timed on RESNET_IMAGES images and scaled

Every variant's counts are checked equal to ours before timing (and ours to
tests/reference.py on a few images).  Run (about 2 minutes):

  PYTHONPATH=. python -m pytest benchmarks/bench_iou.py --benchmark-only -s -q \
      -p no:cacheprovider --benchmark-columns=min,mean,rounds

The ratio table is printed at the end (test_zz_ratios).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from interp_engine import _core  # noqa: E402
from interp_engine.engine.iou import IoUTally  # noqa: E402

B, K, H, W, SH, SW, P, S, NL = 256, 512, 7, 7, 112, 112, 6, 2, 1200
# categories: 0 object, 1 part, 2 material, 3 color (pixel); 4 scene, 5 texture (image-level)
CAT_RANGES = [(1, 585), (585, 819), (819, 851), (851, 862), (862, 1101), (1101, 1200)]
NC = len(CAT_RANGES)
MAP_CATS = [0, 1, 1, 2, 3, 1]
LITE_IMAGES = int(os.environ.get("BENCH_IOU_LITE_IMAGES", "16"))
RESNET_IMAGES = int(os.environ.get("BENCH_IOU_RESNET_IMAGES", "16"))
RESULTS: dict = {}
GROUP = "iou B=256 K=512 7x7->112x112, 6 maps + 2 image labels, 1200 labels"


def _smooth(g: torch.Generator, n: int, c: int, lo: int, out: int) -> torch.Tensor:
    f = torch.randn(n, c, lo, lo, generator=g)
    return F.interpolate(f, size=(out, out), mode="bilinear", align_corners=False)


def make_data(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # activations: ReLU(smoothed field) with a per-unit scale and offset, float32
    f = torch.randn(B, K, H + 4, W + 4, generator=g)
    f = F.avg_pool2d(f, 5, stride=1) * 2.0
    scale = torch.rand(K, generator=g) * 2 + 0.5
    offset = torch.randn(K, generator=g) * 0.3
    acts = torch.relu(f * scale[:, None, None] + offset[:, None, None]).float().contiguous()
    thr = torch.quantile(acts.transpose(0, 1).reshape(K, -1).double(), 0.995, dim=1)
    # label maps: per map, argmax of 6 smooth fields -> 6 regions with random labels of its category
    regions = _smooth(g, B * P, 6, 6, SH).argmax(1)  # (B*P, SH, SW)
    table = torch.empty(B * P, 6, dtype=torch.int64)
    for m, c in enumerate(MAP_CATS):
        lo, hi = CAT_RANGES[c]
        table.view(B, P, 6)[:, m] = torch.randint(lo, hi, (B, 6), generator=g)
    labels = torch.gather(table, 1, regions.view(B * P, -1)).view(B, P, SH, SW)
    keep = _smooth(g, B, P, 5, SH) > 0.3  # parts / materials cover only some regions
    keep[:, [0, 4]] = True  # objects and colours cover the image
    labels = (labels * keep).to(torch.int16).contiguous()  # label numbers < 2^15, as Broden's
    img = torch.stack([torch.randint(CAT_RANGES[4][0], CAT_RANGES[4][1], (B,), generator=g),
                       torch.randint(CAT_RANGES[5][0], CAT_RANGES[5][1], (B,), generator=g)], 1)
    img[torch.rand(B, generator=g) < 0.3, 1] = 0  # not every image has a texture label
    label_category = np.zeros(NL, np.int64)
    for c, (lo, hi) in enumerate(CAT_RANGES):
        label_category[lo:hi] = c
    return {"acts": acts, "thr": thr, "labels": labels, "img": img, "label_category": label_category}


def derived_categories(d: dict) -> torch.Tensor:
    cat = torch.from_numpy(d["label_category"])
    cats = torch.zeros(B, NC, dtype=torch.bool)
    for b in range(B):
        present = torch.cat([d["labels"][b].unique().long(), d["img"][b].unique()])
        present = present[present != 0]
        cats[b, cat[present]] = True
    return cats


# ----------------------------------------------------------------------------- (a)
def ours(d: dict, images: slice = slice(None), unit_rule: str = "annotated") -> IoUTally:
    t = IoUTally(K, NL, d["label_category"], NC, output_size=(SH, SW), unit_rule=unit_rule)
    t.update(d["acts"][images], d["thr"], d["labels"][images], d["img"][images])
    return t


# ----------------------------------------------------------------------------- (b)
def lite_loop(d: dict, n_images: int):
    """NetDissect-Lite's tally loop (`FeatureOperator.tally_job`), ported per
    image and per unit with the same per-pair work: label pixels tallied per
    image, then for every unit whose map's max exceeds T an upsampling (torch
    bilinear, float64, instead of Lite's scipy imresize), argwhere, a bincount
    of the label maps under the active pixels, the label->category product
    with `labelcat`, and the image-level labels.  Its category rule is Lite's
    (a category counts only where one of its labels lies in the active region),
    so it is checked against ``IoUTally(unit_rule="lite")``.  Lite's bug of
    tallying image-level label 0 is not copied (zeros are dropped first)."""
    I = np.zeros((K, NL), np.int64)
    A = np.zeros((K, NC), np.int64)
    L = np.zeros(NL, np.int64)
    labelcat = np.zeros((NL, NC), np.int64)
    labelcat[np.arange(NL), d["label_category"]] = 1
    acts = d["acts"].numpy()
    thr = d["thr"].numpy()
    labels = d["labels"].numpy()
    img = d["img"].numpy()
    for b in range(n_images):
        pixels = labels[b]
        scalars = [int(s) for s in img[b] if s != 0]
        for scalar in scalars:
            L[scalar] += SH * SW
        tally_label = np.bincount(pixels.ravel())
        tally_label[0] = 0
        L[:len(tally_label)] += tally_label
        for u in range(K):
            fmap = acts[b, u]
            if fmap.max() > thr[u]:
                mask = F.interpolate(torch.from_numpy(fmap.astype(np.float64))[None, None], size=(SH, SW),
                                     mode="bilinear", align_corners=False).numpy()[0, 0]
                indexes = np.argwhere(mask > thr[u])
                n = len(indexes)
                bt = np.bincount(pixels[:, indexes[:, 0], indexes[:, 1]].ravel())
                if len(bt) > 0:
                    bt[0] = 0
                tally_cat = np.dot(bt[None, :], labelcat[:len(bt), :])[0]
                I[u, :len(bt)] += bt
                for scalar in scalars:
                    tally_cat = tally_cat + labelcat[scalar]
                    I[u, scalar] += n
                A[u] += n * (tally_cat > 0)
    return I, A, L


# ----------------------------------------------------------------------------- (c)
def torch_vectorized(d: dict, cats: torch.Tensor, chunk: int = 512):
    acts, thr, labels, img = d["acts"], d["thr"], d["labels"], d["img"]
    margin = torch.tensor([_core.iou_hot_bound(float(t)) for t in thr], dtype=torch.float64)
    fire = acts.amax((2, 3)).double() > margin[None, :]  # maps that can fire
    bidx, kidx = fire.nonzero(as_tuple=True)
    I = torch.zeros(K * NL, dtype=torch.int64)
    A = torch.zeros(K, NC, dtype=torch.int64)
    cats64 = cats.long()
    for s in range(0, len(bidx), chunk):
        bb, kk = bidx[s:s + chunk], kidx[s:s + chunk]
        maps = acts[bb, kk].double().unsqueeze(1)
        up = F.interpolate(maps, size=(SH, SW), mode="bilinear", align_corners=False)[:, 0]
        m = up > thr[kk][:, None, None]
        cnt = m.sum((1, 2))
        j, y, x = m.nonzero(as_tuple=True)
        lab = labels[bb[j], :, y, x].long()  # (N, P)
        I += torch.bincount((kk[j][:, None] * NL + lab).ravel(), minlength=K * NL)
        for c in range(img.shape[1]):
            I.index_add_(0, kk * NL + img[bb, c], cnt)
        A.index_add_(0, kk, cnt[:, None] * cats64[bb])
    I = I.view(K, NL)
    I[:, 0] = 0
    return I.numpy(), A.numpy()


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    return make_data()


@pytest.fixture(scope="module")
def cats(data):
    return derived_categories(data)


@pytest.fixture(scope="module")
def expected(data):
    return ours(data)


def test_correctness_against_reference(data, expected):
    from reference import iou_counts

    n = 3
    t = ours(data, slice(0, n))
    I, L, A = iou_counts(data["acts"][:n].numpy(), data["thr"].numpy(), data["labels"][:n].numpy(),
                         data["img"][:n].numpy(), None, data["label_category"], NL, NC, (SH, SW))
    np.testing.assert_array_equal(t.intersection, I)
    np.testing.assert_array_equal(t.label_pixels, L)
    np.testing.assert_array_equal(t.unit_pixels, A)
    frac = (expected.intersection.sum(1) > 0).mean()
    print(f"\n[data] active pixel fraction {expected.unit_pixels[:, 0].sum() / (B * K * SH * SW):.4%}, "
          f"units with a non-zero intersection {frac:.0%}")


def _record(name, seconds, scale=1.0):
    RESULTS[name] = seconds * scale


def _warm_tally(d: dict, unit_rule: str) -> IoUTally:
    """A tally that has taken one batch of the same size (the same images in
    another order): what every update of a dissection run after the first
    finds (its counts and work buffers exist).  The timed rounds then update
    this same tally again and again, as a run does batch after batch."""
    t = IoUTally(K, NL, d["label_category"], NC, output_size=(SH, SW), unit_rule=unit_rule)
    order = np.roll(np.arange(B), B // 2)
    t.update(d["acts"][order], d["thr"], d["labels"][order], d["img"][order])
    return t


def _update(t: IoUTally, d: dict) -> IoUTally:
    t.update(d["acts"], d["thr"], d["labels"], d["img"])
    return t


def test_a_ours(benchmark, data, expected):
    benchmark.group = GROUP
    t = _warm_tally(data, "annotated")
    benchmark.pedantic(_update, args=(t, data), rounds=7, iterations=1, warmup_rounds=1)
    # 9 updates (warm batch, warm-up round, 7 rounds) of the same images: 9x the counts
    assert t.images == 9 * B
    np.testing.assert_array_equal(t.intersection, 9 * expected.intersection)
    np.testing.assert_array_equal(t.unit_pixels, 9 * expected.unit_pixels)
    benchmark.extra_info.update(impl="ours", note="annotated-category rule")
    _record("a", benchmark.stats.stats.min)


def test_a0_ours_first_update(benchmark, data, expected):
    benchmark.group = GROUP
    t = benchmark.pedantic(ours, args=(data,), rounds=3, iterations=1, warmup_rounds=1)
    np.testing.assert_array_equal(t.intersection, expected.intersection)
    benchmark.extra_info.update(impl="ours, first update", note="new tally: construction + first update")
    _record("a0", benchmark.stats.stats.min)


def test_a2_ours_lite_rule(benchmark, data):
    benchmark.group = GROUP
    t = _warm_tally(data, "lite")
    benchmark.pedantic(_update, args=(t, data), rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(impl="ours (lite rule)", note="same category rule as (b)")
    _record("a2", benchmark.stats.stats.min)


def test_b_lite_loop(benchmark, data, expected, cats):
    benchmark.group = GROUP
    sub = ours(data, slice(0, LITE_IMAGES), unit_rule="lite")
    I, A, L = lite_loop(data, LITE_IMAGES)  # check before timing
    np.testing.assert_array_equal(I, sub.intersection)
    np.testing.assert_array_equal(A, sub.unit_pixels)
    np.testing.assert_array_equal(L, sub.label_pixels)
    benchmark.pedantic(lite_loop, args=(data, LITE_IMAGES), rounds=1, iterations=1)
    benchmark.extra_info.update(impl="NetDissect-Lite loop (port)", scale=B / LITE_IMAGES,
                                note=f"timed on {LITE_IMAGES} images, scaled")
    _record("b", benchmark.stats.stats.min, B / LITE_IMAGES)


def test_c_torch_vectorized(benchmark, data, expected, cats):
    benchmark.group = GROUP
    I, A = benchmark.pedantic(torch_vectorized, args=(data, cats), rounds=2, iterations=1)
    np.testing.assert_array_equal(I, expected.intersection)
    np.testing.assert_array_equal(A, expected.unit_pixels)
    benchmark.extra_info.update(impl="vectorized torch (float64)")
    _record("c", benchmark.stats.stats.min)


def test_d_resnet18_forward(benchmark):
    from resnet18 import ResNet18

    benchmark.group = GROUP
    model = ResNet18().eval()
    x = torch.randn(RESNET_IMAGES, 3, 224, 224)

    def fwd():
        with torch.inference_mode():
            return model(x)

    with torch.inference_mode():
        model(x[:2])  # warm-up
    benchmark.pedantic(fwd, rounds=3, iterations=1)
    benchmark.extra_info.update(impl="ResNet-18 forward 224x224", scale=B / RESNET_IMAGES,
                                note=f"timed on {RESNET_IMAGES} images, scaled; context, not a peer")
    _record("d", benchmark.stats.stats.min, B / RESNET_IMAGES)


def test_zz_ratios():
    if not all(k in RESULTS for k in ("a", "a0", "a2", "b", "c", "d")):
        pytest.skip("run the whole file")
    a, a0, a2, b, c, d = (RESULTS[k] for k in ("a", "a0", "a2", "b", "c", "d"))
    lines = [
        "| variant | seconds per 256 images | ratio |",
        "|---|---:|---:|",
        f"| (a) ours, IoUTally.update ({_core.get_num_threads()} threads) | {a:.3f} | 1 |",
        f"| (a0) ours, first update of a new tally | {a0:.3f} | (b)/(a0) = {b / a0:.0f}x |",
        f"| (a2) ours, Lite's category rule | {a2:.3f} | |",
        f"| (b) NetDissect-Lite tally loop, ported ({LITE_IMAGES} images, scaled) | {b:.2f} | (b)/(a2) = {b / a2:.0f}x |",
        f"| (c) vectorized torch, float64 | {c:.2f} | (c)/(a) = {c / a:.1f}x |",
        f"| (d) ResNet-18 forward 224x224 ({RESNET_IMAGES} images, scaled) | {d:.2f} | (a)/(d) = {a / d:.1%} |",
    ]
    print("\n" + "\n".join(lines))
