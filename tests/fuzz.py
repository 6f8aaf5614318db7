"""Seeded fuzzing of the package's boundary: bad and odd inputs for every
public kernel, accumulator state and file loader, each case run in its own
forked child so that a crash or a hang is attributed to its case.

Run from the repository root::

    python -m tests.fuzz --cases 5000 --seed 1        # more cases
    python -m tests.fuzz --seed 1 --case 17 --replay  # one case, in-process, with a traceback
    python -m tests.fuzz --list-targets

``tests/core/test_fuzz.py`` runs ``INTERP_ENGINE_FUZZ_CASES`` cases (default
2000) with ``INTERP_ENGINE_FUZZ_SEED`` (default 0); ``INTERP_ENGINE_FUZZ_MEMORY_GB``
is the address space a child may add (default 6; 0: no limit, e.g. under ASan).

A case is regenerated from ``(seed, case)`` alone (``numpy.random.default_rng([seed,
case])``), so the pair is its reproducer.  Every case states what it
expects:

* ``error``: the input must be refused with ValueError or TypeError whose
  message names the argument (MemoryError too, for sizes that cannot be
  allocated);
* ``ok``: the input is odd but valid (other dtypes, byte orders, strides,
  empty, one element, inf, denormals, ...): the call must succeed and agree
  with a numpy reference or with the result on the plain (native, C-contiguous)
  input;
* ``any``: refusing and accepting are both fine (e.g. a corrupted pickle whose
  bytes still decode), but a refusal must be a ValueError/TypeError and
  nothing may crash or hang.

Outcomes: the good ones ("clean error", "right result", "tolerated") and the
bad ones (``BAD``); the runner prints a table of counts and, for every bad
case, its reproducer.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import select
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # for `reference` when run as `python -m tests.fuzz`
    sys.path.insert(0, _HERE)

GOOD = ("clean error", "right result", "tolerated")
BAD = ("wrong exception type", "error not naming the argument", "raw pybind11 error", "silent acceptance",
       "refused valid input", "wrong result", "crash", "hang")
OUTCOMES = GOOD + BAD

#: which helper of issue 14 owns the behaviour a case checks (for the report)
AREAS = ("boundary", "sizes", "states", "threads", "files", "checkpoints", "broden", "exact-pass", "methods")


_SAME = object()  # "the setup's value" (None is an input of its own)


class WrongResult(AssertionError):
    """Raised by a case's check when a valid input gives a wrong answer."""


class Case:
    """One generated input: ``fn()`` makes the call (and, for ``expect='ok'``,
    the comparison with the reference, raising WrongResult)."""

    __slots__ = ("target", "desc", "fn", "expect", "names", "area", "memory_ok", "also")

    def __init__(self, target: str, desc: str, fn: Callable[[], Any], expect: str,
                 names: Sequence[str] = (), area: str = "boundary", memory_ok: bool = False) -> None:
        assert expect in ("error", "ok", "any")
        self.target, self.desc, self.fn, self.expect = target, desc, fn, expect
        self.names = tuple(names)
        self.area = area
        self.memory_ok = memory_ok
        self.also: Tuple[str, ...] = ()  # words the message must hold as well (a file's field)


def _equal(a: Any, b: Any) -> bool:
    """Exact equality of nested results (NaN == NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def check_equal(got: Any, want: Any, what: str) -> None:
    if not _equal(got, want):
        raise WrongResult(f"{what}: got {_short(got)}, expected {_short(want)}")


def check_close(got: Any, want: Any, what: str, rtol: float = 1e-12, atol: float = 0.0) -> None:
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if g.shape != w.shape or not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
        raise WrongResult(f"{what}: got {_short(got)}, expected {_short(want)} (rtol {rtol})")


def _short(x: Any, limit: int = 300) -> str:
    with np.printoptions(threshold=40, precision=17):
        r = repr(x)
    return r if len(r) <= limit else r[:limit] + "..."


# ============================================================================ value factories
# Each factory returns a list of (description, make, expect) where make() builds
# the value in the child (torch tensors, big arrays) and expect is "error",
# "ok" or "memory" (an impossible size: ValueError/TypeError or MemoryError).

HUGE_INTS = [(2 ** 63, "2**63"), (2 ** 64, "2**64"), (10 ** 30, "10**30"), (-(2 ** 63) - 1, "-2**63-1")]


def _torch():
    import torch

    return torch


def bad_ints(minimum: Optional[int], allow_none: bool = False) -> List[Tuple[str, Callable[[], Any], str]]:
    """Values that are not an integer >= minimum (each must be refused)."""
    out = [("1.5", lambda: 1.5, "error"), ("2.0 (a float)", lambda: 2.0, "error"), ("'3'", lambda: "3", "error"),
           ("True", lambda: True, "error"), ("np.float64(3)", lambda: np.float64(3), "error"),
           ("[3]", lambda: [3], "error"), ("np.array([3])", lambda: np.array([3]), "error"),
           ("complex(3)", lambda: complex(3, 0), "error"), ("nan", lambda: float("nan"), "error"),
           ("inf", lambda: float("inf"), "error"), ("object()", lambda: object(), "error"),
           ("b'3'", lambda: b"3", "error"), ("np.bool_(True)", lambda: np.bool_(True), "error"),
           ("torch.tensor(3.0)", lambda: _torch().tensor(3.0), "error"),
           ("np.array(3.0) (0-d float)", lambda: np.array(3.0), "error")]
    if not allow_none:
        out.append(("None", lambda: None, "error"))
    if minimum is not None:
        out += [(repr(minimum - 1), lambda: minimum - 1, "error"), (repr(minimum - 7), lambda: minimum - 7, "error"),
                ("np.int64(minimum - 1)", lambda: np.int64(minimum - 1), "error")]
    out += [(d, (lambda v=v: v), "memory" if v > 0 else "error") for v, d in HUGE_INTS]
    return out


def alt_ints(v: int) -> List[Tuple[str, Callable[[], Any]]]:
    """Other spellings of the integer v (each must behave as v)."""
    out = [("np.int64", lambda: np.int64(v)), ("0-d array", lambda: np.array(v)),
           ("0-d torch tensor", lambda: _torch().tensor(v))]
    if abs(v) < 2 ** 31:
        out.append(("np.int32", lambda: np.int32(v)))
    if abs(v) < 2 ** 15:
        out.append(("np.int16", lambda: np.int16(v)))
    if 0 <= v < 256:
        out.append(("np.uint8", lambda: np.uint8(v)))
    return out


def bad_reals(minimum: Optional[float] = None, maximum: Optional[float] = None, allow_none: bool = False,
              allow_inf: bool = True, allow_nan: bool = False):
    out = [("'0.5'", lambda: "0.5", "error"), ("complex(0.5, 1)", lambda: complex(0.5, 1), "error"),
           ("True", lambda: True, "error"), ("[0.5]", lambda: [0.5], "error"),
           ("np.array([0.5])", lambda: np.array([0.5]), "error"), ("object()", lambda: object(), "error"),
           ("10**400 (too large for a float)", lambda: 10 ** 400, "error"),
           ("-10**400", lambda: -(10 ** 400), "error"), ("np.complex128(1)", lambda: np.complex128(1), "error")]
    if not allow_none:
        out.append(("None", lambda: None, "error"))
    if not allow_nan:
        out += [("nan", lambda: float("nan"), "error"), ("np.float32(nan)", lambda: np.float32("nan"), "error")]
    if not allow_inf:
        out += [("inf", lambda: float("inf"), "error"), ("-inf", lambda: -float("inf"), "error")]
    if minimum is not None:
        out += [(f"{minimum} - 1e-9", lambda: minimum - 1e-9, "error"), ("-inf", lambda: -math.inf, "error")]
    if maximum is not None:
        out += [(f"{maximum} + 1e-9", lambda: maximum + 1e-9, "error"), ("inf", lambda: math.inf, "error")]
    return out


def alt_reals(v: float):
    out = [("np.float64", lambda: np.float64(v)), ("0-d array", lambda: np.array(v)),
           ("0-d torch tensor (float64)", lambda: _torch().tensor(v, dtype=_torch().float64))]
    if float(np.float32(v)) == v:
        out.append(("np.float32", lambda: np.float32(v)))
    if v == int(v):
        out.append(("int", lambda: int(v)))
    out.append(("Fraction", lambda: Fraction(v)))
    return out


def bad_choices(choices: Sequence[str]):
    c0 = choices[0]
    return [("'no-such-value'", lambda: "no-such-value", "error"), ("''", lambda: "", "error"),
            ("1", lambda: 1, "error"), ("None", lambda: None, "error"),
            (f"b{c0!r}", lambda: c0.encode(), "error"), (f"np.array([{c0!r}])", lambda: np.array([c0]), "error"),
            (f"[{c0!r}]", lambda: [c0], "error"), (f"{c0.upper()!r}", lambda: c0.upper(), "error"),
            (f"' {c0}'", lambda: " " + c0, "error")]


def junk_objects():
    """Things that are not arrays at all (each must be refused where an array is expected)."""
    return [("None", lambda: None), ("'abc'", lambda: "abc"), ("{}", lambda: {}), ("object()", lambda: object()),
            ("ragged list", lambda: [[1.0, 2.0], [3.0]]), ("list of str", lambda: [["a", "b"], ["c", "d"]]),
            ("a generator", lambda: (i for i in range(3))), ("a set", lambda: {1.0, 2.0}),
            ("list of huge ints", lambda: [[2 ** 70, 1], [2, 3]]),
            ("object array", lambda: np.array([[1.0, None], [2.0, 3.0]], dtype=object)),
            ("str array", lambda: np.array([["1", "2"], ["3", "4"]])),
            ("bytes array", lambda: np.array([[b"1", b"2"]])),
            ("datetime64 array", lambda: np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]")),
            ("structured array", lambda: np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])),
            ("void array", lambda: np.zeros(3, dtype="V8"))]


def torch_oddities(shape: Tuple[int, ...]):
    """Torch tensors that hold no plain data (each must be refused with a clean error)."""
    def meta():
        return _torch().empty(shape, device="meta")

    def nested():
        torch = _torch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.nested.nested_tensor([torch.ones(shape[1:] or (1,)), torch.ones(shape[1:] or (1,))])

    def jagged():
        torch = _torch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged)

    def sparse():
        return _torch().zeros(shape).to_sparse()

    def sparse_csr():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _torch().zeros(shape[-2:] if len(shape) >= 2 else (2, 2)).to_sparse_csr()

    def quantized():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _torch().quantize_per_tensor(_torch().zeros(shape), 0.1, 0, _torch().quint8)

    def complex_t():
        return _torch().zeros(shape, dtype=_torch().complex64)

    def float8():
        return _torch().zeros(shape).to(_torch().float8_e4m3fn)

    return [("meta tensor", meta), ("nested tensor", nested), ("jagged nested tensor", jagged),
            ("sparse COO tensor", sparse), ("sparse CSR tensor", sparse_csr), ("quantized tensor", quantized),
            ("complex tensor", complex_t), ("float8 tensor", float8)]


def same_values(x: np.ndarray, rng: np.random.Generator, *, allow_lists: bool = True,
                torch_ok: bool = True) -> Tuple[str, Callable[[], Any]]:
    """Another representation of the values of ``x`` (same dtype kind and
    values): byte order, strides, alignment, torch, lists, ..."""
    x = np.ascontiguousarray(x)
    opts = ["big-endian", "little-endian", "fortran", "readonly"]
    if x.ndim >= 1 and x.size:
        opts += ["strided", "negative-stride", "misaligned", "transposed copy"]
    if torch_ok and x.dtype.kind in "fiub" and x.dtype != np.float16:
        opts += ["torch", "torch non-contiguous"]
    if torch_ok and x.dtype == np.float16:
        opts += ["torch"]
    if allow_lists and x.dtype in (np.float64, np.int64, np.bool_) and 0 < x.size < 400:
        opts.append("nested list")
    if x.ndim >= 1 and x.size and x.shape[0] >= 1 and np.all(x == x[:1]) and x.dtype.kind != "f":
        opts.append("zero-stride broadcast")
    choice = opts[int(rng.integers(len(opts)))]
    ax = int(rng.integers(x.ndim)) if x.ndim else 0

    def make():
        if choice == "big-endian":
            return x.astype(x.dtype.newbyteorder(">"))
        if choice == "little-endian":
            return x.astype(x.dtype.newbyteorder("<"))
        if choice == "fortran":
            return np.asfortranarray(x)
        if choice == "readonly":
            y = x.copy()
            y.setflags(write=False)
            return y
        if choice == "strided":
            shape = list(x.shape)
            shape[ax] *= 2
            big = np.zeros(shape, x.dtype)
            idx = [slice(None)] * x.ndim
            idx[ax] = slice(0, None, 2)
            big[tuple(idx)] = x
            return big[tuple(idx)]
        if choice == "negative-stride":
            return np.flip(np.flip(x, ax).copy(), ax)
        if choice == "misaligned":
            buf = np.zeros(x.nbytes + 1, np.uint8)
            y = np.ndarray(x.shape, dtype=x.dtype, buffer=buf.data, offset=1)
            y[...] = x
            return y
        if choice == "transposed copy":
            return np.ascontiguousarray(x.T).T
        if choice == "torch":
            return _torch().from_numpy(x.copy())
        if choice == "torch non-contiguous":
            t = _torch().from_numpy(np.ascontiguousarray(x.T).copy())
            return t.permute(*reversed(range(x.ndim))) if x.ndim > 1 else t
        if choice == "nested list":
            return x.tolist()
        if choice == "zero-stride broadcast":
            return np.broadcast_to(x[:1], x.shape)
        raise AssertionError(choice)

    return choice, make


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


# ============================================================================ the kernels
# Each generator takes a numpy Generator and returns a Case.


def _ie():
    import interp_engine

    return interp_engine


def _float_data(rng, shape, special: bool = False) -> np.ndarray:
    x = np.round(rng.standard_normal(shape) * 4, int(rng.integers(0, 3)))
    if special and x.size:
        flat = x.reshape(-1)
        vals = [np.inf, -np.inf, 5e-324, -5e-324, 2.2e-308, 1e308, -1e308, -0.0, 0.0]
        for i in rng.choice(flat.size, size=min(flat.size, int(rng.integers(1, 4))), replace=False):
            flat[i] = _pick(rng, vals)
    return x


def _float_dtype(rng, allowed=("f2", "f4", "f8")) -> str:
    return _pick(rng, allowed)


def _cast_exact(x: np.ndarray, code: str) -> np.ndarray:
    """x rounded to dtype ``code`` and back to float64 (so both hold the same values)."""
    with np.errstate(over="ignore"):
        return x.astype(code).astype(np.float64)


# ---------------------------------------------------------------------------- quantiles

def _cq_summary(cq, qs=(0.0, 0.1, 0.5, 0.9, 1.0)):
    return [cq.quantile(list(qs)), cq.count, cq.nan_count, cq.min, cq.max]


def _quantile_reference(values_by_channel, qs):
    from reference import exact_quantile

    return np.stack([exact_quantile(v, qs) for v in values_by_channel])


def gen_quantiles_update(rng) -> Case:
    ie = _ie()
    C = int(rng.integers(1, 4))
    N = int(rng.integers(0, 5))
    spatial = tuple(int(s) for s in rng.integers(1, 4, size=int(rng.integers(0, 3))))
    shape = (N, C) + spatial
    code = _float_dtype(rng)
    x = _float_data(rng, shape, special=bool(rng.random() < 0.3))
    with np.errstate(over="ignore"):
        x = x.astype(code)
    mode = _pick(rng, ["odd", "odd", "odd", "reference", "bad x", "bad x", "torch oddity", "bad axis", "nan"])
    k = 64

    def plain():
        return ie.ChannelQuantiles(C, k=k, seed=3)

    if mode == "odd":
        how, make = same_values(x, rng)

        def fn():
            a = plain().update(x)
            b = plain().update(make())
            if N == 0:
                check_equal(b.count, a.count, "count")
                return
            check_equal(_cq_summary(b), _cq_summary(a), f"summary for {how} input")
        return Case("ChannelQuantiles.update", f"x: {how} {code} {shape}", fn, "ok")
    if mode == "reference":
        def fn():
            cq = plain().update(x)
            vals = np.moveaxis(x.astype(np.float64), 1, 0).reshape(C, -1)
            check_equal(cq.count, np.full(C, vals.shape[1]), "count")
            if N == 0:
                return
            check_equal(cq.min, vals.min(axis=1), "min")
            check_equal(cq.max, vals.max(axis=1), "max")
            qs = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
            got = cq.exact_pass(qs).update(x).result()
            check_equal(got, _quantile_reference(vals, qs), "exact pass vs np.quantile")
        return Case("ChannelQuantiles.update", f"x: {code} {shape} (special values possible) vs numpy", fn, "ok")
    if mode == "nan":
        y = x.astype(np.float64)
        if y.size == 0:
            y = np.zeros((1, C), np.float64)
        y.reshape(-1)[int(rng.integers(y.size))] = np.nan
        y = y.astype(code)
        skip = bool(rng.random() < 0.5)

        def fn():
            cq = ie.ChannelQuantiles(C, k=k, nan="skip" if skip else "raise")
            cq.update(y)
            vals = np.moveaxis(y.astype(np.float64), 1, 0).reshape(C, -1)
            check_equal(cq.nan_count, np.isnan(vals).sum(axis=1), "nan_count")
        return Case("ChannelQuantiles.update", f"x with a NaN, nan={'skip' if skip else 'raise'}", fn,
                    "ok" if skip else "error", ["x"])
    if mode == "bad axis":
        desc, make, exp = _pick(rng, bad_ints(None) + [("ndim", lambda: x.ndim, "error"),
                                                       ("-ndim-1", lambda: -x.ndim - 1, "error")])

        def fn():
            plain().update(x, channel_axis=make())
        return Case("ChannelQuantiles.update", f"channel_axis={desc}", fn, "error", ["channel_axis"],
                    memory_ok=False)
    if mode == "torch oddity":
        desc, make = _pick(rng, torch_oddities(shape if len(shape) >= 2 else (2, C)))

        def fn():
            plain().update(make())
        return Case("ChannelQuantiles.update", f"x: {desc}", fn, "error", ["x"])
    # bad x
    opts = junk_objects() + [
        ("int64 array", lambda: np.zeros((2, C), np.int64)), ("bool array", lambda: np.zeros((2, C), bool)),
        ("complex array", lambda: np.zeros((2, C), np.complex64)),
        ("float128 array", lambda: np.zeros((2, C), np.longdouble)),
        ("1-d array", lambda: np.zeros(C)), ("0-d array", lambda: np.array(1.0)), ("python float", lambda: 1.0),
        ("wrong channel count", lambda: np.zeros((2, C + 1))),
        ("masked array with a masked entry", lambda: np.ma.masked_array(np.zeros((2, C)), mask=[[True] + [False] * (C - 1), [False] * C])),
        ("torch int tensor", lambda: _torch().zeros((2, C), dtype=_torch().int32))]
    desc, make = _pick(rng, opts)

    def fn():
        plain().update(make())
    return Case("ChannelQuantiles.update", f"x: {desc}", fn, "error", ["x"])


def gen_quantiles_ctor(rng) -> Case:
    ie = _ie()
    param = _pick(rng, ["num_channels", "k", "seed", "nan", "num_threads"])
    if rng.random() < 0.3 and param != "nan":
        base = {"num_channels": 3, "k": 100, "seed": 7, "num_threads": 2}[param]
        desc, make = _pick(rng, alt_ints(base))

        def fn():
            kw = {"k": 100, "seed": 7}
            kw[param] = make()
            nc = kw.pop("num_channels", 3)
            a = ie.ChannelQuantiles(nc, **kw)
            ref_kw = {"k": 100, "seed": 7}
            ref_kw[param] = base
            nc = ref_kw.pop("num_channels", 3)
            b = ie.ChannelQuantiles(nc, **ref_kw)
            x = np.arange(3 * 40, dtype=np.float64).reshape(40, 3)
            check_equal(_cq_summary(a.update(x)), _cq_summary(b.update(x)), f"{param} given as {desc}")
        return Case("ChannelQuantiles", f"{param}={desc}({base})", fn, "ok")
    if param == "nan":
        desc, make, _ = _pick(rng, bad_choices(("raise", "skip")))
        return Case("ChannelQuantiles", f"nan={desc}", lambda: ie.ChannelQuantiles(2, nan=make()), "error", ["nan"])
    minimum = {"num_channels": 1, "k": 64, "seed": None, "num_threads": 0}[param]
    vals = bad_ints(minimum, allow_none=param == "num_threads")
    if param == "seed":  # any integer is a seed (taken modulo 2**64)
        vals = [v for v in vals if v[2] == "error" and not v[0].startswith(("-", "np.int64(min"))]
    desc, make, exp = _pick(rng, vals)

    def fn():
        kw = {"k": 64}
        kw[param] = make()
        nc = kw.pop("num_channels", 2)
        ie.ChannelQuantiles(nc, **kw)
    area = "sizes" if exp == "memory" and param == "num_channels" else "boundary"
    return Case("ChannelQuantiles", f"{param}={desc}", fn, "error", [param], area=area, memory_ok=exp == "memory")


def gen_quantiles_queries(rng) -> Case:
    ie = _ie()
    C = int(rng.integers(1, 4))
    x = _float_data(rng, (int(rng.integers(1, 30)), C))

    def fitted():
        return ie.ChannelQuantiles(C, k=64, seed=1).update(x)

    what = _pick(rng, ["quantile", "quantile", "rank", "exact_pass", "margin", "merge", "empty"])
    if what == "quantile":
        if rng.random() < 0.5:
            opts = [("'0.5'", lambda: "0.5"), ("['0.5']", lambda: ["0.5"]), ("[0.5, 'a']", lambda: [0.5, "a"]),
                    ("1.5", lambda: 1.5), ("-0.1", lambda: -0.1), ("nan", lambda: math.nan),
                    ("[[0.5]]", lambda: [[0.5]]), ("None", lambda: None), ("True", lambda: True),
                    ("[True]", lambda: [True]), ("complex", lambda: 0.5 + 0j), ("object array", lambda: np.array([0.5], dtype=object)),
                    ("{}", lambda: {}), ("np.array(['0.5'])", lambda: np.array(["0.5"])), ("inf", lambda: math.inf),
                    ("10**400", lambda: 10 ** 400), ("meta tensor", lambda: _torch().empty(2, device="meta")),
                    ("b'0.5'", lambda: b"0.5")]
            desc, make = _pick(rng, opts)
            return Case("ChannelQuantiles.quantile", f"q={desc}", lambda: fitted().quantile(make()), "error", ["q"])
        qv = np.array(sorted(rng.random(int(rng.integers(1, 4)))))
        alts = [("np.float32 array", lambda: qv.astype(np.float32), qv.astype(np.float32).astype(np.float64)),
                ("big-endian array", lambda: qv.astype(">f8"), qv), ("torch tensor", lambda: _torch().from_numpy(qv.copy()), qv),
                ("list", lambda: qv.tolist(), qv), ("tuple", lambda: tuple(qv.tolist()), qv),
                ("strided", lambda: np.repeat(qv, 2)[::2], qv), ("int 0/1 list", lambda: [0, 1], np.array([0.0, 1.0])),
                ("empty list", lambda: [], np.zeros(0))]
        desc, make, ref_q = _pick(rng, alts)

        def fn():
            cq = fitted()
            got = cq.quantile(make())
            want = cq.quantile(np.ascontiguousarray(ref_q, dtype=np.float64)) if ref_q.size else np.zeros((C, 0))
            check_equal(got, want, "quantiles")
        return Case("ChannelQuantiles.quantile", f"q={desc}", fn, "ok")
    if what == "rank":
        opts = [("wrong length", lambda: np.zeros(C + 1), "error"), ("NaN", lambda: np.full(C, np.nan), "error"),
                ("str array", lambda: np.array(["1"] * C), "error"), ("complex", lambda: np.zeros(C, complex), "error"),
                ("3-d", lambda: np.zeros((C, 1, 1)), "error"), ("None", lambda: None, "error"),
                ("bool", lambda: np.zeros(C, bool), "error")]
        desc, make, _ = _pick(rng, opts)
        return Case("ChannelQuantiles.rank", f"values={desc}", lambda: fitted().rank(make()), "error", ["values"])
    if what == "exact_pass":
        desc, make = _pick(rng, [("'0.5'", lambda: "0.5"), ("2.0", lambda: 2.0), ("[[0.1]]", lambda: [[0.1]])])
        return Case("ChannelQuantiles.exact_pass", f"q={desc}", lambda: fitted().exact_pass(make()), "error", ["q"])
    if what == "margin":
        desc, make, _ = _pick(rng, bad_reals(0.0, 1.0, allow_none=True))
        return Case("ChannelQuantiles.exact_pass", f"margin={desc}",
                    lambda: fitted().exact_pass(0.5, margin=make()), "error", ["margin"])
    if what == "empty":
        return Case("ChannelQuantiles.quantile", "quantile of a sketch that saw nothing",
                    lambda: ie.ChannelQuantiles(C, k=64).quantile(0.5), "error", ["channel", "update"])
    # merge
    opts = [("other channel count", lambda: ie.ChannelQuantiles(C + 1, k=64)), ("other k", lambda: ie.ChannelQuantiles(C, k=65)),
            ("an IoUTally", lambda: ie.IoUTally(1, 1, [0], 1, output_size=(1, 1))), ("None", lambda: None),
            ("a state dict", lambda: fitted().state_dict())]
    desc, make = _pick(rng, opts)
    return Case("ChannelQuantiles.merge", f"other={desc}", lambda: fitted().merge(make()), "error", ["other"])


def gen_exact_pass(rng) -> Case:
    """The second pass must see the same data (README); a same-size stream with
    one value changed must not return a quiet wrong quantile."""
    ie = _ie()
    C = int(rng.integers(1, 3))
    n = int(rng.integers(50, 400))
    x = np.round(rng.standard_normal((n, C)) * 10, 2)
    q = float(_pick(rng, [0.5, 0.9, 0.01, 0.995]))
    mode = _pick(rng, ["changed value", "fewer values", "odd second pass"])
    if mode == "odd second pass":
        how, make = same_values(x, rng)

        def fn():
            cq = ie.ChannelQuantiles(C, k=64).update(x)
            got = cq.exact_pass(q).update(make()).result()
            check_equal(got, _quantile_reference(x.T, [q])[:, 0], "exact quantile")
        return Case("ExactQuantilePass.update", f"second pass: {how} input", fn, "ok")
    return _exact_second_pass(rng, mode, x, q, C, n)


def gen_exact_pass_changed(rng) -> Case:
    C, n = 1, 300
    x = np.round(rng.standard_normal((n, C)) * 10, 2)
    return _exact_second_pass(rng, "changed value", x, 0.5, C, n, force=True)


def _exact_second_pass(rng, mode, x, q, C, n, force=False) -> Case:
    ie = _ie()
    y = x.copy()
    if mode == "changed value" and force:  # a change that moves the median
        i = int(np.argsort(x[:, 0])[n // 2])
        y[i, 0] = y[i, 0] + 0.001

        def fn():
            cq = ie.ChannelQuantiles(C, k=64).update(x)
            res = cq.exact_pass(q).update(y).result()
            raise WrongResult(f"a second pass with one value changed returned {res} (first pass: "
                              f"{_quantile_reference(x.T, [q])[:, 0]}, second: {_quantile_reference(y.T, [q])[:, 0]}) "
                              f"without an error")
        return Case("ExactQuantilePass.result", "[issue 14] second pass with the median value changed", fn,
                    "error", ["exact pass", "second pass", "values", "data"], area="exact-pass")
    if mode == "changed value":
        i = int(rng.integers(n))
        y[i, 0] = y[i, 0] + float(_pick(rng, [1e-6, 1.0, 1000.0]))

        def fn():
            cq = ie.ChannelQuantiles(C, k=64).update(x)
            res = cq.exact_pass(q).update(y).result()
            want = _quantile_reference(y.T, [q])[:, 0]
            if _equal(res, want):  # the change did not move the quantile: nothing wrong was returned
                return
            raise WrongResult(f"a changed value gave {res} (the first pass's data give "
                              f"{_quantile_reference(x.T, [q])[:, 0]}, the second's {want}) without an error")
        return Case("ExactQuantilePass.result", "second pass with one value changed", fn, "any", area="exact-pass")
    return Case("ExactQuantilePass.result", "second pass with fewer values",
                lambda: ie.ChannelQuantiles(C, k=64).update(x).exact_pass(q).update(y[1:]).result(),
                "error", ["exact pass", "values"], area="exact-pass")


# ---------------------------------------------------------------------------- IoU

def _iou_setup(rng):
    K = int(rng.integers(1, 4))
    NL = int(rng.integers(2, 7))
    NC = int(rng.integers(1, 4))
    cat = rng.integers(0, NC, NL)
    sh, sw = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    B = int(rng.integers(0, 3))
    h, w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    acts = _float_data(rng, (B, K, h, w), special=bool(rng.random() < 0.3))
    thr = np.round(rng.standard_normal(K), 1)
    if rng.random() < 0.3:
        thr[int(rng.integers(K))] = _pick(rng, [np.inf, -np.inf, 1e308, -1e308, 5e-324])
    P = int(rng.integers(0, 3))
    pl = rng.integers(0, NL, (B, P, sh, sw)) if rng.random() < 0.8 else None
    S = int(rng.integers(0, 3))
    il = rng.integers(0, NL, (B, S)) if rng.random() < 0.6 else None
    ic = (rng.random((B, NC)) < 0.6) if rng.random() < 0.4 else None
    rule = _pick(rng, ["annotated", "lite"])
    return dict(K=K, NL=NL, NC=NC, cat=cat, out=(sh, sw), acts=acts, thr=thr, pl=pl, il=il, ic=ic, rule=rule)


def _iou_run(s, acts=_SAME, thr=_SAME, pl=_SAME, il=_SAME, ic=_SAME):
    """A tally of setup ``s`` updated once; arguments given replace the setup's."""
    ie = _ie()
    t = ie.IoUTally(s["K"], s["NL"], s["cat"], s["NC"], output_size=s["out"], unit_rule=s["rule"])
    given = dict(acts=acts, thr=thr, pl=pl, il=il, ic=ic)
    a = {k: (s[k] if v is _SAME else v) for k, v in given.items()}
    t.update(a["acts"], a["thr"], a["pl"], a["il"], a["ic"])
    return t


