"""Tests of interp_engine.engine.iou.IoUTally against tests/reference.py."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp_engine import _core
from interp_engine.engine.iou import IoUTally

from _torch import needs_torch, torch
from reference import iou_counts, iou_from_counts, upsample_default, upsample_exact, upsample_torch
from _params import NUMPY_FLOATS

FMA_TORCH = torch is not None and torch.backends.cpu.get_cpu_capability() != "DEFAULT"


def smooth_field(rng, B, K, h, w):
    x = rng.standard_normal((B, K, h + 2, w + 2))
    x = (x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]) / 3
    x = (x[..., :-2] + x[..., 1:-1] + x[..., 2:]) / 3
    return np.maximum(x, 0.0)


def make_case(rng, B=3, K=4, h=5, w=6, sh=13, sw=11, P=2, S=1, NL=9, NC=3):
    acts = smooth_field(rng, B, K, h, w)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(K, -1), 0.8, axis=1) if B else np.zeros(K)
    pl = rng.integers(0, NL, size=(B, P, sh, sw))
    il = rng.integers(0, NL, size=(B, S))
    cat = rng.integers(0, NC, size=NL)
    return acts, thr, pl, il, cat


def run(acts, thr, pl, il, cat, NL, NC, size, rule="annotated", ic=None, num_threads=None, upsample=None):
    if upsample is None:
        upsample = upsample_default
    t = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, unit_rule=rule, num_threads=num_threads)
    t.update(acts, thr, pl, il, ic)
    ref = iou_counts(acts, thr, pl, il, ic, cat, NL, NC, size, rule, upsample=upsample)
    return t, ref


def assert_counts(t, ref):
    I, L, A = ref
    np.testing.assert_array_equal(t.intersection, I)
    np.testing.assert_array_equal(t.label_pixels, L)
    np.testing.assert_array_equal(t.unit_pixels, A)


# --------------------------------------------------------------------------- upsampling
@pytest.mark.skipif(not FMA_TORCH, reason="needs torch with its FMA kernels (not installed, or a CPU without FMA)")
@pytest.mark.parametrize("h,w,sh,sw", [(7, 7, 112, 112), (1, 1, 70, 70), (3, 5, 64, 100), (9, 4, 128, 1),
                                       (20, 30, 100, 29), (13, 13, 113, 17), (2, 2, 65, 64)])
def test_upsample_matches_torch_generic_kernel_bitwise(h, w, sh, sw):
    a = np.random.default_rng(h * 100 + w).standard_normal((h, w))
    ours = _core.iou_upsample_bilinear(a, sh, sw)
    # one channel: torch takes its generic kernel whenever sh + sw > 128 (with
    # more than 3 channels and h = w = 1 the input also counts as channels-last
    # and torch switches kernels)
    np.testing.assert_array_equal(ours, upsample_torch(a[None, None], (sh, sw))[0, 0])


@pytest.mark.parametrize("h,w,sh,sw", [(3, 4, 7, 5), (1, 1, 3, 2), (6, 2, 4, 9), (5, 5, 5, 5)])
def test_upsample_matches_exact_formula(h, w, sh, sw):
    a = np.random.default_rng(1).standard_normal((h, w))
    np.testing.assert_array_equal(_core.iou_upsample_bilinear(a, sh, sw), upsample_exact(a[None, None], (sh, sw))[0, 0])


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("dtype", NUMPY_FLOATS)
def test_counts_equal_reference(rule, dtype):
    rng = np.random.default_rng(0)
    acts, thr, pl, il, cat = make_case(rng)
    acts = acts.astype(dtype)
    t, ref = run(acts, thr, pl, il, cat, 9, 3, (13, 11), rule)
    assert_counts(t, ref)
    assert t.images == 3
    np.testing.assert_allclose(t.iou(), iou_from_counts(*ref, cat), rtol=0, atol=0)


@needs_torch
def test_bfloat16_and_noncontiguous_torch():
    rng = np.random.default_rng(1)
    acts, thr, pl, il, cat = make_case(rng, K=3, h=6, w=5)
    base = torch.from_numpy(acts).to(torch.bfloat16)
    nc = base.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # non-contiguous view
    assert not nc.is_contiguous()
    t = IoUTally(3, 9, cat, 3, output_size=(13, 11))
    t.update(nc, torch.from_numpy(thr), torch.from_numpy(pl), torch.from_numpy(il))
    ref = iou_counts(base.double().numpy(), thr, pl, il, None, cat, 9, 3, (13, 11))
    assert_counts(t, ref)


def test_negative_strides_numpy():
    rng = np.random.default_rng(2)
    acts, thr, pl, il, cat = make_case(rng)
    flipped = acts[::-1, :, ::-1, :]
    t, ref = run(flipped, thr, pl, il, cat, 9, 3, (13, 11))
    assert_counts(t, ref)


@pytest.mark.parametrize("h,w,sh,sw", [(1, 1, 5, 7), (8, 9, 3, 4), (4, 7, 16, 5), (3, 3, 3, 3), (2, 5, 1, 1)])
@pytest.mark.parametrize("rule", ["annotated", "lite"])
def test_shapes(h, w, sh, sw, rule):
    rng = np.random.default_rng(h * 7 + sw)
    acts, thr, pl, il, cat = make_case(rng, K=1, h=h, w=w, sh=sh, sw=sw)
    t, ref = run(acts, thr, pl, il, cat, 9, 3, (sh, sw), rule)
    assert_counts(t, ref)


def test_empty_labels_zero_acts_inf_thresholds():
    rng = np.random.default_rng(3)
    acts, thr, pl, il, cat = make_case(rng, K=4)
    acts[:, 1] = 0.0
    thr[0], thr[2], thr[3] = np.inf, -np.inf, 0.0
    pl[1] = 0
    il[:] = 0
    for rule in ("annotated", "lite"):
        t, ref = run(acts, thr, pl, il, cat, 9, 3, (13, 11), rule)
        assert_counts(t, ref)
        assert t.intersection[0].sum() == 0 and t.unit_pixels[0].sum() == 0
        assert t.intersection[:, 0].sum() == 0 and t.label_pixels[0] == 0


def test_no_labels_at_all_and_given_categories():
    rng = np.random.default_rng(4)
    acts, thr, pl, il, cat = make_case(rng)
    ic = rng.integers(0, 2, size=(3, 3)).astype(bool)
    t, ref = run(acts, thr, None, None, cat, 9, 3, (13, 11), ic=ic)
    assert_counts(t, ref)
    t, ref = run(acts, thr, pl, il, cat, 9, 3, (13, 11), ic=ic)
    assert_counts(t, ref)
    assert t.unit_pixels.sum() > 0


def test_image_level_labels_whole_image_and_label0_never_counted():
    acts = np.zeros((1, 1, 2, 2))
    acts[0, 0, 0, 0] = 1.0
    t = IoUTally(1, 4, [0, 1, 1, 2], 3, output_size=(4, 4), unit_rule="lite")
    t.update(acts, [0.5], None, [[0, 3]])
    up = upsample_exact(acts, (4, 4))[0, 0]
    n = int((up > 0.5).sum())
    assert n > 0
    assert t.intersection.tolist() == [[0, 0, 0, n]]
    assert t.label_pixels.tolist() == [0, 0, 0, 16]
    assert t.unit_pixels.tolist() == [[0, 0, n]]  # label 0 (category 0) not tallied
    assert t.iou()[0, 3] == n / (n + 16 - n)


def test_hand_computed_counts():
    # 1x1 map upsampled: every pixel equals the value
    acts = np.array([[[[2.0]], [[0.0]]]])
    pl = np.array([[[[1, 1], [2, 0]], [[2, 0], [0, 0]]]])  # (1, 2, 2, 2)
    t = IoUTally(2, 3, [0, 0, 1], 2, output_size=(2, 2))
    t.update(acts, [1.0, 1.0], pl)
    assert t.intersection.tolist() == [[0, 2, 2], [0, 0, 0]]
    assert t.label_pixels.tolist() == [0, 2, 2]
    assert t.unit_pixels.tolist() == [[4, 4], [0, 0]]
    np.testing.assert_array_equal(t.iou(), [[0, 2 / 4, 2 / 4], [0, 0, 0]])


# --------------------------------------------------------------------------- ties
@pytest.mark.parametrize("value", [0.1, 6.0, -0.3, 1e-310, 3.0e300])
def test_constant_map_tie(value):
    # convex combinations of equal values can round 1 ulp above them: the rule is
    # the formula, the reference is torch's generic kernel (sh + sw > 128)
    acts = np.full((2, 2, 3, 5), value)
    acts[1, 1] = np.nextafter(value, np.inf)
    cat = [0, 1, 1, 0]
    pl = np.random.default_rng(0).integers(0, 4, size=(2, 1, 70, 90))
    for thr in (value, np.nextafter(value, -np.inf), np.nextafter(value, np.inf)):
        thrs = np.array([thr, thr])
        up = _core.iou_upsample_bilinear(acts[0, 0], 70, 90)
        t, ref = run(acts, thrs, pl, None, cat, 4, 2, (70, 90),
                     upsample=upsample_torch if FMA_TORCH else _upsample_core)
        assert_counts(t, ref)
        assert t.unit_pixels[0, 0] == 2 * int((up > thr).sum())


def _ref_upsample(sh, sw):
    """The reference upsampling for (sh, sw) outputs: torch's kernel where it computes the formula
    bit for bit (FMA hardware, or the kernel it uses for sh + sw <= 128), else the core's own."""
    return upsample_torch if torch is not None and (FMA_TORCH or sh + sw <= 128) else _upsample_core


