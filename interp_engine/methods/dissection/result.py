"""The results of a dissection: :class:`LayerResult` (one layer) and
:class:`DissectionResult` (a run), and their file format.

Both are :class:`~interp_engine.methods._result.Result`\\ s: ``table()``,
``to_csv(path)`` (through :func:`interp_engine._io.write_csv`), ``save(path)``
/ ``load(path)`` (one ``.npz``: arrays and a JSON header, checked against its
schema on load) and a one-line ``repr``.  Semantics: docs/algorithms.md §1;
the page: docs/dissection.md, "Results".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ..._io import write_csv
from ..._npz import Array, MapOf, Num, load_npz, save_npz
from ...engine.checks import check_int
from .._result import Result

__all__ = ["LayerResult", "DissectionResult"]

_RESULT_FORMAT = "interp_engine.dissection"
_RESULT_VERSION = 1


@dataclass(repr=False)
class LayerResult(Result):
    """Dissection of one layer (K units, L labels, C categories).

    Arrays: ``thresholds`` (K,) float64; ``iou`` (K, L) float64;
    ``intersection`` (K, L), ``label_pixels`` (L,), ``unit_pixels`` (K, C)
    int64 counts; ``top_images`` (K, top_k) int64 dataset indices (-1 where
    fewer images were seen), ``top_values`` (K, top_k) float64 (the maximum of
    the unit's map on that image) and ``top_maps`` (K, top_k, h, w) float32 (the
    unit's native-resolution map on that image, for the report).
    ``label_category`` (L,) is each label's category index (-1: a label of no
    selected category, never the best).
    """

    layer: str
    label_names: List[str]
    label_category: np.ndarray
    categories: List[str]
    thresholds: np.ndarray
    iou: np.ndarray
    intersection: np.ndarray
    label_pixels: np.ndarray
    unit_pixels: np.ndarray
    top_images: np.ndarray
    top_values: np.ndarray
    top_maps: np.ndarray
    quantile: float = 0.005
    iou_threshold: float = 0.04
    basis: str = "units"

    # ----- per-category and overall best labels
    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    def _category_masks(self) -> np.ndarray:
        cats = np.asarray(self.label_category)
        masks = np.stack([cats == c for c in range(len(self.categories))]) if self.categories else \
            np.zeros((0, cats.size), bool)
        masks[:, 0] = False  # label 0 is "none"
        return masks

    @property
    def category_best_label(self) -> np.ndarray:
        """(K, C) int64: per unit and category, the label of the category with
        the highest IoU (ties: lowest label number); -1 (no label) when the
        unit's IoU is 0 for every label of the category, or the category has
        no label."""
        masks = self._category_masks()
        out = np.full((self.num_units, len(self.categories)), -1, dtype=np.int64)
        for c, m in enumerate(masks):
            idx = np.flatnonzero(m)
            if idx.size:
                sub = self.iou[:, idx]
                best = idx[np.argmax(sub, axis=1)]
                out[:, c] = np.where(sub.max(axis=1) > 0, best, -1)
        return out

    @property
    def category_best_iou(self) -> np.ndarray:
        """(K, C) float64: the IoU of :attr:`category_best_label` (0 where
        there is no label)."""
        best = self.category_best_label
        vals = np.take_along_axis(self.iou, np.maximum(best, 0), axis=1)
        vals[best < 0] = 0.0
        return vals

    @property
    def best_category(self) -> np.ndarray:
        """(K,) int64: the category of the unit's label (ties: first
        category); -1 for a unit without a label."""
        if not self.categories:
            return np.full(self.num_units, -1, np.int64)
        ciou = self.category_best_iou
        cat = np.argmax(ciou, axis=1).astype(np.int64)
        return np.where(ciou.max(axis=1) > 0, cat, -1)

    @property
    def best_label(self) -> np.ndarray:
        """(K,) int64: the unit's label, the best over categories; -1 for a
        unit whose IoU is 0 for every label (it has no label: shown as
        ``"-"``)."""
        cat = self.best_category
        lab = np.take_along_axis(self.category_best_label, np.maximum(cat, 0)[:, None], axis=1)[:, 0] \
            if self.categories else np.full(self.num_units, -1, np.int64)
        return np.where(cat >= 0, lab, -1)

    @property
    def best_iou(self) -> np.ndarray:
        """(K,) float64: the IoU of :attr:`best_label` (0 without a label)."""
        if not self.categories:
            return np.zeros(self.num_units, np.float64)
        cat = self.best_category
        vals = np.take_along_axis(self.category_best_iou, np.maximum(cat, 0)[:, None], axis=1)[:, 0]
        return np.where(cat >= 0, vals, 0.0)

    @property
    def detectors(self) -> np.ndarray:
        """(K,) bool: units with a label whose IoU is >= ``iou_threshold``."""
        return (self.best_iou >= self.iou_threshold) & (self.best_label >= 0)

    def label_name(self, label: int) -> str:
        """The name of a label number; ``"-"`` for -1 (no label)."""
        return "-" if int(label) < 0 else self.label_names[int(label)]

    def unit_order(self) -> np.ndarray:
        """Units sorted by best IoU, descending (ties: lower unit first)."""
        return np.lexsort((np.arange(self.num_units), -self.best_iou))

    def summary(self) -> Dict[str, Any]:
        """Counts of detectors and unique detectors (distinct labels among
        detectors), overall and per category, as in the paper's figures.
        Units without a label (IoU 0 for every label) are never detectors."""
        det = self.detectors
        cat = self.best_category
        lab = self.best_label
        per_cat = {}
        for c, name in enumerate(self.categories):
            sel = det & (cat == c)
            per_cat[name] = {"detectors": int(sel.sum()), "unique": int(np.unique(lab[sel]).size)}
        per_label: Dict[str, int] = {}
        for u in np.flatnonzero(det):
            name = self.label_names[int(lab[u])]
            per_label[name] = per_label.get(name, 0) + 1
        return {"layer": self.layer, "basis": self.basis, "units": self.num_units,
                "detectors": int(det.sum()), "unique_detectors": int(np.unique(lab[det]).size),
                "unlabelled": int((lab < 0).sum()), "per_category": per_cat,
                "per_label": dict(sorted(per_label.items(), key=lambda kv: (-kv[1], kv[0])))}

    def table(self) -> List[Dict[str, Any]]:
        """One row (dict) per unit, sorted by IoU: unit (0-based: the channel
        index), label, category, iou, threshold, detector, then
        ``<category>-label`` and ``<category>-iou`` per category.  A unit or
        category without a label has label ``"-"`` and category ``"-"``.
        Pandas-free; ``pandas.DataFrame(rows)`` makes a frame."""
        best, cbest, ciou = self.best_label, self.category_best_label, self.category_best_iou
        bcat, biou, det = self.best_category, self.best_iou, self.detectors
        rows = []
        for u in self.unit_order():
            row: Dict[str, Any] = {"unit": int(u), "label": self.label_name(best[u]),
                                   "category": self.categories[int(bcat[u])] if bcat[u] >= 0 else "-",
                                   "iou": float(biou[u]), "threshold": float(self.thresholds[u]),
                                   "detector": bool(det[u])}
            for c, name in enumerate(self.categories):
                row[f"{name}-label"] = self.label_name(cbest[u, c])
                row[f"{name}-iou"] = float(ciou[u, c])
            rows.append(row)
        return rows

    def format_table(self, max_rows: Optional[int] = 20) -> str:
        """A plain-text table of the top units (all with ``max_rows=None``);
        units are numbered from 0 (the channel index)."""
        rows = self.table()
        if max_rows is not None:
            rows = rows[:max_rows]
        lines = [f"{'unit':>5}  {'label':<20} {'category':<10} {'IoU':>7}  detector"]
        for r in rows:
            lines.append(f"{r['unit']:>5}  {r['label'][:20]:<20} {r['category'][:10]:<10} {r['iou']:7.4f}  "
                         f"{'yes' if r['detector'] else '-'}")
        return "\n".join(lines)

    def tally_table(self) -> List[Dict[str, Any]]:
        """The rows of NetDissect-Lite's ``tally.csv`` (what :meth:`to_csv`
        writes), one dict per unit sorted by score descending: ``unit``
        (1-based, as in Lite: unit u of this result is row ``unit = u + 1``),
        ``category``, ``label``, ``score``, then per category
        ``<cat>-label, <cat>-truth, <cat>-activation, <cat>-intersect, <cat>-iou``
        (truth = label pixels L, activation = the unit's pixels A in that
        category, intersect = I).  Where a unit (or a category) has no label
        (IoU 0 for every label), its label and category are ``"-"``, truth and
        intersect 0."""
        cbest, ciou = self.category_best_label, self.category_best_iou
        bcat = self.best_category
        rows = []
        for u in self.unit_order():
            c0 = int(bcat[u])
            row: Dict[str, Any] = {"unit": int(u) + 1,
                                   "category": self.categories[c0] if c0 >= 0 else "-",
                                   "label": self.label_name(cbest[u, c0]) if c0 >= 0 else "-",
                                   "score": float(ciou[u, c0]) if c0 >= 0 else 0.0}
            for c, name in enumerate(self.categories):
                lab = int(cbest[u, c])
                row.update({f"{name}-label": self.label_name(lab),
                            f"{name}-truth": int(self.label_pixels[lab]) if lab >= 0 else 0,
                            f"{name}-activation": int(self.unit_pixels[u, c]),
                            f"{name}-intersect": int(self.intersection[u, lab]) if lab >= 0 else 0,
                            f"{name}-iou": float(ciou[u, c])})
            rows.append(row)
        return rows

    def _tally_fields(self) -> List[str]:
        fields = ["unit", "category", "label", "score"]
        for name in self.categories:
            fields += [f"{name}-label", f"{name}-truth", f"{name}-activation", f"{name}-intersect", f"{name}-iou"]
        return fields

    def to_csv(self, path: Union[str, os.PathLike]) -> Path:
        """Write NetDissect-Lite's ``tally.csv`` (the rows of
        :meth:`tally_table`, the file the field's tools read; not the rows of
        :meth:`table`, which number units from 0) through the package's CSV
        writer; returns the path."""
        return write_csv(path, self.tally_table(), self._tally_fields())

    # ----- the Result protocol
    @property
    def key(self) -> str:
        """The name of this layer in a :class:`DissectionResult`: the layer, or
        ``"<layer>@<basis>"`` for a rotated basis."""
        return self.layer if self.basis == "units" else f"{self.layer}@{self.basis}"

    def _summary(self) -> str:
        basis = "" if self.basis == "units" else f", basis={self.basis!r}"
        return f"layer={self.layer!r}{basis}, {self.num_units} units, {int(self.detectors.sum())} detectors"

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Save as a dissection result file of this one layer (:meth:`DissectionResult.save`)."""
        return DissectionResult({self.key: self}).save(path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], layer: Optional[str] = None) -> "LayerResult":
        """Read one layer of a dissection result file (:meth:`DissectionResult.load`):
        ``layer`` (a key of the file), or the file's only layer when None
        (ValueError naming the file and its layers when it has several, or not ``layer``)."""
        res = DissectionResult.load(path)
        if layer is None:
            if len(res) != 1:
                raise ValueError(f"{path}: holds the layers {list(res)}; pass layer= to choose one")
            return next(iter(res.layers.values()))
        if layer not in res.layers:
            raise ValueError(f"{path}: has no layer {layer!r}; it has {list(res)}")
        return res.layers[layer]

    # ----- (de)serialization helpers
    _ARRAYS = ("label_category", "thresholds", "iou", "intersection", "label_pixels", "unit_pixels",
               "top_images", "top_values", "top_maps")

    def _meta(self) -> Dict[str, Any]:
        return {"layer": self.layer, "label_names": list(self.label_names), "categories": list(self.categories),
                "quantile": self.quantile, "iou_threshold": self.iou_threshold, "basis": self.basis}


