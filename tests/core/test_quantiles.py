"""Tests of interp_engine.ChannelQuantiles (streaming per-channel quantiles)
and its exact second pass."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp_engine.engine.quantiles import ChannelQuantiles, memory_bound_bytes, rank_error_bound

from _torch import torch
from reference import channel_values, exact_quantile, exact_rank, rank_error
from _params import KERNEL_FLOATS, NUMPY_FLOATS


TAIL_Q = np.concatenate([np.linspace(0.9, 0.9999, 120), [0.99, 0.995, 0.999, 0.9995, 0.9999]])
BULK_Q = np.array([0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.89, 1.0])
EXACT_Q = [0.0, 1e-4, 0.5, 0.9, 0.995, 0.9999, 1.0]
KINDS = ["random", "sorted", "reverse", "duplicates", "pareto", "relu"]


def make_stream(kind: str, channels: int, n: int, seed: int) -> np.ndarray:
    """(channels, n) float32 values of one channel per row, in stream order."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, n))
    if kind == "sorted":
        x = np.sort(x, axis=1)
    elif kind == "reverse":
        x = np.sort(x, axis=1)[:, ::-1]
    elif kind == "duplicates":
        x = np.round(x * 4) / 4  # ~30 distinct values
    elif kind == "pareto":
        x = rng.pareto(1.1, (channels, n)) * 10
    elif kind == "relu":
        x = np.maximum(x - 1.2, 0.0)  # ~88% zeros
    # shift channels apart so a mixed-up channel would be caught
    x = x + np.arange(channels)[:, None] * 100.0
    return np.ascontiguousarray(x, dtype=np.float32)


