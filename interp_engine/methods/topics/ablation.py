"""Semantic topic supervision (Dong et al., CVPR 2017): topics, the
interpretive loss, prediction-difference maximization and neuron editing.

Semantics (shared/ALGORITHMS.md section 6; docs/topics.md):

* Topics: a topic vector ``s`` (T proportions summing to 1) per sample, from
  LDA over human descriptions (:func:`extract_topics`, scikit-learn's
  ``LatentDirichletAllocation``) or given by the user
  (:func:`validate_topic_matrix`).
* Interpretive loss (:class:`InterpretiveLoss`):
  ``weight * || W_a ReLU(W_t h + b_t) + b_a - s ||^2`` on the pooled features
  ``h`` of a layer, mean over the batch, added to the task loss.
* Prediction-difference maximization (our formulation; the released code
  lacks it; :func:`prediction_difference`): for neuron (channel) ``d`` of a
  layer and target ``t`` (a topic, a class, or any probability the user
  computes from the model's output)::

      score[d, t] = mean over the samples i where d is active of
                    p_t(x_i) - p_t(x_i with d ablated)

  ``d`` is active on sample ``i`` when its activation is above
  ``active_threshold`` (default 0): for a spatial map, when its spatial
  maximum is.  Ablation sets the whole channel (every position) to 0
  (``"zero"``) or to its mean over the data and positions (``"mean"``, one
  extra pass).  A neuron's interpretation is its ``top_k`` targets by score;
  its score is the best one's.  A neuron never active has NaN scores and no
  targets.
* Editing (:func:`edit_neurons`, :func:`explain_edit`): multiply channels of a
  layer by given scales inside a ``with`` block (0 suppresses, > 1
  amplifies) and show the prediction before and after.

Imports without torch (:func:`extract_topics`, :func:`validate_topic_matrix`
need numpy, and scikit-learn for LDA); the rest imports torch when called
(:class:`InterpretiveLoss` and :func:`fit_topic_head` on first access).
"""
from __future__ import annotations

import csv
import importlib.util
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..engine._arrays import check_dense_tensor, check_device, check_real, describe

__all__ = ["Topics", "extract_topics", "validate_topic_matrix",
           "PredictionDifference", "prediction_difference", "NeuronEdit", "edit_neurons", "EditEffect",
           "explain_edit", "ABLATIONS", "TARGETS"]

ABLATIONS = ("zero", "mean")
TARGETS = ("topics", "classes")
_TORCH_NAMES = ("InterpretiveLoss", "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS")
if importlib.util.find_spec("torch") is not None:  # `import *` must not fail without torch
    __all__ += list(_TORCH_NAMES)


def __getattr__(name: str) -> Any:
    # the torch module is loaded on first access, so that this module imports without torch
    if name in _TORCH_NAMES[:2]:
        from . import _interpretive

        return getattr(_interpretive, name)
    if name == "FASHION_MNIST_DESCRIPTIONS":  # interp_engine.data imports torch (the Broden reader)
        from ..data.fashion_text import FASHION_MNIST_DESCRIPTIONS

        return FASHION_MNIST_DESCRIPTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- topics

def validate_topic_matrix(matrix: Any, *, n_rows: Optional[int] = None, n_topics: Optional[int] = None,
                          name: str = "topics", atol: float = 1e-3) -> np.ndarray:
    """Check a topic matrix and return it as float64 (N, T).

    Accepted: a numpy array, torch tensor or nested sequence of real numbers,
    2-dimensional with N >= 1 rows (samples) and T >= 1 columns (topics),
    finite, non-negative, each row summing to 1 within ``atol`` (absolute;
    default 1e-3, so float16-rounded proportions pass).  Rows are not
    renormalized.

    Raises:
        TypeError: not numeric (strings, bool, complex).
        ValueError: wrong number of dimensions, empty, a row or column count
            other than ``n_rows`` / ``n_topics`` when given, NaN/inf, negative
            entries, rows not summing to 1; the message names ``name``, what
            was expected and what arrived (the first offending row).
    """
    atol = check_real(atol, "atol", minimum=0.0, allow_inf=False, what="a finite number >= 0")
    if hasattr(matrix, "detach") and hasattr(matrix, "cpu"):  # a torch tensor
        check_dense_tensor(matrix, name)
        arr = matrix.detach().cpu().double().numpy() if matrix.is_floating_point() or \
            not matrix.dtype.is_complex and str(matrix.dtype) != "torch.bool" else None
        if arr is None:
            raise TypeError(f"{name} must hold real numbers, got {describe(matrix)}")
    else:
        try:
            arr = np.asarray(matrix)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a 2-D array of topic proportions, got "
                            f"{type(matrix).__name__} ({exc})") from None
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers (topic proportions), got {describe(matrix)}"
                            + (f" of {arr.dtype}" if not isinstance(matrix, np.ndarray) else ""))
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (samples, topics), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one topic, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows (one per sample), got shape {arr.shape}")
    if n_topics is not None and arr.shape[1] != n_topics:
        raise ValueError(f"{name} must have n_topics={n_topics} columns, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} must be finite, found NaN or inf (first in row {r})")
    if (arr < 0).any():
        r, c = (int(v) for v in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name} must be non-negative topic proportions, found {arr[r, c]!r} at row {r}, "
                         f"column {c}")
    sums = arr.sum(1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} rows must sum to 1 (within {atol}), row {r} sums to {sums[r]:.6g} "
                         f"({int(off.sum())} of {arr.shape[0]} rows off)")
    return arr


