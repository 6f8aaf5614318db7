"""Tests of greedy_cover, ratio_greedy_cover and PackedBits against the naive
references in tests/reference.py."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from interp_engine.engine.cover import (CoverResult, PackedBits, RatioCoverResult, greedy_cover,
                                        pack_bits, ratio_greedy_cover, ratio_greedy_cover_many)

from _torch import needs_torch, torch
from reference import naive_greedy_cover, naive_ratio_greedy_cover

FORMATS = ["dense", "csr", "csc", "coo", "packed", pytest.param("torch", marks=needs_torch), "int8"]


def convert(dense: np.ndarray, fmt: str):
    if fmt == "dense":
        return dense
    if fmt == "csr":
        return sp.csr_matrix(dense)
    if fmt == "csc":
        return sp.csc_matrix(dense)
    if fmt == "coo":
        return sp.coo_matrix(dense)
    if fmt == "packed":
        return PackedBits.from_dense(dense)
    if fmt == "torch":
        return torch.from_numpy(dense.copy())
    if fmt == "int8":
        return dense.astype(np.int8)
    raise AssertionError(fmt)


def random_instance(rng, max_cand=14, max_el=40):
    n = int(rng.integers(1, max_cand))
    m = int(rng.integers(1, max_el))
    p = float(rng.uniform(0.05, 0.7))
    return rng.random((n, m)) < p


def check_greedy(dense, weights=None, budget=None, target=None, fmt="dense", exact=True):
    res = greedy_cover(convert(dense, fmt), weights=weights, budget=budget, target=target)
    ref_idx, ref_gains, ref_cov = naive_greedy_cover(dense, weights, budget, target)
    assert isinstance(res, CoverResult)
    assert res.indices.dtype == np.int64 and res.gains.dtype == np.float64
    np.testing.assert_array_equal(res.indices, ref_idx)
    if exact:
        np.testing.assert_array_equal(res.gains, ref_gains)
        assert res.covered == ref_cov
    else:
        np.testing.assert_allclose(res.gains, ref_gains, rtol=1e-12)
        assert res.covered == pytest.approx(ref_cov, rel=1e-12)
    return res


# ----------------------------------------------------------------------------- greedy_cover


@pytest.mark.parametrize("fmt", FORMATS)
def test_greedy_matches_reference_unit_weights_with_ties(fmt):
    rng = np.random.default_rng(1)
    for _ in range(60):
        check_greedy(random_instance(rng), fmt=fmt)


@pytest.mark.parametrize("fmt", ["dense", "csr", "packed"])
def test_greedy_many_ties_small_sets(fmt):
    # every candidate has 1 or 2 elements: nearly every step is a tie
    rng = np.random.default_rng(2)
    for _ in range(40):
        n, m = int(rng.integers(2, 30)), int(rng.integers(2, 12))
        dense = np.zeros((n, m), dtype=bool)
        for i in range(n):
            dense[i, rng.choice(m, size=int(rng.integers(1, 3)), replace=False)] = True
        res = check_greedy(dense, fmt=fmt)
        assert res.covered == dense.any(axis=0).sum()


def test_greedy_identical_rows_tie_to_lowest_index():
    dense = np.array([[0, 1, 1], [1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=bool)
    res = greedy_cover(dense)
    assert res.indices.tolist() == [0, 1]
    assert res.gains.tolist() == [2.0, 1.0]
    assert res.covered == 3.0


@pytest.mark.parametrize("fmt", ["dense", "csr", "coo", "packed"])
def test_greedy_integer_valued_float_weights_ties(fmt):
    rng = np.random.default_rng(3)
    for _ in range(50):
        dense = random_instance(rng)
        w = rng.integers(0, 4, size=dense.shape[1]).astype(np.float64)
        check_greedy(dense, weights=w, fmt=fmt)
        check_greedy(dense, weights=w.astype(np.int32), fmt=fmt)


@pytest.mark.parametrize("fmt", ["dense", "csr", "packed"])
def test_greedy_real_weights_without_ties(fmt):
    rng = np.random.default_rng(4)
    for _ in range(50):
        dense = random_instance(rng, max_el=60)
        w = rng.uniform(0.01, 10.0, size=dense.shape[1])
        check_greedy(dense, weights=w, fmt=fmt, exact=False)
        check_greedy(dense, weights=w.astype(np.float32), fmt=fmt, exact=False)


@pytest.mark.parametrize("fmt", ["dense", "csr", "packed"])
def test_greedy_budget_and_target(fmt):
    rng = np.random.default_rng(5)
    for _ in range(40):
        dense = random_instance(rng)
        for budget in (0, 1, 2, 5):
            check_greedy(dense, budget=budget, fmt=fmt)
        total = dense.any(axis=0).sum()
        for target in (0, 0.5, 1, total / 2, total, total + 3, np.inf):
            check_greedy(dense, target=target, fmt=fmt)
        check_greedy(dense, budget=2, target=total / 3, fmt=fmt)
        w = rng.integers(0, 5, size=dense.shape[1]).astype(float)
        check_greedy(dense, weights=w, budget=3, target=float(w.sum()) / 2, fmt=fmt)


def test_greedy_target_semantics():
    dense = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=bool)
    assert greedy_cover(dense, target=3).indices.tolist() == [0]  # reached exactly: stop
    assert greedy_cover(dense, target=3.5).indices.tolist() == [0, 1]
    assert greedy_cover(dense, target=0).indices.tolist() == []
    assert greedy_cover(dense, target=100).indices.tolist() == [0, 1, 2]  # unreachable: all gains 0
    assert greedy_cover(dense, budget=1, target=100).indices.tolist() == [0]


def test_greedy_zero_weights_and_empty_rows():
    dense = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1]], dtype=bool)
    res = greedy_cover(dense, weights=np.array([0.0, 0.0, 2.0]))
    assert res.indices.tolist() == [2] and res.gains.tolist() == [2.0]
    res = greedy_cover(dense, weights=np.zeros(3))
    assert res.indices.tolist() == [] and res.covered == 0.0


def test_greedy_scipy_duplicates_and_explicit_zeros():
    # row 0 stores element 1 twice (counts once) and an explicit zero at element 2
    m = sp.csr_matrix((np.array([1.0, 1.0, 0.0, 1.0, 1.0]), np.array([1, 1, 2, 0, 2]), np.array([0, 3, 5])),
                      shape=(2, 3))
    assert not m.has_canonical_format
    dense = np.array([[0, 1, 0], [1, 0, 1]], dtype=bool)
    res = greedy_cover(m)
    assert res.indices.tolist() == [1, 0] and res.gains.tolist() == [2.0, 1.0]
    check_greedy(dense, fmt="csr")
    # the caller's matrix is not modified
    assert m.nnz == 5


def test_greedy_large_random_csr_matches_reference():
    rng = np.random.default_rng(6)
    dense = rng.random((300, 2000)) < 0.02
    check_greedy(dense, fmt="csr")
    check_greedy(dense, fmt="packed")
    w = rng.integers(1, 3, size=2000)
    check_greedy(dense, weights=w, fmt="csr")


def test_greedy_many_candidates_int32_transpose_path():
    # > 65536 candidates uses 32-bit candidate ids in the transpose
    rng = np.random.default_rng(7)
    n, m = 70000, 300
    rows = rng.integers(0, n, size=5000)
    cols = rng.integers(0, m, size=5000)
    mat = sp.csr_matrix((np.ones(5000, dtype=bool), (rows, cols)), shape=(n, m))
    dense = mat.toarray()
    res = greedy_cover(mat)
    ref_idx, ref_gains, _ = naive_greedy_cover(dense)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_array_equal(res.gains, ref_gains)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 10), m=st.integers(1, 25), seed=st.integers(0, 2**32 - 1),
       fmt=st.sampled_from(["dense", "csr", "packed"]), weighted=st.booleans(),
       budget=st.one_of(st.none(), st.integers(0, 6)))
def test_greedy_property(n, m, seed, fmt, weighted, budget):
    rng = np.random.default_rng(seed)
    dense = rng.random((n, m)) < rng.uniform(0.1, 0.6)
    w = rng.integers(0, 3, size=m).astype(float) if weighted else None
    res = check_greedy(dense, weights=w, budget=budget, fmt=fmt)
    # properties: gains positive and non-increasing, indices distinct, covered = sum of gains
    assert np.all(res.gains > 0)
    assert np.all(np.diff(res.gains) <= 0)
    assert len(set(res.indices.tolist())) == len(res.indices)
    assert res.covered == res.gains.sum()


# ----------------------------------------------------------------------------- ratio_greedy_cover


def check_ratio(cost, gain, target, fmt_c="dense", fmt_g="dense", **kw):
    res = ratio_greedy_cover(convert(cost, fmt_c), convert(gain, fmt_g), target=target, **kw)
    ref = naive_ratio_greedy_cover(cost, gain, target, **kw)
    assert isinstance(res, RatioCoverResult)
    assert res.indices.dtype == np.int64
    np.testing.assert_array_equal(res.indices, ref[0])
    assert (res.covered_cost, res.covered_gain, res.reached, res.n_greedy) == ref[1:]
    return res


@pytest.mark.parametrize("fmts", [("dense", "dense"), ("csr", "csr"), ("packed", "coo"),
                                  ("csc", "packed"), pytest.param(("torch", "csr"), marks=needs_torch)])
@pytest.mark.parametrize("tighten", [True, False])
def test_ratio_matches_reference(fmts, tighten):
    rng = np.random.default_rng(10)
    for _ in range(40):
        n = int(rng.integers(1, 15))
        cost = rng.random((n, int(rng.integers(0, 30)))) < rng.uniform(0.05, 0.6)
        gain = rng.random((n, int(rng.integers(0, 30)))) < rng.uniform(0.05, 0.6)
        coverable = int(gain.any(axis=0).sum())
        for target in (0, 1, coverable // 2, coverable, coverable + 1):
            check_ratio(cost, gain, target, *fmts, tighten=tighten)


def test_ratio_ties_and_eps():
    rng = np.random.default_rng(11)
    for _ in range(60):
        n = int(rng.integers(2, 20))
        cost = rng.random((n, 4)) < 0.4  # few elements: many equal ratios
        gain = rng.random((n, 5)) < 0.4
        for eps_cost, eps_gain in ((1e-5, 1e-10), (0.0, 1e-10), (1.0, 1.0), (0.0, 0.0)):
            check_ratio(cost, gain, 5, "csr", "packed", eps_cost=eps_cost, eps_gain=eps_gain)


def test_ratio_unreachable_and_tighten_semantics():
    cost = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    gain = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    res = ratio_greedy_cover(cost, gain, target=2)
    # only element 0 of gain is coverable: candidate 0 (cost 1) beats 2 (cost 2)
    assert not res.reached and res.n_greedy == 1
    # tighten: 1 (empty cost) and 4 (cost {0}, covered) appended in ascending order
    assert res.indices.tolist() == [0, 1, 4]
    assert (res.covered_cost, res.covered_gain) == (1, 1)
    res = ratio_greedy_cover(cost, gain, target=1, tighten=False)
    assert res.reached and res.indices.tolist() == [0]


def test_ratio_zero_gain_candidate_never_chosen():
    # candidate 0 adds no gain and almost no cost: the raw formula would rank it
    # first ((0 + 1e-5) / 1e-10 = 1e5 < 2e5); it can never make progress, so it is skipped
    cost = np.zeros((2, 200001), dtype=bool)
    cost[1, :200000] = True
    gain = np.array([[0], [1]], dtype=bool)
    res = ratio_greedy_cover(cost, gain, target=1, tighten=False)
    assert res.indices.tolist() == [1] and res.reached


# ----------------------------------------------------------------------------- ratio_greedy_cover_many


def _random_problems(rng, count):
    problems = []
    fmts = ["dense", "csr", "packed", "coo"] + (["torch"] if torch is not None else [])
    for i in range(count):
        n = int(rng.integers(1, 25))
        cost = rng.random((n, int(rng.integers(0, 80)))) < rng.uniform(0.05, 0.6)
        gain = rng.random((n, int(rng.integers(1, 60)))) < rng.uniform(0.05, 0.6)
        coverable = int(gain.any(axis=0).sum())
        target = [0, 1, coverable // 2, coverable, coverable + 3][i % 5]  # i % 5 == 4: unreachable
        problems.append((cost, gain, target, fmts[i % len(fmts)]))
    return problems


@pytest.mark.parametrize("num_threads", [None, 1, 2, 3])
@pytest.mark.parametrize("tighten", [True, False])
def test_ratio_many_equals_one_call_per_problem(num_threads, tighten):
    rng = np.random.default_rng(13)
    problems = _random_problems(rng, 41)
    many = ratio_greedy_cover_many([(convert(c, f), convert(g, f), t) for c, g, t, f in problems],
                                   tighten=tighten, num_threads=num_threads)
    assert len(many) == len(problems)
    assert any(not r.reached for r in many) and any(r.reached for r in many)
    for (cost, gain, target, fmt), res in zip(problems, many):
        one = ratio_greedy_cover(convert(cost, fmt), convert(gain, fmt), target=target,
                                 tighten=tighten)
        ref = naive_ratio_greedy_cover(cost, gain, target, tighten=tighten)
        assert isinstance(res, RatioCoverResult) and res.indices.dtype == np.int64
        np.testing.assert_array_equal(res.indices, one.indices)
        np.testing.assert_array_equal(res.indices, ref[0])
        assert res[1:] == one[1:]
        assert (res.covered_cost, res.covered_gain, res.reached, res.n_greedy) == ref[1:]


def test_ratio_many_edge_cases():
    assert ratio_greedy_cover_many([]) == []
    assert ratio_greedy_cover_many(()) == []
    cost = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    gain = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    (single,) = ratio_greedy_cover_many([(cost, gain, 2)])  # unreachable target
    assert not single.reached and single.indices.tolist() == [0, 1, 4]
    (single,) = ratio_greedy_cover_many([(cost, gain, 1)], tighten=False, eps_cost=0.0, eps_gain=1.0)
    one = ratio_greedy_cover(cost, gain, target=1, tighten=False, eps_cost=0.0, eps_gain=1.0)
    assert single.indices.tolist() == one.indices.tolist() and single[1:] == one[1:]
    # zero candidates
    (empty,) = ratio_greedy_cover_many([(np.zeros((0, 3), bool), np.zeros((0, 2), bool), 1)])
    assert empty.indices.size == 0 and not empty.reached


def test_ratio_many_bad_input():
    good = (np.ones((2, 3), bool), np.ones((2, 4), bool), 1)
    with pytest.raises(TypeError, match="problems must be a list or tuple"):
        ratio_greedy_cover_many(good[0])
    with pytest.raises(TypeError, match=r"problems\[1\] must be a \(cost_sets, gain_sets, target\) "
                                        r"triple; got tuple of length 2"):
        ratio_greedy_cover_many([good, good[:2]])
    with pytest.raises(ValueError, match=r"problems\[0\]: cost_sets and gain_sets must have the same "
                                         r"number of candidates \(rows\); got 2 and 3"):
        ratio_greedy_cover_many([(good[0], np.ones((3, 4), bool), 1)])
    with pytest.raises(ValueError, match=r"problems\[1\]: target must be >= 0; got -1"):
        ratio_greedy_cover_many([good, (good[0], good[1], -1)])
    with pytest.raises(TypeError, match=r"problems\[0\]: gain_sets must be a scipy.sparse matrix"):
        ratio_greedy_cover_many([(good[0], "x", 1)])
    with pytest.raises(ValueError, match="eps_cost and eps_gain must be finite"):
        ratio_greedy_cover_many([good], eps_cost=float("inf"))
    with pytest.raises(TypeError, match="tighten must be a bool"):
        ratio_greedy_cover_many([good], tighten=1)
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        ratio_greedy_cover_many([good], num_threads=-1)


def test_ratio_lam_like_random_large():
    rng = np.random.default_rng(12)
    cost = rng.random((50, 3000)) < 0.5
    gain = rng.random((50, 2000)) < 0.5
    check_ratio(cost, gain, 2000, "packed", "packed")
    check_ratio(cost, gain, 1990, "csr", "dense", tighten=False)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 10), mc=st.integers(0, 12), mg=st.integers(0, 12), seed=st.integers(0, 2**32 - 1),
       target=st.integers(0, 14), tighten=st.booleans(),
       fmts=st.sampled_from([("dense", "dense"), ("csr", "packed"), ("packed", "csr")]))
def test_ratio_property(n, mc, mg, seed, target, tighten, fmts):
    rng = np.random.default_rng(seed)
    cost = rng.random((n, mc)) < 0.4
    gain = rng.random((n, mg)) < 0.4
    res = check_ratio(cost, gain, target, *fmts, tighten=tighten)
    assert len(set(res.indices.tolist())) == len(res.indices)
    assert res.reached == (res.covered_gain >= target) or res.n_greedy < len(res.indices)


# ----------------------------------------------------------------------------- empty inputs


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
@pytest.mark.parametrize("fmt", ["dense", "csr", "packed", pytest.param("torch", marks=needs_torch)])
def test_empty_inputs(shape, fmt):
    dense = np.zeros(shape, dtype=bool)
    res = greedy_cover(convert(dense, fmt))
    assert res.indices.shape == (0,) and res.gains.shape == (0,) and res.covered == 0.0
    res = greedy_cover(convert(dense, fmt), weights=np.ones(shape[1]), budget=3, target=1.0)
    assert res.indices.shape == (0,)
    r = ratio_greedy_cover(convert(dense, fmt), convert(dense, fmt), target=0)
    assert r.reached and r.covered_gain == 0
    r = ratio_greedy_cover(convert(dense, fmt), convert(dense, fmt), target=1)
    assert not r.reached and r.n_greedy == 0
    # tighten adds every candidate with an empty cost set
    assert r.indices.tolist() == list(range(shape[0]))


# ----------------------------------------------------------------------------- validation


def test_bad_inputs_greedy():
    d = np.ones((3, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"sets must be 2-dimensional.*got shape \(4,\)"):
        greedy_cover(np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match=r"sets must be 2-dimensional.*\(2, 3, 4\)"):
        greedy_cover(np.ones((2, 3, 4), dtype=bool))
    with pytest.raises(TypeError, match=r"sets must be a scipy.sparse matrix.*list"):
        greedy_cover([["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match=r"sets must be a scipy.sparse matrix.*float64"):
        greedy_cover(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"sets must be a scipy.sparse matrix.*str"):
        greedy_cover("abc")
    with pytest.raises(ValueError, match=r"sets must hold only 0/1"):
        greedy_cover(np.full((2, 2), 2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\).*got shape \(3,\)"):
        greedy_cover(d, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\).*got shape \(4, 1\)"):
        greedy_cover(d, weights=np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"weights must be non-negative.*-1"):
        greedy_cover(d, weights=np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"weights must not contain NaN"):
        greedy_cover(d, weights=np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"weights must be finite"):
        greedy_cover(d, weights=np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(TypeError, match=r"weights must be a real numeric array"):
        greedy_cover(d, weights=np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match=r"budget must be >= 0; got -1"):
        greedy_cover(d, budget=-1)
    with pytest.raises(TypeError, match=r"budget must be an integer; got float"):
        greedy_cover(d, budget=2.0)
    with pytest.raises(TypeError, match=r"budget must be an integer; got bool"):
        greedy_cover(d, budget=True)
    with pytest.raises(ValueError, match=r"target must be >= 0; got -1"):
        greedy_cover(d, target=-1)
    with pytest.raises(ValueError, match=r"target must not be NaN"):
        greedy_cover(d, target=float("nan"))
    with pytest.raises(TypeError, match=r"target must be a real number; got str"):
        greedy_cover(d, target="3")
    with pytest.raises(ValueError, match=r"sets must be 2-dimensional"):
        greedy_cover(sp.coo_array(np.ones(4)))


def test_bad_inputs_ratio():
    d = np.ones((3, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"same number of candidates.*got 3 and 2"):
        ratio_greedy_cover(d, np.ones((2, 4), dtype=bool), target=1)
    with pytest.raises(ValueError, match=r"cost_sets must be 2-dimensional"):
        ratio_greedy_cover(np.ones(3, dtype=bool), d, target=1)
    with pytest.raises(ValueError, match=r"gain_sets must be 2-dimensional"):
        ratio_greedy_cover(d, np.ones(3, dtype=bool), target=1)
    with pytest.raises(TypeError, match=r"gain_sets must be a scipy.sparse matrix"):
        ratio_greedy_cover(d, [["x"]], target=1)
    with pytest.raises(ValueError, match=r"target must be >= 0"):
        ratio_greedy_cover(d, d, target=-2)
    with pytest.raises(ValueError, match=r"target must not be NaN"):
        ratio_greedy_cover(d, d, target=float("nan"))
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'target'"):
        ratio_greedy_cover(d, d)
    with pytest.raises(ValueError, match=r"eps_cost must be >= 0"):
        ratio_greedy_cover(d, d, target=1, eps_cost=-1.0)
    with pytest.raises(ValueError, match=r"eps_gain must not be NaN"):
        ratio_greedy_cover(d, d, target=1, eps_gain=float("nan"))
    with pytest.raises(ValueError, match=r"must be finite"):
        ratio_greedy_cover(d, d, target=1, eps_gain=float("inf"))
    with pytest.raises(TypeError, match=r"tighten must be a bool; got str"):
        ratio_greedy_cover(d, d, target=1, tighten="yes")
    with pytest.raises(ValueError, match=r"num_threads must be >= 0"):
        ratio_greedy_cover(d, d, target=1, num_threads=-1)


# ----------------------------------------------------------------------------- PackedBits


@pytest.mark.parametrize("n_bits", [0, 1, 7, 63, 64, 65, 127, 128, 130, 1000])
def test_packed_round_trip(n_bits):
    rng = np.random.default_rng(n_bits)
    for rows in (0, 1, 5):
        dense = rng.random((rows, n_bits)) < 0.5
        pb = PackedBits.from_dense(dense)
        assert pb.words.dtype == np.uint64 and pb.words.shape == (rows, (n_bits + 63) // 64)
        assert pb.shape == (rows, n_bits) and len(pb) == rows
        np.testing.assert_array_equal(pb.to_dense(), dense)
        np.testing.assert_array_equal(pb.popcount(), dense.sum(axis=1))
        if torch is not None:
            assert pack_bits(torch.from_numpy(dense.copy())) == pb
        # rebuilt from its words
        assert PackedBits(pb.words.copy(), n_bits) == pb


def test_packed_bit_order_documented():
    dense = np.zeros((1, 130), dtype=bool)
    dense[0, [0, 3, 64, 129]] = True
    w = PackedBits.from_dense(dense).words
    assert w[0, 0] == (1 | 1 << 3) and w[0, 1] == 1 and w[0, 2] == 1 << 1
    # matches numpy's little-endian packbits viewed as uint64 (on little-endian hosts)
    if np.little_endian:
        b = np.packbits(np.pad(dense, ((0, 0), (0, 192 - 130))), axis=1, bitorder="little")
        np.testing.assert_array_equal(b.view(np.uint64), w)


def test_packed_validation():
    with pytest.raises(ValueError, match=r"words must have shape \(rows, ceil\(n_bits / 64\)\) = \(rows, 2\)"):
        PackedBits(np.zeros((2, 1), dtype=np.uint64), 65)
    with pytest.raises(TypeError, match=r"words must have dtype uint64"):
        PackedBits(np.zeros((2, 1), dtype=np.int32), 10)
    with pytest.raises(ValueError, match=r"padding bits past n_bits=10"):
        PackedBits(np.full((1, 1), 1 << 20, dtype=np.uint64), 10)
    with pytest.raises(ValueError, match=r"n_bits must be >= 0"):
        PackedBits(np.zeros((1, 1), dtype=np.uint64), -3)
    with pytest.raises(ValueError, match=r"dense must be 2-dimensional"):
        PackedBits.from_dense(np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match=r"dense must have a boolean dtype"):
        PackedBits.from_dense(np.ones((3, 3)))


def test_ctrl_c_is_honoured_in_core_loops():
    # the core asks Python for pending signals; a pending SIGINT raised during a
    # long run must surface as KeyboardInterrupt, not be swallowed
    import os
    import signal
    import threading

    rng = np.random.default_rng(0)
    mat = sp.random(3000, 20000, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, size=20000)  # real weights: CELF path
    timer = threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(200):
                greedy_cover(mat, weights=w)
    finally:
        timer.cancel()


def test_greedy_large_integer_weights_int64_path():
    # gains beyond 16 bits use the int64 path (and 32-bit candidate ids above 65536 rows)
    rng = np.random.default_rng(8)
    dense = rng.random((60, 300)) < 0.1
    w = rng.integers(0, 10**7, size=300)
    check_greedy(dense, weights=w, fmt="csr")
    check_greedy(dense, weights=w.astype(np.float64), fmt="packed")
    n, m = 66000, 50
    rows = rng.integers(0, n, size=3000)
    cols = rng.integers(0, m, size=3000)
    mat = sp.csr_matrix((np.ones(3000, dtype=bool), (rows, cols)), shape=(n, m))
    w = rng.integers(10**5, 10**6, size=m)
    res = greedy_cover(mat, weights=w)
    ref = naive_greedy_cover(mat.toarray(), w)
    np.testing.assert_array_equal(res.indices, ref[0])
    np.testing.assert_array_equal(res.gains, ref[1])


@pytest.mark.parametrize("num_threads", [1, 2])
def test_greedy_transpose_agrees_with_lazy_greedy_medium(num_threads):
    # unit weights -> exact transpose path (threaded above 200k nonzeros);
    # weights 0.5 -> real-weight lazy greedy (CELF), exact in float64: the two
    # independent algorithms must choose identically
    rng = np.random.default_rng(9)
    n, m, per = 3000, 20000, 150
    rows = np.repeat(np.arange(n), per)
    cols = rng.integers(0, m, size=n * per)
    mat = sp.csr_matrix((np.ones(n * per, dtype=bool), (rows, cols)), shape=(n, m))
    a = greedy_cover(mat, num_threads=num_threads)
    b = greedy_cover(mat, weights=np.full(m, 0.5), num_threads=num_threads)
    c = greedy_cover(PackedBits.from_dense(mat.toarray()), num_threads=num_threads)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.gains, 2 * b.gains)
    np.testing.assert_array_equal(a.indices, c.indices)
    assert a.covered == np.count_nonzero(np.bincount(mat.indices, minlength=m))
    part = greedy_cover(mat, budget=50, num_threads=num_threads)
    np.testing.assert_array_equal(part.indices, a.indices[:50])


@pytest.mark.parametrize("tighten", [True, False])
def test_ratio_packed_sparse_updates(tighten):
    # few newly covered bits per step relative to the row's words: exercises
    # the incremental update that reads only the changed words
    rng = np.random.default_rng(13)
    for density in (0.002, 0.01, 0.05):
        cost = rng.random((120, 3000)) < density
        gain = rng.random((120, 5000)) < density
        target = int(gain.any(axis=0).sum())
        check_ratio(cost, gain, target, "packed", "packed", tighten=tighten)
        check_ratio(cost, gain, target - 5, "dense", "csr", tighten=tighten)


def test_packed_bits_rechecked_when_used():
    pb = PackedBits.from_dense(np.ones((2, 10), dtype=bool))
    pb.words = np.full((2, 1), 1 << 40, dtype=np.uint64)  # padding bits set after construction
    with pytest.raises(ValueError, match=r"padding bits past n_bits=10"):
        greedy_cover(pb)


@pytest.mark.parametrize("fmt", ["coo", "csc", "csr_unsorted", "lil", "dok", "bsr", "coo_array"])
def test_sparse_conversions_match_dense(fmt):
    rng = np.random.default_rng(14)
    for _ in range(20):
        n, m = int(rng.integers(1, 40)), int(rng.integers(1, 60))
        dense = rng.random((n, m)) < 0.2
        r, c = np.nonzero(dense)
        # duplicates, explicit zeros and shuffled order
        extra = rng.integers(0, max(1, len(r)), size=len(r) // 3) if len(r) else np.zeros(0, dtype=int)
        zr, zc = rng.integers(0, n, size=5), rng.integers(0, m, size=5)
        rows = np.concatenate([r, r[extra], zr])
        cols = np.concatenate([c, c[extra], zc])
        vals = np.concatenate([np.ones(len(r)), np.full(len(extra), 2.0), np.zeros(5)])
        perm = rng.permutation(len(rows))
        coo = sp.coo_matrix((vals[perm], (rows[perm], cols[perm])), shape=(n, m))
        if fmt == "coo":
            mat = coo
        elif fmt == "coo_array":
            mat = sp.coo_array(coo)
        elif fmt == "csc":
            mat = sp.csc_matrix((coo.data, (coo.row, coo.col)), shape=(n, m))
            mat.has_sorted_indices = False
        elif fmt == "csr_unsorted":
            # build a CSR with duplicates and unsorted indices without canonicalizing
            order = np.argsort(coo.row, kind="stable")
            indptr = np.concatenate([[0], np.cumsum(np.bincount(coo.row, minlength=n))])
            mat = sp.csr_matrix((coo.data[order], coo.col[order], indptr), shape=(n, m))
        elif fmt == "lil":
            mat = sp.lil_matrix(dense)
        elif fmt == "dok":
            mat = sp.dok_matrix(dense)
        else:
            mat = sp.bsr_matrix(dense)
        res = greedy_cover(mat)
        ref = naive_greedy_cover(dense)
        np.testing.assert_array_equal(res.indices, ref[0])
        np.testing.assert_array_equal(res.gains, ref[1])
        r2 = ratio_greedy_cover(mat, mat, target=3)
        ref2 = naive_ratio_greedy_cover(dense, dense, 3)
        np.testing.assert_array_equal(r2.indices, ref2[0])


@pytest.mark.parametrize("fmt", ["packed", "dense", pytest.param("torch", marks=needs_torch)])
def test_greedy_sparse_packed_rows_take_transpose_path(fmt):
    # packed/dense rows of density < 1/16 are listed as CSR and take the exact
    # transpose path: same choices as the naive greedy, ties included
    rng = np.random.default_rng(15)
    for _ in range(30):
        n, m = int(rng.integers(1, 30)), int(rng.integers(64, 400))
        dense = rng.random((n, m)) < rng.uniform(0.005, 0.05)
        check_greedy(dense, fmt=fmt)
        w = rng.integers(0, 3, size=m)
        check_greedy(dense, weights=w, budget=int(rng.integers(0, 6)), fmt=fmt)
        check_greedy(dense, weights=rng.uniform(0.5, 2.0, size=m), fmt=fmt, exact=False)


def test_bad_nested_lists():
    with pytest.raises(TypeError, match=r"sets must be a scipy.sparse matrix.*list \(ragged\)"):
        greedy_cover([[True], [True, False]])
    # a nested list of bools is accepted
    assert greedy_cover([[True, False], [True, True]]).indices.tolist() == [1]
