"""Conversion of user arrays (numpy, torch, array-likes) at the boundary of
the core, with precise errors.

The core reads buffers: torch CPU tensors are viewed through numpy without a
copy; CUDA tensors are copied to the host (the CUDA kernels are not built in
this package yet). bfloat16 has no numpy dtype, so bfloat16 data travels as
its raw uint16 bit pattern together with the kind code ``"bf16"``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

# kind codes understood by the core
FLOAT_KINDS = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
_EXPECTED_FLOATS = "float16, bfloat16, float32 or float64"


def _is_torch_tensor(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "dtype")


def describe(x: Any) -> str:
    """Short description of what arrived, for error messages."""
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    if _is_torch_tensor(x):
        return f"torch tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def _torch_to_numpy(x: Any) -> Tuple[np.ndarray, Optional[str]]:
    import torch  # only reached when a tensor was passed, so torch is installed

    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), "bf16"
    if t.is_complex():
        return t.numpy(), None
    return t.numpy(), None


def to_numpy(x: Any, name: str) -> Tuple[np.ndarray, Optional[str]]:
    """Return ``(array, kind)``: a numpy view of ``x`` (no copy where possible)
    and ``"bf16"`` when the data are bfloat16 bit patterns, else ``None``."""
    if isinstance(x, np.ndarray):
        arr = x
    elif _is_torch_tensor(x):
        return _torch_to_numpy(x)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be a numpy array or torch tensor; got {describe(x)}") from exc
        if arr.dtype == object:
            raise TypeError(f"{name} must be a numpy array or torch tensor; got {describe(x)}")
    if arr.dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16 numpy arrays
        return arr.view(np.uint16), "bf16"
    return arr, None


def float_array(x: Any, name: str, *, ndim: Optional[int] = None, min_ndim: Optional[int] = None,
                allowed: Tuple[str, ...] = ("f16", "bf16", "f32", "f64")) -> Tuple[np.ndarray, str]:
    """Validate a floating-point array; return ``(array, kind)`` with kind in
    ``{"f16", "bf16", "f32", "f64"}`` (bf16 as a uint16 view). No copy."""
    arr, kind = to_numpy(x, name)
    if kind is None:
        kind = FLOAT_KINDS.get(arr.dtype.name)
    if kind is None or kind not in allowed:
        names = [k for k, v in FLOAT_KINDS.items() if v in allowed]
        exp = _EXPECTED_FLOATS if len(names) == 4 else ", ".join(names)
        raise TypeError(f"{name} must have a floating-point dtype ({exp}); got {describe(x)}")
    check_ndim(arr, name, ndim=ndim, min_ndim=min_ndim)
    return arr, kind


def check_ndim(arr: np.ndarray, name: str, *, ndim: Optional[int] = None,
               min_ndim: Optional[int] = None, shape_hint: str = "") -> None:
    hint = f" {shape_hint}" if shape_hint else ""
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional{hint}; got shape {tuple(arr.shape)}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions{hint}; got shape {tuple(arr.shape)}")


def int_array(x: Any, name: str, *, ndim: Optional[int] = None, dtype=np.int64,
              shape_hint: str = "", what: str = "") -> np.ndarray:
    """Validate an integer array (any signed/unsigned integer dtype; bool is
    rejected). With ``dtype`` given, return it as a C-contiguous array of that
    dtype; with ``dtype=None``, return the numpy view as it is (no copy, any
    strides). ``what`` is added to the dtype error, e.g. ``"label numbers"``."""
    arr, kind = to_numpy(x, name)
    if kind == "bf16" or arr.dtype.kind not in "iu":
        detail = f" ({what})" if what else ""
        raise TypeError(f"{name} must have an integer dtype{detail}; got {describe(x)}")
    check_ndim(arr, name, ndim=ndim, shape_hint=shape_hint)
    return arr if dtype is None else np.ascontiguousarray(arr, dtype=dtype)


def bool_array(x: Any, name: str, *, ndim: Optional[int] = None, shape_hint: str = "") -> np.ndarray:
    """Validate a boolean array (bool dtype, or integers holding only 0/1) and
    return it as a C-contiguous bool array."""
    arr, kind = to_numpy(x, name)
    if kind == "bf16" or arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must have a boolean dtype; got {describe(x)}")
    check_ndim(arr, name, ndim=ndim, shape_hint=shape_hint)
    if arr.dtype.kind != "b":
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} must hold only 0/1 (or bool) values; got values in "
                             f"[{arr.min()}, {arr.max()}]")
        arr = arr.astype(bool)
    return np.ascontiguousarray(arr)


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_num_threads(num_threads: Any) -> int:
    if num_threads is None:
        return 0
    return check_positive_int(num_threads, "num_threads", minimum=0)
