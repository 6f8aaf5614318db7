"""INVERT beam search: ours (compiled core) against the reference's own
algorithm (lapalap/invert v1.1, ``Invert.explain_representation``), same run.

Run (about 3-5 minutes on a 2-core machine):

    PYTHONPATH=$PWD python -m pytest benchmarks/bench_invert.py -q -p no:cacheprovider \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

Workloads (issue 4; N = 10,000 as in issue 14 and N = 50,000): K = 512
neurons, C = 1,500 concepts, formula length 3, beam 10, fractions [0, 0.5],
mode "positive".  Labels: each concept present independently with a prevalence
drawn log-uniformly in [0.001, 0.2] (Broden-like: most concepts rare);
activations: float32 noise plus, for every neuron, a response to 3 random
concepts.

Groups:
* ``invert Nx512x1500 L3 B10``: ours for all 512 neurons (label packing and
  the concept index included) against the reference loop
  (``tests/reference.py: invert_reference_loop``, a re-implementation of the
  reference's current search checked to give its beams) with torchmetrics'
  ``binary_auroc`` itself when torchmetrics is installed (the ``bench``
  extra), else its port in ``tests/reference.py``.  The reference scores one
  AUROC per atom and then, for each of the B beam formulas at each length
  2..L, one per (atom, AND/OR) pair: C + (L - 1) * 4C * B = 121,500 AUROC
  evaluations per neuron here, every neuron alike (duplicates included).
  Its atom phase (C AUROCs) runs in full for neuron 0, then the first
  ``N_EXT`` extensions, in one run timed at every AUROC call; the time per
  neuron is the atom phase plus the time per extension times the
  (L - 1) * 4C * B extensions, and ``scale`` turns the measured run into all
  K neurons.  The reference loop is
  faster than the reference itself (no sympytorch module per formula; that
  module is built and run for every formula by the reference), so the ratio is
  a lower bound.  torch runs the reference with one thread: on the 2-core
  development machine, shared with other jobs, its default of 2 OpenMP
  threads made every AUROC 4-20x slower (2.4-3 ms vs 12-48 ms at N = 10,000),
  so one thread is the reference's best setting there; ours uses both cores.
  Before timing: the loop gives the same best formula as ours
  on a smaller problem (N = 2,000, C = 40, length 2), and its AUROC of our best
  formulas equals our AUC to 1e-4 (float32, after torchmetrics' sigmoid).
* ``formula sums 1 phi x 1500 concepts``: the beam-search primitive alone, the
  concept index (scatter over phi's samples) vs the bitset route (AND + iterate
  set bits), for a phi of 10% of the samples.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from interp_engine import PackedBits, _core
from interp_engine.engine.rank import midranks
from interp_engine.methods.invert import Invert

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from reference import (ReferenceLoopCut, invert_reference_evaluations,  # noqa: E402
                       invert_reference_loop, torchmetrics_binary_auroc)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore")

K, C, L, B = 512, 1_500, 3, 10
N_EXT = {10_000: 400, 50_000: 150}


def _auroc():
    """torchmetrics' binary_auroc when installed, else the port; and its name."""
    try:
        from torchmetrics.functional.classification import binary_auroc
    except ImportError:
        return torchmetrics_binary_auroc, "torchmetrics binary_auroc port"
    import torchmetrics

    return binary_auroc, f"torchmetrics {torchmetrics.__version__} binary_auroc"


def make_data(n, k=K, c=C, seed=0):
    rng = np.random.default_rng(seed)
    prev = np.exp(rng.uniform(np.log(0.001), np.log(0.2), c)).astype(np.float32)
    labels = rng.random((n, c), dtype=np.float32) < prev
    acts = rng.standard_normal((n, k), dtype=np.float32)
    for j in range(k):
        cs = rng.choice(c, 3, replace=False)
        acts[:, j] += labels[:, cs] @ rng.uniform(0.5, 2.0, 3).astype(np.float32)
    return acts, labels


_DATA: dict = {}


def data(n):
    if n not in _DATA:
        acts, labels = make_data(n)
        t = time.perf_counter()
        res = Invert(length=L, beam=B).explain(acts, labels, top=B)
        _DATA[n] = (acts, labels, res, time.perf_counter() - t)
    return _DATA[n]


@pytest.mark.parametrize("n", sorted(N_EXT))
def test_invert_ours(benchmark, n):
    acts, labels, res, first = data(n)
    assert all(r.note == "" for r in res) and len(res) == K
    benchmark.group = f"invert {n}x{K}x{C} L{L} B{B}"
    benchmark.extra_info.update(impl="ours", note=f"all {K} neurons; first call {first:.2f} s")
    benchmark.pedantic(lambda: Invert(length=L, beam=B).explain(acts, labels), rounds=2, iterations=1)


