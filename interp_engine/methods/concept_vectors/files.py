"""The concept-vector file (format ``interp_engine.concept_vectors``): what
:meth:`ConceptVectors.save <interp_engine.methods.concept_vectors.ConceptVectors.save>`
writes and :meth:`ConceptVectors.load <interp_engine.methods.concept_vectors.ConceptVectors.load>`
reads and checks (docs/concept_vectors.md, "Saved vectors"; the checks shared
with TCAV's CAV file are :mod:`interp_engine.methods._vector_files`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..._npz import Array, MapOf, Num, OneOf, save_npz
from .._vector_files import MODEL_SPEC, check_layer, check_model as check_file_model, check_setting, entries
from .._vector_files import model_key, read_file
from .solver import METHODS

__all__ = ["FORMAT", "VERSION", "SETTINGS", "ARRAYS", "write", "read", "check"]

FORMAT = "interp_engine.concept_vectors"
VERSION = 2  # 2: the header records the model (its fingerprint) and dim
#: the settings the vectors depend on, recorded in the header and checked on load
SETTINGS = ("method", "binarize", "quantile")
#: the arrays of the file, attributes of a fitted ConceptVectors
ARRAYS = ("vectors", "scales", "biases", "thresholds", "best_units", "train_unit_iou")
_WHAT = "concept-vector file"

# L concepts (the header's concepts, categories and labels), K units (the header's dim).  Version 2
# added dim and model (the fingerprint of the model the vectors were computed from; null: unknown)
# and transform (that of the fitting data's transform; null: unknown).
_HEADER_V1 = {"layer": str, "method": OneOf(METHODS), "binarize": bool, "quantile": Num(float, 0.0, 1.0),
              "concepts": [str], "categories": [str], "labels": [Num(int, 0)]}
_HEADER = dict(_HEADER_V1, dim=Num(int, 1), model=MODEL_SPEC, transform=(MapOf(str), None))


def _arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    n = entries(h, ("concepts", "categories", "labels"), "concept")
    dims = {"L": n}
    if "dim" in h:
        dims["K"] = h["dim"]
    return ({"vectors": Array("float64", ("L", "K")),
             "scales": Array("float64", ("L",), min=0.0),
             "biases": Array("float64", ("L",)),
             "thresholds": Array("float64", ("K",), inf=True),
             "best_units": Array("int64", ("L",), min=-1, max="K", max_offset=-1),
             "train_unit_iou": Array("float64", ("L",), min=0.0, max=1.0)}, dims)


def _saved_model_key(cv: Any) -> Optional[Dict[str, Any]]:
    if cv.model_key is not None or cv._model_unknown:
        return cv.model_key
    # vectors set by hand (never fit nor loaded): they are taken to be the bound model's
    return model_key(cv.model)


def write(path: Union[str, "os.PathLike[str]"], cv: Any) -> Path:
    """Write the fitted vectors of ``cv`` (a ConceptVectors) to ``path``."""
    header = {"format": FORMAT, "version": VERSION, "layer": cv.layer, "method": cv.method,
              "binarize": cv.binarize, "quantile": cv.quantile, "concepts": cv.concepts,
              "categories": cv.categories, "labels": [int(x) for x in cv.labels],
              "dim": int(cv.vectors.shape[1]), "model": _saved_model_key(cv), "transform": cv.transform_key}
    return save_npz(path, {k: getattr(cv, k) for k in ARRAYS}, header, compress=False)


def read(path: Any, check_model: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(header, arrays) of the file, checked against the schema of its
    version; a version-1 file (no model recorded) is refused unless
    ``check_model`` is False."""
    return read_file(path, FORMAT, VERSION, _WHAT, "ConceptVectors", "its layer, method, binarize and quantile", _HEADER_V1, _HEADER, _arrays,
                     check_model)


def check(path: Any, h: Dict[str, Any], cv: Any, check_model: bool) -> None:
    """Refuse the file for ``cv`` (a ConceptVectors) when its layer or a
    setting of :data:`SETTINGS` differs or, with ``check_model``, its vectors
    were computed for another model; ValueError naming the file and the field."""
    check_layer(path, h["layer"], cv.layer, "ConceptVectors")
    for key in SETTINGS:
        check_setting(path, key, h[key], getattr(cv, key), "ConceptVectors")
    if check_model:
        check_file_model(path, h.get("model"), cv.model, "ConceptVectors")
