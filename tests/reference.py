"""Slow, obvious numpy references for the tests (quantile area)."""
from __future__ import annotations

import numpy as np


def channel_values(x: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """(C, n) float64: every value of each channel, over all other axes."""
    x = np.asarray(x)
    c = np.moveaxis(x, channel_axis, 0)
    return c.reshape(c.shape[0], -1).astype(np.float64)


def empirical_cdf_bounds(values: np.ndarray, v: np.ndarray):
    """For one channel's values and candidate answers v: (F(v-), F(v)), the
    fractions strictly below and at-or-below v."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    n = s.size
    return np.searchsorted(s, v, "left") / n, np.searchsorted(s, v, "right") / n


def rank_error(values: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How far q lies outside [F(v-), F(v)] (0 when inside)."""
    lo, hi = empirical_cdf_bounds(values, v)
    q = np.asarray(q, dtype=np.float64)
    return np.maximum(np.maximum(lo - q, q - hi), 0.0)


def exact_rank(values: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Fraction of values <= v."""
    return empirical_cdf_bounds(values, v)[1]


def exact_quantile(values: np.ndarray, q) -> np.ndarray:
    """numpy's 'linear' quantile of one channel, except that where the wanted
    order statistic is exact (gamma == 0) or both neighbours are equal it is
    returned as is (numpy gives NaN there for infinite order statistics)."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    n = s.size
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    out = []
    for qq in q:
        virt = (n - 1) * qq
        if virt >= n - 1:
            out.append(s[-1])
            continue
        lo = int(np.floor(virt))
        g = virt - lo
        a, b = s[lo], s[lo + 1]
        if g == 0 or a == b:
            out.append(a)
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            d = b - a
            out.append(b - d * (1 - g) if g >= 0.5 else a + d * g)
    return np.array(out, dtype=np.float64)
