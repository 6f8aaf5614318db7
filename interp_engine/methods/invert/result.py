"""INVERT results: the explanation of one formula, of one neuron, of a run
(:class:`InvertResult`, on the :class:`~interp_engine.methods._result.Result`
base: ``table``, ``to_csv``, ``save`` / ``load``, a one-line ``repr``).

The result file (format ``interp_engine.invert``, version 1; :meth:`InvertResult.save`)
is one ``.npz`` with a JSON header and the arrays of the search, in the
layout the core returns them (``engine.rank.beam_search``), cut to the
formulas kept: M neurons, T formulas at most per neuron, A atoms at most per
formula, C concepts, N samples, K neurons of the activations.

header: ``concept_names`` (C strings), ``params`` (the search parameters),
``num_samples`` (N), ``num_neurons`` (K, or null when unknown),
``activations`` (``"float32"``/``"float64"``: the dtype of the saved
activations, or null when not saved), ``labels`` (whether they are saved).

==============  =========  ==============  ==========================================
array           dtype      shape           values
==============  =========  ==============  ==========================================
``codes``       int64      (M, T, A)       ``2 * concept + negated``; -1 after the formula's atoms
``ops``         int64      (M, T, A)       0 AND, 1 OR joining atom t to the left; -1 at t = 0 and after
``neurons``     int64      (M,)            column of each neuron, in [0, K)
``status``      int64      (M,)            0 explained, 1 constant activations, 2 no admissible formula
``count``       int64      (M,)            formulas kept (0 unless status is 0)
``lengths``     int64      (M, T)          atoms of each formula (0 after ``count``)
``n1``          int64      (M, T)          samples inside, in [1, N - 1] (0 after ``count``)
``auc``         float64    (M, T)          in [0, 1] (NaN after ``count``)
``pvalue``      float64    (M, T)          in [0, 1] (NaN after ``count``)
``evaluations`` int64      (M,)            candidate formulas scored
``activations`` float      (N, K)          only when the header says so
``labels``      bool       (N, C)          only when the header says so
==============  =========  ==============  ==========================================
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..._npz import Array, Num, OneOf, check_json, load_npz, save_npz
from ...engine.checks import INT32_MAX, bool_array
from ...engine.rank import PVALUE_METHODS
from .._result import Result

__all__ = ["Explanation", "NeuronExplanation", "InvertResult", "format_formula", "MODES"]

MODES = ("positive", "negative")
STATUS_NOTES = {0: "", 1: "constant activations", 2: "no admissible formula"}
_NOTE_STATUS = {v: k for k, v in STATUS_NOTES.items()}

Term = Tuple[Optional[str], str, bool]  # (op or None for the first atom, concept name, negated)

#: the columns of :meth:`InvertResult.table` (and of ``invert.csv``)
COLUMNS = ("neuron", "formula", "length", "auc", "differentiability", "concept_fraction", "p_value", "note")


def format_formula(terms: Sequence[Term]) -> str:
    """The readable string of a left-to-right formula: ``"(red OR blue) AND NOT sky"``."""
    out = ""
    for i, (op, name, neg) in enumerate(terms):
        atom = f"NOT {name}" if neg else name
        if i == 0:
            out = atom
        else:
            left = f"({out})" if i > 1 else out
            out = f"{left} {op} {atom}"
    return out


@dataclass(frozen=True)
class Explanation:
    """One formula and its scores for one neuron.

    formula:           readable string, left to right, ``"(red OR blue) AND NOT sky"``.
    terms:             structured form: ``((None, "red", False), ("OR", "blue", False),
                       ("AND", "sky", True))``: (operator joining the atom to what is on its
                       left, concept name, negated).
    concepts:          concept indices of the atoms, in order (with ``negated``: the atoms).
    negated:           whether each atom is negated.
    length:            number of atoms.
    auc:               AUC of the neuron's activations inside vs outside the formula.
    differentiability: ``2 * |auc - 0.5|``.
    concept_fraction:  fraction of the samples where the formula holds.
    p_value:           two-sided Mann-Whitney U p-value, outside vs inside, as
                       ``scipy.stats.mannwhitneyu(outside, inside, method=pvalue_method)``
                       (default "auto": exact when a group has at most 8 samples and
                       the neuron has no tied values, else asymptotic with tie and
                       continuity corrections).
    n_inside:          number of samples where the formula holds.
    """

    formula: str
    terms: Tuple[Term, ...]
    concepts: Tuple[int, ...]
    negated: Tuple[bool, ...]
    length: int
    auc: float
    differentiability: float
    concept_fraction: float
    p_value: float
    n_inside: int

    def evaluate(self, labels: Any) -> np.ndarray:
        """The samples where the formula holds: bool (N,) from a (N, C) boolean label
        matrix (the one the formula was found on, or any with the same concept columns)."""
        lab = bool_array(labels, "labels", ndim=2, shape_hint="(N samples, C concepts)")
        if self.concepts and max(self.concepts) >= lab.shape[1]:
            raise ValueError(f"labels has {lab.shape[1]} concept columns; the formula uses concept "
                             f"{max(self.concepts)}")
        out = np.zeros(lab.shape[0], dtype=bool)
        for i, ((op, _, neg), c) in enumerate(zip(self.terms, self.concepts)):
            atom = ~lab[:, c] if neg else lab[:, c]
            out = atom.copy() if i == 0 else ((out & atom) if op == "AND" else (out | atom))
        return out


@dataclass(frozen=True)
class NeuronExplanation:
    """The result of one neuron: its best formula and the top ones.

    neuron: column index in the activations.
    best:   the best :class:`Explanation`, or None (see ``note``).
    top:    the best ``top`` explanations, best first (``best`` is ``top[0]``).
    note:   "" normally; "constant activations" (every formula has AUC 0.5: no
            explanation is given) or "no admissible formula" (no atom satisfies the
            fraction constraint).
    evaluations: candidate formulas scored: the atoms (once per concept), then every
            extension whose set is neither empty, nor all samples, nor the extended
            formula's own set.  (The reference scores C + (length - 1) * 4C * beam: every
            extension, at every length.)
    The properties ``formula``, ``terms``, ``length``, ``auc``, ``differentiability``,
    ``concept_fraction`` and ``p_value`` are those of ``best`` (None / 0 / NaN when none).
    """

    neuron: int
    best: Optional[Explanation]
    top: Tuple[Explanation, ...]
    note: str = ""
    evaluations: int = 0

    @property
    def formula(self) -> Optional[str]:
        return self.best.formula if self.best else None

    @property
    def terms(self) -> Tuple[Term, ...]:
        return self.best.terms if self.best else ()

    @property
    def length(self) -> int:
        return self.best.length if self.best else 0

    @property
    def auc(self) -> float:
        return self.best.auc if self.best else math.nan

    @property
    def differentiability(self) -> float:
        return self.best.differentiability if self.best else math.nan

    @property
    def concept_fraction(self) -> float:
        return self.best.concept_fraction if self.best else math.nan

    @property
    def p_value(self) -> float:
        return self.best.p_value if self.best else math.nan


def neuron_result(out: Mapping[str, np.ndarray], i: int, neuron: int, names: Sequence[str], n: int,
                  top_n: int) -> NeuronExplanation:
    """Row ``i`` of the search's arrays (``engine.rank.beam_search`` or a result
    file: the same layout) as a :class:`NeuronExplanation` keeping ``top_n`` formulas."""
    status = int(out["status"][i])
    count = int(out["count"][i])
    exps = []
    for b in range(min(count, top_n)):
        length = int(out["lengths"][i, b])
        codes = out["codes"][i, b, :length]
        ops = out["ops"][i, b, :length]
        concepts = tuple(int(x) // 2 for x in codes)
        negated = tuple(bool(x & 1) for x in codes)
        terms = tuple((None if t == 0 else ("AND" if ops[t] == 0 else "OR"), names[concepts[t]],
                       negated[t]) for t in range(length))
        auc = float(out["auc"][i, b])
        n1 = int(out["n1"][i, b])
        exps.append(Explanation(formula=format_formula(terms), terms=terms, concepts=concepts,
                                negated=negated, length=length, auc=auc,
                                differentiability=2.0 * abs(auc - 0.5), concept_fraction=n1 / n,
                                p_value=float(out["pvalue"][i, b]), n_inside=n1))
    return NeuronExplanation(neuron=neuron, best=exps[0] if exps else None, top=tuple(exps),
                             note=STATUS_NOTES.get(status, ""), evaluations=int(out["evaluations"][i]))


# ----------------------------------------------------------------------------- the file format
_FORMAT = "interp_engine.invert"
_VERSION = 1
_PARAMS = {"length": Num(int, 1, INT32_MAX), "beam": Num(int, 1, INT32_MAX), "min_fraction": Num(float, 0.0, 1.0),
           "max_fraction": Num(float, 0.0, 1.0), "mode": OneOf(MODES), "pvalue_method": OneOf(PVALUE_METHODS)}
_HEADER = {"concept_names": [str], "params": _PARAMS, "num_samples": Num(int, 1),
           "num_neurons": (None, Num(int, 1)), "activations": (None, OneOf(("float32", "float64"))),
           "labels": bool}


def _file_arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    """The arrays of a result file with header ``h`` (module docstring) and the known dimensions."""
    c = len(h["concept_names"])
    if c < 1:
        raise ValueError("field 'header.concept_names' must name at least one concept; got 0")
    dims = {"N": h["num_samples"], "C": c}
    k_max: Any = None
    if h["num_neurons"] is not None:
        dims["K"] = h["num_neurons"]
        k_max = "K"
    schema = {"codes": Array("int64", ("M", "T", "A"), min=-1, max=2 * c - 1),
              "ops": Array("int64", ("M", "T", "A"), min=-1, max=1),
              "neurons": Array("int64", ("M",), min=0, max=k_max, max_offset=-1 if k_max else 0),
              "status": Array("int64", ("M",), min=0, max=2),
              "count": Array("int64", ("M",), min=0, max="T"),
              "lengths": Array("int64", ("M", "T"), min=0, max="A"),
              "n1": Array("int64", ("M", "T"), min=0, max="N", max_offset=-1),
              "auc": Array("float64", ("M", "T"), min=0.0, max=1.0, nan=True),
              "pvalue": Array("float64", ("M", "T"), min=0.0, max=1.0, nan=True),
              "evaluations": Array("int64", ("M",), min=0)}
    if h["activations"] is not None:
        if h["num_neurons"] is None:
            raise ValueError("field 'header.num_neurons' must be given when activations are saved; got null")
        schema["activations"] = Array(h["activations"], ("N", "K"), inf=True)
    if h["labels"]:
        schema["labels"] = Array("bool", ("N", "C"))
    return schema, dims


def _check_rows(path: Path, a: Dict[str, np.ndarray]) -> None:
    """The consistency of the arrays that the schema alone does not check; ValueError naming the field."""
    def bad(name: str, i: int, what: str) -> ValueError:
        return ValueError(f"{path}: field {name!r} {what} (neuron row {i})")

    t_dim = a["lengths"].shape[1]
    a_dim = a["codes"].shape[2]
    pos_t = np.arange(t_dim)[None, :]
    pos_a = np.arange(a_dim)[None, None, :]
    for i in np.flatnonzero((a["status"] != 0) & (a["count"] > 0)):
        raise bad("count", int(i), f"must be 0 for a neuron with status {int(a['status'][i])}; got {int(a['count'][i])}")
    kept = pos_t < a["count"][:, None]                              # (M, T)
    for name, ok in (("lengths", np.where(kept, a["lengths"] >= 1, a["lengths"] == 0)),
                     ("n1", np.where(kept, a["n1"] >= 1, a["n1"] == 0)),
                     ("auc", np.where(kept, np.isfinite(a["auc"]), np.isnan(a["auc"]))),
                     ("pvalue", kept | np.isnan(a["pvalue"]))):
        if not ok.all():
            i, b = (int(x) for x in np.argwhere(~ok)[0])
            state = "a kept formula" if kept[i, b] else "past the kept formulas (count)"
            raise bad(name, i, f"has a wrong value at formula {b} for {state}: {a[name][i, b]}")
    atom = pos_a < a["lengths"][:, :, None]                          # (M, T, A)
    first = pos_a == 0
    ok_codes = np.where(atom, a["codes"] >= 0, a["codes"] == -1)
    ok_ops = np.where(atom & ~first, a["ops"] >= 0, a["ops"] == -1)
    for name, ok in (("codes", ok_codes), ("ops", ok_ops)):
        if not ok.all():
            i, b, t = (int(x) for x in np.argwhere(~ok)[0])
            raise bad(name, i, f"has {a[name][i, b, t]} at formula {b}, atom {t} (of {int(a['lengths'][i, b])} atoms)")


@dataclass(repr=False)
class InvertResult(Result):
    """Explanations of several neurons (a sequence of :class:`NeuronExplanation`).

    neurons:       the explanations, in the order of the neurons asked for.
    concept_names: the C concept names.
    params:        the search parameters.
    activations:   the (N, K) activations searched (numpy, as given or converted), or None.
    labels:        the (N, C) bool concept labels (when collected from a model), or None.
    num_samples:   N (None when not known).
    num_neurons:   K, the columns of the activations (None when not known).
    """

    neurons: List[NeuronExplanation]
    concept_names: List[str]
    params: Dict[str, Any]
    activations: Optional[np.ndarray] = field(default=None, repr=False)
    labels: Optional[np.ndarray] = field(default=None, repr=False)
    num_samples: Optional[int] = None
    num_neurons: Optional[int] = None

    def __len__(self) -> int:
        return len(self.neurons)

    def __iter__(self) -> Iterator[NeuronExplanation]:
        return iter(self.neurons)

    def __getitem__(self, i: int) -> NeuronExplanation:
        return self.neurons[i]

    def table(self) -> List[Dict[str, Any]]:
        """One dict per neuron, in the order of the neurons: neuron, formula ("" without
        one), length, auc, differentiability, concept_fraction, p_value (NaN without a
        formula), note."""
        return [{"neuron": r.neuron, "formula": r.formula or "", "length": r.length, "auc": r.auc,
                 "differentiability": r.differentiability, "concept_fraction": r.concept_fraction,
                 "p_value": r.p_value, "note": r.note} for r in self.neurons]

    def to_records(self) -> List[Dict[str, Any]]:
        """Deprecated alias of :meth:`table`."""
        import warnings

        warnings.warn("InvertResult.to_records is deprecated; use InvertResult.table", DeprecationWarning,
                      stacklevel=2)
        return self.table()

    def _csv_fields(self) -> Sequence[str]:
        return COLUMNS

    def _summary(self) -> str:
        explained = sum(r.best is not None for r in self.neurons)
        p = self.params or {}
        search = ", ".join(f"{k}={p[k]!r}" for k in ("length", "beam", "mode") if k in p)
        return (f"{len(self.neurons)} neurons, {explained} explained, {len(self.concept_names)} concepts"
                + (f", {search}" if search else ""))

    # ----- file
    def save(self, path: Union[str, "os.PathLike[str]"], *, data: bool = True) -> Path:
        """Write the result to one ``.npz`` file (module docstring: a JSON header
        and the search's arrays; no pickle) and return its path.

        data: also write :attr:`activations` and :attr:`labels` where attached
        (so that a loaded result draws its report's histograms)."""
        path = Path(path)
        names = [str(x) for x in self.concept_names]
        n = self.num_samples if self.num_samples is not None else (
            None if self.activations is None else int(np.shape(self.activations)[0]))
        k = self.num_neurons if self.num_neurons is not None else (
            None if self.activations is None else int(np.shape(self.activations)[1]))
        if n is None:
            raise ValueError("InvertResult.save: num_samples is unknown (no activations attached and "
                             "num_samples is None)")
        params = dict(self.params)
        check_json(params, _PARAMS, "InvertResult.save", "params")
        m = len(self.neurons)
        t = max([len(r.top) for r in self.neurons], default=0)
        a = max([e.length for r in self.neurons for e in r.top], default=0)
        codes = np.full((m, t, a), -1, np.int64)
        ops = np.full((m, t, a), -1, np.int64)
        lengths = np.zeros((m, t), np.int64)
        n1 = np.zeros((m, t), np.int64)
        auc = np.full((m, t), np.nan)
        pvalue = np.full((m, t), np.nan)
        status = np.zeros(m, np.int64)
        for i, r in enumerate(self.neurons):
            if r.note not in _NOTE_STATUS:
                raise ValueError(f"InvertResult.save: neuron {r.neuron} has note {r.note!r}; expected one of "
                                 f"{sorted(_NOTE_STATUS)}")
            status[i] = _NOTE_STATUS[r.note]
            for b, e in enumerate(r.top):
                lengths[i, b], n1[i, b], auc[i, b], pvalue[i, b] = e.length, e.n_inside, e.auc, e.p_value
                codes[i, b, :e.length] = [2 * c + int(g) for c, g in zip(e.concepts, e.negated)]
                ops[i, b, 1:e.length] = [0 if op == "AND" else 1 for op, _, _ in e.terms[1:]]
        arrays: Dict[str, np.ndarray] = {
            "codes": codes, "ops": ops, "neurons": np.array([r.neuron for r in self.neurons], np.int64),
            "status": status, "count": np.array([len(r.top) for r in self.neurons], np.int64),
            "lengths": lengths, "n1": n1, "auc": auc, "pvalue": pvalue,
            "evaluations": np.array([r.evaluations for r in self.neurons], np.int64)}
        acts_dtype = None
        if data and self.activations is not None:
            acts = np.asarray(self.activations)
            acts_dtype = "float64" if acts.dtype == np.float64 else "float32"
            arrays["activations"] = acts.astype(acts_dtype, copy=False)
        with_labels = bool(data and self.labels is not None)
        if with_labels:
            arrays["labels"] = np.asarray(self.labels, dtype=bool)
        header = {"format": _FORMAT, "version": _VERSION, "concept_names": names, "params": params,
                  "num_samples": int(n), "num_neurons": None if k is None else int(k),
                  "activations": acts_dtype, "labels": with_labels}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "InvertResult":
        """Read a file written by :meth:`save`, checked against its schema (module
        docstring): every array's dtype, shape and range, every header key, and
        that the formulas are well formed (atoms, operators, padding); ValueError
        naming the file and the field otherwise."""
        path = Path(path)
        h, a = load_npz(path, _FORMAT, _VERSION, "INVERT result", _HEADER, _file_arrays)
        _check_rows(path, a)
        names = list(h["concept_names"])
        n = h["num_samples"]
        t = a["lengths"].shape[1]
        neurons = [neuron_result(a, i, int(j), names, n, t) for i, j in enumerate(a["neurons"])]
        return cls(neurons, names, dict(h["params"]), activations=a.get("activations"),
                   labels=a.get("labels"), num_samples=n, num_neurons=h["num_neurons"])
