"""The running top images of a dissection: :class:`TopImages`.

Per unit, the ``k`` images whose map has the largest maximum, with those
maps at their native resolution (what the report shows).  An accumulator
like the engine's (:class:`~interp_engine.ChannelQuantiles`,
:class:`~interp_engine.IoUTally`): ``update`` with batches, ``merge`` with
another one fed other images, ``top()`` to read it, ``state_dict`` /
``from_state_dict`` (plain numpy arrays and ints, checked on load, with a
digest), pickling through the state, and thread-safe (one lock per object,
:mod:`interp_engine.engine.sync`).  Numpy only: no torch needed.

Order: by the map maximum, descending; ties by the lower dataset index
(``index``); empty slots (index -1, value -inf) last.  So the result does
not depend on how the images were batched or split between merged
accumulators.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

from ...engine.checks import INT64_MAX, check_int, check_positive_int, describe, float_array, int_array
from ...engine.states import check_digest, state_digests
from ...engine.sync import Synchronized, synchronized, synchronized_pair

__all__ = ["TopImages"]

_FORMAT = "interp_engine.top_images"
_VERSION = 1


def _as_float32(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy or torch, any float dtype) as a float32 numpy array (exact for
    float16 and bfloat16; float64 rounded to nearest, as ``tensor.float()``)."""
    arr, kind = float_array(x, name, ndim=4)
    if kind == "bf16":  # bfloat16 bit patterns: the upper half of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32, copy=False)


