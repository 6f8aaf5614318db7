"""Result files: one ``.npz`` of arrays plus a JSON header (no pickles).

Every saved result of the package (dissection results, concept vectors, CAVs)
is written by :func:`save_npz` (atomically: a temporary sibling, then renamed)
and read back by :func:`load_npz` against a **schema**, one per file format:

* the header (JSON, stored under the key ``"header"``): a JSON object with the
  format name and version, then every key of the format with its JSON type
  (:func:`check_json` specs: ``str``, ``int``, ``float``, ``bool``, ``None``,
  ``dict`` / ``list`` for free-form values, ``[spec]`` for a list of spec,
  ``{key: spec}`` for an object with exactly those keys, :class:`MapOf` for an
  object of any keys with values of one spec, a tuple of specs for "any of",
  :class:`Num` for a bounded number, :class:`OneOf` for a choice);
* every array: its dtype, its shape in terms of the header (``Array("int64",
  ("K", "L"), min=0)``: dimension names are bound by ``dims`` or by the first
  array that has them), its value range (``min``/``max`` inclusive; NaN and
  infinities refused unless allowed);
* no other array, none missing; ``allow_pickle=False``.

A file that does not match, is not a zip, is truncated, or has a header that is
not valid JSON (a list, a number, nested deeper than :data:`MAX_DEPTH`, a key
missing or of another type) raises ValueError naming the file and the field;
never KeyError, AttributeError, IndexError or RecursionError.  Arrays are
returned converted to the schema's dtype in native byte order.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["save_npz", "read_header", "load_header", "safe_name", "Array", "Num", "OneOf", "MapOf", "check_json",
           "load_npz", "MAX_DEPTH", "peek_header"]

PathLike = Union[str, os.PathLike]

#: free-form header values (``dict`` / ``list`` specs) may nest at most this deep
MAX_DEPTH = 64


def save_npz(path: PathLike, arrays: Mapping[str, Any], header: Mapping[str, Any], *,
             compress: bool = True) -> Path:
    """Write ``arrays`` and ``header`` (JSON, under the key ``"header"``) to
    ``path`` atomically: into a temporary sibling, then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    data = {k: np.asarray(v) for k, v in arrays.items()}
    data["header"] = np.array(json.dumps(header))
    (np.savez_compressed if compress else np.savez)(tmp, **data)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- JSON header specs
@dataclass(frozen=True)
class Num:
    """A JSON number of ``kind`` (``int`` or ``float``; ``float`` also takes
    integers) in ``[min, max]`` (None: unbounded); NaN only with ``nan=True``."""

    kind: type = float
    min: Optional[float] = None
    max: Optional[float] = None
    nan: bool = False


@dataclass(frozen=True)
class MapOf:
    """A JSON object with any string keys whose values all match ``spec``."""

    spec: Any


@dataclass(frozen=True)
class OneOf:
    """One of the given JSON scalars (``OneOf(("semantic", "net2vec"))``)."""

    choices: Tuple[Any, ...]


