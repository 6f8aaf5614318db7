"""The CAV file (format ``interp_engine.cavs``): what
:meth:`TCAV.save <interp_engine.methods.tcav.TCAV.save>` writes and
:meth:`TCAV.load <interp_engine.methods.tcav.TCAV.load>` reads and checks
(docs/concept_vectors.md, "Saved vectors"; the checks shared with the
concept-vector file are :mod:`interp_engine.methods._vector_files`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..._npz import Array, Num, OneOf, save_npz
from .._vector_files import MODEL_SPEC, check_layer, check_model as check_file_model, check_setting, entries
from .._vector_files import read_file

__all__ = ["FORMAT", "VERSION", "SETTINGS", "FEATURES", "write", "read", "check"]

FORMAT = "interp_engine.cavs"
VERSION = 2  # 2: the header records the model (its fingerprint) and dim
#: the settings the CAVs depend on, recorded in the header and checked on load
SETTINGS = ("features", "num_random")
FEATURES = ("flatten", "mean")
_WHAT = "CAV file"

# n CAVs of dimension D (the header's dim).  Version 2 added dim and model (the fingerprint of the
# model the CAVs were computed for; null: unknown).
_HEADER_V1 = {"layer": str, "features": OneOf(FEATURES), "num_random": Num(int, 2),
              "concepts": [str], "counterparts": [str]}
_HEADER = dict(_HEADER_V1, dim=Num(int, 1), model=MODEL_SPEC)


def _arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    n = entries(h, ("concepts", "counterparts"), "CAV")
    if n == 0:
        raise ValueError("field 'header.concepts' must name at least one CAV; got an empty list")
    dims = {"n": n}
    if "dim" in h:
        dims["D"] = h["dim"]
    return ({"vectors": Array("float64", ("n", "D")),
             "accuracies": Array("float64", ("n",), min=0.0, max=1.0, nan=True)}, dims)


def write(path: Union[str, "os.PathLike[str]"], t: Any, model: Optional[Dict[str, Any]]) -> Path:
    """Write the CAVs of ``t`` (a TCAV), recorded as computed for the model
    fingerprint ``model``, to ``path``."""
    keys = list(t.cavs)
    header = {"format": FORMAT, "version": VERSION, "layer": t.layer, "features": t.features,
              "num_random": t.num_random, "concepts": [k[0] for k in keys], "counterparts": [k[1] for k in keys],
              "dim": int(t.cavs[keys[0]].vector.shape[0]), "model": model}
    return save_npz(path, {"vectors": np.stack([t.cavs[k].vector for k in keys]),
                           "accuracies": np.array([t.cavs[k].accuracy for k in keys])}, header, compress=False)


def read(path: Any, check_model: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(header, arrays) of the file, checked against the schema of its
    version; a version-1 file (no model recorded) is refused unless
    ``check_model`` is False."""
    return read_file(path, FORMAT, VERSION, _WHAT, "TCAV", "its layer, features and num_random", _HEADER_V1, _HEADER, _arrays,
                     check_model)


def check(path: Any, h: Dict[str, Any], t: Any, check_model: bool) -> List[Tuple[str, str]]:
    """Refuse the file for ``t`` (a TCAV) when its layer or a setting of
    :data:`SETTINGS` differs, a (concept, counterpart) pair repeats or, with
    ``check_model``, its CAVs were computed for another model; ValueError
    naming the file and the field.  Returns the file's pairs."""
    check_layer(path, h["layer"], t.layer, "TCAV")
    for key in SETTINGS:
        check_setting(path, key, h[key], getattr(t, key), "TCAV")
    pairs = list(zip(h["concepts"], h["counterparts"]))
    if len(set(pairs)) != len(pairs):
        dup = next(p for i, p in enumerate(pairs) if p in pairs[:i])
        raise ValueError(f"{path!s}: fields 'header.concepts' / 'header.counterparts' repeat the CAV "
                         f"{dup!r}")
    if check_model:
        check_file_model(path, h.get("model"), t.model, "TCAV")
    return pairs