@dataclass
class Topics:
    """A topic model's output.

    Attributes:
        matrix: float64 (N, T), the topic vector of every description (rows
            sum to 1).
        top_words: per topic, its ``n_top_words`` most probable words, most
            probable first (empty lists for a user-given matrix without words).
        word_weights: per topic, the probabilities of those words in the topic.
        vocabulary: the words (LDA only; else empty).
        components: float64 (T, V) topic-word distributions (rows sum to 1),
            or None for a user-given matrix.
    """

    matrix: np.ndarray
    top_words: List[List[str]]
    word_weights: List[List[float]] = field(default_factory=list)
    vocabulary: List[str] = field(default_factory=list)
    components: Optional[np.ndarray] = None
    _vectorizer: Any = field(default=None, repr=False)
    _lda: Any = field(default=None, repr=False)

    @property
    def n_topics(self) -> int:
        return int(self.matrix.shape[1])

    def names(self, n_words: int = 3) -> List[str]:
        """A short name per topic: ``"t3: sole heel strap"`` (its first
        ``n_words`` words), or ``"t3"`` without words."""
        return [f"t{t}: " + " ".join(w[:n_words]) if w else f"t{t}"
                for t, w in enumerate(self.top_words or [[] for _ in range(self.n_topics)])]

    def transform(self, descriptions: Sequence[str]) -> np.ndarray:
        """Topic vectors float64 (M, T) of new descriptions under the fitted
        LDA (rows sum to 1).  ValueError for a user-given matrix (no model)."""
        if self._lda is None:
            raise ValueError("transform needs topics fitted by LDA (this Topics came from a user-given matrix)")
        docs = _check_texts(descriptions)
        return _normalize_rows(self._lda.transform(self._vectorizer.transform(docs)))

    def __repr__(self) -> str:
        return f"Topics(n_samples={self.matrix.shape[0]}, n_topics={self.n_topics}, top_words={self.names()})"


def _check_texts(descriptions: Any) -> List[str]:
    if isinstance(descriptions, (str, bytes)):
        raise TypeError("descriptions must be a sequence of str (one per sample) or an (N, T) topic "
                        "matrix, got a single str")
    docs = list(descriptions)
    if not docs:
        raise ValueError("descriptions must not be empty")
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise TypeError(f"descriptions[{i}] must be a str, got {type(d).__name__}")
    return docs


def _normalize_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return m / m.sum(1, keepdims=True)


def _looks_numeric(x: Any) -> bool:
    if isinstance(x, np.ndarray) or (hasattr(x, "detach") and hasattr(x, "dtype")):
        return True
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple, np.ndarray)):
        return True
    return False


