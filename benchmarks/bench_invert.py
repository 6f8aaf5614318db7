"""INVERT beam search: ours (compiled core) against the reference algorithm
(lapalap/invert: AUROC by sorting all activations for every formula), same run.

Run (about 2-3 minutes on a 2-core machine):

    PYTHONPATH=$PWD python -m pytest benchmarks/bench_invert.py -q -p no:cacheprovider \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

Workload (issue 4): N = 50,000 samples, K = 512 neurons, C = 1,500 concepts,
formula length 3, beam 10, fractions [0, 0.5], mode "positive".  Labels: each
concept present independently with a prevalence drawn log-uniformly in
[0.001, 0.2] (Broden-like: most concepts rare); activations: float32 noise plus,
for every neuron, a response to 3 random concepts.

Groups:
* ``invert 50000x512x1500 L3 B10``: ours for all 512 neurons (label packing and
  the concept index included); the reference's unit of work, one formula
  evaluation (the AND/OR of the formula's mask with an atom, the None checks, and
  torchmetrics' binary AUROC ported to numpy: sort, cumulative counts,
  trapezoid), timed on 60 formulas of neuron 0 and scaled by the number of
  evaluations the reference loop makes for all neurons on the same beams (counted
  exactly by the core: ``NeuronExplanation.evaluations``).  Before timing, the
  port's AUROC is checked equal to ours on the best formulas.
* ``formula sums 1 phi x 1500 concepts``: the beam-search primitive alone, the
  concept index (scatter over phi's samples) vs the bitset route (AND + iterate
  set bits), for a phi of 10% of the samples.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from interp_engine import PackedBits, _core
from interp_engine.engine.rank import midranks
from interp_engine.methods.invert import Invert

pytestmark = pytest.mark.filterwarnings("ignore")

N, K, C, L, B = 50_000, 512, 1_500, 3, 10
N_REF = 60


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    prev = np.exp(rng.uniform(np.log(0.001), np.log(0.2), C)).astype(np.float32)
    labels = rng.random((N, C), dtype=np.float32) < prev
    acts = rng.standard_normal((N, K), dtype=np.float32)
    for k in range(K):
        cs = rng.choice(C, 3, replace=False)
        acts[:, k] += labels[:, cs] @ rng.uniform(0.5, 2.0, 3).astype(np.float32)
    return acts, labels


@pytest.fixture(scope="module")
def ours_result(data):
    acts, labels = data
    t = time.perf_counter()
    res = Invert(length=L, beam=B).explain(acts, labels, top=B)
    return res, time.perf_counter() - t


def binary_auroc_port(preds, target):
    """torchmetrics.functional.classification.binary_auroc (thresholds=None) in numpy."""
    order = np.argsort(-preds, kind="stable")
    p = preds[order]
    t = target[order]
    distinct = np.nonzero(np.diff(p))[0]
    idx = np.r_[distinct, t.size - 1]
    tps = np.cumsum(t)[idx].astype(np.float64)
    fps = 1 + idx - tps
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def reference_evaluations(acts_k, labels, phi, n_formulas):
    """The reference's inner loop body for the first n_formulas (atom, op) pairs:
    mask, None checks (empty, everything, unchanged), AUROC by sorting, fraction."""
    n = phi.size
    out = []
    done = 0
    for j in range(2 * labels.shape[1]):
        col = labels[:, j % labels.shape[1]]
        atom = col if j < labels.shape[1] else ~col
        for new in (phi & atom, phi | atom):
            s = int(new.sum())
            if s == 0 or s == n or np.array_equal(new, phi):
                continue
            out.append((binary_auroc_port(acts_k, new), s / n))
            done += 1
            if done == n_formulas:
                return out
    return out


def test_invert_ours(benchmark, data, ours_result):
    acts, labels = data
    res, first = ours_result
    assert all(r.note == "" for r in res) and len(res) == K
    benchmark.group = f"invert {N}x{K}x{C} L{L} B{B}"
    benchmark.extra_info.update(impl="ours", note=f"all {K} neurons; first call {first:.2f} s")
    benchmark.pedantic(lambda: Invert(length=L, beam=B).explain(acts, labels), rounds=2, iterations=1)


def test_invert_reference(benchmark, data, ours_result):
    acts, labels = data
    res, t_ours = ours_result
    # correctness first: the port's AUROC of our best formulas equals ours
    for k in (0, 1, 2):
        e = res[k].best
        m = e.evaluate(labels)
        assert abs(binary_auroc_port(acts[:, k], m) - e.auc) < 1e-9
    evals = np.array([r.evaluations for r in res], dtype=np.float64)
    phi = res[0].best.evaluate(labels)
    t0 = time.perf_counter()
    reference_evaluations(acts[:, 0], labels, phi, N_REF)
    per_eval = (time.perf_counter() - t0) / N_REF
    ratio = per_eval * evals / (t_ours / K)
    benchmark.group = f"invert {N}x{K}x{C} L{L} B{B}"
    benchmark.extra_info.update(
        impl="reference loop (numpy port, AUROC by sorting)", scale=float(evals.sum()) / N_REF,
        note=(f"{N_REF} of {evals.sum():.3g} evaluations timed ({evals.mean():.0f} per neuron); "
              f"ratio per neuron min {ratio.min():.0f}x median {np.median(ratio):.0f}x; "
              f"reference ~{per_eval * evals.mean():.0f} s per neuron"))
    benchmark.pedantic(lambda: reference_evaluations(acts[:, 0], labels, phi, N_REF), rounds=1,
                       iterations=1)


@pytest.mark.parametrize("method", ["index", "bits"])
def test_formula_sums(benchmark, data, method):
    acts, labels = data
    pb = PackedBits.from_dense(np.ascontiguousarray(labels.T))
    idx = _core.RankConceptIndex(pb.words, N)
    r2 = (2 * midranks(acts[:, :1])[:, 0]).astype(np.int64)
    phi = np.random.default_rng(1).random(N) < 0.1
    words = PackedBits.from_dense(phi[None]).words[0]
    ref = _core._rank_formula_sums(r2, words, idx, "bits")
    got = _core._rank_formula_sums(r2, words, idx, method)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
    np.testing.assert_array_equal(ref["and_count"], (labels & phi[:, None]).sum(0))
    benchmark.group = f"formula sums 1 phi x {C} concepts"
    benchmark.extra_info.update(impl=f"ours ({method})", note=f"index entries {idx.entries}")
    benchmark(lambda: _core._rank_formula_sums(r2, words, idx, method))
