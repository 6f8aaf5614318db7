"""Representative interpretations (issue 6): time per seed, split into boundary
sampling (model work) and the cover solve.

Run (about 1 minute on a 2-core machine):

    PYTHONPATH=$PWD python -m pytest benchmarks/bench_represent.py -q -p no:cacheprovider \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

or as a script printing the split:

    PYTHONPATH=$PWD python benchmarks/bench_represent.py

Workload: N = 1,000 reference images of the bundled concept dataset (64 x 64,
rendered in memory, seed 0), the bundled ConceptCNN, psi = conv4 (128 x 8 x 8 =
8,192 values), head = ``OutputGroup(model, "scene").head``: ``classify`` restricted to the 4 scene logits (a
single-label task: spatial mean and max of conv4, then linear; piecewise
linear), S = 100 seeds (reference images 0..99), pool 50, delta 0.

Groups:
* ``represent N1000 S100 P50``: ``explain`` of the 100 seeds.
  ``extra_info`` (numbers only): seconds per seed of sampling (batched
  bisection and gradients: the model work), configuration (hyperplane values
  of the reference images and packing) and cover (the parallel ratio greedy
  in the core), and ``cover_fraction`` = cover / sampling (the issue requires
  < 0.05).
* ``ratio cover 100 problems``: the 100 seeds' cover problems solved by
  ``ratio_greedy_cover_many`` (ours, one call, across the thread pool) and by a
  Python loop of ``ratio_greedy_cover`` calls (baseline); the answers are
  checked equal before timing.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from interp_engine.data.concepts import render_concepts
from interp_engine.engine.cover import ratio_greedy_cover, ratio_greedy_cover_many
from interp_engine.methods.representative import EPS_COST, EPS_GAIN, RepresentativeInterpretation
from interp_engine.models.concept_cnn import ConceptCNN, OutputGroup, load_default_model

N, S, POOL = 1000, 100, 50
pytestmark = pytest.mark.filterwarnings("ignore")


def build():
    """(fitted RepresentativeInterpretation, seconds of fit)."""
    torch.manual_seed(0)
    model = OutputGroup(load_default_model(), "scene").eval()
    x = ConceptCNN.preprocess(render_concepts(N, seed=0, image_size=64).images)
    t = time.perf_counter()
    ri = RepresentativeInterpretation(model, "model.conv4", head=model.head, pool=POOL, delta=0, seed=0).fit(x)
    return ri, time.perf_counter() - t


def split(ri, regions):
    t = ri.last_timings
    out = {k + "_s_per_seed": v / len(regions) for k, v in t.items()}
    out["cover_fraction"] = t["cover"] / t["sampling"]
    out["mean_boundaries"] = float(np.mean([r.n_boundaries for r in regions]))
    out["mean_members"] = float(np.mean([r.n_members for r in regions]))
    out["reached_fraction"] = float(np.mean([r.reached for r in regions]))
    return out


@pytest.fixture(scope="module")
def fitted():
    return build()


@pytest.fixture(scope="module")
def regions(fitted):
    ri, _ = fitted
    return ri.explain(range(S))


def test_represent_ours(benchmark, fitted, regions):
    ri, fit_s = fitted
    # correct before timed: the batched explain equals explain of one seed; the cover equals one call
    (one,) = ri.explain(3)
    np.testing.assert_array_equal(one.members, regions[3].members)
    r = ratio_greedy_cover(one.cost_sets, one.gain_sets, target=one.target)
    np.testing.assert_array_equal(r.indices, one.chosen)
    benchmark.group = f"represent N{N} S{S} P{POOL}"
    info = {}

    def run():
        info.update(split(ri, ri.explain(range(S))))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(info, fit_s=fit_s, items=S)


def _problems(regions):
    return [(r.cost_sets, r.gain_sets, r.target) for r in regions]


def test_cover_many_ours(benchmark, regions):
    problems = _problems(regions)
    benchmark.group = f"ratio cover {S} problems"
    benchmark.extra_info.update(items=S)
    benchmark(lambda: ratio_greedy_cover_many(problems, eps_cost=EPS_COST, eps_gain=EPS_GAIN))


def test_cover_loop_baseline(benchmark, regions):
    problems = _problems(regions)
    many = ratio_greedy_cover_many(problems)
    loop = [ratio_greedy_cover(c, g, target=t) for c, g, t in problems]
    for a, b in zip(many, loop):
        np.testing.assert_array_equal(a.indices, b.indices)
    benchmark.group = f"ratio cover {S} problems"
    benchmark.extra_info.update(items=S)
    benchmark(lambda: [ratio_greedy_cover(c, g, target=t) for c, g, t in problems])


if __name__ == "__main__":
    ri, fit_s = build()
    print(f"fit: {N} images in {fit_s:.2f} s; class counts {np.bincount(ri.predictions).tolist()}")
    ri.explain(range(2))  # warm-up
    t = time.perf_counter()
    regs = ri.explain(range(S))
    total = time.perf_counter() - t
    sp = split(ri, regs)
    print(f"explain of {S} seeds, pool {POOL}: {total:.2f} s ({total / S * 1e3:.1f} ms per seed)")
    for k in ("sampling", "configuration", "cover"):
        print(f"  {k:14s} {sp[k + '_s_per_seed'] * 1e3:9.3f} ms per seed")
    print(f"  cover / sampling = {sp['cover_fraction']:.4f} (issue: < 0.05)")
    print(f"  boundaries per region {sp['mean_boundaries']:.1f}, members {sp['mean_members']:.1f}, "
          f"target reached {sp['reached_fraction']:.0%}")
