"""Type stubs of the compiled core ``interp_engine._core`` (pybind11).

The public faces are the classes and functions of ``interp_engine``; these are
the low-level entry points they call.
"""
from typing import Any, Optional, Tuple, Union

import numpy
import numpy as np

__version__: str

def get_num_threads() -> int:
    """Threads the core uses by default (all cores unless set_num_threads was called)."""
    ...

def set_num_threads(n: int) -> None:
    """Set the default number of threads of the core (0 = all cores)."""
    ...

def cpu_features(capped: bool = True) -> dict[str, bool]:
    """The optional instructions the kernels may use now (capped by INTERP_ENGINE_ISA), or with
    capped=False all the CPU has: popcnt, avx2, fma, avx512f, avx512bw, avx512dq, avx512vl,
    avx512vpopcntdq."""
    ...

def cpu_isa() -> str:
    """The highest INTERP_ENGINE_ISA value that changes anything on this CPU: 'avx512', 'avx2'
    or 'generic'."""
    ...

# --- quantile area (csrc/python/bind_quantile.cpp) ---------------------------
# Low-level core; the public face is interp_engine.ChannelQuantiles.

def quantile_memory_bound_bytes(k: int) -> int:
    """Bound on the bytes of one channel's sketch with capacity k, for any amount of data."""
    ...

def quantile_capacity_bound(k: int) -> int:
    """Bound on the items retained by one channel's sketch with capacity k."""
    ...

