"""Streaming per-channel quantiles: :class:`ChannelQuantiles` and its exact
second pass :class:`ExactQuantilePass`.

The compiled core (``csrc/src/quantile_*.cpp``) keeps, per channel, a KLL-style
sketch of randomized compactors; this module validates inputs, presents
numpy/torch batches to the core as strided views (no copy), and implements
the exact mode's bookkeeping (brackets and numpy's linear interpolation).
See ``docs/quantiles.md`` for the error bounds and memory.

This module is the public home of both classes and holds the sketch; the
exact pass lives in ``_quantiles_exact.py`` and what both share (the batch
view, the check of ``q``, pickling through the state) in
``_quantile_common.py``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .._loader import core as _core
from ._quantile_common import _INT64_MAX, QLike, _batch_view, _check_q, _PickledByState, _state_int
from ._quantiles_exact import ExactQuantilePass
from .checks import check_int, check_num_threads, check_positive_int, check_real, describe, to_numpy
from .states import check_declared_length, check_digest, state_digests
from .sync import synchronized, synchronized_pair

__all__ = ["ChannelQuantiles", "ExactQuantilePass", "DEFAULT_K", "RANK_ERROR_BOUND"]

#: Default capacity parameter (items of the top level of each channel's sketch).
DEFAULT_K = 25000
#: Documented rank error bound of the default sketch, for every q (see
#: docs/quantiles.md for its derivation and measurements).
RANK_ERROR_BOUND = 1e-4
_MIN_K = 64
_MAX_K = 1 << 30  # the core's limit (capacities stay far inside 32-bit ints)
_MAX_LEVELS = 61
_STATE_VERSION = 2  # 2: adds the per-channel checksum of the values (version 1 states load without it)


def rank_error_bound(k: int) -> float:
    """Documented bound on the rank error (as a fraction of the count) of a
    sketch with capacity ``k``: ``2.5 / k`` (1e-4 for the default k=25000).

    Measured: the largest error over the adversarial test streams is about
    ``1.4 / k`` and its standard deviation about ``0.4 / k`` (so the bound is
    ~6 standard deviations)."""
    return 2.5 / k


def memory_bound_bytes(k: int) -> int:
    """Upper bound of :attr:`ChannelQuantiles.memory_bytes` per channel, for
    any number of observations: the retained items (float64) are fewer than
    the total level capacity ``T <= 3k + clamp(2k/3, 2048, 16384) + 8*61``; with vector slack the
    allocation stays below ``4 T`` doubles plus fixed overhead (2.9 MB at the
    default k).  Measured use is much lower: about 0.43 MB per channel for
    float16/bfloat16/float32 data (items kept as float32), about 0.8 MB once a
    channel has seen float64 data (items kept as float64)."""
    return int(_core.quantile_memory_bound_bytes(int(k)))


def _check_nan_policy(nan: Any) -> bool:
    if not isinstance(nan, str) or nan not in ("raise", "skip"):
        raise (ValueError if isinstance(nan, str) else TypeError)(
            f"nan must be 'raise' or 'skip'; got {repr(nan) if isinstance(nan, str) else describe(nan)}")
    return nan == "skip"


_QUANTILE_FIELDS = ("version", "num_channels", "k", "seed", "skip_nan", "items", "level_sizes", "count", "min",
                    "max", "rng_state", "nan_count", "wide", "checksum", "checksum_known")


def _quantile_fields(d: Dict[str, Any]):
    """The fields of a ChannelQuantiles state that its digest covers, in order."""
    return [(key, d[key]) for key in _QUANTILE_FIELDS if key in d]


class ChannelQuantiles(_PickledByState):
    """Streaming quantiles of every channel of a stream of activations.

    Every value of channel ``c`` (over the batch axis and all spatial axes)
    is one observation of channel ``c``.  Bounded memory per channel
    (:func:`memory_bound_bytes`), mergeable, serializable, deterministic
    for a given seed whatever the thread count.

    Parameters
    ----------
    num_channels : int
        Number of channels C.
    k : int, keyword-only
        Accuracy/memory parameter: capacity of the top level of each channel's
        KLL sketch (default 25000).  Rank error bound ``2.5 / k`` (1e-4 at the
        default) for every q.  Memory per channel: about 4 bytes x (3k + 16384)
        retained items for 16/32-bit data (~0.43 MB allocated at the default k), twice
        that after float64 data; always <= ``memory_bound_bytes(k)``.
    seed : int, keyword-only
        Seed of the per-channel random streams (splitmix64 of (seed, channel)).
    nan : {"raise", "skip"}, keyword-only
        "raise" (default): a batch holding NaN raises ValueError and leaves the
        sketch unchanged.  "skip": NaN are ignored and counted in
        :attr:`nan_count`.
    num_threads : int or None, keyword-only
        Threads of the core (None or 0 = all cores).  Results do not depend on it.

    Examples
    --------
    >>> cq = ChannelQuantiles(64, seed=0)
    >>> for batch in batches:           # (N, 64, H, W) numpy or torch
    ...     cq.update(batch)
    >>> thresholds = cq.quantile(0.995)  # (64,) float64
    >>> plan = cq.exact_pass(0.995)      # exact: one more pass over the same data
    >>> for batch in batches:
    ...     plan.update(batch)
    >>> exact = plan.result()            # == np.quantile(values_c, 0.995) per channel
    """

    def __init__(self, num_channels: int, *, k: int = DEFAULT_K, seed: int = 0, nan: str = "raise",
                 num_threads: Optional[int] = None) -> None:
        self._C = check_positive_int(num_channels, "num_channels")
        self._k = check_positive_int(k, "k", minimum=_MIN_K, maximum=_MAX_K)
        self._seed = check_int(seed, "seed", maximum=None) % (1 << 64)
        self._skip_nan = _check_nan_policy(nan)
        self._threads = check_num_threads(num_threads)
        self._sk = _core.QuantileSketch(self._C, self._k, self._seed)
        self._init_lock()  # calls from several threads run one at a time (see sync.py)

    # ------------------------------------------------------------ properties
    @property
    def num_channels(self) -> int:
        return self._C

    @property
    def k(self) -> int:
        return self._k

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def nan(self) -> str:
        return "skip" if self._skip_nan else "raise"

    @property
    def num_threads(self) -> int:
        return self._threads

    @num_threads.setter
    def num_threads(self, value: Optional[int]) -> None:
        self._threads = check_num_threads(value)

    @property
    def rank_error_bound(self) -> float:
        """Documented bound on ``|estimated rank - true rank| / count``."""
        return rank_error_bound(self._k)

    @property
    @synchronized
    def count(self) -> np.ndarray:
        """(C,) int64: observations per channel (NaN skipped are not counted)."""
        return self._sk.counts()

    @property
    @synchronized
    def nan_count(self) -> np.ndarray:
        """(C,) int64: NaN skipped per channel (always 0 with nan='raise')."""
        return self._sk.nan_counts()

    @property
    @synchronized
    def min(self) -> np.ndarray:
        """(C,) float64 exact minimum per channel; ValueError if a channel is empty."""
        self._check_nonempty("min")
        return self._sk.mins()

    @property
    @synchronized
    def max(self) -> np.ndarray:
        """(C,) float64 exact maximum per channel; ValueError if a channel is empty."""
        self._check_nonempty("max")
        return self._sk.maxs()

    @property
    @synchronized
    def memory_bytes(self) -> np.ndarray:
        """(C,) int64: bytes held by each channel's sketch (allocated)."""
        return self._sk.memory_bytes()

    @property
    @synchronized
    def nbytes(self) -> int:
        """Total bytes held by the sketches of all channels."""
        return int(self._sk.memory_bytes().sum())

    @property
    def memory_bound_bytes(self) -> int:
        """Bound on :attr:`memory_bytes` of one channel, for any amount of data."""
        return memory_bound_bytes(self._k)

    def _check_nonempty(self, what: str) -> None:
        cnt = self._sk.counts()
        if (cnt == 0).any():
            c = int(np.flatnonzero(cnt == 0)[0])
            raise ValueError(f"cannot compute {what}: channel {c} has no observations yet "
                             f"(call update() with data first)")

    # ---------------------------------------------------------------- update
    @synchronized
    def update(self, x: Any, channel_axis: int = 1) -> "ChannelQuantiles":
        """Add a batch.

        x : numpy array or torch tensor of shape (N, C, *spatial) (C at
            ``channel_axis``, which may be negative; >= 2 dimensions), dtype
            float16, bfloat16, float32 or float64; any strides.  +-inf are
            ordinary values; NaN raise ValueError (nan='raise') or are skipped.
            An empty batch is a no-op.  Returns self.  (A KeyboardInterrupt
            during a call can leave the batch added to some channels only.)
        """
        view, kind = _batch_view(x, self._C, channel_axis)
        if view.size == 0:
            return self
        self._sk.update(view, kind, self._skip_nan, self._threads)
        return self

    # --------------------------------------------------------------- queries
    @synchronized
    def quantile(self, q: QLike) -> np.ndarray:
        """Approximate quantiles per channel.

        q : float or 1-D sequence of floats in [0, 1].
        Returns float64 array (C,) for a float q, (C, len(q)) otherwise.
        The value v returned for q satisfies F(v-) - e <= q <= F(v) + e with
        e = :attr:`rank_error_bound` (F: the channel's empirical CDF); q=0 and
        q=1 give the exact min and max.  ValueError if a channel is empty.
        """
        qa, scalar = _check_q(q)
        self._check_nonempty("quantile")
        out = self._sk.quantiles(qa, self._threads)
        return out[:, 0] if scalar else out

    @synchronized
    def rank(self, values: Any) -> np.ndarray:
        """Estimated fraction of observations <= value, per channel.

        values : (C,) or (C, m) array of floats (not NaN).
        Returns float64 of the same shape; error <= :attr:`rank_error_bound`.
        """
        arr, kind = to_numpy(values, "values")
        if kind == "bf16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif arr.dtype.kind not in "fiu":
            raise TypeError(f"values must be a real (float or integer) array; got {describe(values)}")
        arr = arr.astype(np.float64)
        if arr.ndim not in (1, 2) or arr.shape[0] != self._C:
            raise ValueError(f"values must have shape ({self._C},) or ({self._C}, m); got shape {arr.shape}")
        if np.isnan(arr).any():
            raise ValueError(f"values must not contain NaN; got NaN at index "
                             f"{tuple(int(i) for i in np.argwhere(np.isnan(arr))[0])}")
        self._check_nonempty("rank")
        two = arr if arr.ndim == 2 else arr[:, None]
        out = self._sk.ranks(np.ascontiguousarray(two), self._threads)
        return out if arr.ndim == 2 else out[:, 0]

    # ----------------------------------------------------------------- merge
    @synchronized_pair
    def merge(self, other: "ChannelQuantiles") -> "ChannelQuantiles":
        """Fold ``other`` (fed other data) into this sketch; returns self.
        Needs the same num_channels and k (ValueError otherwise)."""
        if not isinstance(other, ChannelQuantiles):
            raise TypeError(f"other must be a ChannelQuantiles; got {type(other).__name__}")
        if other._C != self._C:
            raise ValueError(f"cannot merge: other has {other._C} channels, this sketch has {self._C} "
                             f"(other.num_channels must equal num_channels)")
        if other._k != self._k:
            raise ValueError(f"cannot merge: other has k={other._k}, this sketch has k={self._k} "
                             f"(other.k must equal k)")
        if other is self:
            raise ValueError("cannot merge a sketch with itself")
        self._sk.merge(other._sk, self._threads)
        return self

    # ------------------------------------------------------------ exact mode
    @synchronized
    def exact_pass(self, q: QLike, *, margin: Optional[float] = None) -> "ExactQuantilePass":
        """Plan the exact computation of quantiles ``q`` with one more pass.

        Feed the same data again (same batches, any order and batching) to the
        returned :class:`ExactQuantilePass` with ``update``, then call
        ``result()``: it equals ``np.quantile(values_c, q)`` (method 'linear')
        per channel c.  The plan keeps, per channel and q, only the values
        inside a rank bracket of half-width ``margin`` (default twice the
        rank error bound) around the wanted order statistics: at most
        ``(2 * margin + 2 * bound) * count + 2`` values.
        """
        qa, scalar = _check_q(q)
        self._check_nonempty("exact_pass")
        bound = self.rank_error_bound
        if margin is None:
            margin = 2.0 * bound
        margin = check_real(margin, "margin", minimum=0.0, maximum=1.0, what="a float in [0, 1]")
        return ExactQuantilePass(self, qa, scalar, margin, bound)

    # ------------------------------------------------------------- state/IO
    @synchronized
    def state_dict(self) -> Dict[str, Any]:
        """Plain dict of numpy arrays and ints (no pickled objects)."""
        st = self._sk.get_state()
        d: Dict[str, Any] = {
            "version": _STATE_VERSION,
            "num_channels": self._C,
            "k": self._k,
            "seed": self._seed,
            "skip_nan": int(self._skip_nan),
        }
        d.update({key: (int(v) if key == "checksum_known" else np.asarray(v)) for key, v in st.items()})
        d["digest"], d["field_digests"] = state_digests(_quantile_fields(d))
        return d

    @classmethod
    def from_state_dict(cls, d: Dict[str, Any], *, num_threads: Optional[int] = None) -> "ChannelQuantiles":
        """Rebuild a sketch from :meth:`state_dict`; malformed input -> ValueError.

        Every field is checked against the others before the sketch is built:
        types, shapes and ranges (integers in [0, 2**63 - 1]: a uint64 above
        that is refused, not wrapped; ``wide`` and ``skip_nan`` 0 or 1; ``k``
        in [64, 2**30]); per channel, the level sizes add up to ``items`` (in
        checked arithmetic), the items weigh exactly ``count`` (an item of
        level h weighs 2**h, without wrapping at 2**64), lie in [min, max],
        are sorted above level 0 and are float32 values where ``wide`` is 0;
        they are fewer than the capacity of their levels for this ``k``, and
        a sketch with L >= 2 levels has seen at least ``k * 2**(L-2)`` values
        (what every k-sketch satisfies; a changed ``k`` usually breaks one of
        them).  Finally ``digest`` (added by :meth:`state_dict`) must be the
        digest of all the other fields: a state changed after it was written
        (a ``k`` raised within what the levels allow, an edited item) is
        refused, naming the changed fields when ``field_digests`` (also added
        by :meth:`state_dict`) is there; a state without ``digest`` is
        checked by its fields alone.  A ``num_channels`` that none of the
        per-channel arrays has is named as the wrong field.
        Version 1 states (without the checksum of the values) load; the exact
        pass of such a sketch can then compare only counts.
        """
        if not isinstance(d, dict):
            raise ValueError(f"state_dict must be a dict; got {type(d).__name__}")
        need = ("version", "num_channels", "k", "seed", "skip_nan", "items", "level_sizes", "count", "min",
                "max", "rng_state", "nan_count", "wide")
        missing = [key for key in need if key not in d]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")

        def as_int(key: str, minimum: int = 0, maximum: int = _INT64_MAX) -> int:
            return _state_int(d, key, minimum, maximum)

        version = as_int("version")
        if version not in (1, _STATE_VERSION):
            raise ValueError(f"state_dict['version'] must be 1 or {_STATE_VERSION} (the versions this release "
                             f"reads); got {d['version']!r}")
        C, k = as_int("num_channels", 1), as_int("k", _MIN_K, _MAX_K)
        seed = as_int("seed", 0, (1 << 64) - 1)
        skip = as_int("skip_nan", 0, 1)

        def arr(key: str, kind: str) -> np.ndarray:
            v = d[key]
            if not isinstance(v, np.ndarray) or v.dtype.kind not in kind:
                raise ValueError(f"state_dict[{key!r}] must be a numpy array of kind {kind!r}; got {describe(v)}")
            return v

        def ints(key: str) -> np.ndarray:
            """Integer array with every value in [0, 2**63 - 1], as int64 (the
            sign and shape are checked by the core with the field's name)."""
            v = arr(key, "iu")
            if v.dtype.kind == "u" and v.size and int(v.max()) > _INT64_MAX:
                raise ValueError(f"state_dict[{key!r}] must hold integers <= 2**63 - 1; got {int(v.max())}")
            return v.astype(np.int64)

        items = arr("items", "f")
        if np.isnan(items).any():
            raise ValueError("state_dict['items'] must not contain NaN")
        if version >= 2:
            for key in ("checksum", "checksum_known"):
                if key not in d:
                    raise ValueError(f"state_dict is missing keys [{key!r}] (version {version})")
        # one row per channel in every per-channel array: a num_channels that none of them has is
        # the field that changed; else the array that differs from num_channels is named
        per_channel = {key: arr(key, "f" if key in ("min", "max") else "iu")
                       for key in ("count", "min", "max", "rng_state", "nan_count", "wide", "level_sizes")}
        if version >= 2:
            per_channel["checksum"] = arr("checksum", "iu")
        check_declared_length("state_dict", "num_channels", C, per_channel, what="channels")
        for key, v in per_channel.items():
            if key == "level_sizes":
                ok, want = v.ndim == 2 and v.shape[0] == C and 1 <= v.shape[1] <= _MAX_LEVELS, \
                    f"({C}, levels) with 1 <= levels <= {_MAX_LEVELS}"
            elif key == "checksum":
                ok, want = v.shape == (C, 2), f"({C}, 2)"
            else:
                ok, want = v.shape == (C,), f"({C},)"
            if not ok:
                raise ValueError(f"state_dict[{key!r}] must have shape {want} (one row per channel, "
                                 f"num_channels = {C}); got shape {v.shape}")
        checksum = None
        if version >= 2 and as_int("checksum_known", 0, 1):
            checksum = per_channel["checksum"]
            if checksum.dtype.kind != "u" or checksum.dtype.itemsize != 8:
                raise ValueError(f"state_dict['checksum'] must be a uint64 array of shape ({C}, 2); "
                                 f"got {describe(checksum)}")
            checksum = checksum.astype(np.uint64)  # native byte order for the core
        conv: Dict[str, Any] = {
            "version": version, "num_channels": C, "k": k, "seed": seed, "skip_nan": skip,
            "items": items.astype(np.float64), "level_sizes": ints("level_sizes"), "count": ints("count"),
            "min": arr("min", "f").astype(np.float64), "max": arr("max", "f").astype(np.float64),
            "rng_state": arr("rng_state", "iu").astype(np.uint64), "nan_count": ints("nan_count"),
            "wide": ints("wide")}
        if version >= 2:
            conv["checksum"] = arr("checksum", "iu").astype(np.uint64)
            conv["checksum_known"] = as_int("checksum_known", 0, 1)
        obj = cls.__new__(cls)
        obj._C, obj._k, obj._seed, obj._skip_nan = C, k, seed, bool(skip)
        obj._threads = check_num_threads(num_threads)
        obj._init_lock()
        try:
            obj._sk = _core.QuantileSketch.from_state(
                C, k, obj._seed, conv["items"], conv["level_sizes"], conv["count"], conv["min"], conv["max"],
                conv["rng_state"], conv["nan_count"], conv["wide"], checksum)
        except (ValueError, TypeError) as exc:
            if "changed k?" in str(exc):  # the levels do not fit k: name the field
                raise ValueError(f"state_dict['k'] = {k} does not fit the levels of the state: {exc}") from exc
            raise ValueError(f"malformed state_dict: {exc}") from exc
        # the fields agree with each other; the digest tells whether they are the ones written
        check_digest(d, _quantile_fields(conv), "state_dict")
        return obj

    @synchronized
    def __repr__(self) -> str:
        cnt = self._sk.counts()
        return (f"ChannelQuantiles(num_channels={self._C}, k={self._k}, seed={self._seed}, nan={self.nan!r}, "
                f"count={int(cnt.min()) if cnt.size else 0}..{int(cnt.max()) if cnt.size else 0})")

# ExactQuantilePass is defined in _quantiles_exact.py and public here: pickles name a class by
# its __module__, and naming this module keeps them what they were before the split (a pickle
# written by either side loads in the other; tests/core/test_quantile_pickles.py).
ExactQuantilePass.__module__ = __name__