def _iou_counts(t):
    return [t.intersection, t.label_pixels, t.unit_pixels, t.images, t.iou()]


def gen_iou_update(rng) -> Case:
    s = _iou_setup(rng)
    code = _float_dtype(rng)
    with np.errstate(over="ignore"):
        s["acts"] = s["acts"].astype(code)
    mode = _pick(rng, ["odd", "odd", "odd", "reference", "bad", "bad", "bad", "torch oddity"])
    arg = _pick(rng, ["activations", "thresholds", "pixel_labels", "image_labels", "image_categories"])
    if arg in ("pixel_labels", "image_labels", "image_categories") and s[{"pixel_labels": "pl", "image_labels": "il",
                                                                          "image_categories": "ic"}[arg]] is None:
        arg = "activations"
    key = {"activations": "acts", "thresholds": "thr", "pixel_labels": "pl", "image_labels": "il",
           "image_categories": "ic"}[arg]
    if mode == "reference":
        def fn():
            from reference import iou_counts, iou_from_counts, upsample_exact

            t = _iou_run(s)
            I, L, A = iou_counts(s["acts"].astype(np.float64), s["thr"], s["pl"], s["il"], s["ic"], s["cat"],
                                 s["NL"], s["NC"], s["out"], s["rule"], upsample=upsample_exact)
            check_equal([t.intersection, t.label_pixels, t.unit_pixels], [I, L, A], "counts vs reference")
            check_close(t.iou(), iou_from_counts(I, L, A, s["cat"]), "iou vs reference")
        return Case("IoUTally.update", f"{code} activations {s['acts'].shape}, output_size={s['out']}, "
                    f"rule={s['rule']} vs the numpy reference", fn, "ok")
    if mode == "odd":
        val = s[key]
        if arg in ("pixel_labels", "image_labels"):
            val = val.astype(_pick(rng, ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]))
        elif arg == "image_categories" and rng.random() < 0.5:
            val = val.astype(_pick(rng, ["i1", "u1", "i8"]))
        elif arg == "thresholds" and rng.random() < 0.5:
            c2 = _float_dtype(rng)
            val = val.astype(c2)
            s["thr"] = val.astype(np.float64)
        how, make = same_values(val, rng)

        def fn():
            want = _iou_counts(_iou_run(s))
            got = _iou_counts(_iou_run(s, **{key: make()}))
            check_equal(got, want, f"counts with {how} {arg}")
        return Case("IoUTally.update", f"{arg}: {how} {val.dtype} {val.shape}", fn, "ok")
    if mode == "torch oddity":
        shape = {"acts": (1, s["K"], 2, 2), "thr": (s["K"],), "pl": (1, 1) + s["out"], "il": (1, 1),
                 "ic": (1, s["NC"])}[key]
        desc, make = _pick(rng, torch_oddities(shape))
        return Case("IoUTally.update", f"{arg}: {desc}", lambda: _iou_run(s, **{key: make()}), "error", [arg])
    # bad values
    B, K, NL, NC = s["acts"].shape[0], s["K"], s["NL"], s["NC"]
    sh, sw = s["out"]
    opts: List[Tuple[str, Callable[[], Any]]] = [(d, m) for d, m in junk_objects()
                                                 if d != "None" or arg in ("activations", "thresholds")]
    if arg == "activations":
        opts += [("int array", lambda: np.zeros((1, K, 2, 2), np.int32)), ("bool array", lambda: np.zeros((1, K, 2, 2), bool)),
                 ("3-d", lambda: np.zeros((K, 2, 2))), ("wrong K", lambda: np.zeros((1, K + 1, 2, 2))),
                 ("empty map (h=0)", lambda: np.zeros((1, K, 0, 2))), ("NaN", lambda: np.full((1, K, 2, 2), np.nan)),
                 ("complex", lambda: np.zeros((1, K, 2, 2), np.complex128)), ("float128", lambda: np.zeros((1, K, 2, 2), np.longdouble)),
                 ] + ([("batch size other than the labels'", lambda: np.zeros((B + 1, K, 2, 2)))]
                      if s["pl"] is not None or s["il"] is not None or s["ic"] is not None else [])
    elif arg == "thresholds":
        opts += [("NaN", lambda: np.full(K, np.nan)), ("wrong length", lambda: np.zeros(K + 1)),
                 ("2-d", lambda: np.zeros((K, 1))), ("complex", lambda: np.zeros(K, complex)),
                 ("scalar", lambda: 0.5), ("str array", lambda: np.array(["0.5"] * K))]
    elif arg == "pixel_labels":
        opts += [("float labels", lambda: np.zeros((B, 1, sh, sw))), ("label == num_labels", lambda: np.full((B, 1, sh, sw), NL)),
                 ("negative label", lambda: np.full((B, 1, sh, sw), -1)), ("uint64 label 2**63", lambda: np.full((B, 1, sh, sw), 2 ** 63, np.uint64)),
                 ("wrong map size", lambda: np.zeros((B, 1, sh + 1, sw), np.int64)), ("3-d", lambda: np.zeros((B, sh, sw), np.int64)),
                 ("wrong batch", lambda: np.zeros((B + 1, 1, sh, sw), np.int64)), ("bool", lambda: np.zeros((B, 1, sh, sw), bool))]
    elif arg == "image_labels":
        opts += [("float labels", lambda: np.zeros((B, 1))), ("label == num_labels", lambda: np.full((B, 1), NL)),
                 ("negative", lambda: np.full((B, 1), -1)), ("1-d", lambda: np.zeros(B, np.int64)),
                 ("wrong batch", lambda: np.zeros((B + 1, 1), np.int64)), ("uint64 2**64-1", lambda: np.full((B, 1), 2 ** 64 - 1, np.uint64))]
    else:
        opts += [("wrong shape", lambda: np.zeros((B, NC + 1), bool)), ("values 2", lambda: np.full((B, NC), 2)),
                 ("float", lambda: np.zeros((B, NC))), ("1-d", lambda: np.zeros(NC, bool))]
    desc, make = _pick(rng, opts)
    needs_b = {"NaN": B > 0, "label == num_labels": B * sh * sw > 0, "negative label": B > 0, "negative": B > 0,
               "uint64 label 2**63": B > 0, "uint64 2**64-1": B > 0, "values 2": B * NC > 0}
    if not needs_b.get(desc, True):  # nothing to refuse in an empty batch: use a batch of one
        s["acts"] = np.zeros((1,) + s["acts"].shape[1:], code)
        for k2 in ("pl", "il", "ic"):
            if s[k2] is not None:
                s[k2] = np.zeros((1,) + s[k2].shape[1:], s[k2].dtype)
        B = 1
    return Case("IoUTally.update", f"{arg}: {desc}", lambda: _iou_run(s, **{key: make()}), "error", [arg])