def extract_topics(descriptions: Any, n_topics: Optional[int] = None, seed: int = 0, *,
                   n_top_words: int = 8, max_iter: int = 50, stop_words: Optional[str] = "english",
                   dedupe: bool = True, topic_words: Optional[Sequence[Sequence[str]]] = None,
                   atol: float = 1e-3) -> Topics:
    """Topic vectors of samples from their descriptions (LDA) or a given matrix.

    Args:
        descriptions: a sequence of N str (one document per sample), or an
            (N, T) topic matrix (numpy, torch, nested lists) used as is after
            :func:`validate_topic_matrix` (``atol``).
        n_topics: T; required for texts; for a matrix, its column count when
            given.
        seed: LDA's ``random_state`` (same texts and seed: same topics).
        n_top_words: words kept per topic.
        max_iter: LDA iterations (``learning_method="batch"``).
        stop_words: scikit-learn ``CountVectorizer``'s (``"english"`` or None).
        dedupe: fit LDA on the distinct documents only (each counted once)
            and give every sample its document's topic vector: identical
            documents (class descriptions shared by many images) would
            otherwise only reweight the fit, at a cost linear in N.
        topic_words: for a matrix, optional words per topic (for display).

    Returns:
        :class:`Topics`; ``matrix`` float64 (N, T), rows sum to 1.

    Raises:
        ImportError: texts given and scikit-learn is not installed.
        TypeError / ValueError: bad arguments (an empty corpus, a corpus
            without any word left after stop words, an invalid matrix).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    n_top_words = _check_int(n_top_words, "n_top_words")
    if _looks_numeric(descriptions):
        if n_topics is not None:
            n_topics = _check_int(n_topics, "n_topics")
        mat = validate_topic_matrix(descriptions, n_topics=n_topics, name="descriptions (a topic matrix)",
                                    atol=atol)
        words: List[List[str]] = []
        if topic_words is not None:
            words = [list(map(str, w)) for w in topic_words]
            if len(words) != mat.shape[1]:
                raise ValueError(f"topic_words must have one list per topic ({mat.shape[1]}), got {len(words)}")
        return Topics(matrix=mat, top_words=words)
    docs = _check_texts(descriptions)
    if n_topics is None:
        raise ValueError("n_topics is required when descriptions are texts")
    n_topics = _check_int(n_topics, "n_topics")
    max_iter = _check_int(max_iter, "max_iter")
    try:
        from sklearn.decomposition import LatentDirichletAllocation
        from sklearn.feature_extraction.text import CountVectorizer
    except ImportError as exc:
        raise ImportError("extract_topics needs scikit-learn for LDA (`pip install scikit-learn`), or pass "
                          f"an (N, T) topic matrix instead of texts. Import failed with: {exc}") from exc
    if dedupe:
        uniq, inverse = np.unique(np.asarray(docs, dtype=object).astype(str), return_inverse=True)
        fit_docs = list(uniq)
    else:
        fit_docs, inverse = docs, np.arange(len(docs))
    vec = CountVectorizer(stop_words=stop_words)
    try:
        counts = vec.fit_transform(fit_docs)
    except ValueError as exc:  # empty vocabulary
        raise ValueError(f"descriptions contain no words to model ({exc})") from None
    lda = LatentDirichletAllocation(n_components=n_topics, random_state=int(seed), learning_method="batch",
                                    max_iter=max_iter)
    doc_topic = _normalize_rows(lda.fit_transform(counts))
    vocab = [str(w) for w in vec.get_feature_names_out()]
    comp = _normalize_rows(lda.components_)
    order = np.argsort(-comp, axis=1, kind="stable")[:, :n_top_words]
    return Topics(matrix=doc_topic[np.asarray(inverse).reshape(-1)], top_words=[[vocab[j] for j in row] for row in order],
                  word_weights=[[float(comp[t, j]) for j in row] for t, row in enumerate(order)],
                  vocabulary=vocab, components=comp, _vectorizer=vec, _lda=lda)


# ----------------------------------------------------------------------------- prediction difference

@dataclass
class PredictionDifference:
    """The result of :func:`prediction_difference`.

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

    def to_csv(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write :meth:`table` as CSV (header row; NaN written as empty); returns the path."""
        p = Path(path)
        rows = self.table()
        fields = list(rows[0]) if rows else ["neuron", "active", "score"]
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return p

    def __repr__(self) -> str:
        active = int((self.counts > 0).sum())
        return (f"PredictionDifference(layer={self.layer!r}, targets={self.targets!r}, ablation={self.ablation!r}, "
                f"neurons={len(self)}, targets_count={len(self.target_names)}, samples={self.n_samples}, "
                f"ever_active={active})")


def _accumulate(sums: Any, counts: Any, drops: Any, active: Any) -> None:
    """``sums (R, T) += einsum("br,rbt->rt", active (B, R), drops (R, B, T))``
    and ``counts (R,) += active.sum(0)``: the masked accumulation of one chunk,
    as one batched float64 matrix product (``bmm`` of (R, 1, B) by (R, B, T);
    benchmarks/bench_topics.py compares it with an einsum, a per-neuron loop
    and numpy scatter / einsum)."""
    import torch

    a = active.t().to(torch.float64).unsqueeze(1)  # (R, 1, B)
    sums += torch.bmm(a, drops.to(torch.float64)).squeeze(1)
    counts += active.sum(0).to(counts.dtype)


def _top_k(scores: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per row of (K, T) float64 scores (NaN rows = never active): the top ``k``
    indices (stable descending: ties keep the lower index first) and values;
    -1 / NaN for NaN rows.  One vectorized stable ``np.argsort`` over all rows
    (faster than ``torch.sort(stable=True)`` on CPU: benchmarks/bench_topics.py);
    returns numpy int64 / float64 arrays."""
    s = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    s = np.asarray(s, np.float64)
    filled = np.where(np.isnan(s), -np.inf, s)
    idx = np.argsort(-filled, axis=1, kind="stable")[:, :k].astype(np.int64)
    vals = np.take_along_axis(filled, idx, 1)
    dead = np.isnan(s).all(1) if s.shape[1] else np.ones(len(s), bool)
    idx[dead] = -1
    vals[dead] = np.nan
    return idx, vals


def _batches(data: Any, batch_size: int) -> Iterable[Any]:
    import torch

    if isinstance(data, torch.Tensor):
        if data.dim() < 1 or len(data) == 0:
            raise ValueError(f"data must be a non-empty batch of inputs (N, ...), got {describe(data)}")
        return (data[i:i + batch_size] for i in range(0, len(data), batch_size))
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, Mapping)):
        raise TypeError(f"data must be a tensor of inputs (N, ...) or an iterable of batches (tensors, "
                        f"(input, ...) tuples or dicts with 'image'), got {type(data).__name__}")
    return data