def feed(cq: ChannelQuantiles, stream: np.ndarray, batches: int, spatial: int = 1) -> None:
    """Feed (C, n) stream as (N, C, spatial) batches in stream order."""
    C, n = stream.shape
    per = stream.reshape(C, n // spatial, spatial)  # (C, N, S)
    for idx in np.array_split(np.arange(n // spatial), batches):
        cq.update(np.transpose(per[:, idx, :], (1, 0, 2)))


def max_errors(cq: ChannelQuantiles, stream: np.ndarray, qs: np.ndarray) -> np.ndarray:
    est = cq.quantile(qs)
    return np.array([rank_error(stream[c], qs, est[c]).max() for c in range(stream.shape[0])])


# ------------------------------------------------------------------ accuracy
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed,batches", [(0, 1), (1, 7), (2, 40)])
def test_default_accuracy_tail_and_bulk(kind, seed, batches):
    """Default sketch: q in [0.9, 0.9999] within 1e-4, other q within 1e-3
    (the documented bound is 1e-4 everywhere: check that too)."""
    n = 400_000  # 16x the top-level capacity: several levels of compactions
    stream = make_stream(kind, 2, n, seed)
    cq = ChannelQuantiles(2, seed=seed)
    feed(cq, stream, batches, spatial=8)
    assert (cq.count == n).all()
    assert max_errors(cq, stream, TAIL_Q).max() <= 1e-4
    bulk = max_errors(cq, stream, BULK_Q).max()
    assert bulk <= 1e-3
    assert bulk <= cq.rank_error_bound


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_documented_bound_small_k_many_levels(kind):
    """With k=500 a 300k stream runs through ~9 levels: the documented bound
    2.5/k must hold for every q, over several seeds."""
    n, k = 300_000, 500
    for seed in range(3):
        stream = make_stream(kind, 3, n, 10 + seed)
        cq = ChannelQuantiles(3, k=k, seed=seed)
        feed(cq, stream, 5)
        qs = np.concatenate([TAIL_Q, BULK_Q, np.linspace(0, 1, 101)])
        assert max_errors(cq, stream, qs).max() <= rank_error_bound(k)
        # rank() obeys the same bound
        probes = np.quantile(stream.astype(np.float64), [0.1, 0.5, 0.95], axis=1).T
        r = cq.rank(probes)
        for c in range(3):
            assert np.abs(r[c] - exact_rank(stream[c], probes[c])).max() <= rank_error_bound(k)


def test_errors_not_correlated_across_channels():
    """Identical data in every channel: channels use different random streams,
    so their estimates must not all coincide."""
    k, n = 100, 50_000
    row = make_stream("random", 1, n, 3)[0]
    stream = np.tile(row, (16, 1))
    cq = ChannelQuantiles(16, k=k, seed=5)
    feed(cq, stream, 3)
    est = cq.quantile(np.linspace(0.05, 0.95, 19))
    assert len({tuple(r) for r in est}) > 8


# ---------------------------------------------------------------- hypothesis
finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(finite, min_size=1, max_size=3000), k=st.sampled_from([64, 100, 256]),
       seed=st.integers(0, 2**32), cut=st.floats(0, 1))
def test_property_bound_merge_and_roundtrip(data, k, seed, cut):
    base = np.asarray(data, dtype=np.float64)
    # ~60k values built from the example (shifted/scaled copies, some reversed)
    # so that the sketch runs through several levels of compactions
    reps = max(2, 60_000 // base.size)
    parts = [(base[::-1] if i % 3 == 1 else base) * (1 + (i % 5)) + (i % 7) * 0.5 for i in range(reps)]
    x = np.concatenate(parts).astype(np.float32)
    n = x.size
    qs = np.concatenate([[0.0, 1.0], np.linspace(0.01, 0.99, 25), np.linspace(0.9, 0.9999, 10)])
    bound = rank_error_bound(k)
    one = ChannelQuantiles(1, k=k, seed=seed)
    one.update(x[:, None])
    assert rank_error(x, qs, one.quantile(qs)[0]).max() <= bound
    m = int(cut * n)
    a, b = ChannelQuantiles(1, k=k, seed=seed), ChannelQuantiles(1, k=k, seed=seed + 1)
    a.update(x[:m, None])
    b.update(x[m:, None])
    a.merge(b)
    assert a.count[0] == n
    assert a.min[0] == x.min() and a.max[0] == x.max()
    assert rank_error(x, qs, a.quantile(qs)[0]).max() <= bound
    r = ChannelQuantiles.from_state_dict(a.state_dict())
    np.testing.assert_array_equal(r.quantile(qs), a.quantile(qs))


@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.sampled_from([0.0, 1.0, -2.5, np.inf, -np.inf, 3.0]), min_size=1, max_size=400),
       q=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_property_exact_pass_equals_reference(data, q):
    x = np.asarray(data, dtype=np.float64)
    cq = ChannelQuantiles(1, k=64)
    cq.update(x[:, None])
    plan = cq.exact_pass(q)
    plan.update(x[:, None])
    np.testing.assert_array_equal(plan.result()[0], exact_quantile(x, q))


# ------------------------------------------------------------ merge / state
def test_merge_halves_matches_bound_and_state_roundtrip():
    n = 200_000
    stream = make_stream("pareto", 3, n, 7)
    a, b, whole = (ChannelQuantiles(3, k=2000, seed=s) for s in (1, 2, 3))
    feed(a, stream[:, : n // 2], 3)
    feed(b, stream[:, n // 2:], 4)
    feed(whole, stream, 5)
    a.merge(b)
    qs = np.concatenate([TAIL_Q, BULK_Q])
    assert (a.count == n).all()
    np.testing.assert_array_equal(a.min, whole.min)
    np.testing.assert_array_equal(a.max, whole.max)
    assert max_errors(a, stream, qs).max() <= rank_error_bound(2000)
    assert max_errors(whole, stream, qs).max() <= rank_error_bound(2000)
    d = a.state_dict()
    assert all(isinstance(v, (int, str, np.ndarray)) for v in d.values())
    r = ChannelQuantiles.from_state_dict(d)
    np.testing.assert_array_equal(r.quantile(qs), a.quantile(qs))
    # continuing after a round trip is bit-identical (the RNG state travels)
    extra = make_stream("random", 3, 50_000, 8)
    feed(r, extra, 2)
    feed(a, extra, 2)
    np.testing.assert_array_equal(r.quantile(qs), a.quantile(qs))


def test_pickle_roundtrip():
    cq = ChannelQuantiles(4, k=300, seed=9, nan="skip")
    x = make_stream("random", 4, 20_000, 1).T.copy()
    x[3, 2] = np.nan
    cq.update(x)
    r = pickle.loads(pickle.dumps(cq))
    assert r.nan == "skip" and r.k == 300 and r.seed == 9
    np.testing.assert_array_equal(r.nan_count, cq.nan_count)
    np.testing.assert_array_equal(r.quantile([0.1, 0.5, 0.99]), cq.quantile([0.1, 0.5, 0.99]))


def test_merge_errors():
    a = ChannelQuantiles(3)
    with pytest.raises(ValueError, match="other has 4 channels, this sketch has 3"):
        a.merge(ChannelQuantiles(4))
    with pytest.raises(ValueError, match="k=100"):
        a.merge(ChannelQuantiles(3, k=100))
    with pytest.raises(TypeError, match="other must be a ChannelQuantiles"):
        a.merge(np.zeros(3))
    with pytest.raises(ValueError, match="itself"):
        a.merge(a)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("items"), "missing keys"),
    (lambda d: d.__setitem__("items", d["items"][:-1]), "level_sizes. add up"),
    (lambda d: d.__setitem__("count", d["count"] + 1), "weigh"),
    (lambda d: d.__setitem__("k", "big"), "'k'"),
    (lambda d: d.__setitem__("min", np.zeros(5)), r"'min'\] must have shape \(2,\) .*got shape \(5,\)"),
    (lambda d: d.__setitem__("items", np.where(np.arange(d["items"].size) == 0, np.nan, d["items"])), "NaN"),
    (lambda d: d.__setitem__("items", d["items"].astype(object)), "numpy array of kind"),
    (lambda d: d.__setitem__("version", 99), "version"),
])
def test_from_state_dict_rejects_malformed(mutate, match):
    cq = ChannelQuantiles(2, k=100)
    cq.update(make_stream("random", 2, 5_000, 0).T.copy())
    d = cq.state_dict()
    mutate(d)
    with pytest.raises(ValueError, match=match):
        ChannelQuantiles.from_state_dict(d)
    with pytest.raises(ValueError, match="must be a dict"):
        ChannelQuantiles.from_state_dict([1, 2])


def test_unsorted_level_in_state_rejected():
    cq = ChannelQuantiles(1, k=64)
    cq.update(np.arange(50_000, dtype=np.float64)[:, None])
    d = cq.state_dict()
    sizes = d["level_sizes"][0]
    start = int(sizes[0])  # first item of level 1
    assert sizes[1] >= 2
    d["items"][start], d["items"][start + 1] = d["items"][start + 1], d["items"][start]
    with pytest.raises(ValueError, match="not sorted"):
        ChannelQuantiles.from_state_dict(d)


# ----------------------------------------------------------------- exact mode
def test_exact_mode_duplicates_and_infinities():
    rng = np.random.default_rng(4)
    C, n = 3, 120_000
    x = np.round(rng.standard_normal((n, C)) * 3).astype(np.float32)  # many duplicates
    x[rng.integers(0, n, 50), 0] = np.inf
    x[rng.integers(0, n, 50), 1] = -np.inf
    x[:, 2] = np.where(rng.random(n) < 0.7, 0.0, rng.standard_normal(n))  # ReLU-like
    cq = ChannelQuantiles(C, k=500, seed=1)
    for b in np.array_split(x, 6):
        cq.update(b)
    plan = cq.exact_pass(EXACT_Q)
    for b in np.array_split(x, 4)[::-1]:  # any order and batching
        plan.update(torch.from_numpy(b) if torch is not None else b)
    got = plan.result()
    vals = channel_values(x[:, :, None])
    for c in range(C):
        np.testing.assert_array_equal(got[c], exact_quantile(vals[c], EXACT_Q))
    # where numpy's own answer is finite it is the same
    with np.errstate(invalid="ignore"):
        ref = np.quantile(vals, EXACT_Q, axis=1).T
    ok = np.isfinite(ref)
    np.testing.assert_array_equal(got[ok], ref[ok])
    assert plan.memory_bytes < 8 * 0.05 * n * C * len(EXACT_Q) + 100_000


@pytest.mark.parametrize("kind", ["random", "sorted", "reverse", "pareto"])
def test_exact_mode_equals_numpy(kind):
    n = 200_000
    stream = make_stream(kind, 2, n, 11)
    cq = ChannelQuantiles(2, k=1000)
    feed(cq, stream, 5, spatial=4)
    plan = cq.exact_pass(EXACT_Q)
    feed(plan, stream, 3, spatial=4)
    ref = np.quantile(stream.astype(np.float64), EXACT_Q, axis=1).T
    np.testing.assert_allclose(plan.result(), ref, rtol=1e-15, atol=0)
    scalar = cq.exact_pass(0.995)
    feed(scalar, stream, 2, spatial=4)
    assert scalar.result().shape == (2,)
    np.testing.assert_allclose(scalar.result(), ref[:, 4], rtol=1e-15, atol=0)


def test_exact_mode_detects_changed_data():
    stream = make_stream("random", 2, 50_000, 1)
    cq = ChannelQuantiles(2, k=200)
    feed(cq, stream, 2)
    plan = cq.exact_pass([0.5])
    feed(plan, stream[:, :40_000], 2)
    with pytest.raises(ValueError, match="saw 40000 values of channel 0 but the sketch saw 50000"):
        plan.result()
    plan = cq.exact_pass([0.5])
    same = np.broadcast_to(np.median(stream, axis=1, keepdims=True), stream.shape).copy()
    with pytest.raises(RuntimeError, match="values fell inside the bracket.*the data of the second pass differ"):
        feed(plan, same, 2)  # every value strictly inside the bracket: over the cap
    plan = cq.exact_pass([0.5])
    feed(plan, stream + 1000.0, 2)
    with pytest.raises(ValueError, match="other values than the sketch in channel 0"):
        plan.result()  # same counts: the checksums of the values tell


# ------------------------------------------------------- the value checksum
def _checksum_reference(values) -> tuple[int, int]:
    """The core's checksum of a multiset of values in numpy: over the float64
    bit patterns b, the sum (mod 2**64) and the xor of splitmix64's finalizer
    of b."""
    b = np.asarray(values, dtype=np.float64).ravel().view(np.uint64)
    z = (b ^ (b >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # uint64 arrays wrap
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return int(z.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(z))


@pytest.mark.parametrize("dtype", NUMPY_FLOATS)
def test_value_checksum_equals_numpy_under_every_isa(isa, dtype):
    """The checksum of the values (sketch and exact pass) is computed by the
    AVX-512, AVX2 or portable kernel as INTERP_ENGINE_ISA allows: each gives
    numpy's sums, for every element type (float32 and the 16-bit types widen
    in float, float64 in double), contiguous and strided batches."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7, 3, 5, 9)) * 10).astype(dtype)
    x[0, 0, 0, :3] = [0.0, -0.0, np.inf]  # -0.0 and +0.0 are different values
    strided = x[:, :, ::2, ::-1]
    ref = np.array([_checksum_reference(np.concatenate([x[:, c].ravel(), strided[:, c].ravel()]))
                    for c in range(3)], dtype=np.uint64)
    cq = ChannelQuantiles(3, k=64)
    cq.update(x).update(strided)
    np.testing.assert_array_equal(cq.state_dict()["checksum"], ref)
    plan = cq.exact_pass([0.5])
    plan.update(strided).update(x)
    np.testing.assert_array_equal(plan.state_dict()["seen_checksum"], ref)
    plan.result()  # the passes agree


# -------------------------------------------------------- dtypes and layouts
def _values_of(x, channel_axis=1):
    return channel_values(np.asarray(x, dtype=np.float64), channel_axis)


@pytest.mark.parametrize("dtype", KERNEL_FLOATS)
def test_dtypes_numpy_and_torch(dtype):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((50, 3, 5, 4))
    if dtype == "bfloat16":
        t = torch.from_numpy(base).to(torch.bfloat16)
        x, vals = t, _values_of(t.float().numpy())
    else:
        x = base.astype(dtype)
        vals = _values_of(x)
    cq = ChannelQuantiles(3, k=100)
    cq.update(x)
    plan = cq.exact_pass([0.0, 0.3, 1.0])
    plan.update(x)
    for c in range(3):
        np.testing.assert_array_equal(plan.result()[c], exact_quantile(vals[c], [0.0, 0.3, 1.0]))
    np.testing.assert_array_equal(cq.min, vals.min(axis=1))
    np.testing.assert_array_equal(cq.max, vals.max(axis=1))
    if dtype != "bfloat16" and torch is not None:
        t = torch.from_numpy(x)
        cq2 = ChannelQuantiles(3, k=100)
        cq2.update(t)
        np.testing.assert_array_equal(cq2.quantile([0.2, 0.7]), cq.quantile([0.2, 0.7]))


def test_non_native_byte_order_and_broadcast():
    x = np.random.default_rng(0).standard_normal((100, 3)).astype(">f4")
    cq = ChannelQuantiles(3, k=100)
    cq.update(x)
    np.testing.assert_array_equal(cq.max, x.astype(np.float64).max(axis=0))
    b = np.broadcast_to(np.array([1.0, 2.0, 3.0], np.float32)[None, :, None], (10, 3, 4))
    cq2 = ChannelQuantiles(3, k=100)
    cq2.update(b)
    np.testing.assert_array_equal(cq2.count, [40, 40, 40])
    np.testing.assert_array_equal(cq2.quantile(0.5), [1.0, 2.0, 3.0])


def test_float64_keeps_full_precision():
    x = (1.0 + np.arange(10_000) * 1e-12).reshape(-1, 1)  # differ beyond float32
    cq = ChannelQuantiles(1, k=100)
    cq.update(x)
    assert cq.min[0] == x.min() and cq.max[0] == x.max()
    plan = cq.exact_pass([0.25, 0.5])
    plan.update(x)
    np.testing.assert_allclose(plan.result()[0], np.quantile(x[:, 0], [0.25, 0.5]), rtol=1e-15, atol=0)
    assert rank_error(x[:, 0], [0.5], cq.quantile([0.5])[0]).max() <= rank_error_bound(100)


def test_layouts_are_equivalent():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 6, 7, 5)).astype(np.float32)
    ref = ChannelQuantiles(6, k=100, seed=4)
    ref.update(np.ascontiguousarray(base))
    qs = [0.0, 0.1, 0.5, 0.9, 1.0]
    want_exact = np.array([exact_quantile(v, qs) for v in _values_of(base)])

    def check(x, axis):
        cq = ChannelQuantiles(6, k=100, seed=4)
        cq.update(x, channel_axis=axis)
        np.testing.assert_array_equal(cq.count, ref.count)
        plan = cq.exact_pass(qs)
        plan.update(x, channel_axis=axis)
        np.testing.assert_array_equal(plan.result(), want_exact)
        return cq

    check(base.transpose(0, 2, 3, 1), -1)                     # channels last (non-contiguous view)
    check(base.transpose(1, 0, 2, 3), 0)                      # channels first
    check(np.asfortranarray(base), 1)                         # Fortran order
    check(base[:, :, ::-1, :], 1)                             # negative strides
    big = np.zeros((40, 6, 14, 10), np.float32)
    big[:, :, ::2, ::2] = base
    check(big[:, :, ::2, ::2], 1)                             # gaps
    if torch is not None:
        check(torch.from_numpy(base).permute(0, 2, 3, 1), 3)  # torch non-contiguous
    flat = base.transpose(0, 2, 3, 1).reshape(-1, 6)
    cq = ChannelQuantiles(6, k=100, seed=4)
    cq.update(flat)                                           # no trailing axes
    np.testing.assert_array_equal(cq.count, ref.count)
    # same values in the same order (up to layout) give the same sketch when
    # the per-channel order is the same: (N, C) vs (N, C, 1)
    a, b = ChannelQuantiles(6, k=100, seed=4), ChannelQuantiles(6, k=100, seed=4)
    a.update(flat)
    b.update(flat[:, :, None])
    np.testing.assert_array_equal(a.quantile(qs), b.quantile(qs))


def test_concurrent_python_threads_are_safe():
    import threading
    stream = make_stream("random", 4, 80_000, 2)
    cq = ChannelQuantiles(4, k=200, seed=1)
    chunks = np.array_split(np.arange(80_000), 8)
    ts = [threading.Thread(target=lambda i=i: cq.update(stream[:, i].T)) for i in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert (cq.count == 80_000).all()
    assert max_errors(cq, stream, BULK_Q).max() <= rank_error_bound(200)


def test_deterministic_across_threads_and_seeds():
    stream = make_stream("pareto", 8, 100_000, 6)
    outs = []
    for threads in (1, 2, 3):
        cq = ChannelQuantiles(8, k=300, seed=42, num_threads=threads)
        feed(cq, stream, 4)
        outs.append(cq.quantile([0.1, 0.5, 0.9, 0.99]))
        np.testing.assert_array_equal(outs[0], outs[-1])
    other = ChannelQuantiles(8, k=300, seed=43)
    feed(other, stream, 4)
    assert not np.array_equal(other.quantile([0.1, 0.5, 0.9, 0.99]), outs[0])


# ------------------------------------------------------------------- errors
def test_bad_inputs():
    cq = ChannelQuantiles(3)
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*got shape \(5,\)"):
        cq.update(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"must have 3 channels along axis 1.*shape \(2, 4\)"):
        cq.update(np.zeros((2, 4), np.float32))
    for bad in (np.zeros((2, 3), np.int32), np.zeros((2, 3), bool), np.zeros((2, 3), np.complex64)) + \
            ((torch.zeros((2, 3), dtype=torch.int64),) if torch is not None else ()):
        with pytest.raises(TypeError, match=r"x must have a floating-point dtype \(float16, bfloat16, float32 or "
                                            r"float64\); got"):
            cq.update(bad)
    with pytest.raises(ValueError, match="channel_axis=5 is out of range"):
        cq.update(np.zeros((2, 3), np.float32), channel_axis=5)
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        cq.update(np.zeros((2, 3), np.float32), channel_axis=1.0)
    x = np.zeros((4, 3, 2), np.float32)
    x[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        cq.update(x)
    assert (cq.count == 0).all()  # a rejected batch changes nothing
    with pytest.raises(ValueError, match="channel 0 has no observations yet"):
        cq.quantile(0.5)
    with pytest.raises(ValueError, match="no observations"):
        cq.min
    cq.update(np.ones((4, 3, 2), np.float32))
    for q in (-0.1, 1.5, float("nan"), [0.2, 2.0]):
        with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
            cq.quantile(q)
    with pytest.raises(ValueError, match="1-D sequence"):
        cq.quantile([[0.5]])
    with pytest.raises(TypeError, match="q must be a float"):
        cq.quantile("half")
    with pytest.raises(ValueError, match=r"values must have shape \(3,\) or \(3, m\)"):
        cq.rank(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        cq.rank(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="nan must be 'raise' or 'skip'"):
        ChannelQuantiles(3, nan="ignore")
    with pytest.raises(ValueError, match="num_channels must be >= 1"):
        ChannelQuantiles(0)
    with pytest.raises(TypeError, match="num_channels must be an integer"):
        ChannelQuantiles(2.0)
    with pytest.raises(ValueError, match="k must be >= 64"):
        ChannelQuantiles(2, k=10)
    with pytest.raises(ValueError, match="margin must be a float in"):
        cq.exact_pass(0.5, margin=-1.0)


def test_nan_skip_counts():
    cq = ChannelQuantiles(2, k=100, nan="skip")
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    x[[1, 3], 0] = np.nan
    cq.update(x)
    np.testing.assert_array_equal(cq.nan_count, [2, 0])
    np.testing.assert_array_equal(cq.count, [8, 10])
    plan = cq.exact_pass([0.5])
    plan.update(x)
    vals = _values_of(x)
    np.testing.assert_array_equal(plan.result()[0], np.quantile(vals[0][~np.isnan(vals[0])], [0.5]))


def test_empty_batch_is_noop_and_infinities_are_values():
    cq = ChannelQuantiles(2, k=100)
    cq.update(np.zeros((0, 2, 5), np.float32))
    cq.update(np.zeros((3, 2, 0), np.float64))
    assert (cq.count == 0).all()
    cq.update(np.array([[np.inf, -np.inf], [1.0, 2.0]], np.float32))
    np.testing.assert_array_equal(cq.max, [np.inf, 2.0])
    np.testing.assert_array_equal(cq.min, [1.0, -np.inf])
    np.testing.assert_array_equal(cq.quantile(1.0), [np.inf, 2.0])
    np.testing.assert_array_equal(cq.rank(np.array([1.0, 0.0])), [0.5, 0.5])


def test_memory_bounded_independent_of_count():
    cq = ChannelQuantiles(1, k=300)
    stream = make_stream("random", 1, 2_000_000, 0)
    feed(cq, stream[:, :200_000], 2)
    small = int(cq.memory_bytes[0])
    feed(cq, stream[:, 200_000:], 10)
    big = int(cq.memory_bytes[0])
    assert big <= cq.memory_bound_bytes == memory_bound_bytes(300)
    assert small <= cq.memory_bound_bytes
    assert big <= 2 * small  # not growing with the data
    d = ChannelQuantiles(1)
    feed(d, stream, 4)
    assert int(d.memory_bytes[0]) <= d.memory_bound_bytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zero_heavy_stream(dtype):
    """The sort takes +0.0 out and puts it back as one block: a stream mixing
    +0.0, -0.0, negatives and positives (small k: many level-0 compactions,
    some all-zero) keeps the bound, the zero block answers 0, queries and
    ranks match the exact values, and any thread count gives the same sketch."""
    rng = np.random.default_rng(5)
    n, k = 120_000, 200
    u = rng.random((3, n))
    x = rng.standard_normal((3, n))
    x = np.where(u < 0.45, 0.0, np.where(u < 0.55, -0.0, x))
    x[1, : n // 3] = 0.0           # long all-zero stretch
    x[2] = np.abs(x[2])            # no negatives at all (zeros sort first)
    x = x.astype(dtype)
    qs = np.linspace(0.0, 1.0, 401)
    outs = []
    for threads in (1, 2):
        cq = ChannelQuantiles(3, k=k, seed=3, num_threads=threads)
        for part in np.array_split(np.arange(n), 13):
            cq.update(x[:, part].T.copy()[:, :, None])
        assert (cq.count == n).all()
        est = cq.quantile(qs)
        for c in range(3):
            assert rank_error(x[c].astype(np.float64), qs, est[c]).max() <= cq.rank_error_bound
            r = cq.rank(np.array([-1e-30, 0.0, 1e-30])[None, :].repeat(3, 0))[c]
            true = exact_rank(x[c].astype(np.float64), np.array([-1e-30, 0.0, 1e-30]))
            assert np.abs(r - true).max() <= cq.rank_error_bound
        mid = cq.quantile(0.5)
        assert mid[0] == 0.0 and mid[1] == 0.0
        outs.append((est, cq.state_dict()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for key, val in outs[0][1].items():
        np.testing.assert_array_equal(np.asarray(val, dtype=object) if isinstance(val, list) else val,
                                      np.asarray(outs[1][1][key], dtype=object) if isinstance(val, list) else outs[1][1][key])


@pytest.mark.parametrize("dtype", KERNEL_FLOATS)
def test_nan_found_in_every_layout(dtype):
    """The NaN check reads dense batches as one block of memory (any axis
    order or stride sign) and others channel by channel: a single NaN
    anywhere raises and changes nothing, in every layout."""
    rng = np.random.default_rng(11)
    base = rng.standard_normal((6, 5, 4, 3)).astype(np.float32)
    if dtype == "bfloat16":
        layouts = {
            "contiguous": lambda a: a,
            "channels_last": lambda a: a.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
            "strided": lambda a: a[:, :, ::2],  # not dense
            "one_sample": lambda a: a[2:3],
        }
    else:
        layouts = {
            "contiguous": lambda a: a,
            "channels_last": lambda a: np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1),
            "reversed": lambda a: a[::-1, :, ::-1],
            "strided": lambda a: a[:, :, ::2],  # not dense
            "one_sample": lambda a: a[2:3],
        }
    for name, make in layouts.items():
        for pos in ("first", "middle", "last"):
            src = torch.from_numpy(base.copy()).to(torch.bfloat16) if dtype == "bfloat16" else base.astype(dtype)
            x = make(src)
            size = int(np.prod(tuple(x.shape)))
            flat = {"first": 0, "middle": size // 2, "last": size - 1}[pos]
            x[np.unravel_index(flat, tuple(x.shape))] = float("nan")
            cq = ChannelQuantiles(5, k=64)
            cq.update(np.ones((2, 5, 1), dtype=np.float32))
            before = cq.state_dict()
            with pytest.raises(ValueError, match="x contains NaN"):
                cq.update(x)
            after = cq.state_dict()
            for key in before:
                np.testing.assert_array_equal(before[key], after[key])
            skip = ChannelQuantiles(5, k=64, nan="skip").update(x)
            assert skip.nan_count.sum() == 1, (name, pos)
            assert skip.count.sum() == size - 1, (name, pos)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_min_max_exact_any_length_and_position(dtype):
    """min / max are reduced in vector lanes plus a scalar tail: exact for
    every batch length and extreme position (inf included)."""
    rng = np.random.default_rng(2)
    for n in list(range(1, 40)) + [63, 64, 65, 1000, 5000]:
        x = rng.standard_normal((n, 2)).astype(dtype)
        x[rng.integers(n), 0] = -np.inf if n % 3 == 0 else -7.5
        x[rng.integers(n), 1] = np.inf if n % 4 == 0 else 9.25
        cq = ChannelQuantiles(2, k=64).update(x)
        np.testing.assert_array_equal(cq.min, x.min(axis=0).astype(np.float64))
        np.testing.assert_array_equal(cq.max, x.max(axis=0).astype(np.float64))
