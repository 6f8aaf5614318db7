"""Prediction-difference maximization: batched torch ops against the obvious
alternatives, same run (issue 7: "the accumulation and top-k belong in the core
or in batched torch ops: show which is faster").

Run (well under a minute on a 2-core machine):

    PYTHONPATH=$PWD python -m pytest benchmarks/bench_topics.py -q -p no:cacheprovider \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

Groups:
* ``pd accumulate K=128 B=1000 T=12``: the masked accumulation of one batch
  (``sums[d, t] += sum_i active[i, d] * drop[d, i, t]``, ``counts[d] +=
  sum_i active[i, d]``) for all 128 neurons of a chunk: ours (one float64
  ``torch.bmm``, ``topics.ablation._accumulate``) vs the same as ``torch.einsum``, a
  per-neuron torch loop (boolean indexing per neuron), a numpy scatter
  (``np.add.at`` over the (neuron, sample) pairs of active samples, what a
  compiled scatter kernel in the core would do) and a numpy einsum.  Each is
  checked equal to ours first.
* ``pd top-k K=4096 T=100 k=5``: the per-neuron top targets: ours (one
  vectorized stable ``np.argsort`` over all rows, ``topics.ablation._top_k``) vs
  ``torch.sort(stable=True)`` and a Python loop of ``np.argsort`` per neuron.

torch runs on one thread (see ``one_thread``).
* ``prediction_difference FashionCNN relu_fc N=500``: the whole method (``TopicInterpretation.explain``) on the
  shipped FashionCNN (random inputs; no dataset needed), 128 neurons, classes:
  ours through the Sequential split (only ``fc2`` runs on the ablated copies),
  ours through the hook route (the whole model on replicated batches of about
  2048 rows: the same convolution work as the naive route), and the
  naive route (one full forward of all samples per neuron, tests/reference.py),
  timed on 16 neurons and scaled by 128/16.  Results checked equal first.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine.methods.topics import TopicInterpretation  # noqa: E402
from interp_engine.methods.topics.ablation import _accumulate, _top_k  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import prediction_difference_reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """torch on one thread: on the shared 2-core machine, 2 torch threads next to other jobs gave 5-20x noisier
    times for small ops (oversubscription); numpy is single-threaded here anyway."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

K, B, T = 128, 1000, 12


@pytest.fixture(scope="module")
def acc_data():
    g = torch.Generator().manual_seed(0)
    drops = torch.randn(K, B, T, generator=g) * 0.01
    active = torch.rand(B, K, generator=g) < 0.4
    return drops, active


def _ours_acc(drops, active):
    sums = torch.zeros(K, T, dtype=torch.float64)
    counts = torch.zeros(K, dtype=torch.int64)
    _accumulate(sums, counts, drops, active)
    return sums, counts


def _torch_einsum_acc(drops, active):
    return (torch.einsum("br,rbt->rt", active.double(), drops.double()),
            active.sum(0))


def _loop_acc(drops, active):
    sums = torch.zeros(K, T, dtype=torch.float64)
    counts = torch.zeros(K, dtype=torch.int64)
    for d in range(K):
        m = active[:, d]
        sums[d] += drops[d][m].double().sum(0)
        counts[d] += int(m.sum())
    return sums, counts


def _scatter_acc(drops_np, active_np):
    sums = np.zeros((K, T))
    d_idx, i_idx = np.nonzero(active_np.T)  # (neuron, sample) pairs of active samples
    np.add.at(sums, d_idx, drops_np[d_idx, i_idx].astype(np.float64))
    return sums, active_np.sum(0)


def _np_einsum_acc(drops_np, active_np):
    return np.einsum("br,rbt->rt", active_np.astype(np.float64), drops_np.astype(np.float64)), active_np.sum(0)


@pytest.mark.parametrize("impl", ["ours (torch bmm)", "torch einsum", "per-neuron torch loop",
                                  "numpy scatter (np.add.at)", "numpy einsum"])
