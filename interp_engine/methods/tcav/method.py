"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018;
reference code tensorflow/tcav and captum.concept).

Semantics (shared/ALGORITHMS.md section 4; docs/concept_vectors.md):

* Activations at ``layer`` are the layer's raw output flattened per example,
  ``(N, D)`` with ``D = C*H*W`` (``features="flatten"``, the paper's and
  captum's choice), or averaged over the spatial positions of its
  ``(B, C, H, W)`` view, ``(N, C)`` (``features="mean"``).
* A CAV for (concept, counterpart): both example sets are cut to the same size
  ``n = min(n_concept, n_counterpart)`` (a seeded random subset), each class is
  split 67/33 into train/held-out (seeded), a linear classifier separates the
  concept (label 1) from the counterpart (label 0); the CAV ``v_C`` is its unit
  normal pointing towards the concept, with its held-out accuracy.
* Classifiers: ``"sgd"`` (the reference: scikit-learn's ``SGDClassifier(alpha=
  0.01, max_iter=1000, tol=1e-3)``, captum's default), ``"mean_difference"``
  (FastCAV: the normalized difference of the class means, midpoint bias), or
  any :class:`Classifier`.
* Sensitivity ``S(x) = grad_{f_l} h_k(f_l(x)) . v_C`` with ``h_k`` the class-k
  logit (one backward per batch, through a forward hook on ``layer``).  With
  ``features="mean"`` the gradient is summed over positions (the derivative
  along ``v_C`` added at every position).  TCAV score = fraction of the
  class-k inputs with ``S(x) > 0``.
* Significance: with random example sets ``r_0, ..., r_R`` (``R =
  num_random``), the concept's scores against ``r_1..r_R`` are compared with
  the scores of ``r_0`` (a random "concept") against ``r_1..r_R`` by a
  two-sided Student (equal-variance) t-test (``scipy.stats.ttest_ind``);
  p-values are Bonferroni-corrected over the concepts tested in one
  :meth:`TCAV.scores` call; a concept is significant when the corrected
  p-value is below ``alpha``.
"""
from __future__ import annotations

import math
import warnings
import zlib
from abc import ABC, abstractmethod
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._rows import ConceptRows
from ..._npz import Array, Num, OneOf, load_npz, save_npz
from .._vector_files import MODEL_SPEC, entries, model_key
from ...engine._arrays import check_bool, check_int, check_positive_int, check_real, describe, float_array
from .._gradients import iter_batches as _batches
from .._gradients import iter_layer_gradients, layer_tensor

__all__ = ["TCAV", "TCAVResult", "TCAVRow", "CAV", "Classifier", "SGDLinearClassifier",
           "MeanDifferenceClassifier", "FEATURES"]

FEATURES = ("flatten", "mean")
_RANDOM0 = "random_0"


# ----------------------------------------------------------------------------- classifiers

class Classifier(ABC):
    """A binary linear classifier for CAVs (the pluggable piece, as captum's
    ``Classifier``).  Implement :meth:`fit` and :meth:`weights`;
    :meth:`decision_function` has a linear default."""

    name = "custom"

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        """Train on ``x`` float64 ``(N, D)`` and labels ``y`` int64 ``(N,)`` in
        {0, 1} (1 = concept), deterministically from ``seed``."""

    @abstractmethod
    def weights(self) -> np.ndarray:
        """The normal of the separating hyperplane, float ``(D,)``, pointing
        towards label 1 (need not be unit-norm)."""

    def bias(self) -> float:
        """The intercept ``b`` of ``w . x + b`` (default 0)."""
        return 0.0

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """``w . x + b`` for ``x`` ``(N, D)``; positive means label 1."""
        return x @ np.asarray(self.weights(), dtype=np.float64) + self.bias()


class SGDLinearClassifier(Classifier):
    """scikit-learn ``SGDClassifier`` (hinge loss) with captum's defaults
    ``alpha=0.01, max_iter=1000, tol=1e-3``; keyword arguments override them."""

    name = "sgd"

    def __init__(self, **kwargs: Any):
        self.kwargs = {"alpha": 0.01, "max_iter": 1000, "tol": 1e-3, **kwargs}
        self._model: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        from sklearn.linear_model import SGDClassifier

        self._model = SGDClassifier(random_state=int(seed), **self.kwargs)
        with warnings.catch_warnings():  # ConvergenceWarning must not become an error
            warnings.simplefilter("ignore")
            self._model.fit(x, y)

    def weights(self) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("SGDLinearClassifier.weights() called before fit()")
        return np.asarray(self._model.coef_[0], dtype=np.float64)

    def bias(self) -> float:
        return float(self._model.intercept_[0])


class MeanDifferenceClassifier(Classifier):
    """FastCAV: ``w = mean(x | y=1) - mean(x | y=0)``, bias at the midpoint of
    the two means (closed form, no iterations)."""

    name = "mean_difference"

    def __init__(self) -> None:
        self._w: Optional[np.ndarray] = None
        self._b = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        m1 = x[y == 1].mean(axis=0)
        m0 = x[y == 0].mean(axis=0)
        self._w = m1 - m0
        self._b = -float(self._w @ (m1 + m0)) / 2.0

    def weights(self) -> np.ndarray:
        if self._w is None:
            raise RuntimeError("MeanDifferenceClassifier.weights() called before fit()")
        return self._w

    def bias(self) -> float:
        return self._b


def _make_classifier(spec: Any) -> Classifier:
    if isinstance(spec, Classifier):
        return spec
    if isinstance(spec, str) and spec == "sgd":
        return SGDLinearClassifier()
    if isinstance(spec, str) and spec == "mean_difference":
        return MeanDifferenceClassifier()
    raise (ValueError if isinstance(spec, str) else TypeError)(
        f"classifier must be 'sgd', 'mean_difference' or a Classifier instance, got "
        f"{repr(spec) if isinstance(spec, str) else describe(spec)}")


# ----------------------------------------------------------------------------- CAVs

@dataclass
class CAV:
    """One concept activation vector.

    Attributes:
        concept: the concept's name (``"random_0"`` for the random reference).
        counterpart: the name of the random set it was separated from
            (``"random_1"``, ...).
        vector: float64 ``(D,)``, unit norm, pointing towards the concept.
        accuracy: held-out accuracy of the classifier (NaN when no held-out
            example).
    """

    concept: str
    counterpart: str
    vector: np.ndarray
    accuracy: float


def train_cav(pos: np.ndarray, neg: np.ndarray, classifier: Classifier, *, seed: int,
              test_split: float = 0.33) -> Tuple[np.ndarray, float]:
    """Train one CAV: cut ``pos`` (concept, ``(Np, D)``) and ``neg``
    (counterpart, ``(Nn, D)``) to the same size, split each 67/33, fit
    ``classifier``; return the unit normal float64 ``(D,)`` towards ``pos`` and
    the held-out accuracy."""
    rng = np.random.default_rng(seed)
    n = min(len(pos), len(neg))
    pos = pos[rng.permutation(len(pos))[:n]]
    neg = neg[rng.permutation(len(neg))[:n]]
    n_test = int(round(test_split * n))
    n_test = min(max(n_test, 1), n - 1)
    xtr = np.concatenate([pos[n_test:], neg[n_test:]]).astype(np.float64, copy=False)
    ytr = np.concatenate([np.ones(n - n_test, np.int64), np.zeros(n - n_test, np.int64)])
    order = rng.permutation(len(ytr))
    classifier.fit(xtr[order], ytr[order], seed=int(rng.integers(2**31 - 1)))
    w = np.asarray(classifier.weights(), dtype=np.float64).reshape(-1)
    if w.shape != (pos.shape[1],):
        raise ValueError(f"classifier.weights() must return shape ({pos.shape[1]},), "
                         f"got {w.shape}")
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("the classifier returned a zero or non-finite weight vector (identical "
                         "concept and random activations?)")
    xte = np.concatenate([pos[:n_test], neg[:n_test]]).astype(np.float64, copy=False)
    yte = np.concatenate([np.ones(n_test), np.zeros(n_test)])
    acc = float(np.mean((classifier.decision_function(xte) > 0) == (yte == 1)))
    return w / norm, acc


# ----------------------------------------------------------------------------- results

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


@dataclass
class TCAVResult(ConceptRows):
    """Rows of :class:`TCAVRow`, one per concept, for one target class."""

    layer: str
    target_class: int
    alpha: float
    num_inputs: int
    rows: List[TCAVRow]

    #: the fields of :meth:`table` (one plain dict per concept, no pandas)
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


def _ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided equal-variance t-test p-value; constant samples handled
    without scipy's precision warnings (equal constants: 1, distinct: 0)."""
    from scipy.stats import ttest_ind

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(ttest_ind(a, b).pvalue)
    return 1.0 if math.isnan(p) else p


# ----------------------------------------------------------------------------- TCAV

class TCAV:
    """TCAV of a model's layer: CAVs, sensitivities, scores with significance.

    Args:
        model: a ``torch.nn.Module`` returning logits ``(B, num_classes)``;
            not modified (call ``model.eval()`` yourself); hooks are removed
            after every call.
        layer: a name from ``model.named_modules()``; its output must be a
            floating tensor.
        classifier: ``"sgd"`` (reference), ``"mean_difference"`` (FastCAV) or
            a :class:`Classifier`.
        num_random: ``R``, the number of random counterparts (>= 2).
        seed: makes subsets, splits and classifiers deterministic.
        features: ``"flatten"`` (default, ``C*H*W`` per example, as the paper)
            or ``"mean"`` (spatial mean, ``C``).
        alpha: significance level after Bonferroni correction.
        test_split: held-out fraction of each class for the CAV accuracy.
        batch_size: examples per forward pass.
    """

    def __init__(self, model: Any, layer: str, *, classifier: Union[str, Classifier] = "sgd",
                 num_random: int = 10, seed: int = 0, features: str = "flatten",
                 alpha: float = 0.05, test_split: float = 0.33, batch_size: int = 64):
        from ...capture import find_module

        find_module(model, layer)  # TypeError/ValueError naming the layer and close matches
        self.classifier = _make_classifier(classifier)
        self.num_random = check_positive_int(num_random, "num_random", minimum=2)
        seed = check_int(seed, "seed", minimum=0, maximum=None)  # numpy seeds are non-negative
        if not isinstance(features, str) or features not in FEATURES:
            raise (ValueError if isinstance(features, str) else TypeError)(
                f"features must be one of {list(FEATURES)}, got {describe(features)}")
        alpha = check_real(alpha, "alpha", what="a float in (0, 1)")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
        test_split = check_real(test_split, "test_split", what="a float in (0, 1)")
        if not 0 < test_split < 1:
            raise ValueError(f"test_split must be a float in (0, 1), got {test_split!r}")
        self.model = model
        self.layer = layer
        self.seed = int(seed)
        self.features = features
        self.alpha = float(alpha)
        self.test_split = float(test_split)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.cavs: Dict[Tuple[str, str], CAV] = {}
        self.dim: Optional[int] = None
        #: the fingerprint of the model the CAVs were computed for (set by the fits, read by
        #: :meth:`load_cavs`; written by :meth:`save_cavs`): ``{"class", "structure", "parameters",
        #: "tensors", "bytes"}`` (see ``interp_engine._fingerprint.model_fingerprint``); None before
        self.model_key: Optional[Dict[str, Any]] = None
        self._model_unknown = False  # loaded from a file that records no model

    # -- activations and gradients at the layer
    def _layer_tensor(self, out: Any) -> Any:
        return layer_tensor(out, self.layer, "TCAV")

    def _features(self, t: Any) -> Any:
        """``(B, D)`` features of a layer output."""
        from ...capture import to_bchw

        if self.features == "flatten":
            return t.reshape(t.shape[0], -1)
        return to_bchw(t, layer=self.layer).mean(dim=(2, 3))

    def activations(self, examples: Any, *, what: str = "examples") -> np.ndarray:
        """Layer features of ``examples`` (tensor ``(N, ...)`` or dataset),
        float64 ``(N, D)``."""
        import torch
        from ...capture import Capture, model_device_dtype

        dev, dt = model_device_dtype(self.model)
        parts = []
        with Capture(self.model, self.layer, detach=False, clone=False) as cap:
            for x in _batches(examples, self.batch_size, what):
                x = x.to(device=dev, dtype=dt) if (x.is_floating_point() and dt) else x.to(dev)
                with torch.no_grad():
                    self.model(x)
                out = self._layer_tensor(cap.raw_outputs[self.layer])
                parts.append(self._features(out.detach()).double().cpu().numpy())
        return np.concatenate(parts)

    def gradients(self, inputs: Any, target_class: int) -> np.ndarray:
        """Gradient of the class-``target_class`` logit w.r.t. the layer's
        features, float64 ``(N, D)`` (one backward per batch)."""
        from ...capture import to_bchw

        parts = []
        grads = iter_layer_gradients(self.model, self.layer, inputs, target_class,
                                     batch_size=self.batch_size, method="TCAV")
        with closing(grads):  # the hook goes even when to_bchw raises
            for _, g, _, _ in grads:
                if self.features == "flatten":
                    gf = g.reshape(g.shape[0], -1)
                else:  # d/dt h(f + t v at every position) = sum over positions of g . v
                    gf = to_bchw(g, layer=self.layer).sum(dim=(2, 3))
                parts.append(gf.double().cpu().numpy())
        return np.concatenate(parts)

    # -- CAVs
    def _as_acts(self, x: Any, what: str) -> np.ndarray:
        arr, _ = float_array(x, what, allowed=("f32", "f64"))
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError(f"{what} must be (N, D) activations with N >= 1, got shape "
                             f"{tuple(arr.shape)}")
        arr = np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], -1)
        if self.dim is not None and arr.shape[1] != self.dim:
            raise ValueError(f"{what} has {arr.shape[1]} features per example, expected "
                             f"{self.dim} (the layer's features)")
        return arr

    def fit_cavs(self, concept_examples: Mapping[str, Any], random_examples: Sequence[Any],
                 ) -> "TCAV":
        """Train the CAVs of every concept against ``random_examples[1..R]``
        and of the random reference ``random_examples[0]`` against the same.

        Args:
            concept_examples: ``{name: examples}``, examples a model-input
                tensor ``(N, ...)`` or a dataset (items tensors, tuples or dicts
                with ``"image"``).
            random_examples: at least ``num_random + 1`` example sets of the
                same kinds (extra sets are ignored).

        Returns:
            self (CAVs in :attr:`cavs`, keyed ``(concept, counterpart)``;
            earlier CAVs are replaced).
        """
        c_acts, r_acts = self._check_sets(concept_examples, random_examples)
        return self.fit_cavs_from_activations(
            {k: self.activations(v, what=f"concept_examples[{k!r}]") for k, v in c_acts.items()},
            [self.activations(v, what=f"random_examples[{i}]") for i, v in enumerate(r_acts)])

    def _check_sets(self, concept_examples: Any, random_examples: Any) -> Tuple[Dict, List]:
        if not isinstance(concept_examples, Mapping) or not concept_examples:
            raise ValueError(f"concept_examples must be a non-empty dict {{name: examples}}, got "
                             f"{describe(concept_examples)}")
        for k in concept_examples:
            if not isinstance(k, str) or k == _RANDOM0:
                raise ValueError(f"concept names must be str other than {_RANDOM0!r} (the random "
                                 f"reference), got {k!r}")
        if isinstance(random_examples, (str, bytes, Mapping)) or not isinstance(
                random_examples, Sequence):
            raise TypeError(f"random_examples must be a list of example sets, got "
                            f"{describe(random_examples)}")
        need = self.num_random + 1
        if len(random_examples) < need:
            raise ValueError(f"random_examples must hold at least num_random + 1 = {need} sets "
                             f"(one random reference + {self.num_random} counterparts), got "
                             f"{len(random_examples)}")
        return dict(concept_examples), list(random_examples)[:need]

    def fit_cavs_from_activations(self, concept_acts: Mapping[str, Any],
                                  random_acts: Sequence[Any]) -> "TCAV":
        """As :meth:`fit_cavs` from layer features already computed: arrays
        ``(N, D)`` (or ``(N, C, H, W)``, flattened), float32/float64, numpy or
        torch, in the layout of :meth:`activations`, of this object's model
        at its layer (the model's fingerprint is recorded as :attr:`model_key`
        and saved with the CAVs)."""
        concept_acts, random_acts = self._check_sets(concept_acts, random_acts)
        rand = [self._as_acts(a, f"random_examples[{i}]") for i, a in enumerate(random_acts)]
        dims = {a.shape[1] for a in rand}
        conc = {k: self._as_acts(v, f"concept_examples[{k!r}]") for k, v in concept_acts.items()}
        dims |= {a.shape[1] for a in conc.values()}
        if len(dims) != 1:
            raise ValueError(f"all example sets must have the same number of features per "
                             f"example, got {sorted(dims)}")
        for k, a in list(conc.items()) + [(f"random_{i}", a) for i, a in enumerate(rand)]:
            if len(a) < 2:
                raise ValueError(f"example set {k!r} needs at least 2 examples (train and "
                                 f"held-out), got {len(a)}")
        key = model_key(self.model)  # the activations are taken to be this model's at the layer
        self.dim = dims.pop()
        self.cavs = {}
        self.model_key, self._model_unknown = key, False
        sources = [(_RANDOM0, rand[0])] + sorted(conc.items())
        for ci, (name, pos) in enumerate(sources):
            for j in range(1, self.num_random + 1):
                ss = np.random.SeedSequence([self.seed, _stable_hash(name), j])
                v, acc = train_cav(pos, rand[j], self.classifier,
                                   seed=int(ss.generate_state(1)[0]), test_split=self.test_split)
                self.cavs[(name, f"random_{j}")] = CAV(name, f"random_{j}", v, acc)
        return self

    @property
    def concepts(self) -> List[str]:
        """Names of the concepts with CAVs (the random reference excluded)."""
        return sorted({c for c, _ in self.cavs if c != _RANDOM0})

    # -- scores
    def sensitivities(self, inputs: Any, target_class: int) -> Dict[Tuple[str, str], np.ndarray]:
        """``{(concept, counterpart): S float64 (N,)}`` for every CAV."""
        if not self.cavs:
            raise RuntimeError("no CAVs: call fit_cavs(), fit_cavs_from_activations() or "
                               "load_cavs() first")
        if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)):
            raise TypeError(f"target_class must be an integer, got {type(target_class).__name__}")
        g = self.gradients(inputs, int(target_class))
        if g.shape[1] != self.dim:
            raise ValueError(f"the layer's features have {g.shape[1]} values per input, the "
                             f"CAVs {self.dim} (CAVs from another layer or input size?)")
        keys = list(self.cavs)
        s = g @ np.stack([self.cavs[k].vector for k in keys]).T
        return {k: s[:, i] for i, k in enumerate(keys)}

    def scores(self, inputs: Any, target_class: int) -> TCAVResult:
        """TCAV scores of every concept for ``target_class`` on ``inputs``
        (tensor ``(N, ...)`` or dataset, meant to be images of that class),
        with the t-test against random-vs-random scores and Bonferroni
        correction over the concepts."""
        sens = self.sensitivities(inputs, target_class)
        n = len(next(iter(sens.values())))
        js = range(1, self.num_random + 1)

        def sc(name: str) -> np.ndarray:
            return np.array([np.mean(sens[(name, f"random_{j}")] > 0) for j in js])

        rnd = sc(_RANDOM0)
        names = self.concepts
        rows = []
        for name in names:
            s = sc(name)
            p = _ttest(s, rnd)
            pc = min(1.0, p * len(names))
            acc = float(np.mean([self.cavs[(name, f"random_{j}")].accuracy for j in js]))
            rows.append(TCAVRow(name, int(target_class), float(s.mean()), float(s.std()), p, pc,
                                bool(pc < self.alpha), s, rnd, acc))
        return TCAVResult(self.layer, int(target_class), self.alpha, n, rows)

    # -- persistence (npz, no pickle)
    def save_cavs(self, path: Any) -> None:
        """Write the CAVs to an ``.npz`` file (no pickle): vectors float64
        ``(n, D)`` and accuracies ``(n,)``, and a JSON header: the concepts
        and counterparts, the layer, features, ``num_random``, the feature
        dimension ``dim`` (D) and ``model``, the fingerprint of the model the
        CAVs were computed for (:attr:`model_key`: class, module tree, a
        digest of every parameter and buffer)."""
        if not self.cavs:
            raise RuntimeError("no CAVs to save")
        keys = list(self.cavs)
        recorded = self.model_key
        if recorded is None and not self._model_unknown:
            # CAVs set by hand (never fit nor loaded): they are taken to be the bound model's
            recorded = model_key(self.model)
        header = {"format": _CAV_FORMAT, "version": _CAV_VERSION, "layer": self.layer,
                  "features": self.features, "num_random": self.num_random,
                  "concepts": [k[0] for k in keys], "counterparts": [k[1] for k in keys],
                  "dim": int(self.cavs[keys[0]].vector.shape[0]), "model": recorded}
        save_npz(path, {"vectors": np.stack([self.cavs[k].vector for k in keys]),
                        "accuracies": np.array([self.cavs[k].accuracy for k in keys])}, header, compress=False)

    def load_cavs(self, path: Any, *, check_model: bool = True) -> "TCAV":
        """Read CAVs written by :meth:`save_cavs` (``allow_pickle=False``),
        checked against the format's schema (``vectors`` (n, D) finite float
        with D the header's ``dim``, ``accuracies`` (n,) in [0, 1] or NaN,
        n = the header's concepts and counterparts, distinct pairs), then
        against this object: the file's layer, features and ``num_random``
        must be this object's and, with ``check_model=True`` (default), the
        CAVs must have been computed for this object's model (the same class,
        module tree, parameters and buffers, compared by fingerprint).  A
        mismatch is a ValueError naming the file and the field (``cavs.npz
        was computed for layer 'layer3', not 'layer4'``).

        Files of version 1 (written before the model was recorded) are
        refused with ``check_model=True``: they cannot be checked.
        ``check_model=False`` loads them, and CAVs of another model
        knowingly: the layer and the settings are still checked;
        :attr:`model_key` then keeps the file's model (None when the file
        records none), so saving again does not relabel the CAVs."""
        from .._vector_files import check_layer, check_model as _check_model, check_setting
        from .._vector_files import file_version, refuse_version_1

        check_bool(check_model, "check_model")
        what = "CAV file"
        legacy = file_version(path, _CAV_FORMAT, what) == 1
        if legacy and check_model:
            refuse_version_1(path, what, "TCAV", "its layer, features and num_random")
        if legacy:
            h, arrays = load_npz(path, _CAV_FORMAT, 1, what, _CAV_HEADER_V1, _cav_arrays)
        else:
            h, arrays = load_npz(path, _CAV_FORMAT, _CAV_VERSION, what, _CAV_HEADER, _cav_arrays)
        check_layer(path, h["layer"], self.layer, "TCAV")
        for key in ("features", "num_random"):
            check_setting(path, key, h[key], getattr(self, key), "TCAV")
        pairs = list(zip(h["concepts"], h["counterparts"]))
        if len(set(pairs)) != len(pairs):
            dup = next(p for i, p in enumerate(pairs) if p in pairs[:i])
            raise ValueError(f"{path!s}: fields 'header.concepts' / 'header.counterparts' repeat the CAV "
                             f"{dup!r}")
        recorded = h.get("model")
        if check_model:
            _check_model(path, recorded, self.model, "TCAV")
        vecs = arrays["vectors"]
        self.cavs = {(str(c), str(r)): CAV(str(c), str(r), vecs[i].copy(), float(a))
                     for i, ((c, r), a) in enumerate(zip(pairs, arrays["accuracies"]))}
        self.dim = int(vecs.shape[1])
        self.model_key = None if recorded is None else dict(recorded)
        self._model_unknown = recorded is None
        return self


# The CAV file (format interp_engine.cavs): n CAVs of dimension D (the header's dim).  Version 2
# added dim and model (the fingerprint of the model the CAVs were computed for; null: unknown).
_CAV_HEADER_V1 = {"layer": str, "features": OneOf(FEATURES), "num_random": Num(int, 2),
                  "concepts": [str], "counterparts": [str]}
_CAV_HEADER = dict(_CAV_HEADER_V1, dim=Num(int, 1), model=MODEL_SPEC)


def _cav_arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    n = entries(h, ("concepts", "counterparts"), "CAV")
    if n == 0:
        raise ValueError("field 'header.concepts' must name at least one CAV; got an empty list")
    dims = {"n": n}
    if "dim" in h:
        dims["D"] = h["dim"]
    return ({"vectors": Array("float64", ("n", "D")),
             "accuracies": Array("float64", ("n",), min=0.0, max=1.0, nan=True)}, dims)


_CAV_FORMAT = "interp_engine.cavs"
_CAV_VERSION = 2  # 2: the header records the model (its fingerprint) and dim


def _stable_hash(name: str) -> int:
    """A hash of a concept name that does not change between processes."""
    return zlib.crc32(name.encode("utf-8"))
