"""The results of semantic topic supervision (docs/topics.md), on the
:class:`~interp_engine.methods._result.Result` base: table, CSV through the
package's one writer, one ``.npz`` with its schema, a one-line repr."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..._npz import Array, Num, OneOf, load_npz, save_npz
from .._result import Result

__all__ = ["PredictionDifference", "EditEffect"]

# The prediction-difference file (format interp_engine.prediction_difference, version 1):
# K neurons, T targets, k top targets per neuron.
_PD_FORMAT = "interp_engine.prediction_difference"
_PD_VERSION = 1
_PD_HEADER = {"layer": str, "targets": OneOf(("topics", "classes", "callable")), "ablation": OneOf(("zero", "mean")),
              "target_names": [str], "n_samples": Num(int, 0)}
_PD_ARRAYS = ("neurons", "scores", "counts", "top_targets", "top_scores", "ablation_values")


def _pd_arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    t = len(h["target_names"])
    if t == 0:
        raise ValueError("field 'header.target_names' must name at least one target")
    return ({"neurons": Array("int64", ("K",), min=0), "scores": Array("float64", ("K", "T"), nan=True),
             "counts": Array("int64", ("K",), min=0, max="n"),
             "top_targets": Array("int64", ("K", "k"), min=-1, max="T", max_offset=-1),
             "top_scores": Array("float64", ("K", "k"), nan=True, inf=True),
             "ablation_values": Array("float64", ("K",))},
            {"T": t, "n": h["n_samples"]})


# The edit-effect file (format interp_engine.edit_effect, version 1): N samples, C classes.
_EDIT_FORMAT = "interp_engine.edit_effect"
_EDIT_VERSION = 1
_EDIT_HEADER = {"layer": str, "edits": [[(int, float)]], "class_names": [str], "has_labels": bool}


def _edit_arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    c = len(h["class_names"])
    if c == 0:
        raise ValueError("field 'header.class_names' must name at least one class")
    schema = {"before": Array("float64", ("N", "C"), min=0.0, max=1.0),
              "after": Array("float64", ("N", "C"), min=0.0, max=1.0),
              "before_class": Array("int64", ("N",), min=0, max="C", max_offset=-1),
              "after_class": Array("int64", ("N",), min=0, max="C", max_offset=-1)}
    if h["has_labels"]:
        schema["labels"] = Array("int64", ("N",), min=0, max="C", max_offset=-1)
    return schema, {"C": c}


@dataclass(repr=False, eq=False)
class PredictionDifference(Result):
    """The result of :meth:`TopicInterpretation.explain
    <interp_engine.methods.topics.TopicInterpretation.explain>`.

    Attributes:
        layer: the ablated layer; ``targets``: ``"topics"``, ``"classes"`` or
            ``"callable"``; ``ablation``: ``"zero"`` or ``"mean"``.
        neurons: int64 (K,), the channel index of each row.
        target_names: T names.
        scores: float64 (K, T), mean drop of each target's probability when
            the neuron is ablated, over the samples where it is active (NaN
            for a neuron never active).
        counts: int64 (K,), the number of samples where each neuron is active.
        n_samples: the number of samples seen.
        top_targets: int64 (K, k), target indices by decreasing score (ties:
            lower index first); -1 where the neuron is never active.
        top_scores: float64 (K, k), their scores (NaN with -1).
        ablation_values: float64 (K,), what each neuron was set to (0, or its
            mean over the data).
    """

    layer: str
    targets: str
    ablation: str
    neurons: np.ndarray
    target_names: List[str]
    scores: np.ndarray
    counts: np.ndarray
    n_samples: int
    top_targets: np.ndarray
    top_scores: np.ndarray
    ablation_values: np.ndarray

    def __len__(self) -> int:
        return len(self.neurons)

    @property
    def score(self) -> np.ndarray:
        """float64 (K,): each neuron's score, its top target's mean drop (NaN
        when never active)."""
        return self.top_scores[:, 0] if self.top_scores.shape[1] else np.full(len(self), np.nan)

    def top_names(self, i: int) -> List[str]:
        """The names of row ``i``'s top targets."""
        return [self.target_names[t] for t in self.top_targets[i] if t >= 0]

    def consistent(self, bar: float) -> np.ndarray:
        """bool (K,): neurons whose score is >= ``bar`` (never-active ones: False)."""
        s = self.score
        return np.where(np.isnan(s), False, s >= bar)

    def table(self) -> List[Dict[str, Any]]:
        """One plain dict per neuron: ``neuron``, ``active`` (count), ``score``,
        then ``target_1``, ``score_1``, ... ``target_k``, ``score_k`` (names;
        "" and NaN where fewer)."""
        rows = []
        for i in range(len(self)):
            row: Dict[str, Any] = {"neuron": int(self.neurons[i]), "active": int(self.counts[i]),
                                   "score": float(self.score[i])}
            for r in range(self.top_targets.shape[1]):
                t = int(self.top_targets[i, r])
                row[f"target_{r + 1}"] = self.target_names[t] if t >= 0 else ""
                row[f"score_{r + 1}"] = float(self.top_scores[i, r])
            rows.append(row)
        return rows

    def _csv_fields(self) -> Sequence[str]:
        k = self.top_targets.shape[1]
        return ["neuron", "active", "score"] + [f for r in range(1, k + 1) for f in (f"target_{r}", f"score_{r}")]

    def _summary(self) -> str:
        active = int((self.counts > 0).sum())
        return (f"layer={self.layer!r}, targets={self.targets!r}, ablation={self.ablation!r}, "
                f"neurons={len(self)}, targets_count={len(self.target_names)}, samples={self.n_samples}, "
                f"ever_active={active}")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the result to one ``.npz`` (arrays plus a JSON header); returns the path."""
        header = {"format": _PD_FORMAT, "version": _PD_VERSION, "layer": self.layer, "targets": self.targets,
                  "ablation": self.ablation, "target_names": list(self.target_names),
                  "n_samples": int(self.n_samples)}
        arrays = {a: np.asarray(getattr(self, a)) for a in _PD_ARRAYS}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "PredictionDifference":
        """Read a file written by :meth:`save`, checked against its schema:
        the header's keys and types, every array's dtype, shape (K neurons, T
        targets, k top targets) and range, and the consistency of the top
        targets with the scores (never-active neurons: NaN scores and -1
        targets; active ones: ``top_scores`` = ``scores`` at ``top_targets``);
        ValueError naming the file and the field otherwise."""
        path = Path(path)
        h, a = load_npz(path, _PD_FORMAT, _PD_VERSION, "prediction difference result", _PD_HEADER, _pd_arrays)
        if a["top_targets"].shape[1] > len(h["target_names"]):
            raise ValueError(f"{path}: field 'top_targets' has more columns ({a['top_targets'].shape[1]}) than "
                             f"there are targets ({len(h['target_names'])})")
        if len(np.unique(a["neurons"])) != len(a["neurons"]):
            raise ValueError(f"{path}: field 'neurons' repeats a neuron")
        never = a["counts"] == 0
        if (a["top_targets"][never] != -1).any() or (a["top_targets"][~never] < 0).any():
            raise ValueError(f"{path}: field 'top_targets' must be -1 exactly for the never-active neurons "
                             f"(counts == 0)")
        if not np.isnan(a["scores"][never]).all():
            raise ValueError(f"{path}: field 'scores' must be NaN for the never-active neurons (counts == 0)")
        live = np.flatnonzero(~never)
        if live.size and a["top_targets"].shape[1]:
            filled = np.where(np.isnan(a["scores"][live]), -np.inf, a["scores"][live])
            want = np.take_along_axis(filled, a["top_targets"][live], 1)
            if not np.array_equal(want, a["top_scores"][live]):
                raise ValueError(f"{path}: field 'top_scores' must be the scores of 'top_targets'")
        return cls(layer=h["layer"], targets=h["targets"], ablation=h["ablation"], neurons=a["neurons"],
                   target_names=h["target_names"], scores=a["scores"], counts=a["counts"], n_samples=h["n_samples"],
                   top_targets=a["top_targets"], top_scores=a["top_scores"], ablation_values=a["ablation_values"])


@dataclass(repr=False, eq=False)
class EditEffect(Result):
    """How an edit changes predictions (:meth:`TopicInterpretation.explain_edit
    <interp_engine.methods.topics.TopicInterpretation.explain_edit>`).

    Attributes:
        edits: the ``{neuron: scale}`` applied; ``layer`` its layer.
        class_names: C names.
        before, after: float64 (N, C) class probabilities (softmax of the
            logits) without and with the edit.
        before_class, after_class: int64 (N,) argmax.
        labels: int64 (N,) true classes when given, else None.
    """

    layer: str
    edits: Dict[int, float]
    class_names: List[str]
    before: np.ndarray
    after: np.ndarray
    before_class: np.ndarray
    after_class: np.ndarray
    labels: Optional[np.ndarray] = None

    @property
    def changed(self) -> np.ndarray:
        """bool (N,): samples whose predicted class changed."""
        return self.before_class != self.after_class

    def table(self) -> List[Dict[str, Any]]:
        """One plain dict per sample: ``sample``, ``before``, ``p_before``,
        ``after``, ``p_after`` (class names and their probabilities), the
        probability of the former class after the edit ``p_before_class_after``,
        and ``label`` / ``correct_before`` / ``correct_after`` when labels were
        given."""
        rows = []
        for i in range(len(self.before_class)):
            b, a = int(self.before_class[i]), int(self.after_class[i])
            row: Dict[str, Any] = {"sample": i, "before": self.class_names[b], "p_before": float(self.before[i, b]),
                                   "after": self.class_names[a], "p_after": float(self.after[i, a]),
                                   "p_before_class_after": float(self.after[i, b])}
            if self.labels is not None:
                y = int(self.labels[i])
                row.update(label=self.class_names[y], correct_before=b == y, correct_after=a == y)
            rows.append(row)
        return rows

    def _csv_fields(self) -> Sequence[str]:
        return ["sample", "before", "p_before", "after", "p_after", "p_before_class_after"] + (
            ["label", "correct_before", "correct_after"] if self.labels is not None else [])

    def _summary(self) -> str:
        return (f"layer={self.layer!r}, edits={len(self.edits)} neurons, samples={len(self.before_class)}, "
                f"changed={int(self.changed.sum())}")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the effect to one ``.npz`` (arrays plus a JSON header); returns the path."""
        header = {"format": _EDIT_FORMAT, "version": _EDIT_VERSION, "layer": self.layer,
                  "edits": [[int(k), float(v)] for k, v in self.edits.items()], "class_names": list(self.class_names),
                  "has_labels": self.labels is not None}
        arrays = {"before": self.before, "after": self.after, "before_class": self.before_class,
                  "after_class": self.after_class}
        if self.labels is not None:
            arrays["labels"] = self.labels
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "EditEffect":
        """Read a file written by :meth:`save`, checked against its schema
        (probabilities in [0, 1] of shape (N, C), classes in [0, C), the
        predicted classes the argmax of the probabilities, the edits' neurons
        distinct ints >= 0 and scales finite); ValueError naming the file and
        the field otherwise."""
        path = Path(path)
        h, a = load_npz(path, _EDIT_FORMAT, _EDIT_VERSION, "edit effect", _EDIT_HEADER, _edit_arrays)
        edits: Dict[int, float] = {}
        for i, pair in enumerate(h["edits"]):
            if len(pair) != 2 or isinstance(pair[0], float) or pair[0] < 0 or not math.isfinite(pair[1]) \
                    or pair[0] in edits:
                raise ValueError(f"{path}: field 'header.edits[{i}]' must be a pair [neuron (a new int >= 0), "
                                 f"finite scale]; got {pair!r}")
            edits[int(pair[0])] = float(pair[1])
        for name, probs in (("before_class", "before"), ("after_class", "after")):
            if not np.array_equal(a[name], a[probs].argmax(1)):
                raise ValueError(f"{path}: field {name!r} must be the argmax of {probs!r}")
        return cls(layer=h["layer"], edits=edits, class_names=h["class_names"], before=a["before"], after=a["after"],
                   before_class=a["before_class"], after_class=a["after_class"], labels=a.get("labels"))

    def __str__(self) -> str:
        lines = [f"edit {self.edits} at {self.layer!r}:"]
        for r in self.table():
            s = (f"  sample {r['sample']}: {r['before']} ({r['p_before']:.3f}) -> {r['after']} "
                 f"({r['p_after']:.3f})")
            if "label" in r:
                s += f"  [true: {r['label']}; {'right' if r['correct_before'] else 'wrong'} -> " \
                     f"{'right' if r['correct_after'] else 'wrong'}]"
            lines.append(s)
        return "\n".join(lines)
