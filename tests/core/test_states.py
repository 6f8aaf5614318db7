"""Accumulator states, pickling and merges (issue 14, item 8) and the exact
pass's check that it saw the same data as the sketch (item 9).

One rule for every accumulator: merging an object with itself is refused
(it would count the same data twice); a merge whose sums would overflow is
refused without changing either object; a state is validated field by field
against the others (ValueError naming the field), and its digest catches any
other change made after state_dict()."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from interp_engine import ChannelQuantiles, ExactQuantilePass, IoUTally

from _torch import needs_torch, torch


# --------------------------------------------------------------------------- helpers
def tally_case(rule="annotated", seed=0, B=4, K=3, NL=7, NC=3, size=(9, 8), P=2, S=1, ic=False):
    rng = np.random.default_rng(seed)
    acts = np.maximum(rng.standard_normal((B, K, 4, 5)), 0)
    thr = np.full(K, 0.5)
    pl = rng.integers(0, NL, size=(B, P, *size))
    il = rng.integers(0, NL, size=(B, S))
    cat = np.random.default_rng(99).integers(0, NC, size=NL)  # one configuration for every seed
    t = IoUTally(K, NL, cat, NC, output_size=size, unit_rule=rule)
    cats = rng.integers(0, 2, size=(B, NC)).astype(bool) if ic else None
    t.update(acts, thr, pl, il, cats)
    return t


def counts_of(t):
    return t.intersection.copy(), t.label_pixels.copy(), t.unit_pixels.copy(), t.images


def same_counts(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]


def without_digest(state):
    d = dict(state)
    d.pop("digest")
    return d


def big_tally_state(value, images, rule="annotated"):
    """A valid state of a (1 unit, 2 labels, 1 category, 1x1 output) tally whose
    counts are `value` (label 1), fed `images` images with one pixel map."""
    t = IoUTally(1, 2, [0, 0], 1, output_size=(1, 1), unit_rule=rule)
    t.update(np.ones((1, 1, 1, 1)), [0.0], pixel_labels=np.ones((1, 1, 1, 1), np.int64))
    st = without_digest(t.state_dict())
    st["intersection"] = np.array([[0, value]], np.int64)
    st["label_pixels"] = np.array([0, value], np.int64)
    st["unit_pixels"] = np.array([[value]], np.int64)
    st["images"] = images
    return st


# --------------------------------------------------------------------------- IoUTally
def test_tally_self_merge_is_refused_and_changes_nothing():
    t = tally_case()
    before = counts_of(t)
    with pytest.raises(ValueError, match="merging a tally with itself"):
        t.merge(t)
    assert same_counts(counts_of(t), before)
    # the core refuses too (it is the object that would double its counts)
    with pytest.raises(ValueError, match="itself"):
        t._core.merge(t._core)
    assert same_counts(counts_of(t), before)


def test_tally_merge_overflow_is_refused_and_changes_neither():
    big = 1 << 62
    a = IoUTally.from_state_dict(big_tally_state(big, big))
    b = IoUTally.from_state_dict(big_tally_state(big, big))
    ca, cb = counts_of(a), counts_of(b)
    with pytest.raises(ValueError, match="overflow int64"):
        a.merge(b)
    assert same_counts(counts_of(a), ca) and same_counts(counts_of(b), cb)
    # just below the limit it merges exactly
    c = IoUTally.from_state_dict(big_tally_state(big - 1, big - 1))
    a.merge(c)
    assert a.intersection[0, 1] == a.label_pixels[1] == a.unit_pixels[0, 0] == (1 << 63) - 1


def test_tally_iou_exact_when_unit_plus_label_pixels_exceed_int64():
    # A = L = 3 * 2**61 (A + L > 2**63), I = 2**61: IoU = 1 / 5 exactly
    v, i = 3 << 61, 1 << 61
    st = big_tally_state(v, v)
    st["intersection"] = np.array([[0, i]], np.int64)
    t = IoUTally.from_state_dict(st)
    assert t.iou()[0, 1] == 0.2


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("ic", [False, True])
def test_tally_real_states_pass_validation_and_round_trip(rule, ic):
    for seed in range(3):
        t = tally_case(rule, seed, ic=ic)
        for u in (IoUTally.from_state_dict(t.state_dict()), pickle.loads(pickle.dumps(t)),
                  IoUTally.from_state_dict(without_digest(t.state_dict()))):
            assert same_counts(counts_of(u), counts_of(t))
        m = tally_case(rule, seed + 10, ic=ic)
        m.merge(t)
        IoUTally.from_state_dict(m.state_dict())


def _bad(state, **changes):
    d = without_digest(state)
    d.update(changes)
    return d


@pytest.mark.parametrize("field,change,exc,match", [
    ("intersection", lambda s: np.array(s["intersection"], np.uint64) + np.uint64(1 << 63), ValueError,
     r"state\['intersection'\] must hold counts <= 2\*\*63 - 1"),
    ("unit_pixels", lambda s: np.full_like(s["unit_pixels"], 9 * 8 * 4 + 1), ValueError,
     r"state\['unit_pixels'\].*exceeds images x sh x sw = 288"),
    ("label_pixels", lambda s: np.where(np.arange(7) == 3, 4 * 3 * 72 + 1, s["label_pixels"]), ValueError,
     r"state\['label_pixels'\].*more pixels than images x label maps x sh x sw = 864"),
    ("intersection", lambda s: np.where(np.arange(7) == 2, s["label_pixels"][2] + 1, s["intersection"]), ValueError,
     r"state\['intersection'\].*exceeds label_pixels\[2\]"),
    ("intersection", lambda s: np.where(np.arange(7) == 0, 1, s["intersection"]), ValueError,
     r"state\['intersection'\]: label 0 \(none\) is never tallied"),
    ("images", lambda s: 2.0, TypeError, r"state\['images'\] must be an integer"),
    ("images", lambda s: True, TypeError, r"state\['images'\] must be an integer"),
    ("images", lambda s: 1 << 64, ValueError, r"state\['images'\] must be an integer in \[0, 2\*\*63 - 1\]"),
    ("num_pixel_maps", lambda s: -1, ValueError, r"state\['num_pixel_maps'\]"),
    ("output_size", lambda s: 7, ValueError, r"state\['output_size'\] must be a pair"),
    ("num_units", lambda s: "3", TypeError, r"state\['num_units'\] must be an integer"),
    ("unit_pixels", lambda s: s["unit_pixels"].astype(np.float64), TypeError, r"state\['unit_pixels'\] must be an "),
])
def test_tally_state_field_checks(field, change, exc, match):
    st = tally_case().state_dict()  # 4 images of 9 x 8, P + S = 3
    with pytest.raises(exc, match=match):
        IoUTally.from_state_dict(_bad(st, **{field: change(st)}))


def test_tally_lite_intersection_bounded_by_unit_pixels():
    st = tally_case("lite").state_dict()
    d = _bad(st, unit_pixels=np.zeros_like(st["unit_pixels"]))
    if not st["intersection"].any():
        pytest.skip("no intersection in this case")
    with pytest.raises(ValueError, match=r"state\['intersection'\].*unit_rule 'lite'"):
        IoUTally.from_state_dict(d)
    # the annotated rule with explicit categories can legitimately have I > A
    t = tally_case("annotated", ic=True)
    IoUTally.from_state_dict(t.state_dict())


def test_tally_digest_catches_changes_within_bounds():
    t = tally_case()
    st = t.state_dict()
    for key, val in (("images", st["images"] + 1), ("unit_pixels", np.maximum(st["unit_pixels"] - 1, 0)),
                     ("num_image_labels", 2)):
        d = dict(st)
        d[key] = val
        with pytest.raises(ValueError, match=rf"state\['{key}'\].* is not what state_dict\(\) wrote: its digest"):
            IoUTally.from_state_dict(d)
        IoUTally.from_state_dict(without_digest(d))  # without the digest: the field checks alone
    d = dict(st, digest=5)
    with pytest.raises(ValueError, match="digest"):
        IoUTally.from_state_dict(d)


def test_tally_state_through_npz_keeps_its_digest(tmp_path):
    t = tally_case()
    st = t.state_dict()
    arrays = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
    np.savez(tmp_path / "s.npz", **arrays)
    back = dict(st)
    with np.load(tmp_path / "s.npz") as z:
        back.update({k: z[k] for k in arrays})
    back["output_size"] = list(st["output_size"])  # e.g. after JSON
    assert same_counts(counts_of(IoUTally.from_state_dict(back)), counts_of(t))


# --------------------------------------------------------------------------- ChannelQuantiles
def sketch(k=100, n=5000, C=2, seed=0, nan="raise"):
    cq = ChannelQuantiles(C, k=k, nan=nan)
    cq.update(np.random.default_rng(seed).standard_normal((n, C)))
    return cq


def one_level_state(C=1, k=64, L=58, top=32):
    """A valid state holding `top` items on level L-1 (count top * 2**(L-1))."""
    st = without_digest(ChannelQuantiles(C, k=k).state_dict())
    sizes = np.zeros((C, L), np.int64)
    sizes[:, L - 1] = top
    st.update(level_sizes=sizes, items=np.tile(np.arange(top, dtype=np.float64), C),
              count=np.full(C, min(top << (L - 1), (1 << 63) - 1), np.int64), min=np.zeros(C),
              max=np.full(C, top - 1.0),
              wide=np.ones(C, np.int64))
    return st


def test_sketch_self_merge_refused_by_core_too():
    cq = sketch()
    with pytest.raises(ValueError, match="itself"):
        cq.merge(cq)
    with pytest.raises(ValueError, match="itself"):
        cq._sk.merge(cq._sk)


def test_sketch_merge_count_overflow_refused_and_changes_neither():
    a = ChannelQuantiles.from_state_dict(one_level_state())  # count 2**62
    b = ChannelQuantiles.from_state_dict(one_level_state())
    assert a.count[0] == 1 << 62
    sa, sb = a.state_dict(), b.state_dict()
    with pytest.raises(ValueError, match="would exceed 2\\^63 - 1; neither sketch was changed"):
        a.merge(b)
    assert a.state_dict()["digest"] == sa["digest"] and b.state_dict()["digest"] == sb["digest"]


def test_sketch_state_weights_wrapping_at_2_64_refused():
    st = one_level_state(L=61, top=16)  # 16 items of weight 2**60: 2**64 wraps to 0
    st["count"] = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="weigh more than 2\\^64"):
        ChannelQuantiles.from_state_dict(st)


def test_sketch_state_level_sizes_overflowing_refused():
    st = without_digest(sketch().state_dict())
    sizes = np.zeros((2, 4), np.int64)
    sizes[0] = [1 << 62, 1 << 62, 1 << 62, (1 << 62) + 3]  # sums to 2**64 + 3: wraps to 3
    st.update(level_sizes=sizes, items=np.zeros(3))
    with pytest.raises(ValueError, match="'level_sizes' add up to more than the 3 values"):
        ChannelQuantiles.from_state_dict(st)


@pytest.mark.parametrize("key,value,match", [
    ("wide", lambda s: np.array([2, 0]), "'wide' must be 0 or 1"),
    ("count", lambda s: s["count"].astype(np.uint64) + np.uint64(1 << 63), r"'count'\] must hold integers <= 2\*\*63"),
    ("count", lambda s: s["count"] - 10**6, "'count' must be >= 0"),
    ("nan_count", lambda s: np.array([-1, 0]), "'nan_count' must be >= 0"),
    ("k", lambda s: 1 << 31, r"'k'\] must be an integer in \[64, 1073741824\]"),
    ("k", lambda s: True, "'k'"),
    ("skip_nan", lambda s: 2, "'skip_nan'"),
    ("seed", lambda s: -1, "'seed'"),
    ("checksum", lambda s: s["checksum"][:1], r"'checksum'\] must have shape \(2, 2\) .*got shape \(1, 2\)"),
    ("checksum", lambda s: s["checksum"].astype(np.int64), r"'checksum'\] must be a uint64 array of shape \(2, 2\)"),
    ("checksum_known", lambda s: 3, "'checksum_known'"),
    ("level_sizes", lambda s: -s["level_sizes"], "'level_sizes' must be >= 0"),
])
def test_sketch_state_field_checks(key, value, match):
    st = without_digest(sketch().state_dict())
    st[key] = value(st)
    with pytest.raises(ValueError, match=match):
        ChannelQuantiles.from_state_dict(st)


def test_sketch_changed_k_refused():
    st = sketch(k=100, n=50_000).state_dict()
    # without the digest the level invariants catch a k far from the real one
    for k in (400, 1000):
        d = without_digest(st)
        d["k"] = k
        with pytest.raises(ValueError, match="changed k"):
            ChannelQuantiles.from_state_dict(d)
    # with it, any change of k
    for k in (101, 150, 200):
        d = dict(st, k=k)
        with pytest.raises(ValueError, match="digest"):
            ChannelQuantiles.from_state_dict(d)


def test_sketch_digest_catches_edited_items_and_rng():
    st = sketch().state_dict()
    for key in ("items", "rng_state", "min"):
        d = dict(st)
        v = st[key].copy()
        if key == "items":
            v[5] = np.nextafter(v[5], v[6] if v[6] > v[5] else np.inf)
        elif key == "min":
            v[0] = v[0] - 1.0
        else:
            v[0] ^= np.uint64(1)
        d[key] = v
        with pytest.raises(ValueError, match="digest"):
            ChannelQuantiles.from_state_dict(d)


def test_sketch_large_k_arithmetic():
    # level0_min(k) = 2k/3 overflowed int for k > 2**30 / 3 * 3 (UBSan); k up to 2**30 works
    cq = ChannelQuantiles(1, k=1 << 30)
    cq.update(np.arange(1000.0)[:, None])
    assert cq.quantile(1.0)[0] == 999.0
    with pytest.raises(ValueError, match="k must be <= 1073741824"):
        ChannelQuantiles(1, k=(1 << 30) + 1)


def test_sketch_version_1_state_loads_without_checksum():
    cq = sketch()
    st = without_digest(cq.state_dict())
    st.pop("checksum")
    st.pop("checksum_known")
    st["version"] = 1
    old = ChannelQuantiles.from_state_dict(st)
    np.testing.assert_array_equal(old.quantile(0.5), cq.quantile(0.5))
    assert old.state_dict()["checksum_known"] == 0
    assert not old.exact_pass(0.5).verifies_values
    assert cq.exact_pass(0.5).verifies_values
    # merged with a sketch that has one: unknown
    cq.merge(old)
    assert not cq.exact_pass(0.5).verifies_values
    v2 = dict(without_digest(cq.state_dict()), version=2)
    v2.pop("checksum")
    with pytest.raises(ValueError, match="missing keys \\['checksum'\\]"):
        ChannelQuantiles.from_state_dict(v2)


# --------------------------------------------------------------------------- the exact pass's check (item 9)
def stream(C=3, n=20_000, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, C)) + np.arange(C) * 10).astype(np.float32)


def planned(x, q=(0.1, 0.5, 0.99), nan="raise", batches=4):
    cq = ChannelQuantiles(x.shape[1], k=200, nan=nan)
    for part in np.array_split(x, batches):
        cq.update(part)
    return cq, cq.exact_pass(list(q))


def expected(x, q):
    return np.stack([np.quantile(x[:, c][~np.isnan(x[:, c])].astype(np.float64), q) for c in range(x.shape[1])])


def test_exact_pass_detects_one_changed_value():
    x = stream()
    for where in ((0, 0), (12_345, 1), (19_999, 2)):
        _, plan = planned(x)
        y = x.copy()
        y[where] = np.nextafter(y[where], np.float32(np.inf))  # one ulp, same count
        plan.update(y)
        with pytest.raises(ValueError, match=f"other values than the sketch in channel {where[1]}"):
            plan.result()


def test_exact_pass_detects_values_swapped_between_channels_and_permuted_pairs():
    x = stream()
    _, plan = planned(x)
    y = x.copy()
    y[7, 0], y[7, 1] = x[7, 1], x[7, 0]  # same counts per channel, other values
    plan.update(y)
    with pytest.raises(ValueError, match="other values"):
        plan.result()
    # two values moved by one ulp in opposite directions (a sum of the raw bits would not see it)
    _, plan = planned(x)
    y = x.copy()
    y[3, 0] = np.nextafter(y[3, 0], np.float32(np.inf))
    y[4, 0] = np.nextafter(y[4, 0], np.float32(-np.inf))
    plan.update(y)
    with pytest.raises(ValueError, match="other values"):
        plan.result()


def test_exact_pass_same_data_any_order_batching_and_dtype():
    x = stream()
    q = [0.1, 0.5, 0.99]
    want = expected(x, q)
    rng = np.random.default_rng(3)
    for feed in ("same", "permuted", "float64", "channels_last") + (("torch",) if torch is not None else ()):
        _, plan = planned(x, q)
        if feed == "same":
            plan.update(x)
        elif feed == "permuted":
            perm = rng.permutation(x.shape[0])
            for part in np.array_split(x[perm], 7):
                plan.update(part)
        elif feed == "float64":
            plan.update(x.astype(np.float64))
        elif feed == "torch":
            plan.update(torch.from_numpy(x))
        else:
            plan.update(np.ascontiguousarray(x.T), channel_axis=0)
        np.testing.assert_array_equal(plan.result(), want)


def test_exact_pass_after_merged_sketches():
    x = stream()
    a = ChannelQuantiles(3, k=200)
    b = ChannelQuantiles(3, k=200)
    a.update(x[:7000])
    b.update(x[7000:])
    a.merge(b)
    plan = a.exact_pass(0.5)
    plan.update(x[::-1])
    np.testing.assert_array_equal(plan.result(), expected(x, 0.5))


@needs_torch
def test_exact_pass_half_precision_and_bfloat16_widen_like_the_sketch():
    x = stream().astype(np.float16)
    cq, plan = planned(x)
    plan.update(torch.from_numpy(x).float())  # the same values as float32
    np.testing.assert_array_equal(plan.result(), expected(x.astype(np.float32), (0.1, 0.5, 0.99)))
    t = torch.from_numpy(stream()).to(torch.bfloat16)
    cq = ChannelQuantiles(3, k=200)
    cq.update(t)
    plan = cq.exact_pass(0.5)
    plan.update(t.double())
    plan.result()
    plan = cq.exact_pass(0.5)
    t2 = t.clone()
    t2[0, 0] = t2[0, 0] * 2
    plan.update(t2)
    with pytest.raises(ValueError, match="other values"):
        plan.result()


def test_exact_pass_nan_skip_consistent_in_both_passes():
    x = stream()
    x[::50, 0] = np.nan
    q = (0.1, 0.5, 0.99)
    cq, plan = planned(x, q, nan="skip")
    # NaN elsewhere, the same values otherwise (the multiset of non-NaN values is what counts)
    y = x.copy()
    col = y[:, 0].copy()
    keep = col[~np.isnan(col)]
    col[:] = np.nan
    col[1::50] = np.nan
    col[~np.isnan(x[:, 0])] = keep[::-1]
    y[:, 0] = col
    plan.update(y)
    np.testing.assert_array_equal(plan.result(), expected(x, q))
    # one value became NaN: the counts differ
    cq, plan = planned(x, q, nan="skip")
    y = x.copy()
    y[1, 0] = np.nan
    plan.update(y)
    with pytest.raises(ValueError, match="values of channel 0"):
        plan.result()


def test_exact_pass_nan_count_compared():
    x = stream()
    x[5, 1] = np.nan
    cq, plan = planned(x, nan="skip")
    y = np.concatenate([x, np.full((1, 3), np.nan, np.float32)])  # one more NaN per channel
    plan.update(y)
    with pytest.raises(ValueError, match="NaN of channel 0"):
        plan.result()


def test_exact_pass_from_version_1_state_compares_counts_only():
    x = stream()
    cq, _ = planned(x)
    st = without_digest(cq.state_dict())
    for key in ("checksum", "checksum_known"):
        st.pop(key)
    st["version"] = 1
    plan = ChannelQuantiles.from_state_dict(st).exact_pass(0.5)
    assert isinstance(plan, ExactQuantilePass) and not plan.verifies_values
    plan.update(x)
    np.testing.assert_array_equal(plan.result(), expected(x, 0.5))


# --------------------------------------------------------------------------- ExactQuantilePass state / merge
def test_exact_pass_merge_of_two_halves_equals_one_pass():
    x = stream()
    q = (0.1, 0.5, 0.99)
    cq, a = planned(x, q)
    b = cq.exact_pass(list(q))
    a.update(x[:9000])
    b.update(x[9000:])
    a.merge(b)
    np.testing.assert_array_equal(a.result(), expected(x, q))
    with pytest.raises(ValueError, match="merging a pass with itself"):
        a.merge(a)
    with pytest.raises(ValueError, match="itself"):
        a._pass.merge(a._pass)
    other = planned(x, (0.2,))[1]
    with pytest.raises(ValueError, match="same sketch"):
        a.merge(other)
    with pytest.raises(TypeError, match="ExactQuantilePass"):
        a.merge(cq)


def test_exact_pass_merge_over_cap_refused_and_changes_neither():
    x = stream()
    cq, a = planned(x, (0.5,))
    b = cq.exact_pass([0.5])
    a.update(x)
    b.update(x)  # each saw everything: together more values inside than the cap allows
    sa, sb = a.state_dict()["digest"], b.state_dict()["digest"]
    with pytest.raises(ValueError, match="values would lie inside the bracket"):
        a.merge(b)
    assert a.state_dict()["digest"] == sa and b.state_dict()["digest"] == sb


def test_exact_pass_state_round_trip_and_pickle():
    x = stream()
    q = (0.1, 0.5, 0.99)
    cq, plan = planned(x, q)
    plan.update(x[:12_000])
    for back in (ExactQuantilePass.from_state_dict(plan.state_dict()), pickle.loads(pickle.dumps(plan))):
        back.update(x[12_000:])
        np.testing.assert_array_equal(back.result(), expected(x, q))
    # still checks the data against the first pass after the round trip
    back = ExactQuantilePass.from_state_dict(plan.state_dict())
    y = x[12_000:].copy()
    y[0, 0] += 1
    back.update(y)
    with pytest.raises(ValueError, match="other values"):
        back.result()


@pytest.mark.parametrize("key,value,match", [
    ("inside", lambda s: s["inside"] + 1e6, "'inside' holds .* outside its bracket"),
    ("inside_sizes", lambda s: s["inside_sizes"] + 1, "inside_sizes' (of channel 0 )?add up to"),
    ("below", lambda s: s["below"] + s["seen"][:, None], "add up to more than its count"),
    ("lower", lambda s: s["upper"] + 1, "lower > upper"),
    ("seen", lambda s: s["seen"].astype(np.uint64) + np.uint64(1 << 63), r"'seen'\] must hold integers <= 2\*\*63"),
    ("cap", lambda s: 0, "'inside_sizes' must be <= cap"),
    ("q", lambda s: np.array([1.5, 0.5, 0.99]), r"'q'\]: q must be in \[0, 1\]"),
    ("scalar", lambda s: 1, r"'scalar'\] is 1 but 'q' holds 3 values"),
    ("sketch_count", lambda s: np.zeros(3, np.int64), "'sketch_count'"),
    ("format", lambda s: "x", "'format'"),
])
def test_exact_pass_state_field_checks(key, value, match):
    x = stream()
    _, plan = planned(x)
    plan.update(x[:5000])
    st = without_digest(plan.state_dict())
    if key == "inside" and not st["inside"].size:
        pytest.skip("nothing inside")
    st[key] = value(st)
    with pytest.raises(ValueError, match=match):
        ExactQuantilePass.from_state_dict(st)


def test_exact_pass_state_digest():
    x = stream()
    _, plan = planned(x)
    plan.update(x[:5000])
    st = plan.state_dict()
    d = dict(st, seen_checksum=st["seen_checksum"] ^ np.uint64(1))  # any value is a valid checksum
    with pytest.raises(ValueError, match="digest"):
        ExactQuantilePass.from_state_dict(d)
    ExactQuantilePass.from_state_dict(without_digest(d))


# --------------------------------------------------------------------------- errors name the field that is wrong
# (fuzz cases of seed 0: a changed num_channels or k, a short rng_state, an unknown version, a pickled
# state that is not a dict, unit_pixels below intersection, merges whose sums overflow one counter)
def small_sketch(C=2, n=300, k=64):
    """One level only (n < level-0 capacity): no level invariant depends on k."""
    cq = ChannelQuantiles(C, k=k, seed=3)
    cq.update(np.round(np.random.default_rng(1).standard_normal((n, C)) * 5, 1))
    return cq


def _loaders(cls):
    """from_state_dict, and unpickling a file whose state is the given one."""
    def from_pickle(st):
        obj = cls.__new__(cls)
        obj.__setstate__(st)
        return obj
    return (cls.from_state_dict, from_pickle)


@pytest.mark.parametrize("C", [1, 2])
def test_sketch_state_short_rng_state_names_rng_state(C):
    st = small_sketch(C).state_dict()
    for load in _loaders(ChannelQuantiles):
        for d in (dict(st, rng_state=st["rng_state"][:-1]), without_digest(dict(st, rng_state=st["rng_state"][:-1]))):
            with pytest.raises(ValueError, match=rf"state_dict\['rng_state'\] must have shape \({C},\) .*"
                                                 rf"num_channels = {C}\); got shape \({C - 1},\)"):
                load(d)


def test_sketch_state_unknown_version_names_version():
    st = small_sketch().state_dict()
    assert st["version"] == 2  # what ChannelQuantiles writes (2 adds the checksum; 1 still loads)
    for load in _loaders(ChannelQuantiles):
        for v in (0, 3, 99):
            with pytest.raises(ValueError, match=rf"state_dict\['version'\] must be 1 or 2 .*; got {v}"):
                load(dict(st, version=v))
    # the exact pass has its own version (1)
    plan = small_sketch().exact_pass(0.5)
    est = plan.state_dict()
    assert est["version"] == 1
    with pytest.raises(ValueError, match=r"state_dict\['version'\] must be 1 .*; got 2"):
        ExactQuantilePass.from_state_dict(dict(est, version=2))


@pytest.mark.parametrize("digest", [True, False])
def test_sketch_state_changed_num_channels_names_num_channels(digest):
    st = small_sketch(C=2).state_dict()
    if not digest:
        st = without_digest(st)
    for load in _loaders(ChannelQuantiles):
        for C in (1, 3):
            with pytest.raises(ValueError, match=rf"state_dict\['num_channels'\] = {C} does not match the arrays "
                                                 rf"of the state, which all hold 2 channels .*got {C}"):
                load(dict(st, num_channels=C))
    # one array that differs from the others (and num_channels) is the one named
    for key in ("count", "min", "wide", "checksum", "level_sizes"):
        with pytest.raises(ValueError, match=rf"state_dict\['{key}'\] must have shape \(2,"):
            ChannelQuantiles.from_state_dict(dict(st, **{key: st[key][:1]}))


def test_sketch_state_changed_k_names_k():
    st = small_sketch().state_dict()
    assert st["level_sizes"].shape[1] == 1  # one level: k=100 fits it as well as k=64
    for load in _loaders(ChannelQuantiles):
        with pytest.raises(ValueError, match=r"state_dict\['k'\] = 100 is not what state_dict\(\) wrote: its "
                                             r"digest differs"):
            load(dict(st, k=100))
    # without the digest such a state is a valid k=100 sketch; merging it with a k=64 one names k
    other = ChannelQuantiles.from_state_dict(dict(without_digest(st), k=100))
    a = small_sketch()
    before = a.state_dict()["digest"]
    with pytest.raises(ValueError, match=r"other has k=100, this sketch has k=64 \(other\.k must equal k\)"):
        a.merge(other)
    assert a.state_dict()["digest"] == before
    # many levels: the level invariants name k without the digest
    big = without_digest(sketch(k=100, n=50_000).state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['k'\] = 1000 does not fit the levels"):
        ChannelQuantiles.from_state_dict(dict(big, k=1000))


def test_field_digests_name_every_changed_field_and_digest_still_covers_all():
    st = small_sketch().state_dict()
    assert isinstance(st["field_digests"], str) and "k:" in st["field_digests"]
    d = dict(st, k=100, seed=7)
    with pytest.raises(ValueError, match=r"\['k'\] = 100 .*changed fields: \['k', 'seed'\]"):
        ChannelQuantiles.from_state_dict(d)
    items = st["items"].copy()
    items[0] = np.nextafter(items[0], np.inf)
    with pytest.raises(ValueError, match=r"state_dict\['items'\] \(a numpy array of shape \(600,\) and dtype "
                                         r"float64\) is not what state_dict\(\) wrote"):
        ChannelQuantiles.from_state_dict(dict(st, items=items))
    # without field_digests the digest alone still refuses the change (without naming the field)
    d = dict(st, k=100)
    del d["field_digests"]
    with pytest.raises(ValueError, match=r"state_dict\['digest'\] does not match the other fields"):
        ChannelQuantiles.from_state_dict(d)
    # damaged field_digests name nothing but change nothing either: the state is checked by its digest
    ChannelQuantiles.from_state_dict(dict(st, field_digests="garbage"))
    with pytest.raises(ValueError, match=r"state_dict\['digest'\] does not match"):
        ChannelQuantiles.from_state_dict(dict(st, field_digests="garbage", k=100))
    # and field_digests cannot hide a change: they are not part of what digest covers, the fields are
    edited = ChannelQuantiles.from_state_dict(dict(without_digest(st), k=100)).state_dict()
    with pytest.raises(ValueError, match="digest"):
        ChannelQuantiles.from_state_dict(dict(st, k=100, field_digests=edited["field_digests"]))


def test_field_digests_survive_npz_and_json(tmp_path):
    import json
    st = small_sketch().state_dict()
    np.savez(tmp_path / "s.npz", **st)
    with np.load(tmp_path / "s.npz") as z:
        back = {key: z[key] for key in z.files}  # strings and ints come back as 0-d arrays
    ChannelQuantiles.from_state_dict(back)
    with pytest.raises(ValueError, match=r"\['k'\] = 100 is not what"):
        ChannelQuantiles.from_state_dict(dict(back, k=np.array(100)))
    meta = json.loads(json.dumps({key: v for key, v in st.items() if not isinstance(v, np.ndarray)}))
    ChannelQuantiles.from_state_dict({**st, **meta})


def test_pickled_state_not_a_dict_names_the_state():
    for cls in (ChannelQuantiles, ExactQuantilePass):
        obj = cls.__new__(cls)
        for junk in ([1, 2], None, "state", 3):
            with pytest.raises(ValueError, match=rf"the pickled state of a {cls.__name__} must be a dict from "
                                                 rf"state_dict\(\); got"):
                obj.__setstate__(junk)


def test_exact_pass_state_changed_num_channels_or_q_names_it():
    x = stream()
    _, plan = planned(x)  # 3 channels, 3 quantiles
    plan.update(x[:5000])
    st = without_digest(plan.state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['num_channels'\] = 4 does not match the arrays of the "
                                         r"state, which all hold 3 channels"):
        ExactQuantilePass.from_state_dict(dict(st, num_channels=4))
    with pytest.raises(ValueError, match=r"state_dict\['q'\] \(holding 2 values\) does not match the arrays of "
                                         r"the state, which all hold 3 quantiles"):
        ExactQuantilePass.from_state_dict(dict(st, q=np.array([0.1, 0.5])))
    with pytest.raises(ValueError, match=r"state_dict\['q'\] \(a numpy array of shape \(3,\) and dtype float64\) is not what"):
        ExactQuantilePass.from_state_dict(dict(plan.state_dict(), q=np.array([0.1, 0.5, 0.98])))


def test_tally_state_changed_sizes_name_the_size():
    st = tally_case().state_dict()  # K=3 units, NL=7 labels, NC=3 categories
    with pytest.raises(ValueError, match=r"state\['num_units'\] = 4 does not match the arrays of the state, "
                                         r"which all hold 3 units \(intersection.shape\[0\], unit_pixels.shape\[0\]\)"):
        IoUTally.from_state_dict(dict(st, num_units=4))
    with pytest.raises(ValueError, match=r"state\['num_labels'\] = 6 does not match .* hold 7 labels"):
        IoUTally.from_state_dict(dict(st, num_labels=6))
    with pytest.raises(ValueError, match=r"state\['intersection'\] must have shape \(3, 7\)"):
        IoUTally.from_state_dict(dict(st, intersection=st["intersection"][:2]))


def test_tally_unit_pixels_below_intersection_names_unit_pixels():
    st = tally_case("annotated").state_dict()
    assert st["intersection"].any()
    d = dict(st, unit_pixels=np.zeros_like(st["unit_pixels"]))
    # the annotated rule has no bound between the two (see test_tally_lite_...): the digest names the field
    with pytest.raises(ValueError, match=r"state\['unit_pixels'\] \(a numpy array of shape \(3, 3\) and dtype "
                                         r"int64\) is not what state_dict\(\) wrote"):
        IoUTally.from_state_dict(d)
    IoUTally.from_state_dict(without_digest(d))
    lite = tally_case("lite").state_dict()
    with pytest.raises(ValueError, match=r"state\['intersection'\].*unit_pixels\["):
        IoUTally.from_state_dict(dict(lite, unit_pixels=np.zeros_like(lite["unit_pixels"])))


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("which", ["images", "unit_pixels", "label_pixels", "intersection"])
def test_tally_merge_overflow_of_each_counter_refused_and_changes_neither(which, rule):
    big = (1 << 62) + 12345
    t = IoUTally(1, 2, [0, 0], 1, output_size=(2, 2), unit_rule=rule)  # 4 pixels per map
    t.update(np.ones((1, 1, 1, 1)), [0.0], pixel_labels=np.ones((1, 1, 2, 2), np.int64))
    st = without_digest(t.state_dict())  # I = L = A = 4, images 1, one pixel map
    # images large enough for the counts (A, L <= 4 x images), small enough that their sum fits
    st["images"] = big if which == "images" else big // 4 + 1
    if which in ("unit_pixels", "intersection"):
        st["unit_pixels"] = np.array([[big]], np.int64)
    if which in ("label_pixels", "intersection"):
        st["label_pixels"] = np.array([0, big], np.int64)
    if which == "intersection":
        st["intersection"] = np.array([[0, big]], np.int64)
    a, b = IoUTally.from_state_dict(st), IoUTally.from_state_dict(st)
    ca, cb = counts_of(a), counts_of(b)
    with pytest.raises(ValueError, match=rf"the merged {which} would overflow int64 .*neither tally was changed"):
        a.merge(b)
    assert same_counts(counts_of(a), ca) and same_counts(counts_of(b), cb)
    # the tally still works and merges what fits
    a.merge(t)
    assert a.images == st["images"] + 1
