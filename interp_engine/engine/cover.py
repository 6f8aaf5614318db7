"""Greedy cover kernels and packed bitsets (Python face of ``csrc/src/cover.cpp``).

``greedy_cover``
    Greedy weighted maximum coverage / set cover: repeatedly take the candidate
    with the largest weighted marginal gain (ties: lowest index).
``ratio_greedy_cover``
    Submodular-cost submodular cover with coverage cost and gain, the greedy
    rule of Lam et al. (ICCV 2021, representative interpretations): minimize
    ``(new cost + eps_cost) / (new gain + eps_gain)`` until the covered gain
    reaches ``target``, then an optional tighten pass.
``ratio_greedy_cover_many``
    Many independent ``ratio_greedy_cover`` problems solved across the thread
    pool in the core (each single-threaded; results identical to one call
    per problem).
``PackedBits``
    Rows of packed bits (uint64 words). Bit ``j`` of a row is bit ``j % 64``
    (least significant first) of word ``j // 64``; bits past ``n_bits`` in the
    last word are zero.

Candidate families (``sets``, ``cost_sets``, ``gain_sets``) are matrices of
shape (candidates, elements) in any of these formats:

* a scipy.sparse matrix or array, any format: entry ``(i, j)`` stored with a
  value != 0 means candidate ``i`` contains element ``j`` (duplicates are
  summed first, explicit zeros ignored);
* a dense 2-d boolean numpy array or torch tensor (integers holding only 0/1
  are accepted);
* a :class:`PackedBits`.
"""
from __future__ import annotations

import math
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np

from .._loader import core as _core
from .checks import bool_array, check_num_threads, check_positive_int, check_real, describe, to_numpy

__all__ = ["CoverResult", "RatioCoverResult", "PackedBits", "pack_bits", "greedy_cover",
           "ratio_greedy_cover", "ratio_greedy_cover_many"]

_INT_EXACT_LIMIT = 2.0 ** 53  # integer weights whose total stays below this are summed exactly


class CoverResult(NamedTuple):
    """Result of :func:`greedy_cover`.

    indices: int64 array, the chosen candidates in the order chosen.
    gains:   float64 array, the marginal (weighted) gain of each choice.
    covered: float, the total covered weight (the sum of ``gains``).
    """

    indices: np.ndarray
    gains: np.ndarray
    covered: float


class RatioCoverResult(NamedTuple):
    """Result of :func:`ratio_greedy_cover`.

    indices:      int64 array: the greedy choices in order, then the candidates
                  added by the tighten pass (ascending index).
    covered_cost: number of cost elements covered by all of ``indices``.
    covered_gain: number of gain elements covered by all of ``indices``.
    reached:      whether the greedy phase reached ``covered gain >= target``.
    n_greedy:     how many leading entries of ``indices`` the greedy phase chose.
    """

    indices: np.ndarray
    covered_cost: int
    covered_gain: int
    reached: bool
    n_greedy: int


class PackedBits:
    """Rows of packed bits: a C-contiguous uint64 array ``words`` of shape
    ``(rows, ceil(n_bits / 64))`` and the number of bits per row ``n_bits``.

    Bit order: bit ``j`` of row ``i`` is ``(words[i, j // 64] >> (j % 64)) & 1``
    (least significant bit first). Padding bits (positions >= ``n_bits`` in the
    last word) must be zero.
    """

    __slots__ = ("words", "n_bits")

    def __init__(self, words: Any, n_bits: int):
        n_bits = check_positive_int(n_bits, "n_bits", minimum=0)
        arr, _ = to_numpy(words, "words")
        if arr.dtype not in (np.dtype(np.uint64), np.dtype(np.int64)):
            raise TypeError(f"words must have dtype uint64 (or int64); got {describe(words)}")
        n_words = (n_bits + 63) // 64
        if arr.ndim != 2 or arr.shape[1] != n_words:
            raise ValueError(f"words must have shape (rows, ceil(n_bits / 64)) = (rows, {n_words}) for "
                             f"n_bits={n_bits}; got shape {tuple(arr.shape)}")
        arr = np.ascontiguousarray(arr).view(np.uint64)
        if n_bits % 64 and arr.shape[0]:
            pad = ~np.uint64((1 << (n_bits % 64)) - 1)
            if np.any(arr[:, -1] & pad):
                raise ValueError(f"words: padding bits past n_bits={n_bits} in the last word must be zero")
        self.words = arr
        self.n_bits = n_bits

    @classmethod
    def from_dense(cls, dense: Any) -> "PackedBits":
        """Pack a 2-d boolean array (numpy or torch; 0/1 integers accepted) of
        shape (rows, n_bits)."""
        arr = bool_array(dense, "dense")
        if arr.ndim != 2:
            raise ValueError(f"dense must be 2-dimensional (rows x bits); got shape {tuple(arr.shape)}")
        words = _core.pack_bits(arr.view(np.uint8))
        return cls(words, arr.shape[1])

    def to_dense(self) -> np.ndarray:
        """The bool array of shape (rows, n_bits)."""
        return _core.unpack_bits(self.words, self.n_bits)

    def popcount(self) -> np.ndarray:
        """Number of set bits of each row (int64 array of length rows)."""
        return _core.popcount_rows(self.words)

    @property
    def shape(self) -> Tuple[int, int]:
        return (int(self.words.shape[0]), self.n_bits)

    def __len__(self) -> int:
        return int(self.words.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PackedBits):
            return NotImplemented
        return self.n_bits == other.n_bits and np.array_equal(self.words, other.words)

    __hash__ = None  # mutable container

    def __repr__(self) -> str:
        return f"PackedBits(rows={len(self)}, n_bits={self.n_bits})"


