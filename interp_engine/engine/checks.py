"""The argument-checking vocabulary of interp_engine, for method authors and
embedders: the conversion of user arrays (numpy, torch, array-likes) at the
boundary of the compiled core, and the checks of scalar arguments that every
kernel and method applies.

Every checker raises ValueError or TypeError naming the argument (its
``name``), what was expected and what arrived (:func:`describe`), and returns
the value in the form the core takes (a Python ``int`` or ``float``, a native,
aligned numpy array); none uses ``assert``.  For example::

    from interp_engine.engine.checks import check_positive_int, float_array

    k = check_positive_int(k, "k")                 # TypeError for 2.0 or True, ValueError for 0
    x, kind = float_array(x, "activations", ndim=2)  # kind in {"f16", "bf16", "f32", "f64"}

The core reads buffers: torch CPU tensors are viewed through numpy without a
copy; CUDA tensors are copied to the host (the CUDA kernels are not built in
this package yet). bfloat16 has no numpy dtype, so bfloat16 data travels as
its raw uint16 bit pattern together with the kind code ``"bf16"``.  numpy is
the only dependency: torch is imported only when a tensor or a device is
passed.

These names are plumbing, not methods: the module is public and documented
(docs/api.md, "Checks and protocol pieces"), its names are not re-exported by
:mod:`interp_engine.engine` or the top level.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Optional, Tuple

import numpy as np

#: kind codes understood by the core, by numpy/torch dtype name
FLOAT_KINDS = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
_EXPECTED_FLOATS = "float16, bfloat16, float32 or float64"

__all__ = ["describe", "native", "to_numpy", "float_array", "int_array", "bool_array", "check_ndim",
           "check_dense_tensor", "check_int", "check_positive_int", "check_real", "check_choice",
           "check_num_threads", "check_bool", "check_device", "FLOAT_KINDS", "INT32_MAX", "INT64_MAX"]


def _is_torch_tensor(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "dtype")


def _short_repr(x: Any, limit: int = 60) -> str:
    try:
        r = repr(x)
    except Exception:  # a broken __repr__ must not hide the real error
        return ""
    return r if len(r) <= limit else r[: limit - 3] + "..."


def describe(x: Any) -> str:
    """Short description of what arrived, for error messages."""
    if isinstance(x, np.ndarray):
        order = "" if x.dtype.isnative else f" ({'big' if x.dtype.byteorder == '>' else 'little'}-endian)"
        return f"numpy array of shape {x.shape} and dtype {x.dtype}{order}"
    if _is_torch_tensor(x):
        if getattr(x, "is_nested", False):
            return f"nested torch tensor of dtype {x.dtype}"
        try:
            shape = tuple(x.shape)
        except Exception:  # tensor kinds without sizes
            return f"torch tensor of dtype {x.dtype}"
        extra = ""
        layout = getattr(x, "layout", None)
        if layout is not None and str(layout) != "torch.strided":
            extra += f", layout {layout}"
        device = getattr(x, "device", None)
        if device is not None and device.type != "cpu":
            extra += f", on device {device}"
        return f"torch tensor of shape {shape} and dtype {x.dtype}{extra}"
    if isinstance(x, (bool, int, float, complex, str, bytes, np.generic)) or x is None:
        return f"{type(x).__name__} {_short_repr(x)}"
    return f"{type(x).__name__}"


def native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in native byte order, aligned, with strides that are multiples
    of the item size: ``arr`` itself when it already is (no copy), else a
    copy with the same values.

    Every conversion function of this module returns its arrays through this
    helper, so every kernel of the core reads native, aligned data: the core
    reads raw buffers and would see the bytes of a big-endian array swapped
    (or do misaligned loads) otherwise.  Works for every dtype numpy has
    (floats including float16, signed and unsigned integers, bool; bool and
    1-byte types have no byte order)."""
    dt = arr.dtype
    if not dt.isnative:
        return _canonical(arr.astype(dt.newbyteorder("=")))
    item = dt.itemsize
    if not arr.flags.aligned or (item > 1 and any(s % item for s in arr.strides)):
        return _canonical(np.array(arr, copy=True))
    return _canonical(arr)