def gen_iou_ctor(rng) -> Case:
    ie = _ie()
    param = _pick(rng, ["num_units", "num_labels", "label_category", "num_categories", "output_size", "unit_rule",
                        "num_threads", "sizes"])
    base = dict(num_units=2, num_labels=3, label_category=[0, 0, 1], num_categories=2, output_size=(3, 4),
                unit_rule="annotated", num_threads=None)

    def build(**kw):
        a = dict(base, **kw)
        return ie.IoUTally(a["num_units"], a["num_labels"], a["label_category"], a["num_categories"],
                           output_size=a["output_size"], unit_rule=a["unit_rule"], num_threads=a["num_threads"])

    if param == "sizes":  # products that overflow or cannot be allocated (issue 14 item 1)
        opts = [("num_categories=2**62", dict(num_units=4, num_labels=2, label_category=[0, 0], num_categories=2 ** 62, output_size=(2, 2))),
                ("num_units=2**62", dict(num_units=2 ** 62)), ("num_labels=2**40", dict(num_labels=2 ** 40, label_category=None)),
                ("num_units=2**32, num_labels=2**32", dict(num_units=2 ** 32, num_labels=2 ** 32, label_category=None)),
                ("output_size=(2**32, 2**32)", dict(output_size=(2 ** 32, 2 ** 32))),
                ("output_size=(1, 2**31 - 1)", dict(output_size=(1, 2 ** 31 - 1))),
                ("num_units=2**33, num_categories=2**31", dict(num_units=2 ** 33, num_categories=2 ** 31)),
                ("output_size=(2**62, 4)", dict(output_size=(2 ** 62, 4)))]
        desc, kw = _pick(rng, opts)
        step = _pick(rng, ["iou()", "update()", "intersection", "unit_pixels", "state_dict()", "merge()"])

        def fn():
            kw2 = dict(kw)
            if kw2.get("label_category", 1) is None:
                kw2["label_category"] = np.zeros(kw2["num_labels"], np.int8)
            t = build(**kw2)
            if step == "iou()":
                t.iou()
            elif step == "update()":
                t.update(np.zeros((1, t.num_units, 1, 1)) if t.num_units < 100 else np.zeros((1, 1, 1, 1)),
                         np.zeros(min(t.num_units, 100)))
            elif step == "intersection":
                t.intersection
            elif step == "unit_pixels":
                t.unit_pixels
            elif step == "state_dict()":
                t.state_dict()
            else:
                t.merge(build(**kw2))
        return Case("IoUTally", f"IoUTally({desc}).{step}", fn, "error",
                    ["num_units", "num_labels", "num_categories", "output_size", "size"], area="sizes", memory_ok=True)
    if param == "label_category":
        opts = [("float", lambda: [0.0, 0.0, 1.0]), ("too short", lambda: [0, 0]), ("value == num_categories", lambda: [0, 0, 2]),
                ("negative", lambda: [0, -1, 0]), ("2-d", lambda: [[0, 0, 1]]), ("None", lambda: None), ("str", lambda: "001"),
                ("uint64 2**63", lambda: np.array([0, 2 ** 63, 0], np.uint64)), ("bool", lambda: [False, False, True]),
                ("meta tensor", lambda: _torch().empty(3, dtype=_torch().int64, device="meta"))]
        if rng.random() < 0.3:
            how, make = same_values(np.array([0, 0, 1], _pick(rng, ["i1", "i8", "u2", "u8"])), rng)

            def fn():
                check_equal(_iou_counts(build(label_category=make())), _iou_counts(build()), f"{how} label_category")
            return Case("IoUTally", f"label_category: {how}", fn, "ok")
        desc, make = _pick(rng, opts)
        return Case("IoUTally", f"label_category={desc}", lambda: build(label_category=make()), "error", ["label_category"])
    if param == "output_size":
        opts = [("(4, 0)", (4, 0)), ("(4,)", (4,)), ("(4, 4, 4)", (4, 4, 4)), ("'44'", "44"), ("(4.0, 4)", (4.0, 4)),
                ("None", None), ("(-1, 4)", (-1, 4)), ("(True, 4)", (True, 4)), ("{4, 5}", {4, 5}),
                ("(2**64, 1)", (2 ** 64, 1)), ("4.5", 4.5), ("(4, '4')", (4, "4"))]
        desc, val = _pick(rng, opts)
        return Case("IoUTally", f"output_size={desc}", lambda: build(output_size=val), "error", ["output_size"])
    if param == "unit_rule":
        desc, make, _ = _pick(rng, bad_choices(("annotated", "lite")))
        return Case("IoUTally", f"unit_rule={desc}", lambda: build(unit_rule=make()), "error", ["unit_rule"])
    minimum = 0 if param == "num_threads" else 1
    if rng.random() < 0.25:
        v = {"num_units": 2, "num_labels": 3, "num_categories": 2, "num_threads": 1}[param]
        desc, make = _pick(rng, alt_ints(v))

        def fn():
            check_equal(_iou_counts(build(**{param: make()})), _iou_counts(build(**{param: v})), f"{param} as {desc}")
        return Case("IoUTally", f"{param}={desc}({v})", fn, "ok")
    vals = [v for v in bad_ints(minimum, allow_none=param == "num_threads") if v[2] == "error"]
    desc, make, _ = _pick(rng, vals)

    def fn():
        kw = {param: make()}
        if param == "num_labels" and isinstance(kw[param], (int, np.integer)) and not isinstance(kw[param], bool) and 0 <= kw[param] < 10:
            kw["label_category"] = [0] * int(kw[param])
        build(**kw)
    return Case("IoUTally", f"{param}={desc}", fn, "error", [param])


def gen_iou_merge(rng) -> Case:
    ie = _ie()

    def tally(**kw):
        a = dict(K=2, NL=3, cat=[0, 0, 1], NC=2, out=(3, 3), rule="annotated")
        a.update(kw)
        t = ie.IoUTally(a["K"], a["NL"], a["cat"], a["NC"], output_size=a["out"], unit_rule=a["rule"])
        return t

    opts = [("other num_units", dict(K=3)), ("other num_labels", dict(NL=4, cat=[0, 0, 1, 1])),
            ("other label_category", dict(cat=[0, 1, 1])), ("other num_categories", dict(NC=3)),
            ("other output_size", dict(out=(3, 4))), ("other unit_rule", dict(rule="lite"))]
    if rng.random() < 0.2:
        desc, make = _pick(rng, [("None", lambda: None), ("a ChannelQuantiles", lambda: ie.ChannelQuantiles(2, k=64)),
                                 ("a state dict", lambda: tally().state_dict())])
        return Case("IoUTally.merge", f"other={desc}", lambda: tally().merge(make()), "error", ["other"])
    desc, kw = _pick(rng, opts)
    return Case("IoUTally.merge", f"other with {desc}", lambda: tally().merge(tally(**kw)), "error",
                ["other", "configuration"])


# ---------------------------------------------------------------------------- cover / bits

def _cover_setup(rng):
    n_cand = int(rng.integers(0, 7))
    n_el = int(rng.integers(0, 70))
    dense = rng.random((n_cand, n_el)) < float(_pick(rng, [0.05, 0.2, 0.5]))
    return dense


def _fmt_family(dense: np.ndarray, fmt: str, rng):
    import scipy.sparse as sp

    if fmt == "dense":
        return dense
    if fmt == "packed":
        return _ie().pack_bits(dense)
    if fmt == "int dense":
        return dense.astype(_pick(rng, ["i1", "u1", "i8", "u8", ">i4"]))
    if fmt in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
        return sp.csr_matrix(dense).asformat(fmt)
    if fmt == "csr_array":
        return sp.csr_array(dense)
    if fmt == "coo with duplicates and zeros":
        m = sp.coo_matrix(dense)
        row = np.concatenate([m.row, m.row, [0] if dense.shape[0] and dense.shape[1] else []]).astype(np.int32)
        col = np.concatenate([m.col, m.col, [0] if dense.shape[0] and dense.shape[1] else []]).astype(np.int32)
        data = np.concatenate([m.data.astype(float), m.data.astype(float),
                               [0.0] if dense.shape[0] and dense.shape[1] else []])
        return sp.coo_matrix((data, (row, col)), shape=dense.shape)
    if fmt == "unsorted csr":
        m = sp.csr_matrix(dense)
        for i in range(dense.shape[0]):
            a, b = m.indptr[i], m.indptr[i + 1]
            m.indices[a:b] = m.indices[a:b][::-1].copy()
        m.has_sorted_indices = False
        return m
    raise AssertionError(fmt)


FAMILY_FORMATS = ["dense", "packed", "int dense", "csr", "csc", "coo", "lil", "dok", "bsr", "dia", "csr_array",
                  "coo with duplicates and zeros", "unsorted csr"]


def _bad_families(rng, dense):
    import scipy.sparse as sp

    n_cand, n_el = dense.shape

    def short_indptr():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indptr = m.indptr[:2].copy()
        return m

    def long_indptr():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indptr = np.concatenate([m.indptr, [m.indptr[-1]]])
        return m

    def bad_index():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indices = m.indices.copy()
        m.indices[0] = 7
        return m

    def neg_index():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indices = m.indices.copy()
        m.indices[0] = -1
        return m

    def decreasing():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indptr = m.indptr.copy()
        m.indptr[1] = 9
        return m

    def csc_bad():
        m = sp.csc_matrix(np.ones((3, 4), bool))
        m.indices = m.indices.copy()
        m.indices[-1] = 3
        return m

    def coo_bad():
        m = sp.coo_matrix(np.ones((3, 4), bool))
        m.row = m.row.copy()
        m.row[0] = 5
        return m

    def coo_neg():
        m = sp.coo_matrix(np.ones((3, 4), bool))
        m.col = m.col.copy()
        m.col[0] = -2
        return m

    def indptr_end():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indptr = m.indptr.copy()
        m.indptr[-1] = 5
        return m

    def words_reassigned():
        pb = _ie().pack_bits(np.ones((2, 3), bool))
        pb.words = np.zeros((2, 1))  # a float array
        return pb

    return [("CSR with a too short indptr", short_indptr), ("CSR with a too long indptr", long_indptr),
            ("CSR with a column index >= n", bad_index), ("CSR with a negative column index", neg_index),
            ("CSR with a decreasing indptr", decreasing), ("CSC with a row index >= n", csc_bad),
            ("COO with a row >= n", coo_bad), ("COO with a negative col", coo_neg),
            ("CSR with indptr[-1] != nnz", indptr_end),
            ("3-d bool array", lambda: np.zeros((2, 2, 2), bool)), ("1-d bool array", lambda: np.zeros(3, bool)),
            ("float array", lambda: np.zeros((2, 3))), ("int array holding 2", lambda: np.full((2, 3), 2)),
            ("object array", lambda: np.array([[True, None]], dtype=object)), ("None", lambda: None),
            ("str", lambda: "sets"), ("dict", lambda: {}), ("ragged list", lambda: [[True], [True, False]]),
            ("meta tensor", lambda: _torch().empty((2, 3), dtype=_torch().bool, device="meta")),
            ("sparse torch tensor", lambda: _torch().ones((2, 3)).to_sparse()),
            ("nested tensor", torch_oddities((2, 3))[1][1]), ("PackedBits whose words became floats", words_reassigned)]


def gen_greedy_cover(rng) -> Case:
    ie = _ie()
    from reference import naive_greedy_cover

    dense = _cover_setup(rng)
    n_cand, n_el = dense.shape
    wkind = _pick(rng, ["none", "int", "float", "int"])
    w = None if wkind == "none" else (rng.integers(0, 6, n_el) if wkind == "int"
                                      else np.round(rng.random(n_el) * 5, int(rng.integers(0, 3))))
    budget = None if rng.random() < 0.5 else int(rng.integers(0, n_cand + 2))
    target = None if rng.random() < 0.6 else float(rng.integers(0, 40))
    mode = _pick(rng, ["format", "format", "reference", "odd weights", "bad sets", "bad weights", "bad scalar"])

    def call(sets=None, weights="same", **kw):
        a = dict(budget=budget, target=target)
        a.update(kw)
        r = ie.greedy_cover(dense if sets is None else sets, weights=w if isinstance(weights, str) else weights, **a)
        return [r.indices, r.gains, r.covered]

    if mode == "reference":
        def fn():
            idx, gains, covered = naive_greedy_cover(dense, w, budget, target)
            got = call()
            check_equal(got[0], idx, "indices vs reference")
            check_close(got[1], gains, "gains vs reference")
            check_close(got[2], covered, "covered vs reference")
        return Case("greedy_cover", f"{n_cand}x{n_el} {wkind} weights, budget={budget}, target={target} vs reference",
                    fn, "ok")
    if mode == "format":
        fmt = _pick(rng, FAMILY_FORMATS)

        def fn():
            check_equal(call(_fmt_family(dense, fmt, rng)), call(), f"sets as {fmt}")
        return Case("greedy_cover", f"sets as {fmt} ({n_cand}x{n_el})", fn, "ok")
    if mode == "odd weights":
        if w is None:
            w = rng.integers(0, 6, n_el)
        wv = w.astype(_pick(rng, ["i1", "i2", "u4", "u8", "f4", "f8", "f2"]) if w.dtype.kind in "iu" else _pick(rng, ["f8", "f4"]))
        w = wv.astype(np.float64) if wv.dtype.kind == "f" else wv.astype(np.int64)
        how, make = same_values(wv, rng)

        def fn():
            check_equal(call(weights=make()), call(), f"{how} {wv.dtype} weights")
        return Case("greedy_cover", f"weights: {how} {wv.dtype}", fn, "ok")
    if mode == "bad sets":
        desc, make = _pick(rng, _bad_families(rng, dense))
        return Case("greedy_cover", f"sets: {desc}", lambda: ie.greedy_cover(make()), "error", ["sets"])
    if mode == "bad weights":
        opts = [("NaN", lambda: np.full(n_el, np.nan)), ("inf", lambda: np.full(n_el, np.inf)),
                ("negative", lambda: np.full(n_el, -1)), ("wrong length", lambda: np.ones(n_el + 1)),
                ("2-d", lambda: np.ones((1, n_el))), ("bool", lambda: np.ones(n_el, bool)),
                ("complex", lambda: np.ones(n_el, complex)), ("str", lambda: "1"), ("dict", lambda: {}),
                ("meta tensor", lambda: _torch().empty(n_el, device="meta"))]
        desc, make = _pick(rng, opts)
        if n_el == 0 and desc in ("NaN", "inf", "negative"):
            desc, make = "wrong length", (lambda: np.ones(1))
        return Case("greedy_cover", f"weights={desc}", lambda: ie.greedy_cover(dense, weights=make()), "error", ["weights"])
    param = _pick(rng, ["budget", "target", "num_threads"])
    if param == "budget":
        desc, make, exp = _pick(rng, bad_ints(0, allow_none=True))
        if exp == "memory":  # a huge budget is just "no limit" if it fits int64; beyond: refuse
            pass
    elif param == "target":
        desc, make, exp = _pick(rng, bad_reals(0.0, allow_none=True))
    else:
        desc, make, exp = _pick(rng, bad_ints(0, allow_none=True))
    return Case("greedy_cover", f"{param}={desc}", lambda: ie.greedy_cover(dense, **{param: make()}), "error",
                [param], memory_ok=False)


def gen_ratio_cover(rng) -> Case:
    ie = _ie()
    from reference import naive_ratio_greedy_cover

    n = int(rng.integers(0, 6))
    cost = rng.random((n, int(rng.integers(0, 30)))) < 0.3
    gain = rng.random((n, int(rng.integers(0, 30)))) < 0.3
    target = float(rng.integers(0, 20))
    mode = _pick(rng, ["format", "reference", "many", "bad", "bad scalar", "bad many"])

    def call(c=None, g=None, **kw):
        r = ie.ratio_greedy_cover(cost if c is None else c, gain if g is None else g, target=kw.pop("target", target), **kw)
        return [r.indices, r.covered_cost, r.covered_gain, r.reached, r.n_greedy]

    if mode == "reference":
        def fn():
            want = naive_ratio_greedy_cover(cost, gain, target)
            check_equal(call(), list(want), "ratio cover vs reference")
        return Case("ratio_greedy_cover", f"{cost.shape} / {gain.shape}, target={target} vs reference", fn, "ok")
    if mode == "format":
        f1, f2 = _pick(rng, FAMILY_FORMATS), _pick(rng, FAMILY_FORMATS)

        def fn():
            check_equal(call(_fmt_family(cost, f1, rng), _fmt_family(gain, f2, rng)), call(), f"{f1}/{f2}")
        return Case("ratio_greedy_cover", f"cost_sets as {f1}, gain_sets as {f2}", fn, "ok")
    if mode == "many":
        def fn():
            probs = [(cost, gain, target), (_fmt_family(cost, "csr", rng), gain, target + 1), (cost[:0], gain[:0], 0)]
            got = ie.ratio_greedy_cover_many(probs)
            for p, r in zip(probs, got):
                want = ie.ratio_greedy_cover(p[0], p[1], target=p[2])
                check_equal([r.indices, r[1:]], [want.indices, want[1:]], "many vs one by one")
        return Case("ratio_greedy_cover_many", "three problems vs one call each", fn, "ok")
    if mode == "bad":
        arg = _pick(rng, ["cost_sets", "gain_sets"])
        desc, make = _pick(rng, _bad_families(rng, cost) + [("other candidate count", lambda: np.zeros((n + 1, 3), bool))])

        def fn():
            if arg == "cost_sets":
                ie.ratio_greedy_cover(make(), gain, target=target)
            else:
                ie.ratio_greedy_cover(cost, make(), target=target)
        names = [arg] if desc != "other candidate count" else ["cost_sets", "gain_sets"]
        return Case("ratio_greedy_cover", f"{arg}: {desc}", fn, "error", names)
    if mode == "bad many":
        opts = [("a dict", lambda: {}), ("a triple that is a pair", lambda: [(cost, gain)]), ("None", lambda: None),
                ("a bad family inside", lambda: [(cost, gain, 1), (np.zeros((2, 2, 2), bool), gain, 1)]),
                ("a NaN target", lambda: [(cost, gain, math.nan)]), ("a str target", lambda: [(cost, gain, "1")]),
                ("an array of problems", lambda: np.zeros((2, 3))), ("a generator", lambda: ((cost, gain, 1) for _ in range(2)))]
        desc, make = _pick(rng, opts)
        return Case("ratio_greedy_cover_many", f"problems={desc}", lambda: ie.ratio_greedy_cover_many(make()), "error",
                    ["problems"])
    param = _pick(rng, ["target", "eps_cost", "eps_gain", "tighten", "num_threads"])
    if param == "tighten":
        opts = [("'yes'", lambda: "yes"), ("1", lambda: 1), ("None", lambda: None), ("np.array([True])", lambda: np.array([True]))]
        desc, make = _pick(rng, opts)
    elif param == "num_threads":
        desc, make, _ = _pick(rng, bad_ints(0, allow_none=True))
    else:
        desc, make, _ = _pick(rng, bad_reals(0.0, allow_inf=param == "target"))
    kw = {"target": target}
    return Case("ratio_greedy_cover", f"{param}={desc}",
                lambda: ie.ratio_greedy_cover(cost, gain, **dict(kw, **{param: make()})), "error", [param])


