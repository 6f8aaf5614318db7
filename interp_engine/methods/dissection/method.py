"""Network Dissection (Bau et al., CVPR 2017), end to end on Broden-format data.

:func:`dissect` / :class:`Dissection` label every unit of one or more layers
of any ``torch.nn.Module`` with the concept whose masks best overlap the
unit's top-quantile activation regions (IoU).  Semantics:
shared/ALGORITHMS.md section 1; the counting is done by the compiled core
(:class:`~interp_engine.ChannelQuantiles` for the thresholds,
:class:`~interp_engine.IoUTally` for the counts).

Passes over the data (all requested layers at once, one forward per batch):

1. ``"quantiles"``: a :class:`ChannelQuantiles` sketch per layer, and the
   running top-k images per unit (by the maximum of the unit's map).
2. ``"exact"`` (only with ``thresholds="exact"``, the default): the core's
   exact pass, giving each unit's threshold equal to ``np.quantile`` of all
   its values at level ``1 - quantile``.  With ``thresholds="approx"`` the
   sketch's estimate is used (rank error <= 1e-4) and this pass is skipped.
3. ``"iou"``: an :class:`IoUTally` per layer.

With ``activation_cache=True`` the first pass also writes the layers'
activations to a float16 memory-mapped file; the later passes read it and the
model runs once.  All passes then see the float16-rounded values, so results
are consistent among themselves (and differ from an uncached run only by that
rounding).

Checkpointing: with ``checkpoint_dir`` the accumulators' state is saved every
``checkpoint_every`` batches and every ``checkpoint_interval`` seconds of
every pass, at the end of every pass, and when the run stops
between batches (Ctrl-C or an exception); a later run with the same model,
data and settings resumes there (inside any pass, the exact pass included)
and gives the same result as an uninterrupted run.  The checkpoint is keyed
on a digest of the model (class, module tree, every parameter and buffer),
the data (rows, labels, transform) and every setting that changes the
result; a checkpoint of another key is refused with a ValueError naming what
differs, and one that is damaged or does not match its schema and this run
(see :meth:`_RunState.load_checkpoint`) with a ValueError naming the file and
the field.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..._npz import Array, MapOf, Num, OneOf, check_json, load_header, load_npz, safe_name, save_npz
from ...engine._arrays import (check_bool, check_choice, check_device, check_int, check_num_threads,
                              check_positive_int, check_real, describe)
from ...engine.iou import UNIT_RULES, IoUTally
from ...engine.quantiles import DEFAULT_K, ChannelQuantiles, ExactQuantilePass
from ...engine.resize import check_method

__all__ = ["Dissection", "DissectionResult", "LayerResult", "dissect", "random_rotation",
           "rotation_experiment"]

_RESULT_FORMAT = "interp_engine.dissection"
_RESULT_VERSION = 1
_CHECKPOINT_FORMAT = "interp_engine.dissection_checkpoint"
_CHECKPOINT_VERSION = 3
PASSES = ("quantiles", "exact", "iou")


# ----------------------------------------------------------------------------- results
@dataclass
class LayerResult:
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

    def to_csv(self, path: Union[str, os.PathLike]) -> Path:
        """Write NetDissect-Lite's ``tally.csv``: columns ``unit`` (1-based,
        as in Lite: unit u of this result is row ``unit = u + 1``),
        ``category``, ``label``, ``score``, then per category
        ``<cat>-label, <cat>-truth, <cat>-activation, <cat>-intersect, <cat>-iou``
        (truth = label pixels L, activation = the unit's pixels A in that
        category, intersect = I), rows sorted by score descending.  Where a
        unit (or a category) has no label (IoU 0 for every label), its label
        and category are ``"-"``, truth and intersect 0."""
        import csv

        path = Path(path)
        cbest, ciou = self.category_best_label, self.category_best_iou
        bcat = self.best_category
        fields = ["unit", "category", "label", "score"]
        for name in self.categories:
            fields += [f"{name}-label", f"{name}-truth", f"{name}-activation", f"{name}-intersect", f"{name}-iou"]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            for u in self.unit_order():
                c0 = int(bcat[u])
                row: Dict[str, Any] = {"unit": int(u) + 1,
                                       "category": self.categories[c0] if c0 >= 0 else "-",
                                       "label": self.label_name(cbest[u, c0]) if c0 >= 0 else "-",
                                       "score": repr(float(ciou[u, c0])) if c0 >= 0 else "0.0"}
                for c, name in enumerate(self.categories):
                    lab = int(cbest[u, c])
                    row.update({f"{name}-label": self.label_name(lab),
                                f"{name}-truth": int(self.label_pixels[lab]) if lab >= 0 else 0,
                                f"{name}-activation": int(self.unit_pixels[u, c]),
                                f"{name}-intersect": int(self.intersection[u, lab]) if lab >= 0 else 0,
                                f"{name}-iou": repr(float(ciou[u, c]))})
                w.writerow(row)
        return path

    # ----- (de)serialization helpers
    _ARRAYS = ("label_category", "thresholds", "iou", "intersection", "label_pixels", "unit_pixels",
               "top_images", "top_values", "top_maps")

    def _meta(self) -> Dict[str, Any]:
        return {"layer": self.layer, "label_names": list(self.label_names), "categories": list(self.categories),
                "quantile": self.quantile, "iou_threshold": self.iou_threshold, "basis": self.basis}


@dataclass
class DissectionResult:
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


# ----------------------------------------------------------------------------- rotations
def random_rotation(num_units: int, seed: int = 0):
    """A (K, K) random orthogonal matrix (Haar-distributed: QR of a Gaussian
    matrix with the signs of R's diagonal fixed), float64 torch tensor,
    deterministic from ``seed``."""
    import torch

    num_units = check_positive_int(num_units, "num_units")
    g = torch.Generator().manual_seed(int(seed))
    a = torch.randn(num_units, num_units, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))[None, :]


# ----------------------------------------------------------------------------- running top-k
class _TopK:
    """Per unit, the ``k`` images with the largest map maximum seen so far
    (ties: lower dataset index first), with their native maps."""

    def __init__(self, num_units: int, k: int, map_shape: Tuple[int, int]):
        import torch

        self.k = k
        self.values = torch.full((num_units, k), -math.inf, dtype=torch.float64)
        self.index = torch.full((num_units, k), -1, dtype=torch.int64)
        self.maps = torch.zeros((num_units, k) + tuple(map_shape), dtype=torch.float32)

    def update(self, acts, index) -> None:
        import torch

        b = acts.shape[0]
        if b == 0 or self.k == 0:
            return
        a = acts.detach().to(device="cpu", dtype=torch.float32)
        m = a.flatten(2).amax(dim=2).to(torch.float64).T  # (K, B)
        vals = torch.cat([self.values, m], dim=1)
        idx = torch.cat([self.index, index[None, :].expand(m.shape[0], b)], dim=1)
        # stable descending sort: the current entries (lower indices) come first among ties
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, : self.k]
        new_vals = torch.gather(vals, 1, order)
        new_idx = torch.gather(idx, 1, order)
        maps_all = torch.cat([self.maps, a.transpose(0, 1)], dim=1)  # (K, k + B, h, w)
        self.maps = maps_all[torch.arange(m.shape[0])[:, None], order]
        self.values, self.index = new_vals, new_idx

    def state(self) -> Dict[str, np.ndarray]:
        return {"values": self.values.numpy(), "index": self.index.numpy(), "maps": self.maps.numpy()}

    def load(self, st: Mapping[str, np.ndarray]) -> None:
        import torch

        self.values = torch.from_numpy(np.array(st["values"], dtype=np.float64))
        self.index = torch.from_numpy(np.array(st["index"], dtype=np.int64))
        self.maps = torch.from_numpy(np.array(st["maps"], dtype=np.float32))


# ----------------------------------------------------------------------------- datasets
def _as_dataset(dataset: Any, categories: Optional[Sequence[str]], transform: Any):
    if isinstance(dataset, (str, os.PathLike)):
        from ...data.broden import BrodenDataset

        return BrodenDataset(dataset, categories=categories, transform=transform)
    need = ("label_names", "categories", "num_categories", "pixel_size", "__getitem__", "__len__")
    missing = [n for n in need if not hasattr(dataset, n)]
    if missing:
        raise TypeError(f"dataset must be a Broden directory path or a BrodenDataset-like object; "
                        f"got {type(dataset).__name__} without {missing}")
    if categories is not None and list(categories) != list(dataset.categories):
        raise ValueError("categories can only be chosen when dataset is a path; build the BrodenDataset "
                         "with categories=... instead")
    return dataset


def _dataset_fingerprint(ds) -> Dict[str, Any]:
    """The data part of the checkpoint key: ``ds.fingerprint()`` when the
    dataset has one (a BrodenDataset: its selected rows, labels, sizes and
    transform), else its class, size, label tables and a digest of three
    items (the first, the middle and the last: a deterministic sample, not
    every item)."""
    import torch

    from ..._fingerprint import Digest, callable_name

    fp = getattr(ds, "fingerprint", None)
    if callable(fp):
        out = fp()
        if not isinstance(out, Mapping):
            raise TypeError(f"dataset.fingerprint() must return a dict; got {type(out).__name__}")
        return dict(_jsonable(dict(out)))
    d = Digest()
    d.json([list(ds.label_names), list(ds.categories), list(ds.pixel_size)]).array(np.asarray(ds.label_category))
    n = len(ds)
    for i in sorted({0, n // 2, n - 1}):
        item = ds[i]
        for k in sorted(item):
            v = item[k]
            d.text(k)
            if isinstance(v, torch.Tensor):
                d.tensor(v)
            elif isinstance(v, np.ndarray):
                d.array(v)
            else:
                d.text(repr(v))
    return {"class": callable_name(ds), "num_images": n, "items": d.hexdigest(),
            "sampled": "items 0, n // 2 and n - 1"}


def _label_category(ds) -> Tuple[np.ndarray, np.ndarray]:
    """(label_category with -1 for labels of no selected category, the same
    mapped into [0, C) for the tally)."""
    raw = np.asarray(ds.label_category, dtype=np.int64)
    if hasattr(ds, "label_category_for_tally"):
        tally = np.asarray(ds.label_category_for_tally(), dtype=np.int64)
    else:
        tally = np.where(raw < 0, 0, raw)
    return raw, tally


# ----------------------------------------------------------------------------- checkpoints
# The checkpoint file (format interp_engine.dissection_checkpoint, version 3), written by
# _RunState.checkpoint and read by _RunState.load_checkpoint: a JSON header and arrays.
#
# header: "config", "key", "provenance" (the run it belongs to; key: digest of the config);
#   "finished" (the passes done, in order); "position" ({pass: next batch}; only the pass
#   under way may be above 0); "cache_root" (the activation cache, or null); "shapes"
#   ({layer: [C, H, W]}: the activation shape of each result layer); "sketch", "exact",
#   "tally" ({layer: the scalar fields of that accumulator's state_dict}); "thresholds"
#   (the layers whose thresholds are known); "digest" (BLAKE2b of the header without it and
#   of the arrays that carry no digest of their own: "thr.*" and "topk.*"; the
#   accumulators' arrays are covered by their own digests, which are in the header).
# arrays: "sketch.<layer>.<field>", "exact.<layer>.<field>", "tally.<layer>.<field>" (the
#   array fields of the accumulator's state_dict); "topk.<layer>.values" (C, T) float64,
#   ".index" (C, T) int64 (-1: an empty slot), ".maps" (C, T, H, W) float32;
#   "thr.<layer>" (C,) float64.
_SKETCH_SCALARS = {"version": Num(int, 1), "num_channels": Num(int, 1), "k": Num(int, 1), "seed": Num(int, 0),
                   "skip_nan": Num(int, 0, 1), "checksum_known": Num(int, 0, 1), "digest": str,
                   "field_digests": str}
_EXACT_SCALARS = {"format": str, "version": Num(int, 1), "num_channels": Num(int, 1), "scalar": Num(int, 0, 1),
                  "skip_nan": Num(int, 0, 1), "cap": Num(int, 0), "sketch_checksum_known": Num(int, 0, 1),
                  "digest": str, "field_digests": str}
_TALLY_SCALARS = {"format": str, "version": Num(int, 0), "num_units": Num(int, 1), "num_labels": Num(int, 1),
                  "num_categories": Num(int, 1), "output_size": [Num(int, 1)], "unit_rule": OneOf(UNIT_RULES),
                  "resize": str, "num_pixel_maps": (Num(int, 0), None), "num_image_labels": (Num(int, 0), None),
                  "images": Num(int, 0), "digest": str, "field_digests": str}
_CHECKPOINT_HEADER = {
    "config": dict, "key": str, "provenance": dict, "finished": [OneOf(PASSES)], "position": MapOf(Num(int, 0)),
    "cache_root": (str, None), "shapes": MapOf([Num(int, 1)]), "sketch": MapOf(_SKETCH_SCALARS),
    "exact": MapOf(_EXACT_SCALARS), "tally": MapOf(_TALLY_SCALARS), "thresholds": [str], "digest": str,
}
_WHAT = {"sketch": "the quantile sketch", "exact": "the exact quantile pass", "tally": "the IoU tally",
         "topk": "the top images"}


def _sketch_arrays(k: str, C: str) -> Dict[str, Array]:
    return {"items": Array("float64", (f"items[{k}]",), inf=True),
            "level_sizes": Array("int64", (C, f"levels[{k}]"), min=0), "count": Array("int64", (C,), min=0),
            "min": Array("float64", (C,), inf=True), "max": Array("float64", (C,), inf=True),
            "rng_state": Array("uint64", (C,)), "nan_count": Array("int64", (C,), min=0),
            "wide": Array("int64", (C,), min=0, max=1), "checksum": Array("uint64", (C, 2))}


def _exact_arrays(k: str, C: str) -> Dict[str, Array]:
    m = f"q[{k}]"
    out = {"q": Array("float64", (m,), min=0.0, max=1.0), "sketch_count": Array("int64", (C,), min=1),
           "sketch_nan_count": Array("int64", (C,), min=0), "sketch_checksum": Array("uint64", (C, 2)),
           "lower": Array("float64", (C, m), inf=True), "upper": Array("float64", (C, m), inf=True),
           "inside": Array("float64", (f"inside[{k}]",), inf=True), "seen": Array("int64", (C,), min=0),
           "seen_nan": Array("int64", (C,), min=0), "seen_checksum": Array("uint64", (C, 2))}
    out.update({f: Array("int64", (C, m), min=0) for f in ("below", "eq_lower", "eq_upper", "inside_sizes")})
    return out


def _tally_arrays(k: str, C: str) -> Dict[str, Array]:
    return {"label_category": Array("int64", ("L",), min=0, max="NC", max_offset=-1),
            "intersection": Array("int64", (C, "L"), min=0), "label_pixels": Array("int64", ("L",), min=0),
            "unit_pixels": Array("int64", (C, "NC"), min=0)}


def _topk_arrays(k: str, C: str, H: str, W: str) -> Dict[str, Array]:
    return {"values": Array("float64", (C, "T"), inf=True), "index": Array("int64", (C, "T"), min=-1, max="N",
                                                                         max_offset=-1),
            "maps": Array("float32", (C, "T", H, W), inf=True)}


_STATE_ARRAYS = {"sketch": _sketch_arrays, "exact": _exact_arrays, "tally": _tally_arrays}
_STATE_SCALARS = {"sketch": _SKETCH_SCALARS, "exact": _EXACT_SCALARS, "tally": _TALLY_SCALARS}


def _split_state(d: Mapping[str, Any], prefix: str, arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Put a state_dict's arrays into ``arrays`` (as ``<prefix>.<field>``) and
    return its other fields (JSON: tuples as lists)."""
    meta: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            arrays[f"{prefix}.{k}"] = v
        else:
            meta[k] = _jsonable(v)
    return meta


def _checkpoint_digest(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """The checkpoint's own digest (see the file layout above)."""
    import json

    from ...engine._state import state_digest

    text = json.dumps({k: v for k, v in header.items() if k != "digest"}, sort_keys=True)
    own = sorted(n for n in arrays if n.startswith(("thr.", "topk.")))
    return state_digest([("header", text)] + [(n, np.asarray(arrays[n])) for n in own])


# ----------------------------------------------------------------------------- the method
@dataclass(frozen=True)
class _Layer:
    key: str            # result key
    module: str         # captured layer name
    rotation: Optional[int]  # seed of the random basis, None for the units themselves


class Dissection:
    """Network Dissection of one or more layers of ``model``.

    Args:
        model: any ``torch.nn.Module``; it is put in eval mode for the run and
            left as it was (training flags, device) afterwards.
        layers: a layer name (``"layer4"``, ``"features.17"``, nested names)
            or a list of them; see :mod:`interp_engine.capture` for the
            accepted outputs (``(B, C, H, W)``; ``(B, C)``; tokens).
        quantile: the top fraction of activations that defines a unit's
            active region (0.005: top 0.5%).
        iou_threshold: IoU at which a unit counts as a detector (0.04).
        thresholds: ``"exact"`` (default; equal to ``np.quantile``, one more
            pass) or ``"approx"`` (the sketch's estimate, rank error 1e-4).
        unit_rule: ``"annotated"`` (original NetDissect) or ``"lite"``
            (NetDissect-Lite's rule); see :class:`IoUTally`.
        resize: how a unit's maps are brought to the label maps' size:
            ``"bilinear"`` (PyTorch's ``F.interpolate`` default, the
            bilinear upsampling the paper describes),
            ``"antialias"`` (``antialias=True``) or ``"pil"`` (Pillow's
            float32 resize, what NetDissect-Lite's code runs).  They differ
            only for layers whose maps are larger than the label maps.
            Default (None): ``"pil"`` with ``unit_rule="lite"`` (the Lite
            compatibility mode), else ``"bilinear"``.
        categories, transform: used when ``dataset`` is a path (see
            :class:`interp_engine.data.BrodenDataset`).
        batch_size, num_workers: of the DataLoader.
        device: where the model runs (default: where its parameters are).
        top_k: top-activating images kept per unit (10).
        rotations: seeds of random orthogonal bases to dissect as well (the
            paper's basis experiment): each adds a result ``"<layer>@rotation<seed>"``.
        activation_cache: cache the activations as float16 on disk so that the
            model runs once; ``cache_dir`` is where (default: a temporary
            directory removed after the run).
        checkpoint_dir, checkpoint_every, checkpoint_interval: save and
            resume (see module docs): a checkpoint is written every
            ``checkpoint_every`` batches (50) and whenever
            ``checkpoint_interval`` seconds (60; 0: after every batch) have
            passed since the last one, at the end of every pass, and when
            the run stops on an exception or Ctrl-C between batches.
        progress: show progress bars (tqdm when installed).
        seed: seed of the quantile sketches.
        num_threads: threads of the core (None: all cores).
    """

    def __init__(self, model, layers: Union[str, Sequence[str]], *, quantile: float = 0.005,
                 iou_threshold: float = 0.04, thresholds: str = "exact", unit_rule: str = "annotated",
                 resize: Optional[str] = None,
                 categories: Optional[Sequence[str]] = None, transform: Any = "netdissect",
                 batch_size: int = 64, num_workers: int = 0, device: Any = None, top_k: int = 10,
                 rotations: Sequence[int] = (), activation_cache: bool = False,
                 cache_dir: Optional[Union[str, os.PathLike]] = None,
                 checkpoint_dir: Optional[Union[str, os.PathLike]] = None, checkpoint_every: int = 50,
                 checkpoint_interval: float = 60.0,
                 progress: bool = True, seed: int = 0, num_threads: Optional[int] = None,
                 adapter: Any = "auto") -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if isinstance(layers, str):
            layers = [layers]
        if not isinstance(layers, (list, tuple)):
            raise TypeError(f"layers must be a layer name or a list of names; got {describe(layers)}")
        layers = list(layers)
        if not layers or not all(isinstance(x, str) and x for x in layers):
            raise ValueError(f"layers must be a non-empty layer name or list of names; got {layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a name; got {layers!r}")
        quantile = check_real(quantile, "quantile", what="a float in (0, 1) (the top fraction, e.g. 0.005)")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be a float in (0, 1) (the top fraction, e.g. 0.005); got {quantile!r}")
        iou_threshold = check_real(iou_threshold, "iou_threshold", what="a float in [0, 1]")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be a float in [0, 1]; got {iou_threshold!r}")
        check_choice(thresholds, "thresholds", ("exact", "approx"))
        check_choice(unit_rule, "unit_rule", UNIT_RULES)
        if resize is None:
            resize = "pil" if unit_rule == "lite" else "bilinear"
        check_method(resize, "resize")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        num_workers = check_int(num_workers, "num_workers", minimum=0)
        top_k = check_int(top_k, "top_k", minimum=0)
        self.checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        if isinstance(checkpoint_interval, bool) or not isinstance(checkpoint_interval, (int, float)) \
                or not math.isfinite(checkpoint_interval) or checkpoint_interval < 0:
            raise ValueError(f"checkpoint_interval must be a number of seconds >= 0 (0: after every batch); "
                             f"got {checkpoint_interval!r}")
        self.checkpoint_interval = float(checkpoint_interval)
        if isinstance(rotations, (str, bytes)) or not hasattr(rotations, "__iter__"):
            raise TypeError(f"rotations must be a sequence of integer seeds; got {describe(rotations)}")
        rotations = list(rotations)
        for r in rotations:
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) or r < 0:
                raise ValueError(f"rotations must be non-negative integer seeds; got {r!r}")
        rotations = [int(r) for r in rotations]
        device = check_device(device)
        seed = check_int(seed, "seed", maximum=None)
        num_threads = check_num_threads(num_threads) or None
        activation_cache = check_bool(activation_cache, "activation_cache")
        progress = check_bool(progress, "progress")
        from ...capture import find_module

        for name in layers:
            find_module(model, name)  # ValueError with close matches
        self.model = model
        self.layer_names = layers
        self.quantile = float(quantile)
        self.iou_threshold = float(iou_threshold)
        self.thresholds = thresholds
        self.unit_rule = unit_rule
        self.resize = resize
        self.categories = None if categories is None else list(categories)
        self.transform = transform
        self.num_workers = num_workers
        self.device = None if device is None else torch.device(device)
        self.top_k = top_k
        self.rotations = rotations
        self.activation_cache = bool(activation_cache)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.progress = bool(progress)
        self.seed = int(seed)
        self.num_threads = num_threads
        self.adapter = adapter
        self._layers = [_Layer(n, n, None) for n in layers] + \
            [_Layer(f"{n}@rotation{r}", n, r) for n in layers for r in rotations]
        #: test hook: called with (pass name, batch number) after each batch
        self._after_batch: Optional[Callable[[str, int], None]] = None
        #: how the model and data were named (e.g. by the command line): stored in checkpoints and
        #: shown when one is refused; not part of the checkpoint key
        self.provenance: Dict[str, Any] = {}
        #: after :meth:`run` returns or raises: None (no checkpoint written by this run) or
        #: {"path", "pass", "next_batch", "batches", "finished"}: where progress was saved
        self.last_checkpoint: Optional[Dict[str, Any]] = None
        #: after :meth:`run`: None, or {"path", "finished", "position"} of the checkpoint it resumed from
        self.resumed: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ helpers
    def _config(self, ds) -> Dict[str, Any]:
        config = {"layers": self.layer_names, "quantile": self.quantile, "iou_threshold": self.iou_threshold,
                  "thresholds": self.thresholds, "unit_rule": self.unit_rule, "batch_size": self.batch_size,
                  "resize": self.resize, "top_k": self.top_k, "rotations": self.rotations, "seed": self.seed,
                  "activation_cache": self.activation_cache, "num_images": len(ds),
                  "num_labels": len(ds.label_names), "categories": list(ds.categories),
                  "dataset": str(getattr(ds, "root", type(ds).__name__))}
        config.update(self._fingerprints(ds))
        return config

    def _fingerprints(self, ds) -> Dict[str, Any]:
        """The model, adapter and data parts of the checkpoint key (see
        :func:`interp_engine._fingerprint.model_fingerprint` and
        :meth:`interp_engine.data.BrodenDataset.fingerprint`)."""
        from ..._fingerprint import callable_name, model_fingerprint

        adapter = self.adapter if isinstance(self.adapter, str) or self.adapter is None \
            else callable_name(self.adapter)
        return {"model": model_fingerprint(self.model), "adapter": adapter, "data": _dataset_fingerprint(ds)}

    def _loader(self, ds, start_batch: int, *, image: bool = True, pixel_labels: bool = True):
        import torch

        if hasattr(ds, "with_fields"):  # skip decoding what the pass does not use
            ds = ds.with_fields(image=image, pixel_labels=pixel_labels)
        start = min(len(ds), start_batch * self.batch_size)
        sub = torch.utils.data.Subset(ds, range(start, len(ds)))
        return torch.utils.data.DataLoader(sub, batch_size=self.batch_size, shuffle=False,
                                           num_workers=self.num_workers,
                                           pin_memory=bool(self.device is not None and self.device.type == "cuda"))

    def _bar(self, total: int, initial: int, desc: str):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is optional
            return None
        return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False)

    # ------------------------------------------------------------------ run
    def run(self, dataset: Any) -> DissectionResult:
        """Dissect on ``dataset`` (a Broden directory or a BrodenDataset);
        returns a :class:`DissectionResult`."""
        import torch

        from ...capture import Capture

        ds = _as_dataset(dataset, self.categories, self.transform)
        if len(ds) == 0:
            raise ValueError("dataset has no images")
        num_labels = len(ds.label_names)
        if np.shape(ds.label_category) != (num_labels,):
            raise ValueError(f"dataset.label_category must have shape ({num_labels},); "
                             f"got {np.shape(ds.label_category)}")
        config = self._config(ds)
        n_batches = -(-len(ds) // self.batch_size)

        model = self.model
        flags = {m: m.training for m in model.modules()}
        params = list(model.parameters()) + list(model.buffers())
        home = params[0].device if params else torch.device("cpu")
        device = self.device or home
        timings = {"forward": 0.0, "total": 0.0}
        t_start = time.perf_counter()

        state = _RunState(self, config, ds)
        self.last_checkpoint = self.resumed = None
        state.maybe_resume()
        cache_tmp = None
        try:
            model.eval()
            if device != home:
                model.to(device)
            with Capture(model, self.layer_names, adapter=self.adapter, stop_early=True) as cap:
                if self.activation_cache and state.cache_root is None:
                    base = self.cache_dir if self.cache_dir is not None else \
                        (self.checkpoint_dir / "activations" if self.checkpoint_dir is not None else None)
                    if base is not None:
                        # one subdirectory per run key: runs of other models or data never share files
                        state.cache_root = base / f"run-{state.key[:16]}"
                    else:
                        import tempfile

                        cache_tmp = tempfile.TemporaryDirectory(prefix="interp_engine_cache_")
                        state.cache_root = Path(cache_tmp.name)

                def source(pass_name: str, start: int):
                    """Yield (batch number, batch dict, {layer: acts}) from the model or the cache."""
                    use_cache = self.activation_cache and pass_name != "quantiles"
                    loader = self._loader(ds, start, image=not use_cache, pixel_labels=pass_name == "iou")
                    for b, batch in enumerate(loader, start=start):
                        if use_cache:
                            lo = b * self.batch_size
                            hi = lo + batch["index"].shape[0]
                            acts = {n: torch.from_numpy(np.asarray(state.cache[n][lo:hi])) for n in self.layer_names}
                        else:
                            t0 = time.perf_counter()
                            x = batch["image"].to(device)
                            acts = {n: a.detach() for n, a in cap(x).items()}
                            timings["forward"] += time.perf_counter() - t0
                            if self.activation_cache:
                                acts = {n: a.to(torch.float16) for n, a in acts.items()}
                                state.write_cache(acts, b * self.batch_size, len(ds))
                        yield b, batch, acts

                def views(acts):
                    """The activations of every result layer (rotations applied), float."""
                    out = {}
                    for L in self._layers:
                        a = acts[L.module]
                        if L.rotation is not None:
                            q = state.rotation(L, a.shape[1])
                            a = torch.einsum("bkhw,jk->bjhw", a.to(torch.float64), q.to(a.device))
                        out[L.key] = a
                    return out

                for pass_name in self._passes():
                    if state.done(pass_name):
                        continue
                    start = state.start_batch(pass_name)
                    state.begin(pass_name)
                    bar = self._bar(n_batches, start, pass_name)
                    done, dirty = start, False  # batches consumed; True while a batch is half-added
                    last_ck = time.monotonic()
                    try:
                        for b, batch, acts in source(pass_name, start):
                            v = views(acts)
                            with _DeferSigint():  # Ctrl-C waits until the batch is added (or never half-added)
                                dirty = True
                                state.consume(pass_name, batch, v)
                                dirty, done = False, b + 1
                            if bar is not None:
                                bar.update(1)
                            if self._after_batch is not None:
                                self._after_batch(pass_name, b)
                            if done < n_batches and (
                                    done % self.checkpoint_every == 0
                                    or time.monotonic() - last_ck >= self.checkpoint_interval):
                                with _DeferSigint():
                                    state.checkpoint(pass_name, done)
                                last_ck = time.monotonic()
                    except (Exception, KeyboardInterrupt):
                        # progress up to the last whole batch is consistent: keep it
                        if not dirty and done > state.start_batch(pass_name):
                            try:
                                with _DeferSigint():
                                    state.checkpoint(pass_name, done)
                            except Exception:  # noqa: BLE001 - the original error is the one to report
                                pass
                        raise
                    finally:
                        if bar is not None:
                            bar.close()
                    state.finish(pass_name)
                    with _DeferSigint():
                        state.checkpoint(pass_name, n_batches, finished=True)
        finally:
            if device != home:
                model.to(home)
            for m, f in flags.items():
                m.training = f
            if cache_tmp is not None:
                state.cache = {}
                cache_tmp.cleanup()
        timings["total"] = time.perf_counter() - t_start
        layers = {L.key: state.layer_result(L) for L in self._layers}
        return DissectionResult(layers, config, timings)

    def check_checkpoint(self, dataset: Any) -> Optional[Dict[str, Any]]:
        """Check, without running, that the checkpoint in ``checkpoint_dir``
        (if any) was written for this model, data and settings and is whole
        (the file is read and checked as :meth:`run` would before resuming):
        returns None (no checkpoint), or ``{"path", "finished", "position"}``
        of the one :meth:`run` will resume from; ValueError naming what
        differs when it belongs to another run, or the file and the field
        when it is damaged (as :meth:`run` would raise)."""
        ds = _as_dataset(dataset, self.categories, self.transform)
        state = _RunState(self, self._config(ds), ds)
        meta = state.check_checkpoint()
        if meta is None:
            return None
        return {"path": str(state._ckpt_path()), "finished": list(meta.get("finished", [])),
                "position": dict(meta.get("position", {}))}

    def _passes(self) -> Tuple[str, ...]:
        return PASSES if self.thresholds == "exact" else ("quantiles", "iou")


class _DeferSigint:
    """Within the block, Ctrl-C (SIGINT) is held back and raised as
    KeyboardInterrupt when the block ends, so that an accumulator never keeps
    half a batch and a checkpoint file is never half written.  Only in the
    main thread and only while Python's default SIGINT handler is installed
    (elsewhere the block runs unchanged; the run then checks that no batch
    was half added before it saves progress)."""

    def __init__(self) -> None:
        self.pending = False
        self.old: Any = None

    def _handler(self, signum, frame) -> None:
        self.pending = True

    def __enter__(self) -> "_DeferSigint":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, et, ev, tb) -> None:
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            self.old = None
        if self.pending and et is None:
            raise KeyboardInterrupt