def _probs_from_output(output: Any, where: str) -> Any:
    import torch

    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() != 2:
        raise TypeError(f'targets="classes" needs a model whose output is float logits (B, classes); {where} '
                        f"returned {describe(output)}; pass targets=callable to map the output to probabilities")
    return torch.softmax(output.float(), dim=1)


def _check_probs(p: Any, b: int, where: str) -> Any:
    import torch

    if not isinstance(p, torch.Tensor):
        try:
            p = torch.as_tensor(np.asarray(p))
        except (TypeError, ValueError):
            raise TypeError(f"{where} must return probabilities (B, T) as a tensor or array, got "
                            f"{type(p).__name__}") from None
    if not p.is_floating_point() or p.dim() != 2 or p.shape[0] != b or p.shape[1] == 0:
        raise ValueError(f"{where} must return float probabilities of shape ({b}, T) with T >= 1, got "
                         f"{describe(p)}")
    return p.float()


def _check_layer_output(out: Any, layer: str) -> Any:
    import torch

    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"layer {layer!r} has no neurons to ablate: its output must be a floating-point tensor "
                        f"(B, C) or (B, C, *spatial) with channels on axis 1, got {describe(out)}")
    if out.dim() < 2:
        raise ValueError(f"layer {layer!r} has no neurons to ablate: its output must be (B, C) or "
                         f"(B, C, *spatial) with channels on axis 1, got shape {tuple(out.shape)}")
    if out.shape[1] == 0:
        raise ValueError(f"layer {layer!r} has no neurons to ablate: its output has 0 channels "
                         f"(shape {tuple(out.shape)})")
    return out


def torch_cat(parts: List[Any]) -> Any:
    import torch

    return torch.cat(parts, 0)


def _set_channels(rep: Any, chans: Any, values: Any) -> Any:
    """``rep`` (R, B, C, *spatial), contiguous: channel ``chans[r]`` of copy r
    set to ``values[r]`` (in place); returns rep."""
    import torch

    r = rep.shape[0]
    view = rep.view(r, rep.shape[1], rep.shape[2], -1)
    view[torch.arange(r), :, chans] = values.to(rep.dtype)[:, None, None]
    return rep