def gen_packed_bits(rng) -> Case:
    ie = _ie()
    rows, n_bits = int(rng.integers(0, 5)), int(rng.integers(0, 200))
    dense = rng.random((rows, n_bits)) < 0.5
    mode = _pick(rng, ["odd dense", "reference", "odd words", "bad words", "bad n_bits", "bad dense"])
    if mode == "reference":
        def fn():
            pb = ie.pack_bits(dense)
            nw = (n_bits + 63) // 64
            padded = np.zeros((rows, nw * 64), bool)
            padded[:, :n_bits] = dense
            want = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64).reshape(rows, nw)
            check_equal(pb.words, want, "words vs np.packbits")
            check_equal(pb.to_dense(), dense, "to_dense")
            check_equal(pb.popcount(), dense.sum(axis=1).astype(np.int64), "popcount")
        return Case("pack_bits", f"({rows}, {n_bits}) vs np.packbits", fn, "ok")
    if mode == "odd dense":
        val = dense.astype(_pick(rng, ["?", "u1", "i8", "i2"]))
        how, make = same_values(val, rng)
        return Case("pack_bits", f"dense: {how} {val.dtype}",
                    lambda: check_equal(ie.pack_bits(make()).words, ie.pack_bits(dense).words, "words"), "ok")
    if mode == "odd words":
        words = ie.pack_bits(dense).words
        how, make = same_values(words.view(_pick(rng, ["u8", "i8"])), rng, allow_lists=False)

        def fn():
            check_equal(ie.PackedBits(make(), n_bits).to_dense(), dense, f"{how} words")
        return Case("PackedBits", f"words: {how}", fn, "ok")
    if mode == "bad words":
        nw = (n_bits + 63) // 64
        opts = [("uint32 words", lambda: np.zeros((rows, nw), np.uint32)), ("float words", lambda: np.zeros((rows, nw))),
                ("wrong width", lambda: np.zeros((rows, nw + 1), np.uint64)), ("1-d", lambda: np.zeros(nw, np.uint64)),
                ("padding bits set", lambda: np.full((max(rows, 1), max(nw, 1)), 2 ** 64 - 1, np.uint64)),
                ("None", lambda: None), ("str", lambda: "words"), ("meta tensor", lambda: _torch().empty((rows, nw), dtype=_torch().int64, device="meta"))]
        desc, make = _pick(rng, opts)
        nb = n_bits if desc != "padding bits set" else max(nw, 1) * 64 - 1
        return Case("PackedBits", f"words={desc}", lambda: ie.PackedBits(make(), nb), "error", ["words"])
    if mode == "bad n_bits":
        desc, make, _ = _pick(rng, [v for v in bad_ints(0) if v[2] == "error"])
        return Case("PackedBits", f"n_bits={desc}", lambda: ie.PackedBits(np.zeros((1, 1), np.uint64), make()), "error",
                    ["n_bits"])
    opts = [(d, m) for d, m in junk_objects()] + [("3-d", lambda: np.zeros((2, 2, 2), bool)), ("int 2", lambda: np.full((2, 2), 2)),
                                                   ("float", lambda: np.zeros((2, 2))), ("meta", lambda: _torch().empty((2, 2), device="meta"))]
    desc, make = _pick(rng, opts)
    return Case("pack_bits", f"dense={desc}", lambda: ie.pack_bits(make()), "error", ["dense"])


# ---------------------------------------------------------------------------- rank / INVERT

def _rank_setup(rng):
    n = int(rng.integers(1, 40))
    k = int(rng.integers(1, 4))
    c = int(rng.integers(1, 4))
    acts = np.round(rng.standard_normal((n, k)) * 3, int(rng.integers(0, 2)))
    if rng.random() < 0.3:
        acts.reshape(-1)[int(rng.integers(acts.size))] = _pick(rng, [np.inf, -np.inf, 5e-324, 1e308, -0.0])
    labels = rng.random((n, c)) < 0.4
    return acts, labels


def _auc_reference(acts, labels):
    k, c = acts.shape[1], labels.shape[1]
    out = np.full((k, c), np.nan)
    for j in range(k):
        a = acts[:, j]
        for q in range(c):
            pos, neg = a[labels[:, q]], a[~labels[:, q]]
            if pos.size and neg.size:
                gt = (pos[:, None] > neg[None, :]).sum()
                eq = (pos[:, None] == neg[None, :]).sum()
                out[j, q] = (gt + 0.5 * eq) / (pos.size * neg.size)
    return out


def gen_rank(rng) -> Case:
    from interp_engine.engine import rank

    acts, labels = _rank_setup(rng)
    fn_name = _pick(rng, ["midranks", "auc", "mannwhitney_pvalues"])
    f = getattr(rank, fn_name)

    def call(a=_SAME, l=_SAME, **kw):
        a = acts if a is _SAME else a
        l = labels if l is _SAME else l
        return f(a, **kw) if fn_name == "midranks" else f(a, l, **kw)

    mode = _pick(rng, ["odd acts", "odd acts", "odd labels", "reference", "bad acts", "bad labels", "torch oddity"])
    code = _float_dtype(rng, ("f2", "f4", "f8", "bf16"))
    if code == "bf16":
        import torch

        acts = torch.from_numpy(acts.astype(np.float32)).to(torch.bfloat16).float().numpy().astype(np.float64)
    else:
        acts = _cast_exact(acts, code)
    if mode == "reference":
        def fn():
            import scipy.stats as st

            if fn_name == "midranks":
                check_equal(call(), st.rankdata(acts, axis=0), "midranks vs scipy.stats.rankdata")
            elif fn_name == "auc":
                check_close(call(), _auc_reference(acts, labels), "auc vs pairwise count", rtol=1e-13)
            else:
                a, p = call()
                check_close(a, _auc_reference(acts, labels), "auc vs pairwise count", rtol=1e-13)
                want = np.full(p.shape, np.nan)
                for j in range(acts.shape[1]):
                    for q in range(labels.shape[1]):
                        ins, out = acts[labels[:, q], j], acts[~labels[:, q], j]
                        if ins.size and out.size and np.isfinite(acts[:, j]).all():
                            if np.ptp(acts[:, j]) == 0:
                                want[j, q] = 1.0
                            else:
                                want[j, q] = st.mannwhitneyu(out, ins).pvalue  # scipy's default method, as ours
                        elif ins.size and out.size:
                            want[j, q] = p[j, q]  # scipy's ranks of inf agree; skip
                check_close(p, want, "p-values vs scipy (method auto)", rtol=1e-9, atol=1e-300)
        return Case(f"rank.{fn_name}", f"{acts.shape} vs reference", fn, "ok")
    if mode == "odd acts":
        if code == "bf16":
            import torch

            how, make = "torch bfloat16", (lambda: torch.from_numpy(acts.astype(np.float32)).to(torch.bfloat16))
        else:
            how, make = same_values(acts.astype(code), rng)
        return Case(f"rank.{fn_name}", f"activations: {how} {code}", lambda: check_equal(call(make()), call(), how), "ok")
    if mode == "odd labels":
        if fn_name == "midranks":
            return Case("rank.midranks", "num_threads=1 vs default",
                        lambda: check_equal(call(num_threads=1), call(), "threads"), "ok")
        val = labels.astype(_pick(rng, ["?", "u1", "i8", "u8", "i2"]))
        how, make = same_values(val, rng)
        if rng.random() < 0.3:
            how, make = "PackedBits (C, N)", (lambda: _ie().pack_bits(labels.T))
        return Case(f"rank.{fn_name}", f"labels: {how}", lambda: check_equal(call(l=make()), call(), how), "ok")
    if mode == "torch oddity":
        desc, make = _pick(rng, torch_oddities(acts.shape))
        return Case(f"rank.{fn_name}", f"activations: {desc}", lambda: call(make()), "error", ["activations"])
    if mode == "bad acts":
        n, k = acts.shape
        opts = [(d, m) for d, m in junk_objects()] + [
            ("NaN", lambda: np.full((n, k), np.nan)), ("int", lambda: np.zeros((n, k), np.int64)),
            ("1-d", lambda: np.zeros(n)), ("3-d", lambda: np.zeros((n, k, 1))), ("(0, K)", lambda: np.zeros((0, k))),
            ("(N, 0)", lambda: np.zeros((n, 0))), ("complex", lambda: np.zeros((n, k), complex)),
            ("bool", lambda: np.zeros((n, k), bool))]
        desc, make = _pick(rng, opts)
        if fn_name != "midranks" and desc in ("(0, K)",):
            names = ["activations", "labels"]
        else:
            names = ["activations"]
        return Case(f"rank.{fn_name}", f"activations={desc}", lambda: call(make()), "error", names)
    if fn_name == "midranks":
        desc, make, _ = _pick(rng, bad_ints(0, allow_none=True))
        return Case("rank.midranks", f"num_threads={desc}", lambda: call(num_threads=make()), "error", ["num_threads"])
    n, c = labels.shape
    opts = [(d, m) for d, m in junk_objects()] + [
        ("other row count", lambda: np.zeros((n + 1, c), bool)), ("values 2", lambda: np.full((n, c), 2)),
        ("float", lambda: np.zeros((n, c))), ("1-d", lambda: np.zeros(n, bool)),
        ("PackedBits with other N", lambda: _ie().pack_bits(np.zeros((c, n + 1), bool))),
        ("meta tensor", lambda: _torch().empty((n, c), dtype=_torch().bool, device="meta"))]
    desc, make = _pick(rng, opts)
    return Case(f"rank.{fn_name}", f"labels={desc}", lambda: call(l=make()), "error", ["labels"])


def _explain_summary(res):
    return [(n.neuron, n.note, n.evaluations, [(e.formula, e.auc, e.p_value, e.n_inside) for e in n.top]) for n in res]


def gen_invert(rng) -> Case:
    from interp_engine.methods.invert import Invert

    acts, labels = _rank_setup(rng)
    n, k = acts.shape
    c = labels.shape[1]
    mode = _pick(rng, ["odd", "odd", "reference", "bad explain", "bad ctor", "alt ctor"])
    length, beam = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    if mode == "reference":
        def fn():
            from reference import invert_beam_reference

            res = Invert(length=length, beam=beam).explain(acts, labels, top=None)
            for j, nres in enumerate(res):
                want = invert_beam_reference(acts[:, j], labels, length, beam)
                got = [(int(e.n_inside),) for e in nres.top]
                check_equal(got, [(w[1],) for w in want][:len(got)] if got else got, f"neuron {j} inside counts")
                if want and got:
                    u2 = want[0][2]
                    n1 = want[0][1]
                    check_close(nres.best.auc, u2 / (2.0 * n1 * (n - n1)), f"neuron {j} best AUC vs reference")
        return Case("Invert.explain", f"{acts.shape}, length={length}, beam={beam} vs the reference search", fn, "ok")
    if mode == "odd":
        arg = _pick(rng, ["activations", "labels", "neurons"])
        inv = Invert(length=length, beam=beam)
        want = lambda: _explain_summary(inv.explain(acts, labels, top=None))  # noqa: E731
        if arg == "activations":
            base = acts.astype(_pick(rng, ["f4", "f8"]))
            how, make = same_values(base, rng)
            return Case("Invert.explain", f"activations: {how} {base.dtype}", lambda: check_equal(
                _explain_summary(inv.explain(make(), labels, top=None)),
                _explain_summary(inv.explain(base, labels, top=None)), how), "ok")
        if arg == "labels":
            val = labels.astype(_pick(rng, ["?", "u1", "i8"]))
            how, make = same_values(val, rng)
            return Case("Invert.explain", f"labels: {how} {val.dtype}", lambda: check_equal(
                _explain_summary(inv.explain(acts, make(), top=None)), want(), how), "ok")
        alts = [("numpy int array", lambda: np.arange(k)), ("tuple", lambda: tuple(range(k))),
                ("range", lambda: range(k)), ("np.int64 scalar list", lambda: [np.int64(i) for i in range(k)])]
        desc, make = _pick(rng, alts)
        return Case("Invert.explain", f"neurons as {desc}", lambda: check_equal(
            _explain_summary(inv.explain(acts, labels, neurons=make(), top=None)), want(), desc), "ok")
    if mode == "bad explain":
        arg = _pick(rng, ["activations", "labels", "concept_names", "neurons", "top"])
        inv = Invert(length=length, beam=beam)
        if arg == "activations":
            opts = [(d, m) for d, m in junk_objects()] + [("NaN", lambda: np.full((n, k), np.nan)),
                                                           ("int", lambda: np.zeros((n, k), np.int32)),
                                                           ("1-d", lambda: np.zeros(n))] + torch_oddities((n, k))
            desc, make = _pick(rng, opts)
            return Case("Invert.explain", f"activations={desc}", lambda: inv.explain(make(), labels), "error", ["activations"])
        if arg == "labels":
            opts = [(d, m) for d, m in junk_objects()] + [("values 3", lambda: np.full((n, c), 3)),
                                                           ("other N", lambda: np.zeros((n + 2, c), bool)),
                                                           ("(N, 0)", lambda: np.zeros((n, 0), bool))]
            desc, make = _pick(rng, opts)
            return Case("Invert.explain", f"labels={desc}", lambda: inv.explain(acts, make()), "error", ["labels"])
        if arg == "concept_names":
            opts = [("wrong count", lambda: ["a"] * (c + 1)), ("a str", lambda: "abc"), ("an int", lambda: 5),
                    ("a float", lambda: 3.5)]
            desc, make = _pick(rng, opts)
            return Case("Invert.explain", f"concept_names={desc}", lambda: inv.explain(acts, labels, make()), "error",
                        ["concept_names"])
        if arg == "neurons":
            opts = [("[k]", lambda: [k]), ("[-1]", lambda: [-1]), ("[1.0]", lambda: [1.0]), ("'0'", lambda: "0"),
                    ("1.5", lambda: 1.5), ("[True]", lambda: [True]), ("[2**70]", lambda: [2 ** 70]),
                    ("np.array([[0]])", lambda: np.array([[0]])), ("{0: 1}", lambda: {None: 1}), ("object()", lambda: object())]
            desc, make = _pick(rng, opts)
            return Case("Invert.explain", f"neurons={desc}", lambda: inv.explain(acts, labels, neurons=make()), "error",
                        ["neurons"])
        desc, make, _ = _pick(rng, bad_ints(1, allow_none=True) + [("beam + 1", lambda: beam + 1, "error")])
        return Case("Invert.explain", f"top={desc}", lambda: inv.explain(acts, labels, top=make()), "error", ["top"])
    if mode == "alt ctor":
        param = _pick(rng, ["length", "beam", "min_fraction", "max_fraction"])
        if param in ("length", "beam"):
            desc, make = _pick(rng, alt_ints(2))
            base = 2
        else:
            base = 0.0 if param == "min_fraction" else 0.5
            desc, make = _pick(rng, alt_reals(base))

        def fn():
            a = Invert(**{param: make()}).explain(acts, labels, top=None)
            b = Invert(**{param: base}).explain(acts, labels, top=None)
            check_equal(_explain_summary(a), _explain_summary(b), f"{param} as {desc}")
        return Case("Invert", f"{param}={desc}({base})", fn, "ok")
    if rng.random() < 0.1:  # sizes the search cannot allocate (issue 14 item 1)
        desc, kw = _pick(rng, [("length=2**31-1", dict(length=2 ** 31 - 1)), ("beam=2**31-1", dict(beam=2 ** 31 - 1)),
                               ("beam=2**30, length=3", dict(beam=2 ** 30, length=3))])
        return Case("Invert.explain", desc, lambda: Invert(**kw).explain(acts, labels), "error",
                    ["length", "beam", "size"], area="sizes", memory_ok=True)
    param = _pick(rng, ["length", "beam", "min_fraction", "max_fraction", "mode", "num_threads"])
    if param in ("length", "beam"):
        desc, make, exp = _pick(rng, [v for v in bad_ints(1) if v[2] == "error"])
    elif param == "num_threads":
        desc, make, exp = _pick(rng, [v for v in bad_ints(0, allow_none=True) if v[2] == "error"])
    elif param == "mode":
        desc, make, exp = _pick(rng, bad_choices(("positive", "negative")))
    else:
        desc, make, exp = _pick(rng, bad_reals(0.0, 1.0))
    return Case("Invert", f"{param}={desc}", lambda: Invert(**{param: make()}), "error", [param])


def _plain(x):
    """The values of x as a plain native C-contiguous numpy array."""
    if hasattr(x, "detach"):
        import torch

        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return np.ascontiguousarray(t.numpy())
    a = np.asarray(x)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def gen_num_threads(rng) -> Case:
    ie = _ie()
    desc, make, exp = _pick(rng, [v for v in bad_ints(0)])

    def fn():
        before = ie.get_num_threads()
        try:
            ie.set_num_threads(make())
        finally:
            ie.set_num_threads(0)
            del before
    return Case("set_num_threads", f"n={desc}", fn, "error", ["num_threads"])


# ---------------------------------------------------------------------------- accumulator states

