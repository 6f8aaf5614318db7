"""Segmentation concept vectors: semantic vectors (our formulation of Gu &
Tresp 2019) and Net2Vec (Fong & Vedaldi, CVPR 2018), with the held-out
set-IoU comparison against the best single unit (issue 5).

Semantics (shared/ALGORITHMS.md section 4; docs/concept_vectors.md):

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
  :class:`~interp_engine.methods.tcav.Classifier`) on the spatial mean of the
  activations ``(K,)`` (TCAV's ``features="mean"``), so the vector lives in
  the same channel space as the others.  The vector is the classifier's unit
  normal (:func:`~interp_engine.methods.tcav.train_cav`); as a segmentation
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

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._rows import ConceptRows
from ..._npz import Array, MapOf, Num, OneOf, load_npz, save_npz
from .._vector_files import MODEL_SPEC, entries
from ...engine._arrays import check_bool, check_choice, check_int, check_positive_int, check_real
from ...engine.quantiles import ChannelQuantiles

__all__ = ["ConceptVectors", "ConceptVectorsEvaluation", "ConceptIoURow", "METHODS",
           "solve_balanced_logistic"]

METHODS = ("semantic", "net2vec", "cav")
_FORMAT = "interp_engine.concept_vectors"
_VERSION = 2  # 2: the header records the model (its fingerprint) and dim


# ----------------------------------------------------------------------------- the convex solve

def _balanced_loss_grad(x, c1, c0, theta, l2):
    """Loss, gradient for ``theta = [w; b]`` (float64 torch)."""
    import torch
    import torch.nn.functional as F

    z = x @ theta[:-1] + theta[-1]
    loss = (c1 * F.softplus(-z) + c0 * F.softplus(z)).sum() + 0.5 * l2 * (theta[:-1] @ theta[:-1])
    s = torch.sigmoid(z)
    r = (c1 + c0) * s - c1
    g = torch.cat([x.T @ r + l2 * theta[:-1], r.sum()[None]])
    return loss, g, s


def solve_balanced_logistic(x, c1, c0, *, l2: float, tol: float = 1e-9, max_iter: int = 100
                            ) -> Tuple[np.ndarray, float, Dict[str, Any]]:
    """Minimize ``sum_i c1_i softplus(-z_i) + c0_i softplus(z_i) + l2/2 |w|^2``
    with ``z_i = w . x_i + b`` by Newton's method with backtracking (Armijo)
    until the gradient's 2-norm is ``<= tol``.

    Args:
        x: float ``(n, K)`` features (numpy or torch; computed in float64).
        c1, c0: float ``(n,)`` non-negative weights of the positive and the
            negative term of each row (a soft label ``y`` with weight ``m``
            gives ``c1 = m y``, ``c0 = m (1 - y)``).
        l2: the L2 penalty on ``w`` (> 0: strictly convex in ``w``).
        tol: stop when ``|grad|_2 <= tol``.
        max_iter: at most this many Newton steps.

    Returns:
        ``(w float64 (K,), b float, info)`` with ``info`` = ``{"iterations",
        "grad_norm", "loss", "converged"}``.
    """
    import torch

    x = torch.as_tensor(x, dtype=torch.float64)
    c1 = torch.as_tensor(c1, dtype=torch.float64)
    c0 = torch.as_tensor(c0, dtype=torch.float64)
    n, k = x.shape
    theta = torch.zeros(k + 1, dtype=torch.float64)
    reg = torch.full((k + 1,), float(l2), dtype=torch.float64)
    reg[-1] = 0.0
    loss, g, s = _balanced_loss_grad(x, c1, c0, theta, l2)
    it = 0
    while float(torch.linalg.vector_norm(g)) > tol and it < max_iter:
        h = (c1 + c0) * s * (1 - s)
        xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
        hess = (xt * h[:, None]).T @ xt + torch.diag(reg)
        try:
            step = torch.linalg.solve(hess, g)
        except RuntimeError:  # singular (e.g. an all-zero feature with l2 == 0): least squares
            step = torch.linalg.lstsq(hess, g[:, None]).solution[:, 0]
        t, dec = 1.0, float(g @ step)
        while True:
            cand = theta - t * step
            new_loss, new_g, new_s = _balanced_loss_grad(x, c1, c0, cand, l2)
            if float(new_loss) <= float(loss) - 1e-4 * t * dec or t < 1e-10:
                break
            t *= 0.5
        theta, loss, g, s = cand, new_loss, new_g, new_s
        it += 1
    gn = float(torch.linalg.vector_norm(g))
    info = {"iterations": it, "grad_norm": gn, "loss": float(loss), "converged": gn <= tol}
    return theta[:-1].numpy().copy(), float(theta[-1]), info


# ----------------------------------------------------------------------------- results

@dataclass
class ConceptIoURow:
    """Held-out segmentation IoU of one concept vector and the best unit.

    Attributes:
        concept, category: the label and its category.
        method: ``"semantic"`` or ``"net2vec"``.
        iou: the vector's set-IoU at 0.5 on the evaluated images.
        best_unit: the unit with the highest set-IoU for the concept on the
            training split (-1 when none overlaps it).
        unit_iou: that unit's set-IoU on the evaluated images.
        train_unit_iou: its set-IoU on the training split.
        label_pixels: the concept's pixels in the evaluated images.
    """

    concept: str
    category: str
    method: str
    iou: float
    best_unit: int
    unit_iou: float
    train_unit_iou: float
    label_pixels: int

    @property
    def beats_unit(self) -> bool:
        """The vector's IoU is above the best unit's."""
        return self.iou > self.unit_iou


@dataclass
class ConceptVectorsEvaluation(ConceptRows):
    """One :class:`ConceptIoURow` per concept (in fit order)."""

    layer: str
    method: str
    num_images: int
    rows: List[ConceptIoURow]

    #: the fields of :meth:`table` (one plain dict per concept, no pandas)
    _TABLE_KEYS = ("concept", "category", "method", "iou", "best_unit", "unit_iou", "train_unit_iou",
                "label_pixels", "beats_unit")

    def __str__(self) -> str:
        lines = [f"{self.method} concept vectors at {self.layer!r}: set-IoU at 0.5 on "
                 f"{self.num_images} images",
                 f"{'concept':<16} {'category':<10} {'vector':>7} {'unit':>5} {'unit IoU':>8}"]
        for r in self.rows:
            lines.append(f"{r.concept[:16]:<16} {r.category[:10]:<10} {r.iou:7.4f} {r.best_unit:>5} "
                         f"{r.unit_iou:8.4f}{'  *' if r.beats_unit else ''}")
        n = sum(r.beats_unit for r in self.rows)
        lines.append(f"vector above the best unit for {n} of {len(self.rows)} concepts (*)")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the method

class ConceptVectors:
    """Concept vectors learned from pixel masks at one layer of ``model``.

    Args:
        model: a ``torch.nn.Module`` (run in eval mode during the passes;
            its training flags are restored afterwards).
        layer: the name of a module whose output is ``(B, K, h, w)``.
        method: ``"semantic"`` (our formulation of Gu & Tresp: Newton on a
            class-balanced logistic loss from raw activations),
            ``"net2vec"`` (Fong & Vedaldi) or ``"cav"`` (TCAV's CAV from
            image-level examples, on spatially averaged activations).
        classifier: cav: ``"sgd"`` (default), ``"mean_difference"`` or a
            :class:`~interp_engine.methods.tcav.Classifier`.
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
        from ..tcav import _make_classifier

        self.classifier = _make_classifier(classifier)
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
        #: (``BrodenDataset.transform_key()``; saved and loaded with them): :meth:`evaluate` refuses data
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
    def _resolve(self, dataset: Any, split: Optional[str]):
        """(BrodenDataset-like, indices) for ``split`` (None: all rows)."""
        if isinstance(dataset, (str, os.PathLike)):
            from ...data.broden import BrodenDataset

            ds = BrodenDataset(dataset, split=split, transform=self.transform)
            idx = list(range(len(ds)))
        else:
            need = ("label_names", "label_category", "categories", "pixel_size", "__getitem__", "__len__")
            missing = [n for n in need if not hasattr(dataset, n)]
            if missing:
                raise TypeError(f"dataset must be a Broden directory path or a BrodenDataset-like object; "
                                f"got {type(dataset).__name__} without {missing}")
            ds = dataset
            if split is None:
                idx = list(range(len(ds)))
            else:
                splits = getattr(ds, "splits", None)
                if splits is None or all(s is None for s in splits):
                    raise ValueError(f"split={split!r} needs a dataset with a split column; this one has none")
                idx = [i for i, s in enumerate(splits) if s == split]
        if not idx:
            raise ValueError(f"dataset has no images{'' if split is None else f' in split {split!r}'}")
        pix = list(getattr(ds, "pixel_categories", []))
        if not pix or int(getattr(ds, "num_pixel_maps", 0)) == 0:
            raise ValueError("dataset has no pixel-level labels (no pixel category / label maps); concept "
                             "vectors need segmentation masks")
        return ds, idx

    def _pixel_labels(self, ds) -> Dict[str, Tuple[int, str]]:
        cat_of = np.asarray(ds.label_category, dtype=np.int64)
        pix = set(ds.pixel_categories)
        out = {}
        for lab, name in enumerate(ds.label_names):
            c = int(cat_of[lab])
            if lab > 0 and 0 <= c < len(ds.categories) and ds.categories[c] in pix:
                out[str(name)] = (lab, ds.categories[c])
        return out

    def _select(self, ds, concepts: Optional[Sequence[str]]) -> Tuple[List[str], List[int], List[str], bool]:
        avail = self._pixel_labels(ds)
        if concepts is None:
            names = list(avail)
            explicit = False
        else:
            if isinstance(concepts, str):
                concepts = [concepts]
            names = list(concepts)
            if not names:
                raise ValueError("concepts must be None (all pixel labels) or a non-empty list of names")
            unknown = [n for n in names if n not in avail]
            if unknown:
                raise ValueError(f"concepts {unknown} are not pixel-level labels of this dataset; "
                                 f"available: {sorted(avail)}")
            if len(set(names)) != len(names):
                raise ValueError(f"concepts must not repeat a name; got {names}")
            explicit = True
        return names, [avail[n][0] for n in names], [avail[n][1] for n in names], explicit

    def _batches(self, ds, idx: Sequence[int], *, shuffle_seed: Optional[int] = None):
        """Yield (acts float32 cpu (B, K, h, w), pixel_labels int (B, P, S, S)):
        from the model, or from the activation cache once a pass of
        :meth:`fit` has filled it (that first pass also writes it)."""
        import torch

        from ...capture import iter_activations

        pos = np.arange(len(idx))
        if shuffle_seed is not None:
            pos = np.random.default_rng(shuffle_seed).permutation(len(idx))
        cache = self._cache
        if cache is not None and cache.complete:
            for s in range(0, len(pos), self.batch_size):
                yield cache.read(pos[s:s + self.batch_size])
            return
        fill = cache is not None and shuffle_seed is None
        order = [idx[i] for i in pos]
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, order),
                                             batch_size=self.batch_size, shuffle=False)
        offset = 0
        for batch, acts in iter_activations(self.model, self.layer, loader):
            a = acts[self.layer].detach().to("cpu", torch.float32)
            if a.ndim != 4:
                raise ValueError(f"layer {self.layer!r} gave activations of shape {tuple(a.shape)}; "
                                 f"expected (B, K, h, w)")
            pl = batch["pixel_labels"]
            if pl.shape[0] != a.shape[0] or tuple(pl.shape[2:]) != tuple(int(s) for s in ds.pixel_size):
                raise ValueError(f"pixel_labels of shape {tuple(pl.shape)} do not match {a.shape[0]} images "
                                 f"with label maps of size {tuple(ds.pixel_size)}")
            if fill:
                cache.write(offset, a, pl, len(idx))
            offset += a.shape[0]
            yield a, pl
        if fill:
            cache.complete = True

    @staticmethod
    def _masks(pl, labels):
        """bool (B, L, S, S): concept masks from int (B, P, S, S) label maps."""
        import torch

        lab = torch.as_tensor(labels, dtype=pl.dtype)
        return (pl[:, :, None] == lab[None, None, :, None, None]).any(dim=1)

    def _run(self, fn):
        """Run ``fn()`` with the model in eval mode, restoring its flags."""
        flags = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            return fn()
        finally:
            for m, f in flags.items():
                m.training = f

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
        from .._vector_files import model_key

        ds, idx = self._resolve(dataset, split)
        names, labels, cats, explicit = self._select(ds, concepts)
        key = model_key(self.model)  # the model as the fit sees it (recorded by save())
        tkey = _transform_key(ds)
        if not self.activation_cache:
            self._run(lambda: self._fit(ds, idx, names, labels, cats, explicit))
        else:
            with _ActivationCache(self.cache_dir) as cache:
                self._cache = cache
                try:
                    self._run(lambda: self._fit(ds, idx, names, labels, cats, explicit))
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
            m = self._masks(pl, labels)
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
            W, B = self._train_cavs(torch.cat(pooled).numpy(), torch.cat(present).numpy(), keep, names)
        else:
            alpha = 1.0 - (frac_sum / img_count.clamp(min=1)).numpy()
            W, B = self._train_net2vec(ds, idx, labels, alpha, K, thr)
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
        hist = _LogitHistograms(self, ds, self.labels) if self._calibrate() else None
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

    def _train_cavs(self, x: np.ndarray, present: np.ndarray, keep: Sequence[int], names: Sequence[str]):
        """CAVs on the images' spatial means ``x`` (N, K): each concept's images
        against a seeded random sample of all images (equal size); weights
        ``v / std(x v)`` and bias ``-mean(x v) / std(x v)`` (the calibration
        then moves the bias)."""
        from ..tcav import train_cav

        W = np.zeros((present.shape[1], x.shape[1]))
        B = np.zeros(present.shape[1])
        for i in keep:
            pos = x[present[:, i]]
            rng = np.random.default_rng([self.seed, i, 11])
            neg = x[rng.choice(len(x), size=min(len(pos), len(x)), replace=False)]
            if len(pos) < 2:
                raise ValueError(f"concept {names[i]!r} is in {len(pos)} image(s) of the fitting data; a CAV "
                                 f"needs at least 2")
            v, acc = train_cav(pos, neg, self.classifier, seed=int(rng.integers(2**31 - 1)))
            proj = x @ v
            sd = float(proj.std())
            sd = sd if sd > 0 else 1.0
            W[i], B[i] = v / sd, -float(proj.mean()) / sd
            self.solve_info[names[i]] = {"accuracy": acc, "positive_images": int(len(pos)),
                                         "random_images": int(len(neg))}
        return W, B

    def _features(self, a, thr_t):
        import torch

        if self.method == "net2vec" and self.binarize:
            return (a > thr_t[None, :, None, None]).to(torch.float32)
        return a

    def _train_net2vec(self, ds, idx, labels, alpha, K, thr):
        import torch
        import torch.nn.functional as F

        L = len(labels)
        S = tuple(int(s) for s in ds.pixel_size)
        thr_t = torch.as_tensor(thr, dtype=torch.float32)
        w = torch.zeros(L, K, dtype=torch.float32, requires_grad=True)
        b = torch.zeros(L, dtype=torch.float32, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=self.lr)
        al = torch.as_tensor(alpha, dtype=torch.float32)
        rng = np.random.default_rng([self.seed, 5])
        for _ in range(self.epochs):
            for a, pl in self._batches(ds, idx, shuffle_seed=int(rng.integers(2**31 - 1))):
                x = self._features(a, thr_t)
                m = self._masks(pl, labels).to(torch.float32)               # (B, L, S, S)
                has = (m.flatten(2).sum(2) > 0).to(torch.float32)          # (B, L)
                n_img = has.sum(0)                                          # (L,)
                if float(n_img.sum()) == 0:
                    continue
                z = torch.einsum("bkhw,lk->blhw", x, w) + b[None, :, None, None]
                z = F.interpolate(z, size=S, mode="bilinear", align_corners=False)
                # -(alpha M log p + (1 - alpha)(1 - M) log(1 - p)), mean over the images containing c
                pix = al[None, :, None, None] * m * F.softplus(-z) + \
                    (1 - al)[None, :, None, None] * (1 - m) * F.softplus(z)
                per = (pix.mean((2, 3)) * has).sum(0) / n_img.clamp(min=1)  # (L,)
                loss = per.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return w.detach().to(torch.float64).numpy(), b.detach().to(torch.float64).numpy()

    # ------------------------------------------------------------------ evaluate
    def predict_logits(self, acts):
        """Logit maps at the layer's resolution: float32 ``(B, L, h, w)`` from
        activations ``(B, K, h, w)`` (binarized first for net2vec with
        ``binarize=True``).  ``sigmoid`` of the upsampled logits is the
        predicted mask probability."""
        import torch

        self._check_fitted()
        a = torch.as_tensor(acts).to(torch.float32)
        x = self._features(a, torch.as_tensor(self.thresholds, dtype=torch.float32))
        w = torch.as_tensor(self.weights, dtype=torch.float32)
        return torch.einsum("bkhw,lk->blhw", x, w) + torch.as_tensor(self.biases, dtype=torch.float32)[
            None, :, None, None]

    def evaluate(self, dataset: Any, *, split: Optional[str] = "val") -> ConceptVectorsEvaluation:
        """Set-IoU at 0.5 of every vector on ``split`` of ``dataset`` (held-out
        images), next to the best single unit's (chosen on the fitting data).
        Returns a :class:`ConceptVectorsEvaluation` (``.table()``, ``str``)."""
        self._check_fitted()
        ds, idx = self._resolve(dataset, split)
        theirs = _transform_key(ds)
        if self.transform_key is not None and theirs is not None and theirs != self.transform_key:
            raise ValueError(f"dataset: its images are prepared by the transform {_describe_transform(theirs)}, "
                             f"but the vectors were fitted on images prepared by "
                             f"{_describe_transform(self.transform_key)} (field 'transform'): evaluate on data "
                             f"with the fit's transform (ConceptVectors(..., transform=...) for a directory), "
                             f"or fit again")
        avail = self._pixel_labels(ds)
        missing = [c for c in self.concepts if c not in avail]
        if missing:
            raise ValueError(f"concepts {missing} are not pixel-level labels of this dataset")
        labels = [avail[c][0] for c in self.concepts]
        return self._run(lambda: self._evaluate(ds, idx, labels))

    def _evaluate(self, ds, idx, labels):
        import torch
        import torch.nn.functional as F

        S = tuple(int(s) for s in ds.pixel_size)
        L = len(labels)
        vi = torch.zeros(L, dtype=torch.int64)
        vu = torch.zeros(L, dtype=torch.int64)
        tally = _UnitTally(ds, labels, self.thresholds)
        for a, pl in self._batches(ds, idx):
            if a.shape[1] != self.vectors.shape[1]:
                raise ValueError(f"layer {self.layer!r} has {a.shape[1]} channels; the vectors have "
                                 f"{self.vectors.shape[1]}")
            z = F.interpolate(self.predict_logits(a), size=S, mode="bilinear", align_corners=False)
            pred = z > 0  # sigmoid > 0.5
            m = self._masks(pl, labels)
            vi += (pred & m).sum((0, 2, 3))
            vu += (pred | m).sum((0, 2, 3))
            tally.update(a, pl)
        inter, upix, lpix = tally.counts()
        rows = []
        for j, c in enumerate(self.concepts):
            u = int(self.best_units[j])
            uiou = 0.0 if u < 0 else float(inter[u, j] / max(upix[u] + lpix[j] - inter[u, j], 1))
            rows.append(ConceptIoURow(concept=c, category=self.categories[j], method=self.method,
                                      iou=float(vi[j]) / max(int(vu[j]), 1), best_unit=u, unit_iou=uiou,
                                      train_unit_iou=float(self.train_unit_iou[j]),
                                      label_pixels=int(lpix[j])))
        return ConceptVectorsEvaluation(self.layer, self.method, len(idx), rows)

    # ------------------------------------------------------------------ save / load
    def _header(self) -> Dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "layer": self.layer, "method": self.method,
                "binarize": self.binarize, "quantile": self.quantile, "concepts": self.concepts,
                "categories": self.categories, "labels": [int(x) for x in self.labels],
                "dim": int(self.vectors.shape[1]), "model": self._saved_model_key(),
                "transform": self.transform_key}

    def _saved_model_key(self) -> Optional[Dict[str, Any]]:
        if self.model_key is not None or self._model_unknown:
            return self.model_key
        # vectors set by hand (never fit nor loaded): they are taken to be the bound model's
        from .._vector_files import model_key

        return model_key(self.model)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the vectors to an ``.npz`` file (no pickle): vectors (L, K),
        scales, biases, thresholds, best_units, train_unit_iou and a JSON
        header: the layer, method, binarize, quantile, the concepts (names,
        categories, label numbers), the feature dimension ``dim`` (K) and
        ``model``, the fingerprint of the model the vectors were computed
        from (:attr:`model_key`: class, module tree, a digest of every
        parameter and buffer)."""
        self._check_fitted()
        save_npz(path, {"vectors": self.vectors, "scales": self.scales, "biases": self.biases,
                        "thresholds": self.thresholds, "best_units": self.best_units,
                        "train_unit_iou": self.train_unit_iou}, self._header(), compress=False)

    def load(self, path: Union[str, os.PathLike], *, check_model: bool = True) -> "ConceptVectors":
        """Read a file written by :meth:`save` (``allow_pickle=False``), checked
        against the format's schema (L concepts of the header, K = its
        ``dim`` units: ``vectors`` (L, K), ``scales``, ``biases``,
        ``train_unit_iou`` (L,), ``thresholds`` (K,), ``best_units`` (L,) in
        [-1, K)), then against this object: the file's layer, method,
        binarize and quantile must be this object's and, with
        ``check_model=True`` (default), its vectors must have been computed
        from this object's model (the same class, module tree, parameters
        and buffers, compared by fingerprint).  A mismatch is a ValueError
        naming the file and the field (``vectors.npz was computed for layer
        'conv3', not 'conv4'``).

        Files of version 1 (written before the model was recorded) are
        refused with ``check_model=True``: they cannot be checked.
        ``check_model=False`` loads them, and vectors of another model (a
        fine-tuned copy, say) knowingly: the layer and the settings are still
        checked; :attr:`model_key` then keeps the file's model (None when the
        file records none), so saving again does not relabel the vectors."""
        from .._vector_files import check_layer, check_model as _check_model, check_setting
        from .._vector_files import file_version, refuse_version_1

        check_bool(check_model, "check_model")
        what = "concept-vector file"
        legacy = file_version(path, _FORMAT, what) == 1
        if legacy and check_model:
            refuse_version_1(path, what, "ConceptVectors", "its layer, method, binarize and quantile")
        if legacy:
            h, arrays = load_npz(path, _FORMAT, 1, what, _HEADER_V1, _arrays)
        else:
            h, arrays = load_npz(path, _FORMAT, _VERSION, what, _HEADER, _arrays)
        check_layer(path, h["layer"], self.layer, "ConceptVectors")
        for key in ("method", "binarize", "quantile"):
            check_setting(path, key, h[key], getattr(self, key), "ConceptVectors")
        recorded = h.get("model")
        if check_model:
            _check_model(path, recorded, self.model, "ConceptVectors")
        self.concepts, self.categories = list(h["concepts"]), list(h["categories"])
        self.labels = list(h["labels"])
        for k in ("vectors", "scales", "biases", "thresholds", "train_unit_iou", "best_units"):
            setattr(self, k, arrays[k])
        self.solved_biases, self.solve_info, self.skipped = None, {}, []  # of an earlier fit
        self.model_key = None if recorded is None else dict(recorded)
        self._model_unknown = recorded is None
        t = h.get("transform")
        self.transform_key = None if t is None else dict(t)
        return self


# The concept-vector file (format interp_engine.concept_vectors): L concepts (the header's
# concepts, categories and labels), K units (the header's dim).  Version 2 added dim and model
# (the fingerprint of the model the vectors were computed from; null: unknown) and transform
# (that of the fitting data's transform; null: unknown).
_HEADER_V1 = {"layer": str, "method": OneOf(METHODS), "binarize": bool, "quantile": Num(float, 0.0, 1.0),
              "concepts": [str], "categories": [str], "labels": [Num(int, 0)]}
_HEADER = dict(_HEADER_V1, dim=Num(int, 1), model=MODEL_SPEC, transform=(MapOf(str), None))


def _transform_key(ds: Any) -> Optional[Dict[str, Any]]:
    """The dataset's transform fingerprint (``transform_key()``), None when it has none."""
    get = getattr(ds, "transform_key", None)
    return dict(get()) if callable(get) else None