@dataclass(repr=False)
class DissectionResult(Result):
    """The result of a run: one :class:`LayerResult` per layer (a rotated
    basis appears as its own entry, e.g. ``"conv4@rotation0"``)."""

    layers: Dict[str, LayerResult]
    config: Dict[str, Any] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> LayerResult:
        try:
            return self.layers[layer]
        except KeyError:
            raise KeyError(f"no layer {layer!r} in this result; it has {list(self.layers)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def summary(self) -> Dict[str, Dict[str, Any]]:
        return {name: lr.summary() for name, lr in self.layers.items()}

    def format_summary(self) -> str:
        lines = []
        for name, lr in self.layers.items():
            s = lr.summary()
            per = ", ".join(f"{c} {v['detectors']}/{v['unique']}" for c, v in s["per_category"].items())
            none = f", {s['unlabelled']} without a label (IoU 0 for every label)" if s["unlabelled"] else ""
            lines.append(f"{name}: {s['detectors']} of {s['units']} units are detectors (IoU >= "
                         f"{lr.iou_threshold}), {s['unique_detectors']} unique labels{none}; per category "
                         f"detectors/unique: {per}")
        return "\n".join(lines)

    def table(self) -> List[Dict[str, Any]]:
        """One row (dict) per unit of every layer: ``layer`` (the key, e.g.
        ``"conv4@rotation0"``), then the columns of :meth:`LayerResult.table`
        (units numbered from 0, rows of a layer sorted by IoU), layer after layer."""
        return [{"layer": name, **row} for name, lr in self.layers.items() for row in lr.table()]

    def _csv_fields(self) -> List[str]:
        fields = ["layer", "unit", "label", "category", "iou", "threshold", "detector"]
        for lr in self.layers.values():
            for name in lr.categories:
                for f in (f"{name}-label", f"{name}-iou"):
                    if f not in fields:
                        fields.append(f)
        return fields

    def _summary(self) -> str:
        units = sum(lr.num_units for lr in self.layers.values())
        det = sum(int(lr.detectors.sum()) for lr in self.layers.values())
        return f"layers={list(self.layers)}, {units} units, {det} detectors"

    def rotation_summary(self, layer: str, seed: Optional[int] = None) -> Dict[str, Any]:
        """The paper's basis experiment, read from a result of
        ``Dissection(model, [layer], rotations=[seed]).explain(dataset)``:
        ``{"units": LayerResult, "rotated": LayerResult, "unique_units": int,
        "unique_rotated": int, "detectors_units": int, "detectors_rotated":
        int}`` (the unique detectors and detectors of the layer in its own
        basis and in the random one).  ``seed``: which rotation (None: the
        layer's only one; ValueError when it has none or several)."""
        a = self[layer]
        if seed is None:
            seeds = [k[len(layer) + len("@rotation"):] for k in self.layers if k.startswith(f"{layer}@rotation")]
            if len(seeds) != 1:
                raise ValueError(f"seed must name one of the rotations of layer {layer!r} in this result "
                                 f"({seeds or 'none: dissect with rotations=[seed]'}); got None")
            key = f"{layer}@rotation{seeds[0]}"
        else:
            key = f"{layer}@rotation{check_int(seed, 'seed', minimum=0)}"
        if key not in self.layers:
            raise ValueError(f"seed: this result has no layer {key!r} (dissect with rotations=[{seed}]); it has "
                             f"{list(self.layers)}")
        b = self.layers[key]
        sa, sb = a.summary(), b.summary()
        return {"units": a, "rotated": b, "unique_units": sa["unique_detectors"],
                "unique_rotated": sb["unique_detectors"], "detectors_units": sa["detectors"],
                "detectors_rotated": sb["detectors"]}

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Save to one ``.npz`` file (no pickles: arrays plus a JSON header)."""
        path = Path(path)
        arrays: Dict[str, np.ndarray] = {}
        metas = []
        for i, (name, lr) in enumerate(self.layers.items()):
            m = lr._meta()
            m["key"] = name
            metas.append(m)
            for a in LayerResult._ARRAYS:
                arrays[f"l{i}.{a}"] = np.asarray(getattr(lr, a))
        header = {"format": _RESULT_FORMAT, "version": _RESULT_VERSION, "layers": metas,
                  "config": _jsonable(self.config), "timings": self.timings}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "DissectionResult":
        """Load a file written by :meth:`save`, checked against its schema
        (:func:`_result_arrays`): every array's dtype, shape (K units, L labels,
        C categories of its layer's header) and range, every header key's JSON
        type; ValueError naming the file and the field otherwise."""
        path = Path(path)
        header, arrays = load_npz(path, _RESULT_FORMAT, _RESULT_VERSION, "dissection result",
                                  _RESULT_HEADER, _result_arrays)
        layers = {}
        for i, m in enumerate(header["layers"]):
            if m["key"] in layers:
                raise ValueError(f"{path}: field 'header.layers[{i}].key' repeats layer {m['key']!r}")
            arrs = {a: arrays[f"l{i}.{a}"] for a in LayerResult._ARRAYS}
            over = arrs["intersection"] > arrs["label_pixels"][None, :]
            if over.any():
                u, lab = (int(x) for x in np.argwhere(over)[0])
                raise ValueError(f"{path}: field 'l{i}.intersection' exceeds 'l{i}.label_pixels' (unit {u}, "
                                 f"label {lab}: {int(arrs['intersection'][u, lab])} > "
                                 f"{int(arrs['label_pixels'][lab])})")
            cat = arrs["label_category"]
            has = cat >= 0
            over = arrs["intersection"][:, has] > arrs["unit_pixels"][:, cat[has]]
            if over.any():
                u, j = (int(x) for x in np.argwhere(over)[0])
                lab = int(np.flatnonzero(has)[j])
                raise ValueError(f"{path}: field 'l{i}.unit_pixels' is below 'l{i}.intersection' (unit {u}, "
                                 f"label {lab} of category {int(cat[lab])}: "
                                 f"{int(arrs['unit_pixels'][u, cat[lab]])} < {int(arrs['intersection'][u, lab])})")
            layers[m["key"]] = LayerResult(layer=m["layer"], label_names=m["label_names"],
                                           categories=m["categories"], quantile=m["quantile"],
                                           iou_threshold=m["iou_threshold"], basis=m["basis"], **arrs)
        return cls(layers, header["config"], header["timings"])


# The dissection result file (format interp_engine.dissection, version 1): a JSON header
# and, for layer i of header["layers"], the arrays "l{i}.<name>" below (K units, L labels,
# C categories, T top images, h x w maps).
_RESULT_HEADER = {
    "layers": [{"layer": str, "label_names": [str], "categories": [str],
                "quantile": Num(float, 0.0, 1.0), "iou_threshold": Num(float, 0.0, 1.0),
                "basis": str, "key": str}],
    "config": dict,
    "timings": MapOf(Num(float, nan=True)),
}


def _result_arrays(header: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    schema: Dict[str, Array] = {}
    dims: Dict[str, int] = {}
    for i, m in enumerate(header["layers"]):
        L, C, K, T = f"L{i}", f"C{i}", f"K{i}", f"T{i}"
        dims[L], dims[C] = len(m["label_names"]), len(m["categories"])
        schema.update({
            f"l{i}.label_category": Array("int64", (L,), min=-1, max=C, max_offset=-1),
            f"l{i}.thresholds": Array("float64", (K,), inf=True),
            f"l{i}.iou": Array("float64", (K, L), min=0.0, max=1.0),
            f"l{i}.intersection": Array("int64", (K, L), min=0),
            f"l{i}.label_pixels": Array("int64", (L,), min=0),
            f"l{i}.unit_pixels": Array("int64", (K, C), min=0),
            f"l{i}.top_images": Array("int64", (K, T), min=-1),
            f"l{i}.top_values": Array("float64", (K, T), inf=True),
            f"l{i}.top_maps": Array("float32", (K, T, f"h{i}", f"w{i}"), inf=True),
        })
    return schema, dims


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)