class _Pickled:
    """Pickles as ``reduce_value``: a payload as a tampered file would hold it."""

    def __init__(self, reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


def _tampered_pickle(obj, state) -> bytes:
    """The bytes ``pickle.dumps(obj)`` would give if ``obj.__getstate__()``
    returned ``state`` (a tampered file)."""
    obj.__getstate__ = lambda: state  # instance attribute: found by object.__reduce_ex__
    try:
        return pickle.dumps(obj)
    finally:
        del obj.__getstate__


def _cq_fitted(rng, C=None, n=None):
    ie = _ie()
    C = int(rng.integers(1, 3)) if C is None else C
    n = int(rng.integers(0, 700)) if n is None else n
    cq = ie.ChannelQuantiles(C, k=64, seed=int(rng.integers(0, 5)), nan=_pick(rng, ["raise", "skip"]))
    if n:
        cq.update(np.round(rng.standard_normal((n, C)) * 5, 1))
    return cq


def _use_cq(cq):
    """Exercise an accepted sketch: nothing may crash."""
    cq.count, cq.nan_count, cq.memory_bytes
    if (cq.count > 0).all():
        cq.quantile([0.0, 0.5, 1.0])
        cq.rank(np.zeros(cq.num_channels))
    cq.update(np.zeros((3, cq.num_channels)))
    cq.quantile(0.5)
    other = _ie().ChannelQuantiles(cq.num_channels, k=cq.k)
    other.update(np.ones((2, cq.num_channels)))
    cq.merge(other)
    cq.quantile(0.3)
    pickle.loads(pickle.dumps(cq)).quantile(0.5)


def _iou_fitted(rng):
    ie = _ie()
    t = ie.IoUTally(2, 4, [0, 0, 1, 1], 2, output_size=(3, 3), unit_rule=_pick(rng, ["annotated", "lite"]))
    for _ in range(int(rng.integers(0, 3))):
        t.update(rng.standard_normal((2, 2, 2, 2)), np.zeros(2), rng.integers(0, 4, (2, 1, 3, 3)),
                 rng.integers(0, 4, (2, 1)))
    return t


def _use_tally(t):
    t.iou(), t.intersection, t.unit_pixels, t.label_pixels
    t.update(np.zeros((1, t.num_units, 1, 1)), np.zeros(t.num_units))
    t.iou()
    pickle.loads(pickle.dumps(t)).iou()


#: other words a message may use for a state field
_STATE_ALIASES = {"level_sizes": ["level sizes", "level size"], "label_pixels": ["label 0"],
                  "rng_state": ["rng state", "random state"], "nan_count": ["NaN count"]}


def gen_cq_state(rng) -> Case:
    ie = _ie()
    cq = _cq_fitted(rng, n=int(rng.integers(200, 900)))
    d = cq.state_dict()
    C = cq.num_channels
    ls = np.asarray(d["level_sizes"])
    muts = [
        ("missing 'items'", "items", lambda d: d.pop("items"), "error"),
        ("missing 'rng_state'", "rng_state", lambda d: d.pop("rng_state"), "error"),
        ("wide = 2", "wide", lambda d: d.__setitem__("wide", np.full_like(np.asarray(d["wide"]), 2)), "error"),
        ("wide = -1", "wide", lambda d: d.__setitem__("wide", np.full_like(np.asarray(d["wide"]), -1)), "error"),
        ("k changed", "k", lambda d: d.__setitem__("k", d["k"] + 36), "error"),
        ("k below 64", "k", lambda d: d.__setitem__("k", 10), "error"),
        ("k = 2**40", "k", lambda d: d.__setitem__("k", 2 ** 40), "error"),
        ("level sizes whose sum overflows", "level_sizes",
         lambda d: d.__setitem__("level_sizes", np.full_like(ls, 2 ** 62)), "error"),
        ("a negative level size", "level_sizes",
         lambda d: d.__setitem__("level_sizes", np.where(np.arange(ls.size) == 0, -1, ls)), "error"),
        ("level sizes not matching items", "level_sizes", lambda d: d.__setitem__("level_sizes", ls + 1), "error"),
        ("a negative count", "count", lambda d: d.__setitem__("count", -np.abs(np.asarray(d["count"])) - 1), "error"),
        ("uint64 count 2**63 (negative as int64)", "count",
         lambda d: d.__setitem__("count", np.full(C, 2 ** 63, np.uint64)), "error"),
        ("count 2**63 - 1 (weights wrap at 2**64)", "count",
         lambda d: d.__setitem__("count", np.full(C, 2 ** 63 - 1, np.int64)), "error"),
        ("count not matching the items' weights", "count",
         lambda d: d.__setitem__("count", np.asarray(d["count"]) + 12345), "error"),
        ("NaN item", "items", lambda d: np.asarray(d["items"]).reshape(-1).__setitem__(0, np.nan) if np.asarray(d["items"]).size else d.__setitem__("items", np.array([np.nan])), "error"),
        ("items as int", "items", lambda d: d.__setitem__("items", np.asarray(d["items"]).astype(np.int64)), "error"),
        ("items as object", "items", lambda d: d.__setitem__("items", np.asarray(d["items"]).astype(object)), "error"),
        ("items 2-d", "items", lambda d: d.__setitem__("items", np.asarray(d["items"])[None]), "error"),
        ("min > max", "min", lambda d: d.__setitem__("min", np.asarray(d["max"]) + 1.0), "error"),
        ("NaN max", "max", lambda d: d.__setitem__("max", np.full(C, np.nan)), "error"),
        ("rng_state too short", "rng_state", lambda d: d.__setitem__("rng_state", np.asarray(d["rng_state"])[:-1]), "error"),
        ("num_channels changed", "num_channels", lambda d: d.__setitem__("num_channels", C + 1), "error"),
        ("num_channels = 2**62", "num_channels", lambda d: d.__setitem__("num_channels", 2 ** 62), "error"),
        ("version 3 (unknown: states are version 2)", "version", lambda d: d.__setitem__("version", 3), "error"),
        ("version '1'", "version", lambda d: d.__setitem__("version", "1"), "error"),
        ("skip_nan = 2", "skip_nan", lambda d: d.__setitem__("skip_nan", 2), "error"),
        ("seed a str", "seed", lambda d: d.__setitem__("seed", "0"), "error"),
        ("seed a float", "seed", lambda d: d.__setitem__("seed", 1.5), "error"),
        ("negative nan_count", "nan_count", lambda d: d.__setitem__("nan_count", np.full(C, -1)), "error"),
        ("k a bool", "k", lambda d: d.__setitem__("k", True), "error"),
        ("items reversed", "items", lambda d: d.__setitem__("items", np.asarray(d["items"])[::-1].copy()), "any"),
        ("an item changed", "items", lambda d: np.asarray(d["items"]).reshape(-1).__setitem__(-1, 1e300) if np.asarray(d["items"]).size else None, "any"),
        ("rng_state zeros", "rng_state", lambda d: d.__setitem__("rng_state", np.zeros_like(np.asarray(d["rng_state"]))), "any"),
        ("level_sizes shifted", "level_sizes", lambda d: d.__setitem__("level_sizes", np.roll(ls, 1)), "any"),
        ("not a dict", "state_dict", lambda d: None, "error"),
    ]
    desc, field, mut, exp = _pick(rng, muts)
    how = _pick(rng, ["from_state_dict", "pickle", "__setstate__"])

    def fn():
        st = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        mut(st)
        payload = [1, 2] if desc == "not a dict" else st
        if how == "from_state_dict":
            obj = ie.ChannelQuantiles.from_state_dict(payload)
        elif how == "pickle":
            obj = pickle.loads(_tampered_pickle(ie.ChannelQuantiles(1, k=64), payload))
        else:
            obj = ie.ChannelQuantiles.__new__(ie.ChannelQuantiles)
            obj.__setstate__(payload)
        _use_cq(obj)
    names = ([field] + _STATE_ALIASES.get(field, [])) if desc != "not a dict" else ["state", "state_dict"]
    return Case(f"ChannelQuantiles.{how}", f"state with {desc}", fn, exp, names, area="states")


def gen_iou_state(rng) -> Case:
    ie = _ie()
    t = _iou_fitted(rng)
    d = t.state_dict()

    def setk(k, v):
        return lambda d: d.__setitem__(k, v() if callable(v) else v)

    I, L, A = d["intersection"], d["label_pixels"], d["unit_pixels"]
    muts = [
        ("unit_pixels below intersection", "unit_pixels", setk("unit_pixels", lambda: np.zeros_like(A)), "error" if I.sum() else "any"),
        ("negative intersection", "intersection", setk("intersection", lambda: I - 1), "error"),
        ("intersection above label_pixels", "intersection", setk("intersection", lambda: I + np.where(np.arange(I.shape[1]) > 0, L + 1, 0)), "error"),
        ("uint64 counts 2**63", "label_pixels", setk("label_pixels", lambda: np.where(np.arange(L.size) > 0, 2 ** 63, 0).astype(np.uint64)), "error"),
        ("float counts", "intersection", setk("intersection", lambda: I.astype(float)), "error"),
        ("transposed intersection", "intersection", setk("intersection", lambda: I.T.copy()), "error"),
        ("label_pixels 2-d", "label_pixels", setk("label_pixels", lambda: L[None]), "error"),
        ("images negative", "images", setk("images", -1), "error"),
        ("images a str", "images", setk("images", "3"), "error"),
        ("images a float", "images", setk("images", 2.0), "error"),
        ("output_size (2**32, 2**32)", "output_size", setk("output_size", (2 ** 32, 2 ** 32)), "error"),
        ("output_size a str", "output_size", setk("output_size", "33"), "error"),
        ("num_units 2**62", "num_units", setk("num_units", 2 ** 62), "error"),
        ("label_category out of range", "label_category", setk("label_category", np.array([0, 0, 1, 5])), "error"),
        ("unit_rule unknown", "unit_rule", setk("unit_rule", "lax"), "error"),
        ("format wrong", "format", setk("format", "x"), "error"),
        ("version 2", "version", setk("version", 2), "error"),
        ("missing 'unit_pixels'", "unit_pixels", lambda d: d.pop("unit_pixels"), "error"),
        ("num_pixel_maps -1", "num_pixel_maps", setk("num_pixel_maps", -1), "error"),
        ("num_pixel_maps a str", "num_pixel_maps", setk("num_pixel_maps", "1"), "error"),
        ("label 0 counted", "label_pixels", setk("label_pixels", lambda: L + np.where(np.arange(L.size) == 0, 5, 0)), "error"),
        ("counts near 2**63", "intersection", lambda d: (d.__setitem__("label_pixels", np.where(np.arange(L.size) > 0, 2 ** 62, 0)),
                                                         d.__setitem__("intersection", np.where(np.arange(L.size) > 0, 2 ** 62, 0)[None].repeat(2, 0)),
                                                         d.__setitem__("unit_pixels", np.full_like(A, 2 ** 62))), "any"),
        ("not a dict", "state", lambda d: None, "error"),
    ]
    desc, field, mut, exp = _pick(rng, muts)
    how = _pick(rng, ["from_state_dict", "pickle"])
    if desc == "not a dict":
        field = "state"

    def fn():
        st = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        mut(st)
        payload = [1] if desc == "not a dict" else st
        if how == "from_state_dict":
            obj = ie.IoUTally.from_state_dict(payload)
        else:
            from interp_engine.engine.iou import _from_state

            obj = pickle.loads(pickle.dumps(_Pickled((_from_state, (payload, None)))))
        _use_tally(obj)
    area = "sizes" if "2**" in desc else "states"
    return Case(f"IoUTally.{how}", f"state with {desc}", fn, exp, [field] + _STATE_ALIASES.get(field, []), area=area,
                memory_ok="2**" in desc)


def gen_corrupt_pickle(rng) -> Case:
    """Byte-level damage to a pickle: refusing or accepting are both fine (the
    bytes may still decode to a valid state), crashing is not."""
    obj = _cq_fitted(rng, n=300) if rng.random() < 0.5 else _iou_fitted(rng)
    blob = bytearray(pickle.dumps(obj, protocol=int(rng.integers(2, 6))))
    how = _pick(rng, ["truncate", "flip bytes", "flip one bit", "zero a run"])
    if how == "truncate":
        blob = blob[: int(rng.integers(0, len(blob)))]
    elif how == "flip bytes":
        for i in rng.integers(0, len(blob), size=int(rng.integers(1, 6))):
            blob[int(i)] = int(rng.integers(0, 256))
    elif how == "flip one bit":
        i = int(rng.integers(0, len(blob)))
        blob[i] ^= 1 << int(rng.integers(0, 8))
    else:
        i = int(rng.integers(0, len(blob)))
        blob[i:i + 16] = bytes(min(16, len(blob) - i))
    data = bytes(blob)
    name = type(obj).__name__

    def fn():
        try:
            back = pickle.loads(data)
        except (ValueError, TypeError):
            raise
        except Exception:  # the pickle module's own errors: not the package's to word
            return
        if isinstance(back, _ie().ChannelQuantiles):
            _use_cq(back)
        elif isinstance(back, _ie().IoUTally):
            _use_tally(back)
    return Case(f"pickle.loads({name})", f"pickle with {how}", fn, "any", area="states")


def gen_merge_states(rng) -> Case:
    return _merge_case(_pick(rng, ["self", "iou overflow", "cq overflow", "state then merge"]), rng)


def _merge_case(what: str, rng) -> Case:
    ie = _ie()
    if what == "self":
        def fn():
            t = _iou_fitted(rng)
            cq = _cq_fitted(rng, n=100)
            before_t, before_q = t.intersection.copy(), cq.count.copy()
            outcome = []
            for obj in (t, cq):
                try:
                    obj.merge(obj)
                    outcome.append("accepted")
                except ValueError as e:
                    outcome.append(f"refused ({e})")
            if outcome[0].startswith("refused") and outcome[1].startswith("refused"):
                raise ValueError(f"other: both refuse self-merge: {outcome}")
            if outcome[0] != outcome[1]:
                raise WrongResult(f"one rule for self-merge expected: IoUTally.merge(self) {outcome[0]}, "
                                  f"ChannelQuantiles.merge(self) {outcome[1]}")
            check_equal(t.intersection, 2 * before_t, "IoUTally self-merge doubles")
            check_equal(cq.count, 2 * before_q, "ChannelQuantiles self-merge doubles")
        return Case("merge(self)", "IoUTally and ChannelQuantiles merged with themselves", fn, "any",
                    ["other", "itself", "self"], area="states")
    if what == "iou overflow":
        # a self-consistent state (it loads) with one counter just above 2**62, so that it is the
        # merge's sum that overflows; the refused merge must leave the tally as it was
        which = _pick(rng, ["images", "unit_pixels", "label_pixels", "intersection"])

        def fn():
            t = _iou_fitted(rng)
            d = {k: v for k, v in t.state_dict().items() if k not in ("digest", "field_digests")}
            big = 2 ** 62 + 12345
            d["num_pixel_maps"], d["num_image_labels"] = 1, 1  # P + S = 2 label maps per 3 x 3 image
            d["images"] = big if which == "images" else big // 9 + 1  # unit_pixels <= 9 images
            if which == "unit_pixels":
                d["unit_pixels"] = np.full((2, 2), big)
            if which in ("label_pixels", "intersection"):
                d["label_pixels"] = np.where(np.arange(4) == 1, big, d["label_pixels"])  # sum <= 18 images
            if which == "intersection":
                d["intersection"] = np.where(np.arange(4) == 1, big, d["intersection"])
                d["unit_pixels"] = np.where(np.arange(2) == 0, big, d["unit_pixels"])  # lite: I <= 2 A
            a = ie.IoUTally.from_state_dict(d)
            b = ie.IoUTally.from_state_dict(d)
            before = [np.copy(x) for x in (a.intersection, a.label_pixels, a.unit_pixels, a.images)]
            try:
                a.merge(b)
            except ValueError:
                after = [a.intersection, a.label_pixels, a.unit_pixels, a.images]
                if not all(np.array_equal(x, y) for x, y in zip(before, after)):
                    raise WrongResult("a refused merge changed the tally") from None
                raise
            if (a.intersection < 0).any() or (a.label_pixels < 0).any() or (a.unit_pixels < 0).any() \
                    or a.images < 0:
                raise WrongResult(f"merged counts wrapped: {a.intersection}, {a.images}")
        case = Case("IoUTally.merge", f"counts whose sum overflows int64 ({which})", fn, "error",
                    ["overflow", "int64", "2**63", "other"], area="states")
        case.also = (which,)
        return case
    if what == "cq overflow":
        def fn():
            a = _cq_fitted(rng, C=1, n=100)
            d = a.state_dict()
            d["count"] = np.asarray(d["count"]) * 0 + 2 ** 62
            b = ie.ChannelQuantiles.from_state_dict(d)
            c = ie.ChannelQuantiles.from_state_dict(d)
            b.merge(c)
            if (b.count < 0).any():
                raise WrongResult(f"merged count wrapped: {b.count}")
        return Case("ChannelQuantiles.merge", "counts whose sum overflows int64", fn, "error",
                    ["count", "overflow", "int64", "2**63", "other"], area="states")

    def fn():
        a = _cq_fitted(rng, C=2, n=300)
        b = _cq_fitted(rng, C=2, n=300)
        d = b.state_dict()
        d["k"] = 100  # inconsistent with the levels written at k=64
        other = ie.ChannelQuantiles.from_state_dict(d)
        a.merge(other)
        _use_cq(a)
    return Case("ChannelQuantiles.merge", "merge with a state whose k was changed", fn, "error", ["k"], area="states")


# ---------------------------------------------------------------------------- files

_TMP: Dict[str, str] = {}


def _tmpdir() -> str:
    """A fresh directory for one case (inside the run's directory)."""
    base = _TMP.get("dir") or tempfile.mkdtemp(prefix="ie-fuzz-")
    _TMP["dir"] = base
    d = tempfile.mkdtemp(dir=base)
    return d


def _tiny_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()


def _dissection_file(path):
    from interp_engine.methods.dissection import DissectionResult, LayerResult

    K, L, C = 3, 4, 2
    rng = np.random.default_rng(0)
    lr = LayerResult(layer="0", label_names=["-", "a", "b", "c"], label_category=np.array([0, 0, 1, 1]),
                     categories=["object", "color"], thresholds=rng.random(K), iou=rng.random((K, L)) * 0.1,
                     intersection=np.ones((K, L), np.int64), label_pixels=np.full(L, 5, np.int64),
                     unit_pixels=np.full((K, C), 7, np.int64), top_images=np.zeros((K, 2), np.int64),
                     top_values=np.ones((K, 2)), top_maps=np.zeros((K, 2, 2, 2), np.float32))
    DissectionResult({"0": lr}, {"q": 0.005}, {"t": 1.0}).save(path)


def _tcav():
    from interp_engine.methods.tcav import TCAV

    return TCAV(_tiny_model(), "0", classifier="mean_difference", num_random=2, features="mean")


def _cav_file(path):
    rng = np.random.default_rng(0)
    t = _tcav().fit_activations({"c": rng.random((6, 4))}, [rng.random((6, 4)) for _ in range(3)])
    t.save(path)


def _cv():
    from interp_engine.methods.concept_vectors import ConceptVectors

    return ConceptVectors(_tiny_model(), "0")


def _cv_file(path):
    cv = _cv()
    cv.concepts, cv.categories, cv.labels = ["a", "b"], ["object", "object"], [1, 2]
    cv.vectors = np.ones((2, 4))
    cv.scales, cv.biases, cv.thresholds = np.ones(2), np.zeros(2), np.zeros(4)  # K = 4 units
    cv.best_units, cv.train_unit_iou = np.array([0, 1]), np.array([0.1, 0.2])
    cv.save(path)


_LOADERS = {
    "DissectionResult.load": (_dissection_file, lambda p: _loader_dissection(p)),
    "TCAV.load": (_cav_file, lambda p: _load_tcav(p)),
    "ConceptVectors.load": (_cv_file, lambda p: _load_cv(p)),
}


def _load_tcav(p):
    from interp_engine.methods.tcav import TCAV

    # the layer and settings of _tcav() given: a file of another layer or setting is refused, naming it
    return TCAV.load(p, _tiny_model(), "0", classifier="mean_difference", num_random=2, features="mean")


def _load_cv(p):
    from interp_engine.methods.concept_vectors import ConceptVectors

    return ConceptVectors.load(p, _tiny_model(), "0", method="semantic", binarize=True, quantile=0.005)


def _loader_dissection(p):
    from interp_engine.methods.dissection import DissectionResult

    r = DissectionResult.load(p)
    for name in r:  # use what was loaded: a bad array must be refused on load, not here
        lr = r[name]
        lr.summary(), lr.table(), lr.best_label, lr.detectors
    return r


def _rewrite_npz(src, dst, fn):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    arrays, header = fn(arrays, header)
    if header is not None:
        arrays["header"] = np.array(header if isinstance(header, str) else json.dumps(header))
    np.savez(dst, **arrays)


def _set(key, f):
    """An edit of the npz arrays: ``arrays[key] = f(arrays[key])``."""
    def g(a, h):
        a[key] = f(a[key])
        return a, h
    return g


def _drop(key):
    def g(a, h):
        a.pop(key)
        return a, h
    return g


def _hset(path, value):
    """An edit of the JSON header: the value at ``path`` (keys/indices) replaced."""
    def g(a, h):
        d = h
        for k in path[:-1]:
            d = d[k]
        if value is _DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value(d[path[-1]]) if callable(value) else value
        return a, h
    return g


_DELETE = object()


def _file_edits(target):
    """(description, edit, field the message should name, expect) per loader;
    each edit makes a file its loader must refuse (expect "error"), or one
    whose validity is a matter of taste ("any": no crash, clean errors)."""
    deep = lambda n: "[" * n + "]" * n  # noqa: E731
    common = [
        ("header not JSON", lambda a, h: (a, "{not json"), "header", "error"),
        ("header a JSON list", lambda a, h: (a, "[1, 2]"), "header", "error"),
        ("header a JSON string", lambda a, h: (a, '"x"'), "header", "error"),
        ("header nested 100000 deep", lambda a, h: (a, deep(100000)), "header", "error"),
        ("header without format", _hset(("format",), _DELETE), "format", "error"),
        ("header version 99", _hset(("version",), 99), "version", "error"),
        ("header version '1'", _hset(("version",), "1"), "version", "error"),
        ("no header array", lambda a, h: (a, None), "header", "error"),
        ("an extra array", lambda a, h: (dict(a, extra=np.zeros(3)), h), "extra", "any"),
    ]
    if target == "DissectionResult.load":
        L = "l0."
        return common + [
            ("layers not a list", _hset(("layers",), 12345), "layers", "error"),
            ("layers entries None", _hset(("layers",), [None]), "layers", "error"),
            ("a layer without 'label_names'", _hset(("layers", 0, "label_names"), _DELETE), "label_names", "error"),
            ("label_names shortened", _hset(("layers", 0, "label_names"), lambda v: v[:-1]), "label_names", "error"),
            ("label_names not strings", _hset(("layers", 0, "label_names"), [1, 2, 3, 4]), "label_names", "error"),
            ("categories shortened", _hset(("layers", 0, "categories"), lambda v: v[:1]), "categories", "error"),
            ("quantile a str", _hset(("layers", 0, "quantile"), "x"), "quantile", "error"),
            ("quantile 2", _hset(("layers", 0, "quantile"), 2), "quantile", "error"),
            ("two layers, arrays for one", _hset(("layers",), lambda v: v + [dict(v[0], key="1")]), "l1.", "error"),
            ("iou missing", _drop(L + "iou"), "iou", "error"),
            ("iou flattened", _set(L + "iou", lambda v: v.reshape(-1)), "iou", "error"),
            ("iou transposed", _set(L + "iou", lambda v: v.T.copy()), "iou", "error"),
            ("iou as str", _set(L + "iou", lambda v: v.astype(str)), "iou", "error"),
            ("iou as complex", _set(L + "iou", lambda v: v.astype(complex)), "iou", "error"),
            ("iou NaN", _set(L + "iou", lambda v: np.full_like(v, np.nan)), "iou", "error"),
            ("iou 1.5", _set(L + "iou", lambda v: np.full_like(v, 1.5)), "iou", "error"),
            ("intersection negative", _set(L + "intersection", lambda v: v - 10), "intersection", "error"),
            ("intersection as float", _set(L + "intersection", lambda v: v + 0.5), "intersection", "error"),
            ("intersection above label_pixels", _set(L + "intersection", lambda v: v + 10 ** 6), "intersection", "error"),
            ("label_category >= len(categories)", _set(L + "label_category", lambda v: v + 5), "label_category", "error"),
            ("label_category 2-d", _set(L + "label_category", lambda v: v[None]), "label_category", "error"),
            ("thresholds one less", _set(L + "thresholds", lambda v: v[:-1]), "thresholds", "error"),
            ("top_images as float", _set(L + "top_images", lambda v: v + 0.5), "top_images", "error"),
            ("top_maps 3-d", _set(L + "top_maps", lambda v: v[..., 0]), "top_maps", "error"),
            ("unit_pixels other K", _set(L + "unit_pixels", lambda v: v[:-1]), "unit_pixels", "error"),
            ("a 0-d iou", _set(L + "iou", lambda v: np.array(0.5)), "iou", "error"),
        ]
    if target == "TCAV.load":
        return common + [
            ("concepts shortened", _hset(("concepts",), lambda v: v[:-1]), "concepts", "error"),
            ("concepts not strings", _hset(("concepts",), lambda v: [1] * len(v)), "concepts", "error"),
            ("counterparts a number", _hset(("counterparts",), 12345), "counterparts", "error"),
            ("concepts None", _hset(("concepts",), None), "concepts", "error"),
            ("num_random a str", _hset(("num_random",), "2"), "num_random", "error"),
            ("vectors missing", _drop("vectors"), "vectors", "error"),
            ("vectors 3-d", _set("vectors", lambda v: v[None]), "vectors", "error"),
            ("vectors 1-d", _set("vectors", lambda v: v.reshape(-1)), "vectors", "error"),
            ("vectors as str", _set("vectors", lambda v: v.astype(str)), "vectors", "error"),
            ("vectors NaN", _set("vectors", lambda v: np.full_like(v, np.nan)), "vectors", "error"),
            ("vectors one row less", _set("vectors", lambda v: v[:-1]), "vectors", "error"),
            ("vectors 0-d", _set("vectors", lambda v: np.array(1.0)), "vectors", "error"),
            ("accuracies 2.0", _set("accuracies", lambda v: np.full_like(v, 2.0)), "accuracies", "error"),
            ("accuracies one less", _set("accuracies", lambda v: v[:-1]), "accuracies", "error"),
            ("accuracies missing", _drop("accuracies"), "accuracies", "error"),
            ("vectors float16", _set("vectors", lambda v: v.astype(np.float16)), "vectors", "any"),
        ] + _computed_for()
    return common + [  # ConceptVectors.load
        ("concepts shortened", _hset(("concepts",), lambda v: v[:-1]), "concepts", "error"),
        ("concepts None", _hset(("concepts",), None), "concepts", "error"),
        ("labels not integers", _hset(("labels",), ["a", "b"]), "labels", "error"),
        ("labels shortened", _hset(("labels",), lambda v: v[:-1]), "labels", "error"),
        ("categories a number", _hset(("categories",), 5), "categories", "error"),
        ("vectors missing", _drop("vectors"), "vectors", "error"),
        ("vectors 1-d", _set("vectors", lambda v: v.reshape(-1)), "vectors", "error"),
        ("vectors other K", _set("vectors", lambda v: v[:, :-1]), "vectors", "error"),
        ("vectors as str", _set("vectors", lambda v: v.astype(str)), "vectors", "error"),
        ("vectors NaN", _set("vectors", lambda v: np.full_like(v, np.nan)), "vectors", "error"),
        ("vectors 0-d", _set("vectors", lambda v: np.array(1.0)), "vectors", "error"),
        ("scales one less", _set("scales", lambda v: v[:-1]), "scales", "error"),
        ("biases 2-d", _set("biases", lambda v: v[None]), "biases", "error"),
        ("thresholds NaN", _set("thresholds", lambda v: np.full_like(v, np.nan)), "thresholds", "error"),
        ("best_units negative", _set("best_units", lambda v: v - 10), "best_units", "error"),
        ("best_units >= K", _set("best_units", lambda v: v + 10 ** 6), "best_units", "error"),
        ("best_units as float", _set("best_units", lambda v: v + 0.5), "best_units", "error"),
        ("train_unit_iou missing", _drop("train_unit_iou"), "train_unit_iou", "error"),
    ] + _computed_for()


def _computed_for():
    """Files of vectors computed for something other than the loading object
    (its model is the file's model: the same tiny model, same weights)."""
    def version_1(a, h):
        return a, {**{k: v for k, v in h.items() if k not in ("model", "dim")}, "version": 1}
    return [
        ("a model of other weights", _hset(("model", "parameters"), "0" * 32), "model", "error"),
        ("a model of another class", _hset(("model", "class"), "torchvision.models.ResNet"), "model", "error"),
        ("model null (unknown)", _hset(("model",), None), "model", "error"),
        ("model a number", _hset(("model",), 7), "model", "error"),
        ("another layer", _hset(("layer",), "4"), "layer", "error"),
        ("dim other than the vectors'", _hset(("dim",), 3), "vectors", "error"),
        ("dim 0", _hset(("dim",), 0), "dim", "error"),
        ("version 1 (no model recorded)", version_1, "check_model", "error"),
    ]


def gen_file_loader(rng) -> Case:
    target = _pick(rng, sorted(_LOADERS))
    make_file, load = _LOADERS[target]
    raw = [("empty file", lambda p: open(p, "wb").close()),
           ("truncated file", lambda p: _truncate(p)),
           ("random bytes", lambda p: open(p, "wb").write(rng.bytes(300))),
           ("a .npy file", lambda p: np.save(open(p, "wb"), np.zeros(3))),
           ("a zip without arrays", lambda p: zipfile.ZipFile(p, "w").writestr("x.txt", "hello")),
           ("an object array (pickle)", lambda p: np.savez(p, header=np.array([{"a": 1}], dtype=object))),
           ("a directory", lambda p: (os.remove(p), os.mkdir(p)))]
    use_raw = rng.random() < 0.3
    if use_raw:
        desc, damage = _pick(rng, raw)
        field, expect = "", "error"
    else:
        desc, edit, field, expect = _pick(rng, _file_edits(target))

    def fn():
        d = _tmpdir()
        good = os.path.join(d, "good.npz")
        bad = os.path.join(d, "broken_file.npz")
        make_file(good)
        if use_raw:
            import shutil

            shutil.copy(good, bad)
            damage(bad)
        else:
            _rewrite_npz(good, bad, edit)
        load(bad)
    case = Case(target, f"file with {desc}", fn, expect, ["broken_file.npz"], area="files")
    case.also = (field,) if field else ()
    return case


def _truncate(p):
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size // 2)


def gen_file_missing(rng) -> Case:
    target = _pick(rng, sorted(_LOADERS))
    _, load = _LOADERS[target]

    def fn():
        load(os.path.join(_tmpdir(), "no_such_file.npz"))
    return Case(target, "a file that does not exist", fn, "error", ["no_such_file.npz"], area="files")


# ---------------------------------------------------------------------------- checkpoints

class _StopRun(Exception):
    pass


def _dissection_run(root, ck, model=None, stop=None, **kw):
    """A dissection of the tiny model's layer "0" with a checkpoint after every
    batch; ``stop=(pass, batch)``: stopped after that batch (its checkpoint kept)."""
    from interp_engine.methods.dissection import Dissection

    d = Dissection(model if model is not None else _tiny_model(), "0", checkpoint_dir=ck, progress=False,
                   batch_size=2, checkpoint_every=1, **kw)
    if stop is None:
        return d.explain(root)

    def hook(pass_name, b):
        if (pass_name, b) == stop:
            raise _StopRun()
    d._after_batch = hook
    try:
        d.explain(root)
    except _StopRun:
        return None
    raise RuntimeError(f"the run was not stopped at {stop}")  # pragma: no cover - harness error


def gen_checkpoint(rng) -> Case:
    """A dissection checkpoint damaged, edited, or written by another run:
    resuming from it must refuse it with an error naming the file (and what
    is wrong), never resume a wrong state."""
    name = "dissection_checkpoint.npz"

    def other_model():
        import torch

        m = _tiny_model()
        with torch.no_grad():
            m[0].weight.mul_(-1.0)  # the same architecture, other weights
        return m

    raw = [("empty file", lambda p: open(p, "wb").close()), ("truncated file", _truncate),
           ("random bytes", lambda p: open(p, "wb").write(np.random.default_rng(1).bytes(300))),
           ("a directory", lambda p: (os.remove(p), os.mkdir(p)))]
    edits = [
        ("header not JSON", lambda a, h: (a, "{not json"), "header", "error"),
        ("format changed", _hset(("format",), "x"), "format", "error"),
        ("version 99", _hset(("version",), 99), "version", "error"),
        ("position negative", _hset(("position", "iou"), -5), "position", "error"),
        ("finished a str", _hset(("finished",), "iou"), "finished", "error"),
        ("finished naming an unknown pass", _hset(("finished",), ["quantiles", "warp"]), "finished", "error"),
        ("sketch count changed", _set("sketch.0.count", lambda v: v + 7), "count", "error"),
        ("sketch wide = 2", _set("sketch.0.wide", lambda v: v * 0 + 2), "wide", "error"),
        ("tally intersection negative", _set("tally.0.intersection", lambda v: v - 1), "intersection", "error"),
        ("tally unit_pixels zero", _set("tally.0.unit_pixels", lambda v: v * 0), "unit_pixels", "any"),
        ("thresholds one short", _set("thr.0", lambda v: v[:-1]), ("thr.0", "thresholds"), "error"),
        ("thresholds NaN", _set("thr.0", lambda v: np.full_like(v, np.nan)), ("thr.0", "thresholds"), "error"),
        ("top-k index past the dataset", _set("topk.0.index", lambda v: v + 1000), ("topk", "index"), "error"),
        ("top-k values 1-d", _set("topk.0.values", lambda v: v.reshape(-1)), ("topk", "values"), "error"),
        ("an array missing", _drop("sketch.0.items"), "items", "error"),
    ]
    # a checkpoint written inside the exact quantile pass (after its first batch of two) holds that pass's state
    exact_edits = [
        ("the exact pass's seen count changed", _set("exact.0.seen", lambda v: v + 1), "exact.0", "error"),
        ("the exact pass's brackets moved", _set("exact.0.lower", lambda v: v - 1.0), "exact.0", "error"),
        ("the exact pass's values one short", _set("exact.0.inside", lambda v: v[:-1]), "exact.0", "error"),
        ("the exact pass's state missing", _hset(("exact",), {}), "exact", "error"),
        ("the exact pass's position moved back", _hset(("position", "exact"), 0), "exact", "error"),
        ("the exact pass's position moved on", _hset(("position", "exact"), 2), "exact", "error"),
        ("the exact pass's q changed", _set("exact.0.q", lambda v: v * 0 + 0.5), "exact.0", "error"),
    ]
    kind = _pick(rng, ["raw", "edit", "edit", "other run", "exact"])
    if kind == "raw":
        desc, damage = _pick(rng, raw)
        field, expect = "", "error"
    elif kind == "edit":
        desc, edit, field, expect = _pick(rng, edits)
    elif kind == "exact":
        desc, edit, field, expect = _pick(rng, exact_edits)
        desc += " (stopped inside the exact pass)"
    else:
        desc, field, expect = _pick(rng, [("another model's weights", ("model", "weights", "parameters"), "error"),
                                          ("another transform", "transform", "error"),
                                          ("another quantile", "quantile", "error")])

    def fn():
        from interp_engine.data import BrodenDataset  # noqa: F401 (warm)

        d = _tmpdir()
        root, ck = os.path.join(d, "broden"), os.path.join(d, "ck")
        _write_tiny_broden(root, np.random.default_rng(0))
        _dissection_run(root, ck, stop=("exact", 0) if kind == "exact" else None)
        p = os.path.join(ck, name)
        if kind == "raw":
            damage(p)
        elif kind in ("edit", "exact"):
            tmp = os.path.join(ck, "edited.npz")
            _rewrite_npz(p, tmp, edit)
            os.replace(tmp, p)
        if kind == "other run" and desc == "another model's weights":
            _dissection_run(root, ck, model=other_model())
        elif kind == "other run" and desc == "another transform":
            _dissection_run(root, ck, transform="imagenet")
        elif kind == "other run":
            _dissection_run(root, ck, quantile=0.01)
        else:
            _dissection_run(root, ck)
    case = Case("Dissection.explain(checkpoint_dir)", f"checkpoint with {desc}", fn, expect, [name, "checkpoint"],
                area="checkpoints")
    case.also = (field,) if field else ()
    return case


# ---------------------------------------------------------------------------- Broden

def _write_tiny_broden(root, rng):
    from interp_engine.data.writer import write_broden

    n = 3
    imgs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]
    obj = [rng.integers(0, 3, (4, 4)) for _ in range(n)]
    write_broden(root, imgs, label_names=["-", "cat", "dog", "red"], label_categories=[None, "object", "object", "color"],
                 categories=["object", "color"], pixel_labels={"object": obj},
                 image_labels={"color": [[3], [], [3]]}, compress_level=1)


