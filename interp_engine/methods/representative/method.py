"""Representative interpretations (Lam et al., ICCV 2021): the decision region
of a seed image, found by co-clustering the reference images with sampled
linear decision boundaries (shared/ALGORITHMS.md section 5; docs/coclustering.md).

Notation: ``psi(x)`` is the output of ``layer`` for input ``x`` (flattened to
``D`` values where a vector is needed), ``head`` maps ``psi`` to logits
``l(psi)`` (``K`` classes); the *predicted class* of an image is
``argmax_k head(psi(x))_k`` (ties: lowest index).  Predicted classes, not
ground-truth labels, define same-class and other-class images.

Per seed ``x0`` of predicted class ``c`` (:meth:`RepresentativeInterpretation.explain`):

1. **Boundary sampling.** ``pool`` reference images of another predicted class
   are drawn (without replacement when there are at least ``pool`` of them,
   else with replacement) from a generator seeded by ``(seed, seed index)``.
   For each, with ``pos = psi(x0)`` and ``neg = psi(x_other)``, repeat:
   ``b = 0.9 * pos + 0.1 * neg``; stop when ``(l_(1) - l_(2))(b)^2 < tol``
   (``tol = 1e-5``; ``l_(1) >= l_(2)`` the two largest logits at ``b``) and
   ``c`` is one of the two classes with the largest logits; otherwise set
   ``pos = b`` when ``argmax l(b) == c``, else ``neg = b``.  (Computed on the
   segment: ``b = psi(x0) + t (psi(x_other) - psi(x0))``, ``t = 0.9 t_pos +
   0.1 t_neg``, in the model's dtype, the same in exact arithmetic.)  Pairs that have
   not stopped after ``max_steps`` evaluations are dropped (RuntimeWarning).
   All pairs of all seeds are bisected together, one batched head
   evaluation per step (chunks of ``pairs_per_batch`` pairs).
2. **Hyperplanes.** At a stopping point ``b`` with top-2 classes ``{c, o}``:
   ``w = grad_psi (l_c - l_o)(b)``, ``bias = (l_c - l_o)(b) - w . b`` (one
   batched backward for all points).  The hyperplane is then oriented so that
   the seed is on its non-negative side: if ``w . psi(x0) + bias < 0``, ``w``
   and ``bias`` change sign (for a head that is linear in ``psi`` this never
   happens: the seed's own margin ``l_c - l_o`` is positive).  ``w`` and
   ``bias`` are float64 (the gradient is computed in the model's dtype).
3. **Configuration.** A reference image ``x`` is *excluded* by boundary ``h``
   when ``w_h . psi(x) + bias_h < 0`` (float64), i.e. it lies on the other
   side from the seed.  Cost elements are the reference images of class ``c``
   (the seed included when it is one; it is never excluded), gain elements
   the others.  Boundary ``h``'s cost set: same-class images it excludes;
   its gain set: other-class images it excludes (packed bitsets).
4. **Cover.** :func:`~interp_engine.engine.cover.ratio_greedy_cover` (through
   ``ratio_greedy_cover_many``, all seeds' problems solved in parallel in the
   core) with ``eps_cost = 1e-5``, ``eps_gain = 1e-10``,
   ``target = max(0, n_other - delta)`` and the tighten pass.
5. **Region**: the chosen boundaries; its members are the reference images
   with ``w_h . psi(x) + bias_h >= 0`` for every chosen ``h``.  When the
   target is reached at most ``delta`` other-class images are members.

:class:`Region` gives the similarity ranking (:meth:`Region.similar`), the
region's Grad-CAM-like map (:meth:`Region.heatmap`) and membership of new
images (:meth:`Region.contains`); :func:`plot_region` draws them.  The
evaluation helpers (:func:`~interp_engine.methods.cam.grad_cam`,
:func:`~interp_engine.methods.cam.average_drop_increase`) live in
:mod:`interp_engine.methods.cam`.

Importing this module does not import torch; using it does.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..engine._arrays import check_bool, check_num_threads, check_positive_int, check_real, describe
from ..engine.cover import PackedBits, ratio_greedy_cover_many

__all__ = ["RepresentativeInterpretation", "Region", "Boundaries", "SimilarImages",
           "derive_head", "plot_region"]

#: the ratio greedy's constants (Lam et al.)
EPS_COST = 1e-5
EPS_GAIN = 1e-10

# torch.nn modules whose output is not piecewise linear in their input: with
# one of them in the head, sampled hyperplanes are local linearizations.
_NOT_PIECEWISE_LINEAR = ("Sigmoid", "Tanh", "GELU", "SiLU", "Mish", "ELU", "CELU", "SELU",
                         "Softplus", "Softsign", "Softmax", "Softmax2d", "LogSoftmax", "Softmin",
                         "LogSigmoid", "Tanhshrink", "Hardswish", "GLU", "LayerNorm", "GroupNorm",
                         "LocalResponseNorm", "RMSNorm", "MultiheadAttention", "Bilinear",
                         "TransformerEncoderLayer", "TransformerDecoderLayer")


# ----------------------------------------------------------------------------- head

def derive_head(model: Any, layer: str) -> Any:
    """The head mapping ``layer``'s output to the model's logits, when the model
    is an ``nn.Sequential`` (possibly nested) and ``layer`` names one of its
    children (or a child of a nested ``nn.Sequential`` child, and so on).

    Returns an ``nn.Sequential`` of the children after ``layer`` at its level,
    followed by the children after each enclosing ``nn.Sequential`` at the
    levels above (the modules themselves, not copies).

    Raises:
        ValueError: the head cannot be derived (the message says why and to
            pass ``head=``); also when ``layer`` names no submodule.
    """
    from torch import nn

    from ..capture import find_module

    find_module(model, layer)  # ValueError (with close matches) when it names nothing
    container = model
    rests: List[List[Any]] = []
    path: List[str] = []
    for part in layer.split("."):
        if not isinstance(container, nn.Sequential):
            where = ".".join(path) or "the model"
            raise ValueError(
                f"head=None: the head (psi -> logits) can be derived only when the model is an "
                f"nn.Sequential (possibly nested) and layer names one of its children; "
                f"{where!s} is a {type(container).__name__}, not an nn.Sequential (layer={layer!r}). "
                f"Pass head=, a callable mapping layer {layer!r}'s output to the logits")
        names = list(container._modules.keys())
        i = names.index(part)
        rests.append([container._modules[n] for n in names[i + 1:]])
        path.append(part)
        container = container._modules[part]
    modules = [m for rest in reversed(rests) for m in rest]
    return nn.Sequential(*modules)


def _warn_if_not_piecewise_linear(head: Any) -> None:
    from torch import nn

    if not isinstance(head, nn.Module):
        return
    bad = sorted({type(m).__name__ for m in head.modules()
                  if type(m).__name__ in _NOT_PIECEWISE_LINEAR
                  and type(m).__module__.startswith("torch.nn")})
    if bad:
        warnings.warn(f"head contains modules that are not piecewise linear ({', '.join(bad)}): its "
                      f"decision boundaries are not hyperplanes, and the sampled boundaries are "
                      f"local linearizations (tangent hyperplanes at the boundary points)",
                      UserWarning, stacklevel=3)


# ----------------------------------------------------------------------------- results

class Boundaries(NamedTuple):
    """The decision boundaries sampled for one seed (before the cover).

    weights:       float64 ``(P, D)``: ``w`` of each boundary, oriented so the
                   seed is on the non-negative side.
    biases:        float64 ``(P,)``.
    points:        float64 ``(P, D)`` boundary points ``b`` (where ``w`` was taken; the
                   bisection runs in the model's dtype).
    other_classes: int64 ``(P,)``: the class ``o`` of ``l_c - l_o`` at each point.
    others:        int64 ``(P,)``: reference index of the other-class image of each pair.
    seed_class:    the seed's predicted class ``c``.
    n_unconverged: pairs dropped because the bisection did not stop in ``max_steps``.
    """

    weights: np.ndarray
    biases: np.ndarray
    points: np.ndarray
    other_classes: np.ndarray
    others: np.ndarray
    seed_class: int
    n_unconverged: int


class SimilarImages(NamedTuple):
    """Members of a region ranked by :meth:`Region.similar`.

    indices:   int64 ``(k,)`` reference indices, most similar first.
    distances: float64 ``(k,)`` ``sum_h |w_h . psi(seed) - w_h . psi(x)|``.
    classes:   int64 ``(k,)`` their predicted classes.
    """

    indices: np.ndarray
    distances: np.ndarray
    classes: np.ndarray


@dataclass(eq=False)
class Region:
    """The decision region of one seed: the chosen boundaries and the
    reference images inside (see the module doc).  The queries
    (:meth:`similar`, :meth:`heatmap`, :meth:`contains`) use the model and the
    reference features of the :class:`RepresentativeInterpretation` that made
    the region (refitting it changes them).

    Attributes:
        seed_index: reference index of the seed, or -1 for an image given
            to :meth:`RepresentativeInterpretation.explain` directly.
        seed_class: the seed's predicted class.
        weights: float64 ``(H, D)``: the chosen boundaries' ``w`` (seed side
            ``w . psi + bias >= 0``), in the cover's order (greedy choices,
            then the tighten pass's additions).
        biases: float64 ``(H,)``.
        points: float64 ``(H, D)``: the boundary points.
        other_classes: int64 ``(H,)``: the class across each boundary.
        others: int64 ``(H,)``: reference index of the other-class image whose
            bisection gave each boundary.
        chosen: int64 ``(H,)``: the boundaries' indices in the sampled pool
            (rows of :attr:`cost_sets` / :attr:`gain_sets`).
        n_greedy: how many leading boundaries the greedy phase chose (the
            rest come from the tighten pass).
        members: int64 ``(M,)``: reference images in the region, ascending.
        member_classes: int64 ``(M,)``: their predicted classes.
        n_other: members of another predicted class than the seed's.
        reached: whether the cover reached ``target`` (if not, more than
            ``delta`` other-class images remain inside).
        target: ``max(0, n_other_total - delta)``.
        delta: allowed other-class images in the region.
        seed_values: float64 ``(H,)``: ``w_h . psi(seed) + bias_h``.
        n_pool: boundaries sampled (pairs that converged).
        n_unconverged: pairs dropped (no convergence in ``max_steps``).
        cost_sets: :class:`PackedBits` ``(n_pool, len(same_indices))``: the
            same-class reference images each sampled boundary excludes.
        gain_sets: :class:`PackedBits` ``(n_pool, len(other_indices))``: the
            other-class images each sampled boundary excludes.
        same_indices: int64: reference index of each cost element (column).
        other_indices: int64: reference index of each gain element (column).
    """

    seed_index: int
    seed_class: int
    weights: np.ndarray
    biases: np.ndarray
    points: np.ndarray
    other_classes: np.ndarray
    others: np.ndarray
    chosen: np.ndarray
    n_greedy: int
    members: np.ndarray
    member_classes: np.ndarray
    n_other: int
    reached: bool
    target: int
    delta: int
    seed_values: np.ndarray
    n_pool: int
    n_unconverged: int
    cost_sets: PackedBits
    gain_sets: PackedBits
    same_indices: np.ndarray
    other_indices: np.ndarray
    _owner: Any = field(default=None, repr=False)
    _seed_image: Any = field(default=None, repr=False)

    @property
    def n_members(self) -> int:
        """Number of reference images in the region."""
        return int(self.members.shape[0])

    @property
    def n_same(self) -> int:
        """Members of the seed's predicted class (the seed included)."""
        return self.n_members - self.n_other

    @property
    def n_boundaries(self) -> int:
        return int(self.weights.shape[0])

    def __repr__(self) -> str:
        return (f"Region(seed_index={self.seed_index}, seed_class={self.seed_class}, "
                f"boundaries={self.n_boundaries}/{self.n_pool}, members={self.n_members}, "
                f"n_other={self.n_other}, reached={self.reached})")

    # ------------------------------------------------------------------ queries
    def _values(self, feats64: Any) -> Any:
        """``(B, H)`` float64 tensor ``w_h . psi + bias_h`` for flattened features."""
        import torch

        w = torch.from_numpy(self.weights).to(feats64.device)
        b = torch.from_numpy(self.biases).to(feats64.device)
        return feats64 @ w.T + b

    def contains_features(self, features: Any) -> np.ndarray:
        """Whether features ``psi`` (``(B, *psi_shape)`` or flattened ``(B, D)``,
        tensor or array) lie in the region: on the seed's side
        (``w_h . psi + bias_h >= 0``) of every chosen boundary.  Returns bool ``(B,)``."""
        feats = self._owner._flat_features(features, "features")
        return (self._values(feats) >= 0).all(dim=1).cpu().numpy()

    def contains(self, images: Any) -> np.ndarray:
        """Whether images fall in the region.

        Args:
            images: a tensor ``(B, *image_shape)`` or one image ``image_shape``
                (the shape of the reference images).

        Returns:
            bool numpy ``(B,)`` (``(1,)`` for one image).  For the reference
            images this is exactly the membership :attr:`members` (the
            features are recomputed by the same forward).
        """
        feats, _ = self._owner._features_of_images(images, "images")
        return self.contains_features(feats)

    def similar(self, k: Optional[int] = None) -> SimilarImages:
        """The region's members ranked by ``Dist(seed, x) = sum_h |w_h . psi(seed)
        - w_h . psi(x)|`` over the chosen boundaries, ascending (ties: the seed
        first, then lower index).  The seed comes first when it is a reference
        image (its distance is 0).

        Args:
            k: how many to return (int >= 1); default all members.
        """
        import torch

        if k is not None:
            k = check_positive_int(k, "k")
        owner = self._owner
        members = self.members
        if members.size == 0:
            e = np.zeros(0, dtype=np.int64)
            return SimilarImages(e, np.zeros(0), e)
        idx = torch.from_numpy(members).to(owner._features.device)
        vals = self._values(owner._features.index_select(0, idx).double()).cpu().numpy()
        if self.seed_index >= 0 and (members == self.seed_index).any():
            s = vals[int(np.flatnonzero(members == self.seed_index)[0])]
        else:
            s = self.seed_values
        dist = np.abs(vals - s[None, :]).sum(axis=1)
        order = np.lexsort((members, members != self.seed_index, dist))
        if k is not None:
            order = order[:k]
        return SimilarImages(members[order], dist[order], self.member_classes[order])

    def heatmap(self, image: Any) -> np.ndarray:
        """The region's Grad-CAM-like map of an image (the seed, a reference
        image or an unseen one).

        For each chosen boundary ``h``, the channel weights are the spatial
        mean of ``w_h`` (the gradient of ``l_c - l_o`` w.r.t. ``psi`` at the
        boundary point, reshaped to ``(C, h, w)``): ``a_h[k] = mean_{i,j}
        w_h[k, i, j]``; the map is ``M_h = ReLU(sum_k a_h[k] A[k])`` on the
        image's feature maps ``A = psi(image)``, normalized by its maximum
        (``M_h / max M_h``; an all-zero map stays zero).  The region's map is
        the mean of ``M_h`` over the chosen boundaries, upsampled bilinearly
        (``align_corners=False``) to the image size; values in ``[0, 1]``.
        A region without boundaries gives zeros.

        Args:
            image: an int (reference index; uses the stored features and the
                reference images' size), a sequence / integer array of
                reference indices, one image ``image_shape`` or a batch
                ``(B, *image_shape)``.

        Returns:
            float64 numpy ``(H, W)`` for an int or one image, ``(B, H, W)``
            for indices or a batch.

        Raises:
            ValueError: the layer's output is not ``(C, h, w)`` per image.
        """
        import torch
        import torch.nn.functional as F

        owner = self._owner
        shape = owner.psi_shape
        if len(shape) != 3:
            raise ValueError(f"heatmap needs layer {owner.layer!r} to output (B, C, h, w) feature maps; "
                             f"its output per image has shape {tuple(shape)}")
        single = True
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            i = owner._check_index(image, "image")
            feats = owner._features[i:i + 1]
        elif isinstance(image, (list, tuple, np.ndarray)) or (
                isinstance(image, torch.Tensor) and not image.is_floating_point()):
            idx = [owner._check_index(i, "image index") for i in
                   (image.tolist() if hasattr(image, "tolist") else image)]
            feats = owner._features.index_select(0, torch.tensor(idx, dtype=torch.long,
                                                                 device=owner._features.device))
            single = False
        else:
            feats, single = owner._features_of_images(image, "image")
        size = tuple(owner.image_shape[-2:])
        A = feats.double().reshape(-1, *shape)
        n_b = self.weights.shape[0]
        if n_b == 0:
            out = np.zeros((A.shape[0],) + size)
            return out[0] if single else out
        w = torch.from_numpy(self.weights).to(A.device).reshape(n_b, shape[0], -1)
        alpha = w.mean(dim=2)                                   # (H, C)
        maps = torch.relu(torch.einsum("hc,bcij->bhij", alpha, A))
        mx = maps.amax(dim=(2, 3), keepdim=True)
        maps = torch.where(mx > 0, maps / torch.where(mx > 0, mx, torch.ones_like(mx)),
                           torch.zeros_like(maps))
        cam = maps.mean(dim=1, keepdim=True)
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
        out = cam.cpu().numpy()
        return out[0] if single else out


