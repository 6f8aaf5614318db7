"""INVERT (Bykov et al., NeurIPS 2023; reference code lapalap/invert, v1.1): label
each neuron with the logical formula of concepts whose samples its activations
separate best, scored by AUC, with a Mann-Whitney significance test.

Semantics (shared/ALGORITHMS.md section 3; docs/invert.md):

* Score of a set of samples ``phi``: ``AUC(phi) = P(a_i > a_j | i in phi,
  j not in phi)``, ties counting 1/2 (U / (n1 n0)).  Computed exactly from the
  neuron's midranks, compared as exact rationals.
* Atoms: every concept ``c`` and its negation ``NOT c``.  A formula is a
  left-to-right chain ``a_0 op_1 a_1 ... op_{L-1} a_{L-1}`` with op AND/OR and
  NOT only on atoms: ``((a OR b) AND NOT c)``.
* Admissible formulas: ``0 < |phi| < N`` and ``min_fraction <= |phi| / N <=
  max_fraction``.
* Beam search (as the reference): the initial beam is the best ``beam``
  admissible atoms; for lengths 2..``length``, every beam formula is extended
  by every atom (all 2C, admissible or not) with AND and with OR; the
  admissible extensions join the pool together with the current beam (so
  shorter formulas stay), and the best ``beam`` *distinct sets* of the pool
  form the next beam.
* Order (deterministic): higher AUC first (``mode="negative"``: lower AUC
  first); equal AUCs (exactly equal rationals): fewer atoms first; then the
  smaller sequence ``(code_0, op_1, code_1, ...)`` with ``code = 2 * concept +
  negated`` and AND < OR (lower concept index first, a concept before its
  negation, AND before OR).
* Duplicates: formulas with the same set of samples (``a OR b`` and ``b OR
  a``, ``phi AND c`` when ``c`` contains ``phi``, or any formulas that coincide
  on the data) are kept once: the first in the order above.  Extensions that
  leave the formula's set unchanged are therefore not scored at all.

The reference (``Invert.explain_representation`` in ``invert/explainer.py``)
scores every extension with torchmetrics' float32 ``binary_auroc`` (which
passes activations through a sigmoid when any lies outside [0, 1]), also
those whose set is empty, all samples or the extended formula's own set, and
keeps duplicates: the same set can fill several places of its beam (sympy
merges ``a AND a`` into ``a``, but ``a AND b`` found from ``a`` and from ``b``
are two entries).  Its beam then extends fewer distinct formulas at the next
length.  Differences from the reference, on purpose: each set once (above);
exact AUCs and the order above, where the reference sorts float32 AUCs with
Python's stable sort (equal AUCs keep insertion order); ``length`` is the
number of atoms, where the reference labels an entry with its loop's length.
With the same data, lengths 1 and 2 give the same best formula as the
reference; at length 3 the two can differ, and then ours has the higher AUC
(docs/invert.md gives the measurement).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..._loader import core as _core
from ...engine._arrays import INT32_MAX, bool_array, check_num_threads, check_positive_int, check_real, describe
from ...engine.rank import activations_array, check_pvalue_method, packed_labels

__all__ = ["Invert", "Explanation", "NeuronExplanation", "InvertResult", "format_formula"]

MODES = ("positive", "negative")
_STATUS_NOTES = {0: "", 1: "constant activations", 2: "no admissible formula"}

Term = Tuple[Optional[str], str, bool]  # (op or None for the first atom, concept name, negated)


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


@dataclass
class InvertResult:
    """Explanations of several neurons (a sequence of :class:`NeuronExplanation`).

    neurons:       the explanations, in the order of the neurons asked for.
    concept_names: the C concept names.
    params:        the search parameters.
    activations:   the (N, K) activations searched (numpy, as given or converted), or None.
    labels:        the (N, C) bool concept labels (from_model), or None.
    """

    neurons: List[NeuronExplanation]
    concept_names: List[str]
    params: Dict[str, Any]
    activations: Optional[np.ndarray] = field(default=None, repr=False)
    labels: Optional[np.ndarray] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.neurons)

    def __iter__(self) -> Iterator[NeuronExplanation]:
        return iter(self.neurons)

    def __getitem__(self, i: int) -> NeuronExplanation:
        return self.neurons[i]

    def to_records(self) -> List[Dict[str, Any]]:
        """One dict per neuron (for CSV): neuron, formula, length, auc, differentiability,
        concept_fraction, p_value, note."""
        return [{"neuron": r.neuron, "formula": r.formula or "", "length": r.length, "auc": r.auc,
                 "differentiability": r.differentiability, "concept_fraction": r.concept_fraction,
                 "p_value": r.p_value, "note": r.note} for r in self.neurons]


def _check_fraction(value: Any, name: str) -> float:
    v = check_real(value, name, allow_nan=True, what="a number in [0, 1]")
    if not (0.0 <= v <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return v


class Invert:
    """INVERT explanations of neurons by concept formulas (see the module docstring).

    Args:
        length: maximum number of atoms of a formula (>= 1).
        beam: beam size B (>= 1).
        min_fraction, max_fraction: admissible fraction of samples where a formula holds,
            in [0, 1], min <= max (reference defaults 0 and 0.5; the paper's alpha is
            ``min_fraction``).
        mode: ``"positive"``: formulas with the highest AUC (the neuron fires more inside);
            ``"negative"``: the lowest AUC (the neuron fires less inside), as the reference.
        pvalue_method: how ``p_value`` is computed, as scipy's ``mannwhitneyu(method=...)``:
            ``"auto"`` (default: scipy's default, which the reference's ``get_p_value``
            uses: exact when the formula or its complement holds for at most 8 samples
            and no two of the neuron's activations are equal, else asymptotic),
            ``"asymptotic"`` (normal approximation, tie and continuity corrected) or
            ``"exact"`` (exact distribution of U, not corrected for ties; refused with
            ValueError for groups too large, see ``engine.rank.mannwhitney_pvalues``).
        num_threads: threads of the core (None: all cores).
    """

    def __init__(self, length: int = 3, beam: int = 10, min_fraction: float = 0.0,
                 max_fraction: float = 0.5, mode: str = "positive",
                 num_threads: Optional[int] = None, pvalue_method: str = "auto"):
        self.length = check_positive_int(length, "length", minimum=1, maximum=INT32_MAX)
        self.beam = check_positive_int(beam, "beam", minimum=1, maximum=INT32_MAX)
        self.min_fraction = _check_fraction(min_fraction, "min_fraction")
        self.max_fraction = _check_fraction(max_fraction, "max_fraction")
        if self.min_fraction > self.max_fraction:
            raise ValueError(f"min_fraction must be <= max_fraction; got min_fraction={min_fraction}, "
                             f"max_fraction={max_fraction}")
        if not isinstance(mode, str) or mode not in MODES:
            raise (ValueError if isinstance(mode, str) else TypeError)(
                f"mode must be 'positive' or 'negative'; got {repr(mode) if isinstance(mode, str) else describe(mode)}")
        self.mode = mode
        self.pvalue_method = check_pvalue_method(pvalue_method, "pvalue_method")
        self.num_threads = check_num_threads(num_threads)

    def __repr__(self) -> str:
        return (f"Invert(length={self.length}, beam={self.beam}, min_fraction={self.min_fraction}, "
                f"max_fraction={self.max_fraction}, mode={self.mode!r}, "
                f"pvalue_method={self.pvalue_method!r})")

    @property
    def params(self) -> Dict[str, Any]:
        return {"length": self.length, "beam": self.beam, "min_fraction": self.min_fraction,
                "max_fraction": self.max_fraction, "mode": self.mode,
                "pvalue_method": self.pvalue_method}

    def explain(self, activations: Any, labels: Any, concept_names: Optional[Sequence[str]] = None, *,
                neurons: Optional[Iterable[int]] = None, top: Optional[int] = 1,
                length: Optional[int] = None, beam: Optional[int] = None,
                min_fraction: Optional[float] = None, max_fraction: Optional[float] = None,
                mode: Optional[str] = None, pvalue_method: Optional[str] = None) -> InvertResult:
        """Explain neurons by concept formulas.

        ``length``, ``beam``, ``min_fraction``, ``max_fraction``, ``mode`` and
        ``pvalue_method``, when given, override the parameters of this object for
        this call.

        Args:
            activations: (N, K) float array (numpy or torch; float16/bfloat16/float32/
                float64): one scalar per sample and neuron (e.g. pooled conv channels).
                NaN is rejected (ValueError naming the neuron and the sample).
            labels: (N, C) boolean concept labels (0/1 integers accepted), or a
                PackedBits of shape (C, N).  A concept with no positive sample (or no
                negative one) can never make an admissible formula change and is never
                chosen.
            concept_names: C names (default ``"c0", "c1", ...``).
            neurons: column indices to explain (default all K), in the order wanted.
            top: how many formulas per neuron to return in ``top`` (1..beam; None = the
                whole final beam).

        Returns:
            An :class:`InvertResult` with one :class:`NeuronExplanation` per neuron.
        """
        given = {"length": length, "beam": beam, "min_fraction": min_fraction, "max_fraction": max_fraction,
                 "mode": mode, "pvalue_method": pvalue_method}
        overrides = {key: v for key, v in given.items() if v is not None}
        if overrides:
            other = Invert(**dict(self.params, **overrides), num_threads=self.num_threads or None)
            return other.explain(activations, labels, concept_names, neurons=neurons, top=top)
        acts = activations_array(activations)
        n, k = acts.shape
        pb = packed_labels(labels, n)
        c = len(pb)
        if c < 1:
            raise ValueError("labels must have at least one concept column; got 0")
        if concept_names is None:
            names = [f"c{i}" for i in range(c)]
        else:
            if isinstance(concept_names, (str, bytes)) or not hasattr(concept_names, "__iter__"):
                raise TypeError(f"concept_names must be a sequence of strings; got {describe(concept_names)}")
            names = [str(x) for x in concept_names]
            if len(names) != c:
                raise ValueError(f"concept_names must have one name per concept column: expected {c}; "
                                 f"got {len(names)}")
        if neurons is None:
            idx = list(range(k))
        else:
            if isinstance(neurons, (int, np.integer)) and not isinstance(neurons, bool):
                neurons = [neurons]
            if isinstance(neurons, (str, bytes)) or not hasattr(neurons, "__iter__"):
                raise TypeError(f"neurons must be an integer or a sequence of integers; got {describe(neurons)}")
            idx = []
            for j in neurons:
                if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
                    raise TypeError(f"neurons must be integers; got {describe(j)}")
                if not 0 <= j < k:
                    raise ValueError(f"neurons: index {j} out of range [0, {k}) (K = {k} neurons)")
                idx.append(int(j))
        if top is None:
            top_n = self.beam
        else:
            top_n = check_positive_int(top, "top", minimum=1)
            if top_n > self.beam:
                raise ValueError(f"top must be <= beam ({self.beam}); got {top}")
        index = _core.RankConceptIndex(pb.words, n, self.num_threads)
        out = _core._rank_beam_search(acts, index, self.length, self.beam, self.min_fraction,
                                      self.max_fraction, self.mode == "negative", True, idx,
                                      self.num_threads, self.pvalue_method)
        results = [self._neuron_result(out, i, j, names, n, top_n) for i, j in enumerate(idx)]
        return InvertResult(results, names, self.params, activations=acts)

    @staticmethod
    def _neuron_result(out: Dict[str, np.ndarray], i: int, neuron: int, names: List[str], n: int,
                       top_n: int) -> NeuronExplanation:
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
                                 note=_STATUS_NOTES.get(status, ""),
                                 evaluations=int(out["evaluations"][i]))

    @classmethod
    def from_model(cls, model: Any, layer: str, data: Any, *, labels: Any = None,
                   concept_names: Optional[Sequence[str]] = None, pooling: str = "mean",
                   batch_size: int = 64, num_workers: int = 0, device: Any = None,
                   length: int = 3, beam: int = 10, min_fraction: float = 0.0,
                   max_fraction: float = 0.5, mode: str = "positive",
                   neurons: Optional[Iterable[int]] = None, top: Optional[int] = 1,
                   num_threads: Optional[int] = None, pvalue_method: str = "auto") -> InvertResult:
        """Explain the neurons of ``layer`` of a torch model on a dataset.

        Activations are collected with :func:`interp_engine.capture.pooled_activations`
        (``pooling="mean"`` or ``"max"`` over the spatial positions; linear and token
        layers as the capture adapters read them), one row per image in data order.

        Args:
            model: a ``torch.nn.Module`` (call ``model.eval()`` first).
            layer: the submodule name, as in ``model.named_modules()``.
            data: a :class:`~interp_engine.data.BrodenDataset` (or a DataLoader over one):
                concept labels are then, unless ``labels`` is given, "label present in the
                image": any pixel of any pixel-category map, or an image-level label, for
                labels 1..num_labels-1 (names from ``label_names``; unnamed numbers
                ``"label<k>"``); or a torch Dataset (batched with ``batch_size``), or
                any iterable of batches as :func:`~interp_engine.capture.iter_activations`
                takes (tensors, (input, ...) tuples, dicts with ``"image"``).
            labels: a (N, C) boolean matrix, one row per image in data order (needed
                unless ``data`` is Broden).
            concept_names: C names (default: Broden's label names, else ``c0, c1, ...``).
            pooling, batch_size, num_workers, device: data collection.
            length, beam, min_fraction, max_fraction, mode, num_threads, pvalue_method: as
                in :class:`Invert`; neurons, top: as in :meth:`explain`.

        Returns:
            The :class:`InvertResult` of :meth:`explain`, with ``activations`` (N, K)
            float32 and ``labels`` (N, C) bool attached.
        """
        inv = cls(length=length, beam=beam, min_fraction=min_fraction, max_fraction=max_fraction,
                  mode=mode, num_threads=num_threads, pvalue_method=pvalue_method)
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max'; got {pooling!r}")
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a module name (str); got {type(layer).__name__}")
        import torch

        from ...capture import pooled_activations

        batch_size = check_positive_int(batch_size, "batch_size", minimum=1)
        broden = _broden_dataset(data)
        if broden is not None and data is broden:
            from ...data import broden_loader

            batches: Any = broden_loader(broden, batch_size=batch_size, num_workers=num_workers)
        elif isinstance(data, torch.utils.data.Dataset) and not isinstance(
                data, torch.utils.data.IterableDataset):
            batches = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                                  num_workers=num_workers)
        else:
            batches = data
        collect = labels is None
        if collect and broden is None:
            raise ValueError("labels is required unless data is a BrodenDataset (or a DataLoader over "
                             f"one); got data of type {type(data).__name__}")
        parts: List[np.ndarray] = []

        def recording(it: Iterable[Any]) -> Iterator[Any]:
            for batch in it:
                if collect:
                    parts.append(_present_labels(batch, broden.num_labels))
                yield batch

        feats = pooled_activations(model, [layer], recording(batches), pooling=pooling, device=device)
        acts = feats[layer].numpy()
        if collect:
            lab = np.concatenate(parts, 0)[:, 1:]
            names = [nm if nm else f"label{i}" for i, nm in enumerate(broden.label_names)][1:]
            if concept_names is not None:
                names = list(concept_names)
        else:
            lab = bool_array(labels, "labels", ndim=2, shape_hint="(N images, C concepts)")
            if lab.shape[0] != acts.shape[0]:
                raise ValueError(f"labels must have one row per image: the data gave {acts.shape[0]} "
                                 f"images; labels has shape {tuple(lab.shape)}")
            names = list(concept_names) if concept_names is not None else None
        res = inv.explain(acts, lab, names, neurons=neurons, top=top)
        res.labels = lab
        return res


def _broden_dataset(data: Any) -> Any:
    """The BrodenDataset behind ``data`` (itself or a DataLoader's dataset), else None."""
    try:
        from ...data.broden import BrodenDataset
    except ImportError:  # pragma: no cover - torch or Pillow missing
        return None
    if isinstance(data, BrodenDataset):
        return data
    ds = getattr(data, "dataset", None)
    return ds if isinstance(ds, BrodenDataset) else None


def _present_labels(batch: Any, num_labels: int) -> np.ndarray:
    """(B, num_labels) bool: label present anywhere in the image (pixel maps or image-level)."""
    if not isinstance(batch, dict) or "pixel_labels" not in batch or "image_labels" not in batch:
        raise ValueError("a Broden batch must be a dict with 'pixel_labels' and 'image_labels'; got "
                         f"{describe(batch) if not isinstance(batch, dict) else list(batch)}")
    pix = np.asarray(batch["pixel_labels"]).reshape(len(batch["pixel_labels"]), -1)
    img = np.asarray(batch["image_labels"]).reshape(pix.shape[0], -1)
    b = pix.shape[0]
    out = np.zeros((b, num_labels), dtype=bool)
    for arr in (pix, img):
        if arr.size:
            rows = np.repeat(np.arange(b), arr.shape[1])
            out[rows, arr.reshape(-1).astype(np.int64)] = True
    out[:, 0] = False
    return out
