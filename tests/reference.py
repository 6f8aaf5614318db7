"""Slow, obvious numpy references for the tests (each area adds its own)."""
from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- cover


def naive_greedy_cover(dense, weights=None, budget=None, target=None):
    """Greedy weighted max coverage on a dense bool matrix (candidates x
    elements), recomputing every candidate's gain from scratch at each step.
    Ties: lowest index. Returns (indices, gains, covered)."""
    dense = np.asarray(dense, dtype=bool)
    n_cand, n_el = dense.shape
    w = np.ones(n_el, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    covered = np.zeros(n_el, dtype=bool)
    chosen, gains = [], []
    total = 0.0
    while True:
        if budget is not None and len(chosen) >= budget:
            break
        if target is not None and total >= target:
            break
        g = (dense & ~covered) @ w if n_cand else np.zeros(0)
        if n_cand == 0 or g.max() <= 0:
            break
        best = int(np.argmax(g))  # first maximum = lowest index
        chosen.append(best)
        gains.append(float(g[best]))
        total += float(g[best])
        covered |= dense[best]
    return np.array(chosen, dtype=np.int64), np.array(gains, dtype=np.float64), total


def naive_ratio_greedy_cover(cost, gain, target, eps_cost=1e-5, eps_gain=1e-10, tighten=True):
    """Ratio greedy of Lam et al. on dense bool matrices, from scratch each step.
    Returns (indices, covered_cost, covered_gain, reached, n_greedy)."""
    cost = np.asarray(cost, dtype=bool)
    gain = np.asarray(gain, dtype=bool)
    n = cost.shape[0]
    cc = np.zeros(cost.shape[1], dtype=bool)
    gc = np.zeros(gain.shape[1], dtype=bool)
    chosen = []
    while gc.sum() < target:
        new_gain = (gain & ~gc).sum(axis=1)
        new_cost = (cost & ~cc).sum(axis=1)
        best, best_r = -1, None
        for c in range(n):
            if new_gain[c] <= 0:
                continue
            r = (float(new_cost[c]) + eps_cost) / (float(new_gain[c]) + eps_gain)
            if best < 0 or r < best_r:
                best, best_r = c, r
        if best < 0:
            break
        chosen.append(best)
        cc |= cost[best]
        gc |= gain[best]
    reached = bool(gc.sum() >= target)
    n_greedy = len(chosen)
    if tighten:
        for c in range(n):
            if c not in chosen[:n_greedy] and not (cost[c] & ~cc).any():
                chosen.append(c)
                gc |= gain[c]
    return np.array(chosen, dtype=np.int64), int(cc.sum()), int(gc.sum()), reached, n_greedy