class QuantileSketch:
    """Per-channel streaming quantile sketch (KLL compactors)."""
    def __init__(self, num_channels: int, k: int, seed: int) -> None: ...
    @property
    def num_channels(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def seed(self) -> int: ...
    def update(self, x: numpy.ndarray, kind: str, skip_nan: bool, num_threads: int = 0) -> None:
        """x: (channels, a, b) view of any byte strides; kind in {"f16", "bf16", "f32", "f64"}
        (bf16 as uint16 bit patterns). Raises ValueError on NaN unless skip_nan."""
        ...
    def quantiles(self, ps: numpy.ndarray, num_threads: int = 0) -> numpy.ndarray:
        """ps: (m,) float64 in [0, 1] -> (channels, m) float64."""
        ...
    def ranks(self, values: numpy.ndarray, num_threads: int = 0) -> numpy.ndarray:
        """values: (channels, m) float64 -> (channels, m) fraction of observations <= value."""
        ...
    def merge(self, other: QuantileSketch, num_threads: int = 0) -> None: ...
    def counts(self) -> numpy.ndarray: ...        # (channels,) int64
    def nan_counts(self) -> numpy.ndarray: ...    # (channels,) int64
    def checksums(self) -> numpy.ndarray: ...     # (channels, 2) uint64: sum and xor of mix(float64 bits)
    @property
    def checksum_known(self) -> bool: ...
    def mins(self) -> numpy.ndarray: ...          # (channels,) float64, NaN where empty
    def maxs(self) -> numpy.ndarray: ...          # (channels,) float64, NaN where empty
    def memory_bytes(self) -> numpy.ndarray: ...  # (channels,) int64
    def retained(self) -> numpy.ndarray: ...      # (channels,) int64
    def get_state(self) -> dict[str, numpy.ndarray]: ...
    @staticmethod
    def from_state(num_channels: int, k: int, seed: int, items: numpy.ndarray, level_sizes: numpy.ndarray,
                   count: numpy.ndarray, min: numpy.ndarray, max: numpy.ndarray, rng_state: numpy.ndarray,
                   nan_count: numpy.ndarray, wide: numpy.ndarray,
                   checksum: Optional[numpy.ndarray] = None) -> QuantileSketch: ...

class ExactPassCore:
    """Second exact pass: counts below/at the bracket ends, keeps the values strictly inside."""
    def __init__(self, channels: int, m: int, lower: numpy.ndarray, upper: numpy.ndarray, cap: int) -> None: ...
    def update(self, x: numpy.ndarray, kind: str, skip_nan: bool, num_threads: int = 0) -> None: ...
    def select(self, ranks: numpy.ndarray, num_threads: int = 0) -> numpy.ndarray:
        """ranks: (channels, m, 2) int64 0-based order statistics -> (channels, m, 2) float64."""
        ...
    def counts(self) -> numpy.ndarray: ...
    def nan_counts(self) -> numpy.ndarray: ...
    def checksums(self) -> numpy.ndarray: ...
    def memory_bytes(self) -> int: ...
    @property
    def cap(self) -> int: ...
    def merge(self, other: ExactPassCore) -> None: ...
    def get_state(self) -> dict[str, numpy.ndarray]: ...
    @staticmethod
    def from_state(channels: int, m: int, cap: int, lower: numpy.ndarray, upper: numpy.ndarray,
                   below: numpy.ndarray, eq_lower: numpy.ndarray, eq_upper: numpy.ndarray,
                   inside_sizes: numpy.ndarray, inside: numpy.ndarray, seen: numpy.ndarray,
                   seen_nan: numpy.ndarray, seen_checksum: numpy.ndarray) -> ExactPassCore: ...

# --- iou (csrc/python/bind_iou.cpp) -------------------------------------------
class IoUTallyCore:
    """Network Dissection count accumulator (core; use interp_engine.engine.iou.IoUTally)."""
    def __init__(self, num_units: int, num_labels: int, label_category: np.ndarray, num_categories: int,
                 out_h: int, out_w: int, lite: bool) -> None: ...
    def update(self, activations: np.ndarray, kind: str, thresholds: np.ndarray,
               pixel_labels: Optional[np.ndarray], image_labels: Optional[np.ndarray],
               image_categories: Optional[np.ndarray], num_threads: int = 0) -> None: ...
    def merge(self, other: IoUTallyCore) -> None: ...
    def compatible(self, other: IoUTallyCore) -> bool: ...
    def iou(self) -> np.ndarray: ...
    def set_counts(self, intersection: np.ndarray, label_pixels: np.ndarray, unit_pixels: np.ndarray,
                   images: int, maps_per_image: int = -1) -> None: ...
    @property
    def intersection(self) -> np.ndarray: ...
    @property
    def label_pixels(self) -> np.ndarray: ...
    @property
    def unit_pixels(self) -> np.ndarray: ...
    @property
    def label_category(self) -> np.ndarray: ...
    @property
    def images(self) -> int: ...
    @property
    def num_units(self) -> int: ...
    @property
    def num_labels(self) -> int: ...
    @property
    def num_categories(self) -> int: ...
    @property
    def out_h(self) -> int: ...
    @property
    def out_w(self) -> int: ...
    @property
    def lite(self) -> bool: ...

def iou_upsample_bilinear(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray: ...
def iou_hot_bound(threshold: float) -> float: ...

# --- cover area (csrc/python/bind_cover.cpp) ---------------------------------
# Packed bitsets: bit j of a row is bit j % 64 (least significant first) of
# word j // 64; padding bits past n_bits are zero.
def pack_bits(dense: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Pack a 2-d bool/uint8 array (rows, n_bits) into uint64 words (rows, ceil(n_bits/64))."""
def pack_bits_columns(dense: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """pack_bits(dense.T) without the transposed copy: (n_bits, rows) -> (rows, ceil(n_bits/64))."""
def unpack_bits(words: np.ndarray[Any, np.dtype[np.uint64]], n_bits: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Inverse of pack_bits: bool array (rows, n_bits)."""
def popcount_rows(words: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Set bits per row (int64, length rows)."""

# A candidate family: (indptr int64[n+1], indices int32[nnz], n_elements) for CSR
# with strictly increasing indices per row, or (words uint64[n, ceil(n_bits/64)], n_bits).
_Family = Union[Tuple[np.ndarray, np.ndarray, int], Tuple[np.ndarray, int]]

def _greedy_cover(sets: _Family, weights_int: Optional[np.ndarray], weights_real: Optional[np.ndarray],
                  budget: int, target: float, num_threads: int = 0
                  ) -> Tuple[np.ndarray, np.ndarray, float]:
    """(indices int64, gains float64, covered). budget < 0: none; target inf: none.
    Use interp_engine.engine.cover.greedy_cover (validation lives there)."""
def _ratio_greedy_cover(cost_sets: _Family, gain_sets: _Family, target: float, eps_cost: float,
                        eps_gain: float, tighten: bool, num_threads: int = 0
                        ) -> Tuple[np.ndarray, int, int, int, bool]:
    """(indices int64, n_greedy, covered_cost, covered_gain, reached).
    Use interp_engine.engine.cover.ratio_greedy_cover."""
def _ratio_greedy_cover_many(problems: list[Tuple[_Family, _Family, float]], eps_cost: float,
                             eps_gain: float, tighten: bool, num_threads: int = 0
                             ) -> list[Tuple[np.ndarray, int, int, int, bool]]:
    """One (indices int64, n_greedy, covered_cost, covered_gain, reached) per problem
    (cost_sets, gain_sets, target), solved across the thread pool, each single-threaded.
    Use interp_engine.engine.cover.ratio_greedy_cover_many."""
def _sparse_to_csr(kind: str, n_rows: int, n_cols: int, a: np.ndarray, b: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Canonical CSR (indptr int64, indices int32, duplicates merged) of a COO
    ('coo': a=row int32, b=col int32) or CSC ('csc': a=indptr int64, b=indices int32) matrix."""
# needs at the top of _core.pyi: from typing import Any, Optional, Tuple, Union; import numpy as np


# --- rank area (csrc/python/bind_rank.cpp): INVERT ----------------------------
# Low-level core; the public faces are interp_engine.engine.rank and
# interp_engine.Invert (validation lives there).  Activations: (N, K) float32 or
# float64 of any strides.  Ranks are doubled (r2 = 2 * midrank, int64).

def _rank_midranks(activations: np.ndarray, num_threads: int = 0) -> np.ndarray:
    """(N, K) midranks (1-based, ties averaged) as float64; ValueError on NaN."""
def _rank_auc(activations: np.ndarray, words: np.ndarray, n_bits: int, pvalues: bool,
              num_threads: int = 0, pvalue_method: str = "auto"
              ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(auc (K, M) float64, two-sided Mann-Whitney p (K, M) float64 or None) of every
    (neuron, set); sets: words uint64 (M, ceil(N/64)). NaN where a set is empty or full.
    pvalue_method: "auto" | "asymptotic" | "exact" (as scipy.stats.mannwhitneyu)."""
def _rank_mwu_null_cdf(m: int, n: int, k: int) -> np.ndarray:
    """P(U <= j), j = 0..min(k, m n), float64: the exact null distribution of the
    Mann-Whitney U statistic for groups of m and n samples without ties."""
def _rank_mwu_pvalue(u2: int, n1: int, n0: int, tie_term: float, pvalue_method: str = "auto") -> float:
    """Two-sided Mann-Whitney p-value from 2U of the n1 group, the group sizes and the
    tie term sum(t^3 - t) over the tie groups of the N values."""

class RankConceptIndex:
    """Sample-major sparse index of packed concept labels (C rows of N bits);
    concepts set in more than half of the samples are stored by their complement."""
    def __init__(self, words: np.ndarray, n_bits: int, num_threads: int = 0) -> None: ...
    @property
    def num_concepts(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def entries(self) -> int: ...

def _rank_formula_sums(r2: np.ndarray, phi: np.ndarray, index: RankConceptIndex,
                       method: str = "index") -> dict[str, np.ndarray]:
    """For every concept c: counts and r2 sums (int64, (C,)) of phi AND c, phi OR c and
    phi AND NOT c, keys "and_count", "and_sum", "or_count", "or_sum", "andnot_count",
    "andnot_sum"; method "index" (sparse scatter) or "bits" (AND + set-bit iteration)."""
def _rank_beam_search(activations: np.ndarray, index: RankConceptIndex, length: int, beam: int,
                      min_fraction: float, max_fraction: float, negative: bool, pvalues: bool,
                      neurons: list[int], num_threads: int = 0, pvalue_method: str = "auto"
                      ) -> dict[str, np.ndarray]:
    """INVERT beam search. Keys: status (K',) int8 (0 ok, 1 constant, 2 no formula),
    count (K',) int32, lengths (K', B) int32, codes (K', B, L) int32 (2*concept+negated,
    -1 padded), ops (K', B, L) int8 (0 AND, 1 OR; -1 at position 0 and padding),
    n1 (K', B) int64, u2 (K', B) int64 (2U), auc (K', B) float64, pvalue (K', B) float64,
    evaluations (K',) int64 (formulas the reference would score by sorting on these beams)."""

# --- resize area (csrc/python/bind_resize.cpp) --------------------------------
def resize_maps(x: np.ndarray, kind: str, out_h: int, out_w: int, method: str, num_threads: int = 0,
                name: str = "x", image_unit: bool = False) -> np.ndarray:
    """(B, K, h, w) maps -> (B, K, out_h, out_w): float64 ('bilinear', 'antialias') or float32 ('pil')."""
def resize_above(x: np.ndarray, kind: str, thresholds: np.ndarray, out_h: int, out_w: int, method: str,
                 num_threads: int = 0, name: str = "x", image_unit: bool = False,
                 image_offset: int = 0) -> np.ndarray:
    """Resize and binarize against thresholds (K,): float32 (B, K, out_h, out_w) of 1.0 / 0.0."""
def resize_taps(in_size: int, out_size: int, pil: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The antialiased filter's (start, count, weights) for one axis."""
