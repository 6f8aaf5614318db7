"""The result of :meth:`TCAV.explain <interp_engine.methods.tcav.TCAV.explain>`:
per concept, its TCAV scores for one class with the paper's significance test
(docs/concept_vectors.md, "TCAV")."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from ..._npz import Array, Num, load_npz, save_npz
from .._rows import ConceptRows

__all__ = ["TCAVRow", "TCAVResult"]

_FORMAT = "interp_engine.tcav_result"
_VERSION = 1


@dataclass
class TCAVRow:
    """TCAV of one concept for one class.

    Attributes:
        concept, target_class: what was tested.
        score: mean TCAV score over the ``R`` random counterparts.
        std: standard deviation of those scores (ddof=0).
        p_value: two-sided t-test p-value against the random-vs-random scores.
        p_corrected: ``min(1, p_value * num_tests)`` (Bonferroni).
        significant: ``p_corrected < alpha``.
        scores: float64 ``(R,)`` the concept's TCAV scores, one per counterpart.
        random_scores: float64 ``(R,)`` the random reference's scores.
        accuracy: mean held-out accuracy of the concept's ``R`` CAVs.
    """

    concept: str
    target_class: int
    score: float
    std: float
    p_value: float
    p_corrected: float
    significant: bool
    scores: np.ndarray = field(repr=False)
    random_scores: np.ndarray = field(repr=False)
    accuracy: float = float("nan")


@dataclass(repr=False)
class TCAVResult(ConceptRows):
    """Rows of :class:`TCAVRow`, one per concept, for one target class; a
    :class:`~interp_engine.methods._result.Result`: ``table()``,
    ``to_csv(path)``, ``save(path)`` / ``TCAVResult.load(path)``,
    ``result[concept]``, a text table as ``str``."""

    layer: str
    target_class: int
    alpha: float
    num_inputs: int
    rows: List[TCAVRow]

    #: the fields of :meth:`table` (one plain dict per concept, no pandas) and the CSV columns
    _TABLE_KEYS = ("concept", "target_class", "score", "std", "p_value", "p_corrected",
                   "significant", "accuracy")

    def __str__(self) -> str:
        head = (f"TCAV at {self.layer!r}, class {self.target_class}, {self.num_inputs} inputs, "
                f"alpha={self.alpha} (Bonferroni over {len(self.rows)})")
        lines = [head, f"{'concept':<20} {'score':>6} {'std':>6} {'p':>9} {'p_corr':>9}  sig  acc"]
        for r in self.rows:
            lines.append(f"{r.concept:<20} {r.score:6.3f} {r.std:6.3f} {r.p_value:9.2e} "
                         f"{r.p_corrected:9.2e}  {'yes' if r.significant else 'no ':<3}  "
                         f"{r.accuracy:.2f}")
        return "\n".join(lines)

    def _summary(self) -> str:
        n = sum(bool(r.significant) for r in self.rows)
        return (f"layer {self.layer!r}, class {self.target_class}, {super()._summary()}, {n} significant at "
                f"alpha={self.alpha}, {self.num_inputs} inputs")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the result to one ``.npz`` (no pickle): the per-concept
        columns as arrays (``scores`` and ``random_scores`` ``(n, R)``), the
        layer, class, alpha, input count and concept names in the JSON
        header."""
        rows = self.rows
        R = len(rows[0].scores) if rows else 0
        header = {"format": _FORMAT, "version": _VERSION, "layer": self.layer,
                  "target_class": int(self.target_class), "alpha": float(self.alpha),
                  "num_inputs": int(self.num_inputs), "concepts": [r.concept for r in rows]}
        col = {k: np.array([getattr(r, k) for r in rows], np.float64)
               for k in ("score", "std", "p_value", "p_corrected", "accuracy")}
        arrays = dict(col, significant=np.array([bool(r.significant) for r in rows], bool),
                      scores=np.array([r.scores for r in rows], np.float64).reshape(len(rows), R),
                      random_scores=np.array([r.random_scores for r in rows], np.float64).reshape(len(rows), R))
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "TCAVResult":
        """Read a file written by :meth:`save` (``allow_pickle=False``),
        checked against its schema: one entry per concept of the header;
        ``score``, ``p_value``, ``p_corrected``, ``scores``,
        ``random_scores`` in [0, 1], ``std`` in [0, 0.5], ``accuracy`` in
        [0, 1] or NaN, ``significant`` bool, with ``p_corrected >= p_value``
        and ``significant == (p_corrected < alpha)``; ValueError naming the
        file and the field otherwise."""
        h, a = load_npz(path, _FORMAT, _VERSION, "TCAV result", _HEADER, _arrays)
        bad = a["p_corrected"] < a["p_value"]
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: field 'p_corrected' is below 'p_value' for concept {j} "
                             f"({float(a['p_corrected'][j])!r} < {float(a['p_value'][j])!r}): a Bonferroni "
                             f"correction never lowers a p-value")
        bad = a["significant"] != (a["p_corrected"] < h["alpha"])
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: field 'significant' of concept {j} is {bool(a['significant'][j])} where "
                             f"'p_corrected' {float(a['p_corrected'][j])!r} < 'header.alpha' {h['alpha']!r} is "
                             f"{not bool(a['significant'][j])}")
        t = int(h["target_class"])
        rows = [TCAVRow(c, t, float(a["score"][j]), float(a["std"][j]), float(a["p_value"][j]),
                        float(a["p_corrected"][j]), bool(a["significant"][j]), a["scores"][j].copy(),
                        a["random_scores"][j].copy(), float(a["accuracy"][j]))
                for j, c in enumerate(h["concepts"])]
        return cls(h["layer"], t, float(h["alpha"]), int(h["num_inputs"]), rows)


# The TCAV result file (format interp_engine.tcav_result, version 1): n concepts (the header's
# concepts), R random counterparts (the width of scores).
_HEADER = {"layer": str, "target_class": Num(int, 0), "alpha": Num(float, 0.0, 1.0), "num_inputs": Num(int, 0),
           "concepts": [str]}


def _arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    unit = {"min": 0.0, "max": 1.0}
    return ({"score": Array("float64", ("n",), **unit),
             "std": Array("float64", ("n",), min=0.0, max=0.5),
             "p_value": Array("float64", ("n",), **unit),
             "p_corrected": Array("float64", ("n",), **unit),
             "significant": Array("bool", ("n",)),
             "accuracy": Array("float64", ("n",), nan=True, **unit),
             "scores": Array("float64", ("n", "R"), **unit),
             "random_scores": Array("float64", ("n", "R"), **unit)}, {"n": len(h["concepts"])})