def _order(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per row, the positions sorted by value descending, then index ascending,
    empty slots (index -1) last."""
    return np.lexsort((index, -values, index < 0), axis=-1)


class TopImages(Synchronized):
    """Per unit, the ``k`` images with the largest maximum of the unit's map.

    Args:
        num_units: K, the number of units (channels).
        k: images kept per unit (0: none; the accumulator then only checks its input).
        map_shape: ``(h, w)``, the units' map size.

    ``update(acts, index)``: ``acts`` (B, K, h, w) floats (numpy or torch, any
    device: copied to the host), ``index`` (B,) the images' dataset indices
    (integers >= 0).  ``top()``: ``(values, index, maps)``, copies: (K, k)
    float64 map maxima, (K, k) int64 dataset indices (-1 in an empty slot,
    whose value is -inf and map 0) and (K, k, h, w) float32 maps.
    """

    def __init__(self, num_units: int, k: int, map_shape: Tuple[int, int]) -> None:
        self._K = check_positive_int(num_units, "num_units")
        self._k = check_int(k, "k", minimum=0)
        if not isinstance(map_shape, (tuple, list)) or len(map_shape) != 2:
            raise TypeError(f"map_shape must be (h, w), two integers >= 1; got {describe(map_shape)}")
        h, w = (check_positive_int(s, "map_shape") for s in map_shape)
        self._shape = (h, w)
        if self._K * self._k * h * w > INT64_MAX // 4:
            raise ValueError(f"num_units x k x h x w = {self._K} x {self._k} x {h} x {w} float32 maps do not "
                             f"fit in 2**63 bytes")
        self._values = np.full((self._K, self._k), -math.inf, dtype=np.float64)
        self._index = np.full((self._K, self._k), -1, dtype=np.int64)
        self._maps = np.zeros((self._K, self._k, h, w), dtype=np.float32)
        self._init_lock()

    # ------------------------------------------------------------ properties
    @property
    def num_units(self) -> int:
        return self._K

    @property
    def k(self) -> int:
        return self._k

    @property
    def map_shape(self) -> Tuple[int, int]:
        return self._shape

    @synchronized
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self._values.nbytes + self._index.nbytes + self._maps.nbytes)

    # ------------------------------------------------------------ update / merge / query
    @synchronized
    def update(self, acts: Any, index: Any) -> "TopImages":
        """Add a batch: ``acts`` (B, K, h, w), ``index`` (B,) dataset indices; returns self.
        Refused (ValueError/TypeError, nothing added) for another shape, NaN, or negative indices."""
        a = _as_float32(acts, "acts")
        if a.shape[1:] != (self._K,) + self._shape:
            raise ValueError(f"acts must have shape (B, {self._K}, {self._shape[0]}, {self._shape[1]}) "
                             f"(num_units, map_shape); got {tuple(a.shape)}")
        idx = int_array(index, "index", ndim=1)
        b = a.shape[0]
        if idx.shape != (b,):
            raise ValueError(f"index must have shape ({b},) (one dataset index per image of acts); "
                             f"got {tuple(idx.shape)}")
        if b and int(idx.min()) < 0:
            raise ValueError(f"index must hold dataset indices >= 0; got {int(idx.min())}")
        if b == 0 or self._k == 0:
            if np.isnan(a).any():
                raise ValueError("acts must not contain NaN")
            return self
        m = a.reshape(b, self._K, -1).max(axis=2).astype(np.float64).T  # (K, B)
        if np.isnan(m).any():
            raise ValueError("acts must not contain NaN")
        self._put(np.concatenate([self._values, m], axis=1),
                  np.concatenate([self._index, np.broadcast_to(idx[None, :], (self._K, b))], axis=1),
                  np.concatenate([self._maps, a.transpose(1, 0, 2, 3)], axis=1))
        return self

    def _put(self, values: np.ndarray, index: np.ndarray, maps: np.ndarray) -> None:
        order = _order(values, index)[:, : self._k]
        rows = np.arange(self._K)[:, None]
        self._values, self._index, self._maps = values[rows, order], index[rows, order], maps[rows, order]

    @synchronized_pair
    def merge(self, other: "TopImages") -> "TopImages":
        """Fold ``other`` (fed other images) into this one; returns self.  Needs
        the same num_units, k and map_shape; refused when both hold the same
        image for a unit (they were fed the same images)."""
        if not isinstance(other, TopImages):
            raise TypeError(f"other must be a TopImages; got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge a TopImages with itself")
        for what, a, b in (("num_units", other._K, self._K), ("k", other._k, self._k),
                           ("map_shape", other._shape, self._shape)):
            if a != b:
                raise ValueError(f"cannot merge: other has {what}={a}, this one has {what}={b} "
                                 f"(other.{what} must equal {what})")
        index = np.concatenate([self._index, other._index], axis=1)
        s = np.sort(index, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        if dup.any():
            u, j = (int(x) for x in np.argwhere(dup)[0])
            raise ValueError(f"cannot merge: both hold image {int(s[u, j + 1])} among the top images of unit {u} "
                             f"(merge needs accumulators fed different images)")
        self._put(np.concatenate([self._values, other._values], axis=1), index,
                  np.concatenate([self._maps, other._maps], axis=1))
        return self

    @synchronized
    def top(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, index, maps)``: copies (see the class docs)."""
        return self._values.copy(), self._index.copy(), self._maps.copy()

    # ------------------------------------------------------------ state
    @synchronized
    def state_dict(self) -> Dict[str, Any]:
        """Plain dict of ints, strings and numpy arrays (no pickled objects), with a digest."""
        d: Dict[str, Any] = {"format": _FORMAT, "version": _VERSION, "num_units": self._K, "k": self._k,
                             "height": self._shape[0], "width": self._shape[1], "values": self._values.copy(),
                             "index": self._index.copy(), "maps": self._maps.copy()}
        d["digest"], d["field_digests"] = state_digests(_fields(d))
        return d

    @classmethod
    def from_state_dict(cls, d: Dict[str, Any]) -> "TopImages":
        """Rebuild from :meth:`state_dict`; a malformed state -> ValueError naming the field.

        Checked: the keys, format and version; the sizes (integers >= 1, k >= 0);
        each array's dtype kind and shape ((K, k), (K, k), (K, k, h, w)); no
        NaN; indices >= -1, each image at most once per unit; per unit the
        filled slots first, then empty ones (index -1) whose value is -inf;
        values sorted from the largest, each the maximum of its map.  Last the
        digest (when present: a state changed after it was written is refused)."""
        if not isinstance(d, dict):
            raise ValueError(f"state_dict must be a dict; got {type(d).__name__}")
        need = ("format", "version", "num_units", "k", "height", "width", "values", "index", "maps")
        missing = [key for key in need if key not in d]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")
        if d["format"] != _FORMAT:
            raise ValueError(f"state_dict['format'] must be {_FORMAT!r}; got {d['format']!r}")

        def as_int(key: str, minimum: int) -> int:
            v = d[key]
            if isinstance(v, np.ndarray) and v.ndim == 0:
                v = v.item()
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or \
                    not minimum <= int(v) <= INT64_MAX:
                raise ValueError(f"state_dict[{key!r}] must be an integer in [{minimum}, {INT64_MAX}]; got {v!r}")
            return int(v)

        if as_int("version", 1) != _VERSION:
            raise ValueError(f"state_dict['version'] must be {_VERSION} (the version this release reads); "
                             f"got {d['version']!r}")
        K, k, h, w = as_int("num_units", 1), as_int("k", 0), as_int("height", 1), as_int("width", 1)

        def arr(key: str, kind: str, shape: Tuple[int, ...]) -> np.ndarray:
            v = d[key]
            if not isinstance(v, np.ndarray) or v.dtype.kind not in kind:
                raise ValueError(f"state_dict[{key!r}] must be a numpy array of kind {kind!r}; got {describe(v)}")
            if v.shape != shape:
                raise ValueError(f"state_dict[{key!r}] must have shape {shape} (num_units, k, height, width = "
                                 f"{K}, {k}, {h}, {w}); got shape {v.shape}")
            return v

        values = arr("values", "f", (K, k)).astype(np.float64)
        index = arr("index", "iu", (K, k))
        maps = arr("maps", "f", (K, k, h, w)).astype(np.float32)
        if index.dtype.kind == "u" and index.size and int(index.max()) > INT64_MAX:
            raise ValueError(f"state_dict['index'] must hold integers <= 2**63 - 1; got {int(index.max())}")
        index = index.astype(np.int64)
        for key, v in (("values", values), ("maps", maps)):
            if np.isnan(v).any():
                raise ValueError(f"state_dict[{key!r}] must not contain NaN")
        if index.size and int(index.min()) < -1:
            raise ValueError(f"state_dict['index'] must hold dataset indices >= 0, or -1 in an empty slot; "
                             f"got {int(index.min())}")
        filled = index >= 0
        n = filled.sum(axis=1)
        gap = filled != (np.arange(k)[None, :] < n[:, None])
        if gap.any():
            u = int(np.argwhere(gap)[0][0])
            raise ValueError(f"state_dict['index'] has an empty slot (-1) before an image for unit {u}")
        s = np.sort(index, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        if dup.any():
            u, j = (int(x) for x in np.argwhere(dup)[0])
            raise ValueError(f"state_dict['index'] holds image {int(s[u, j + 1])} twice for unit {u}")
        empty_off = ~filled & (values != -np.inf)
        if empty_off.any():
            u = int(np.argwhere(empty_off)[0][0])
            raise ValueError(f"state_dict['values'] must be -inf where the slot is empty (unit {u})")
        if k > 1 and (values[:, 1:] > values[:, :-1]).any():
            u = int(np.argwhere(values[:, 1:] > values[:, :-1])[0][0])
            raise ValueError(f"state_dict['values'] must be sorted from the largest (unit {u})")
        if filled.any():
            mx = maps.reshape(K, k, -1).max(axis=2).astype(np.float64)
            off = filled & (mx != values)
            if off.any():
                u, j = (int(x) for x in np.argwhere(off)[0])
                raise ValueError(f"state_dict['values'] must be the maximum of the unit's map (state_dict['maps']); "
                                 f"unit {u}, slot {j}: {float(values[u, j])!r} but the map's maximum is "
                                 f"{float(mx[u, j])!r}")
        conv = {"format": _FORMAT, "version": _VERSION, "num_units": K, "k": k, "height": h, "width": w,
                "values": values, "index": index, "maps": maps}
        check_digest(d, _fields(conv), "state_dict")
        obj = cls.__new__(cls)
        obj._K, obj._k, obj._shape = K, k, (h, w)
        obj._values, obj._index, obj._maps = values.copy(), index.copy(), maps.copy()
        obj._init_lock()
        return obj

    @classmethod
    def from_top(cls, values: np.ndarray, index: np.ndarray, maps: np.ndarray) -> "TopImages":
        """Rebuild from the three arrays of :meth:`top` (sizes read from ``maps``,
        (K, k, h, w)), checked as :meth:`from_state_dict` checks a state."""
        if not isinstance(maps, np.ndarray) or maps.ndim != 4:
            raise ValueError(f"maps must be a (num_units, k, h, w) numpy array; got {describe(maps)}")
        K, k, h, w = maps.shape
        return cls.from_state_dict({"format": _FORMAT, "version": _VERSION, "num_units": K, "k": k, "height": h,
                                    "width": w, "values": values, "index": index, "maps": maps})

    @synchronized
    def __getstate__(self) -> Dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, d: Dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise ValueError(f"the pickled state of a TopImages must be a dict from state_dict(); got {describe(d)}")
        self.__dict__.update(type(self).from_state_dict(dict(d)).__dict__)

    @synchronized
    def __repr__(self) -> str:
        filled = int((self._index >= 0).sum(axis=1).min()) if self._k else 0
        return (f"TopImages(num_units={self._K}, k={self._k}, map_shape={self._shape}, "
                f"filled={filled} of {self._k} per unit)")


def _fields(d: Dict[str, Any]):
    """The fields the digest covers, as ``from_state_dict`` converts them."""
    return [(key, d[key]) for key in ("format", "version", "num_units", "k", "height", "width")] + \
        [("values", np.asarray(d["values"], np.float64)), ("index", np.asarray(d["index"], np.int64)),
         ("maps", np.asarray(d["maps"], np.float32))]