def _canonical(arr: np.ndarray) -> np.ndarray:
    """A view of a native array with numpy's built-in dtype object (the core
    matches dtypes by identity: ``np.dtype('<f4')`` made by hand is an
    equal but distinct object)."""
    dt = arr.dtype
    if dt.kind in "biufc" and dt.type.__module__ == "numpy":
        canon = np.dtype(dt.char)
        if dt is not canon and canon == dt:
            return arr.view(canon)
    return arr


def check_dense_tensor(x: Any, name: str) -> Any:
    """``x`` itself if it is a torch tensor with data in the ordinary (strided)
    layout; nested, sparse, quantized and meta tensors -> TypeError/ValueError
    naming ``name`` (torch's own NotImplementedError/RuntimeError otherwise
    surface later, far from the argument)."""
    import torch  # only reached when a tensor was passed, so torch is installed

    if getattr(x, "is_nested", False):
        raise TypeError(f"{name} must be a dense (strided) tensor; got {describe(x)} "
                        f"(nested tensors hold rows of different sizes: pad them first)")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor; got {describe(x)} "
                        f"(call .to_dense() first)")
    if getattr(x, "is_quantized", False):
        raise TypeError(f"{name} must be a floating-point, integer or bool tensor; got a quantized "
                        f"{describe(x)} (call .dequantize() first)")
    if x.device.type == "meta":
        raise ValueError(f"{name} must hold data; got a meta tensor ({describe(x)}), which has "
                         f"only a shape and a dtype")
    return x


def _torch_to_numpy(x: Any, name: str) -> Tuple[np.ndarray, Optional[str]]:
    import torch  # only reached when a tensor was passed, so torch is installed

    check_dense_tensor(x, name)
    t = x.detach()
    if t.device.type != "cpu":
        try:
            t = t.cpu()
        except Exception as exc:
            raise ValueError(f"{name}: cannot copy {describe(x)} to the host ({exc})") from None
    if t.is_complex():
        t = t.resolve_conj()
    t = t.resolve_neg()
    if t.dtype == torch.bfloat16:
        return native(t.view(torch.int16).numpy().view(np.uint16)), "bf16"
    try:
        arr = t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor whose dtype numpy has (floating-point, integer or "
                        f"bool); got {describe(x)} ({exc})") from None
    return native(arr), None


def to_numpy(x: Any, name: str) -> Tuple[np.ndarray, Optional[str]]:
    """Return ``(array, kind)``: a numpy view of ``x`` (no copy where possible)
    and ``"bf16"`` when the data are bfloat16 bit patterns, else ``None``.

    The array is in native byte order and aligned (:func:`native`).  Object
    arrays, masked arrays with masked entries and things numpy cannot turn
    into an array raise TypeError/ValueError naming ``name``."""
    if isinstance(x, np.ndarray):
        arr = x
        if isinstance(x, np.ma.MaskedArray):
            if np.ma.getmaskarray(x).any():
                raise ValueError(f"{name} must not have masked entries; got a masked array of shape "
                                 f"{x.shape} with {int(np.ma.getmaskarray(x).sum())} masked (fill or "
                                 f"drop them first)")
            arr = np.asarray(x.data)
    elif _is_torch_tensor(x):
        return _torch_to_numpy(x, name)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be a numpy array or torch tensor; got {describe(x)} "
                            f"(numpy cannot make an array of it: {exc})") from None
    if arr.dtype == object:
        detail = "" if isinstance(x, np.ndarray) else " (numpy makes an object array of it)"
        raise TypeError(f"{name} must be a numpy array or torch tensor of numbers; got {describe(x)}{detail}")
    if arr.dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16 numpy arrays
        return native(arr).view(np.uint16), "bf16"
    return native(arr), None


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
    """ValueError naming ``name`` unless ``arr`` has ``ndim`` dimensions (when
    given) and at least ``min_ndim`` (when given); ``shape_hint`` (e.g.
    ``"(N, K)"``) is added to the message."""
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
    if dtype is None:
        return arr
    target = np.dtype(dtype)
    if arr.size and not np.can_cast(arr.dtype, target, casting="safe"):
        info = np.iinfo(target)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise ValueError(f"{name} must hold values in [{info.min}, {info.max}]; got {bad}")
    return np.ascontiguousarray(arr, dtype=target)


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


#: Largest value of a size or count the core takes (int64).
INT64_MAX = (1 << 63) - 1
#: Largest value of a C ``int`` argument of the core (thread counts, k, ...).
INT32_MAX = (1 << 31) - 1