_INFORMATIONAL = ("dataset", "data.root")  # config entries recorded but not compared
_KEY_LABELS = {"model.parameters": "the model's parameters and buffers (weights)",
               "model.structure": "the model's module tree", "model.class": "the model class",
               "model.tensors": "the model's number of parameters and buffers",
               "model.bytes": "the model's size in bytes", "data.rows": "the dataset's selected rows",
               "data.labels": "the dataset's labels", "data.transform.name": "the transform",
               "data.transform.probe": "the transform's output", "data.sizes": "the image sizes",
               "data.num_images": "the number of images", "layers": "the layers"}


class _RunState:
    """Accumulators of a run, their checkpoints and the activation cache."""

    def __init__(self, d: Dissection, config: Dict[str, Any], ds) -> None:
        from ..._fingerprint import digest_of

        self.d = d
        self.config = config
        comparable = {k: v for k, v in _jsonable(config).items() if k != "dataset"}
        comparable["data"] = {k: v for k, v in comparable.get("data", {}).items() if k != "root"}
        #: digest of everything that changes the result (the checkpoint and activation cache key)
        self.key = digest_of(comparable)
        self.ds = ds
        self.sketch: Dict[str, ChannelQuantiles] = {}
        self.topk: Dict[str, _TopK] = {}
        self.exact: Dict[str, Any] = {}
        self.thresholds: Dict[str, np.ndarray] = {}
        self.tally: Dict[str, IoUTally] = {}
        self.finished: List[str] = []
        self.position: Dict[str, int] = {}
        self.cache: Dict[str, np.memmap] = {}
        self.cache_root: Optional[Path] = None  # set by run() (a keyed subdirectory) or a resumed checkpoint
        self._rot: Dict[str, Any] = {}
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        self.label_cat_raw, self.label_cat_tally = _label_category(ds)

    # ----- bookkeeping
    def done(self, pass_name: str) -> bool:
        return pass_name in self.finished

    def start_batch(self, pass_name: str) -> int:
        return self.position.get(pass_name, 0)

    def rotation(self, L: _Layer, k: int):
        if L.key not in self._rot:
            self._rot[L.key] = random_rotation(k, L.rotation)
        return self._rot[L.key]

    # ----- the passes
    def begin(self, pass_name: str) -> None:
        if pass_name == "exact" and not self.exact:  # (a resumed pass keeps its state)
            q = 1.0 - self.d.quantile
            self.exact = {k: sk.exact_pass(q) for k, sk in self.sketch.items()}
        elif pass_name == "iou" and not self.thresholds:
            self.thresholds = {k: sk.quantile(1.0 - self.d.quantile) for k, sk in self.sketch.items()}

    def consume(self, pass_name: str, batch: Mapping[str, Any], acts: Mapping[str, Any]) -> None:
        import torch

        d = self.d
        for key, a in acts.items():
            if a.ndim != 4:
                raise ValueError(f"layer {key!r} gave activations of shape {tuple(a.shape)}; expected (B, C, H, W)")
            a_cpu = a.detach().to("cpu")
            if pass_name == "quantiles":
                if key not in self.sketch:
                    self.sketch[key] = ChannelQuantiles(a.shape[1], seed=d.seed, num_threads=d.num_threads)
                    self.topk[key] = _TopK(a.shape[1], d.top_k, tuple(a.shape[2:]))
                    self._shapes[key] = tuple(a.shape[1:])
                elif tuple(a.shape[1:]) != self._shapes.get(key, tuple(a.shape[1:])):
                    raise ValueError(f"layer {key!r} changed shape from {self._shapes[key]} to "
                                     f"{tuple(a.shape[1:])} between batches; dissection needs one map size")
                self.sketch[key].update(a_cpu)
                self.topk[key].update(a_cpu, torch.as_tensor(batch["index"], dtype=torch.int64))
            elif pass_name == "exact":
                self.exact[key].update(a_cpu)
            else:
                if key not in self.tally:
                    self.tally[key] = IoUTally(a.shape[1], len(self.ds.label_names), self.label_cat_tally,
                                               int(self.ds.num_categories), output_size=tuple(self.ds.pixel_size),
                                               unit_rule=d.unit_rule, resize=d.resize, num_threads=d.num_threads)
                self.tally[key].update(a_cpu, self.thresholds[key], pixel_labels=batch.get("pixel_labels"),
                                       image_labels=batch.get("image_labels"),
                                       image_categories=batch.get("image_categories"))

    def finish(self, pass_name: str) -> None:
        if pass_name == "exact":
            self.thresholds = {k: p.result() for k, p in self.exact.items()}
            self.exact = {}
        if pass_name == "quantiles":
            missing = [L.key for L in self.d._layers if L.key not in self.sketch]
            if missing:
                raise RuntimeError(f"no activations were captured for {missing}")
        self.finished.append(pass_name)
        self.position[pass_name] = 0

    # ----- activation cache
    _CACHE_KEY = "cache_key.json"

    def write_cache(self, acts: Mapping[str, Any], offset: int, total: int) -> None:
        import json

        assert self.cache_root is not None
        for name, a in acts.items():
            if name not in self.cache:
                self.cache_root.mkdir(parents=True, exist_ok=True)
                # the key file goes first: files of a cache directory always belong to its key
                key_file = self.cache_root / self._CACHE_KEY
                tmp = key_file.with_name(key_file.name + f".tmp{os.getpid()}")
                tmp.write_text(json.dumps({"format": "interp_engine.activation_cache", "key": self.key,
                                           "num_images": int(total)}))
                os.replace(tmp, key_file)
                shape = (total,) + tuple(a.shape[1:])
                fn = self.cache_root / f"{safe_name(name)}.npy"
                self.cache[name] = np.lib.format.open_memmap(fn, mode="w+", dtype=np.float16, shape=shape)
            self.cache[name][offset:offset + a.shape[0]] = a.to("cpu").numpy()

    def _open_cache(self) -> None:
        """Open the activation cache a checkpoint refers to, after checking
        that it was written for this run's key and has its shape."""
        import json

        assert self.cache_root is not None
        key_file = self.cache_root / self._CACHE_KEY
        try:
            key = json.loads(key_file.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            key = None
        if key != self.key:
            raise ValueError(f"activation cache {self.cache_root} does not belong to this run (its "
                             f"{self._CACHE_KEY} is {'missing or unreadable' if key is None else 'for another key'}); "
                             f"the checkpoint in {self.d.checkpoint_dir} needs it to resume: delete the checkpoint "
                             f"to start over")
        n = len(self.ds)
        for name in self.d.layer_names:
            fn = self.cache_root / f"{safe_name(name)}.npy"
            if not fn.is_file():
                raise FileNotFoundError(f"activation cache {fn} is missing; the checkpoint in "
                                        f"{self.d.checkpoint_dir} needs it to resume: delete the checkpoint to "
                                        f"start over")
            try:
                m = np.load(fn, mmap_mode="r+")
            except (OSError, ValueError) as exc:
                raise ValueError(f"activation cache {fn} is unreadable ({exc}); delete the checkpoint in "
                                 f"{self.d.checkpoint_dir} to start over") from exc
            want = self._shapes.get(name)
            if m.dtype != np.float16 or m.ndim != 4 or m.shape[0] != n or \
                    (want is not None and tuple(m.shape[1:]) != tuple(want)):
                raise ValueError(f"activation cache {fn} has dtype {m.dtype} and shape {m.shape}; this run "
                                 f"needs float16 ({n}, {', '.join(map(str, want or ('C', 'H', 'W')))}); delete "
                                 f"the checkpoint in {self.d.checkpoint_dir} to start over")
            self.cache[name] = m

    # ----- checkpoints
    def _ckpt_path(self) -> Optional[Path]:
        cd = self.d.checkpoint_dir
        return None if cd is None else cd / "dissection_checkpoint.npz"

    def checkpoint(self, pass_name: str, next_batch: int, finished: bool = False) -> None:
        path = self._ckpt_path()
        if path is None:
            return
        if not finished:
            self.position[pass_name] = next_batch
        arrays: Dict[str, np.ndarray] = {}
        meta: Dict[str, Any] = {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION,
                                "config": _jsonable(self.config), "key": self.key,
                                "provenance": _jsonable(self.d.provenance),
                                "finished": list(self.finished), "position": dict(self.position),
                                "cache_root": None if self.cache_root is None else str(self.cache_root),
                                "shapes": {k: [int(x) for x in v] for k, v in self._shapes.items()},
                                "sketch": {}, "exact": {}, "tally": {}, "thresholds": []}
        for k, sk in self.sketch.items():
            meta["sketch"][k] = _split_state(sk.state_dict(), f"sketch.{k}", arrays)
            for f, v in self.topk[k].state().items():
                arrays[f"topk.{k}.{f}"] = v
        for k, p in self.exact.items():
            meta["exact"][k] = _split_state(p.state_dict(), f"exact.{k}", arrays)
        for k, t in self.tally.items():
            meta["tally"][k] = _split_state(t.state_dict(), f"tally.{k}", arrays)
        for k, v in self.thresholds.items():
            arrays[f"thr.{k}"] = np.asarray(v, dtype=np.float64)
            meta["thresholds"].append(k)
        meta["digest"] = _checkpoint_digest(meta, arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        for m in self.cache.values():
            m.flush()
        save_npz(path, arrays, meta, compress=False)  # atomic: a temporary file, then os.replace
        self.d.last_checkpoint = {"path": str(path), "pass": pass_name,
                                  "next_batch": int(next_batch), "finished": list(self.finished),
                                  "batches": -(-len(self.ds) // self.d.batch_size)}

    def check_checkpoint(self) -> Optional[Dict[str, Any]]:
        """The checkpoint this run would resume from, read and checked whole
        (see :meth:`load_checkpoint`); None when there is none."""
        path = self._ckpt_path()
        if path is None or not os.path.lexists(path):
            return None
        return self.load_checkpoint(path)

    def _check_key(self, meta: Mapping[str, Any], path: Path) -> None:
        if meta.get("key") != self.key:
            from ..._fingerprint import differences

            diff = differences(meta["config"], _jsonable(self.config), ignore=_INFORMATIONAL,
                               labels=_KEY_LABELS)
            prov = meta.get("provenance") or {}
            by = f"; it was written for {', '.join(f'{k} {v}' for k, v in prov.items())}" if prov else ""
            raise ValueError(f"checkpoint {path} was written by a run with other arguments or inputs "
                             f"(differing: {'; '.join(diff) or 'the run key'}){by}; use another "
                             f"checkpoint directory or delete the file")

    def load_checkpoint(self, path: Path) -> Dict[str, Any]:
        """Read the checkpoint at ``path`` and check all of it against this
        run: ``{"finished", "position", "cache_root", "shapes", "sketch",
        "topk", "exact", "tally", "thresholds"}`` (the accumulators rebuilt).

        First its header: a file of this format and version whose key is
        this run's (else the differing settings are named).  Then the whole
        file against its schema (see the layout above): every header field's
        JSON type; every array present, none extra, each of its dtype, shape
        (C, H, W of its layer, T = top_k, L labels, NC categories) and range;
        the passes done a prefix of this run's passes, only the pass under way
        at a position above 0 (at most the number of batches), and exactly the
        accumulators that pass order implies.  Then each accumulator through
        its own ``from_state_dict`` (its invariants and digest), and against
        this run: its settings (sketch k, seed, NaN policy; tally sizes,
        label categories, unit rule, resize) and its counts (the values a pass
        has seen equal its position's images times H * W; the tally's images;
        an exact pass planned from this checkpoint's sketch, brackets and
        all); the top images sorted, empty slots last and each value the
        maximum of its map; approximate thresholds equal to the sketch's.
        Last the checkpoint's own digest.  Every refusal is one ValueError
        ``checkpoint <path>: field '<field>' ...`` (a damaged, truncated or
        non-npz file: ``checkpoint <path>: not a readable ...``)."""
        d = self.d
        what = "dissection checkpoint"
        hint = "; delete the checkpoint to start over"

        def fail(msg: str) -> ValueError:  # msg: "<path>: ..." from the schema loader
            return ValueError(f"checkpoint {msg.rstrip('.')}{hint}")

        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"checkpoint {path}: field {field!r} {msg}{hint}")

        if not os.path.isfile(path):
            raise ValueError(f"checkpoint {path} is not a file (a directory or another kind of entry); "
                             f"remove it to start over")
        try:
            meta = load_header(path, _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, what)
            for key, spec in (("key", str), ("config", dict), ("provenance", dict)):
                if key not in meta:
                    raise ValueError(f"{path}: field 'header.{key}' is missing")
                check_json(meta[key], spec, path, f"header.{key}")
        except ValueError as exc:
            raise fail(str(exc)) from None
        self._check_key(meta, path)

        # the whole file against its schema, built from this run and the header's stage
        N, bs = len(self.ds), d.batch_size
        n_batches = -(-N // bs)
        passes = d._passes()
        layers = [L.key for L in d._layers]
        stage: Dict[str, Any] = {}

        def schema(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
            finished = h["finished"]
            if finished != list(passes[:len(finished)]):
                raise ValueError(f"field 'header.finished' must be the passes done, in order: a prefix of "
                                 f"{list(passes)}; got {finished}")
            current = passes[len(finished)] if len(finished) < len(passes) else None
            for p, v in h["position"].items():
                if p not in passes:
                    raise ValueError(f"field 'header.position.{p}' names no pass of this run (passes: "
                                     f"{list(passes)})")
                if p == current and v > n_batches:
                    raise ValueError(f"field 'header.position.{p}' must be at most the {n_batches} batches "
                                     f"of this run; got {v}")
                if p != current and v != 0:
                    raise ValueError(f"field 'header.position.{p}' must be 0 (the pass is "
                                     f"{'done' if p in finished else 'not started'}); got {v}")

            def seen(p: str) -> int:
                """Images the pass has consumed."""
                if p in finished:
                    return N
                return min(N, h["position"].get(p, 0) * bs) if p == current else 0

            need = {"sketch": seen("quantiles") > 0, "exact": current == "exact" and seen("exact") > 0,
                    "tally": seen("iou") > 0}
            need["shapes"] = need["sketch"]
            for name, required in need.items():
                have = sorted(h[name])
                want = sorted(layers) if required else []
                if have != want:
                    extra = [k for k in have if k not in want]
                    why = (f"names {extra[0]!r}, which is not a layer of this run (layers: {layers})"
                           if extra and extra[0] not in layers else
                           f"must hold the layers {want} at this stage (passes done: {finished}, position: "
                           f"{h['position']}); got {have}")
                    raise ValueError(f"field 'header.{name}' {why}")
            thr = h["thresholds"]
            want_thr = sorted(layers) if ("exact" in finished or seen("iou") > 0) else []
            if sorted(thr) != want_thr or len(set(thr)) != len(thr):
                raise ValueError(f"field 'header.thresholds' must list the layers {want_thr} at this stage "
                                 f"(passes done: {finished}); got {thr}")
            if d.activation_cache and need["sketch"] and not isinstance(h["cache_root"], str):
                raise ValueError("field 'header.cache_root' must name the activation cache (this run has "
                                 "activation_cache=True); got null")
            if not d.activation_cache and h["cache_root"] is not None:
                raise ValueError("field 'header.cache_root' must be null (this run has activation_cache=False); "
                                 f"got {h['cache_root']!r}")
            out: Dict[str, Array] = {}
            dims = {"N": N, "T": d.top_k, "L": len(self.ds.label_names), "NC": int(self.ds.num_categories)}
            for k, shape in h["shapes"].items():
                if len(shape) != 3:
                    raise ValueError(f"field 'header.shapes.{k}' must be [C, H, W]; got {shape}")
                C, H, W = f"C[{k}]", f"H[{k}]", f"W[{k}]"
                dims.update({C: shape[0], H: shape[1], W: shape[2]})
                out.update({f"topk.{k}.{f}": a for f, a in _topk_arrays(k, C, H, W).items()})
            for kind in ("sketch", "exact", "tally"):
                for k in h[kind]:
                    out.update({f"{kind}.{k}.{f}": a for f, a in _STATE_ARRAYS[kind](k, f"C[{k}]").items()})
            for k in thr:
                out[f"thr.{k}"] = Array("float64", (f"C[{k}]",), inf=True)
            stage.update(finished=finished, current=current, seen={p: seen(p) for p in PASSES})
            return out, dims

        try:
            h, arrays = load_npz(path, _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, what, _CHECKPOINT_HEADER, schema)
        except ValueError as exc:
            raise fail(str(exc)) from None
        self._check_key(h, path)  # the file may have changed since the first look
        seen = stage["seen"]
        shapes = {k: tuple(v) for k, v in h["shapes"].items()}

        def state(kind: str, k: str) -> Dict[str, Any]:
            st = dict(h[kind][k])
            st.update({f: arrays[f"{kind}.{k}.{f}"] for f in _STATE_ARRAYS[kind](k, "C")})
            return st

        def rebuild(kind: str, k: str, cls):
            try:
                return cls.from_state_dict(state(kind, k), num_threads=d.num_threads)
            except (ValueError, TypeError) as exc:
                raise bad(f"{kind}.{k}", f"({_WHAT[kind]} of layer {k!r}): {str(exc).rstrip('.')}") from None

        def same_count(field: str, got: np.ndarray, pass_name: str, k: str) -> None:
            C, H, W = shapes[k]
            want = seen[pass_name] * H * W
            if not np.array_equal(got, np.full(C, want)):
                c = int(np.flatnonzero(got != want)[0])
                raise bad(field, f"counts {int(got[c])} values in channel {c}, but the {pass_name} pass has seen "
                                 f"{seen[pass_name]} images of {H}x{W} maps ({want} values) at its position")

        sketch: Dict[str, ChannelQuantiles] = {}
        topk: Dict[str, _TopK] = {}
        for k in h["sketch"]:
            sk = rebuild("sketch", k, ChannelQuantiles)
            C, H, W = shapes[k]
            for what_, got, want in (("num_channels", sk.num_channels, C), ("k", sk.k, DEFAULT_K),
                                     ("seed", sk.seed, d.seed), ("skip_nan", sk.nan, "raise")):
                if got != want:
                    raise bad(f"sketch.{k}.{what_}", f"is {got!r}; this run's sketch has {want!r}")
            same_count(f"sketch.{k}.count", sk.count + sk.nan_count, "quantiles", k)
            sketch[k] = sk
            vals, idx, maps = (arrays[f"topk.{k}.{f}"] for f in ("values", "index", "maps"))
            filled = idx >= 0
            T = d.top_k
            n = filled.sum(axis=1)
            gap = filled != (np.arange(T)[None, :] < n[:, None])
            if gap.any():
                u = int(np.argwhere(gap)[0][0])
                raise bad(f"topk.{k}.index", f"has an empty slot (-1) before an image for unit {u}")
            if T and int(n.max()) > seen["quantiles"]:
                u = int(np.argmax(n))
                raise bad(f"topk.{k}.index", f"holds {int(n[u])} images for unit {u}, more than the "
                                             f"{seen['quantiles']} the quantile pass has seen")
            if T and ((~filled) & (vals != -np.inf)).any():
                u = int(np.argwhere((~filled) & (vals != -np.inf))[0][0])
                raise bad(f"topk.{k}.values", f"must be -inf where the slot is empty (unit {u})")
            if T > 1 and (np.diff(vals, axis=1) > 0).any():
                u = int(np.argwhere(np.diff(vals, axis=1) > 0)[0][0])
                raise bad(f"topk.{k}.values", f"must be sorted from the largest (unit {u})")
            if T and filled.any():
                mx = maps.reshape(C, T, -1).max(axis=2).astype(np.float64)
                off = filled & (mx != vals)
                if off.any():
                    u, j = (int(x) for x in np.argwhere(off)[0])
                    raise bad(f"topk.{k}.values", f"must be the maximum of the unit's map ('topk.{k}.maps'); "
                                                  f"unit {u}, slot {j}: {float(vals[u, j])!r} but the map's maximum "
                                                  f"is {float(mx[u, j])!r}")
            tk = _TopK(1, T, (1, 1))
            tk.load({"values": vals, "index": idx, "maps": maps})
            topk[k] = tk

        exact: Dict[str, ExactQuantilePass] = {}
        for k in h["exact"]:
            p = rebuild("exact", k, ExactQuantilePass)
            plan = sketch[k].exact_pass(1.0 - d.quantile).state_dict()
            st = state("exact", k)
            for f in ("num_channels", "q", "scalar", "skip_nan", "cap", "sketch_count", "sketch_nan_count",
                      "sketch_checksum", "sketch_checksum_known", "lower", "upper"):
                a, b = np.asarray(st[f]), np.asarray(plan[f])
                if a.shape != b.shape or not np.array_equal(a, b):
                    raise bad(f"exact.{k}.{f}", f"is not that of the exact pass planned from this checkpoint's "
                                                f"sketch of layer {k!r} (for quantile {d.quantile!r})")
            same_count(f"exact.{k}.seen", st["seen"] + st["seen_nan"], "exact", k)
            exact[k] = p

        tally: Dict[str, IoUTally] = {}
        for k in h["tally"]:
            t = rebuild("tally", k, IoUTally)
            C = shapes[k][0]
            for what_, got, want in (("num_units", t.num_units, C),
                                     ("num_labels", t.num_labels, len(self.ds.label_names)),
                                     ("num_categories", t.num_categories, int(self.ds.num_categories)),
                                     ("output_size", tuple(t.output_size), tuple(int(x) for x in self.ds.pixel_size)),
                                     ("unit_rule", t.unit_rule, d.unit_rule), ("resize", t.resize, d.resize)):
                if got != want:
                    raise bad(f"tally.{k}.{what_}", f"is {got!r}; this run's tally has {want!r}")
            if not np.array_equal(np.asarray(t.label_category), self.label_cat_tally):
                raise bad(f"tally.{k}.label_category", "is not this dataset's label categories")
            if t.images != seen["iou"]:
                raise bad(f"tally.{k}.images", f"is {t.images}, but the iou pass has seen {seen['iou']} images "
                                              f"at its position")
            tally[k] = t

        thresholds = {k: arrays[f"thr.{k}"] for k in h["thresholds"]}
        if d.thresholds == "approx":
            for k, v in thresholds.items():
                if not np.array_equal(v, sketch[k].quantile(1.0 - d.quantile)):
                    raise bad(f"thr.{k}", f"is not the sketch's quantile {1.0 - d.quantile!r} of layer {k!r}")
        if h["digest"] != _checkpoint_digest(h, arrays):
            raise bad("digest", "does not match the file: it was changed after it was written (the fields "
                                "are each valid, but not the ones written together)")
        return {"finished": list(h["finished"]), "position": dict(h["position"]), "cache_root": h["cache_root"],
                "shapes": shapes, "sketch": sketch, "topk": topk, "exact": exact, "tally": tally,
                "thresholds": thresholds}

    def maybe_resume(self) -> None:
        ck = self.check_checkpoint()
        if ck is None:
            return
        d = self.d
        self.sketch, self.topk, self.exact, self.tally = ck["sketch"], ck["topk"], ck["exact"], ck["tally"]
        self.thresholds, self._shapes = ck["thresholds"], ck["shapes"]
        self.finished, self.position = ck["finished"], ck["position"]
        if d.activation_cache and ck["cache_root"]:
            self.cache_root = Path(ck["cache_root"])
            self._open_cache()
        d.resumed = {"path": str(self._ckpt_path()), "finished": list(self.finished),
                     "position": dict(self.position)}

    # ----- results
    def layer_result(self, L: _Layer) -> LayerResult:
        t = self.tally[L.key]
        tk = self.topk[L.key]
        return LayerResult(layer=L.module, label_names=list(self.ds.label_names), label_category=self.label_cat_raw,
                           categories=list(self.ds.categories), thresholds=np.asarray(self.thresholds[L.key]),
                           iou=t.iou(), intersection=t.intersection, label_pixels=t.label_pixels,
                           unit_pixels=t.unit_pixels, top_images=tk.index.numpy().copy(),
                           top_values=tk.values.numpy().copy(), top_maps=tk.maps.numpy().copy(),
                           quantile=self.d.quantile, iou_threshold=self.d.iou_threshold,
                           basis="units" if L.rotation is None else f"rotation{L.rotation}")


# ----------------------------------------------------------------------------- functions
def dissect(model, layers: Union[str, Sequence[str]], dataset: Any, **kwargs: Any) -> DissectionResult:
    """Network Dissection in one call: ``Dissection(model, layers, **kwargs).run(dataset)``."""
    return Dissection(model, layers, **kwargs).run(dataset)


def rotation_experiment(model, layer: str, dataset: Any, *, seed: int = 0, **kwargs: Any) -> Dict[str, Any]:
    """The paper's basis experiment: dissect ``layer`` in its own basis and in
    a random orthogonal basis (seeded), in the same passes, and report the
    unique detectors of each.  Returns ``{"units": LayerResult, "rotated":
    LayerResult, "unique_units": int, "unique_rotated": int, "detectors_units":
    int, "detectors_rotated": int}``."""
    seed = check_int(seed, "seed", minimum=0)
    res = dissect(model, [layer], dataset, rotations=[seed], **kwargs)
    a, b = res[layer], res[f"{layer}@rotation{seed}"]
    sa, sb = a.summary(), b.summary()
    return {"units": a, "rotated": b, "unique_units": sa["unique_detectors"],
            "unique_rotated": sb["unique_detectors"], "detectors_units": sa["detectors"],
            "detectors_rotated": sb["detectors"]}