def pack_bits(dense: Any) -> PackedBits:
    """Same as :meth:`PackedBits.from_dense`."""
    return PackedBits.from_dense(dense)


# ----------------------------------------------------------------------------- boundary


def _is_scipy_sparse(x: Any) -> bool:
    mod = type(x).__module__
    if not mod.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return sp.issparse(x)


def _family(x: Any, name: str) -> Tuple[tuple, int, int]:
    """Convert a candidate family to the core's tuple; returns (tuple, n_candidates, n_elements)."""
    if isinstance(x, PackedBits):
        try:  # re-check (words may have been reassigned); no copy
            x = PackedBits(x.words, x.n_bits)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: a PackedBits whose {exc}") from None
        return (x.words, x.n_bits), len(x), x.n_bits
    if _is_scipy_sparse(x):
        return _sparse_family(x, name)
    if isinstance(x, (np.ndarray,)) or type(x).__module__.startswith("torch"):
        arr = x
    elif isinstance(x, (list, tuple)):
        arr = x
    else:
        raise TypeError(f"{name} must be a scipy.sparse matrix, a 2-d boolean numpy array or torch "
                        f"tensor, or PackedBits; got {describe(x)}")
    try:
        dense = bool_array(arr, name)
    except TypeError:
        got = describe(x)
        if isinstance(x, (list, tuple)):
            try:
                got += f" of dtype {np.asarray(x).dtype}"
            except Exception:  # ragged nested lists
                got += " (ragged)"
        raise TypeError(f"{name} must be a scipy.sparse matrix, a 2-d boolean numpy array or torch "
                        f"tensor, or PackedBits; got {got}") from None
    if dense.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (candidates x elements); got shape {tuple(dense.shape)}")
    words = _core.pack_bits(dense.view(np.uint8))
    return (words, dense.shape[1]), dense.shape[0], dense.shape[1]