def _upsample_core(acts64, size):
    out = np.empty(acts64.shape[:2] + tuple(size))
    for b in range(acts64.shape[0]):
        for k in range(acts64.shape[1]):
            out[b, k] = _core.iou_upsample_bilinear(acts64[b, k], *size)
    return out


def test_thresholds_at_upsampled_values_and_neighbours():
    rng = np.random.default_rng(5)
    acts = smooth_field(rng, 2, 6, 7, 7)
    up = upsample_torch(acts, (112, 112)) if FMA_TORCH else _upsample_core(acts, (112, 112))
    thr = np.array([up[0, k].ravel()[rng.integers(112 * 112)] for k in range(6)])
    thr[3] = np.nextafter(thr[3], np.inf)
    thr[4] = np.nextafter(thr[4], -np.inf)
    thr[5] = up[1, 5].max()
    pl = rng.integers(0, 6, size=(2, 2, 112, 112))
    cat = rng.integers(0, 2, size=6)
    t, ref = run(acts, thr, pl, None, cat, 6, 2, (112, 112),
                 upsample=upsample_torch if FMA_TORCH else _upsample_core)
    assert_counts(t, ref)


def test_near_tie_cells_exact_formula_small_output():
    # cells within a few ulps of T, small output: compared with the spelled-out formula
    rng = np.random.default_rng(6)
    T = 0.7
    acts = T + rng.integers(-3, 4, size=(2, 3, 3, 4)) * np.spacing(T)
    pl = rng.integers(0, 5, size=(2, 1, 7, 6))
    cat = [0, 0, 1, 1, 2]
    t, ref = run(acts, np.full(3, T), pl, None, cat, 5, 3, (7, 6), upsample=upsample_exact)
    assert_counts(t, ref)


