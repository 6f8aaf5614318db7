"""What the two quantile accumulators of :mod:`interp_engine.engine.quantiles`
share: the view of a batch that the core reads, the check of ``q``, the
integer fields of their states and pickling through ``state_dict``.  Private
to the engine: :class:`~interp_engine.ChannelQuantiles` (``quantiles.py``) and
:class:`~interp_engine.ExactQuantilePass` (``_quantiles_exact.py``) use it.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np

from .checks import check_int, describe, float_array, to_numpy
from .sync import Synchronized, synchronized

_INT64_MAX = (1 << 63) - 1

QLike = Union[float, Sequence[float], np.ndarray]


def _batch_view(x: Any, num_channels: int, channel_axis: Any, name: str = "x") -> Tuple[np.ndarray, str]:
    """Validate a batch and return ``(view, kind)`` with view of shape
    ``(C, a, b)`` (any strides; a copy only for exotic stride patterns)."""
    arr, kind = float_array(x, name, min_ndim=2)
    ax = check_int(channel_axis, "channel_axis")
    if not -arr.ndim <= ax < arr.ndim:
        raise ValueError(f"channel_axis={ax} is out of range for {name} with {arr.ndim} dimensions "
                         f"(shape {tuple(arr.shape)})")
    ax %= arr.ndim
    if arr.shape[ax] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channels along axis {ax} (channel_axis="
                         f"{channel_axis}); got {describe(x)}")
    v = np.moveaxis(arr, ax, 0)
    if v.size == 0:
        return v, kind
    # the order of the observations of a channel does not matter: drop unit
    # axes, sort the rest by |stride| and merge the ones that tile exactly.
    dims = [(int(v.shape[i]), int(v.strides[i])) for i in range(1, v.ndim) if v.shape[i] != 1]
    dims.sort(key=lambda d: abs(d[1]), reverse=True)
    merged: list = []
    for size, stride in reversed(dims):  # innermost (smallest stride) first
        if merged and merged[-1][1] * merged[-1][0] == stride:
            merged[-1] = (merged[-1][0] * size, merged[-1][1])
        else:
            merged.append((size, stride))
    merged.reverse()
    if len(merged) > 2:  # exotic strides: one contiguous copy
        c = np.ascontiguousarray(v)
        return c.reshape(num_channels, 1, -1), kind
    while len(merged) < 2:
        merged.insert(0, (1, 0))
    shape = (num_channels,) + tuple(d[0] for d in merged)
    strides = (v.strides[0],) + tuple(d[1] for d in merged)
    view = np.lib.stride_tricks.as_strided(v, shape=shape, strides=strides, writeable=False)
    return view, kind


def _check_q(q: Any) -> Tuple[np.ndarray, bool]:
    """Return (q as float64 1-D array, scalar?)."""
    expected = "a float or a 1-D sequence of floats in [0, 1]"
    if isinstance(q, (str, bytes)):
        raise TypeError(f"q must be {expected}; got {describe(q)}")
    try:
        raw, kind = to_numpy(q, "q")
    except (TypeError, ValueError):
        raise TypeError(f"q must be {expected}; got {describe(q)}") from None
    if kind == "bf16" or raw.dtype.kind not in "iuf":
        raise TypeError(f"q must be {expected}; got {describe(q)}"
                        + ("" if isinstance(q, np.ndarray) else f" (numpy dtype {raw.dtype})"))
    arr = raw.astype(np.float64)
    scalar = arr.ndim == 0
    if arr.ndim > 1:
        raise ValueError(f"q must be a float or a 1-D sequence; got an array of shape {arr.shape}")
    arr = np.atleast_1d(arr)
    bad = ~((arr >= 0.0) & (arr <= 1.0))
    if bad.any():
        raise ValueError(f"q must be in [0, 1] (and not NaN); got {arr[bad][0]!r}")
    return np.ascontiguousarray(arr), scalar


def _state_int(d: Dict[str, Any], key: str, minimum: int, maximum: int) -> int:
    """``d[key]`` as a Python int in [minimum, maximum] (a 0-d array is read;
    bools and non-integers refused), for the quantile states' checks."""
    v = d[key]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or \
            not minimum <= int(v) <= maximum:
        raise ValueError(f"state_dict[{key!r}] must be an integer in [{minimum}, {maximum}]; got {v!r}")
    return int(v)


class _PickledByState(Synchronized):
    """Pickling through ``state_dict`` / ``from_state_dict`` (with the thread
    count), for both quantile accumulators."""

    @synchronized
    def __getstate__(self) -> Dict[str, Any]:
        d = self.state_dict()
        d["num_threads"] = self._threads
        return d

    def __setstate__(self, d: Dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise ValueError(f"the pickled state of a {type(self).__name__} must be a dict from state_dict(); "
                             f"got {describe(d)}")
        d = dict(d)
        threads = d.pop("num_threads", 0)
        other = type(self).from_state_dict(d, num_threads=threads or None)
        self.__dict__.update(other.__dict__)
