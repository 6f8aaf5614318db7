"""Segmentation concept vectors: semantic vectors (our formulation of Gu &
Tresp 2019) and Net2Vec (Fong & Vedaldi, CVPR 2018), with the held-out
set-IoU comparison against the best single unit (issue 5).

Semantics (docs/algorithms.md §4; docs/concept_vectors.md):

* Data: a Broden-format dataset (:class:`~interp_engine.data.BrodenDataset`
  or its directory) with pixel-level labels.  A concept is a pixel-level
  label; its mask in an image is where any of the image's label maps holds
  it, at the label resolution ``(S_h, S_w)``.
* ``method="semantic"`` (OUR formulation; the paper body was not available):
  per concept ``c`` a logit ``z = s_c * (v_c . a) + b_c`` at every spatial
  position of the layer, from the raw (un-binarized) activation vector
  ``a`` (K,), with ``v_c`` unit-norm, ``s_c >= 0`` its scale and ``b_c`` the
  bias.  Targets: the fraction ``y`` of the layer cell covered by the mask
  (area average, ``adaptive_avg_pool2d``), a soft label.  Loss:
  class-balanced, L2-regularized logistic loss
  ``a_c sum_i y_i softplus(-z_i) + n_c sum_i (1-y_i) softplus(z_i) + l2/2 |w|^2``
  with ``w = s_c v_c`` (the bias is not regularized) and ``a_c = 1/(2 sum y)``,
  ``n_c = 1/(2 sum (1-y))`` over all training positions (positive and
  negative mass count one half each).  Convex; solved by Newton's method
  with backtracking to ``|grad|_2 <= tol``.  Streaming with bounded memory:
  one pass keeps, per concept, its positive positions (``y > 0``; a seeded
  uniform sample of ``max_positives`` once there are more) and one shared
  seeded uniform sample of ``max_negatives`` positions of all images, whose
  ``y_c == 0`` members are concept ``c``'s negatives.  Each kept position is
  weighted by the inverse of its sampling fraction, then the positive and
  the negative terms are rescaled to one half each (ratio estimators of the
  full loss); the solve is exact on that sample, and on the full data when
  neither cap is reached.
* ``method="net2vec"`` (the paper): per concept, weights ``w`` (K,) and bias
  ``b``; prediction ``sigmoid(upsample(sum_k w_k I_k + b))`` with ``I_k`` the
  unit maps binarized at their top-``quantile`` threshold (exact, from the
  core's :class:`~interp_engine.ChannelQuantiles`, as in dissection) or the
  raw maps (``binarize=False``); bilinear upsampling to the label resolution
  (``align_corners=False``).  Loss: class-balanced BCE
  ``-mean(alpha M log p + (1-alpha)(1-M) log(1-p))`` with
  ``alpha = 1 - mean pixel fraction of the concept over the images that
  contain it``, on the images containing the concept only; Adam, zero
  initialization, ``epochs`` passes over the training data in a seeded order.
* ``method="cav"`` (TCAV's concept activation vector, Kim et al. 2018, from
  image-level examples): per concept, the images of the fitting data that
  contain it (any pixel of its mask) against a seeded random sample of the
  fitting images, cut to equal size and split 67/33, separated by a linear
  classifier (``classifier="sgd"``: scikit-learn SGD with captum's settings,
  the reference; ``"mean_difference"``: FastCAV's closed form; or any
  :class:`~interp_engine.methods.classifiers.Classifier`) on the spatial mean of the
  activations ``(K,)`` (TCAV's ``features="mean"``), so the vector lives in
  the same channel space as the others.  The vector is the classifier's unit
  normal (:func:`~interp_engine.methods.classifiers.train_cav`); as a segmentation
  predictor its scale is ``1 / std`` of the images' projections and its bias
  is calibrated (below; on by default for cav).
* Evaluation: set-IoU at 0.5 over the images given (``split="val"``):
  ``sum_images |p > 0.5 & M| / sum_images |p > 0.5 | M|``, with ``p`` the
  prediction upsampled to the label resolution (for semantic vectors the
  logit map is upsampled bilinearly, like Net2Vec's).  Next to it, the best
  single unit: the unit whose dissection-style mask (its map upsampled in
  float64 above its top-``quantile`` threshold of the training split) has the
  highest set-IoU with the concept on the training split, scored on the
  evaluated images.
"""
from __future__ import annotations