def test_accumulate(benchmark, acc_data, impl):
    drops, active = acc_data
    ref_sums, ref_counts = _ours_acc(drops, active)
    if impl.startswith("ours"):
        fn = lambda: _ours_acc(drops, active)  # noqa: E731
    elif impl.startswith("per-neuron"):
        fn = lambda: _loop_acc(drops, active)  # noqa: E731
    elif impl == "torch einsum":
        fn = lambda: _torch_einsum_acc(drops, active)  # noqa: E731
    else:
        d_np, a_np = drops.numpy(), active.numpy()
        f = _scatter_acc if "scatter" in impl else _np_einsum_acc
        fn = lambda: f(d_np, a_np)  # noqa: E731
    sums, counts = fn()
    np.testing.assert_allclose(np.asarray(sums), ref_sums.numpy(), atol=1e-9)
    assert np.array_equal(np.asarray(counts), ref_counts.numpy())
    benchmark.group = f"pd accumulate K={K} B={B} T={T}"
    benchmark.extra_info.update(impl=impl, items=K * B * T)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


KT, TT, KK = 4096, 100, 5


@pytest.mark.parametrize("impl", ["ours (numpy argsort, all rows)", "torch.sort(stable=True)",
                                  "numpy argsort per neuron"])
def test_top_k(benchmark, impl):
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(KT, TT, generator=g, dtype=torch.float64)
    scores[::7] = float("nan")  # never-active neurons
    idx, _ = _top_k(scores, KK)
    s_np = scores.numpy()

    def loop():
        out = np.full((KT, KK), -1, np.int64)
        for d in range(KT):
            if not np.isnan(s_np[d]).all():
                out[d] = np.argsort(-s_np[d], kind="stable")[:KK]
        return out

    def torch_sort():
        filled = torch.nan_to_num(scores, nan=-float("inf"))
        out = torch.sort(filled, dim=1, descending=True, stable=True)[1][:, :KK].clone()
        out[torch.isnan(scores).all(1)] = -1
        return out

    if impl.startswith("ours"):
        fn = lambda: _top_k(scores, KK)[0]  # noqa: E731
    elif impl.startswith("torch"):
        fn = torch_sort
    else:
        fn = loop
    assert np.array_equal(np.asarray(fn()), idx)
    benchmark.group = f"pd top-k K={KT} T={TT} k={KK}"
    benchmark.extra_info.update(impl=impl, items=KT * TT)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


N_IMG, N_NAIVE = 500, 16


class _Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.fixture(scope="module")
def fashion():
    from interp_engine.models.fashion_cnn import fashion_cnn

    model = fashion_cnn()
    x = torch.randn(N_IMG, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    ref, _ = prediction_difference_reference(model, model.relu_fc, x,
                                             lambda out, f: torch.softmax(out.float(), 1), list(range(N_NAIVE)))
    return model, x, ref


@pytest.mark.parametrize("impl", ["ours (Sequential split)", "ours (hook route)", "naive (1 forward per neuron)"])
def test_prediction_difference_fashion_cnn(benchmark, fashion, impl):
    model, x, ref = fashion
    scale = 1.0
    if impl == "ours (Sequential split)":
        fn = lambda: TopicInterpretation(model, "relu_fc", targets="classes",  # noqa: E731
                                         batch_size=N_IMG).explain(x)
    elif impl == "ours (hook route)":
        wrapped = _Wrapped(model)
        fn = lambda: TopicInterpretation(wrapped, "inner.relu_fc", targets="classes",  # noqa: E731
                                         batch_size=N_IMG).explain(x)
    else:
        fn = lambda: prediction_difference_reference(  # noqa: E731
            model, model.relu_fc, x, lambda out, f: torch.softmax(out.float(), 1), list(range(N_NAIVE)))
        scale = 128 / N_NAIVE
    res = fn()
    scores = res[0] if isinstance(res, tuple) else res.scores[:N_NAIVE]
    np.testing.assert_allclose(scores, ref, atol=1e-6)
    benchmark.group = f"prediction_difference FashionCNN relu_fc N={N_IMG}"
    benchmark.extra_info.update(impl=impl, scale=scale, items=N_IMG * 128)
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