def test_hot_bound():
    for T in (0.0, 1.0, -1.0, 1e300, -1e300, 5e-324):
        assert _core.iou_hot_bound(T) < T
    assert _core.iou_hot_bound(np.inf) == np.inf and _core.iou_hot_bound(-np.inf) == -np.inf


# --------------------------------------------------------------------------- property test
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 14),
       st.integers(1, 14), st.integers(0, 3), st.integers(0, 2), st.integers(1, 8), st.integers(1, 3),
       st.sampled_from(["annotated", "lite"]), st.integers(0, 2**31), st.sampled_from([None, 1, 2]),
       st.booleans())
def test_property_random_shapes(B, K, h, w, sh, sw, P, S, NL, NC, rule, seed, nt, blobs):
    rng = np.random.default_rng(seed)
    acts = smooth_field(rng, B, K, h, w) * rng.uniform(0.5, 2.0)
    thr = rng.standard_normal(K) * 0.3 + 0.2
    if K > 1:
        thr[rng.integers(K)] = rng.choice([np.inf, -np.inf, 0.0])
    pl = rng.integers(0, NL, size=(B, P, sh, sw)) * (rng.random((B, P, sh, sw)) < 0.7) if P else None
    if P and blobs:
        pl = blob_labels(rng, B, P, sh, sw, NL)
    il = rng.integers(0, NL, size=(B, S)) if S else None
    cat = rng.integers(0, NC, size=NL)
    t, ref = run(acts, thr, pl, il, cat, NL, NC, (sh, sw), rule, num_threads=nt)
    assert_counts(t, ref)
    assert t.images == B


# --------------------------------------------------------------------------- merge / state / pickle
@pytest.mark.parametrize("rule", ["annotated", "lite"])
def test_merge_halves_equals_one_pass(rule):
    rng = np.random.default_rng(7)
    acts, thr, pl, il, cat = make_case(rng, B=6)
    whole = IoUTally(4, 9, cat, 3, output_size=(13, 11), unit_rule=rule)
    whole.update(acts, thr, pl, il)
    a = IoUTally(4, 9, cat, 3, output_size=(13, 11), unit_rule=rule)
    b = IoUTally(4, 9, cat, 3, output_size=(13, 11), unit_rule=rule, num_threads=1)
    a.update(acts[:2], thr, pl[:2], il[:2])
    b.update(acts[2:], thr, pl[2:], il[2:])
    a.merge(b)
    for name in ("intersection", "label_pixels", "unit_pixels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(whole, name))
    assert a.images == whole.images == 6
    np.testing.assert_array_equal(a.iou(), whole.iou())


def test_merge_incompatible():
    t = IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 4))
    with pytest.raises(ValueError, match="same configuration"):
        t.merge(IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 5)))
    with pytest.raises(ValueError, match="same configuration"):
        t.merge(IoUTally(2, 3, [0, 1, 1], 2, output_size=(4, 4)))
    with pytest.raises(ValueError, match="same configuration"):
        t.merge(IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 4), unit_rule="lite"))
    with pytest.raises(TypeError):
        t.merge("x")