class _Plan:
    """How one forward with ablations runs (a Sequential split or the whole model with hooks)."""

    def __init__(self, model: Any, layer: str, targets: Any, topic_fn: Optional[Callable[[Any], Any]],
                 topic_layer: Optional[str]) -> None:
        from torch import nn

        self.model, self.layer, self.targets = model, layer, targets
        self.topic_fn, self.topic_layer = topic_fn, topic_layer
        self.prefix = self.suffix = None
        names = list(model._modules) if isinstance(model, nn.Sequential) else []
        sequential = type(model).forward is nn.Sequential.forward and layer in names
        if sequential and targets == "topics":
            sequential = topic_layer in names and names.index(topic_layer) >= names.index(layer)
        if sequential:
            i = names.index(layer) + 1
            j = names.index(topic_layer) + 1 if targets == "topics" else len(names)
            self.prefix = nn.Sequential(*[model._modules[n] for n in names[:i]])
            self.suffix = nn.Sequential(*[model._modules[n] for n in names[i:j]])
        self.split = sequential
        # hook route: "expand" (the layer's output of the B samples is replicated R times inside the hook, so
        # only the modules after it run on R*B rows) is tried on the first chunk and checked against "replicate"
        # (the input replicated R times; always valid); None = not yet known
        self.expand_ok: Optional[bool] = None
        self.replicate_chunk: Optional[int] = None
        self._ablate: Optional[Tuple[Any, Any, int]] = None
        self._feats: Optional[Any] = None
        self._topic_out: Optional[Any] = None

    # -- the probabilities of the targets from the end of the forward
    def _finish(self, output: Any, topic_feats: Any, b: int) -> Any:
        if self.targets == "topics":
            return _check_probs(self.topic_fn(topic_feats), b, "topic_head")
        if self.targets == "classes":
            return _probs_from_output(output, "the model")
        return _check_probs(self.targets(output), b, "targets (the callable)")

    def clean(self, x: Any) -> Tuple[Any, Any]:
        """The layer's output (B, C, ...) and the clean probabilities (B, T)."""
        b = x.shape[0]
        if self.split:
            feats = _check_layer_output(self.prefix(x), self.layer)
            out = self.suffix(feats)
            return feats, self._finish(out, out, b)
        self._ablate = None
        out = self.model(x)
        feats = self._feats
        if feats is None:
            raise RuntimeError(f"layer {self.layer!r} produced no output during the forward pass")
        return feats, self._finish(out, self._topic_out, b)

    def ablated(self, x: Any, feats: Any, chans: Any, values: Any) -> Any:
        """Probabilities (R, B, T) with channel ``chans[r]`` set to ``values[r]`` in copy r."""
        import torch

        r, b = len(chans), x.shape[0]
        if self.split:
            rep = _set_channels(feats.unsqueeze(0).expand(r, *feats.shape).clone(), chans, values)
            out = self.suffix(rep.flatten(0, 1))
            return self._finish(out, out, r * b).view(r, b, -1)
        if self.expand_ok is None and r > 1:  # check expand on 2 neurons (2 full forwards of the replicate route)
            p_exp = self._try_expand(x, chans[:2], values[:2])
            p_rep = self._replicated(x, chans[:2], values[:2])
            self.expand_ok = p_exp is not None and p_exp.shape == p_rep.shape and \
                bool(torch.allclose(p_exp, p_rep, rtol=1e-4, atol=1e-6))
        if self.expand_ok and r > 1:
            p_exp = self._try_expand(x, chans, values)
            if p_exp is not None:
                return p_exp
        return self._replicated(x, chans, values)

    def _try_expand(self, x: Any, chans: Any, values: Any) -> Optional[Any]:
        try:
            return self._run(x, chans, values, "expand")
        except Exception:  # a model that mixes the layer's output with earlier tensors (skip connections)
            return None

    def _replicated(self, x: Any, chans: Any, values: Any) -> Any:
        b = x.shape[0]
        step = self.replicate_chunk or max(1, 2048 // b)  # the whole model runs on every copy: ~2048 rows
        parts = [self._run(x, chans[i:i + step], values[i:i + step], "replicate") for i in range(0, len(chans), step)]
        return parts[0] if len(parts) == 1 else torch_cat(parts)

    def _run(self, x: Any, chans: Any, values: Any, how: str) -> Any:
        r, b = len(chans), x.shape[0]
        self._ablate = (chans, values, r, how)
        self._topic_out = None
        try:
            out = self.model(x if how == "expand" else x.repeat(r, *([1] * (x.dim() - 1))))
        finally:
            self._ablate = None
        return self._finish(out, self._topic_out, r * b).view(r, b, -1)

    # -- hooks of the whole-model route
    def layer_hook(self, module: Any, args: Any, output: Any) -> Any:
        if self._ablate is None:
            self._feats = _check_layer_output(output, self.layer).detach()
            return None
        chans, values, r, how = self._ablate
        out = _check_layer_output(output, self.layer)
        if how == "expand":
            rep = out.unsqueeze(0).expand(r, *out.shape).clone()
            return _set_channels(rep, chans, values).flatten(0, 1)
        rep = out.reshape(r, out.shape[0] // r, *out.shape[1:]).clone()
        return _set_channels(rep, chans, values).view(out.shape)

    def topic_hook(self, module: Any, args: Any, output: Any) -> None:
        self._topic_out = output


def prediction_difference(model: Any, layer: str, data: Any, targets: Union[str, Callable[[Any], Any]] = "classes",
                          ablation: str = "zero", *, topic_head: Optional[Callable[[Any], Any]] = None,
                          topic_layer: Optional[str] = None, topic_pooling: str = "mean",
                          topic_softmax: bool = False, target_names: Optional[Sequence[str]] = None,
                          top_k: int = 3, neurons: Optional[Sequence[int]] = None, batch_size: int = 256,
                          n_ablate: Optional[int] = None, active_threshold: float = 0.0,
                          device: Any = None) -> PredictionDifference:
    """Prediction-difference maximization: what each neuron of ``layer`` drives.

    For every neuron (channel) ``d`` of ``layer`` and target ``t``, the mean
    drop ``p_t(x) - p_t(x with d ablated)`` over the samples where ``d`` is
    active (see the module doc), with each neuron's ``top_k`` targets.

    Args:
        model: a ``torch.nn.Module`` (call ``model.eval()`` first for
            inference behaviour; the model is not modified).
        layer: the name of the submodule (``model.named_modules()``) whose
            output channels are the neurons: a float (B, C) or (B, C, *spatial)
            tensor, channels on axis 1.
        data: a tensor of inputs (N, ...) (cut into ``batch_size`` batches) or
            an iterable of batches (tensors, ``(input, ...)`` tuples, dicts with
            ``"image"``); for ``ablation="mean"`` it is read twice, so it must
            be re-iterable (not a generator).
        targets: ``"classes"`` (softmax of the model's logits, (B, classes)),
            ``"topics"`` (``topic_head`` applied to ``topic_layer``'s output),
            or a callable ``f(model_output) -> (B, T)`` probabilities.
        ablation: ``"zero"`` or ``"mean"`` (the channel's mean over ``data``
            and positions, from a first pass).
        topic_head: for ``targets="topics"``: an :class:`InterpretiveLoss`
            (its :meth:`~InterpretiveLoss.predict`, pooling itself, softmax if
            ``topic_softmax``) or any callable mapping the output of
            ``topic_layer``, pooled over its spatial axes by ``topic_pooling``
            (``"mean"``, ``"max"``, or ``"none"`` to pass it raw), to (B, T)
            topic probabilities (softmax applied too if ``topic_softmax``).
        topic_layer: the layer the topic head reads (default ``layer``: the
            paper's setting, the head on the features whose neurons are
            interpreted); it must run after ``layer``.
        target_names: T names (default: ``"t0"``, ... / ``"class 0"``, ...).
        top_k: targets kept per neuron (at most T).
        neurons: channel indices to ablate (default all).
        batch_size: samples per batch when ``data`` is a tensor.
        n_ablate: neurons ablated per forward (each sample is replicated
            ``n_ablate`` times, a different channel ablated in each copy);
            default: as many as fit in about 2**24 layer values per forward
            (on the replicate route below, about 2048 rows per forward: the
            whole model runs on every copy, so larger chunks save no work).
        active_threshold: a neuron is active on a sample when its activation
            (spatial maximum for maps) is > this.
        device: where inputs go (default the model's).

    How it runs: when ``model`` is an ``nn.Sequential`` (without its own
    ``forward``) and ``layer`` (and ``topic_layer``) are its direct children,
    the children up to ``layer`` run once per batch and only those after it
    run on the ablated copies (Sequential route).  Otherwise a forward hook on
    ``layer`` does the ablation (hooks always removed), in one of two ways:
    *expand*, the hook replaces the layer's (B, ...) output by R ablated
    copies (R*B rows), so the modules before the layer run once; or
    *replicate*, the input is replicated R times and the hook ablates each
    copy (always valid, but the whole model runs on every copy).  Expand fails
    or is wrong for models that combine the layer's output with tensors
    computed before it (a skip connection around the layer): it is tried on
    two neurons of the first batch and kept only if it runs and gives the
    replicate route's probabilities (within rtol 1e-4, atol 1e-6); otherwise,
    or when it fails on a later batch, replicate is used.
    Drops are accumulated in float64 by one batched matrix product per chunk
    of neurons.

    Returns:
        :class:`PredictionDifference`.

    Raises:
        TypeError / ValueError: unknown layer (with close matches), a layer
            without channels to ablate, ``ablation`` / ``targets`` not in the
            lists, a missing or bad ``topic_head``, ``targets`` callables that
            return the wrong shape, bad ``neurons``; messages name the argument,
            the expected and the received.
    """
    import torch
    from torch import nn

    from ..capture import model_device_dtype, find_module, input_of

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layer_module = find_module(model, layer)
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {list(ABLATIONS)}, got {ablation!r}")
    if isinstance(targets, str):
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {list(TARGETS)} or a callable, got {targets!r}")
    elif not callable(targets):
        raise TypeError(f"targets must be one of {list(TARGETS)} or a callable f(model_output) -> (B, T) "
                        f"probabilities, got {type(targets).__name__}")
    top_k = _check_int(top_k, "top_k")
    batch_size = _check_int(batch_size, "batch_size")
    if n_ablate is not None:
        n_ablate = _check_int(n_ablate, "n_ablate")
    if isinstance(active_threshold, bool) or not isinstance(active_threshold, (int, float)) \
            or not math.isfinite(active_threshold):
        raise ValueError(f"active_threshold must be a finite number, got {active_threshold!r}")
    if not isinstance(topic_softmax, bool):
        raise TypeError(f"topic_softmax must be a bool, got {type(topic_softmax).__name__}")
    topic_fn = None
    topic_module = None
    if targets == "topics":
        if topic_head is None:
            raise ValueError('targets="topics" needs topic_head= (an InterpretiveLoss, or a callable mapping '
                             "the pooled features of topic_layer to (B, T) topic probabilities), got None")
        if not callable(topic_head):
            raise TypeError(f"topic_head must be an InterpretiveLoss or a callable, got {type(topic_head).__name__}")
        if topic_pooling not in ("mean", "max", "none"):
            raise ValueError(f"topic_pooling must be one of ['mean', 'max', 'none'], got {topic_pooling!r}")
        topic_layer = layer if topic_layer is None else topic_layer
        topic_module = find_module(model, topic_layer)
        from ._interpretive import InterpretiveLoss

        if isinstance(topic_head, InterpretiveLoss):
            def topic_fn(f: Any) -> Any:
                return topic_head.predict(f, softmax=topic_softmax)
        else:
            def topic_fn(f: Any) -> Any:
                if topic_pooling != "none" and isinstance(f, torch.Tensor) and f.dim() > 2:
                    f = f.flatten(2).mean(2) if topic_pooling == "mean" else f.flatten(2).amax(2)
                p = topic_head(f)
                return torch.softmax(p, dim=1) if topic_softmax and isinstance(p, torch.Tensor) else p
    elif topic_head is not None or topic_layer is not None:
        raise ValueError(f'topic_head and topic_layer are only used with targets="topics", got targets={targets!r}')
    if ablation == "mean" and not isinstance(data, torch.Tensor) and iter(data) is data:
        raise TypeError('ablation="mean" reads data twice: pass a tensor, a list of batches or a DataLoader, '
                        f"not a one-shot iterator ({type(data).__name__})")
    mdev, mdtype = model_device_dtype(model)
    dev = check_device(device) if device is not None else mdev

    def inputs() -> Iterable[Any]:
        for i, batch in enumerate(_batches(data, batch_size)):
            x = input_of(batch, f"batch {i}")
            if x.shape[0] == 0:
                continue
            yield x.to(device=dev, dtype=mdtype) if x.is_floating_point() and mdtype is not None else x.to(dev)

    plan = _Plan(model, layer, targets, topic_fn, topic_layer)
    handles = []
    if not plan.split:
        handles.append(layer_module.register_forward_hook(plan.layer_hook))
        if topic_module is not None:
            handles.append(topic_module.register_forward_hook(plan.topic_hook))
    try:
        with torch.no_grad():
            means = None
            if ablation == "mean":
                tot, n_pos = None, 0
                for x in inputs():
                    feats, _ = plan.clean(x)
                    f = feats.double().transpose(0, 1).reshape(feats.shape[1], -1)
                    tot = f.sum(1) if tot is None else tot + f.sum(1)
                    n_pos += f.shape[1]
                if tot is None:
                    raise ValueError("data yielded no samples")
                means = tot / n_pos
            sums = counts = chans_all = values_all = None
            n_samples, n_targets = 0, None
            for x in inputs():
                feats, p0 = plan.clean(x)
                c = feats.shape[1]
                if chans_all is None:
                    chans_all = _neuron_index(neurons, c, layer).to(feats.device)
                    k = len(chans_all)
                    n_targets = p0.shape[1]
                    sums = torch.zeros(k, n_targets, dtype=torch.float64, device=feats.device)
                    counts = torch.zeros(k, dtype=torch.int64, device=feats.device)
                    values_all = (means[chans_all] if means is not None
                                  else torch.zeros(k, dtype=torch.float64, device=feats.device))
                    # about 2**24 layer values per forward after the layer
                    chunk = n_ablate or max(1, (1 << 24) // (max(1, feats[0].numel()) * x.shape[0]))
                    plan.replicate_chunk = n_ablate
                    c0 = c
                elif c != c0:
                    raise ValueError(f"layer {layer!r} changed its channel count between batches: {c0} then {c}")
                if p0.shape[1] != n_targets:
                    raise ValueError(f"the number of targets changed between batches: {n_targets} then {p0.shape[1]}")
                b = x.shape[0]
                act = feats.reshape(b, c, -1).amax(2) > active_threshold  # (B, C)
                act = act[:, chans_all]
                for s in range(0, len(chans_all), chunk):
                    sl = slice(s, s + chunk)
                    p = plan.ablated(x, feats, chans_all[sl], values_all[sl])
                    _accumulate(sums[sl], counts[sl], p0.unsqueeze(0) - p, act[:, sl])
                n_samples += b
            if sums is None:
                raise ValueError("data yielded no samples")
            scores = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].double(),
                                 torch.full_like(sums, math.nan))
            top_idx, top_val = _top_k(scores, min(top_k, n_targets))
    finally:
        for h in handles:
            h.remove()
    names = _target_names(target_names, n_targets, targets, topic_head)
    return PredictionDifference(
        layer=layer, targets=targets if isinstance(targets, str) else "callable", ablation=ablation,
        neurons=chans_all.cpu().numpy().astype(np.int64), target_names=names, scores=scores.cpu().numpy(),
        counts=counts.cpu().numpy(), n_samples=n_samples, top_targets=top_idx, top_scores=top_val,
        ablation_values=values_all.cpu().numpy())


def _neuron_index(neurons: Any, c: int, layer: str) -> Any:
    import torch

    if neurons is None:
        return torch.arange(c)
    if isinstance(neurons, (str, bytes)) or not isinstance(neurons, Iterable):
        raise TypeError(f"neurons must be a sequence of channel indices or None, got {type(neurons).__name__}")
    idx = list(neurons)
    if not idx:
        raise ValueError("neurons must not be empty (None = all channels)")
    for v in idx:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"neurons must hold ints, got {v!r} ({type(v).__name__})")
        if not 0 <= v < c:
            raise ValueError(f"neurons must be channel indices in [0, {c}) of layer {layer!r}, got {int(v)}")
    if len(set(int(v) for v in idx)) != len(idx):
        raise ValueError("neurons must not repeat an index")
    return torch.tensor([int(v) for v in idx], dtype=torch.int64)