_CHECKED: list = []


def check_reference_loop_gives_our_best_formula():
    """The check before timing: on a smaller problem, the reference loop's best
    formula at lengths 1 and 2 is ours (the same set of samples)."""
    if _CHECKED:
        return
    acts, labels = make_data(2_000, k=3, c=40, seed=1)
    auroc, _ = _auroc()
    for j in range(3):
        states = invert_reference_loop(torch.from_numpy(acts[:, j]), labels, 2, B, metric=auroc,
                                       memorize_states=True)
        for length in (1, 2):
            ours = Invert(length=length, beam=B).explain(acts[:, j:j + 1], labels)[0].best
            np.testing.assert_array_equal(states[str(length)][0]["mask"].numpy(), ours.evaluate(labels))
    _CHECKED.append(True)


@pytest.mark.parametrize("n", sorted(N_EXT))
def test_invert_reference(benchmark, n):
    acts, labels, res, t_ours = data(n)
    auroc, name = _auroc()
    a0 = torch.from_numpy(np.ascontiguousarray(acts[:, 0]))   # one neuron, as a user passes it
    # correctness first: the same best formulas on a smaller problem, and the reference's
    # AUROC of our best formulas is our AUC (float32)
    check_reference_loop_gives_our_best_formula()
    for j in (0, 1, 2):
        e = res[j].best
        got = float(auroc(torch.from_numpy(acts[:, j]), torch.from_numpy(e.evaluate(labels))))
        assert abs(got - e.auc) < 1e-4, (j, got, e.auc)
    admissible_atoms = sum(int(0 < m.sum() <= 0.5 * n) + int(0 < n - m.sum() <= 0.5 * n) for m in labels.T)
    assert admissible_atoms >= B  # so every beam has B entries: the count below is exact
    evals = invert_reference_evaluations(C, L, [B] * (L - 1))
    n_ext = evals - C
    stamps: list = []

    def timed(a, b):
        stamps.append(time.perf_counter())
        return auroc(a, b)

    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # the reference's fastest setting here (see the module docstring)
        try:
            stamps.clear()
            stamps.append(time.perf_counter())
            try:
                invert_reference_loop(a0, labels, L, B, metric=timed, max_evaluations=C + N_EXT[n])
            except ReferenceLoopCut:
                pass
            stamps.append(time.perf_counter())
        finally:
            torch.set_num_threads(threads)

    benchmark.group = f"invert {n}x{K}x{C} L{L} B{B}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    # stamps: start, one per AUROC (C atoms, then N_EXT extensions), end
    t_atoms = stamps[C + 1] - stamps[0]
    per_ext = (stamps[-1] - stamps[C + 1]) / N_EXT[n]
    per_neuron = t_atoms + per_ext * n_ext
    ours_per_neuron = t_ours / K
    benchmark.extra_info.update(
        impl=f"reference loop ({name})", scale=per_neuron * K / (stamps[-1] - stamps[0]),
        note=(f"{evals} AUROCs per neuron; atoms {t_atoms:.1f} s ({t_atoms / C * 1e3:.2f} ms each), "
              f"{per_ext * 1e3:.2f} ms per extension ({N_EXT[n]} timed); ~{per_neuron:.0f} s per neuron, "
              f"{per_neuron / ours_per_neuron:.0f}x ours per neuron"))


@pytest.mark.parametrize("method", ["index", "bits"])
def test_formula_sums(benchmark, method):
    acts, labels, _, _ = data(50_000)
    n = acts.shape[0]
    pb = PackedBits.from_dense(np.ascontiguousarray(labels.T))
    idx = _core.RankConceptIndex(pb.words, n)
    r2 = (2 * midranks(acts[:, :1])[:, 0]).astype(np.int64)
    phi = np.random.default_rng(1).random(n) < 0.1
    words = PackedBits.from_dense(phi[None]).words[0]
    ref = _core._rank_formula_sums(r2, words, idx, "bits")
    got = _core._rank_formula_sums(r2, words, idx, method)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
    np.testing.assert_array_equal(ref["and_count"], (labels & phi[:, None]).sum(0))
    benchmark.group = f"formula sums 1 phi x {C} concepts"
    benchmark.extra_info.update(impl=f"ours ({method})", note=f"index entries {idx.entries}")
    benchmark(lambda: _core._rank_formula_sums(r2, words, idx, method))