def test_state_dict_and_pickle_roundtrip():
    rng = np.random.default_rng(8)
    acts, thr, pl, il, cat = make_case(rng)
    t = IoUTally(4, 9, cat, 3, output_size=(13, 11), unit_rule="lite")
    t.update(acts, thr, pl, il)
    for u in (IoUTally.from_state_dict(t.state_dict()), pickle.loads(pickle.dumps(t))):
        for name in ("intersection", "label_pixels", "unit_pixels", "images", "unit_rule", "output_size"):
            np.testing.assert_array_equal(getattr(u, name), getattr(t, name))
        u.update(acts, thr, pl, il)  # still usable
        assert u.images == 6
    with pytest.raises(ValueError, match="P = 2"):
        IoUTally.from_state_dict(t.state_dict()).update(acts, thr, pl[:, :1], il)


def test_state_dict_validation():
    t = IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 4))
    good = t.state_dict()
    for key, val, exc in [("intersection", np.zeros((2, 4), np.int64), ValueError),
                          ("intersection", np.zeros((2, 3)), TypeError),
                          ("unit_pixels", -np.ones((2, 2), np.int64), ValueError),
                          ("images", -1, ValueError), ("format", "x", ValueError),
                          ("label_category", [0, 0, 5], ValueError), ("unit_rule", "foo", ValueError)]:
        bad = dict(good)
        bad[key] = val
        with pytest.raises(exc):
            IoUTally.from_state_dict(bad)
    bad = dict(good)
    del bad["label_pixels"]
    with pytest.raises(ValueError, match="missing"):
        IoUTally.from_state_dict(bad)
    with pytest.raises(TypeError):
        IoUTally.from_state_dict([1])


# --------------------------------------------------------------------------- validation
def _ok():
    rng = np.random.default_rng(9)
    acts, thr, pl, il, cat = make_case(rng)
    return IoUTally(4, 9, cat, 3, output_size=(13, 11)), acts, thr, pl, il


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda a, t, p, i: (a[0], t, p, i), ValueError, "activations must be 4-dimensional"),
    (lambda a, t, p, i: (a[:, :3], t, p, i), ValueError, "num_units = 4"),
    (lambda a, t, p, i: (a[:, :, :0], t, p, i), ValueError, "non-empty"),
    (lambda a, t, p, i: (a, t[:3], p, i), ValueError, "thresholds must have shape"),
    (lambda a, t, p, i: (a, np.where(np.arange(4) == 1, np.nan, t), p, i), ValueError, "NaN"),
    (lambda a, t, p, i: (np.where(a > 0.5, np.nan, a), t, p, i), ValueError, "activations must not contain NaN"),
    (lambda a, t, p, i: (a.astype(np.int64), t, p, i), TypeError, "activations must have a floating-point"),
    (lambda a, t, p, i: (a, t, p[:, :, :12], i), ValueError, "output_size"),
    (lambda a, t, p, i: (a, t, p[:2], i), ValueError, "batch size"),
    (lambda a, t, p, i: (a, t, p, i[:2]), ValueError, "batch size"),
    (lambda a, t, p, i: (a, t, p[0], i), ValueError, "4-dimensional"),
    (lambda a, t, p, i: (a, t, p.astype(np.float32), i), TypeError, "pixel_labels must have an integer dtype"),
    (lambda a, t, p, i: (a, t, p.astype(bool), i), TypeError, "pixel_labels must have an integer dtype"),
    (lambda a, t, p, i: (a, t, p, i.astype(np.float64)), TypeError, "image_labels must have an integer dtype"),
    (lambda a, t, p, i: (a, t, np.where(p == 3, 9, p), i), ValueError, r"pixel_labels must hold label numbers in \[0, num_labels\) = \[0, 9\); got 9"),
    (lambda a, t, p, i: (a, t, np.where(p == 3, -2, p), i), ValueError, "got -2"),
    (lambda a, t, p, i: (a, t, p, i + 20), ValueError, "image_labels must hold"),
    (lambda a, t, p, i: (a, t, p, -i - 1), ValueError, "image_labels must hold"),
])
def test_validation_errors_leave_counts_unchanged(mutate, exc, match):
    t, acts, thr, pl, il = _ok()
    t.update(acts, thr, pl, il)
    before = t.state_dict()
    with pytest.raises(exc, match=match):
        t.update(*mutate(acts, thr, pl, il))
    after = t.state_dict()
    for key in ("intersection", "label_pixels", "unit_pixels", "images"):
        np.testing.assert_array_equal(before[key], after[key])


def test_image_categories_and_consistency_errors():
    t, acts, thr, pl, il = _ok()
    with pytest.raises(ValueError, match="image_categories must have shape"):
        t.update(acts, thr, pl, il, np.ones((3, 2), bool))
    with pytest.raises(TypeError, match="image_categories"):
        t.update(acts, thr, pl, il, np.ones((3, 3), np.float32))
    t.update(acts, thr, pl, il)
    with pytest.raises(ValueError, match="S = 1"):
        t.update(acts, thr, pl, np.concatenate([il, il], 1))


