"""Linear classifiers for concept activation vectors, and the CAV training
that :class:`~interp_engine.methods.tcav.TCAV` and
:class:`~interp_engine.methods.concept_vectors.ConceptVectors`
(``method="cav"``) share (docs/algorithms.md §4; docs/concept_vectors.md).

* :class:`Classifier`: the pluggable piece (as captum's ``Classifier``):
  implement :meth:`~Classifier.fit` and :meth:`~Classifier.weights`.
* :data:`CLASSIFIERS`: the built-in classifiers by name, ``"sgd"``
  (scikit-learn ``SGDClassifier`` with captum's settings, the reference) and
  ``"mean_difference"`` (FastCAV's closed form); :func:`make_classifier`
  turns a name or an instance (a method's ``classifier=`` setting) into a
  :class:`Classifier`.
* :func:`train_cav`: one CAV from a concept's and a counterpart's features.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ..engine.checks import describe

__all__ = ["Classifier", "SGDLinearClassifier", "MeanDifferenceClassifier", "CLASSIFIERS",
           "make_classifier", "train_cav"]


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


#: the built-in classifiers by the name a method's ``classifier=`` setting takes
CLASSIFIERS: Dict[str, Callable[[], Classifier]] = {"sgd": SGDLinearClassifier,
                                                    "mean_difference": MeanDifferenceClassifier}


def make_classifier(spec: Any, *, name: str = "classifier") -> Classifier:
    """A :class:`Classifier` from a name of :data:`CLASSIFIERS` (a new
    instance) or an instance (returned as is); ValueError for another name,
    TypeError for anything else, naming the argument ``name``."""
    if isinstance(spec, Classifier):
        return spec
    if isinstance(spec, str) and spec in CLASSIFIERS:
        return CLASSIFIERS[spec]()
    names = ", ".join(repr(k) for k in CLASSIFIERS)
    raise (ValueError if isinstance(spec, str) else TypeError)(
        f"{name} must be {names} or a Classifier instance, got "
        f"{repr(spec) if isinstance(spec, str) else describe(spec)}")


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
