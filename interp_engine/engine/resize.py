"""Resizing activation maps to the size of the label maps, exactly as a
named reference does (the compiled core's ``resize`` area).

Network Dissection compares a unit's map, resized to the label maps' size,
with the unit's threshold.  When a layer's maps are smaller than the label
maps every method below upsamples by interpolating between the four nearest
cells and they agree up to rounding; when the maps are larger (early layers),
they differ:

* ``"bilinear"``: ``F.interpolate(x.double(), size, mode="bilinear",
  align_corners=False)``, PyTorch's default (``antialias=False``).  Shrinking,
  each output pixel still reads only its two nearest cells per axis, so the
  map is subsampled, not smoothed.  The resize :class:`~interp_engine.IoUTally`
  evaluates on the fly, and its default.
* ``"antialias"``: ``F.interpolate(x.double(), size, mode="bilinear",
  align_corners=False, antialias=True)``: a triangle filter whose support
  grows with the shrink factor, so every cell contributes (smoothing while
  shrinking); identical to ``"bilinear"`` up to rounding when upsampling.
* ``"pil"``: Pillow's ``Image.resize(size, BILINEAR)`` of the map as a float32
  (mode ``"F"``) image, which is what NetDissect-Lite does
  (``scipy.misc.imresize(feature_map, (sh, sw), mode="F")``): the same filter
  as ``"antialias"``, but the map rounded to float32 and each pass stored in
  float32.

The arithmetic (order of the sums, fused multiply-adds, roundings) is that of
each reference, so the results are equal bit for bit: ``"antialias"`` to
PyTorch's CPU kernel on FMA hardware (AVX2 build), ``"bilinear"`` to PyTorch's
generic CPU kernel on FMA hardware when ``sh + sw > 128`` (smaller outputs run
another kernel that can differ in the last bit), ``"pil"`` to Pillow 4.2-12.1
(Pillow 12.2 and later run the height pass first when only the height
shrinks, which can change the last float32 bit).  PyTorch 2.13's
``antialias=True`` returns wrong values when the output is one pixel wide and
the height changes (every row equals the first); ``"antialias"`` computes the
filter there as everywhere else.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._loader import core as _core
from .checks import check_num_threads, check_positive_int, float_array

__all__ = ["RESIZE_METHODS", "resize_maps"]

RESIZE_METHODS = ("bilinear", "antialias", "pil")


def check_method(method: Any, name: str = "method") -> str:
    """Validate a resize method name."""
    if not isinstance(method, str) or method not in RESIZE_METHODS:
        raise ValueError(f"{name} must be one of {RESIZE_METHODS}; got {method!r}")
    return method


def check_size(size: Any, name: str = "size") -> Tuple[int, int]:
    """A pair (sh, sw) of positive integers (an integer means (n, n))."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"{name} must be a pair (sh, sw) of positive integers; got {size!r}")
    out = (check_positive_int(size[0], f"{name}[0]"), check_positive_int(size[1], f"{name}[1]"))
    for i, v in enumerate(out):
        if v >= 2**31:
            raise ValueError(f"{name}[{i}] must be < 2**31; got {v}")
    return out


def resize_maps(maps: Any, size: Any, method: str = "bilinear", *,
                num_threads: Optional[int] = None) -> np.ndarray:
    """Resize 2-D maps to ``size`` with the exact arithmetic of ``method``.

    Args:
        maps: (h, w), (K, h, w) or (B, K, h, w) float16, bfloat16, float32 or
            float64, numpy or torch (CPU; CUDA tensors are copied), any
            strides; no NaN.
        size: (sh, sw), the output size (an integer n means (n, n)).
        method: ``"bilinear"`` (default; PyTorch's ``F.interpolate``
            default), ``"antialias"`` (``antialias=True``) or ``"pil"``
            (Pillow / NetDissect-Lite); see the module docs.
        num_threads: threads of the core (None = all cores).

    Returns:
        The resized maps, shape ``maps.shape[:-2] + (sh, sw)``: float64 for
        ``"bilinear"`` and ``"antialias"`` (computed from the inputs widened
        exactly to float64), float32 for ``"pil"``.
    """
    method = check_method(method)
    sh, sw = check_size(size)
    nt = check_num_threads(num_threads)
    arr, kind = float_array(maps, "maps")
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"maps must have shape (h, w), (K, h, w) or (B, K, h, w); got shape {tuple(arr.shape)}")
    lead = tuple(int(s) for s in arr.shape[:-2])
    if arr.shape[-2] == 0 or arr.shape[-1] == 0:
        raise ValueError(f"maps must be non-empty (h, w >= 1); got shape {tuple(arr.shape)}")
    view = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)  # a view: only leading axes of size 1 added
    out = _core.resize_maps(view, kind, sh, sw, method, nt, "maps", False)
    return out.reshape(lead + (sh, sw))
