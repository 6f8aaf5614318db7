"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018;
reference code tensorflow/tcav and captum.concept).

``TCAV(model, layer, **settings).fit(concept_examples, random_examples)``
learns the CAVs (:meth:`TCAV.fit_activations` from layer features already
computed), ``.explain(inputs, target_class)`` returns a :class:`TCAVResult`,
``.save(path)`` / ``TCAV.load(path, model)`` keep the CAVs.

Semantics (docs/algorithms.md §4; docs/concept_vectors.md):

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
  :meth:`TCAV.explain` call; a concept is significant when the corrected
  p-value is below ``alpha``.
"""
from __future__ import annotations

import math
import os
import warnings
import zlib
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...engine.checks import check_bool, check_int, check_positive_int, check_real, describe, float_array
from .. import _vector_files
from .._gradients import iter_batches as _batches
from .._gradients import iter_layer_gradients, layer_tensor
from .._vector_files import model_key
from ..classifiers import Classifier, make_classifier, train_cav
from . import files
from .files import FEATURES
from .result import TCAVResult, TCAVRow

__all__ = ["TCAV", "CAV"]

_RANDOM0 = "random_0"


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

    ``TCAV(model, layer, **settings).fit(concept_examples, random_examples)``
    learns the CAVs (:meth:`fit_activations` from layer features already
    computed); :meth:`explain` scores them for a class (a
    :class:`~interp_engine.methods.tcav.TCAVResult`); :meth:`save` writes the
    CAVs and ``TCAV.load(path, model)`` reads them back for the model they
    were computed for.

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
        self.classifier = make_classifier(classifier)
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

    def fit(self, concept_examples: Mapping[str, Any], random_examples: Sequence[Any]) -> "TCAV":
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
        return self.fit_activations(
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

    def fit_activations(self, concept_acts: Mapping[str, Any], random_acts: Sequence[Any]) -> "TCAV":
        """As :meth:`fit` from layer features already computed (the array
        path): arrays ``(N, D)`` (or ``(N, C, H, W)``, flattened),
        float32/float64, numpy or torch, in the layout of :meth:`activations`,
        of this object's model at its layer (the model's fingerprint is
        recorded as :attr:`model_key` and saved with the CAVs).  Returns
        self."""
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
            raise RuntimeError("no CAVs: call fit(), fit_activations() or TCAV.load() first")
        if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)):
            raise TypeError(f"target_class must be an integer, got {type(target_class).__name__}")
        g = self.gradients(inputs, int(target_class))
        if g.shape[1] != self.dim:
            raise ValueError(f"the layer's features have {g.shape[1]} values per input, the "
                             f"CAVs {self.dim} (CAVs from another layer or input size?)")
        keys = list(self.cavs)
        s = g @ np.stack([self.cavs[k].vector for k in keys]).T
        return {k: s[:, i] for i, k in enumerate(keys)}

    def explain(self, inputs: Any, target_class: int) -> TCAVResult:
        """TCAV scores of every concept for ``target_class`` on ``inputs``
        (tensor ``(N, ...)`` or dataset, meant to be images of that class),
        with the t-test against random-vs-random scores and Bonferroni
        correction over the concepts.  Returns a :class:`TCAVResult`
        (``.table()``, ``.to_csv(path)``, ``.save(path)``, ``str``)."""
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
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the CAVs to an ``.npz`` file (no pickle) and return its
        path: vectors float64 ``(n, D)`` and accuracies ``(n,)``, and a JSON
        header: the concepts and counterparts, the layer, features,
        ``num_random``, the feature dimension ``dim`` (D) and ``model``, the
        fingerprint of the model the CAVs were computed for
        (:attr:`model_key`: class, module tree, a digest of every parameter
        and buffer)."""
        if not self.cavs:
            raise RuntimeError("no CAVs to save")
        recorded = self.model_key
        if recorded is None and not self._model_unknown:
            # CAVs set by hand (never fit nor loaded): they are taken to be the bound model's
            recorded = model_key(self.model)
        return files.write(path, self, recorded)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], model: Any, layer: Optional[str] = None, *,
             check_model: bool = True, **settings: Any) -> "TCAV":
        """Read CAVs written by :meth:`save` for ``model`` at ``layer``
        (default: the file's layer): ``TCAV(model, layer, **settings)`` with
        the file's ``features`` and ``num_random`` unless given, holding the
        file's CAVs.

        The file is checked against the format's schema
        (``allow_pickle=False``; ``vectors`` (n, D) finite float with D the
        header's ``dim``, ``accuracies`` (n,) in [0, 1] or NaN, n = the
        header's concepts and counterparts, distinct pairs), then against the
        object: the file's layer, features and ``num_random`` must be its own
        (a layer or setting given that differs is refused) and, with
        ``check_model=True`` (default), the CAVs must have been computed for
        ``model`` (the same class, module tree, parameters and buffers,
        compared by fingerprint).  A mismatch is a ValueError naming the file
        and the field (``cavs.npz was computed for layer 'layer3', not
        'layer4'``).

        Files of version 1 (written before the model was recorded) are
        refused with ``check_model=True``: they cannot be checked.
        ``check_model=False`` loads them, and CAVs of another model
        knowingly: the layer and the settings are still checked;
        :attr:`model_key` then keeps the file's model (None when the file
        records none), so saving again does not relabel the CAVs."""
        check_bool(check_model, "check_model")
        h, arrays = files.read(path, check_model)
        t = _vector_files.build_for_file(cls, path, h, model, layer, settings, files.SETTINGS)
        return t._take_file(path, h, arrays, check_model)

    def _take_file(self, path: Any, h: Dict[str, Any], arrays: Dict[str, np.ndarray], check_model: bool) -> "TCAV":
        """Check the file's header ``h`` against this object, then hold its CAVs."""
        pairs = files.check(path, h, self, check_model)
        recorded = h.get("model")
        vecs = arrays["vectors"]
        self.cavs = {(str(c), str(r)): CAV(str(c), str(r), vecs[i].copy(), float(a))
                     for i, ((c, r), a) in enumerate(zip(pairs, arrays["accuracies"]))}
        self.dim = int(vecs.shape[1])
        self.model_key = None if recorded is None else dict(recorded)
        self._model_unknown = recorded is None
        return self

    # -- deprecated names
    def fit_cavs(self, concept_examples: Mapping[str, Any], random_examples: Sequence[Any]) -> "TCAV":
        """Deprecated: use :meth:`fit`."""
        _deprecated("TCAV.fit_cavs", "TCAV.fit")
        return self.fit(concept_examples, random_examples)

    def fit_cavs_from_activations(self, concept_acts: Mapping[str, Any], random_acts: Sequence[Any]) -> "TCAV":
        """Deprecated: use :meth:`fit_activations`."""
        _deprecated("TCAV.fit_cavs_from_activations", "TCAV.fit_activations")
        return self.fit_activations(concept_acts, random_acts)

    def scores(self, inputs: Any, target_class: int) -> TCAVResult:
        """Deprecated: use :meth:`explain`."""
        _deprecated("TCAV.scores", "TCAV.explain")
        return self.explain(inputs, target_class)

    def save_cavs(self, path: Union[str, os.PathLike]) -> Path:
        """Deprecated: use :meth:`save`."""
        _deprecated("TCAV.save_cavs", "TCAV.save")
        return self.save(path)

    def load_cavs(self, path: Union[str, os.PathLike], *, check_model: bool = True) -> "TCAV":
        """Deprecated: use ``TCAV.load(path, model)``.  Loads the file into
        this object, checked against its model, layer and settings as
        :meth:`load` checks."""
        _deprecated("TCAV.load_cavs", "TCAV.load(path, model)")
        check_bool(check_model, "check_model")
        h, arrays = files.read(path, check_model)
        return self._take_file(path, h, arrays, check_model)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


def _stable_hash(name: str) -> int:
    """A hash of a concept name that does not change between processes."""
    return zlib.crc32(name.encode("utf-8"))