import functools
import os
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...engine.checks import check_bool, check_choice, check_int, check_positive_int, check_real
from ...engine.quantiles import ChannelQuantiles
from .. import _vector_files
from ..classifiers import make_classifier
from . import files
from .accumulators import _ActivationCache, _LogitHistograms, _SemanticSample, _UnitTally
from .data import (concept_masks, describe_transform, in_eval_mode, iter_batches, pixel_labels, resolve,
                   select, transform_key)
from .evaluation import ConceptVectorsEvaluation, evaluate_vectors
from .solver import METHODS, predictor_input, solve_balanced_logistic, train_cavs, train_net2vec

__all__ = ["ConceptVectors"]


class _ClassOrInstanceLoad:
    """``load`` of :class:`ConceptVectors`: called on the class, the
    classmethod of the protocol (``ConceptVectors.load(path, model)``); called
    on an instance, the old instance method (``cv.load(path)``, deprecated),
    which could not otherwise keep its name."""

    def __init__(self, on_class: Callable[..., Any]) -> None:
        self.on_class = on_class
        self.on_instance: Optional[Callable[..., Any]] = None
        functools.update_wrapper(self, on_class)

    def instance(self, fn: Callable[..., Any]) -> "_ClassOrInstanceLoad":
        self.on_instance = fn
        return self

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        if obj is None:
            return types.MethodType(self.on_class, owner)
        return types.MethodType(self.on_instance, obj)