def test_constructor_validation():
    with pytest.raises(ValueError, match="label_category values must lie"):
        IoUTally(2, 3, [0, 1, 2], 2, output_size=(4, 4))
    with pytest.raises(ValueError, match="label_category must have shape"):
        IoUTally(2, 3, [0, 1], 2, output_size=(4, 4))
    with pytest.raises(TypeError, match="label_category must have an integer dtype"):
        IoUTally(2, 3, [0.0, 1.0, 1.0], 2, output_size=(4, 4))
    with pytest.raises(ValueError, match="unit_rule"):
        IoUTally(2, 3, [0, 1, 1], 2, output_size=(4, 4), unit_rule="x")
    with pytest.raises(ValueError, match="num_units"):
        IoUTally(0, 3, [0, 1, 1], 2, output_size=(4, 4))
    with pytest.raises(ValueError, match="output_size"):
        IoUTally(2, 3, [0, 1, 1], 2, output_size=(4, 0))
    with pytest.raises(ValueError, match="output_size"):
        IoUTally(2, 3, [0, 1, 1], 2, output_size=(4, 4, 4))
    with pytest.raises(TypeError, match="num_threads"):
        IoUTally(2, 3, [0, 1, 1], 2, output_size=(4, 4), num_threads=1.5)


def test_empty_batch_is_noop():
    t, acts, thr, pl, il = _ok()
    t.update(acts[:0], thr, pl[:0], il[:0])
    t.update(acts[:0], thr)
    assert t.images == 0 and t.intersection.sum() == 0


def test_label_dtypes():
    rng = np.random.default_rng(10)
    acts, thr, pl, il, cat = make_case(rng)
    ref = iou_counts(acts, thr, pl, il, None, cat, 9, 3, (13, 11))
    for dt in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        t = IoUTally(4, 9, cat, 3, output_size=(13, 11))
        t.update(acts, thr, pl.astype(dt), il.astype(dt))
        assert_counts(t, ref)


@pytest.mark.parametrize("rule", ["annotated", "lite"])
def test_thread_count_does_not_change_counts(rule):
    rng = np.random.default_rng(11)
    acts = smooth_field(rng, 8, 40, 7, 7).astype(np.float32)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(40, -1), 0.9, axis=1)
    pl = rng.integers(0, 30, (8, 3, 40, 40)).astype(np.int16)
    il = rng.integers(0, 30, (8, 2))
    cat = np.arange(30) % 4
    out = []
    for nt in (1, 2, 5):
        t = IoUTally(40, 30, cat, 4, output_size=(40, 40), unit_rule=rule, num_threads=nt)
        t.update(acts, thr, pl, il)
        out.append(t.state_dict())
    for s in out[1:]:
        for key in ("intersection", "label_pixels", "unit_pixels"):
            np.testing.assert_array_equal(s[key], out[0][key])


def test_zero_maps_and_zero_columns():
    rng = np.random.default_rng(12)
    acts, thr, pl, il, cat = make_case(rng)
    t, ref = run(acts, thr, pl[:, :0], il[:, :0], cat, 9, 3, (13, 11))
    assert_counts(t, ref)
    assert t.intersection.sum() == 0 and t.unit_pixels.sum() == 0


@needs_torch
def test_torch_bfloat16_thresholds_and_float16_activations():
    rng = np.random.default_rng(13)
    acts, thr, pl, il, cat = make_case(rng, sh=70, sw=90)
    a16 = torch.from_numpy(acts).half()
    t16 = torch.from_numpy(thr).bfloat16()
    t = IoUTally(4, 9, cat, 3, output_size=(70, 90))
    t.update(a16, t16, pl, il)
    ref = iou_counts(a16.double().numpy(), t16.double().numpy(), pl, il, None, cat, 9, 3, (70, 90),
                     upsample=upsample_torch if FMA_TORCH else _upsample_core)
    assert_counts(t, ref)


