"""What a file of vectors was computed for: the checks shared by
:meth:`ConceptVectors.load <interp_engine.methods.concept_vectors.ConceptVectors.load>`
and :meth:`TCAV.load <interp_engine.methods.tcav.TCAV.load>`, and the one
shape of loading learned state both follow (:func:`build_for_file`).

Vectors live in one layer's feature space of one model: applied to another
layer, or to the same layer of other weights, they give numbers that mean
nothing, without an error when the sizes happen to agree.  So a file records,
next to the vectors, the model they were computed from
(:func:`interp_engine._fingerprint.model_fingerprint`: class, module tree, a
digest of every parameter and buffer), the layer and the feature dimension;
loading it into an object bound to a model and a layer refuses a mismatch in
one ValueError naming the field.

Files of version 1 (before the model was recorded) cannot be checked: they are
refused unless the caller passes ``check_model=False``.

Learned state is saved by ``obj.save(path)`` and read back by the classmethod
``Class.load(path, model, layer=None, *, check_model=True, **settings)``: the
object is built for ``model`` at ``layer`` (default: the file's layer) with
the settings the file records unless they are given, then the file is checked
against it exactly as above (a layer or a setting given that is not the
file's is refused, naming the field).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .._npz import MapOf, Num, load_npz, peek_header

__all__ = ["MODEL_SPEC", "file_version", "model_key", "entries", "check_setting", "check_layer",
           "check_model", "refuse_version_1", "build_for_file"]

#: the header field ``model``: :func:`~interp_engine._fingerprint.model_fingerprint`'s dict
#: (strings and counts), or null when the vectors' model is not known (a version-1 file loaded
#: with ``check_model=False`` and saved again)
MODEL_SPEC = (MapOf((str, Num(int, 0))), None)

_LABELS = {"parameters": "the model's parameters and buffers (weights)",
           "structure": "the model's module tree", "class": "the model class",
           "tensors": "the model's number of parameters and buffers",
           "bytes": "the model's size in bytes"}


def model_key(model: Any) -> Dict[str, Any]:
    """The fingerprint of ``model`` recorded in a file (see the module docs)."""
    from .._fingerprint import model_fingerprint

    return model_fingerprint(model)


def file_version(path: Any, fmt: str, what: str) -> Optional[int]:
    """The ``version`` of the file's header when it is a JSON object of format
    ``fmt`` with an integer version; None otherwise (the full load then says
    what is wrong).  Raises what :func:`~interp_engine._npz.load_npz` raises
    for a file that cannot be opened or a header that cannot be parsed."""
    h = peek_header(Path(path), what)
    if not isinstance(h, dict) or h.get("format") != fmt:
        return None
    v = h.get("version")
    return v if type(v) is int else None


def entries(h: Mapping[str, Any], keys: Sequence[str], what: str) -> int:
    """The common length of the header lists ``keys`` (one entry per
    ``what``); else a ValueError naming the list whose length is the odd one
    out (or every list, when no length is held by most of them)."""
    lens = {k: len(h[k]) for k in keys}
    counts = Counter(lens.values()).most_common()
    if len(counts) == 1:
        return counts[0][0]
    n, held = counts[0]
    if held == counts[1][1]:  # no majority: which list is wrong cannot be told
        listed = ", ".join(f"'header.{k}' ({lens[k]})" for k in keys)
        raise ValueError(f"fields {listed} must have the same length, one entry per {what}")
    odd = ", ".join(f"field 'header.{k}' has {lens[k]} {'entry' if lens[k] == 1 else 'entries'}"
                    for k in keys if lens[k] != n)
    same = " and ".join(f"'header.{k}'" for k in keys if lens[k] == n)
    raise ValueError(f"{odd} where {same} have {n}: one entry per {what} each")


def check_layer(path: Any, theirs: str, mine: str, cls: str) -> None:
    if theirs != mine:
        raise ValueError(f"{path} was computed for layer {theirs!r}, not {mine!r} (field 'header.layer'); "
                         f"load it into a {cls} of layer {theirs!r}")


def check_setting(path: Any, key: str, theirs: Any, mine: Any, cls: str) -> None:
    if theirs != mine:
        raise ValueError(f"{path} was computed with {key}={theirs!r}, not {mine!r} as this {cls} "
                         f"(field 'header.{key}')")


def check_model(path: Any, recorded: Optional[Mapping[str, Any]], model: Any, cls: str) -> None:
    """Refuse the file when ``recorded`` (its header's ``model``) is not the
    fingerprint of ``model``, naming what differs."""
    if recorded is None:
        raise ValueError(f"{path} does not record the model its vectors were computed for (field "
                         f"'header.model' is null: saved from vectors of unknown origin, such as a version-1 "
                         f"file loaded with check_model=False), so it cannot be checked against the model of "
                         f"this {cls}; pass check_model=False to load it anyway")
    from .._fingerprint import differences

    diff = differences(dict(recorded), model_key(model), labels=_LABELS)
    if diff:
        raise ValueError(f"{path} was computed for another model (field 'header.model' differs: "
                         f"{'; '.join(diff)}); load it into a {cls} of the model it was computed for, or "
                         f"pass check_model=False to use its vectors with this model anyway")


def refuse_version_1(path: Any, what: str, cls: str, checked: str) -> None:
    raise ValueError(f"{path} is a {what} of version 1, written before these files recorded the model "
                     f"the vectors were computed for (field 'header.model' is absent), so it cannot be "
                     f"checked against the model of this {cls}; pass check_model=False to load it anyway "
                     f"({checked} are still checked), or compute the vectors again and save them")


def build_for_file(cls: Any, path: Any, h: Mapping[str, Any], model: Any, layer: Optional[str],
                   settings: Mapping[str, Any], recorded: Sequence[str]) -> Any:
    """``cls(model, layer, **settings)`` for a file whose checked header is
    ``h``: ``layer`` defaults to the file's layer and each setting named in
    ``recorded`` to the file's value (given ones are kept, so that the
    file's checks refuse a mismatch, naming the field).  A file's layer that
    ``model`` does not have is a ValueError naming the file and the field."""
    kw = {k: h[k] for k in recorded}
    kw.update(settings)
    if layer is None:
        layer = h["layer"]
        if hasattr(model, "named_modules"):  # else the constructor says what model must be
            from ..capture import find_module

            try:
                find_module(model, layer)
            except ValueError as exc:
                raise ValueError(f"{path} was computed for layer {layer!r} (field 'header.layer'), which "
                                 f"this model does not have: {exc}") from None
    return cls(model, layer, **kw)


def read_file(path: Any, fmt: str, version: int, what: str, cls: str, checked: str, header_v1: Any, header: Any,
              arrays: Any, check_model: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(header, arrays) of a vector file, checked against the schema of its
    version (``header_v1`` for version 1, else ``header`` at ``version``); a
    version-1 file (no model recorded) is refused unless ``check_model`` is
    False (:func:`refuse_version_1` says so, naming what is still ``checked``)."""
    legacy = file_version(path, fmt, what) == 1
    if legacy and check_model:
        refuse_version_1(path, what, cls, checked)
    if legacy:
        return load_npz(path, fmt, 1, what, header_v1, arrays)
    return load_npz(path, fmt, version, what, header, arrays)
