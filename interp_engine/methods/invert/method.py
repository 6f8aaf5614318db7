"""INVERT (Bykov et al., NeurIPS 2023; reference code lapalap/invert, v1.1): label
each neuron with the logical formula of concepts whose samples its activations
separate best, scored by AUC, with a Mann-Whitney significance test.

Semantics (docs/algorithms.md §3; docs/invert.md):

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

import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ...engine.checks import INT32_MAX, check_device, check_num_threads, check_positive_int, describe
from ...engine.rank import (activations_array, beam_search, check_fraction, check_neurons, check_pvalue_method,
                            packed_labels)
from .result import MODES, InvertResult, neuron_result

__all__ = ["Invert"]

_POOLINGS = ("mean", "max")
_SEARCH = ("length", "beam", "min_fraction", "max_fraction", "mode", "pvalue_method")


class Invert:
    """INVERT explanations of neurons by concept formulas (see the module docstring).

    ``Invert(model, layer, **settings).explain(data)`` explains the neurons of a
    layer of a torch model on a dataset; ``Invert(**settings).explain(activations,
    labels)`` explains the columns of an activation matrix (numpy alone).

    Args:
        model: a ``torch.nn.Module`` (call ``model.eval()`` first), or None for the
            array path.
        layer: the submodule name, as in ``model.named_modules()`` (with ``model``).
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
        pooling: ``"mean"`` or ``"max"`` over the spatial positions of the layer's output
            (model path; linear and token layers as the capture adapters read them).
        batch_size, num_workers, device: data collection (model path): images per
            forward, DataLoader workers, where the model runs (default: where its
            parameters are).

    Every setting is keyword-only and checked here (ValueError / TypeError naming it).
    """

    def __init__(self, model: Any = None, layer: Optional[str] = None, *, length: int = 3, beam: int = 10,
                 min_fraction: float = 0.0, max_fraction: float = 0.5, mode: str = "positive",
                 num_threads: Optional[int] = None, pvalue_method: str = "auto", pooling: str = "mean",
                 batch_size: int = 64, num_workers: int = 0, device: Any = None):
        if model is None and layer is not None:
            raise ValueError(f"layer={layer!r} needs a model: Invert(model, layer, ...); without a model, "
                             "explain takes activations")
        if model is not None:
            if isinstance(model, (int, float, np.number, str, bytes)):
                raise TypeError(f"model must be a torch.nn.Module (the settings are keyword-only: "
                                f"Invert(length=3)); got {describe(model)}")
            if layer is None:
                raise ValueError("layer is required with a model: Invert(model, layer, ...)")
            if not isinstance(layer, str):
                raise TypeError(f"layer must be a module name (str); got {type(layer).__name__}")
            from ...capture import find_module

            find_module(model, layer)  # TypeError / ValueError naming the layer and close matches
        self.model = model
        self.layer = layer
        self.length = check_positive_int(length, "length", minimum=1, maximum=INT32_MAX)
        self.beam = check_positive_int(beam, "beam", minimum=1, maximum=INT32_MAX)
        self.min_fraction = check_fraction(min_fraction, "min_fraction")
        self.max_fraction = check_fraction(max_fraction, "max_fraction")
        if self.min_fraction > self.max_fraction:
            raise ValueError(f"min_fraction must be <= max_fraction; got min_fraction={min_fraction}, "
                             f"max_fraction={max_fraction}")
        if not isinstance(mode, str) or mode not in MODES:
            raise (ValueError if isinstance(mode, str) else TypeError)(
                f"mode must be 'positive' or 'negative'; got {repr(mode) if isinstance(mode, str) else describe(mode)}")
        self.mode = mode
        self.pvalue_method = check_pvalue_method(pvalue_method, "pvalue_method")
        self.num_threads = check_num_threads(num_threads)
        if not isinstance(pooling, str) or pooling not in _POOLINGS:
            raise (ValueError if isinstance(pooling, str) else TypeError)(
                f"pooling must be 'mean' or 'max'; got {pooling!r}")
        self.pooling = pooling
        self.batch_size = check_positive_int(batch_size, "batch_size", minimum=1)
        self.num_workers = check_positive_int(num_workers, "num_workers", minimum=0)
        self.device = device if device is None else check_device(device)
        self._device_arg = device

    def __repr__(self) -> str:
        where = f"layer={self.layer!r}, " if self.layer is not None else ""
        return (f"Invert({where}length={self.length}, beam={self.beam}, min_fraction={self.min_fraction}, "
                f"max_fraction={self.max_fraction}, mode={self.mode!r}, "
                f"pvalue_method={self.pvalue_method!r})")

    @property
    def params(self) -> Dict[str, Any]:
        """The search parameters (recorded in every result)."""
        return {"length": self.length, "beam": self.beam, "min_fraction": self.min_fraction,
                "max_fraction": self.max_fraction, "mode": self.mode,
                "pvalue_method": self.pvalue_method}

    def _settings(self) -> Dict[str, Any]:
        return dict(self.params, num_threads=self.num_threads or None, pooling=self.pooling,
                    batch_size=self.batch_size, num_workers=self.num_workers, device=self._device_arg)

    def explain(self, data: Any, labels: Any = None, concept_names: Optional[Sequence[str]] = None, *,
                neurons: Optional[Iterable[int]] = None, top: Optional[int] = 1,
                length: Optional[int] = None, beam: Optional[int] = None,
                min_fraction: Optional[float] = None, max_fraction: Optional[float] = None,
                mode: Optional[str] = None, pvalue_method: Optional[str] = None) -> InvertResult:
        """Explain neurons by concept formulas.

        ``length``, ``beam``, ``min_fraction``, ``max_fraction``, ``mode`` and
        ``pvalue_method``, when given, override the settings of this object for
        this call.

        Args:
            data: without a model, the activations: (N, K) float array (numpy or
                torch; float16/bfloat16/float32/float64), one scalar per sample and
                neuron (e.g. pooled conv channels); NaN is rejected (ValueError
                naming the neuron and the sample).  With a model (``Invert(model,
                layer)``), the images: a :class:`~interp_engine.data.BrodenDataset`
                (or a DataLoader over one), a torch Dataset (batched with
                ``batch_size``, in order), or any iterable of batches as
                :func:`~interp_engine.capture.iter_activations` takes (tensors,
                (input, ...) tuples, dicts with ``"image"``); the activations are
                the layer's output pooled by ``pooling``, one row per image, and the
                forward stops after the layer.
            labels: (N, C) boolean concept labels (0/1 integers accepted), or, without
                a model, a PackedBits of shape (C, N); required unless the data are
                Broden, whose labels are then "label present in the image": any pixel
                of any pixel-category map, or an image-level label, for labels
                1..num_labels-1 (names from ``label_names``; unnamed numbers
                ``"label<k>"``).  A concept with no positive sample (or no negative
                one) can never make an admissible formula change and is never chosen.
            concept_names: C names (default Broden's label names, else ``"c0", "c1", ...``).
            neurons: column indices to explain (default all K), in the order wanted.
            top: how many formulas per neuron to return in ``top`` (1..beam; None = the
                whole final beam).

        Returns:
            An :class:`InvertResult` with one :class:`NeuronExplanation` per neuron and
            the activations searched attached (with a model: float32, and the labels).
        """
        given = {"length": length, "beam": beam, "min_fraction": min_fraction, "max_fraction": max_fraction,
                 "mode": mode, "pvalue_method": pvalue_method}
        overrides = {key: v for key, v in given.items() if v is not None}
        if overrides:
            other = Invert(**dict(self._settings(), **overrides))
            other.model, other.layer = self.model, self.layer
            return other.explain(data, labels, concept_names, neurons=neurons, top=top)
        if self.model is None:
            res = self._search(data, labels, concept_names, neurons, top)
        else:
            from .collect import collect

            acts, lab, names = collect(self.model, self.layer, data, labels, concept_names, pooling=self.pooling,
                                       batch_size=self.batch_size, num_workers=self.num_workers,
                                       device=self.device)
            res = self._search(acts, lab, names, neurons, top)
            res.labels = lab
        return res

    def _search(self, activations: Any, labels: Any, concept_names: Optional[Sequence[str]],
                neurons: Optional[Iterable[int]], top: Optional[int]) -> InvertResult:
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
        idx = check_neurons(neurons, k)
        if top is None:
            top_n = self.beam
        else:
            top_n = check_positive_int(top, "top", minimum=1)
            if top_n > self.beam:
                raise ValueError(f"top must be <= beam ({self.beam}); got {top}")
        out = beam_search(acts, pb, length=self.length, beam=self.beam, min_fraction=self.min_fraction,
                          max_fraction=self.max_fraction, negative=self.mode == "negative", neurons=idx,
                          pvalues=True, pvalue_method=self.pvalue_method, num_threads=self.num_threads)
        results = [neuron_result(out, i, j, names, n, top_n) for i, j in enumerate(idx)]
        return InvertResult(results, names, self.params, activations=acts, num_samples=n, num_neurons=k)

    @classmethod
    def from_model(cls, model: Any, layer: str, data: Any, *, labels: Any = None,
                   concept_names: Optional[Sequence[str]] = None, pooling: str = "mean",
                   batch_size: int = 64, num_workers: int = 0, device: Any = None,
                   length: int = 3, beam: int = 10, min_fraction: float = 0.0,
                   max_fraction: float = 0.5, mode: str = "positive",
                   neurons: Optional[Iterable[int]] = None, top: Optional[int] = 1,
                   num_threads: Optional[int] = None, pvalue_method: str = "auto") -> InvertResult:
        """Deprecated: ``Invert(model, layer, **settings).explain(data, labels, concept_names,
        neurons=..., top=...)``, which this calls."""
        warnings.warn("Invert.from_model is deprecated; use Invert(model, layer, **settings).explain(data)",
                      DeprecationWarning, stacklevel=2)
        inv = cls(model, layer, length=length, beam=beam, min_fraction=min_fraction, max_fraction=max_fraction,
                  mode=mode, num_threads=num_threads, pvalue_method=pvalue_method, pooling=pooling,
                  batch_size=batch_size, num_workers=num_workers, device=device)
        return inv.explain(data, labels, concept_names, neurons=neurons, top=top)
