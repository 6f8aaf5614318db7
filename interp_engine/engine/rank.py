"""Rank statistics (Python face of ``csrc/src/rank.cpp``), the kernels of INVERT.

``midranks``
    Ranks of every neuron's activations over the samples, ties averaged
    (``scipy.stats.rankdata(method="average")`` per column).
``auc``
    ``AUC(neuron, concept) = P(a_i > a_j | i in concept, j not in concept)``,
    ties counted 1/2: the Mann-Whitney U statistic divided by ``n1 * n0``,
    equal to ``sklearn.metrics.roc_auc_score(labels[:, c], activations[:, k])``.
``beam_search``
    INVERT's beam search over concept formulas (docs/algorithms.md §3), per
    neuron: the best ``beam`` formulas of at most ``length`` atoms by exact
    AUC (the kernel behind :class:`interp_engine.Invert`, which turns its
    arrays into explanations).
``mannwhitney_pvalues``
    The two-sided Mann-Whitney U p-value as ``scipy.stats.mannwhitneyu(outside,
    inside, method=method)`` (scipy 1.17): ``"asymptotic"`` is the normal
    approximation with tie and continuity corrections; ``"exact"`` the exact
    null distribution of U (not corrected for ties, as scipy: U is floored);
    ``"auto"`` (the default, scipy's default and so what the INVERT reference
    gets) is exact when the smaller group has at most 8 samples and no two of
    the neuron's N values are tied, asymptotic otherwise.

Activations are (N, K) arrays (numpy or torch; float16, bfloat16, float32 or
float64; any strides: float32/float64 are read in place). NaN activations are
rejected (ValueError naming the neuron and the sample). Labels are (N, C)
boolean arrays or a :class:`~interp_engine.PackedBits` of shape (C, N) (one
row of N bits per concept). A concept with no positive or no negative sample
gets NaN for both AUC and p-value.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .._loader import core as _core
from .checks import INT32_MAX, bool_array, check_num_threads, check_positive_int, check_real, describe, float_array
from .cover import PackedBits

__all__ = ["midranks", "auc", "mannwhitney_pvalues", "beam_search", "PVALUE_METHODS"]

PVALUE_METHODS = ("auto", "asymptotic", "exact")


def check_pvalue_method(method: Any, name: str = "method") -> str:
    """The p-value method, validated: one of :data:`PVALUE_METHODS`."""
    if not isinstance(method, str):
        raise TypeError(f"{name} must be one of 'auto', 'asymptotic', 'exact' (a str); got "
                        f"{type(method).__name__}")
    if method not in PVALUE_METHODS:
        raise ValueError(f"{name} must be 'auto', 'asymptotic' or 'exact'; got {method!r}")
    return method


def activations_array(x: Any, name: str = "activations") -> np.ndarray:
    """(N, K) float32/float64 numpy view of ``x`` (float16 and bfloat16 are
    converted to float32; no copy otherwise). Raises TypeError/ValueError."""
    arr, kind = float_array(x, name, ndim=2)
    if kind == "bf16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    elif kind == "f16":
        arr = arr.astype(np.float32)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one sample and one neuron (N, K); "
                         f"got shape {tuple(arr.shape)}")
    return arr


def packed_labels(labels: Any, n: int, name: str = "labels") -> PackedBits:
    """Concept labels as a PackedBits of shape (C, n): from a (n, C) boolean
    array (numpy or torch; 0/1 integers accepted) or a PackedBits (C, n)."""
    if isinstance(labels, PackedBits):
        pb = PackedBits(labels.words, labels.n_bits)
        if pb.n_bits != n:
            raise ValueError(f"{name}: a PackedBits must have one row of N = {n} bits per concept "
                             f"(shape (C, {n})); got shape {pb.shape}")
        return pb
    try:
        dense = bool_array(labels, name, ndim=2, shape_hint="(N samples, C concepts)")
    except TypeError:
        raise TypeError(f"{name} must be a boolean array of shape (N, C) or a PackedBits of shape "
                        f"(C, N); got {describe(labels)}") from None
    if dense.shape[0] != n:
        raise ValueError(f"{name} must have one row per sample: expected {n} rows (N of the "
                         f"activations); got shape {tuple(dense.shape)}")
    words = _core.pack_bits_columns(dense.view(np.uint8))  # no transposed copy; Ctrl-C stops it
    return PackedBits(words, n)


def _run(activations: Any, labels: Any, pvalues: bool, num_threads: Optional[int],
         method: str = "auto"):
    acts = activations_array(activations)
    pb = packed_labels(labels, acts.shape[0])
    return _core._rank_auc(acts, pb.words, pb.n_bits, pvalues, check_num_threads(num_threads),
                           method)


def midranks(activations: Any, *, num_threads: Optional[int] = None) -> np.ndarray:
    """Midranks of each column of ``activations`` (N, K): float64 (N, K), 1-based,
    ties averaged."""
    acts = activations_array(activations)
    return _core._rank_midranks(acts, check_num_threads(num_threads))


def auc(activations: Any, labels: Any, *, num_threads: Optional[int] = None) -> np.ndarray:
    """AUC of every (neuron, concept) pair: float64 (K, C).

    Args:
        activations: (N, K) float array.
        labels: (N, C) boolean array, or PackedBits (C, N).
    Returns:
        ``auc[k, c] = (R_kc - n1 (n1 + 1) / 2) / (n1 n0)`` with ``R_kc`` the
        sum of the midranks of neuron k over the samples of concept c; NaN
        where concept c has no positive or no negative sample.
    """
    return _run(activations, labels, False, num_threads)[0]


def mannwhitney_pvalues(activations: Any, labels: Any, *, method: str = "auto",
                        num_threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """AUC and two-sided Mann-Whitney U p-value of every (neuron, concept) pair.

    Args:
        activations: (N, K) float array.
        labels: (N, C) boolean array, or PackedBits (C, N).
        method: ``"auto"`` (default, as scipy), ``"asymptotic"`` or ``"exact"``:
            ``p[k, c]`` equals ``scipy.stats.mannwhitneyu(outside, inside,
            method=method).pvalue`` (float64 input) with ``inside`` the samples
            of concept c and ``outside`` the others, to 1e-12 relative (the
            exact distribution is computed in float64 probabilities, within
            1e-14 of the exact rationals; scipy's own is within ~3e-13).
            ``"auto"``: exact when ``min(n1, n0) <= 8`` and no two of neuron
            k's N values are equal, else asymptotic.  ``"exact"`` costs
            ``O(min(n1, n0) * k)`` for ``k = n1 n0 - U`` and refuses
            (ValueError) a distribution of more than 2**27 coefficients or
            2**34 multiply-adds.
    Returns:
        ``(auc, p)``, both float64 (K, C); NaN where a concept has no positive
        or no negative sample; 1.0 for a constant neuron.
    """
    method = check_pvalue_method(method)
    a, p = _run(activations, labels, True, num_threads, method)
    return a, p


def check_fraction(value: Any, name: str) -> float:
    """A fraction in [0, 1] (NaN refused), as a float."""
    v = check_real(value, name, allow_nan=True, what="a number in [0, 1]")
    if not (0.0 <= v <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return v


def check_neurons(neurons: Any, k: int, name: str = "neurons") -> list:
    """Column indices in [0, k): an integer or a sequence of integers (None: all k), as a list."""
    if neurons is None:
        return list(range(k))
    if isinstance(neurons, (int, np.integer)) and not isinstance(neurons, bool):
        neurons = [neurons]
    if isinstance(neurons, (str, bytes)) or not hasattr(neurons, "__iter__"):
        raise TypeError(f"{name} must be an integer or a sequence of integers; got {describe(neurons)}")
    idx = []
    for j in neurons:
        if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
            raise TypeError(f"{name} must be integers; got {describe(j)}")
        if not 0 <= j < k:
            raise ValueError(f"{name}: index {j} out of range [0, {k}) (K = {k} neurons)")
        idx.append(int(j))
    return idx


def beam_search(activations: Any, labels: Any, *, length: int = 3, beam: int = 10,
                min_fraction: float = 0.0, max_fraction: float = 0.5, negative: bool = False,
                neurons: Optional[Sequence[int]] = None, pvalues: bool = True,
                pvalue_method: str = "auto", num_threads: Optional[int] = None) -> Dict[str, np.ndarray]:
    """INVERT's beam search (docs/algorithms.md §3; docs/invert.md): for every
    neuron asked for, the best ``beam`` distinct sets of samples described by a
    left-to-right formula of at most ``length`` atoms (a concept or its
    negation, joined by AND / OR) whose fraction of the samples lies in
    ``[min_fraction, max_fraction]``, ranked by exact AUC (lowest first with
    ``negative=True``), ties by fewer atoms, then the smaller code sequence.

    Args:
        activations: (N, K) float array (numpy or torch; float16/bfloat16/float32/float64).
        labels: (N, C) boolean array, or PackedBits (C, N).
        length, beam: maximum atoms per formula and beam size (>= 1).
        min_fraction, max_fraction: admissible fraction of samples, in [0, 1], min <= max.
        negative: rank by increasing AUC.
        neurons: column indices (default all K), in the order wanted.
        pvalues: compute the Mann-Whitney p-value of every kept formula (else NaN).
        pvalue_method: as :func:`mannwhitney_pvalues`.
        num_threads: threads (None: all cores).

    Returns:
        A dict of arrays, one row per neuron asked for (K' of them), B = ``beam``,
        L = ``length``: ``status`` (K',) int8 (0 ok, 1 constant activations,
        2 no admissible formula); ``count`` (K',) int32, formulas in the final
        beam; ``lengths`` (K', B) int32 atoms of each; ``codes`` (K', B, L)
        int32 ``2 * concept + negated`` (-1 padded); ``ops`` (K', B, L) int8
        (0 AND, 1 OR, -1 at position 0 and padding); ``n1`` (K', B) int64
        samples inside; ``u2`` (K', B) int64 twice the Mann-Whitney U of the
        inside group; ``auc`` (K', B) float64; ``pvalue`` (K', B) float64;
        ``evaluations`` (K',) int64 candidate formulas scored.
    """
    acts = activations_array(activations)
    n, k = acts.shape
    pb = packed_labels(labels, n)
    if len(pb) < 1:
        raise ValueError("labels must have at least one concept column; got 0")
    length = check_positive_int(length, "length", minimum=1, maximum=INT32_MAX)
    beam = check_positive_int(beam, "beam", minimum=1, maximum=INT32_MAX)
    lo, hi = check_fraction(min_fraction, "min_fraction"), check_fraction(max_fraction, "max_fraction")
    if lo > hi:
        raise ValueError(f"min_fraction must be <= max_fraction; got min_fraction={min_fraction}, "
                         f"max_fraction={max_fraction}")
    if not isinstance(negative, (bool, np.bool_)):
        raise TypeError(f"negative must be a bool; got {describe(negative)}")
    if not isinstance(pvalues, (bool, np.bool_)):
        raise TypeError(f"pvalues must be a bool; got {describe(pvalues)}")
    method = check_pvalue_method(pvalue_method, "pvalue_method")
    idx = check_neurons(neurons, k)
    threads = check_num_threads(num_threads)
    index = _core.RankConceptIndex(pb.words, n, threads)
    return _core._rank_beam_search(acts, index, length, beam, lo, hi, bool(negative), bool(pvalues), idx,
                                   threads, method)