class ConceptVectors:
    """Concept vectors learned from pixel masks at one layer of ``model``.

    ``ConceptVectors(model, layer, **settings).fit(dataset)`` learns one
    vector per pixel-level concept; :meth:`explain` scores them on held-out
    images against the best single unit (a
    :class:`~interp_engine.methods.concept_vectors.ConceptVectorsEvaluation`);
    :meth:`save` writes them and ``ConceptVectors.load(path, model)`` reads
    them back for the model they were computed for.

    Args:
        model: a ``torch.nn.Module`` (run in eval mode during the passes;
            its training flags are restored afterwards).
        layer: the name of a module whose output is ``(B, K, h, w)``.
        method: ``"semantic"`` (our formulation of Gu & Tresp: Newton on a
            class-balanced logistic loss from raw activations),
            ``"net2vec"`` (Fong & Vedaldi) or ``"cav"`` (TCAV's CAV from
            image-level examples, on spatially averaged activations).
        classifier: cav: ``"sgd"`` (default), ``"mean_difference"`` or a
            :class:`~interp_engine.methods.classifiers.Classifier`.
        l2: semantic: the L2 penalty on the weights (default 1e-3).
        tol, max_iter: semantic: Newton stops at ``|grad|_2 <= tol``.
        max_positives, max_negatives: semantic: the caps of the per-concept
            positive sample and of the shared sample of positions.
        binarize: net2vec: binarized unit maps (True, the paper) or raw
            activations (False).
        epochs, lr: net2vec: Adam passes over the training split and its
            learning rate.
        quantile: top fraction defining a unit's active region (0.005), for
            net2vec's binarization and the best-unit comparison.
        transform: used when a dataset is given as a directory (default
            ``"unit"``, the bundled ConceptCNN's input).
        batch_size, seed: of the passes; the seed drives the samples and the
            net2vec data order.
        calibrate_bias: after the fit, shift each bias so that the set-IoU
            of the upsampled prediction at 0.5 is highest on the fitting data
            (logit resolution 0.01; counted in the best-unit pass).  None
            (default): on for ``"semantic"`` (a class-balanced fit predicts
            far too wide masks at 0.5 for rare concepts) and ``"cav"`` (an
            image classifier has no pixel threshold), off for ``"net2vec"``
            (the paper).
        activation_cache: the model runs once per :meth:`fit`: the first pass
            writes the layer's activations (float32, so results are
            identical to an uncached run) and the label maps to memory-mapped
            files that the later passes (exact thresholds, best units,
            calibration, net2vec's epochs) read instead of running the model
            and decoding the images again.  False: every pass runs the model.
        cache_dir: where the cache files go (default: a temporary
            directory); they are deleted when :meth:`fit` returns.
    """

    def __init__(self, model, layer: str, *, method: str = "semantic", l2: float = 1e-3,
                 tol: float = 1e-9, max_iter: int = 100, max_positives: int = 20000,
                 max_negatives: int = 50000, binarize: bool = True, epochs: int = 30,
                 lr: float = 0.01, quantile: float = 0.005, transform: Any = "unit",
                 batch_size: int = 64, seed: int = 0, calibrate_bias: Optional[bool] = None,
                 activation_cache: bool = True, classifier: Any = "sgd",
                 cache_dir: Optional[Union[str, os.PathLike]] = None) -> None:
        import torch

        from ...capture import find_module

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(layer, str) or not layer:
            raise TypeError(f"layer must be a non-empty layer name (str); got {layer!r}")
        find_module(model, layer)  # ValueError with close matches
        check_choice(method, "method", METHODS)
        for name, v in (("l2", l2), ("tol", tol), ("lr", lr)):
            check_real(v, name, minimum=0.0, allow_inf=False, what="a finite number >= 0")
        l2, tol, lr = float(l2), float(tol), float(lr)
        quantile = check_real(quantile, "quantile", what="a float in (0, 1)")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be a float in (0, 1) (the top fraction, e.g. 0.005); "
                             f"got {quantile!r}")
        self.model = model
        self.layer = layer
        self.method = method
        self.l2 = float(l2)
        self.tol = float(tol)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.max_positives = check_positive_int(max_positives, "max_positives")
        self.max_negatives = check_positive_int(max_negatives, "max_negatives")
        self.binarize = check_bool(binarize, "binarize")
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = float(lr)
        self.quantile = float(quantile)
        self.transform = transform
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_int(seed, "seed", minimum=0, maximum=None)
        if calibrate_bias is not None and not isinstance(calibrate_bias, bool):
            raise TypeError(f"calibrate_bias must be None, True or False; got {calibrate_bias!r}")
        self.calibrate_bias = calibrate_bias
        self.classifier = make_classifier(classifier)
        if not isinstance(activation_cache, (bool, np.bool_)):
            raise TypeError(f"activation_cache must be True or False; got {activation_cache!r}")
        self.activation_cache = bool(activation_cache)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._cache: Optional[_ActivationCache] = None
        # learned state
        self.concepts: List[str] = []
        self.categories: List[str] = []
        self.labels: List[int] = []      # the concepts' label numbers in the fitting dataset
        self.skipped: List[str] = []     # labels without pixels, skipped by fit(concepts=None)
        self.vectors: Optional[np.ndarray] = None      # (L, K) unit norm
        self.scales: Optional[np.ndarray] = None       # (L,)
        self.biases: Optional[np.ndarray] = None       # (L,)
        self.solved_biases: Optional[np.ndarray] = None  # (L,) before calibration
        self.thresholds: Optional[np.ndarray] = None   # (K,)
        self.best_units: Optional[np.ndarray] = None   # (L,)
        self.train_unit_iou: Optional[np.ndarray] = None  # (L,)
        self.solve_info: Dict[str, Dict[str, Any]] = {}
        #: the fingerprint of the model the vectors were computed from (set by :meth:`fit`, read by
        #: :meth:`load`; written by :meth:`save`): ``{"class", "structure", "parameters", "tensors",
        #: "bytes"}`` (see ``interp_engine._fingerprint.model_fingerprint``); None before either
        self.model_key: Optional[Dict[str, Any]] = None
        self._model_unknown = False  # loaded from a file that records no model
        #: the fingerprint of the transform of the data the vectors were fitted on
        #: (``BrodenDataset.transform_key()``; saved and loaded with them): :meth:`explain` refuses data
        #: prepared by another transform.  None: unknown (a dataset object without ``transform_key``,
        #: vectors set by hand, a file that records none), then not checked.
        self.transform_key: Optional[Dict[str, Any]] = None
        #: seconds of the last fit: ``streaming_pass`` (the model, the quantile sketch, the
        #: sample), ``thresholds_pass``, ``solve`` (Newton, or net2vec's epochs), ``units_pass``
        #: (best units and calibration)
        self.timings: Dict[str, float] = {}
        self._keep_samples = False  # test hook: keep the semantic samples in self._samples
        self._samples: Dict[str, Tuple[Any, Any, Any]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def weights(self) -> np.ndarray:
        """float64 ``(L, K)``: ``scale * vector``, the weights of the logit."""
        self._check_fitted()
        return self.vectors * self.scales[:, None]

    def _check_fitted(self) -> None:
        if self.vectors is None:
            raise RuntimeError("no concept vectors: call fit() or load() first")

    # ------------------------------------------------------------------ data
    def _batches(self, ds, idx: Sequence[int], *, shuffle_seed: Optional[int] = None):
        """(activations, label maps) batches of the rows ``idx`` (see
        :func:`~interp_engine.methods.concept_vectors.data.iter_batches`), from
        the activation cache of the running fit once it is filled."""
        return iter_batches(self.model, self.layer, ds, idx, batch_size=self.batch_size, cache=self._cache,
                            shuffle_seed=shuffle_seed)

    # ------------------------------------------------------------------ fit
    def fit(self, dataset: Any, concepts: Optional[Sequence[str]] = None, *,
            split: Optional[str] = "train") -> "ConceptVectors":
        """Learn one vector per concept on ``split`` of ``dataset``.

        Args:
            dataset: a Broden directory or a BrodenDataset(-like) object whose
                items have ``"image"`` and ``"pixel_labels"`` int (P, S, S).
            concepts: pixel-level label names; None = every pixel-level label
                (those without any pixel in the split are skipped and listed
                in ``self.skipped``; a named concept without pixels raises).
            split: the rows used (``"train"``); None = all rows.

        Sets ``concepts``, ``vectors`` float64 (L, K) unit norm, ``scales``
        (L,), ``biases`` (L,), ``thresholds`` (K,), ``best_units`` (L,),
        ``train_unit_iou`` (L,), ``solve_info`` and :attr:`model_key` (the
        fingerprint of the model, saved with the vectors).  Returns self.
        """
        ds, idx = resolve(dataset, split, self.transform)
        names, labels, cats, explicit = select(ds, concepts)
        key = _vector_files.model_key(self.model)  # the model as the fit sees it (recorded by save())
        tkey = transform_key(ds)
        if not self.activation_cache:
            in_eval_mode(self.model, lambda: self._fit(ds, idx, names, labels, cats, explicit))
        else:
            with _ActivationCache(self.cache_dir) as cache:
                self._cache = cache
                try:
                    in_eval_mode(self.model, lambda: self._fit(ds, idx, names, labels, cats, explicit))
                finally:
                    self._cache = None
        self.model_key, self._model_unknown, self.transform_key = key, False, tkey
        return self

    def _fit(self, ds, idx, names, labels, cats, explicit):
        import torch

        clock = time.perf_counter()
        self.timings = {}

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings[name] = now - clock
            clock = now

        # pass 1: quantile sketch (+ the semantic sample, + concept statistics)
        sketch: Optional[ChannelQuantiles] = None
        sem = _SemanticSample(len(labels), self.max_positives, self.max_negatives, self.seed) \
            if self.method == "semantic" else None
        pix_count = torch.zeros(len(labels), dtype=torch.float64)
        frac_sum = torch.zeros(len(labels), dtype=torch.float64)   # sum of per-image fractions (net2vec alpha)
        img_count = torch.zeros(len(labels), dtype=torch.float64)
        pooled: List[Any] = []   # cav: spatial means (B, K) and concept presence (B, L)
        present: List[Any] = []
        shape = None
        for a, pl in self._batches(ds, idx):
            if sketch is None:
                sketch = ChannelQuantiles(a.shape[1], seed=self.seed)
                shape = tuple(a.shape[1:])
            sketch.update(a)
            m = concept_masks(pl, labels)
            cnt = m.flatten(2).sum(2).to(torch.float64)  # (B, L)
            pix_count += cnt.sum(0)
            has = cnt > 0
            img_count += has.sum(0)
            frac_sum += (cnt / float(m.shape[2] * m.shape[3])).sum(0)
            if sem is not None:
                sem.update(a, m)
            if self.method == "cav":
                pooled.append(a.mean((2, 3)).to(torch.float64))
                present.append(has)
        empty = [n for n, c in zip(names, pix_count.tolist()) if c == 0]
        if empty and explicit:
            raise ValueError(f"concepts {empty} have no positive pixels in the fitting data; drop them")
        keep = [i for i, c in enumerate(pix_count.tolist()) if c > 0]
        if not keep:
            raise ValueError("no concept has a positive pixel in the fitting data")
        self.skipped = empty
        lap("streaming_pass")
        # pass 2: exact thresholds
        ex = sketch.exact_pass(1.0 - self.quantile)
        for a, _ in self._batches(ds, idx):
            ex.update(a)
        thr = np.asarray(ex.result(), dtype=np.float64)
        self.thresholds = thr
        lap("thresholds_pass")
        # the vectors
        K = shape[0]
        W = np.zeros((len(labels), K))
        B = np.zeros(len(labels))
        self.solve_info = {}
        if self.method == "semantic":
            for i in keep:
                x, c1, c0 = sem.problem(i)
                if self._keep_samples:
                    self._samples[names[i]] = (x, c1, c0)
                w, b, info = solve_balanced_logistic(x, c1, c0, l2=self.l2, tol=self.tol,
                                                     max_iter=self.max_iter)
                info.update(sem.info(i))
                W[i], B[i] = w, b
                self.solve_info[names[i]] = info
        elif self.method == "cav":
            W, B, info = train_cavs(torch.cat(pooled).numpy(), torch.cat(present).numpy(), keep, names,
                                    self.classifier, self.seed)
            self.solve_info.update(info)
        else:
            alpha = 1.0 - (frac_sum / img_count.clamp(min=1)).numpy()
            W, B = train_net2vec(lambda order: self._batches(ds, idx, shuffle_seed=order), labels, alpha, K,
                                 tuple(int(s) for s in ds.pixel_size), thr, binarize=self.binarize,
                                 epochs=self.epochs, lr=self.lr, seed=self.seed)
        keep_a = np.array(keep)
        norms = np.linalg.norm(W[keep_a], axis=1)
        vec = W[keep_a] / np.where(norms > 0, norms, 1.0)[:, None]
        self.concepts = [names[i] for i in keep]
        self.categories = [cats[i] for i in keep]
        self.labels = [labels[i] for i in keep]
        self.vectors, self.scales, self.biases = vec, norms, B[keep_a]
        self.solved_biases = self.biases.copy()
        lap("solve")
        # pass 3: the units' dissection counts (best units) and, with calibrate_bias, the logit
        # histograms of the calibration, in one pass
        tally = _UnitTally(ds, labels, thr)
        hist = _LogitHistograms(self.predict_logits, ds, self.labels) if self._calibrate() else None
        for a, pl in self._batches(ds, idx):
            tally.update(a, pl)
            if hist is not None:
                hist.update(a, pl)
        if hist is not None:
            self.biases = self.biases - hist.best_offsets()
        inter, upix, lpix = tally.counts()
        unit_iou = inter / np.maximum(upix[:, None] + lpix[None, :] - inter, 1)
        best = np.argmax(unit_iou, axis=0)
        best_iou = unit_iou[best, np.arange(len(labels))]
        self.best_units = np.where(best_iou[keep_a] > 0, best[keep_a], -1).astype(np.int64)
        self.train_unit_iou = best_iou[keep_a].astype(np.float64)
        lap("units_pass")
        return self

    def _calibrate(self) -> bool:
        return self.method != "net2vec" if self.calibrate_bias is None else bool(self.calibrate_bias)

    # ------------------------------------------------------------------ evaluate
    def predict_logits(self, acts):
        """Logit maps at the layer's resolution: float32 ``(B, L, h, w)`` from
        activations ``(B, K, h, w)`` (binarized first for net2vec with
        ``binarize=True``).  ``sigmoid`` of the upsampled logits is the
        predicted mask probability."""
        import torch

        self._check_fitted()
        a = torch.as_tensor(acts).to(torch.float32)
        x = predictor_input(a, torch.as_tensor(self.thresholds, dtype=torch.float32),
                            self.method == "net2vec" and self.binarize)
        w = torch.as_tensor(self.weights, dtype=torch.float32)
        return torch.einsum("bkhw,lk->blhw", x, w) + torch.as_tensor(self.biases, dtype=torch.float32)[
            None, :, None, None]

    def explain(self, dataset: Any, *, split: Optional[str] = "val") -> ConceptVectorsEvaluation:
        """Set-IoU at 0.5 of every vector on ``split`` of ``dataset`` (held-out
        images; None: all rows), next to the best single unit's (chosen on
        the fitting data).  Returns a :class:`ConceptVectorsEvaluation`
        (``.table()``, ``.to_csv(path)``, ``.save(path)``, ``str``).  Data
        prepared by another transform than the fit's is refused (field
        ``'transform'``)."""
        self._check_fitted()
        ds, idx = resolve(dataset, split, self.transform)
        theirs = transform_key(ds)
        if self.transform_key is not None and theirs is not None and theirs != self.transform_key:
            raise ValueError(f"dataset: its images are prepared by the transform {describe_transform(theirs)}, "
                             f"but the vectors were fitted on images prepared by "
                             f"{describe_transform(self.transform_key)} (field 'transform'): evaluate on data "
                             f"with the fit's transform (ConceptVectors(..., transform=...) for a directory), "
                             f"or fit again")
        avail = pixel_labels(ds)
        missing = [c for c in self.concepts if c not in avail]
        if missing:
            raise ValueError(f"concepts {missing} are not pixel-level labels of this dataset")
        labels = [avail[c][0] for c in self.concepts]
        return in_eval_mode(self.model, lambda: evaluate_vectors(self, ds, self._batches(ds, idx), len(idx), labels))

    def evaluate(self, dataset: Any, *, split: Optional[str] = "val") -> ConceptVectorsEvaluation:
        """Deprecated: use :meth:`explain` (the same arguments and result)."""
        warnings.warn("ConceptVectors.evaluate is deprecated; use ConceptVectors.explain", DeprecationWarning,
                      stacklevel=2)
        return self.explain(dataset, split=split)

    # ------------------------------------------------------------------ save / load
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the vectors to an ``.npz`` file (no pickle) and return its
        path: vectors (L, K), scales, biases, thresholds, best_units,
        train_unit_iou and a JSON header: the layer, method, binarize,
        quantile, the concepts (names, categories, label numbers), the
        feature dimension ``dim`` (K), ``model``, the fingerprint of the
        model the vectors were computed from (:attr:`model_key`: class,
        module tree, a digest of every parameter and buffer) and
        ``transform``, that of the fitting data's transform
        (:attr:`transform_key`)."""
        self._check_fitted()
        return files.write(path, self)

    @_ClassOrInstanceLoad
    def load(cls, path: Union[str, os.PathLike], model: Any, layer: Optional[str] = None, *,
             check_model: bool = True, **settings: Any) -> "ConceptVectors":
        """Read vectors written by :meth:`save` for ``model`` at ``layer``
        (default: the file's layer): ``ConceptVectors(model, layer,
        **settings)`` with the file's method, binarize and quantile unless
        given, holding the file's vectors.

        The file is checked against the format's schema
        (``allow_pickle=False``; L concepts of the header, K = its ``dim``
        units: ``vectors`` (L, K), ``scales``, ``biases``,
        ``train_unit_iou`` (L,), ``thresholds`` (K,), ``best_units`` (L,) in
        [-1, K)), then against the object: the file's layer, method,
        binarize and quantile must be its own (a layer or setting given that
        differs is refused) and, with ``check_model=True`` (default), the
        vectors must have been computed from ``model`` (the same class,
        module tree, parameters and buffers, compared by fingerprint).  A
        mismatch is a ValueError naming the file and the field
        (``vectors.npz was computed for layer 'conv4', not 'conv3'``).

        Files of version 1 (written before the model was recorded) are
        refused with ``check_model=True``: they cannot be checked.
        ``check_model=False`` loads them, and vectors of another model (a
        fine-tuned copy, say) knowingly: the layer and the settings are still
        checked; :attr:`model_key` then keeps the file's model (None when the
        file records none), so saving again does not relabel the vectors.

        Called on an instance, ``cv.load(path, *, check_model=True)`` (the
        old form, deprecated) loads the file into ``cv``, checked against
        ``cv``'s model, layer and settings in the same way."""
        check_bool(check_model, "check_model")
        h, arrays = files.read(path, check_model)
        cv = _vector_files.build_for_file(cls, path, h, model, layer, settings, files.SETTINGS)
        return cv._take_file(path, h, arrays, check_model)

    @load.instance
    def load(self, path: Union[str, os.PathLike], *, check_model: bool = True) -> "ConceptVectors":
        warnings.warn("ConceptVectors().load(path) is deprecated; use ConceptVectors.load(path, model)",
                      DeprecationWarning, stacklevel=2)
        check_bool(check_model, "check_model")
        h, arrays = files.read(path, check_model)
        return self._take_file(path, h, arrays, check_model)

    def _take_file(self, path: Any, h: Dict[str, Any], arrays: Dict[str, np.ndarray],
                   check_model: bool) -> "ConceptVectors":
        """Check the file's header ``h`` against this object, then hold its vectors."""
        files.check(path, h, self, check_model)
        recorded = h.get("model")
        self.concepts, self.categories = list(h["concepts"]), list(h["categories"])
        self.labels = list(h["labels"])
        for k in files.ARRAYS:
            setattr(self, k, arrays[k])
        self.solved_biases, self.solve_info, self.skipped = None, {}, []  # of an earlier fit
        self.model_key = None if recorded is None else dict(recorded)
        self._model_unknown = recorded is None
        t = h.get("transform")
        self.transform_key = None if t is None else dict(t)
        return self
