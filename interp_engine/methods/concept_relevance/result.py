"""The results of :class:`~interp_engine.methods.concept_relevance.ConceptRelevance`:
:class:`RelevanceResult` (global: classes x concepts) and
:class:`LocalContributions` (local: one image, one class), on the
:class:`~interp_engine.methods._result.Result` base (``table``, ``to_csv``,
``save`` / ``load``, a one-line ``repr``).

Files (one ``.npz`` each, a JSON header and arrays, no pickle):

* ``interp_engine.concept_relevance`` version 1 (:meth:`RelevanceResult.save`):
  header ``concepts`` (L names), ``classes`` (R class indices), ``layer``,
  ``method`` (``"gradient"`` or ``"linear_head"``); arrays ``relevance``
  float64 (R, L) (NaN exactly in the rows of classes no input was predicted
  as) and, for ``"gradient"``, ``counts`` int64 (R,) >= 0.
* ``interp_engine.concept_contributions`` version 1 (:meth:`LocalContributions.save`):
  header ``target_class``, ``logit``, ``total``, ``residual``, ``concepts``
  (L names, sorted by contribution), ``maps`` (whether saved); arrays
  ``contributions``, ``derivatives``, ``projections`` float64 (L,), ``order``
  int64 (L,) (a permutation of 0..L-1) and, when saved, ``maps`` float32
  (L, H, W).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..._npz import Array, Num, OneOf, load_npz, save_npz
from ...engine.checks import check_positive_int
from .._result import Result

__all__ = ["RelevanceResult", "LocalContributions"]

PathLike = Union[str, "os.PathLike[str]"]

_REL_FORMAT, _REL_VERSION = "interp_engine.concept_relevance", 1
_REL_HEADER = {"concepts": [str], "classes": [Num(int, 0)], "layer": str,
               "method": OneOf(("gradient", "linear_head"))}
_LOC_FORMAT, _LOC_VERSION = "interp_engine.concept_contributions", 1
_LOC_HEADER = {"target_class": Num(int, 0), "logit": Num(float, nan=True), "total": Num(float, nan=True),
               "residual": Num(float, nan=True), "concepts": [str], "maps": bool}


def _names(values: Sequence[Any], path: Path, field_name: str) -> List[str]:
    if not values:
        raise ValueError(f"{path}: field 'header.{field_name}' must hold at least one entry; got none")
    return list(values)


@dataclass(repr=False)
class RelevanceResult(Result):
    """Concept-class relevance.

    Attributes:
        relevance: float64 ``(num_rows, L)``; row ``i`` is class
            ``classes[i]``, column ``c`` concept ``concepts[c]`` (NaN for a
            class no input was predicted as).
        concepts: the ``L`` concept names.
        classes: the class index of every row.
        counts: int64 ``(num_rows,)`` inputs predicted as each class, or
            ``None`` for the linear-head closed form.
        layer: the layer (``""`` when not known).
        method: ``"gradient"`` or ``"linear_head"``.
    """

    relevance: np.ndarray = field(repr=False)
    concepts: List[str]
    classes: List[int]
    counts: Optional[np.ndarray] = field(default=None, repr=False)
    layer: str = ""
    method: str = "gradient"

    def top(self, class_index: int, n: int = 5) -> List[Tuple[str, float]]:
        """The ``n`` concepts of highest relevance for class ``class_index``
        (a class index, not a row), highest first: ``[(concept, value)]``."""
        if class_index not in self.classes:
            raise KeyError(f"class {class_index} is not in this result (classes "
                           f"{self.classes[:10]}{'...' if len(self.classes) > 10 else ''})")
        row = self.relevance[self.classes.index(class_index)]
        if np.all(np.isnan(row)):
            return []
        order = np.argsort(-row, kind="stable")[:check_positive_int(n, "n")]
        return [(self.concepts[j], float(row[j])) for j in order]

    def top_table(self, top: int = 5) -> List[Dict[str, Any]]:
        """One dict per class: ``class``, ``count`` (None for a linear head) and
        ``top``, the ``top`` most relevant ``(concept, value)`` pairs, highest
        first (empty when no input was predicted as it)."""
        return [{"class": k,
                 "count": None if self.counts is None else int(self.counts[i]),
                 "top": self.top(k, top)} for i, k in enumerate(self.classes)]

    def table(self, top: Optional[int] = None) -> List[Dict[str, Any]]:  # type: ignore[override]
        """One dict per (class, concept), the classes in row order and each class's
        concepts by relevance, highest first: ``class``, ``count`` (None for a
        linear head), ``rank`` (1 = the most relevant; None for a class no input
        was predicted as, whose concepts keep their order), ``concept``,
        ``relevance`` (NaN for such a class).

        ``table(top=n)`` (the per-class form) is deprecated: use :meth:`top_table`."""
        if top is not None:
            warnings.warn("RelevanceResult.table(top=...) is deprecated; use RelevanceResult.top_table(top)",
                          DeprecationWarning, stacklevel=2)
            return self.top_table(top)
        rows: List[Dict[str, Any]] = []
        for i, k in enumerate(self.classes):
            r = self.relevance[i]
            count = None if self.counts is None else int(self.counts[i])
            empty = bool(np.all(np.isnan(r)))
            order = range(len(self.concepts)) if empty else np.argsort(-r, kind="stable")
            for rank, j in enumerate(order, 1):
                rows.append({"class": int(k), "count": count, "rank": None if empty else rank,
                             "concept": self.concepts[int(j)], "relevance": float(r[int(j)])})
        return rows

    def _csv_fields(self) -> Sequence[str]:
        return ("class", "count", "rank", "concept", "relevance")

    def _summary(self) -> str:
        return (f"{self.method} at {self.layer!r}: {len(self.classes)} classes x {len(self.concepts)} "
                f"concepts")

    def __str__(self) -> str:
        lines = [f"concept-class relevance ({self.method}) at {self.layer!r}: "
                 f"{len(self.classes)} classes x {len(self.concepts)} concepts"]
        for row in self.top_table(3):
            cnt = "" if row["count"] is None else f" (n={row['count']})"
            tops = ", ".join(f"{c} {v:+.3g}" for c, v in row["top"]) or "-"
            lines.append(f"class {row['class']}{cnt}: {tops}")
        return "\n".join(lines)

    def plot_heatmap(self, path: Any, *, class_names: Optional[Sequence[str]] = None) -> None:
        """Save a heatmap (classes x concepts, diverging colours centred on 0)
        to ``path``: :func:`interp_engine.report.plot_relevance_heatmap`.
        Needs matplotlib."""
        from ...report.relevance_plots import plot_relevance_heatmap

        plot_relevance_heatmap(self, path, class_names=class_names)

    # ----- file
    def save(self, path: PathLike) -> Path:
        """Write the result to one ``.npz`` file (module docstring); returns the path."""
        arrays: Dict[str, np.ndarray] = {"relevance": np.asarray(self.relevance, np.float64)}
        if self.method == "gradient":
            if self.counts is None:
                raise ValueError("RelevanceResult.save: a gradient result needs counts; got None")
            arrays["counts"] = np.asarray(self.counts, np.int64)
        header = {"format": _REL_FORMAT, "version": _REL_VERSION, "concepts": [str(c) for c in self.concepts],
                  "classes": [int(k) for k in self.classes], "layer": str(self.layer), "method": self.method}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: PathLike) -> "RelevanceResult":
        """Read a file written by :meth:`save`, checked against its schema (module
        docstring); ValueError naming the file and the field otherwise."""
        path = Path(path)

        def schema(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
            dims = {"R": len(_names(h["classes"], path, "classes")), "L": len(_names(h["concepts"], path, "concepts"))}
            arrays = {"relevance": Array("float64", ("R", "L"), nan=h["method"] == "gradient", inf=True)}
            if h["method"] == "gradient":
                arrays["counts"] = Array("int64", ("R",), min=0)
            return arrays, dims

        h, a = load_npz(path, _REL_FORMAT, _REL_VERSION, "concept relevance result", _REL_HEADER, schema)
        rel, counts = a["relevance"], a.get("counts")
        if counts is not None:
            bad = np.flatnonzero((counts == 0) & ~np.isnan(rel).all(axis=1))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"{path}: field 'relevance' row {i} (class {h['classes'][i]}) must be NaN: "
                                 "no input was predicted as it (count 0)")
        return cls(rel, list(h["concepts"]), list(h["classes"]), counts, h["layer"], h["method"])


@dataclass(repr=False)
class LocalContributions(Result):
    """Each concept's contribution to one class logit for one image
    (docs/concept_vectors.md), sorted by contribution, highest first.

    Attributes:
        target_class: the class whose logit is explained.
        logit: its value for the image.
        concepts: names, sorted by contribution (descending).
        contributions: float64 ``(L,)`` ``D_c * P_c`` in that order.
        derivatives: float64 ``(L,)`` ``D_c`` (directional derivatives).
        projections: float64 ``(L,)`` ``P_c`` (mean projections).
        order: int64 ``(L,)`` row of ``vectors`` of each entry (so
            ``maps[order]`` follows the sorted concepts).
        total: ``sum_{h,w} grad . a`` (gradient x activation).
        residual: ``total - contributions.sum()``.
        maps: float32 ``(L, H, W)`` concept maps of the image, in the row order
            of the vectors, or None (not computed).
    """

    target_class: int
    logit: float
    concepts: List[str]
    contributions: np.ndarray = field(repr=False)
    derivatives: np.ndarray = field(repr=False)
    projections: np.ndarray = field(repr=False)
    order: np.ndarray = field(repr=False)
    total: float = 0.0
    residual: float = 0.0
    maps: Optional[np.ndarray] = field(default=None, repr=False)

    def top(self, n: int = 5) -> List[Tuple[str, float]]:
        """The ``n`` largest contributions: ``[(concept, value)]``."""
        n = check_positive_int(n, "n")
        return [(c, float(x)) for c, x in zip(self.concepts[:n], self.contributions[:n])]

    def table(self) -> List[Dict[str, Any]]:
        """One dict per concept, by contribution, highest first: ``class`` (the
        target class), ``concept``, ``vector`` (its row of the vectors),
        ``contribution``, ``derivative``, ``projection``."""
        return [{"class": int(self.target_class), "concept": c, "vector": int(self.order[i]),
                 "contribution": float(self.contributions[i]), "derivative": float(self.derivatives[i]),
                 "projection": float(self.projections[i])} for i, c in enumerate(self.concepts)]

    def _csv_fields(self) -> Sequence[str]:
        return ("class", "concept", "vector", "contribution", "derivative", "projection")

    def _summary(self) -> str:
        return (f"class {self.target_class}: logit {self.logit:.4g}, {len(self.concepts)} concepts, "
                f"residual {self.residual:.4g}")

    def __str__(self) -> str:
        lines = [f"class {self.target_class}: logit {self.logit:.4g}, gradient x activation "
                 f"{self.total:.4g}, residual {self.residual:.4g}"]
        lines += [f"  {c:<20} {x:+.4g}" for c, x in self.top(len(self.concepts))]
        return "\n".join(lines)

    def plot(self, image_uint8: Any, path: Any, *, top: int = 4, alpha: float = 0.5) -> None:
        """Save the image, its ``top`` concept maps overlaid and a bar chart of the
        contributions: :func:`interp_engine.report.plot_local` with :attr:`maps`
        (ValueError when the maps were not computed).  Needs matplotlib."""
        from ...report.relevance_plots import plot_local

        if self.maps is None:
            raise ValueError("maps: these contributions have no concept maps (explain_image(..., maps=True) "
                             "computes them)")
        plot_local(image_uint8, self.maps, self, path, top=top, alpha=alpha)

    # ----- file
    def save(self, path: PathLike, *, maps: bool = True) -> Path:
        """Write the contributions (and, with ``maps``, the concept maps when
        present) to one ``.npz`` file (module docstring); returns the path."""
        arrays: Dict[str, np.ndarray] = {
            "contributions": np.asarray(self.contributions, np.float64),
            "derivatives": np.asarray(self.derivatives, np.float64),
            "projections": np.asarray(self.projections, np.float64), "order": np.asarray(self.order, np.int64)}
        with_maps = bool(maps and self.maps is not None)
        if with_maps:
            arrays["maps"] = np.asarray(self.maps, np.float32)
        header = {"format": _LOC_FORMAT, "version": _LOC_VERSION, "target_class": int(self.target_class),
                  "logit": float(self.logit), "total": float(self.total), "residual": float(self.residual),
                  "concepts": [str(c) for c in self.concepts], "maps": with_maps}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: PathLike) -> "LocalContributions":
        """Read a file written by :meth:`save`, checked against its schema (module
        docstring); ValueError naming the file and the field otherwise."""
        path = Path(path)

        def schema(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
            dims = {"L": len(_names(h["concepts"], path, "concepts"))}
            arrays = {"contributions": Array("float64", ("L",), nan=True, inf=True),
                      "derivatives": Array("float64", ("L",), nan=True, inf=True),
                      "projections": Array("float64", ("L",), nan=True, inf=True),
                      "order": Array("int64", ("L",), min=0, max="L", max_offset=-1)}
            if h["maps"]:
                arrays["maps"] = Array("float32", ("L", "H", "W"), nan=True, inf=True)
            return arrays, dims

        h, a = load_npz(path, _LOC_FORMAT, _LOC_VERSION, "concept contributions", _LOC_HEADER, schema)
        if np.unique(a["order"]).size != a["order"].size:
            raise ValueError(f"{path}: field 'order' must be a permutation of 0..{a['order'].size - 1} (one entry "
                             "per row of the vectors); it repeats a row")
        return cls(h["target_class"], h["logit"], list(h["concepts"]), a["contributions"], a["derivatives"],
                   a["projections"], a["order"], h["total"], h["residual"], a.get("maps"))
