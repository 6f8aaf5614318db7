"""The result of :meth:`ConceptVectors.explain
<interp_engine.methods.concept_vectors.ConceptVectors.explain>`: per concept,
the held-out set-IoU at 0.5 of its vector next to the best single unit's
(docs/concept_vectors.md, "Evaluation"), and the pass that computes it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from ..._npz import Array, Num, OneOf, load_npz, save_npz
from .._rows import ConceptRows
from .._vector_files import entries
from .accumulators import _UnitTally
from .data import concept_masks
from .solver import METHODS

__all__ = ["ConceptIoURow", "ConceptVectorsEvaluation", "evaluate_vectors"]

_FORMAT = "interp_engine.concept_vectors_evaluation"
_VERSION = 1


@dataclass
class ConceptIoURow:
    """Held-out segmentation IoU of one concept vector and the best unit.

    Attributes:
        concept, category: the label and its category.
        method: ``"semantic"``, ``"net2vec"`` or ``"cav"``.
        iou: the vector's set-IoU at 0.5 on the evaluated images.
        best_unit: the unit with the highest set-IoU for the concept on the
            training split (-1 when none overlaps it).
        unit_iou: that unit's set-IoU on the evaluated images.
        train_unit_iou: its set-IoU on the training split.
        label_pixels: the concept's pixels in the evaluated images.
    """

    concept: str
    category: str
    method: str
    iou: float
    best_unit: int
    unit_iou: float
    train_unit_iou: float
    label_pixels: int

    @property
    def beats_unit(self) -> bool:
        """The vector's IoU is above the best unit's."""
        return self.iou > self.unit_iou


@dataclass(repr=False)
class ConceptVectorsEvaluation(ConceptRows):
    """One :class:`ConceptIoURow` per concept (in fit order); a
    :class:`~interp_engine.methods._result.Result`: ``table()``,
    ``to_csv(path)``, ``save(path)`` / ``ConceptVectorsEvaluation.load(path)``,
    ``result[concept]``, a text table as ``str``."""

    layer: str
    method: str
    num_images: int
    rows: List[ConceptIoURow]

    #: the fields of :meth:`table` (one plain dict per concept, no pandas) and the CSV columns
    _TABLE_KEYS = ("concept", "category", "method", "iou", "best_unit", "unit_iou", "train_unit_iou",
                   "label_pixels", "beats_unit")

    def __str__(self) -> str:
        lines = [f"{self.method} concept vectors at {self.layer!r}: set-IoU at 0.5 on "
                 f"{self.num_images} images",
                 f"{'concept':<16} {'category':<10} {'vector':>7} {'unit':>5} {'unit IoU':>8}"]
        for r in self.rows:
            lines.append(f"{r.concept[:16]:<16} {r.category[:10]:<10} {r.iou:7.4f} {r.best_unit:>5} "
                         f"{r.unit_iou:8.4f}{'  *' if r.beats_unit else ''}")
        n = sum(r.beats_unit for r in self.rows)
        lines.append(f"vector above the best unit for {n} of {len(self.rows)} concepts (*)")
        return "\n".join(lines)

    def _summary(self) -> str:
        n = sum(r.beats_unit for r in self.rows)
        return (f"{self.method} at {self.layer!r}, {super()._summary()} on {self.num_images} images, "
                f"{n} above the best unit")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the evaluation to one ``.npz`` (no pickle): the per-concept
        columns as arrays, the layer, method, image count and the concepts'
        names and categories in the JSON header."""
        header = {"format": _FORMAT, "version": _VERSION, "layer": self.layer, "method": self.method,
                  "num_images": int(self.num_images), "concepts": [r.concept for r in self.rows],
                  "categories": [r.category for r in self.rows]}
        arrays = {"iou": np.array([r.iou for r in self.rows], np.float64),
                  "best_unit": np.array([r.best_unit for r in self.rows], np.int64),
                  "unit_iou": np.array([r.unit_iou for r in self.rows], np.float64),
                  "train_unit_iou": np.array([r.train_unit_iou for r in self.rows], np.float64),
                  "label_pixels": np.array([r.label_pixels for r in self.rows], np.int64)}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "ConceptVectorsEvaluation":
        """Read a file written by :meth:`save` (``allow_pickle=False``),
        checked against its schema: one entry per concept in the header's
        ``concepts`` and ``categories``; ``iou``, ``unit_iou``,
        ``train_unit_iou`` float in [0, 1], ``best_unit`` int >= -1 (-1: no
        unit overlaps the concept, whose unit IoUs are then 0),
        ``label_pixels`` int >= 0; ValueError naming the file and the field
        otherwise."""
        h, a = load_npz(path, _FORMAT, _VERSION, "concept-vector evaluation", _HEADER, _arrays)
        none = (a["best_unit"] < 0) & ((a["unit_iou"] != 0) | (a["train_unit_iou"] != 0))
        if none.any():
            j = int(np.flatnonzero(none)[0])
            raise ValueError(f"{path}: fields 'unit_iou' / 'train_unit_iou' must be 0 for a concept without a "
                             f"best unit ('best_unit' -1); concept {j} has {float(a['unit_iou'][j])!r} / "
                             f"{float(a['train_unit_iou'][j])!r}")
        rows = [ConceptIoURow(concept=c, category=cat, method=h["method"], iou=float(a["iou"][j]),
                              best_unit=int(a["best_unit"][j]), unit_iou=float(a["unit_iou"][j]),
                              train_unit_iou=float(a["train_unit_iou"][j]),
                              label_pixels=int(a["label_pixels"][j]))
                for j, (c, cat) in enumerate(zip(h["concepts"], h["categories"]))]
        return cls(h["layer"], h["method"], int(h["num_images"]), rows)