def _describe(spec: Any) -> str:
    if spec is None:
        return "null"
    if spec is bool:
        return "a boolean"
    if spec is int:
        return "an integer"
    if spec is float:
        return "a number"
    if spec is str:
        return "a string"
    if spec is dict:
        return "a JSON object"
    if spec is list:
        return "a JSON list"
    if isinstance(spec, Num):
        kind = "an integer" if spec.kind is int else "a number"
        lo = "-inf" if spec.min is None else repr(spec.min)
        hi = "inf" if spec.max is None else repr(spec.max)
        return f"{kind} in [{lo}, {hi}]"
    if isinstance(spec, OneOf):
        return "one of " + ", ".join(repr(c) for c in spec.choices)
    if isinstance(spec, MapOf):
        return f"a JSON object of {_describe(spec.spec)}"
    if isinstance(spec, list):
        return f"a list of {_describe(spec[0])}"
    if isinstance(spec, Mapping):
        return "a JSON object with keys " + ", ".join(repr(k) for k in spec)
    if isinstance(spec, tuple):
        return " or ".join(_describe(s) for s in spec)
    raise TypeError(f"bad JSON spec {spec!r}")  # pragma: no cover - programming error


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a JSON object with keys " + ", ".join(repr(k) for k in list(value)[:8]) + \
            (", ..." if len(value) > 8 else "")
    return type(value).__name__


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative: no recursion limit)."""
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v)
        if best > MAX_DEPTH:
            break
    return best


def _matches(value: Any, spec: Any) -> bool:
    try:
        _check(value, spec, "", "")
        return True
    except ValueError:
        return False


def _check(value: Any, spec: Any, path: str, where: str) -> None:
    def bad() -> ValueError:
        return ValueError(f"{path}: field {where!r} must be {_describe(spec)}; got {_kind(value)}")

    if spec is None:
        if value is not None:
            raise bad()
    elif spec is bool:
        if not isinstance(value, bool):
            raise bad()
    elif spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif spec is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
    elif spec is str:
        if not isinstance(value, str):
            raise bad()
    elif spec is dict or spec is list:
        if not isinstance(value, spec):
            raise bad()
        if _depth(value) > MAX_DEPTH:
            raise ValueError(f"{path}: field {where!r} is nested deeper than {MAX_DEPTH} levels")
    elif isinstance(spec, Num):
        if isinstance(value, bool) or not isinstance(value, (int, float) if spec.kind is float else int):
            raise bad()
        if value != value:  # NaN
            if not spec.nan:
                raise bad()
        elif (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise bad()
    elif isinstance(spec, OneOf):
        if isinstance(value, (dict, list)) or not any(
                value == c and type(value) is type(c) for c in spec.choices):
            raise bad()
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise bad()
        for k, v in value.items():
            _check(v, spec.spec, path, f"{where}.{k}" if where else k)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise bad()
        for i, v in enumerate(value):
            _check(v, spec[0], path, f"{where}[{i}]")
    elif isinstance(spec, Mapping):
        if not isinstance(value, dict):
            raise bad()
        missing = [k for k in spec if k not in value]
        if missing:
            raise ValueError(f"{path}: field {where + '.' + missing[0] if where else missing[0]!r} is "
                             f"missing (present: {sorted(value)})")
        extra = [k for k in value if k not in spec]
        if extra:
            raise ValueError(f"{path}: field {where + '.' + extra[0] if where else extra[0]!r} is not "
                             f"part of this format (expected keys {list(spec)})")
        for k, s in spec.items():
            _check(value[k], s, path, f"{where}.{k}" if where else k)
    elif isinstance(spec, tuple):
        if not any(_matches(value, s) for s in spec):
            raise bad()
    else:  # pragma: no cover - programming error
        raise TypeError(f"bad JSON spec {spec!r}")


def check_json(value: Any, spec: Any, path: PathLike, where: str = "header") -> Any:
    """Check a parsed JSON ``value`` against ``spec`` (see the module
    docstring); ValueError naming ``path`` and the field (``where``, dotted and
    indexed: ``header.layers[0].label_names``) otherwise.  Returns ``value``."""
    _check(value, spec, str(path), where)
    return value


# ----------------------------------------------------------------------------- arrays
_DTYPES = {"float64": "f", "float32": "f", "int64": "iu", "int32": "iu", "uint64": "u", "bool": "b", "str": "U"}


@dataclass(frozen=True)
class Array:
    """Schema of one array of a file.

    dtype: ``"float64"``, ``"float32"``, ``"int64"``, ``"int32"``, ``"uint64"``,
        ``"bool"`` or ``"str"``; any dtype of the same kind is accepted (floats
        for floats, signed or unsigned integers for signed integers, unsigned
        integers for ``"uint64"``: bit patterns, never negative) and converted, in native
        byte order, after the range check (so a uint64 above 2**63 - 1 is out of
        range for ``"int64"``, not wrapped).
    shape: one entry per dimension: an int, or a name (a key of ``dims``, or
        bound by the first array, in schema order, that has it).
    min, max: inclusive bounds of the values (None: unbounded); a bound may be
        a dimension name (``max="K"`` means at most dims["K"]); ``max_offset``
        is added to a named ``max`` (``max="K", max_offset=-1``: below K).
    nan, inf: whether NaN / +-inf are allowed (floats).
    """

    dtype: str
    shape: Tuple[Union[int, str], ...]
    min: Union[float, int, str, None] = None
    max: Union[float, int, str, None] = None
    max_offset: int = 0
    nan: bool = False
    inf: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:  # pragma: no cover - programming error
            raise TypeError(f"Array dtype must be one of {list(_DTYPES)}; got {self.dtype!r}")


def _resolve(bound: Any, dims: Mapping[str, int], offset: int = 0) -> Any:
    if isinstance(bound, str):
        return dims[bound] + offset
    return bound


def _check_array(a: np.ndarray, spec: Array, dims: Dict[str, int], path: str, name: str) -> np.ndarray:
    kinds = _DTYPES[spec.dtype]
    if a.dtype.kind not in kinds:
        raise ValueError(f"{path}: field {name!r} must be a {spec.dtype} array; got dtype {a.dtype}")
    if a.ndim != len(spec.shape):
        raise ValueError(f"{path}: field {name!r} must have {len(spec.shape)} dimensions "
                         f"{_shape_str(spec.shape, dims)}; got shape {a.shape}")
    for axis, (want, got) in enumerate(zip(spec.shape, a.shape)):
        if isinstance(want, str):
            if want not in dims:
                dims[want] = int(got)
                continue
            want_n = dims[want]
        else:
            want_n = want
        if got != want_n:
            raise ValueError(f"{path}: field {name!r} must have shape {_shape_str(spec.shape, dims)}; "
                             f"got {a.shape} (axis {axis})")
    lo = _resolve(spec.min, dims)
    hi = _resolve(spec.max, dims, spec.max_offset if isinstance(spec.max, str) else 0)
    if a.dtype.kind == "f":
        if not spec.nan and a.size and np.isnan(a).any():
            i = np.unravel_index(int(np.flatnonzero(np.isnan(a.ravel()))[0]), a.shape)
            raise ValueError(f"{path}: field {name!r} must not contain NaN; NaN at index "
                             f"{tuple(int(x) for x in i)}")
        if not spec.inf and a.size and np.isinf(a).any():
            i = np.unravel_index(int(np.flatnonzero(np.isinf(a.ravel()))[0]), a.shape)
            raise ValueError(f"{path}: field {name!r} must be finite; {a[i]} at index "
                             f"{tuple(int(x) for x in i)}")
    if a.dtype.kind in "iuf" and a.size and (lo is not None or hi is not None):
        with np.errstate(invalid="ignore"):
            out = np.zeros(a.shape, bool)
            if lo is not None:
                out |= a < lo
            if hi is not None:
                out |= a > hi
        if out.any():
            i = np.unravel_index(int(np.flatnonzero(out.ravel())[0]), a.shape)
            rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ValueError(f"{path}: field {name!r} must hold values in {rng}; got {a[i]} at index "
                             f"{tuple(int(x) for x in i)}")
    if spec.dtype == "str":
        return np.asarray(a, dtype=str)
    target = np.dtype(spec.dtype)
    if target.kind in "iu" and a.size and (a.dtype.kind != target.kind or a.dtype.itemsize > target.itemsize):
        info = np.iinfo(target)
        if a.min() < info.min or a.max() > info.max:
            bad = a.max() if a.max() > info.max else a.min()
            raise ValueError(f"{path}: field {name!r} must hold {spec.dtype} values; got {bad}")
    if a.dtype != target or not a.dtype.isnative:
        with np.errstate(over="ignore"):
            a = a.astype(target)  # integers checked above: no wrap
        if target.kind == "f" and not spec.inf and a.size and np.isinf(a).any():
            raise ValueError(f"{path}: field {name!r} has values beyond the {spec.dtype} range")
    return a


def _shape_str(shape: Sequence[Union[int, str]], dims: Mapping[str, int]) -> str:
    parts = [f"{d}={dims[d]}" if isinstance(d, str) and d in dims else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


# ----------------------------------------------------------------------------- reading
def _open(path: Path, what: str) -> Tuple[Any, Any]:
    """(NpzFile, file object): the caller closes both (np.load leaks its own file
    when the zip directory cannot be read, so the file is opened here)."""
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    fid = open(path, "rb")
    try:
        z = np.load(fid, allow_pickle=False)
    except MemoryError:
        fid.close()
        raise
    except Exception as exc:  # BadZipFile, EOFError, ValueError (pickles), OSError, zlib.error, ...
        fid.close()
        raise ValueError(f"{path}: not a readable {what} (.npz file): {type(exc).__name__}: {exc}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        fid.close()
        raise ValueError(f"{path}: not a {what}: a single .npy array, not an .npz archive")
    return z, fid


def _read(z: Any, path: Path, name: str) -> np.ndarray:
    try:
        return z[name]
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError, ValueError (object arrays), ...
        raise ValueError(f"{path}: field {name!r} cannot be read (damaged or truncated file?): "
                         f"{type(exc).__name__}: {exc}") from None


def _parse_header(z: Any, path: Path, what: str) -> Any:
    if "header" not in z.files:
        raise ValueError(f"{path}: not a {what}: field 'header' is missing")
    raw = _read(z, path, "header")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: field 'header' must be a JSON string (0-d str array); got dtype "
                         f"{raw.dtype}, shape {raw.shape}")
    try:
        return json.loads(str(raw))
    except RecursionError:
        raise ValueError(f"{path}: field 'header' is nested too deeply to parse") from None
    except ValueError as exc:
        raise ValueError(f"{path}: field 'header' is not valid JSON: {exc}") from None


def _check_format(header: Any, path: Path, fmt: str, version: int, what: str) -> Dict[str, Any]:
    if not isinstance(header, dict):
        raise ValueError(f"{path}: field 'header' must be a JSON object; got {_kind(header)}")
    got_fmt, got_ver = header.get("format"), header.get("version")
    if got_fmt != fmt or got_ver != version or isinstance(got_ver, bool):
        shown_fmt = got_fmt if isinstance(got_fmt, (str, int, float, type(None))) else _kind(got_fmt)
        shown_ver = got_ver if isinstance(got_ver, (str, int, float, type(None))) else _kind(got_ver)
        raise ValueError(f"{path}: expected a {what}, format {fmt} version {version}; got "
                         f"{shown_fmt!r} version {shown_ver!r}")
    return header


def read_header(z: Any, path: PathLike, fmt: str, version: int, what: str) -> Dict[str, Any]:
    """The JSON header of an opened npz (``np.load(path, allow_pickle=False)``),
    checked to be a JSON object of format ``fmt`` version ``version``;
    ValueError naming the file and ``what`` it should have been otherwise.
    (:func:`load_npz` also checks every key and array.)"""
    path = Path(path)
    return _check_format(_parse_header(z, path, what), path, fmt, version, what)


def load_header(path: PathLike, fmt: str, version: int, what: str) -> Dict[str, Any]:
    """The JSON header of the file at ``path`` alone (its arrays are not
    read), checked to be a JSON object of format ``fmt`` version ``version``;
    ValueError naming the file otherwise (not a zip, truncated, a pickle, not
    JSON), FileNotFoundError when there is no file.  For a look at the header
    (a key, a version) before :func:`load_npz` checks the whole file."""
    path = Path(path)
    z, fid = _open(path, what)
    with fid, z:
        return _check_format(_parse_header(z, path, what), path, fmt, version, what)


def peek_header(path: PathLike, what: str) -> Any:
    """The parsed JSON header of the file at ``path``, unchecked (any JSON
    value; None when the file has no ``"header"``): to choose the schema (a
    format's older version, say) before :func:`load_npz` checks the whole
    file.  Raises what :func:`load_npz` raises for a file that cannot be
    opened or a header that cannot be read or parsed."""
    path = Path(path)
    z, fid = _open(path, what)
    with fid, z:
        return _parse_header(z, path, what) if "header" in z.files else None


ArraySchema = Mapping[str, Array]


def load_npz(path: PathLike, fmt: str, version: int, what: str, header: Mapping[str, Any],
             arrays: Union[ArraySchema, Callable[[Dict[str, Any]], Tuple[ArraySchema, Dict[str, int]]]],
             dims: Optional[Mapping[str, int]] = None) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read and check a file written by :func:`save_npz`.

    Args:
        path: the file.
        fmt, version: the format name and version the header must have.
        what: what the file is, for messages (``"dissection result"``).
        header: the spec of the header's other keys (``{"layer": str, ...}``;
            ``"format"`` and ``"version"`` are implied): exactly these keys.
        arrays: ``{name: Array}``, or a function of the (checked) header giving
            ``({name: Array}, dims)`` when the arrays depend on it (a ValueError
            it raises, naming a header field, is prefixed with the file).
        dims: dimension sizes known in advance (merged with the function's).

    Returns:
        ``(header, {name: array})``, the arrays in the schema's dtypes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: anything else, naming the file and the field.
    """
    path = Path(path)
    z, fid = _open(path, what)
    with fid, z:
        h = _check_format(_parse_header(z, path, what), path, fmt, version, what)
        spec = dict(header)
        spec["format"] = str
        spec["version"] = int
        check_json(h, spec, path, "header")
        if callable(arrays):
            try:
                schema, more = arrays(h)
            except ValueError as exc:  # a header inconsistency found by the format's schema
                raise ValueError(f"{path}: {exc}") from None
        else:
            schema, more = arrays, {}
        known: Dict[str, int] = dict(dims or {})
        known.update(more)
        names = [n for n in z.files if n != "header"]
        unknown = [n for n in names if n not in schema]
        if unknown:
            raise ValueError(f"{path}: field {unknown[0]!r} is not part of a {what} (expected "
                             f"{sorted(schema) if len(schema) <= 12 else str(len(schema)) + ' fields'})")
        missing = [n for n in schema if n not in names]
        if missing:
            raise ValueError(f"{path}: field {missing[0]!r} is missing")
        out = {n: _check_array(_read(z, path, n), s, known, str(path), n) for n, s in schema.items()}
    return h, out


def safe_name(name: str) -> str:
    """A layer or concept name as a file name: characters other than letters,
    digits and ``._-`` become ``_``."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
