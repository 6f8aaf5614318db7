"""One long call of every long kernel of the core, on inputs that cost little
memory, for the interrupt and interpreter-exit tests (tests/core/test_threads.py,
tests/core/test_interrupts.py).

Each call would run for many seconds uninterrupted, even on a fast machine;
the inputs stay small in memory: large read-only arrays of zeros are mappings
of the kernel's zero page (nothing allocated), and varied activations are
overlapping windows of one short random buffer.  ``make(name)`` returns a
function making the call.  POSIX only (mmap).
"""
from __future__ import annotations

import mmap
from typing import Callable, Dict

import numpy as np

import interp_engine as ie
from interp_engine.engine import cover, rank
from interp_engine.engine.iou import IoUTally


def zeros_mapping(shape, dtype) -> np.ndarray:
    """A read-only array of zeros of any size backed by no memory."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    return np.frombuffer(m, dtype=dtype).reshape(shape)


def windows(n: int, k: int, seed: int = 0) -> np.ndarray:
    """(n, k) float32 view whose column j is buf[j : j + n] of one random buffer."""
    buf = np.random.default_rng(seed).standard_normal(n + k).astype(np.float32)
    return np.lib.stride_tricks.as_strided(buf, shape=(n, k), strides=(4, 4), writeable=False)


def sliding_sets(n: int, width: int):
    """CSR (n, n + width - 1): candidate c holds elements c .. c + width - 1."""
    import scipy.sparse as sp

    idx = (np.arange(n, dtype=np.int32)[:, None] + np.arange(width, dtype=np.int32)).ravel()
    ptr = np.arange(n + 1, dtype=np.int64) * width
    return sp.csr_matrix((np.ones(idx.size, dtype=np.uint8), idx, ptr), shape=(n, n + width - 1))


def _cq_prescan_dense():
    # nan="raise": the NaN pre-scan of 3.2e10 float16 values (one dense block)
    x = zeros_mapping((4096, 16, 1 << 19), np.float16)
    cq = ie.ChannelQuantiles(16)
    return lambda: cq.update(x)


def _cq_prescan_strided():
    # nan="raise": the pre-scan of a strided batch (every row repeats), 1e11 values
    row = np.zeros((1, 16, 1 << 16), dtype=np.float32)
    x = np.broadcast_to(row, (1 << 20, 16, 1 << 16))[:, :, ::2]
    cq = ie.ChannelQuantiles(16)
    return lambda: cq.update(x)


def _cq_update():
    x = zeros_mapping((4096, 16, 1 << 19), np.float16)
    cq = ie.ChannelQuantiles(16, nan="skip")
    return lambda: cq.update(x)


def _exact_update():
    x = zeros_mapping((4096, 16, 1 << 19), np.float16)
    cq = ie.ChannelQuantiles(16)
    cq.update(np.random.default_rng(0).standard_normal((64, 16, 256)).astype(np.float16))
    plan = cq.exact_pass([0.5, 0.99])
    return lambda: plan.update(x)


def _iou_update():
    acts = zeros_mapping((200_000, 64, 14, 14), np.float32)  # 10 GB of zeros
    tally = IoUTally(64, 3, [0, 0, 1], 2, output_size=(112, 112))
    thr = np.full(64, -np.inf)  # every pixel fires: the full work per image
    labels = np.ones((acts.shape[0], 1), dtype=np.int64)
    return lambda: tally.update(acts, thr, image_labels=labels)


def _midranks():
    a = windows(1_000_000, 32)  # the (N, K) float64 result: 256 MB
    return lambda: rank.midranks(a)


def _mannwhitney():
    a = windows(2_000_000, 64)
    labels = zeros_mapping((2_000_000, 64), np.bool_)
    return lambda: rank.mannwhitney_pvalues(a, labels)


def _invert():
    from interp_engine.methods.invert import Invert

    a = windows(2_000_000, 64)
    labels = zeros_mapping((2_000_000, 8), np.bool_)
    return lambda: Invert(length=2, beam=5).explain(a, labels)


def _greedy_cover():
    s = sliding_sets(1_000_000, 16)  # about 62,500 steps, each scanning 1e6 gains
    return lambda: cover.greedy_cover(s)


def _ratio_greedy_cover():
    s = sliding_sets(300_000, 16)
    return lambda: cover.ratio_greedy_cover(s, s, target=float(s.shape[1]))


MAKERS: Dict[str, Callable[[], Callable[[], object]]] = {
    "ChannelQuantiles.update(nan='raise') pre-scan, dense": _cq_prescan_dense,
    "ChannelQuantiles.update(nan='raise') pre-scan, strided": _cq_prescan_strided,
    "ChannelQuantiles.update(nan='skip')": _cq_update,
    "ExactQuantilePass.update": _exact_update,
    "IoUTally.update": _iou_update,
    "midranks": _midranks,
    "mannwhitney_pvalues": _mannwhitney,
    "Invert.explain": _invert,
    "greedy_cover": _greedy_cover,
    "ratio_greedy_cover": _ratio_greedy_cover,
}


def make(name: str) -> Callable[[], object]:
    return MAKERS[name]()
