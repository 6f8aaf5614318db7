"""The exact second pass of the quantiles, :class:`ExactQuantilePass`: it
keeps, per channel and q, the values inside a rank bracket that
:meth:`ChannelQuantiles.exact_pass <interp_engine.ChannelQuantiles.exact_pass>`
planned from the sketch, and selects the order statistics numpy's 'linear'
method interpolates.  Public as ``interp_engine.engine.quantiles.ExactQuantilePass``
(and at the top level); this module is its private home.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from .._loader import core as _core
from ._quantile_common import _INT64_MAX, _batch_view, _check_q, _PickledByState, _state_int
from .checks import check_num_threads, describe
from .states import check_declared_length, check_digest, state_digests
from .sync import synchronized, synchronized_pair

if TYPE_CHECKING:
    from .quantiles import ChannelQuantiles

__all__ = ["ExactQuantilePass"]

_EXACT_FORMAT = "interp_engine.ExactQuantilePass"
_EXACT_VERSION = 1
_EXACT_CORE_FIELDS = ("lower", "upper", "below", "eq_lower", "eq_upper", "inside_sizes", "inside", "seen",
                      "seen_nan", "seen_checksum")
_EXACT_FIELDS = ("format", "version", "num_channels", "q", "scalar", "skip_nan", "cap", "sketch_count",
                 "sketch_nan_count", "sketch_checksum", "sketch_checksum_known") + _EXACT_CORE_FIELDS


def _exact_fields(d: Dict[str, Any]):
    """The fields of an ExactQuantilePass state that its digest covers, in order."""
    return [(key, d[key]) for key in _EXACT_FIELDS]


def _linear_ranks(n: np.ndarray, q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """numpy's 'linear' method: for counts n (C,) and q (m,), the 0-based
    neighbours floor((n-1) q) and +1 as (C, m, 2) int64, and gamma (C, m)."""
    nf = (n - 1).astype(np.float64)[:, None]
    virt = nf * q[None, :]
    prev = np.floor(virt)
    gamma = virt - prev
    above = virt >= nf
    prev_i = np.where(above, nf, prev).astype(np.int64)
    next_i = np.where(above, nf, prev + 1).astype(np.int64)
    gamma = np.where(above, 0.0, gamma)
    return np.ascontiguousarray(np.stack([prev_i, next_i], axis=-1)), gamma


def _numpy_lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's linear-interpolation formula (``numpy.quantile``, method
    'linear'), except that where ``t == 0`` or ``a == b`` the order statistic
    itself is returned (numpy gives NaN there when it is infinite)."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = b - a
        r = a + diff * t
        hi = t >= 0.5
        r = np.where(hi, b - diff * (1 - t), r)
    return np.where((t == 0) | (a == b), a, r)


class ExactQuantilePass(_PickledByState):
    """Second pass of the exact mode (made by :meth:`ChannelQuantiles.exact_pass`).

    ``update(x, channel_axis=1)`` with every batch of the first pass again
    (any order or batching), then ``result()``: float64 (C,) or (C, len(q)),
    equal to ``np.quantile(values_c, q)`` per channel (numpy's 'linear'
    method; where numpy would give NaN from ``inf * 0`` because the wanted
    order statistic is exact (gamma == 0) or both neighbours are equal, the
    order statistic itself is returned).

    Both passes must see the same multiset of values per channel (any order
    and batching, any float dtype holding the same values).  ``result()``
    checks it: the counts of values and of skipped NaN, and an
    order-independent checksum of the values' float64 bit patterns (sum and
    xor of a 64-bit mix of each value) kept by both passes.  A change of one
    value is always detected; any other change of the multiset (values
    changed, swapped between channels, replaced, dropped and added) except
    with probability about 2**-64.  -0.0 and +0.0 count as different values;
    NaN skipped with ``nan="skip"`` are not in the checksum (only counted).
    On a mismatch ``result()`` raises ValueError; if the second pass's data
    leave a bracket, ``update()`` or ``result()`` raise RuntimeError.
    """

    def __init__(self, sketch: ChannelQuantiles, q: np.ndarray, scalar: bool, margin: float, bound: float) -> None:
        self._C = sketch.num_channels
        self._q = q
        self._scalar = scalar
        self._skip_nan = sketch._skip_nan
        self._threads = sketch._threads
        n = sketch.count.astype(np.int64)
        self._n = n
        # what the first pass saw, to compare with this pass at result()
        with sketch._lock:
            self._nan_n = sketch._sk.nan_counts()
            self._checksum = sketch._sk.checksums() if sketch._sk.checksum_known else None
        m = q.size
        self._ranks, self._gamma = _linear_ranks(n, q)
        prev_i, next_i = self._ranks[..., 0], self._ranks[..., 1]
        nd = n.astype(np.float64)[:, None]
        p_lo = prev_i / nd - margin
        p_hi = (next_i + 1) / nd + margin
        # brackets from the sketch (p <= 0 -> exact min, p >= 1 -> exact max)
        ps = np.unique(np.concatenate([p_lo.ravel(), p_hi.ravel()]).clip(0.0, 1.0))
        with sketch._lock:
            est = sketch._sk.quantiles(np.ascontiguousarray(ps), self._threads)  # (C, len(ps))
        lo_idx = np.searchsorted(ps, p_lo.clip(0.0, 1.0))
        hi_idx = np.searchsorted(ps, p_hi.clip(0.0, 1.0))
        rows = np.arange(self._C)[:, None]
        lower = est[rows, lo_idx]
        upper = est[rows, hi_idx]
        cap = int(math.ceil((2 * margin + 2 * bound) * float(n.max()))) + 64
        self._cap = cap
        self._pass = _core.ExactPassCore(self._C, m, np.ascontiguousarray(lower.ravel()),
                                         np.ascontiguousarray(upper.ravel()), cap)
        self._lower, self._upper = lower, upper
        self._init_lock()

    @property
    def q(self) -> np.ndarray:
        return self._q.copy()

    # ------------------------------------------------------------ merge / state
    @synchronized_pair
    def merge(self, other: "ExactQuantilePass") -> "ExactQuantilePass":
        """Add what ``other`` saw: two passes planned from the same sketch (same
        q, brackets and first-pass counts), each fed part of the data, merge into
        one that saw both parts.  Never the pass itself; a count that would exceed
        2**63 - 1, or more values inside a bracket than its cap, is refused and
        neither pass changes.  Returns self."""
        if not isinstance(other, ExactQuantilePass):
            raise TypeError(f"other must be an ExactQuantilePass; got {type(other).__name__}")
        if other is self or other._pass is self._pass:
            raise ValueError("other must be another exact pass: merging a pass with itself would count the "
                             "same data twice")
        same = (self._C == other._C and self._scalar == other._scalar and self._skip_nan == other._skip_nan
                and np.array_equal(self._q, other._q) and np.array_equal(self._n, other._n)
                and np.array_equal(self._nan_n, other._nan_n)
                and (self._checksum is None) == (other._checksum is None)
                and (self._checksum is None or np.array_equal(self._checksum, other._checksum)))
        if not same:
            raise ValueError("other must be planned from the same sketch (same num_channels, q, nan policy "
                             "and first-pass counts and checksums)")
        first, second = sorted((self, other), key=id)  # fixed order: no deadlock
        with first._lock, second._lock:
            self._pass.merge(other._pass)
        return self

    @synchronized
    def state_dict(self) -> Dict[str, Any]:
        """Plain dict of numpy arrays and ints, with a digest (see :meth:`from_state_dict`)."""
        with self._lock:
            st = self._pass.get_state()
        known = self._checksum is not None
        d: Dict[str, Any] = {
            "format": _EXACT_FORMAT, "version": _EXACT_VERSION, "num_channels": self._C,
            "q": self._q.copy(), "scalar": int(self._scalar), "skip_nan": int(self._skip_nan),
            "cap": int(self._pass.cap), "sketch_count": self._n.copy(), "sketch_nan_count": self._nan_n.copy(),
            "sketch_checksum": self._checksum.copy() if known else np.zeros((self._C, 2), np.uint64),
            "sketch_checksum_known": int(known),
        }
        d.update(st)
        d["digest"], d["field_digests"] = state_digests(_exact_fields(d))
        return d

    @classmethod
    def from_state_dict(cls, d: Dict[str, Any], *, num_threads: Optional[int] = None) -> "ExactQuantilePass":
        """Rebuild a pass from :meth:`state_dict`; ValueError naming the field
        when a field is malformed or contradicts the others (bracket ends
        ordered, values inside strictly inside their bracket and at most
        ``cap`` per bracket, the counts of a bracket not above the values seen,
        sizes adding up), or when the digest does not match them."""
        if not isinstance(d, dict):
            raise ValueError(f"state_dict must be a dict; got {type(d).__name__}")
        if d.get("format") != _EXACT_FORMAT:
            raise ValueError(f"state_dict['format'] must be {_EXACT_FORMAT!r}; got {d.get('format')!r}")
        missing = [key for key in _EXACT_FIELDS if key not in d]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")

        def as_int(key: str, minimum: int = 0, maximum: int = _INT64_MAX) -> int:
            return _state_int(d, key, minimum, maximum)

        def arr(key: str, kind: str, shape=None) -> np.ndarray:
            v = d[key]
            if not isinstance(v, np.ndarray) or v.dtype.kind not in kind or (shape is not None and v.shape != shape):
                want = f" of shape {shape}" if shape is not None else ""
                raise ValueError(f"state_dict[{key!r}] must be a numpy array of kind {kind!r}{want}; "
                                 f"got {describe(v)}")
            if kind == "iu" and v.dtype.kind == "u" and v.size and int(v.max()) > _INT64_MAX:
                raise ValueError(f"state_dict[{key!r}] must hold integers <= 2**63 - 1; got {int(v.max())}")
            return v

        if as_int("version") != _EXACT_VERSION:
            raise ValueError(f"state_dict['version'] must be {_EXACT_VERSION} (the version this release reads); "
                             f"got {d['version']!r}")
        C = as_int("num_channels", 1)
        try:
            q, _ = _check_q(d["q"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state_dict['q']: {exc}") from None
        scalar, skip, cap = as_int("scalar", 0, 1), as_int("skip_nan", 0, 1), as_int("cap")
        if scalar and q.size != 1:
            raise ValueError(f"state_dict['scalar'] is 1 but 'q' holds {q.size} values")
        m = q.size
        # a declared size that none of the arrays has is the field that changed (else the array is named)
        check_declared_length("state_dict", "num_channels", C,
                              {key: d[key] for key in _EXACT_FIELDS if key not in ("q", "inside")}, what="channels")
        check_declared_length("state_dict", "q", m, {key: d[key] for key in ("lower", "upper", "below", "eq_lower",
                                                                          "eq_upper", "inside_sizes")},
                              axis=1, what="quantiles", shown=f"(holding {m} values)")
        n = arr("sketch_count", "iu", (C,)).astype(np.int64)
        if (n < 1).any():
            raise ValueError("state_dict['sketch_count'] must be >= 1 for every channel")
        nan_n = arr("sketch_nan_count", "iu", (C,)).astype(np.int64)
        if (nan_n < 0).any():
            raise ValueError("state_dict['sketch_nan_count'] must be >= 0")
        known = as_int("sketch_checksum_known", 0, 1)
        cks = arr("sketch_checksum", "u", (C, 2)).astype(np.uint64)
        conv = {key: d[key] for key in _EXACT_FIELDS}
        conv.update(version=_EXACT_VERSION, num_channels=C, q=q, scalar=scalar, skip_nan=skip, cap=cap,
                    sketch_count=n, sketch_nan_count=nan_n, sketch_checksum=cks, sketch_checksum_known=known)
        for key in ("lower", "upper"):
            conv[key] = arr(key, "f", (C, m)).astype(np.float64)
        for key in ("below", "eq_lower", "eq_upper", "inside_sizes"):
            conv[key] = arr(key, "iu", (C, m)).astype(np.int64)
        conv["inside"] = arr("inside", "f").astype(np.float64)
        conv["seen"] = arr("seen", "iu", (C,)).astype(np.int64)
        conv["seen_nan"] = arr("seen_nan", "iu", (C,)).astype(np.int64)
        conv["seen_checksum"] = arr("seen_checksum", "u", (C, 2)).astype(np.uint64)
        try:
            core = _core.ExactPassCore.from_state(
                C, m, cap, *(np.ascontiguousarray(conv[key]).ravel() if conv[key].ndim == 2 and key != "seen_checksum"
                             else conv[key] for key in _EXACT_CORE_FIELDS))
        except (ValueError, TypeError, MemoryError) as exc:
            if isinstance(exc, MemoryError):
                raise
            raise ValueError(f"malformed state_dict: {exc}") from exc
        check_digest(d, _exact_fields(conv), "state_dict")
        obj = cls.__new__(cls)
        obj._C, obj._q, obj._scalar, obj._skip_nan = C, q, bool(scalar), bool(skip)
        obj._threads = check_num_threads(num_threads)
        obj._n, obj._nan_n = n, nan_n
        obj._checksum = cks if known else None
        obj._ranks, obj._gamma = _linear_ranks(n, q)
        obj._cap = cap
        obj._pass = core
        obj._lower, obj._upper = conv["lower"], conv["upper"]
        obj._init_lock()
        return obj

    @property
    def verifies_values(self) -> bool:
        """Whether :meth:`result` compares the values of both passes (their
        checksums), not only their counts: False only for a sketch restored
        from a version 1 state (written before the checksum existed) or
        merged with one."""
        return self._checksum is not None

    def _check_same_data(self) -> None:
        seen, nan_seen = self._pass.counts(), self._pass.nan_counts()
        sums = self._pass.checksums()
        for what, a, b in (("values", seen, self._n), ("NaN", nan_seen, self._nan_n)):
            if not np.array_equal(a, b):
                c = int(np.flatnonzero(a != b)[0])
                raise ValueError(f"the exact pass saw {int(a[c])} {what} of channel {c} but the sketch saw "
                                 f"{int(b[c])}: feed exactly the same data to both passes")
        if self._checksum is not None and not np.array_equal(sums, self._checksum):
            c = int(np.flatnonzero((sums != self._checksum).any(axis=1))[0])
            raise ValueError(f"the exact pass saw other values than the sketch in channel {c} (the same "
                             f"number, {int(seen[c])}, but the checksums of the values differ): feed exactly "
                             f"the same data to both passes")

    @property
    @synchronized
    def count(self) -> np.ndarray:
        """(C,) int64: observations seen by this pass so far."""
        return self._pass.counts()

    @property
    @synchronized
    def memory_bytes(self) -> int:
        return int(self._pass.memory_bytes())

    @synchronized
    def update(self, x: Any, channel_axis: int = 1) -> "ExactQuantilePass":
        """Feed a batch of the same stream again (same rules as
        :meth:`ChannelQuantiles.update`).  Returns self."""
        view, kind = _batch_view(x, self._C, channel_axis)
        if view.size == 0:
            return self
        self._pass.update(view, kind, self._skip_nan, self._threads)
        return self

    @synchronized
    def result(self) -> np.ndarray:
        """Exact quantiles: float64 (C,) for a float q, (C, len(q)) otherwise.

        Raises ValueError when this pass did not see the same data as the
        sketch: another number of values (or of NaN skipped) in a channel, or
        another multiset of values (the per-channel checksums differ; see
        :class:`ExactQuantilePass`)."""
        self._check_same_data()
        stats = self._pass.select(self._ranks, self._threads)  # (C, m, 2)
        out = _numpy_lerp(stats[..., 0], stats[..., 1], self._gamma)
        return out[:, 0] if self._scalar else out
