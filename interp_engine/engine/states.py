"""The digests that accumulator states carry (``state["digest"]`` and
``state["field_digests"]``), and the check that a state's declared sizes
agree with its arrays: the pieces of the accumulator protocol
(docs/states.md) that an accumulator written outside the engine reuses, as
the Dissection's running top-k (``interp_engine.methods.dissection.accumulators``)
does.  Public and documented (docs/api.md), not re-exported at the top.

``state_dict()`` of every accumulator adds a digest of all its other fields;
``from_state_dict`` recomputes it from the fields as it converted them and
refuses the state when the two differ.  The field checks catch what
contradicts the accumulator's invariants; the digest catches every other
change made after ``state_dict()`` (a changed ``k`` that the levels still
fit, an edited count that stays within its bounds, a truncated or corrupted
file).  A state without a digest (written by hand, or by an older version) is
checked by the field checks alone.

Each field is digested on its own (BLAKE2b, 128 bits, over its name, its kind
and its value: integers in decimal, strings in UTF-8, arrays as dtype, shape
and C-order bytes (little-endian) after the same conversion
``from_state_dict`` applies, so that a state saved through npz, JSON or
pickle and loaded back has the same digests); ``digest`` is the BLAKE2b
(128 bits) of the names and field digests in a fixed order, so it covers
every byte of every field and each byte is hashed once.  ``field_digests``
records the first 64 bits of each field's digest (a short string:
``"name:hex;name:hex;..."``); it only serves to *name* the field that was
changed when ``digest`` does not match.  A state whose ``field_digests`` was
dropped is verified as fully by ``digest``, without naming the field.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["state_digest", "state_digests", "check_digest", "check_declared_length"]

_FIELD_HEX = 16  # hex digits of each field's digest recorded in field_digests (64 bits)


def _encode(h: "hashlib._Hash", name: str, value: Any) -> None:
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


def _field_hexes(fields: Iterable[Tuple[str, Any]]) -> Dict[str, str]:
    """Full hex digest of each field (values of a name given twice are digested together), in order."""
    hashers: Dict[str, Any] = {}
    for name, value in fields:
        h = hashers.get(name)
        if h is None:
            h = hashers[name] = hashlib.blake2b(digest_size=16)
        _encode(h, name, value)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _combine(hexes: Mapping[str, str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, hx in hexes.items():
        h.update(f"{name}\0{hx}\0".encode())
    return h.hexdigest()


def state_digests(fields: Iterable[Tuple[str, Any]]) -> Tuple[str, str]:
    """``(digest, field_digests)`` of ``(name, value)`` pairs (value an int,
    str, None or numpy array): what ``state_dict()`` stores under ``"digest"``
    and ``"field_digests"``."""
    hexes = _field_hexes(fields)
    return _combine(hexes), ";".join(f"{name}:{hx[:_FIELD_HEX]}" for name, hx in hexes.items())


def state_digest(fields: Iterable[Tuple[str, Any]]) -> str:
    """Hex digest of ``(name, value)`` pairs: value an int, str, None or numpy array."""
    return state_digests(fields)[0]


def _scalar_str(state: Mapping[str, Any], key: str, label: str) -> str:
    got = state[key]
    if isinstance(got, np.ndarray) and got.ndim == 0:
        got = got.item()
    if not isinstance(got, str):
        raise ValueError(f"{label}[{key!r}] must be a string from state_dict(); got {type(got).__name__}")
    return got


def _describe_value(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f" (a numpy array of shape {v.shape} and dtype {v.dtype})"
    text = repr(v)
    return " = " + (text if len(text) <= 80 else text[:77] + "...")


def check_digest(state: Any, fields: Sequence[Tuple[str, Any]], label: str = "state") -> None:
    """ValueError unless ``state["digest"]`` (when present) is the digest of
    ``fields``; when it is not and ``state["field_digests"]`` is there, the
    message names the fields whose digests changed."""
    if "digest" not in state:
        return
    got = _scalar_str(state, "digest", label)
    fields = list(fields)
    hexes = _field_hexes(fields)
    if got == _combine(hexes):
        return
    changed: List[str] = []
    if "field_digests" in state:
        recorded: Dict[str, str] = {}
        try:
            for part in _scalar_str(state, "field_digests", label).split(";"):
                name, _, hx = part.partition(":")
                recorded[name] = hx
        except ValueError:
            recorded = {}
        # written by state_digests (names known, 64 bits each): the fields whose digests differ are
        # the ones changed; else field_digests itself is damaged and names nothing
        if set(recorded) & set(hexes) and all(len(hx) == _FIELD_HEX for hx in recorded.values()):
            changed = [name for name, hx in hexes.items() if recorded.get(name) != hx[:_FIELD_HEX]]
            changed += [name for name in recorded if name not in hexes]
    if changed:
        values: Dict[str, Any] = {}
        for name, value in fields:  # a name given twice (a pair) is shown as a tuple
            values[name] = (values[name] if isinstance(values[name], tuple) else (values[name],)) + (value,) \
                if name in values else value
        first = changed[0]
        what = (f"{label}[{first!r}]{_describe_value(values[first])} is not what state_dict() wrote"
                if first in values else f"{label}[{first!r}] is missing but state_dict() wrote it")
        others = f" (changed fields: {changed})" if len(changed) > 1 else ""
        raise ValueError(f"{what}{others}: its digest differs from the one recorded in {label}['field_digests'], "
                         f"so the state was changed after state_dict() or is corrupted (a state without "
                         f"'digest' is checked by its fields alone)")
    raise ValueError(f"{label}['digest'] does not match the other fields: the state was changed after "
                     f"state_dict() or is corrupted (a state without 'digest' is checked by its fields alone)")


def check_declared_length(label: str, declared_key: str, declared: int, arrays: Mapping[str, Any],
                          axis: Union[int, Mapping[str, int]] = 0, what: str = "entries",
                          shown: Optional[str] = None) -> None:
    """ValueError naming ``declared_key`` when every numpy array of ``arrays``
    (those that have the axis: ``axis``, or ``axis[key]`` per array; at least
    two) has the same length along it and that is not ``declared``: the
    declared size is then the field that was changed (when the arrays
    disagree among themselves, the per-array shape checks that follow name
    the array that differs).  ``shown`` describes the declared field (default
    ``"= <declared>"``)."""
    lengths = {}
    for key, a in arrays.items():
        ax = axis if isinstance(axis, int) else axis[key]
        if isinstance(a, np.ndarray) and a.ndim > ax:
            lengths[f"{key}.shape[{ax}]"] = int(a.shape[ax])
    found = set(lengths.values())
    if len(lengths) >= 2 and len(found) == 1 and declared not in found:
        n = found.pop()
        shown = f"= {declared}" if shown is None else shown
        what = what[:-1] if n == 1 and what.endswith("s") else what
        raise ValueError(f"{label}[{declared_key!r}] {shown} does not match the arrays of the state, which all "
                         f"hold {n} {what} ({', '.join(lengths)}): expected {n} {what}, got {declared}")
