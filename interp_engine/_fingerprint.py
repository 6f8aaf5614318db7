"""Fingerprints of what a run depends on: the model, the transform, the data.

A checkpoint or cache is valid for another run only when every input that
changes its content is the same.  These functions reduce each input to a
small JSON-able dict of strings and numbers (hex digests: SHA-256 cut to
128 bits; SHA-256 because CPUs with SHA extensions hash it 3-4x faster than
BLAKE2b) that :func:`differences` compares field by field, so that a refusal
can name what differs.

- :func:`model_fingerprint`: the class (module and qualified name), the
  module tree (``repr(model)``: layer types and their settings such as
  strides), and a digest of every parameter and buffer: name, dtype, shape
  and all bytes (nothing sampled; tensors are hashed in parallel threads).
- :func:`transform_fingerprint`: a built-in transform by its name; a
  callable by its qualified name and a digest of its output on probe images
  (so two callables of one name with other constants differ); a transform
  whose output on one probe differs between two calls is recorded as
  ``"nondeterministic"`` (only the name is compared then).
- :func:`array_digest`: a digest of named arrays (dtype, shape, bytes).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["Digest", "model_fingerprint", "transform_fingerprint", "callable_name", "differences"]


class Digest:
    """SHA-256 (first 128 bits) over a sequence of typed, length-prefixed items."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def _put(self, tag: bytes, data: bytes) -> None:
        self._h.update(tag + len(data).to_bytes(8, "little"))
        self._h.update(data)

    def text(self, s: Any) -> "Digest":
        self._put(b"s", str(s).encode("utf-8", "surrogatepass"))
        return self

    def json(self, obj: Any) -> "Digest":
        self._put(b"j", json.dumps(obj, sort_keys=True, default=repr).encode())
        return self

    def array(self, a: Any) -> "Digest":
        """A numpy array (or anything np.asarray accepts): dtype, shape, bytes."""
        a = np.asarray(a)
        if a.dtype.hasobject:
            self._put(b"o", repr(a.tolist()).encode())
            return self
        a = np.ascontiguousarray(a)
        self._put(b"d", a.dtype.str.encode())
        self._put(b"h", np.asarray(a.shape, dtype=np.int64).tobytes())
        self._put(b"a", a.view(np.uint8).reshape(-1).data if a.size else b"")
        return self

    def tensor(self, t: Any) -> "Digest":
        """A torch tensor: dtype, shape and its bytes (copied to the CPU)."""
        import torch

        t = t.detach()
        self._put(b"t", str(t.dtype).encode())
        self._put(b"h", np.asarray(tuple(t.shape), dtype=np.int64).tobytes())
        if t.is_meta:
            self._put(b"m", b"meta")
            return self
        if t.layout != torch.strided:
            t = t.to_dense()
        if t.is_quantized:
            t = t.int_repr()
        if t.numel() == 0:
            self._put(b"a", b"")
            return self
        t = t.cpu()
        if t.is_complex():
            t = torch.view_as_real(t)
        # reinterpret as the integer type of the same size (numpy has no bfloat16 and friends)
        as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        arr = np.ascontiguousarray(t.view(as_int).numpy())
        self._put(b"a", arr.view(np.uint8).reshape(-1).data)
        return self

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:32]


def callable_name(obj: Any) -> str:
    """``module.qualname`` of a function, class or instance (its class)."""
    target = obj if (hasattr(obj, "__qualname__") and hasattr(obj, "__module__")) else type(obj)
    mod = getattr(target, "__module__", None) or "?"
    return f"{mod}.{getattr(target, '__qualname__', type(obj).__name__)}"