def blob_labels(rng, B, P, sh, sw, NL):
    """Region-like label maps (long runs along rows), so the core keeps them as runs."""
    lo = rng.integers(0, NL, size=(B, P, max(1, sh // 4), max(1, sw // 5)))
    lab = np.repeat(np.repeat(lo, 4, axis=2), 5, axis=3)[:, :, :sh, :sw]
    pad = ((0, 0), (0, 0), (0, sh - lab.shape[2]), (0, sw - lab.shape[3]))
    return np.pad(lab, pad, mode="edge")


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("size", [(13, 11), (70, 90), (3, 130)])
def test_region_labels_run_path_and_mixed_images(rule, size):
    rng = np.random.default_rng(14)
    sh, sw = size
    acts = smooth_field(rng, 4, 5, 6, 7)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(5, -1), 0.7, axis=1)
    pl = blob_labels(rng, 4, 3, sh, sw, 12)
    pl[2] = rng.integers(0, 12, size=(3, sh, sw))  # one fragmented image (masks unless sw > 256)
    il = rng.integers(0, 12, size=(4, 2))
    cat = rng.integers(0, 3, size=12)
    for dt in (np.int16, np.int64):
        t, ref = run(acts, thr, pl.astype(dt), il, cat, 12, 3, size, rule,
                     upsample=_ref_upsample(sh, sw))
        assert_counts(t, ref)


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("size", [(40, 300), (9, 255), (9, 256), (9, 257), (5, 64), (6, 128), (7, 65)])
def test_run_index_widths_and_word_edges(rule, size):
    """Rows wider than 256 pixels take the per-pixel run ends, narrower ones
    the label masks; runs cross 256-pixel blocks and 64-bit mask words."""
    rng = np.random.default_rng(21)
    sh, sw = size
    acts = smooth_field(rng, 3, 6, 4, 9)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(6, -1), 0.5, axis=1)
    pl = blob_labels(rng, 3, 2, sh, sw, 10)
    pl[:, 1, :, ::7] = 0  # label-0 gaps inside rows
    il = rng.integers(0, 10, size=(3, 1))
    cat = rng.integers(0, 3, size=10)
    t, ref = run(acts, thr, pl.astype(np.int32), il, cat, 10, 3, size, rule,
                 upsample=_ref_upsample(sh, sw))
    assert_counts(t, ref)


def test_every_kernel_variant_gives_the_same_counts(isa):
    """INTERP_ENGINE_ISA caps the instruction sets the core may use
    (portable code, AVX2 + FMA + POPCNT, AVX-512): every variant this CPU
    can run must give the reference counts, on masks and run ends, on mask
    words at every offset; float64 maps and float32 ones (their hot test:
    AVX2 max pass, AVX-512 block pass or portable loop)."""
    rng = np.random.default_rng(31)
    for (sh, sw), dt in zip(((112, 112), (9, 200), (5, 300), (12, 17), (112, 112), (12, 17)),
                            (np.float64,) * 4 + (np.float32,) * 2):
        acts = smooth_field(rng, 4, 6, 7, 7).astype(dt)
        thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(6, -1), 0.6, axis=1)
        pl = blob_labels(rng, 4, 3, sh, sw, 40)
        pl[1] = rng.integers(0, 40, size=(3, sh, sw))  # fragmented
        pl[:, 2, :, ::5] = 0
        il = rng.integers(0, 40, size=(4, 2))
        cat = rng.integers(0, 4, size=40)
        for rule in ("annotated", "lite"):
            t, ref = run(acts, thr, pl.astype(np.int16), il, cat, 40, 4, (sh, sw), rule, num_threads=2,
                         upsample=_ref_upsample(sh, sw))
            assert_counts(t, ref)


def test_isa_cap_is_read_at_every_call_and_checked(monkeypatch):
    """INTERP_ENGINE_ISA caps what the kernels may use, read at each call (a
    change takes effect in a running process); an unknown value is a
    ValueError naming the variable, raised before any count changes."""
    has = _core.cpu_features(capped=False)
    monkeypatch.setenv("INTERP_ENGINE_ISA", "generic")
    assert not any(_core.cpu_features().values())
    monkeypatch.setenv("INTERP_ENGINE_ISA", "avx2")
    assert _core.cpu_features() == {k: v and not k.startswith("avx512") for k, v in has.items()}
    monkeypatch.setenv("INTERP_ENGINE_ISA", "avx512")
    assert _core.cpu_features() == has
    rng = np.random.default_rng(4)
    acts, thr, pl, il, cat = make_case(rng)
    t = IoUTally(acts.shape[1], 9, cat, 3, output_size=(13, 11))
    t.update(acts, thr, pl, il)
    before = t.intersection.copy()
    monkeypatch.setenv("INTERP_ENGINE_ISA", "AVX2")
    with pytest.raises(ValueError, match=r"INTERP_ENGINE_ISA must be one of generic, avx2, avx512 \(or unset\); "
                                         r"got 'AVX2'"):
        t.update(acts, thr, pl, il)
    np.testing.assert_array_equal(t.intersection, before)
    assert t.images == acts.shape[0]
    monkeypatch.setenv("INTERP_ENGINE_ISA", "")  # empty: no cap
    t.update(acts, thr, pl, il)
    np.testing.assert_array_equal(t.intersection, 2 * before)