def _describe_transform(key: Mapping[str, Any]) -> str:
    probe = key.get("probe")
    return repr(key.get("name")) + ("" if probe is None else f" (output on a probe image: {str(probe)[:16]})")


def _arrays(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    n = entries(h, ("concepts", "categories", "labels"), "concept")
    dims = {"L": n}
    if "dim" in h:
        dims["K"] = h["dim"]
    return ({"vectors": Array("float64", ("L", "K")),
             "scales": Array("float64", ("L",), min=0.0),
             "biases": Array("float64", ("L",)),
             "thresholds": Array("float64", ("K",), inf=True),
             "best_units": Array("int64", ("L",), min=-1, max="K", max_offset=-1),
             "train_unit_iou": Array("float64", ("L",), min=0.0, max=1.0)}, dims)


# ----------------------------------------------------------------------------- streaming accumulators

class _UnitTally:
    """The units' dissection counts against the concepts, by the core's
    :class:`~interp_engine.IoUTally` (the same upsampling and ``> threshold``
    binarization as :func:`~interp_engine.dissect`): int64 intersections
    ``(K, L)``, unit pixels ``(K,)`` (over all images) and label pixels
    ``(L,)``."""

    def __init__(self, ds, labels: Sequence[int], thresholds: np.ndarray) -> None:
        self.num_labels = int(ds.num_labels) if hasattr(ds, "num_labels") else len(ds.label_names)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = tuple(int(s) for s in ds.pixel_size)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.tally = None

    def update(self, a, pl) -> None:
        from ...engine.iou import IoUTally

        if self.tally is None:
            # one category holding every label: unit pixels count over every image
            self.tally = IoUTally(a.shape[1], self.num_labels, np.zeros(self.num_labels, np.int64), 1,
                                  output_size=self.size)
        self.tally.update(a, self.thresholds, pixel_labels=pl,
                          image_categories=np.ones((a.shape[0], 1), dtype=bool))

    def counts(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.tally
        if t is None:
            raise ValueError("no images were tallied")
        return (t.intersection[:, self.labels], t.unit_pixels[:, 0].copy(), t.label_pixels[self.labels])


class _LogitHistograms:
    """Per concept, histograms of the upsampled logits of its mask pixels and
    of the other pixels (bins of 0.01 over [-30, 30], clamped), streamed; the
    calibration offsets come from their tail sums."""

    LO, WIDTH, BINS = -30.0, 0.01, 6000

    def __init__(self, cv: "ConceptVectors", ds, labels: Sequence[int]) -> None:
        import torch

        self.cv, self.labels = cv, list(labels)
        self.size = tuple(int(s) for s in ds.pixel_size)
        L = len(self.labels)
        self.hist = np.zeros(L * self.BINS * 2, dtype=np.int64)  # [concept, bin, in mask]
        self.base = (torch.arange(L, dtype=torch.int32) * (self.BINS * 2))[None, :, None, None]

    def update(self, a, pl) -> None:
        import torch
        import torch.nn.functional as F

        # float32 logits upsampled as evaluate() does; bin index * 2 + in-mask, in place
        z = F.interpolate(self.cv.predict_logits(a), size=self.size, mode="bilinear", align_corners=False)
        q = z.sub_(self.LO).mul_(1.0 / self.WIDTH).floor_().clamp_(0, self.BINS - 1).to(torch.int32)
        q.mul_(2).add_(self.cv._masks(pl, self.labels)).add_(self.base)
        self.hist += np.bincount(q.numpy().ravel(), minlength=self.hist.size)

    def best_offsets(self) -> np.ndarray:
        """Per concept, the logit threshold ``t`` (a multiple of 0.01 in
        [-30, 30]) maximizing the set-IoU of ``upsampled logit > t`` on the
        streamed pixels (ties: the lowest threshold)."""
        h = self.hist.reshape(len(self.labels), self.BINS, 2)
        hp, hn = h[:, :, 1], h[:, :, 0]
        # pixels with logit in bin >= j are predicted positive at threshold lo + j * width
        tp = np.cumsum(hp[:, ::-1], axis=1)[:, ::-1]
        fp = np.cumsum(hn[:, ::-1], axis=1)[:, ::-1]
        iou = tp / np.maximum(hp.sum(1, keepdims=True) + fp, 1)
        return self.LO + np.argmax(iou, axis=1) * self.WIDTH


class _ActivationCache:
    """Activations (float32) and label maps of one fit's images in
    memory-mapped ``.npy`` files of a temporary directory (removed on exit)."""

    def __init__(self, parent: Optional[str]) -> None:
        import tempfile

        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="interp_engine_cv_", dir=parent)
        self.acts = self.labels = None
        self.complete = False

    def __enter__(self) -> "_ActivationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.acts = self.labels = None  # close the maps before the files go
        self._tmp.cleanup()

    def write(self, offset: int, a, pl, total: int) -> None:
        if self.acts is None:
            root = self._tmp.name
            self.acts = np.lib.format.open_memmap(os.path.join(root, "acts.npy"), mode="w+",
                                                  dtype=np.float32, shape=(total,) + tuple(a.shape[1:]))
            self.labels = np.lib.format.open_memmap(os.path.join(root, "labels.npy"), mode="w+",
                                                    dtype=pl.numpy().dtype, shape=(total,) + tuple(pl.shape[1:]))
        self.acts[offset:offset + a.shape[0]] = a.numpy()
        self.labels[offset:offset + a.shape[0]] = pl.numpy()

    def read(self, pos: np.ndarray):
        import torch

        if len(pos) and pos[-1] - pos[0] == len(pos) - 1 and np.all(np.diff(pos) == 1):
            sl = slice(int(pos[0]), int(pos[-1]) + 1)
            return torch.from_numpy(np.array(self.acts[sl])), torch.from_numpy(np.array(self.labels[sl]))
        return torch.from_numpy(self.acts[pos]), torch.from_numpy(self.labels[pos])


# ----------------------------------------------------------------------------- streaming sample

class _BottomK:
    """The ``cap`` rows with the smallest keys among all rows added (a uniform
    sample without replacement when the keys are uniform random).  Rows are
    buffered and cut back to ``cap`` only when more than ``2 cap`` are held
    (amortized O(1) copies per row); :meth:`rows` returns the selection in
    ascending key order, so the result does not depend on the batching."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: List[Tuple[Any, ...]] = []
        self.held = 0

    def add(self, *cols) -> None:
        self.parts.append(cols)
        self.held += int(cols[-1].shape[0])
        if self.held > 2 * self.cap:
            self.parts = [self._cut(sort=False)]
            self.held = int(self.parts[0][-1].shape[0])

    def _cut(self, *, sort: bool):
        import torch

        cols = tuple(torch.cat(c) for c in zip(*self.parts)) if len(self.parts) > 1 else self.parts[0]
        key = cols[-1]
        if key.numel() > self.cap:
            sel = torch.topk(key, self.cap, largest=False, sorted=sort).indices
        elif sort:
            sel = torch.argsort(key)
        else:
            return cols
        return tuple(c[sel] for c in cols)

    def rows(self):
        """The selected columns (the last is the key), ascending key; None if empty."""
        if not self.parts:
            return None
        self.parts = [self._cut(sort=True)]
        self.held = int(self.parts[0][-1].shape[0])
        return self.parts[0]


class _SemanticSample:
    """The bounded-memory sample of one streaming pass (see module docs).

    Every position gets a seeded uniform key; a bottom-``cap`` selection by
    key is a uniform sample without replacement of what was seen.  Kept:
    per concept the positive positions (``y > 0``) with the smallest keys
    (all of them up to ``max_positives``) and, shared, the ``max_negatives``
    positions with the smallest keys (their targets for every concept).
    Memory: at most ``2 (max_negatives (K + L) + L max_positives (K + 1))``
    values while streaming (float32 features, float64 targets)."""

    def __init__(self, num_concepts: int, max_pos: int, max_neg: int, seed: int) -> None:
        import torch

        self.L = num_concepts
        self.gen = torch.Generator().manual_seed(int(seed))
        self.pos = [_BottomK(max_pos) for _ in range(num_concepts)]   # (feats (n, K), y (n,), key (n,))
        self.pool = _BottomK(max_neg)                                 # (feats (n, K), Y (n, L), key (n,))
        self.n_pos = torch.zeros(num_concepts, dtype=torch.int64)
        self.n_neg = torch.zeros(num_concepts, dtype=torch.int64)
        self.mass_pos = torch.zeros(num_concepts, dtype=torch.float64)
        self.mass_neg = torch.zeros(num_concepts, dtype=torch.float64)

    def update(self, a, m) -> None:
        import torch
        import torch.nn.functional as F

        h, w = a.shape[2], a.shape[3]
        y = F.adaptive_avg_pool2d(m.to(torch.float32), (h, w))          # (B, L, h, w)
        x = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])               # (n, K)
        Y = y.permute(0, 2, 3, 1).reshape(-1, self.L).to(torch.float64)  # (n, L)
        key = torch.rand(x.shape[0], generator=self.gen, dtype=torch.float64)
        posm = Y > 0
        self.n_pos += posm.sum(0)
        self.n_neg += (~posm).sum(0)
        self.mass_pos += Y.sum(0)
        self.mass_neg += (1 - Y).sum(0)
        self.pool.add(x, Y, key)
        for c in torch.nonzero(posm.any(0)).flatten().tolist():
            sel = torch.nonzero(posm[:, c]).flatten()
            self.pos[c].add(x[sel], Y[sel, c], key[sel])

    def problem(self, c: int):
        """(x float64 (n, K), c1 (n,), c0 (n,)) of concept ``c``'s loss."""
        import torch

        fp, yp, _ = self.pos[c].rows()
        fn, Yn, _ = self.pool.rows()
        neg = Yn[:, c] == 0
        fn = fn[neg]
        wp = float(self.n_pos[c]) / fp.shape[0]
        wn = float(self.n_neg[c]) / max(fn.shape[0], 1)
        a = 1.0 / (2.0 * float(self.mass_pos[c]))
        n = 1.0 / (2.0 * float(self.mass_neg[c]))
        x = torch.cat([fp, fn]).to(torch.float64)
        c1 = torch.cat([a * wp * yp, torch.zeros(fn.shape[0], dtype=torch.float64)])
        c0 = torch.cat([n * wp * (1 - yp), torch.full((fn.shape[0],), n * wn, dtype=torch.float64)])
        # ratio estimators: on a capped sample the two masses are made exactly 1/2 each (no change
        # when the sample holds every position)
        c1 = c1 * (0.5 / c1.sum())
        if float(c0.sum()) > 0:
            c0 = c0 * (0.5 / c0.sum())
        return x, c1, c0

    def info(self, c: int) -> Dict[str, Any]:
        kept_neg = int((self.pool.rows()[1][:, c] == 0).sum())
        kept_pos = int(self.pos[c].rows()[0].shape[0])
        return {"positives": int(self.n_pos[c]), "positives_kept": kept_pos,
                "negatives": int(self.n_neg[c]), "negatives_kept": kept_neg,
                "exact": kept_neg == int(self.n_neg[c]) and kept_pos == int(self.n_pos[c])}