def gen_broden(rng) -> Case:
    import csv

    def edit_csv(name, fn):
        def g(root):
            p = os.path.join(root, name)
            with open(p, newline="") as f:
                rows = list(csv.reader(f))
            rows = fn(rows)
            with open(p, "w", newline="") as f:
                csv.writer(f).writerows(rows)
        return g

    def label_png(root):
        rows = list(csv.reader(open(os.path.join(root, "index.csv"), newline="")))
        col = rows[0].index("object")
        return os.path.join(root, "images", rows[1][col].split(";")[0])

    def image_png(root):
        rows = list(csv.reader(open(os.path.join(root, "index.csv"), newline="")))
        return os.path.join(root, "images", rows[1][rows[0].index("image")])

    def trunc(pathf):
        def g(root):
            p = pathf(root)
            data = open(p, "rb").read()
            open(p, "wb").write(data[: len(data) // 2])
            return os.path.basename(p)
        return g

    def garbage(pathf):
        def g(root):
            p = pathf(root)
            open(p, "wb").write(b"not a png at all" * 3)
            return os.path.basename(p)
        return g

    def remove(pathf):
        def g(root):
            p = pathf(root)
            os.remove(p)
            return os.path.basename(p)
        return g

    def resize_png(root):
        from PIL import Image

        p = label_png(root)
        Image.fromarray(np.zeros((3, 5, 3), np.uint8), "RGB").save(p)
        return os.path.basename(p)

    def gray_png(root):
        from PIL import Image

        p = label_png(root)
        Image.fromarray(np.zeros((4, 4), np.uint8), "L").save(p)
        return os.path.basename(p)

    def label16(root):
        from PIL import Image

        p = label_png(root)
        Image.fromarray(np.full((4, 4), 70, np.uint16)).save(p)
        return os.path.basename(p)

    def set_cell(col, value):
        return edit_csv("index.csv", lambda rows: [rows[0]] + [[(value if rows[0][j] == col and i == 0 else c)
                                                               for j, c in enumerate(r)] for i, r in enumerate(rows[1:])])

    opts = [
        ("index.csv: a row cut short", "index.csv", edit_csv("index.csv", lambda rows: rows[:1] + [rows[1][:3]] + rows[2:])),
        ("index.csv: column 'sh' missing", "index.csv", edit_csv("index.csv", lambda rows: [r[:rows[0].index("sh")] + r[rows[0].index("sh") + 1:] for r in rows])),
        ("index.csv: sh = 'x'", "index.csv", set_cell("sh", "x")),
        ("index.csv: sh = -4", "index.csv", set_cell("sh", "-4")),
        ("index.csv: sh = 10**30", "index.csv", set_cell("sh", str(10 ** 30))),
        ("index.csv: color = 999", "index.csv", set_cell("color", "999")),
        ("index.csv: color = '3;x'", "index.csv", set_cell("color", "3;x")),
        ("index.csv: empty", "index.csv", lambda root: open(os.path.join(root, "index.csv"), "w").close()),
        ("index.csv: a NUL byte", "index.csv", lambda root: open(os.path.join(root, "index.csv"), "ab").write(b"\x00,\x00\n")),
        ("index.csv: invalid UTF-8", "index.csv", lambda root: open(os.path.join(root, "index.csv"), "ab").write(b"\xff\xfe,1\n")),
        ("index.csv: image path escaping the root", "index.csv", set_cell("image", "../../../etc/passwd")),
        ("label.csv: duplicate number", "label.csv", edit_csv("label.csv", lambda rows: rows + [rows[1]])),
        ("label.csv: number 'one'", "label.csv", edit_csv("label.csv", lambda rows: [rows[0]] + [[("one" if j == 0 and i == 0 else c) for j, c in enumerate(r)] for i, r in enumerate(rows[1:])])),
        ("category.csv: missing", "category.csv", lambda root: os.remove(os.path.join(root, "category.csv"))),
        ("label PNG truncated", None, trunc(label_png)),
        ("label PNG garbage", None, garbage(label_png)),
        ("label PNG missing", None, remove(label_png)),
        ("label PNG of another size", None, resize_png),
        ("label PNG grayscale", None, gray_png),
        ("label PNG 16-bit", None, label16),
        ("image truncated", None, trunc(image_png)),
        ("image garbage", None, garbage(image_png)),
        ("image missing", None, remove(image_png)),
    ]
    desc, fname, damage = _pick(rng, opts)
    check_files = bool(rng.random() < 0.4)

    def fn():
        from interp_engine.data import BrodenDataset

        root = os.path.join(_tmpdir(), "broden")
        _write_tiny_broden(root, np.random.default_rng(0))
        name = damage(root)
        nonlocal_names[:] = [fname or name]
        ds = BrodenDataset(root, check_files=check_files)
        for i in range(len(ds)):
            ds[i]
    nonlocal_names: List[str] = [fname or "png"]
    names = [fname] if fname else [".png", "PNG", "image"]
    case = Case("BrodenDataset", f"{desc} (check_files={check_files})", fn, "error", names, area="broden")
    case.memory_ok = False
    return case


# ---------------------------------------------------------------------------- methods' constructors

def _method_targets():
    """(name, build(**kw), {param: kind}) for the methods' constructors and
    entry points; kinds: ("int", minimum) ("real", lo, hi) ("choice", choices)
    ("bool",) ("layer",)."""
    from interp_engine.methods.concept_vectors import ConceptVectors
    from interp_engine.methods.representative import RepresentativeInterpretation
    from interp_engine.methods.dissection import Dissection
    from interp_engine.methods.invert import Invert
    from interp_engine.methods.tcav import TCAV

    def model():
        return _tiny_model()

    return [
        ("Dissection", lambda **kw: Dissection(model(), kw.pop("layers", "0"), **kw),
         {"layers": ("layer",), "quantile": ("real", 0.0, 1.0, 0.005), "iou_threshold": ("real", 0.0, 1.0, 0.04),
          "thresholds": ("choice", ("exact", "approx")), "unit_rule": ("choice", ("annotated", "lite")),
          "batch_size": ("int", 1, 64), "num_workers": ("int", 0, 0), "top_k": ("int", 0, 10),
          "checkpoint_every": ("int", 1, 50), "seed": ("seed", None), "num_threads": ("int", 0, 1),
          "device": ("device",), "rotations": ("seeds",), "progress": ("bool",), "activation_cache": ("bool",)}),
        ("TCAV", lambda **kw: TCAV(model(), kw.pop("layer", "0"), **kw),
         {"layer": ("layer",), "num_random": ("int", 2, 10), "seed": ("seed", 0), "features": ("choice", ("flatten", "mean")),
          "alpha": ("real", 0.0, 1.0, 0.05), "test_split": ("real", 0.0, 1.0, 0.33), "batch_size": ("int", 1, 64),
          "classifier": ("choice", ("sgd", "mean_difference"))}),
        ("ConceptVectors", lambda **kw: ConceptVectors(model(), kw.pop("layer", "0"), **kw),
         {"layer": ("layer",), "method": ("choice", ("semantic", "net2vec")), "l2": ("real", 0.0, None, 1e-3),
          "tol": ("real", 0.0, None, 1e-9), "max_iter": ("int", 1, 100), "max_positives": ("int", 1, 20000),
          "max_negatives": ("int", 1, 50000), "epochs": ("int", 1, 30), "lr": ("real", 0.0, None, 0.01),
          "quantile": ("real", 0.0, 1.0, 0.005), "batch_size": ("int", 1, 64),
          "seed": ("seed", 0), "binarize": ("bool",), "activation_cache": ("bool",)}),
        ("RepresentativeInterpretation", lambda **kw: RepresentativeInterpretation(model(), kw.pop("layer", "2"), **kw),
         {"layer": ("layer",), "batch_size": ("int", 1, 64), "pairs_per_batch": ("int", 1, 2048),
          "tol": ("real", 0.0, None, 1e-5), "max_steps": ("int", 1, 500), "check_head": ("bool",),
          "num_threads": ("int", 0, 1)}),
        ("Invert", lambda **kw: Invert(**kw),
         {"length": ("int", 1, 3), "beam": ("int", 1, 10), "min_fraction": ("real", 0.0, 1.0, 0.0),
          "max_fraction": ("real", 0.0, 1.0, 0.5), "mode": ("choice", ("positive", "negative")),
          "num_threads": ("int", 0, 1)}),
    ]


def gen_method_ctor(rng) -> Case:
    targets = _method_targets()
    name, build, params = _pick(rng, targets)
    param = _pick(rng, sorted(params))
    kind = params[param]
    area = "methods" if name != "Invert" else "boundary"
    names = [param] + (["layer"] if kind[0] == "layer" else [])
    if kind[0] in ("int", "real") and rng.random() < 0.3:  # other spellings of a valid value: accepted
        desc, make = _pick(rng, alt_ints(kind[2]) if kind[0] == "int" else alt_reals(kind[3]))
        return Case(name, f"{param}={desc}({kind[-1]})", lambda: build(**{param: make()}), "ok", area=area)
    if kind[0] == "int":
        desc, make, _ = _pick(rng, [v for v in bad_ints(kind[1], allow_none=param == "num_threads")])
    elif kind[0] == "seed":  # any integer >= minimum (None: any integer)
        vals = bad_ints(kind[1]) if kind[1] is not None else [v for v in bad_ints(None) if not v[0].startswith("-")]
        desc, make, _ = _pick(rng, [v for v in vals if v[2] == "error" or kind[1] is not None and v[0].startswith("-")])
    elif kind[0] == "real":
        lo, hi = kind[1], kind[2]
        desc, make, _ = _pick(rng, bad_reals(lo, hi))
    elif kind[0] == "choice":
        desc, make, _ = _pick(rng, bad_choices(kind[1]))
    elif kind[0] == "bool":
        desc, make = _pick(rng, [("'yes'", lambda: "yes"), ("'False'", lambda: "False"), ("2", lambda: 2),
                                 ("None", lambda: None), ("np.array([True, False])", lambda: np.array([True, False]))])
    elif kind[0] == "device":
        desc, make = _pick(rng, [("'nope'", lambda: "nope"), ("'cuda:99'", lambda: "cuda:99"), ("5.0", lambda: 5.0),
                                 ("'meta'", lambda: "meta"), ("[]", lambda: []), ("'cpu:x'", lambda: "cpu:x")]
                           + ([("'cuda'", lambda: "cuda")] if not _torch().cuda.is_available() else []))
    elif kind[0] == "seeds":
        desc, make = _pick(rng, [("[-1]", lambda: [-1]), ("[1.5]", lambda: [1.5]), ("5", lambda: 5), ("'12'", lambda: "12"),
                                 ("[None]", lambda: [None]), ("[True]", lambda: [True])])
    else:  # a layer name
        desc, make = _pick(rng, [("'no_such_layer'", lambda: "no_such_layer"), ("5", lambda: 5), ("None", lambda: None),
                                 ("''", lambda: ""), ("['0', 'nope']", lambda: ["0", "nope"]) if param == "layers"
                                 else ("b'0'", lambda: b"0")])

    def fn():
        build(**{param: make()})
    return Case(name, f"{param}={desc}", fn, "error", names, area=area)


def _entry_cases():
    """(target, param, description, call) for entry points of the methods
    that take arrays, tensors, devices and class indices; each call must be
    refused with an error naming ``param``."""
    import torch

    ie = _ie()
    m = _tiny_model
    imgs = lambda: torch.rand(2, 3, 5, 5)  # noqa: E731
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    nested = lambda: torch.nested.nested_tensor([torch.rand(3, 5, 5), torch.rand(3, 4, 4)])  # noqa: E731
    labels = lambda: np.zeros((2, 3), bool)  # noqa: E731
    vec = lambda: np.ones((2, 4))  # noqa: E731
    out = [
        ("grad_cam", "images", "a meta tensor", lambda: ie.grad_cam(m(), "0", meta(2, 3, 5, 5))),
        ("grad_cam", "images", "a nested tensor", lambda: ie.grad_cam(m(), "0", nested())),
        ("grad_cam", "images", "a numpy array", lambda: ie.grad_cam(m(), "0", imgs().numpy())),
        ("grad_cam", "images", "3-d", lambda: ie.grad_cam(m(), "0", imgs()[0])),
        ("grad_cam", "class_idx", "7 (3 classes)", lambda: ie.grad_cam(m(), "0", imgs(), class_idx=7)),
        ("grad_cam", "class_idx", "'1'", lambda: ie.grad_cam(m(), "0", imgs(), class_idx="1")),
        ("grad_cam", "class_idx", "1.5", lambda: ie.grad_cam(m(), "0", imgs(), class_idx=1.5)),
        ("grad_cam", "batch_size", "0", lambda: ie.grad_cam(m(), "0", imgs(), batch_size=0)),
        ("grad_cam", "layer", "'nope'", lambda: ie.grad_cam(m(), "nope", imgs())),
        ("iter_activations", "device", "'nope'", lambda: list(ie.iter_activations(m(), "0", [imgs()], device="nope"))),
        ("iter_activations", "dtype", "'float'", lambda: list(ie.iter_activations(m(), "0", [imgs()], dtype="float"))),
        ("pooled_activations", "pooling", "'median'", lambda: ie.pooled_activations(m(), "0", [imgs()], pooling="median")),
        ("Capture", "on_repeat", "np.array(['error'])", lambda: ie.Capture(m(), "0", on_repeat=np.array(["error"]))),
        ("Capture", "layers", "5", lambda: ie.Capture(m(), 5)),
        ("Capture", "stop_early", "'no'", lambda: ie.Capture(m(), "0", stop_early="no")),
        ("Invert", "pooling", "'x'", lambda: ie.Invert(m(), "0", pooling="x").explain([imgs()], labels())),
        ("Invert", "batch_size", "0", lambda: ie.Invert(m(), "0", batch_size=0).explain([imgs()], labels())),
        ("Invert.explain", "labels", "3 rows for 2 images", lambda: ie.Invert(m(), "0").explain([imgs()], np.zeros((3, 3), bool))),
        ("Invert", "layer", "5", lambda: ie.Invert(m(), 5).explain([imgs()], labels())),
        ("Invert", "device", "'nope'", lambda: ie.Invert(m(), "0", device="nope").explain([imgs()], labels())),
        ("ConceptRelevance.explain", "weight", "a str", lambda: ie.ConceptRelevance(None, None, vec()).explain(weight="x")),
        ("ConceptRelevance.explain", "weight", "a meta tensor", lambda: ie.ConceptRelevance(None, None, vec()).explain(weight=meta(3, 4))),
        ("ConceptRelevance.explain", "vectors", "other width", lambda: ie.ConceptRelevance(None, None, np.ones((2, 5))).explain(weight=np.ones((3, 4)))),
        ("ConceptRelevance.concept_maps", "image", "a meta tensor", lambda: ie.ConceptRelevance(m(), "0", vec()).concept_maps(meta(3, 5, 5))),
        ("ConceptRelevance.concept_maps", "image", "4-d", lambda: ie.ConceptRelevance(m(), "0", vec()).concept_maps(imgs())),
        ("ConceptRelevance.explain_image", "target_class", "7", lambda: ie.ConceptRelevance(m(), "0", vec()).explain_image(imgs()[0], target_class=7)),
        ("ConceptRelevance.explain_image", "target_class", "'1'", lambda: ie.ConceptRelevance(m(), "0", vec()).explain_image(imgs()[0], target_class="1")),
        ("ConceptRelevance.explain", "classes", "[5]", lambda: ie.ConceptRelevance(m(), "0", vec()).explain(imgs(), classes=[5])),
        ("ConceptRelevance", "batch_size", "0", lambda: ie.ConceptRelevance(m(), "0", vec(), batch_size=0).explain(imgs())),
        ("validate_topic_matrix", "atol", "'x'", lambda: ie.validate_topic_matrix(np.full((3, 2), 0.5), atol="x")),
        ("validate_topic_matrix", "topics", "NaN", lambda: ie.validate_topic_matrix(np.full((3, 2), np.nan))),
        ("validate_topic_matrix", "topics", "a meta tensor", lambda: ie.validate_topic_matrix(meta(3, 2))),
        ("validate_topic_matrix", "topics", "rows not summing to 1", lambda: ie.validate_topic_matrix(np.ones((3, 2)))),
        ("InterpretiveLoss", "hidden", "0", lambda: ie.InterpretiveLoss(8, 3, 0)),
        ("InterpretiveLoss", "features_dim", "8.0", lambda: ie.InterpretiveLoss(8.0, 3, 4)),
        ("InterpretiveLoss", "weight", "'x'", lambda: ie.InterpretiveLoss(8, 3, 4, weight="x")),
        ("InterpretiveLoss", "pooling", "'x'", lambda: ie.InterpretiveLoss(8, 3, 4, pooling="x")),
        ("TopicInterpretation.edit", "edits", "{'a': 1.0}", lambda: ie.TopicInterpretation(m(), "0").edit({"a": 1.0})),
        ("TopicInterpretation.edit", "edits", "{0: 'x'}", lambda: ie.TopicInterpretation(m(), "0").edit({0: "x"})),
        ("TopicInterpretation.edit", "edits", "[1, 2]", lambda: ie.TopicInterpretation(m(), "0").edit([1, 2])),
        ("TopicInterpretation.edit", "edits", "{0: nan}", lambda: ie.TopicInterpretation(m(), "0").edit({0: float("nan")})),
        ("average_drop_increase", "keep", "2.0", lambda: ie.average_drop_increase(m(), imgs(), np.zeros((2, 5, 5)), [0, 1], keep=2.0)),
        ("average_drop_increase", "classes", "[0, 9]", lambda: ie.average_drop_increase(m(), imgs(), np.zeros((2, 5, 5)), [0, 9])),
        ("TopicInterpretation", "ablation", "'x'", lambda: ie.TopicInterpretation(m(), "0", targets="classes", ablation="x").explain(imgs())),
        ("TopicInterpretation", "top_k", "0", lambda: ie.TopicInterpretation(m(), "0", targets="classes", top_k=0).explain(imgs())),
        ("TopicInterpretation", "device", "'nope'", lambda: ie.TopicInterpretation(m(), "0", targets="classes", device="nope").explain(imgs())),
        ("extract_topics", "n_topics", "0", lambda: ie.extract_topics(["a b", "c d"], n_topics=0)),
        ("extract_topics", "descriptions", "a single str", lambda: ie.extract_topics("a b c")),
        ("rotation_experiment", "seed", "'x'", lambda: ie.rotation_experiment(m(), "0", "/nonexistent", seed="x")),
        ("TCAV.fit_activations", "concept_examples", "a meta tensor",
         lambda: ie.TCAV(m(), "0", num_random=2).fit_activations({"c": meta(4, 4)}, [np.ones((4, 4))] * 3)),
        ("TCAV.fit_activations", "random_examples", "a str",
         lambda: ie.TCAV(m(), "0", num_random=2).fit_activations({"c": np.ones((4, 4))}, "abc")),
    ]
    if not torch.cuda.is_available():
        out += [("iter_activations", "device", "'cuda' without CUDA", lambda: list(ie.iter_activations(m(), "0", [imgs()], device="cuda"))),
                ("Dissection", "device", "'cuda' without CUDA", lambda: ie.Dissection(m(), "0", device="cuda")),
                ("Invert", "device", "'cuda' without CUDA",
                 lambda: ie.Invert(m(), "0", device="cuda").explain([imgs()], labels()))]
    return out


def gen_method_entry(rng) -> Case:
    target, param, desc, call = _pick(rng, _entry_cases())
    names = [param] + (["layer"] if param == "layers" else [])
    return Case(target, f"{param}={desc}", call, "error", names, area="methods")


# ============================================================================ registry and runner

GENERATORS: List[Tuple[float, Callable[[np.random.Generator], Case], str]] = [
    (9, gen_quantiles_update, "ChannelQuantiles.update"),
    (4, gen_quantiles_ctor, "ChannelQuantiles()"),
    (6, gen_quantiles_queries, "ChannelQuantiles queries/merge"),
    (2, gen_exact_pass, "ExactQuantilePass"),
    (11, gen_iou_update, "IoUTally.update"),
    (5, gen_iou_ctor, "IoUTally()"),
    (2, gen_iou_merge, "IoUTally.merge"),
    (7, gen_greedy_cover, "greedy_cover"),
    (5, gen_ratio_cover, "ratio_greedy_cover(_many)"),
    (4, gen_packed_bits, "PackedBits / pack_bits"),
    (7, gen_rank, "rank.*"),
    (6, gen_invert, "Invert / explain"),
    (1, gen_num_threads, "set_num_threads"),
    (5, gen_cq_state, "ChannelQuantiles states"),
    (4, gen_iou_state, "IoUTally states"),
    (2, gen_corrupt_pickle, "corrupted pickles"),
    (2, gen_merge_states, "merges"),
    (5, gen_file_loader, "file loaders"),
    (1, gen_file_missing, "missing files"),
    (3, gen_broden, "BrodenDataset"),
    (2, gen_checkpoint, "dissection checkpoints"),
    (5, gen_method_ctor, "methods' constructors"),
    (4, gen_method_entry, "methods' entry points"),
]
_DEFAULT_GENERATORS = GENERATORS


def _fixed_cases() -> List[Callable[[np.random.Generator], Case]]:
    """The reproducers of issue 14, run first in every run (cases 0 .. n-1),
    so that none depends on the draw."""
    import scipy.sparse as sp

    def ie():
        return _ie()

    def short_indptr():
        m = sp.csr_matrix(np.ones((3, 4), bool))
        m.indptr = m.indptr[:2].copy()
        return ie().greedy_cover(m)

    def big_endian_iou():
        rng = np.random.default_rng(0)
        acts = rng.standard_normal((2, 2, 3, 3))
        pl = rng.integers(0, 3, (2, 1, 6, 6))
        want = ie().IoUTally(2, 3, [0, 0, 1], 2, output_size=(6, 6))
        want.update(acts, np.zeros(2), pl)
        got = ie().IoUTally(2, 3, [0, 0, 1], 2, output_size=(6, 6))
        got.update(acts.astype(">f8"), np.zeros(2), pl.astype(">i4"))
        check_equal(_iou_counts(got), _iou_counts(want), "big-endian counts")

    def big_endian_rank():
        from interp_engine.engine import rank
        from interp_engine.methods.invert import Invert

        rng = np.random.default_rng(0)
        a, lab = rng.standard_normal((30, 2)), rng.random((30, 3)) < 0.5
        check_equal(rank.auc(a.astype(">f4"), lab), rank.auc(a.astype(np.float32), lab), "auc")
        check_equal(_explain_summary(Invert(length=2, beam=2).explain(a.astype(">f8"), lab)),
                    _explain_summary(Invert(length=2, beam=2).explain(a, lab)), "explain")

    def changed_value(rng):
        return gen_exact_pass_changed(rng)

    fixed = [
        ("IoUTally", "IoUTally(4, 2, [0, 0], 2**62, output_size=(2, 2)).iou()", "sizes", "error",
         lambda: ie().IoUTally(4, 2, [0, 0], 2 ** 62, output_size=(2, 2)).iou(), ["num_categories", "size"]),
        ("IoUTally", "IoUTally(2, 2, [0, 0], 1, output_size=(2**32, 2**32))", "sizes", "error",
         lambda: ie().IoUTally(2, 2, [0, 0], 1, output_size=(2 ** 32, 2 ** 32)), ["output_size"]),
        ("IoUTally", "IoUTally(2, 2, [0, 0], 1, output_size=(1, 2**31 - 1)).update(...)", "sizes", "error",
         lambda: ie().IoUTally(2, 2, [0, 0], 1, output_size=(1, 2 ** 31 - 1)).update(np.zeros((1, 2, 1, 1)), np.zeros(2)),
         ["output_size"]),
        ("ChannelQuantiles.quantile", "quantile('0.5')", "boundary", "error",
         lambda: ie().ChannelQuantiles(1, k=64).update(np.zeros((3, 1))).quantile("0.5"), ["q"]),
        ("greedy_cover", "sets: a CSR whose indptr is too short", "boundary", "error", short_indptr, ["sets"]),
        ("greedy_cover", "target=10**400", "boundary", "error", lambda: ie().greedy_cover(np.eye(3, dtype=bool), target=10 ** 400),
         ["target"]),
        ("ChannelQuantiles.update", "x: a meta tensor", "boundary", "error",
         lambda: ie().ChannelQuantiles(2, k=64).update(_torch().empty(3, 2, device="meta")), ["x"]),
        ("set_num_threads", "set_num_threads('2')", "boundary", "error", lambda: ie().set_num_threads("2"), ["num_threads"]),
        ("IoUTally.update", "big-endian activations and pixel labels", "boundary", "ok", big_endian_iou, []),
        ("rank.auc", "big-endian activations (rank.auc, Invert.explain)", "boundary", "ok", big_endian_rank, []),
    ]
    out: List[Callable[[np.random.Generator], Case]] = []
    for target, desc, area, expect, fn, names in fixed:
        out.append(lambda rng, t=target, d=desc, a=area, e=expect, f=fn, n=names:
                   Case(t, f"[issue 14] {d}", f, e, n, area=a, memory_ok=a == "sizes"))
    out += [lambda rng: _merge_case("self", rng), lambda rng: _merge_case("iou overflow", rng),
            gen_exact_pass_changed]
    return out


def make_case(seed: int, idx: int) -> Case:
    """The case ``idx`` of the run with ``seed`` (deterministic); the first
    ``len(_fixed_cases())`` ids are issue 14's reproducers."""
    rng = np.random.default_rng([seed, idx])
    fixed = _fixed_cases()
    if 0 <= idx < len(fixed) and GENERATORS is _DEFAULT_GENERATORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fixed[idx](rng)
    w = np.array([g[0] for g in GENERATORS], dtype=np.float64)
    gen = GENERATORS[int(rng.choice(len(GENERATORS), p=w / w.sum()))][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gen(rng)


def classify(case: Case, exc: Optional[BaseException]) -> Tuple[str, str]:
    """(outcome, message) of a case that ran to the end (no crash, no hang)."""
    if exc is None:
        if case.expect == "error":
            return "silent acceptance", "no error was raised"
        return ("right result" if case.expect == "ok" else "tolerated"), ""
    msg = f"{type(exc).__name__}: {exc}"
    if len(msg) > 600:
        msg = msg[:600] + "..."
    if isinstance(exc, WrongResult):
        return "wrong result", msg
    if case.expect == "ok":
        return "refused valid input", msg
    text = str(exc)
    clean_types: Tuple[type, ...] = (ValueError, TypeError)
    if case.memory_ok:
        clean_types += (MemoryError,)
    if case.area in ("files", "broden", "checkpoints"):
        clean_types += (FileNotFoundError, IsADirectoryError)
    if not isinstance(exc, clean_types):
        return "wrong exception type", msg
    if "incompatible function arguments" in text or "incompatible constructor arguments" in text:
        return "raw pybind11 error", msg
    if case.expect == "any":
        return "tolerated", msg
    if isinstance(exc, MemoryError):
        return "clean error", msg
    if case.names and not any(_names(text, n) for n in case.names):
        return "error not naming the argument", msg
    missing = [w for w in case.also if not (any(x in text for x in w) if isinstance(w, tuple) else w in text)]
    if missing:
        return "error not naming the argument", f"(does not name {missing}) {msg}"
    return "clean error", msg


def _names(text: str, name: str) -> bool:
    """Does the message name ``name``? (whole words for identifiers: "q"
    is not found in "quantile")."""
    if name.isidentifier():
        return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None
    return name in text


def _filter_warnings() -> None:
    # warnings the package itself emits are errors (as in the test suite);
    # those of torch/scipy while building odd inputs are not the package's
    warnings.resetwarnings()
    warnings.simplefilter("ignore")
    warnings.filterwarnings("error", module=r"interp_engine(\.|$)")


def execute(seed: int, idx: int) -> Dict[str, Any]:
    """Build and run one case in this process; the classified outcome."""
    t0 = time.perf_counter()
    try:
        case = make_case(seed, idx)
    except Exception as exc:  # a bug of the generator, not of the package
        return {"case": idx, "target": "?", "area": "?", "desc": "", "outcome": "harness error",
                "message": "".join(traceback.format_exception_only(type(exc), exc)).strip(), "seconds": 0.0}
    head = {"case": idx, "target": case.target, "area": case.area, "desc": case.desc, "expect": case.expect}
    exc: Optional[BaseException] = None
    with warnings.catch_warnings():
        _filter_warnings()
        try:
            case.fn()
        except BaseException as e:  # noqa: B902 - every exception is an outcome
            exc = e
    outcome, message = classify(case, exc)
    return dict(head, outcome=outcome, message=message, seconds=round(time.perf_counter() - t0, 4))


def _describe_only(seed: int, idx: int) -> Dict[str, Any]:
    try:
        case = make_case(seed, idx)
        return {"case": idx, "target": case.target, "area": case.area, "desc": case.desc, "expect": case.expect}
    except Exception:
        return {"case": idx, "target": "?", "area": "?", "desc": "?", "expect": "?"}


def _limit_memory(extra_bytes: int) -> None:
    """Cap the child's address space at its current size + ``extra_bytes``, so
    that an impossible size gives MemoryError instead of the OOM killer."""
    if extra_bytes <= 0:
        return
    try:
        import resource

        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        limit = vm + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except Exception:  # not Linux: no limit
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _worker(seed: int, ids: Sequence[int], wfd: int, log_path: str, mem_bytes: int, timeout: float) -> None:
    """A forked child: run ``ids`` one after the other, announcing each case
    before it starts ("S <id>") and reporting its outcome after ("R <json>"),
    so that the parent knows which case a crash or a hang belongs to."""
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)  # the core's and torch's own output
        os.dup2(fd, 2)
        os.close(fd)
        # Python's too (under pytest, sys.stdout/stderr are capture objects)
        sys.stdout = sys.stderr = open(log_path, "a", buffering=1)
        import faulthandler

        faulthandler.enable(file=sys.stderr, all_threads=True)
        _limit_memory(mem_bytes)
        _TMP["dir"] = os.path.dirname(log_path)
        for idx in ids:
            print(f"=== case {idx}", flush=True)
            # a hang leaves its Python stacks in the log, for the report
            faulthandler.dump_traceback_later(max(1.0, timeout - 1.0), exit=False, file=sys.stderr)
            _write_all(wfd, f"S {idx}\n".encode())
            res = execute(seed, idx)
            _write_all(wfd, ("R " + json.dumps(res) + "\n").encode())
            faulthandler.cancel_dump_traceback_later()
    finally:
        os._exit(0)


def warm_up() -> None:
    """Import what the cases use, once, in the parent (the children are forked
    from it).  No compute here: threads started before a fork do not exist in
    the child."""
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401
    import scipy.stats  # noqa: F401

    import interp_engine  # noqa: F401
    import interp_engine.data  # noqa: F401
    import interp_engine.data.writer  # noqa: F401
    import interp_engine.engine.rank  # noqa: F401
    import interp_engine.methods.representative  # noqa: F401
    import interp_engine.methods.concept_vectors  # noqa: F401
    import interp_engine.methods.dissection  # noqa: F401
    import interp_engine.methods.invert  # noqa: F401
    import interp_engine.methods.tcav  # noqa: F401
    import reference  # noqa: F401

    try:
        import PIL.Image

        PIL.Image.init()  # every image plugin, as identifying a damaged file would load them
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return
    # The first jagged nested tensor imports seconds of modules (torch._dynamo).
    # Not a strided nested tensor: after one, a forked child hangs in
    # torch.quantize_per_tensor (torch 2.13).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged)


class Report:
    def __init__(self, seed: int, results: List[Dict[str, Any]], seconds: float, jobs: int) -> None:
        self.seed, self.results, self.seconds, self.jobs = seed, results, seconds, jobs

    @property
    def bad(self) -> List[Dict[str, Any]]:
        return [r for r in self.results if r["outcome"] not in GOOD]

    def counts(self) -> Dict[str, int]:
        out = {k: 0 for k in OUTCOMES}
        for r in self.results:
            out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        return out

    def table(self) -> str:
        lines = [f"fuzz: {len(self.results)} cases, seed {self.seed}, {self.jobs} parallel children, "
                 f"{self.seconds:.1f} s"]
        counts = self.counts()
        width = max(len(k) for k in counts)
        lines.append(f"  {'outcome'.ljust(width)}  cases")
        for k, v in counts.items():
            mark = "  " if k in GOOD else ("!!" if v else "  ")
            lines.append(f"{mark}{k.ljust(width)}  {v:5d}")
        # per target
        per: Dict[str, Dict[str, int]] = {}
        for r in self.results:
            d = per.setdefault(r["target"], {"good": 0, "bad": 0})
            d["good" if r["outcome"] in GOOD else "bad"] += 1
        lines.append("  per target (good / bad):")
        for t in sorted(per):
            lines.append(f"    {t:40s} {per[t]['good']:5d} {per[t]['bad']:5d}")
        return "\n".join(lines)

    def failures(self, limit: int = 200) -> str:
        lines = []
        by_area: Dict[str, List[Dict[str, Any]]] = {}
        for r in self.bad:
            by_area.setdefault(r.get("area", "?"), []).append(r)
        for area in sorted(by_area):
            lines.append(f"--- area {area}: {len(by_area[area])} bad cases")
            for r in by_area[area][:limit]:
                lines.append(f"[{r['outcome']}] case {r['case']}: {r['target']}: {r['desc']}")
                if r.get("message"):
                    lines.append(f"    {r['message']}")
                lines.append(f"    reproduce: python -m tests.fuzz --seed {self.seed} --case {r['case']} --replay")
                lines.append(f"      or: python -c \"import sys; sys.path.insert(0, 'tests'); import fuzz; "
                             f"fuzz.replay({self.seed}, {r['case']})\"")
        return "\n".join(lines)


def run(seed: int = 0, cases: int = 1000, *, start: int = 0, jobs: Optional[int] = None, timeout: float = 60.0,
        batch: int = 8, mem_bytes: Optional[int] = None, progress: Optional[Callable[[int, int], None]] = None,
        only: Optional[Sequence[int]] = None) -> Report:
    """Run cases ``start .. start + cases - 1`` (or the ids in ``only``) in
    forked children, ``jobs`` children at a time, each child running up to
    ``batch`` cases in turn (forking costs more than most cases).

    Attribution: a child announces every case before running it, so a crash
    (signal) or a hang (``timeout`` seconds without a result) is known to
    belong to the case in flight; that case and the rest of its batch are then
    run again, each in a child of its own.  A case that crashes alone is a
    crash; one that crashes only after others in the same process is reported
    as a crash too, with the cases that ran before it."""
    if not hasattr(os, "fork"):
        raise RuntimeError("the fuzz runner needs os.fork (Linux, macOS)")
    import gc
    import shutil

    if mem_bytes is None:
        mem_bytes = int(float(os.environ.get("INTERP_ENGINE_FUZZ_MEMORY_GB", "6")) * (1 << 30))
    warm_up()
    gc.collect()
    gc.freeze()  # children share the parent's objects without copying their pages
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    ids = list(only) if only is not None else list(range(start, start + cases))
    batch = max(1, int(batch))
    queue: List[Tuple[List[int], bool]] = [(ids[i:i + batch], False) for i in range(0, len(ids), batch)]
    queue.reverse()  # pop() from the end
    results: Dict[int, Dict[str, Any]] = {}
    workdir = tempfile.mkdtemp(prefix="ie-fuzz-")
    t_start = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()

    class W:  # one running child
        def __init__(self, pid: int, ids: List[int], alone: bool, log: str) -> None:
            self.pid, self.ids, self.alone, self.log = pid, ids, alone, log
            self.buf = bytearray()
            self.current: Optional[int] = None
            self.t0 = time.perf_counter()
            self.done: List[int] = []

    running: Dict[int, W] = {}

    def spawn(batch_ids: List[int], alone: bool) -> None:
        r, w = os.pipe()
        log = os.path.join(workdir, f"worker{batch_ids[0]}-{len(results)}.log")
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            _worker(seed, batch_ids, w, log, mem_bytes, timeout)
        os.close(w)
        running[r] = W(pid, batch_ids, alone, log)

    def lines(wk: W) -> None:
        while b"\n" in wk.buf:
            line, _, rest = bytes(wk.buf).partition(b"\n")
            wk.buf = bytearray(rest)
            text = line.decode(errors="replace")
            if text.startswith("S "):
                wk.current = int(text[2:])
                wk.t0 = time.perf_counter()
            elif text.startswith("R "):
                res = json.loads(text[2:])
                results[res["case"]] = res
                wk.done.append(res["case"])
                wk.current = None
                if progress:
                    progress(len(results), len(ids))

    def failed(wk: W, outcome: str, why: str) -> None:
        """The child died (or was killed) while running wk.current."""
        idx = wk.current
        rest = [i for i in wk.ids if i not in wk.done and i != idx]
        if idx is None:  # died between cases: run what is left again
            if rest:
                queue.append((rest, True))
            return
        if wk.alone:
            res = _describe_only(seed, idx)
            res.update(outcome=outcome, message=why + _log_tail(wk.log, 12), seconds=round(time.perf_counter() - wk.t0, 2))
            results[idx] = res
            if progress:
                progress(len(results), len(ids))
        else:  # attribute it: the case again, alone, and then the rest of the batch
            before[idx] = (list(wk.done), outcome, why + _log_tail(wk.log, 12))
            queue.append(([idx], True))
        for i in reversed(rest):
            queue.append(([i], True))

    before: Dict[int, Tuple[List[int], str, str]] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                b, alone = queue.pop()
                spawn(b, alone)
            ready, _, _ = select.select(list(running), [], [], 0.05)
            for fd in ready:
                wk = running[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    wk.buf.extend(chunk)
                    lines(wk)
                    continue
                os.close(fd)
                del running[fd]
                _, status = os.waitpid(wk.pid, 0)
                lines(wk)
                if wk.current is not None or len(wk.done) < len(wk.ids):
                    if os.WIFSIGNALED(status):
                        why = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
                    else:
                        why = f"exited with status {os.WEXITSTATUS(status)} before reporting"
                    failed(wk, "crash", why)
            now = time.perf_counter()
            for fd, wk in list(running.items()):
                if wk.current is not None and now - wk.t0 > timeout:
                    os.kill(wk.pid, signal.SIGKILL)
                    os.waitpid(wk.pid, 0)
                    os.close(fd)
                    del running[fd]
                    failed(wk, "hang", f"no result after {timeout:.0f} s (killed)")
    finally:
        for fd, wk in running.items():
            try:
                os.kill(wk.pid, signal.SIGKILL)
                os.waitpid(wk.pid, 0)
            except OSError:
                pass
        gc.unfreeze()
        shutil.rmtree(workdir, ignore_errors=True)
    # a case that failed in a batch but not alone: the failure needs the cases before it
    for idx, (prev, outcome, why) in before.items():
        res = results[idx]
        if res["outcome"] in ("crash", "hang"):
            continue
        alone = f"{res['outcome']}" + (f" ({res['message']})" if res.get("message") else "")
        results[idx] = dict(res, outcome=outcome,
                            message=f"{why}; only after cases {prev} in the same process (alone: {alone}); "
                                    f"reproduce with --case for each of {prev + [idx]} --batch {len(prev) + 1}")
    return Report(seed, [results[i] for i in ids], time.perf_counter() - t_start, jobs)


def _log_tail(log: str, n: int = 6) -> str:
    try:
        with open(log, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if ln.strip()]
    except OSError:
        return ""
    return ("; output: " + " | ".join(lines[-n:])) if lines else ""


def replay(seed: int, idx: int) -> str:
    """Run one case in this process, printing its traceback; returns the outcome."""
    import shutil

    case = make_case(seed, idx)
    print(f"case {idx} (seed {seed}): {case.target}: {case.desc} [expect {case.expect}, area {case.area}]")
    exc = None
    _TMP["dir"] = tempfile.mkdtemp(prefix="ie-fuzz-replay-")
    with warnings.catch_warnings():
        _filter_warnings()
        try:
            case.fn()
        except BaseException as e:  # noqa: B902
            exc = e
            traceback.print_exc()
        finally:
            shutil.rmtree(_TMP.pop("dir"), ignore_errors=True)
    outcome, message = classify(case, exc)
    print(f"outcome: {outcome}" + (f" ({message})" if message else ""))
    return outcome


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--start", type=int, default=0, help="first case id (default 0)")
    p.add_argument("--case", type=int, action="append", help="run only this case id (repeatable)")
    p.add_argument("--replay", action="store_true", help="run --case in this process with a traceback")
    p.add_argument("--jobs", type=int, default=None, help="children at a time (default min(2, cores))")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    p.add_argument("--batch", type=int, default=8, help="cases per child (1: a child per case)")
    p.add_argument("--list-targets", action="store_true")
    p.add_argument("--all", action="store_true", help="list every case, not only the bad ones")
    a = p.parse_args(argv)
    if a.list_targets:
        for w, _, name in GENERATORS:
            print(f"{w:4.0f}  {name}")
        return 0
    if a.replay:
        if not a.case:
            p.error("--replay needs --case")
        outs = [replay(a.seed, c) for c in a.case]
        return 0 if all(o in GOOD for o in outs) else 1
    rep = run(a.seed, a.cases, start=a.start, jobs=a.jobs, timeout=a.timeout, batch=a.batch, only=a.case)
    print(rep.table())
    if a.all:
        for r in rep.results:
            print(f"{r['outcome']:28s} {r['case']:6d} {r['target']}: {r['desc']}")
    if rep.bad:
        print(rep.failures())
    return 1 if rep.bad else 0


if __name__ == "__main__":
    sys.exit(main())
