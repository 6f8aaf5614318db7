"""The digest that accumulator states carry (``state["digest"]``).

``state_dict()`` of every accumulator adds a digest of all its other fields;
``from_state_dict`` recomputes it from the fields as it converted them and
refuses the state when the two differ.  The field checks catch what
contradicts the accumulator's invariants; the digest catches every other
change made after ``state_dict()`` (a changed ``k`` that the levels still
fit, an edited count that stays within its bounds, a truncated or corrupted
file).  A state without a digest (written by hand, or by an older version) is
checked by the field checks alone.

The digest is BLAKE2b (128 bits) over the fields in a fixed order, each as
its name, its kind and its value: integers in decimal, strings in UTF-8,
arrays as dtype, shape and C-order bytes (little-endian) after the same
conversion ``from_state_dict`` applies, so that a state saved through npz,
JSON or pickle and loaded back has the same digest.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Tuple

import numpy as np

__all__ = ["state_digest", "check_digest"]


def state_digest(fields: Iterable[Tuple[str, Any]]) -> str:
    """Hex digest of ``(name, value)`` pairs: value an int, str, None or numpy array."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in fields:
        h.update(name.encode() + b"\0")
        if isinstance(value, np.ndarray):
            a = np.ascontiguousarray(value)
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            h.update(f"a:{a.dtype.str}:{a.shape}\0".encode())
            h.update(memoryview(a).cast("B") if a.size else b"")
        elif value is None:
            h.update(b"n\0")
        elif isinstance(value, (bool, np.bool_)):
            h.update(f"b:{int(value)}\0".encode())
        elif isinstance(value, (int, np.integer)):
            h.update(f"i:{int(value)}\0".encode())
        elif isinstance(value, str):
            h.update(b"s:" + value.encode() + b"\0")
        else:
            raise TypeError(f"state_digest: unsupported value of type {type(value).__name__} for {name!r}")
    return h.hexdigest()


def check_digest(state: Any, fields: Iterable[Tuple[str, Any]], label: str = "state") -> None:
    """ValueError unless ``state["digest"]`` (when present) is the digest of ``fields``."""
    if "digest" not in state:
        return
    got = state["digest"]
    if isinstance(got, np.ndarray) and got.ndim == 0:
        got = got.item()
    if not isinstance(got, str):
        raise ValueError(f"{label}['digest'] must be a hex string from state_dict(); got {type(got).__name__}")
    if got != state_digest(fields):
        raise ValueError(f"{label}['digest'] does not match the other fields: the state was changed after "
                         f"state_dict() or is corrupted (a state without 'digest' is checked by its "
                         f"fields alone)")