@pytest.mark.parametrize("rule", ["annotated", "lite"])
def test_many_images_in_chunks_and_thread_counts(rule):
    """Images go through the core in chunks of ~4 MB of label data: 60 images
    of 6 maps at 112x112 take three chunks."""
    rng = np.random.default_rng(22)
    B, K, P = 60, 3, 6
    acts = smooth_field(rng, B, K, 4, 4)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(K, -1), 0.9, axis=1)
    pl = blob_labels(rng, B, P, 112, 112, 40)
    pl[7] = rng.integers(0, 40, size=(P, 112, 112))  # one fragmented image
    il = rng.integers(0, 40, size=(B, 2))
    cat = rng.integers(0, 4, size=40)
    ref = iou_counts(acts, thr, pl, il, None, cat, 40, 4, (112, 112), rule,
                     upsample=upsample_torch if FMA_TORCH else _upsample_core)
    for nt in (1, 2, 3):
        t = IoUTally(K, 40, cat, 4, output_size=(112, 112), unit_rule=rule, num_threads=nt)
        t.update(acts, thr, pl.astype(np.int16), il)
        assert_counts(t, ref)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 7), (8, 8), (3, 19), (9, 13), (32, 32), (33, 33)])
def test_float32_block_hot_test_matches_per_map_test(h, w):
    """Contiguous float32 maps of up to 1,024 cells are tested for hot cells
    a block of units at a time (AVX-512; bit windows across 56-bit chunks);
    every other case and the avx2 cap test map by map.  Thresholds between
    two floats, equal to a cell, +-inf; blocks of units when the batch is
    small; counts equal to the reference either way."""
    rng = np.random.default_rng(h * 40 + w)
    B, K, NL, NC = 3, 37, 11, 3
    acts = smooth_field(rng, B, K, h, w).astype(np.float32)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(K, -1).astype(np.float64), 0.9, axis=1)
    thr[0] = acts[1, 0].max()                         # equal to a cell: that cell is not hot
    thr[1] = np.nextafter(np.float64(acts[2, 1].max()), -np.inf)  # just below a float: hot
    thr[2], thr[3], thr[4] = np.inf, -np.inf, 0.0
    thr[5] = float(acts[:, 5].max()) + 1e-9          # between two floats above the max
    pl = blob_labels(rng, B, 2, 9, 10, NL)
    il = rng.integers(0, NL, size=(B, 1))
    cat = rng.integers(0, NC, size=NL)
    # the numpy formula (torch's kernel for 1x1 maps of many channels rounds differently)
    ref = iou_counts(acts, thr, pl, il, None, cat, NL, NC, (9, 10), "annotated", upsample=upsample_exact)
    for nt in (1, 3):  # 3 images, 3 threads: units split into blocks
        t = IoUTally(K, NL, cat, NC, output_size=(9, 10), num_threads=nt)
        t.update(acts, thr, pl.astype(np.int16), il)
        assert_counts(t, ref)


@pytest.mark.parametrize("h,w", [(9, 7), (5, 13), (11, 11)])
def test_float32_block_hot_test_single_hot_cell_everywhere(h, w):
    """One hot cell per map, at every cell position and every bit offset of
    the block's bit array: a map must never be skipped."""
    n = h * w
    K = 2 * n + 3
    acts = np.zeros((2, K, h, w), np.float32)
    for b in range(2):
        for k in range(K):
            acts[b, k].flat[(k + 5 * b) % n] = 1.0
    thr = np.full(K, 0.5)
    pl = np.ones((2, 1, 2 * h, 2 * w), np.int16)
    cat = np.zeros(3, np.int64)
    ref = iou_counts(acts, thr, pl, None, None, cat, 3, 1, (2 * h, 2 * w), "annotated", upsample=upsample_exact)
    assert (ref[0][:, 1] > 0).all()
    for nt in (1, 2):
        t = IoUTally(K, 3, cat, 1, output_size=(2 * h, 2 * w), num_threads=nt)
        t.update(acts, thr, pl, None)
        assert_counts(t, ref)


def test_float32_nan_is_named_by_its_first_map():
    rng = np.random.default_rng(41)
    acts = smooth_field(rng, 2, 30, 7, 7).astype(np.float32)
    acts[1, 17, 3, 4] = np.nan
    acts[1, 23, 0, 0] = np.nan
    thr = np.full(30, 0.1)
    t = IoUTally(30, 5, np.zeros(5, np.int64), 1, output_size=(14, 14))
    before = t.state_dict()
    with pytest.raises(ValueError, match=r"activations must not contain NaN \(image 1, unit 17\)"):
        t.update(acts, thr, np.ones((2, 1, 14, 14), np.int16), None)
    np.testing.assert_array_equal(t.intersection, before["intersection"])


def test_repeated_updates_and_failed_update_in_between():
    """The core keeps its intersection records between updates: they must be
    clean after every update, a failed one included."""
    rng = np.random.default_rng(23)
    acts, thr, pl, il, cat = make_case(rng, B=4, K=5, sh=20, sw=30, P=2, NL=9, NC=3)
    t = IoUTally(5, 9, cat, 3, output_size=(20, 30))
    t.update(acts, thr, pl, il)
    bad = acts.copy()
    bad[3, 4, 0, 0] = np.nan
    with pytest.raises(ValueError):
        t.update(bad, thr, pl, il)
    t.update(acts[:2], thr, pl[:2], il[:2])
    t.update(acts[2:], thr, pl[2:], il[2:])
    I, L, A = iou_counts(acts, thr, pl, il, None, cat, 9, 3, (20, 30), "annotated")
    np.testing.assert_array_equal(t.intersection, 2 * I)
    np.testing.assert_array_equal(t.label_pixels, 2 * L)
    np.testing.assert_array_equal(t.unit_pixels, 2 * A)