# ----------------------------------------------------------------------------- method

class RepresentativeInterpretation:
    """Representative interpretations (Lam et al., ICCV 2021): see the module doc.

    Usage::

        model.eval()
        ri = RepresentativeInterpretation(model, "features.29").fit(images, pool=50)
        region = ri.explain(0)                 # or an image tensor
        region.similar(10); region.heatmap(0); region.contains(new_images)
        regions = ri.explain_all(range(100))   # batched sampling, parallel covers

    Args:
        model: a ``torch.nn.Module`` returning logits ``(B, K)``, in eval
            mode (the head must treat examples independently).
        layer: name of the submodule (``model.named_modules()``) whose output
            is ``psi`` (e.g. the last conv layer); a floating tensor.
        head: a callable (``nn.Module`` or function) mapping ``psi`` of shape
            ``(B, *psi_shape)`` to logits ``(B, K)``.  Default: derived by
            :func:`derive_head` when the model is an ``nn.Sequential``
            (possibly nested) and ``layer`` is one of its children; otherwise
            a ValueError asks for it.  A head ``nn.Module`` containing
            non-piecewise-linear modules (Sigmoid, Tanh, GELU, Softmax, ...)
            gives a UserWarning: boundaries are then local linearizations.
        batch_size: images per forward in :meth:`fit` and for images given
            to the queries.
        pairs_per_batch: (seed, other) pairs bisected together (memory:
            about ``4 * pairs_per_batch * D`` values).
        tol: the bisection stops when the squared top-2 logit gap is below
            ``tol`` (default 1e-5).
        max_steps: bisection steps before a pair is dropped.
        check_head: in :meth:`fit`, check that ``head(psi)`` reproduces
            ``model(x)`` (ValueError otherwise); pass False for a head that
            deliberately differs (e.g. a slice of the logits).
        num_threads: threads of the cover solves (default all cores).

    Attributes (after :meth:`fit`):
        predictions: int64 ``(N,)`` predicted classes of the reference images.
        logits: float64 ``(N, K)`` ``head(psi)`` of the reference images.
        psi_shape: the layer's output shape per image.
        image_shape: the reference images' shape per image.
        last_timings: seconds of the last :meth:`explain_all` /
            :meth:`explain`: ``{"sampling", "configuration", "cover"}``.
    """

    def __init__(self, model: Any, layer: str, head: Any = None, *, batch_size: int = 64,
                 pairs_per_batch: int = 2048, tol: float = 1e-5, max_steps: int = 500,
                 check_head: bool = True, num_threads: Optional[int] = None) -> None:
        from torch import nn

        from ..capture import find_module

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        self.module = find_module(model, layer)  # TypeError / ValueError with close matches
        if head is None:
            head = derive_head(model, layer)
        elif not callable(head):
            raise TypeError(f"head must be a callable (nn.Module or function) mapping layer "
                            f"{layer!r}'s output to logits, got {describe(head)}")
        _warn_if_not_piecewise_linear(head)
        self.model = model
        self.layer = layer
        self.head = head
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.pairs_per_batch = check_positive_int(pairs_per_batch, "pairs_per_batch")
        tol = check_real(tol, "tol", allow_inf=False, what="a finite number > 0")
        if not tol > 0:
            raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
        self.tol = float(tol)
        self.max_steps = check_positive_int(max_steps, "max_steps")
        self.check_head = check_bool(check_head, "check_head")
        self.num_threads = check_num_threads(num_threads) or None
        self.pool: Optional[int] = None
        self.delta: Optional[int] = None
        self.seed: Optional[int] = None
        self._features: Any = None
        self.predictions: Optional[np.ndarray] = None
        self.logits: Optional[np.ndarray] = None
        self.psi_shape: Tuple[int, ...] = ()
        self.image_shape: Tuple[int, ...] = ()
        self.images: Any = None
        self.last_timings: Dict[str, float] = {}

    def __repr__(self) -> str:
        n = None if self._features is None else int(self._features.shape[0])
        return (f"RepresentativeInterpretation(layer={self.layer!r}, fitted_images={n}, "
                f"pool={self.pool}, delta={self.delta})")

    # ------------------------------------------------------------------ features
    def _device_dtype(self) -> Tuple[Any, Any]:
        from ..capture import model_device_dtype

        return model_device_dtype(self.model)

    def _forward(self, x: Any) -> Tuple[Any, Any]:
        """(psi detached clone, model logits) for one batch; the hook is
        removed whatever happens."""
        import torch

        store: Dict[str, Any] = {}

        def hook(module: Any, args: Any, output: Any) -> None:
            if "psi" in store:
                raise ValueError(f"layer {self.layer!r} ran more than once in one forward pass "
                                 f"(a shared module?); choose a layer that runs once")
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                raise TypeError(f"layer {self.layer!r} must output a floating tensor, got "
                                f"{describe(output)}")
            store["psi"] = output.detach().clone()

        handle = self.module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                out = self.model(x)
        finally:
            handle.remove()
        if "psi" not in store:
            raise RuntimeError(f"layer {self.layer!r} produced no output during the forward pass "
                               f"(a module the model's forward does not call?)")
        return store["psi"], out

    def _head_logits(self, psi: Any) -> Any:
        import torch

        out = self.head(psi)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or not out.is_floating_point():
            raise ValueError(f"head must map psi (B, {', '.join(map(str, psi.shape[1:]))}) to float "
                             f"logits (B, num_classes), got {describe(out)}")
        if out.shape[0] != psi.shape[0]:
            raise ValueError(f"head must return one row of logits per example: got {out.shape[0]} "
                             f"rows for {psi.shape[0]} examples")
        if out.shape[1] < 2:
            raise ValueError(f"head must give at least 2 classes, got logits of shape {tuple(out.shape)}")
        return out

    def _to_input(self, x: Any) -> Any:
        dev, dt = self._device_dtype()
        return x.to(device=dev, dtype=dt) if (x.is_floating_point() and dt) else x.to(dev)

    def _iter_inputs(self, reference: Any) -> Iterable[Any]:
        import torch

        from ..capture import input_of

        if isinstance(reference, torch.Tensor):
            if reference.dim() < 2 or reference.shape[0] == 0:
                raise ValueError(f"reference must be a tensor (N, C, H, W) with N >= 1 (or an iterable "
                                 f"of batches), got {describe(reference)}")
            for s in range(0, reference.shape[0], self.batch_size):
                yield reference[s:s + self.batch_size]
            return
        if isinstance(reference, (str, bytes, np.ndarray)) or not hasattr(reference, "__iter__"):
            raise TypeError(f"reference must be a tensor (N, C, H, W) or an iterable of batches "
                            f"(tensors, (x, y) tuples or dicts with 'image', as a DataLoader "
                            f"gives), got {describe(reference)}")
        for i, item in enumerate(reference):
            x = input_of(item, f"reference batch {i}")
            if x.dim() < 2:
                raise ValueError(f"reference batch {i} must be a batch (B, C, H, W), got "
                                 f"{describe(x)}")
            yield x

    # ------------------------------------------------------------------ fit
    def fit(self, reference: Any, *, pool: int = 50, delta: int = 0,
            seed: int = 0) -> "RepresentativeInterpretation":
        """Compute ``psi`` and the predicted classes of the reference images
        (once, batched) and set the sampling parameters.

        Args:
            reference: a tensor ``(N, C, H, W)`` (kept, for :func:`plot_region`),
                or an iterable of batches: tensors, ``(x, y)`` tuples/lists
                (element 0 is the input) or dicts with an ``"image"`` key, as
                a ``DataLoader`` gives.  All batches must share the image shape.
            pool: boundaries sampled per seed (int >= 1; the paper uses 50).
            delta: other-class images allowed in a region (int >= 0).
            seed: seed of the other-class image draws (int >= 0); seed ``i``
                of :meth:`explain` uses the generator ``(seed, 0, i)``, an
                image seed ``(seed, 1)``.

        Returns:
            ``self``.
        """
        import torch

        self.pool = check_positive_int(pool, "pool")
        self.delta = check_positive_int(delta, "delta", minimum=0)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        if getattr(self.model, "training", False):
            warnings.warn("model is in training mode: call model.eval() first (batch norm and dropout "
                          "make the head depend on the batch)", UserWarning, stacklevel=2)
        feats, logits = [], []
        image_shape = None
        for i, x in enumerate(self._iter_inputs(reference)):
            if image_shape is None:
                image_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != image_shape:
                raise ValueError(f"reference batch {i} has images of shape {tuple(x.shape[1:])}, "
                                 f"expected {image_shape} (as the first batch)")
            psi, out = self._forward(self._to_input(x))
            with torch.no_grad():
                lg = self._head_logits(psi)
            if self.check_head:
                self._check_head(lg, out, i)
            feats.append(psi.reshape(psi.shape[0], -1))
            logits.append(lg.double().cpu())
            if i == 0:
                self.psi_shape = tuple(psi.shape[1:])
        if image_shape is None:
            raise ValueError("reference holds no images (an empty iterable)")
        self._features = torch.cat(feats)
        lg = torch.cat(logits)
        self.logits = lg.numpy()
        self.predictions = lg.argmax(dim=1).numpy().astype(np.int64)
        self.image_shape = image_shape
        self.images = reference if isinstance(reference, torch.Tensor) else None
        return self

    def _check_head(self, lg: Any, out: Any, i: int) -> None:
        import torch

        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(lg.shape):
            raise ValueError(f"head(psi) gives logits of shape {tuple(lg.shape)} but the model gives "
                             f"{describe(out)} (reference batch {i}); pass a head that reproduces the "
                             f"model's logits, or check_head=False if it deliberately differs")
        a, b = lg.double(), out.double()
        scale = max(1.0, float(b.abs().max()))
        err = float((a - b).abs().max())
        if err > 1e-3 * scale:
            raise ValueError(f"head(psi) does not reproduce the model's logits (max abs difference "
                             f"{err:.3g} on reference batch {i}): the head must map layer "
                             f"{self.layer!r}'s output to the logits; pass check_head=False if it "
                             f"deliberately differs")

    def _check_fitted(self) -> None:
        if self._features is None:
            raise RuntimeError("RepresentativeInterpretation is not fitted: call fit(reference) first")

    @property
    def features(self) -> Any:
        """``(N, D)`` tensor: the reference images' flattened ``psi`` (model dtype and device)."""
        self._check_fitted()
        return self._features

    @property
    def n_reference(self) -> int:
        self._check_fitted()
        return int(self._features.shape[0])

    def _check_index(self, i: Any, name: str) -> int:
        self._check_fitted()
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{name} must be an int (a reference index) or an image tensor, got "
                            f"{describe(i)}")
        n = self.n_reference
        if not 0 <= int(i) < n:
            raise ValueError(f"{name} must be a reference index in [0, {n}), got {int(i)}")
        return int(i)

    def _features_of_images(self, images: Any, name: str) -> Tuple[Any, bool]:
        """(flattened psi (B, D) in model dtype, was a single image)."""
        import torch

        self._check_fitted()
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape {self.image_shape} or "
                            f"(B, {', '.join(map(str, self.image_shape))}), got {describe(images)}")
        single = tuple(images.shape) == self.image_shape
        if single:
            images = images[None]
        elif images.dim() != len(self.image_shape) + 1 or tuple(images.shape[1:]) != self.image_shape \
                or images.shape[0] == 0:
            raise ValueError(f"{name} must have shape {self.image_shape} (one image) or "
                             f"(B, {', '.join(map(str, self.image_shape))}) with B >= 1 (as the "
                             f"reference images), got {describe(images)}")
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            psi, _ = self._forward(self._to_input(images[s:s + self.batch_size]))
            out.append(psi.reshape(psi.shape[0], -1))
        return torch.cat(out), single

    def _flat_features(self, features: Any, name: str) -> Any:
        """float64 (B, D) tensor on the features' device from psi given by the caller."""
        import torch

        self._check_fitted()
        t = torch.as_tensor(features) if not isinstance(features, torch.Tensor) else features
        d = self._features.shape[1]
        if t.dim() >= 1 and tuple(t.shape[1:]) == self.psi_shape:
            t = t.reshape(t.shape[0], -1)
        if t.dim() != 2 or t.shape[1] != d or not t.is_floating_point():
            raise ValueError(f"{name} must be float (B, {', '.join(map(str, self.psi_shape))}) or "
                             f"(B, {d}), got {describe(features)}")
        return t.to(self._features.device).double()

    # ------------------------------------------------------------------ seeds
    def _resolve_seeds(self, seeds: Any, name: str = "seeds") -> List[Tuple[int, Any, int, Any]]:
        """[(seed_index or -1, psi (D,) tensor, class, image or None)]."""
        import torch

        self._check_fitted()
        out = []
        if isinstance(seeds, torch.Tensor) and seeds.is_floating_point():
            feats, single = self._features_of_images(seeds, name)
            imgs = seeds[None] if single else seeds
            with torch.no_grad():
                cls = self._head_logits(feats.reshape(-1, *self.psi_shape)).argmax(1).cpu()
            for j in range(feats.shape[0]):
                out.append((-1, feats[j], int(cls[j]), imgs[j]))
            return out
        if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
            seeds = [seeds]
        if isinstance(seeds, (np.ndarray, torch.Tensor)):
            seeds = seeds.tolist()
        if not isinstance(seeds, Iterable) or isinstance(seeds, (str, bytes)):
            raise TypeError(f"{name} must be reference indices (ints) or an image tensor (B, "
                            f"{', '.join(map(str, self.image_shape))}), got {describe(seeds)}")
        for s in seeds:
            i = self._check_index(s, "seed index")
            out.append((i, self._features[i], int(self.predictions[i]), None))
        return out

    # ------------------------------------------------------------------ sampling
    def _bisect(self, start: Any, other: Any, cls: Any) -> Tuple[Any, Any]:
        """Bisect between rows of ``start`` (the seeds' psi, class ``cls``) and
        ``other``; returns (boundary points, converged mask).

        The ends are tracked as positions on the segment, ``pos = start + t_pos
        d`` and ``neg = start + t_neg d`` with ``d = other - start`` (``t_pos =
        0``, ``t_neg = 1`` at first, float64), so ``b = 0.9 pos + 0.1 neg =
        start + (0.9 t_pos + 0.1 t_neg) d``: one fused pass per step instead of
        updating two (rows, D) arrays.  Rows that stopped are compacted away
        once they are half of the working set."""
        import torch

        m = start.shape[0]
        dev = start.device
        points = torch.empty_like(start)
        done = torch.zeros(m, dtype=torch.bool, device=dev)
        t_pos = torch.zeros(m, dtype=torch.float64, device=dev)
        t_neg = torch.ones(m, dtype=torch.float64, device=dev)
        ws, wd = start, other - start            # working rows (compacted now and then)
        wrows = torch.arange(m, device=dev)      # their row in the chunk
        wcls = cls
        act = torch.ones(m, dtype=torch.bool, device=dev)
        with torch.no_grad():
            for _ in range(self.max_steps):
                n_act = int(act.sum())
                if n_act == 0:
                    break
                if n_act <= wrows.numel() // 2:
                    keep = torch.nonzero(act)[:, 0]
                    ws, wd = ws.index_select(0, keep), wd.index_select(0, keep)
                    wrows, wcls = wrows[keep], wcls[keep]
                    act = torch.ones(keep.numel(), dtype=torch.bool, device=dev)
                t = 0.9 * t_pos[wrows] + 0.1 * t_neg[wrows]
                b = torch.addcmul(ws, wd, t.to(ws.dtype)[:, None])
                lg = self._head_logits(b.reshape(-1, *self.psi_shape))
                top = lg.topk(2, dim=1)
                gap = top.values[:, 0] - top.values[:, 1]
                conv = act & (gap * gap < self.tol) & (top.indices == wcls[:, None]).any(dim=1)
                if bool(conv.any()):
                    points.index_copy_(0, wrows[conv], b[conv])
                    done[wrows[conv]] = True
                act = act & ~conv
                on_c = act & (lg.argmax(dim=1) == wcls)
                off_c = act & ~on_c
                t_pos[wrows[on_c]] = t[on_c]
                t_neg[wrows[off_c]] = t[off_c]
        return points, done

    def _hyperplanes(self, points: Any, cls: Any) -> Tuple[Any, Any, Any]:
        """(w float64 (M, D), bias float64 (M,), other class (M,)) at boundary points."""
        import torch

        x = points.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            lg = self._head_logits(x.reshape(-1, *self.psi_shape))
            top = lg.detach().topk(2, dim=1).indices
            other = torch.where(top[:, 0] == cls, top[:, 1], top[:, 0])
            d = lg.gather(1, cls[:, None])[:, 0] - lg.gather(1, other[:, None])[:, 0]
            (g,) = torch.autograd.grad(d.sum(), x)
        w = g.double()
        bias = d.detach().double() - (w * points.double()).sum(dim=1)
        return w, bias, other

    def _sample(self, seeds: List[Tuple[int, Any, int, Any]]) -> List[Dict[str, Any]]:
        """Boundary sampling for all seeds (batched), unoriented."""
        import torch

        n = self.n_reference
        dev = self._features.device
        pairs_seed, pairs_other = [], []
        for j, (i, _, c, _) in enumerate(seeds):
            others = np.flatnonzero(self.predictions != c)
            if others.size == 0:
                raise ValueError(f"seed {'index ' + str(i) if i >= 0 else j} is predicted as class {c}, "
                                 f"and no reference image has another predicted class: there is no "
                                 f"decision boundary to sample (all {n} reference images are class {c})")
            ss = np.random.SeedSequence([self.seed, 0, i] if i >= 0 else [self.seed, 1])
            draw = np.random.default_rng(ss).choice(others, size=self.pool,
                                                    replace=self.pool > others.size)
            pairs_seed.append(np.full(self.pool, j, dtype=np.int64))
            pairs_other.append(draw.astype(np.int64))
        ps = np.concatenate(pairs_seed)
        po = np.concatenate(pairs_other)
        seed_feats = torch.stack([s[1] for s in seeds]).to(dev)
        seed_cls = torch.tensor([s[2] for s in seeds], dtype=torch.long, device=dev)
        m = ps.size
        W = torch.zeros((m, self._features.shape[1]), dtype=torch.float64, device=dev)
        B = torch.zeros(m, dtype=torch.float64, device=dev)
        P = torch.empty((m, self._features.shape[1]), dtype=self._features.dtype, device=dev)
        O = torch.empty(m, dtype=torch.long, device=dev)
        ok = torch.zeros(m, dtype=torch.bool, device=dev)
        for s in range(0, m, self.pairs_per_batch):
            sl = slice(s, min(m, s + self.pairs_per_batch))
            js = torch.from_numpy(ps[sl]).to(dev)
            start = seed_feats.index_select(0, js)
            other = self._features.index_select(0, torch.from_numpy(po[sl]).to(dev))
            cls = seed_cls.index_select(0, js)
            points, done = self._bisect(start, other, cls)
            ok[sl] = done
            if bool(done.any()):
                sel = torch.nonzero(done)[:, 0]
                w, b, o = self._hyperplanes(points.index_select(0, sel), cls.index_select(0, sel))
                rows = sel + s
                W[rows], B[rows], O[rows] = w, b, o
                P[rows] = points.index_select(0, sel)
        ok_np = ok.cpu().numpy()
        out = []
        for j in range(len(seeds)):
            rows = np.flatnonzero((ps == j) & ok_np)
            if rows.size == self.pool:   # every pair converged: a contiguous block, use views
                sel: Any = slice(j * self.pool, (j + 1) * self.pool)
            else:
                sel = torch.from_numpy(rows).to(dev)
            out.append(dict(W=_take(W, sel), B=_take(B, sel), P=_take(P, sel), sel=sel,
                            O=O[sel].cpu().numpy(), others=po[rows],
                            failed=int(self.pool - rows.size)))
        out[0]["all_W"], out[0]["all_B"] = W, B
        n_failed = sum(d["failed"] for d in out)
        if n_failed:
            warnings.warn(f"{n_failed} of {m} bisections did not reach a squared top-2 logit gap < "
                          f"{self.tol:g} in max_steps={self.max_steps} steps and were dropped "
                          f"(increase max_steps, or use a float64 model)", RuntimeWarning,
                          stacklevel=3)
        return out

    def _configure(self, seeds: List[Tuple[int, Any, int, Any]], sampled: List[Dict[str, Any]]
                   ) -> None:
        """Orient each seed's hyperplanes and compute the reference images'
        values ``w . psi + bias`` (float64); stored in ``sampled[j]``."""
        import torch

        feats = self._features
        # all sampled planes at once (rows of dropped pairs are zeros, never read)
        vals_all = self._ref_values(feats, sampled[0].pop("all_W"), sampled[0].pop("all_B"))
        for (i, psi, c, _), d in zip(seeds, sampled):
            W, B = d["W"], d["B"]
            vals = vals_all[:, d["sel"]]                                # (N, P) float64
            sv = (vals[i] if i >= 0 else psi.double()[None] @ W.T + B).reshape(-1).clone()
            sign = torch.where(sv < 0, -1.0, 1.0).to(torch.float64)
            W.mul_(sign[:, None])  # in place: W, B are this seed's rows (views or copies)
            B.mul_(sign)
            d["vals"] = vals * sign[None, :]
            d["seed_values"] = (sv * sign).cpu().numpy()

    def _ref_values(self, feats: Any, W: Any, B: Any) -> Any:
        import torch

        if W.shape[0] == 0:
            return torch.zeros((feats.shape[0], 0), dtype=torch.float64, device=feats.device)
        chunk = 4096
        return torch.cat([feats[s:s + chunk].double() @ W.T + B
                          for s in range(0, feats.shape[0], chunk)])

    def sample_boundaries(self, seed: Any) -> Boundaries:
        """The pool of decision boundaries :meth:`explain` samples for one
        seed (same draws, same bisection; no cover).

        Args:
            seed: a reference index or one image (``image_shape``).
        """
        seeds = self._resolve_seeds(seed, "seed")
        if len(seeds) != 1:
            raise ValueError(f"seed must be one reference index or one image, got {len(seeds)} seeds")
        d = self._sample(seeds)[0]
        self._configure(seeds, [d])
        return Boundaries(d["W"].cpu().numpy(), d["B"].cpu().numpy(), d["P"].double().cpu().numpy(),
                          d["O"].astype(np.int64), d["others"], seeds[0][2], d["failed"])

    # ------------------------------------------------------------------ explain
    def explain(self, seed: Any) -> Region:
        """The decision region of one seed.

        Args:
            seed: a reference index (int) or one image tensor of the
                reference images' shape (not necessarily a reference image).

        Returns:
            :class:`Region`.
        """
        seeds = self._resolve_seeds(seed, "seed")
        if len(seeds) != 1:
            raise ValueError(f"seed must be one reference index or one image, got {len(seeds)} seeds "
                             f"(use explain_all for many)")
        return self._explain(seeds)[0]

    def explain_all(self, seeds: Any) -> List[Region]:
        """Regions of many seeds: the bisections of all ``(seed, other)`` pairs
        run together (one batched head evaluation per step, chunks of
        ``pairs_per_batch`` pairs), the gradients at all boundary points in one
        batched backward per chunk, and the covers in parallel in the core
        (:func:`~interp_engine.engine.cover.ratio_greedy_cover_many`).  Each
        region equals :meth:`explain` of its seed (up to floating-point
        differences of batched evaluation).

        Args:
            seeds: reference indices (an iterable of ints, an int array) or
                images ``(B, *image_shape)``.

        Returns:
            A list of :class:`Region`, one per seed, in order.
        """
        seeds = self._resolve_seeds(seeds)
        if not seeds:
            return []
        return self._explain(seeds)

    def _explain(self, seeds: List[Tuple[int, Any, int, Any]]) -> List[Region]:
        import torch

        t0 = time.perf_counter()
        sampled = self._sample(seeds)
        t1 = time.perf_counter()
        self._configure(seeds, sampled)
        problems, meta = [], []
        for (i, _, c, _), d in zip(seeds, sampled):
            excluded = (d["vals"] < 0).T.cpu().numpy()            # (P, N)
            same = np.flatnonzero(self.predictions == c)
            other = np.flatnonzero(self.predictions != c)
            cost = PackedBits.from_dense(np.ascontiguousarray(excluded[:, same]))
            gain = PackedBits.from_dense(np.ascontiguousarray(excluded[:, other]))
            target = max(0, int(other.size) - int(self.delta))
            problems.append((cost, gain, target))
            meta.append((same, other, target))
        t2 = time.perf_counter()
        results = ratio_greedy_cover_many(problems, eps_cost=EPS_COST, eps_gain=EPS_GAIN,
                                          tighten=True, num_threads=self.num_threads)
        t3 = time.perf_counter()
        regions = []
        for (i, psi, c, img), d, (cost, gain, _), (same, other, target), res in zip(
                seeds, sampled, problems, meta, results):
            ch = res.indices
            cht = torch.from_numpy(ch).to(d["vals"].device)
            inside = (d["vals"].index_select(1, cht) >= 0).all(dim=1).cpu().numpy()
            members = np.flatnonzero(inside).astype(np.int64)
            mcls = self.predictions[members]
            regions.append(Region(
                seed_index=i, seed_class=c,
                weights=d["W"].index_select(0, cht).cpu().numpy(),
                biases=d["B"].index_select(0, cht).cpu().numpy(),
                points=d["P"].index_select(0, cht).double().cpu().numpy(),
                other_classes=d["O"][ch].astype(np.int64), others=d["others"][ch],
                chosen=ch, n_greedy=res.n_greedy, members=members, member_classes=mcls,
                n_other=int((mcls != c).sum()), reached=res.reached, target=target,
                delta=int(self.delta), seed_values=d["seed_values"][ch],
                n_pool=int(d["W"].shape[0]), n_unconverged=d["failed"], cost_sets=cost,
                gain_sets=gain, same_indices=same.astype(np.int64),
                other_indices=other.astype(np.int64), _owner=self,
                _seed_image=None if img is None else img.detach()))
        t4 = time.perf_counter()
        self.last_timings = {"sampling": t1 - t0, "configuration": (t2 - t1) + (t4 - t3),
                             "cover": t3 - t2}
        return regions