def model_fingerprint(model: Any) -> Dict[str, Any]:
    """``{"class", "structure", "parameters", "tensors", "bytes"}`` of a
    ``torch.nn.Module``: its class, a digest of ``repr(model)`` and a digest
    of every parameter and buffer (name, dtype, shape, bytes)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    tensors = []
    with torch.no_grad():
        for kind, items in (("p", model.named_parameters(remove_duplicate=False)),
                            ("b", model.named_buffers(remove_duplicate=False))):
            tensors += [(f"{kind}:{name}", t) for name, t in items if t is not None]

    def one(item) -> str:
        name, t = item
        with torch.no_grad():
            return Digest().text(name).tensor(t).hexdigest()

    nbytes = sum(t.numel() * t.element_size() for _, t in tensors)
    if nbytes > (16 << 20) and len(tensors) > 1:
        # hashlib releases the GIL on large buffers: tensors in parallel, combined in order
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            parts = list(pool.map(one, tensors))
    else:
        parts = [one(x) for x in tensors]
    d = Digest()
    for h in parts:
        d.text(h)
    n = len(tensors)
    try:
        structure = Digest().text(repr(model)).hexdigest()
    except Exception:  # noqa: BLE001 - a user module whose repr fails: its class stands for it
        structure = "unavailable"
    return {"class": callable_name(model), "structure": structure, "parameters": d.hexdigest(),
            "tensors": n, "bytes": int(nbytes)}


def _output_digest(out: Any, d: Digest) -> None:
    import torch

    if isinstance(out, torch.Tensor):
        d.tensor(out)
    elif isinstance(out, np.ndarray):
        d.array(out)
    else:
        d.text(repr(out))


def transform_fingerprint(transform: Any, probes: Iterable[np.ndarray] = (),
                          builtin: Tuple[Any, ...] = ()) -> Dict[str, Any]:
    """The fingerprint of an image transform.

    Args:
        transform: a built-in name (one of ``builtin``) or a callable.
        probes: uint8 (H, W, 3) images the callable is applied to; the digest
            of its outputs is recorded (each probe is transformed twice: when
            the two outputs differ the transform is ``"nondeterministic"`` and
            only its name is compared).
        builtin: the names of the built-in transforms (recorded by name).
    """
    if transform is None or isinstance(transform, str) or transform in builtin:
        return {"name": str(transform)}
    out: Dict[str, Any] = {"name": callable_name(transform)}
    d = Digest()
    seen = False
    for img in probes:
        a, b = Digest(), Digest()
        try:
            _output_digest(transform(np.array(img, copy=True)), a)
            _output_digest(transform(np.array(img, copy=True)), b)
        except Exception as exc:  # noqa: BLE001 - reported when the data is loaded; here: no probe
            out["probe"] = f"raised {type(exc).__name__}"
            return out
        if a.hexdigest() != b.hexdigest():
            out["probe"] = "nondeterministic"
            return out
        d.text(a.hexdigest())
        seen = True
    if seen:
        out["probe"] = d.hexdigest()
    return out


def _flatten(x: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(x, Mapping):
        out: Dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: x}


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=repr) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:28] + "..." + s[-28:]


def differences(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = (),
                labels: Optional[Mapping[str, str]] = None) -> List[str]:
    """The dotted keys whose values differ between two nested dicts, each as
    ``"key (was X, now Y)"``; keys under a prefix in ``ignore`` are skipped;
    ``labels`` maps a key to the words that name it (``"the model's
    parameters"``)."""
    a, b = _flatten(old), _flatten(new)
    ign = tuple(ignore)
    labels = labels or {}
    out = []
    for k in sorted(set(a) | set(b)):
        if any(k == p or k.startswith(p + ".") for p in ign):
            continue
        va, vb = a.get(k, "(absent)"), b.get(k, "(absent)")
        if va != vb:
            name = f"{labels[k]} [{k}]" if k in labels else k
            out.append(f"{name} (was {_short(va)}, now {_short(vb)})")
    return out


def digest_of(obj: Any) -> str:
    """A digest of a JSON-able object (dict keys sorted)."""
    return Digest().json(obj).hexdigest()