def _sparse_family(x: Any, name: str) -> Tuple[tuple, int, int]:
    """scipy.sparse -> canonical CSR arrays. Canonical CSR is used in place;
    COO, CSC and non-canonical CSR are converted by the core (a counting sort,
    much faster than scipy's tocsr + sum_duplicates); other formats go
    through scipy's tocoo first. A stored entry with a non-zero value makes its
    position a member; duplicates of a position count once."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (candidates x elements); got shape {x.shape}")
    n_cand, n_el = (int(s) for s in x.shape)
    limit = np.iinfo(np.int32).max
    if n_el > limit or n_cand > limit:
        raise ValueError(f"{name}: at most 2**31 - 1 candidates and elements are supported; got shape {x.shape}")
    fmt = x.format
    if fmt not in ("csr", "csc", "coo"):
        try:
            x, fmt = x.tocoo(), "coo"
        except Exception as exc:  # a corrupted matrix of another format
            raise ValueError(f"{name}: cannot read the {fmt.upper()} matrix of shape {x.shape} ({exc})") from None
    _check_sparse_arrays(x, fmt, n_cand, n_el, name)
    if np.count_nonzero(x.data) != x.data.size:
        x = x.copy()
        x.eliminate_zeros()
    if fmt == "csr" and x.has_canonical_format:
        indptr = np.asarray(x.indptr, dtype=np.int64)
        indices = np.asarray(x.indices, dtype=np.int32)
    elif fmt == "csc":
        indptr, indices = _core._sparse_to_csr("csc", n_cand, n_el, np.asarray(x.indptr, dtype=np.int64),
                                               np.asarray(x.indices, dtype=np.int32))
    else:
        if fmt == "coo":
            row, col = x.row, x.col
        else:  # non-canonical CSR (unsorted or duplicate indices)
            row = np.repeat(np.arange(n_cand, dtype=np.int32), np.diff(x.indptr))
            col = x.indices
        indptr, indices = _core._sparse_to_csr("coo", n_cand, n_el, np.asarray(row, dtype=np.int32),
                                               np.asarray(col, dtype=np.int32))
    return (indptr, indices, n_el), n_cand, n_el


def _index_array(v: Any, name: str, what: str) -> np.ndarray:
    arr = np.asarray(v)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: {what} must be a 1-d integer array; got {describe(arr)}")
    return arr


def _check_sparse_arrays(x: Any, fmt: str, n_cand: int, n_el: int, name: str) -> None:
    """The arrays of a scipy COO, CSR or CSC matrix must describe its shape:
    scipy checks them when it builds a matrix, not when its attributes are
    assigned later; the core must never read past them."""
    data = np.asarray(x.data)
    if data.ndim != 1:
        raise ValueError(f"{name}: data must be 1-d; got shape {data.shape}")
    if data.dtype.kind not in "biufc":
        raise TypeError(f"{name}: the stored values must be numbers or bools; got dtype {data.dtype}")
    if fmt == "coo":
        coords = getattr(x, "coords", None)
        row, col = (coords if coords is not None else (x.row, x.col))[:2]
        row = _index_array(row, name, "row")
        col = _index_array(col, name, "col")
        if not (row.shape == col.shape == data.shape):
            raise ValueError(f"{name}: COO row, col and data must have the same length; got "
                             f"{row.shape[0]}, {col.shape[0]} and {data.shape[0]}")
        for arr, what, n in ((row, "row", n_cand), (col, "col", n_el)):
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
                bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
                raise ValueError(f"{name}: COO {what} indices must lie in [0, {n}) for shape {x.shape}; got {bad}")
        return
    n_major, n_minor = (n_cand, n_el) if fmt == "csr" else (n_el, n_cand)
    indptr = _index_array(x.indptr, name, "indptr")
    indices = _index_array(x.indices, name, "indices")
    label = fmt.upper()
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"{name}: a {label} matrix of shape {x.shape} needs indptr of length {n_major + 1}; "
                         f"got length {indptr.shape[0]}")
    if int(indptr[0]) != 0:
        raise ValueError(f"{name}: {label} indptr must start at 0; got {int(indptr[0])}")
    if n_major and np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: {label} indptr must be non-decreasing; it decreases after position "
                         f"{int(np.flatnonzero(np.diff(indptr) < 0)[0])}")
    if int(indptr[-1]) != indices.shape[0] or indices.shape != data.shape:
        raise ValueError(f"{name}: {label} indptr[-1], len(indices) and len(data) must agree; got "
                         f"{int(indptr[-1])}, {indices.shape[0]} and {data.shape[0]}")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_minor):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        raise ValueError(f"{name}: {label} indices must lie in [0, {n_minor}) for shape {x.shape}; got {bad}")


def _weights(weights: Any, n_elements: int):
    """Returns (weights_int, weights_real): at most one is not None."""
    if weights is None:
        return None, None
    w, kind = to_numpy(weights, "weights")
    if kind == "bf16":
        w = (w.astype(np.uint32) << 16).view(np.float32)  # bfloat16 bits -> float32
    if w.dtype.kind not in "iuf":
        raise TypeError(f"weights must be a real numeric array (integers or floats); got {describe(weights)}")
    if w.ndim != 1 or w.shape[0] != n_elements:
        raise ValueError(f"weights must have shape ({n_elements},) (one per element); got shape {tuple(w.shape)}")
    if w.dtype.kind == "f":
        if np.isnan(w).any():
            raise ValueError(f"weights must not contain NaN; got NaN at index {int(np.flatnonzero(np.isnan(w))[0])}")
        if np.isinf(w).any():
            i = int(np.flatnonzero(np.isinf(w))[0])
            raise ValueError(f"weights must be finite; got {w[i]} at index {i}")
    if w.size and w.min() < 0:
        raise ValueError(f"weights must be non-negative; got a minimum of {w.min()} at index {int(np.argmin(w))}")
    wf = np.asarray(w, dtype=np.float64)
    total = float(wf.sum()) if wf.size else 0.0
    if total < _INT_EXACT_LIMIT and (w.dtype.kind in "iu" or bool(np.all(wf == np.floor(wf)))):
        return np.ascontiguousarray(wf.astype(np.int64)), None
    return None, np.ascontiguousarray(wf)


def _real_scalar(value: Any, name: str, *, allow_none: bool = False) -> Optional[float]:
    return check_real(value, name, minimum=0, allow_none=allow_none)


# ----------------------------------------------------------------------------- kernels


def greedy_cover(sets: Any, *, weights: Any = None, budget: Optional[int] = None,
                 target: Optional[float] = None, num_threads: Optional[int] = None) -> CoverResult:
    """Greedy weighted maximum coverage / set cover.

    Args:
        sets: candidates x elements membership matrix (scipy.sparse, dense bool
            numpy/torch, or :class:`PackedBits`).
        weights: per-element non-negative finite weights, shape (elements,);
            default 1 for every element.
        budget: at most this many candidates (int >= 0); default no limit.
        target: stop once the covered weight is >= target (>= 0); default:
            until everything coverable is covered.
        num_threads: threads for the initial pass (default: all cores).

    Each step takes the candidate with the largest marginal gain (the weight
    of its elements not yet covered); ties go to the lowest index. The run
    stops when ``budget`` candidates were taken, when the covered weight
    reaches ``target``, or when no candidate has a positive gain.

    Exactness: without weights, or with integer-valued weights whose total is
    below 2**53, gains are exact integers. With other float weights each gain
    is computed afresh as a sequential float64 sum over the candidate's
    uncovered elements in ascending element order, and the choice is the exact
    argmax (lowest index on ties) of those computed values; an exact-arithmetic
    greedy can choose differently only when two gains differ by less than the
    rounding of such a sum (about ``k * 2**-53`` relative for k terms).

    Returns:
        :class:`CoverResult` ``(indices int64, gains float64, covered float)``.
    """
    fam, n_cand, n_el = _family(sets, "sets")
    w_int, w_real = _weights(weights, n_el)
    if budget is None:
        b = -1
    else:
        b = check_positive_int(budget, "budget", minimum=0)
    t = _real_scalar(target, "target", allow_none=True)
    t = math.inf if t is None else t
    nt = check_num_threads(num_threads)
    idx, gains, covered = _core._greedy_cover(fam, w_int, w_real, b, t, nt)
    return CoverResult(idx, gains, float(covered))


def ratio_greedy_cover(cost_sets: Any, gain_sets: Any, *, target: float, eps_cost: float = 1e-5,
                       eps_gain: float = 1e-10, tighten: bool = True,
                       num_threads: Optional[int] = None) -> RatioCoverResult:
    """Ratio greedy for submodular-cost submodular cover (Lam et al., ICCV 2021).

    Args:
        cost_sets: candidates x cost elements (e.g. boundaries x same-class
            images they exclude); any accepted format.
        gain_sets: candidates x gain elements (e.g. boundaries x other-class
            images they exclude); same number of candidates; element count may
            differ from cost_sets.
        target: stop once the number of covered gain elements is >= target.
        eps_cost, eps_gain: the non-negative constants of the ratio.
        tighten: after the greedy phase, append every candidate not chosen whose
            cost elements are all already covered.
        num_threads: threads for the per-step evaluation (default: all cores).

    Greedy phase: each step considers the candidates that would cover at
    least one new gain element and takes the one minimizing
    ``(new cost + eps_cost) / (new gain + eps_gain)`` (float64, ties: lowest
    index). Candidates adding no gain are never taken (they cannot make
    progress); if none adds gain before the target is met, the target is
    unreachable: the phase stops and ``reached`` is False.

    Tighten (runs whether or not the target was reached): every candidate not
    chosen whose cost set is covered by the chosen ones is appended in
    ascending index order. Adding such a candidate never changes the covered
    cost, so the set appended does not depend on the order.

    Returns:
        :class:`RatioCoverResult` ``(indices, covered_cost, covered_gain,
        reached, n_greedy)``.
    """
    cfam, gfam, t = _ratio_problem(cost_sets, gain_sets, target, "")
    ec, eg = _ratio_eps(eps_cost, eps_gain)
    if not isinstance(tighten, (bool, np.bool_)):
        raise TypeError(f"tighten must be a bool; got {type(tighten).__name__}")
    nt = check_num_threads(num_threads)
    idx, n_greedy, cc, cg, reached = _core._ratio_greedy_cover(cfam, gfam, t, ec, eg, bool(tighten), nt)
    return RatioCoverResult(idx, int(cc), int(cg), bool(reached), int(n_greedy))


def _ratio_problem(cost_sets: Any, gain_sets: Any, target: Any, where: str) -> Tuple[tuple, tuple, float]:
    """Validate one ratio-cover problem; ``where`` prefixes argument names
    (``"problems[3]: "``) in error messages."""
    cfam, n_c, _ = _family(cost_sets, f"{where}cost_sets")
    gfam, n_g, _ = _family(gain_sets, f"{where}gain_sets")
    if n_c != n_g:
        raise ValueError(f"{where}cost_sets and gain_sets must have the same number of candidates "
                         f"(rows); got {n_c} and {n_g}")
    return cfam, gfam, _real_scalar(target, f"{where}target")


def _ratio_eps(eps_cost: Any, eps_gain: Any) -> Tuple[float, float]:
    ec = _real_scalar(eps_cost, "eps_cost")
    eg = _real_scalar(eps_gain, "eps_gain")
    if math.isinf(ec) or math.isinf(eg):
        raise ValueError(f"eps_cost and eps_gain must be finite; got {eps_cost} and {eps_gain}")
    return ec, eg


def ratio_greedy_cover_many(problems: Any, *, eps_cost: float = 1e-5, eps_gain: float = 1e-10,
                            tighten: bool = True, num_threads: Optional[int] = None,
                            ) -> List[RatioCoverResult]:
    """Solve many independent :func:`ratio_greedy_cover` problems in the core,
    spread over the thread pool.

    Args:
        problems: a sequence (list, tuple) of ``(cost_sets, gain_sets, target)``
            triples, each as in :func:`ratio_greedy_cover` (families in any
            accepted format; element counts and candidate counts may differ
            between problems).  May be empty.
        eps_cost, eps_gain, tighten: shared by every problem (as in
            :func:`ratio_greedy_cover`).
        num_threads: threads over which the problems are spread (dynamic
            schedule; default: all cores).  Each problem is solved on one
            thread.

    Every problem is validated before any is solved (errors name
    ``problems[i]``).  The results are identical to calling
    ``ratio_greedy_cover(cost_sets, gain_sets, target=target, ...)`` on each
    problem in turn, whatever ``num_threads``: the greedy is deterministic and
    a problem's answer does not depend on the thread count.

    Returns:
        A list of :class:`RatioCoverResult`, one per problem, in order.
    """
    if not isinstance(problems, (list, tuple)):
        raise TypeError(f"problems must be a list or tuple of (cost_sets, gain_sets, target) triples; "
                        f"got {describe(problems)}")
    core_problems = []
    for i, p in enumerate(problems):
        if not isinstance(p, (list, tuple)) or len(p) != 3:
            raise TypeError(f"problems[{i}] must be a (cost_sets, gain_sets, target) triple; got "
                            f"{describe(p)}" + (f" of length {len(p)}" if isinstance(p, (list, tuple))
                                                else ""))
        core_problems.append(_ratio_problem(p[0], p[1], p[2], f"problems[{i}]: "))
    ec, eg = _ratio_eps(eps_cost, eps_gain)
    if not isinstance(tighten, (bool, np.bool_)):
        raise TypeError(f"tighten must be a bool; got {type(tighten).__name__}")
    nt = check_num_threads(num_threads)
    out = _core._ratio_greedy_cover_many(core_problems, ec, eg, bool(tighten), nt)
    return [RatioCoverResult(idx, int(cc), int(cg), bool(reached), int(n_greedy))
            for idx, n_greedy, cc, cg, reached in out]