def _take(t: Any, sel: Any) -> Any:
    """Rows ``sel`` of ``t``: a view for a slice, a copy for an index tensor."""
    return t[sel] if isinstance(sel, slice) else t.index_select(0, sel)


# ----------------------------------------------------------------------------- plot

def _display(img: Any) -> np.ndarray:
    """(C, H, W) tensor/array -> (H, W, 3) or (H, W) float in [0, 1] for imshow."""
    a = img.detach().cpu().double().numpy() if hasattr(img, "detach") else np.asarray(img, float)
    if a.ndim != 3:
        raise ValueError(f"images must be (C, H, W) per image to be plotted, got shape {a.shape}")
    a = a.transpose(1, 2, 0)
    if a.shape[2] == 1:
        a = a[:, :, 0]
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def plot_region(region: Region, path: Any, *, images: Any = None, k: int = 5,
                alpha: float = 0.5) -> None:
    """Save a figure: the seed with its region heatmap, then the ``k`` most
    similar members of the region (:meth:`Region.similar`, the seed excluded)
    with theirs.  Needs matplotlib.

    Args:
        region: from :meth:`RepresentativeInterpretation.explain`.
        path: output file (format from the suffix, e.g. ``.png``).
        images: the reference images, a tensor ``(N, C, H, W)`` or anything
            indexable by reference index giving ``(C, H, W)`` images (or
            tuples / dicts as :func:`~interp_engine.capture.input_of` reads);
            default: the tensor given to ``fit``.  Float images outside
            ``[0, 1]`` are min-max scaled for display.
        k: number of similar images shown.
        alpha: opacity of the overlaid heatmaps.
    """
    from ..capture import input_of
    from ..report.figures import agg_figure

    if not isinstance(region, Region):
        raise TypeError(f"region must be a Region, got {describe(region)}")
    k = check_positive_int(k, "k")
    owner = region._owner
    if images is None:
        images = owner.images
        if images is None:
            raise ValueError("images=None: fit() was given an iterable, not a tensor, so the reference "
                             "images are not kept; pass images= (indexable by reference index)")

    def get(i: int) -> Any:
        return input_of(images[i], f"images[{i}]")

    fig = agg_figure(figsize=(2.6 * (k + 1), 3.0))
    sim = region.similar()
    rest = [(int(i), float(dd), int(c)) for i, dd, c in zip(*sim) if int(i) != region.seed_index][:k]
    if region.seed_index >= 0:
        seed_img = get(region.seed_index)
        seed_map = region.heatmap(region.seed_index)
        title = f"seed #{region.seed_index}\nclass {region.seed_class}"
    else:
        seed_img = region._seed_image
        seed_map = region.heatmap(seed_img)
        title = f"seed (image)\nclass {region.seed_class}"
    panels = [(seed_img, seed_map, title)]
    for i, dd, c in rest:
        panels.append((get(i), region.heatmap(i), f"#{i} class {c}\nd={dd:.3g}"))
    for j, (img, hm, t) in enumerate(panels):
        ax = fig.add_subplot(1, k + 1, j + 1)
        a = _display(img)
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None)
        ax.imshow(hm, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"region of {region.n_members} images ({region.n_other} of other classes), "
                 f"{region.n_boundaries} boundaries", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