# The evaluation file (format interp_engine.concept_vectors_evaluation, version 1): L concepts
# (the header's concepts and categories), one entry of each array per concept.
_HEADER = {"layer": str, "method": OneOf(METHODS), "num_images": Num(int, 0), "concepts": [str],
           "categories": [str]}


def _arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    dims = {"L": entries(h, ("concepts", "categories"), "concept")}
    return ({"iou": Array("float64", ("L",), min=0.0, max=1.0),
             "best_unit": Array("int64", ("L",), min=-1),
             "unit_iou": Array("float64", ("L",), min=0.0, max=1.0),
             "train_unit_iou": Array("float64", ("L",), min=0.0, max=1.0),
             "label_pixels": Array("int64", ("L",), min=0)}, dims)


def evaluate_vectors(cv: Any, ds: Any, batches: Iterable[Tuple[Any, Any]], num_images: int,
                     labels: Sequence[int]) -> ConceptVectorsEvaluation:
    """The evaluation pass of fitted vectors ``cv`` (a ConceptVectors) over
    ``batches`` (activations, label maps) of ``num_images`` images of ``ds``,
    whose label numbers of ``cv.concepts`` are ``labels``: the vectors'
    set-IoU at 0.5 of the upsampled prediction and, in the same pass, the
    units' counts for the best units' IoU."""
    import torch
    import torch.nn.functional as F

    S = tuple(int(s) for s in ds.pixel_size)
    L = len(labels)
    vi = torch.zeros(L, dtype=torch.int64)
    vu = torch.zeros(L, dtype=torch.int64)
    tally = _UnitTally(ds, labels, cv.thresholds)
    for a, pl in batches:
        if a.shape[1] != cv.vectors.shape[1]:
            raise ValueError(f"layer {cv.layer!r} has {a.shape[1]} channels; the vectors have "
                             f"{cv.vectors.shape[1]}")
        z = F.interpolate(cv.predict_logits(a), size=S, mode="bilinear", align_corners=False)
        pred = z > 0  # sigmoid > 0.5
        m = concept_masks(pl, labels)
        vi += (pred & m).sum((0, 2, 3))
        vu += (pred | m).sum((0, 2, 3))
        tally.update(a, pl)
    inter, upix, lpix = tally.counts()
    rows = []
    for j, c in enumerate(cv.concepts):
        u = int(cv.best_units[j])
        uiou = 0.0 if u < 0 else float(inter[u, j] / max(upix[u] + lpix[j] - inter[u, j], 1))
        rows.append(ConceptIoURow(concept=c, category=cv.categories[j], method=cv.method,
                                  iou=float(vi[j]) / max(int(vu[j]), 1), best_unit=u, unit_iou=uiou,
                                  train_unit_iou=float(cv.train_unit_iou[j]), label_pixels=int(lpix[j])))
    return ConceptVectorsEvaluation(cv.layer, cv.method, int(num_images), rows)
