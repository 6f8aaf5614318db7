"""Peer for the benchmarks: the vectorized streaming KLL quantile sketch of
NetDissect-Lite (``util/vecquantile.py``, class ``QuantileVector``, by David
Bau et al., https://github.com/CSAILVision/NetDissect-Lite; see that
repository for its license).

This file is an independent re-implementation of that algorithm for
benchmarking, written from its description, not a copy of its code: the
same level layout (one (channels x capacity) numpy block per level, the new
lowest level getting capacity ceil(resolution * 0.67^levels), at least
``buffersize``), the same "shift" (a full level is sorted along the value
axis, a random offset 0/1 shared by all channels picks every other item, which
moves up one level), the same "expand" (a new level is inserted at the
bottom; every older level moves down a slot when it fits and is halved
otherwise), and the same read-out (weights 2^level, cumulative weight minus
half the own weight, linear interpolation with ``numpy.interp``).  The
original's uniform-subsampling mode (reached only after about 27 levels) is
left out: the benchmark streams never get there.
"""
from __future__ import annotations

import numpy as np


class VecQuantile:
    def __init__(self, depth: int, resolution: int = 24 * 1024, buffersize: int | None = None,
                 dtype=np.float32, seed: int | None = None) -> None:
        self.depth = depth
        self.resolution = resolution
        self.buffersize = buffersize if buffersize is not None else min(128, (resolution + 7) // 8)
        self.levels = [np.zeros((depth, resolution), dtype=dtype)]  # levels[i]: weight 2**i
        self.fill = [0]
        self.rng = np.random.RandomState(seed)
        self.lo = np.full(depth, np.inf)
        self.hi = np.full(depth, -np.inf)
        self.count = 0

    # -------------------------------------------------------------- adding
    def add(self, incoming: np.ndarray) -> None:
        """incoming: (n, depth) values."""
        assert incoming.ndim == 2 and incoming.shape[1] == self.depth
        self.count += incoming.shape[0]
        pos, total = 0, incoming.shape[0]
        while pos < total:
            room = self.levels[0].shape[1] - self.fill[0]
            if room == 0:
                self._shift()
                room = self.levels[0].shape[1] - self.fill[0]
            take = min(room, total - pos)
            f = self.fill[0]
            self.levels[0][:, f:f + take] = incoming[pos:pos + take].T
            self.fill[0] += take
            pos += take

    def _needed_room(self, i: int) -> int:
        # room a level must keep free: half the capacity of the level below
        return -(-self.levels[i - 1].shape[1] // 2) if i else 1

    def _extremes(self, block: np.ndarray) -> None:
        self.lo = np.minimum(self.lo, block[:, 0])
        self.hi = np.maximum(self.hi, block[:, -1])

    def _shift(self) -> None:
        i = 0
        while self.levels[i].shape[1] - self.fill[i] < self._needed_room(i):
            if i + 1 >= len(self.levels):
                self._expand()
                return
            block = self.levels[i][:, :self.fill[i]]
            block.sort(axis=1)
            if i == 0:
                self._extremes(block)
            half = block[:, self.rng.binomial(1, 0.5)::2]
            p = self.fill[i + 1]
            self.levels[i + 1][:, p:p + half.shape[1]] = half
            self.fill[i] = 0
            self.fill[i + 1] += half.shape[1]
            i += 1

    def _expand(self) -> None:
        cap = int(np.ceil(self.resolution * 0.67 ** len(self.levels)))
        assert cap >= 2, "subsampling mode is not part of this re-implementation"
        cap = max(self.buffersize, cap)
        self.levels.insert(0, np.empty((self.depth, cap), dtype=self.levels[-1].dtype))
        self.fill.insert(0, 0)
        for i in range(1, len(self.levels)):
            amount = self.fill[i]
            if amount == 0:
                continue
            p = self.fill[i - 1]
            if self.levels[i - 1].shape[1] - (amount + p) >= self._needed_room(i - 1):
                self.levels[i - 1][:, p:p + amount] = self.levels[i][:, :amount]
                self.fill[i - 1] += amount
                self.fill[i] = 0
            else:
                block = self.levels[i][:, :amount]
                block.sort(axis=1)
                if i == 1:
                    self._extremes(block)
                half = block[:, self.rng.binomial(1, 0.5)::2].copy()
                self.levels[i][:, :half.shape[1]] = half
                self.fill[i] = half.shape[1]

    # ------------------------------------------------------------- queries
    def quantiles(self, q) -> np.ndarray:
        if self.fill[0]:
            blk = np.sort(self.levels[0][:, :self.fill[0]], axis=1)
            self._extremes(blk)
        parts = [np.stack([self.lo, self.hi], axis=1).astype(self.levels[-1].dtype)]
        weights = [np.zeros(2)]
        for i, f in enumerate(self.fill):
            if f:
                parts.append(self.levels[i][:, :f])
                weights.append(np.full(f, 2.0 ** i))
        summary = np.concatenate(parts, axis=1)
        w = np.concatenate(weights).astype(np.float32)
        order = np.argsort(summary, axis=1)
        summary = np.take_along_axis(summary, order, axis=1)
        w = w[order]
        cw = np.cumsum(w, axis=-1) - w / 2
        cw /= np.sum(w, axis=-1, keepdims=True)
        q = np.atleast_1d(np.asarray(q, dtype=np.float64))
        return np.stack([np.interp(q, cw[d], summary[d]) for d in range(self.depth)])
