"""Throughput of interp_engine's ChannelQuantiles against its peers, on two
activation-shaped float32 streams (ReLU-like values):

  * (N, 512, 7, 7)   -- e.g. ResNet layer4   (N = 1000 -> 25.1 M values)
  * (N, 64, 56, 56)  -- e.g. ResNet layer1   (N = 128  -> 25.7 M values)

Peers, in the same group and run: Apache DataSketches
``vector_of_kll_floats_sketches`` (k=200, its default) and NetDissect-Lite's
vectorized KLL (``benchmarks/peers/netdissect_quantile.py``, a
re-implementation).  Peers are fed channels-last (n, C) blocks, the layout
they need; the transpose is part of their time.  Each sketch's answer is
checked (rank error of q in {0.5, 0.9, 0.995} within its bound) before it is
timed.

    PYTHONPATH=$PWD python -m pytest benchmarks/bench_quantiles.py --benchmark-only -q
    PYTHONPATH=$PWD python benchmarks/bench_quantiles.py      # markdown table
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from interp_engine.engine.quantiles import ChannelQuantiles

try:
    import datasketches
except ImportError:  # pragma: no cover
    datasketches = None

from peers.netdissect_quantile import VecQuantile

SHAPES = {"512x7x7": (1000, 512, 7, 7, 100), "64x56x56": (128, 64, 56, 56, 16)}  # N, C, H, W, batch
CHECK_Q = np.array([0.5, 0.9, 0.995])
_cache: dict = {}


def stream(name: str):
    """(N, C, H, W) float32 ReLU-like activations, generated once."""
    if name not in _cache:
        N, C, H, W, B = SHAPES[name]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        x += rng.standard_normal((1, C, 1, 1), dtype=np.float32)  # per-channel offsets
        np.maximum(x, 0, out=x)
        _cache[name] = (x, B)
    return _cache[name]


def batches(name: str):
    x, B = stream(name)
    return [x[i:i + B] for i in range(0, x.shape[0], B)]


def run_ours(name: str):
    cq = ChannelQuantiles(stream(name)[0].shape[1], seed=0)
    for b in batches(name):
        cq.update(b)
    return cq.quantile(CHECK_Q)


def run_datasketches(name: str):
    C = stream(name)[0].shape[1]
    sk = datasketches.vector_of_kll_floats_sketches(200, C)
    for b in batches(name):
        sk.update(np.ascontiguousarray(np.moveaxis(b, 1, -1).reshape(-1, C)))
    return np.asarray(sk.get_quantiles(CHECK_Q))


def run_netdissect(name: str):
    C = stream(name)[0].shape[1]
    vq = VecQuantile(C, seed=1)
    for b in batches(name):
        vq.add(np.moveaxis(b, 1, -1).reshape(-1, C))
    return vq.quantiles(CHECK_Q)


RUNNERS = {"interp_engine": (run_ours, 1e-4), "datasketches_kll_k200": (run_datasketches, 0.02),
           "netdissect_vecquantile": (run_netdissect, 0.002)}


def check_answer(name: str, est: np.ndarray, bound: float, channels=8) -> float:
    x, _ = stream(name)
    worst = 0.0
    for c in np.linspace(0, x.shape[1] - 1, channels).astype(int):
        s = np.sort(x[:, c].ravel())
        lo = np.searchsorted(s, est[c], "left") / s.size
        hi = np.searchsorted(s, est[c], "right") / s.size
        worst = max(worst, float(np.max(np.maximum(lo - CHECK_Q, CHECK_Q - hi))))
    assert worst <= bound, f"rank error {worst} above {bound}"
    return worst


@pytest.mark.parametrize("who", list(RUNNERS))
@pytest.mark.parametrize("name", list(SHAPES))
def test_throughput(benchmark, name, who):
    if who.startswith("datasketches") and datasketches is None:
        pytest.skip("datasketches not installed")
    fn, bound = RUNNERS[who]
    check_answer(name, fn(name), bound)  # right answer before timing
    benchmark.group = name
    benchmark.pedantic(fn, args=(name,), rounds=2, iterations=1)
    values = stream(name)[0].size
    benchmark.extra_info["values_per_s"] = values / benchmark.stats.stats.min
    print(f"\n{name} {who}: {values / benchmark.stats.stats.min / 1e6:.1f} M values/s")


def main(rounds: int = 5) -> None:
    """Markdown table; the sketches run interleaved, best of ``rounds`` each
    (the machine is shared, so the minimum is the least disturbed run)."""
    print("| stream | sketch | M values/s | interp_engine / it | max rank error (q=.5,.9,.995) |")
    print("|---|---|---:|---:|---:|")
    for name in SHAPES:
        values = stream(name)[0].size
        runners = {who: v for who, v in RUNNERS.items()
                   if not (who.startswith("datasketches") and datasketches is None)}
        errs = {who: check_answer(name, fn(name), bound) for who, (fn, bound) in runners.items()}
        best = {who: float("inf") for who in runners}
        for _ in range(rounds):
            for who, (fn, _) in runners.items():
                best[who] = min(best[who], _timed(fn, name))
        rates = {who: values / t for who, t in best.items()}
        for who, r in rates.items():
            print(f"| {name} (N={SHAPES[name][0]}) | {who} | {r / 1e6:.1f} | "
                  f"{rates['interp_engine'] / r:.2f} | {errs[who]:.1e} |")


def _timed(fn, name):
    t = time.perf_counter()
    fn(name)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