def row_run_labels(rng, P, sh, sw, NL, runs, zero_every=3, pool=None):
    """(P, sh, sw) label maps whose rows hold exactly `runs` runs (random
    lengths >= 1, neighbours different; every `zero_every`-th run is label 0).
    pool: the labels to draw from (default: 1 .. NL - 1)."""
    out = np.empty((P, sh, sw), np.int64)
    pool = np.arange(1, NL) if pool is None else np.asarray(pool)
    for m, y in np.ndindex(P, sh):
        cuts = np.sort(rng.choice(np.arange(1, sw), runs - 1, replace=False))
        idx = rng.integers(0, len(pool), runs)
        for i in range(1, runs):
            if idx[i] == idx[i - 1]:
                idx[i] = (idx[i] + 1) % len(pool)
        labs = pool[idx]
        labs[::zero_every] = 0
        out[m, y] = np.repeat(labs, np.diff(np.concatenate([[0], cuts, [sw]])))
    return out


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("sw,NL", [(112, 50), (256, 400), (257, 50), (17, 70000), (64, 300)])
def test_mask_and_run_end_formats_per_image(rule, sw, NL):
    """Images with rows of at most 256 pixels and at most 128 (map, label)
    pairs are kept as label masks; any other image as per-pixel run ends.
    One batch mixes: many runs per row from a few labels (masks, whatever the
    number of runs), exactly 128 columns (masks) and 129 (run ends), over 255
    labels in one image (run ends, when NL allows),
    labels >= 65536, label-0 runs, long runs; sw = 256 is the widest mask row
    (4 words), sw = 257 makes every image run ends."""
    rng = np.random.default_rng(sw + NL)
    P, sh = 2, 12
    few = rng.choice(np.arange(1, NL), size=min(NL - 1, 9), replace=False)
    runs = min(sw // 2, 40)
    cols = lambda n: rng.choice(np.arange(1, NL), size=min(NL - 1, n), replace=False)
    imgs = [row_run_labels(rng, P, sh, sw, NL, runs, pool=few),
            row_run_labels(rng, P, sh, sw, NL, 15),
            row_run_labels(rng, P, sh, sw, NL, 15, zero_every=15),
            row_run_labels(rng, P, sh, sw, NL, 1, zero_every=5),
            row_run_labels(rng, P, sh, sw, NL, 3)]
    imgs[4][:] = rng.integers(1, NL, size=(P, sh, 1))  # one label per row: long runs
    # 64 labels per map, two maps: exactly 128 columns (the same label in both
    # maps is two columns); one more label: 129
    for j, n in ((1, 64), (2, 65)):
        if NL - 1 >= n and P * sh * sw >= 2 * n:
            imgs[j][0].flat[:n] = cols(n)
            imgs[j][1].flat[:64] = cols(64)
            if sh * sw > n:
                imgs[j][0].flat[n:] = imgs[j][0].flat[0]
            if sh * sw > 64:
                imgs[j][1].flat[64:] = imgs[j][1].flat[0]
    pl = np.stack(imgs)
    if NL > 65536:
        pl[0, 0, 0, :3] = [65536, 65537, NL - 1]
    B, K = len(imgs), 6
    acts = smooth_field(rng, B, K, 3, 5)
    thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(K, -1), 0.4, axis=1)
    il = rng.integers(0, NL, size=(B, 1))
    cat = rng.integers(0, 3, size=NL)
    for dt in (np.int32, np.uint32, np.int64):
        t, ref = run(acts, thr, pl.astype(dt), il, cat, NL, 3, (sh, sw), rule, num_threads=2,
                     upsample=_ref_upsample(sh, sw))
        assert_counts(t, ref)
    # the format each image got
    formats = []
    for b in range(B):
        t1 = IoUTally(K, NL, cat, 3, output_size=(sh, sw), unit_rule=rule)
        t1.update(acts[b:b + 1], thr, pl[b:b + 1].astype(np.int32), il[b:b + 1])
        nz = [np.unique(m[m != 0]) for m in pl[b]]
        want = sw <= 256 and sum(map(len, nz)) <= 128
        assert t1._core._last_masked_images == int(want)
        formats.append(want)
    assert any(formats) == (sw <= 256)
    if sw <= 256 and NL > 66:
        assert formats[1:3] == [True, False]  # 128 columns: masks; 129: run ends
    if NL < 32768:
        t, ref = run(acts, thr, pl.astype(np.int16), il, cat, NL, 3, (sh, sw), rule,
                     upsample=_ref_upsample(sh, sw))
        assert_counts(t, ref)