def _target_names(names: Optional[Sequence[str]], t: int, targets: Any, topic_head: Any) -> List[str]:
    if names is None:
        prefix = "t" if targets == "topics" else ("class " if targets == "classes" else "target ")
        return [f"{prefix}{i}" for i in range(t)]
    if isinstance(names, str) or len(names) != t:
        raise ValueError(f"target_names must be a sequence of {t} names (one per target), got {names!r}"[:300])
    return [str(n) for n in names]


# ----------------------------------------------------------------------------- editing

def _check_edits(edits: Any) -> Dict[int, float]:
    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a dict {{neuron: scale}}, got {type(edits).__name__}")
    out: Dict[int, float] = {}
    for k, v in edits.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"edits keys must be channel indices (ints >= 0), got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            raise ValueError(f"edits[{int(k)}] must be a finite scale (0 suppresses, > 1 amplifies), got {v!r}")
        out[int(k)] = float(v)
    return out


class NeuronEdit:
    """Context manager that multiplies channels of a layer's output (see
    :func:`edit_neurons`).  Reusable; not reentrant."""

    def __init__(self, model: Any, layer: str, edits: Mapping[int, float]) -> None:
        from torch import nn

        from ..capture import find_module

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer = layer
        self.module = find_module(model, layer)
        self.edits = _check_edits(edits)
        self._handle: Any = None

    @property
    def active(self) -> bool:
        """True inside the ``with`` block (hook registered)."""
        return self._handle is not None

    def _hook(self, module: Any, args: Any, output: Any) -> Any:
        import torch

        out = _check_layer_output(output, self.layer)
        if not self.edits:
            return None
        c = out.shape[1]
        bad = [k for k in self.edits if k >= c]
        if bad:
            raise ValueError(f"edits name neurons {bad} but layer {self.layer!r} has {c} channels")
        idx = torch.tensor(list(self.edits), dtype=torch.int64, device=out.device)
        scale = torch.tensor(list(self.edits.values()), dtype=out.dtype, device=out.device)
        new = out.clone()
        new[:, idx] = out[:, idx] * scale.view(1, -1, *([1] * (out.dim() - 2)))
        return new

    def __enter__(self) -> "NeuronEdit":
        if self._handle is not None:
            raise RuntimeError("this NeuronEdit is already active (entered twice)")
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.remove()

    def __repr__(self) -> str:
        return f"NeuronEdit(layer={self.layer!r}, edits={self.edits}, active={self.active})"