def _is_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    dt = getattr(value, "dtype", None)
    return dt is not None and getattr(value, "ndim", None) == 0 and str(dt) in ("bool", "torch.bool")


def check_int(value: Any, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = INT64_MAX,
              what: str = "an integer") -> int:
    """``value`` as a Python int: any integer (Python, numpy, a 0-d integer
    array or tensor: whatever has ``__index__``), not a bool, a float or a
    string.  Out of [minimum, maximum] -> ValueError (never OverflowError)."""
    if _is_bool(value) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be {what}; got {describe(value)}")
    try:
        v = operator.index(value)
    except TypeError:  # e.g. a 0-d float array, a 1-element array
        raise TypeError(f"{name} must be {what}; got {describe(value)}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {v}")
    return v


def check_positive_int(value: Any, name: str, *, minimum: int = 1, maximum: Optional[int] = INT64_MAX) -> int:
    """An integer >= ``minimum`` (default 1) and <= ``maximum`` (default
    2**63 - 1, the largest size the core takes); see :func:`check_int`."""
    return check_int(value, name, minimum=minimum, maximum=maximum)


def check_real(value: Any, name: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
               allow_inf: bool = True, allow_nan: bool = False, allow_none: bool = False,
               what: str = "a real number") -> Optional[float]:
    """``value`` as a Python float: a real number (int, float, numpy scalar,
    a 0-d real array or tensor), not a bool, complex or string.  Integers
    too large for a float64, NaN (unless ``allow_nan``), +-inf (unless
    ``allow_inf``) and values outside [minimum, maximum] raise ValueError."""
    if value is None and allow_none:
        return None
    if _is_bool(value):
        raise TypeError(f"{name} must be {what}; got {describe(value)}")
    if not isinstance(value, numbers.Real):
        item = None
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # 0-d array or tensor
            try:
                item = value.item()
            except Exception:  # e.g. a meta tensor
                item = None
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise TypeError(f"{name} must be {what}; got {describe(value)}")
        value = item
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be {what} representable as a float64; got an integer of "
                         f"{int(value).bit_length()} bits") from None
    if math.isnan(v):
        if allow_nan:
            return v
        raise ValueError(f"{name} must not be NaN; got {value!r}")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite; got {value!r}")
    for bad, rule in ((minimum is not None and v < minimum, f">= {minimum}"),
                      (maximum is not None and v > maximum, f"<= {maximum}")):
        if bad:
            rule = what if what != "a real number" else rule
            raise ValueError(f"{name} must be {rule}; got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: Tuple[str, ...]) -> str:
    """One of the strings ``choices`` (an array or other type -> TypeError,
    never numpy's ambiguous-truth error)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}; got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def check_num_threads(num_threads: Any) -> int:
    """None -> 0 (all cores); else an integer in [0, 2**31 - 1]."""
    if num_threads is None:
        return 0
    return check_int(num_threads, "num_threads", minimum=0, maximum=INT32_MAX,
                     what="an integer or None")


def check_bool(value: Any, name: str) -> bool:
    """True or False (numpy bools too); anything else -> TypeError (a string
    such as ``"False"`` or the integer 2 is not silently truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {describe(value)}")
    return bool(value)


def check_device(device: Any, name: str = "device") -> Any:
    """``None`` or a ``torch.device`` that exists on this machine: a string
    torch does not know, a CUDA/MPS device without CUDA/MPS, or a CUDA index
    past the device count -> ValueError naming ``name`` (before any work)."""
    if device is None:
        return None
    import torch

    if not isinstance(device, (str, torch.device)) or isinstance(device, bool):
        if isinstance(device, int) and not isinstance(device, bool):  # torch's shorthand for cuda:<n>
            device = f"cuda:{device}" if device >= 0 else device
        if not isinstance(device, str):
            raise TypeError(f"{name} must be None, a string such as 'cpu' or 'cuda:0', or a torch.device; "
                            f"got {describe(device)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a device torch knows, such as 'cpu' or 'cuda:0'; got {device!r} "
                         f"({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} needs CUDA, which this torch build or machine does not "
                             f"have (torch.cuda.is_available() is False); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s) (indices 0..{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name}={device!r} needs the MPS backend, which is not available here")
    elif dev.type == "meta":
        raise ValueError(f"{name}={device!r}: a meta device holds no data to compute on")
    return dev