def edit_neurons(model: Any, layer: str, edits: Mapping[int, float]) -> NeuronEdit:
    """Suppress or amplify neurons of ``layer`` inside a ``with`` block::

        with edit_neurons(model, "relu_fc", {17: 0.0, 42: 2.0}):
            logits = model(x)        # channel 17 zeroed, channel 42 doubled

    ``edits``: ``{channel: scale}``; the layer's output (float (B, C) or
    (B, C, *spatial)) is replaced by a copy whose channel ``c`` is multiplied
    by ``scale`` (0 suppresses, > 1 amplifies, negative flips), at every
    position.  A forward hook does it; it is removed when the block exits,
    exceptions included, and the model's parameters and buffers are never
    touched.  Keys are checked against the channel count at the first
    forward (ValueError); bad keys or scales raise at once."""
    return NeuronEdit(model, layer, edits)


@dataclass
class EditEffect:
    """How an edit changes predictions (:func:`explain_edit`).

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


def explain_edit(model: Any, layer: str, x: Any, edits: Mapping[int, float],
                 class_names: Optional[Sequence[str]] = None, *, labels: Optional[Sequence[int]] = None
                 ) -> EditEffect:
    """The model's prediction for inputs ``x`` (a batch (N, ...); for one
    sample pass ``x[None]``) without and with :func:`edit_neurons`
    ``(model, layer, edits)``.

    The model must return float logits (N, C); probabilities are their
    softmax.  ``class_names``: C names (default ``"class 0"``, ...);
    ``labels``: optional true classes (N,), to show whether the edit fixes a
    wrong prediction.  The model is run under ``torch.no_grad()`` and left as
    it was."""
    import torch

    edit = edit_neurons(model, layer, edits)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of inputs (N, ...) as a torch.Tensor, got {describe(x)}")
    with torch.no_grad():
        before = _probs_from_output(model(x), "the model")
        with edit:
            after = _probs_from_output(model(x), "the model")
    c = before.shape[1]
    names = _target_names(class_names, c, "classes", None)
    lab = None
    if labels is not None:
        lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if lab.shape != (x.shape[0],) or lab.dtype.kind not in "iu" or (len(lab) and (lab.min() < 0 or lab.max() >= c)):
            raise ValueError(f"labels must be ints in [0, {c}) of shape ({x.shape[0]},), got {describe(labels)}")
        lab = lab.astype(np.int64)
    b, a = before.double().cpu().numpy(), after.double().cpu().numpy()
    return EditEffect(layer=layer, edits=dict(edit.edits), class_names=names, before=b, after=a,
                      before_class=b.argmax(1).astype(np.int64), after_class=a.argmax(1).astype(np.int64),
                      labels=lab)
