"""Representative interpretations (Lam et al., ICCV 2021): the decision region
of a seed image, found by co-clustering the reference images with sampled
linear decision boundaries (docs/algorithms.md §5; docs/representative.md).

Notation: ``psi(x)`` is the output of ``layer`` for input ``x`` (flattened to
``D`` values where a vector is needed), ``head`` maps ``psi`` to logits
``l(psi)`` (``K`` classes); the *predicted class* of an image is
``argmax_k head(psi(x))_k`` (ties: lowest index).  Predicted classes, not
ground-truth labels, define same-class and other-class images.

Per seed ``x0`` of predicted class ``c`` (:meth:`RepresentativeInterpretation.explain`;
steps 1-3 in :mod:`.boundaries`, the region in :mod:`.region`):

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
images (:meth:`Region.contains`); :func:`interp_engine.report.plot_region`
draws them.  The evaluation on unseen images is
:func:`~interp_engine.methods.representative.evaluate_regions`; Grad-CAM and
Average Drop / Increase live in :mod:`interp_engine.methods.cam`.

Importing this module does not import torch; using it does.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...engine.checks import check_bool, check_num_threads, check_positive_int, check_real, describe
from ...engine.cover import PackedBits, ratio_greedy_cover_many
from . import boundaries
from .boundaries import Boundaries, _warn_if_not_piecewise_linear, derive_head
from .region import Region
from .result import Regions

__all__ = ["RepresentativeInterpretation", "EPS_COST", "EPS_GAIN"]

#: the ratio greedy's constants (Lam et al.)
EPS_COST = 1e-5
EPS_GAIN = 1e-10


class RepresentativeInterpretation:
    """Representative interpretations (Lam et al., ICCV 2021): see the module doc.

    Usage::

        model.eval()
        ri = RepresentativeInterpretation(model, "features.29", pool=50).fit(images)
        regions = ri.explain(range(100))       # Regions: batched sampling, parallel covers
        region = regions[0]                    # a Region (seeds may also be image tensors)
        region.similar(10); region.heatmap(0); region.contains(new_images)
        regions.table(); regions.to_csv("regions.csv"); regions.save("regions.npz")

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
        pool: boundaries sampled per seed (int >= 1; the paper uses 50).
        delta: other-class images allowed in a region (int >= 0).
        seed: seed of the other-class image draws (int >= 0); reference seed
            ``i`` uses the generator ``(seed, 0, i)``, an image seed ``(seed, 1)``.

    Every setting is keyword-only (``head`` may also be the third positional
    argument) and validated here (TypeError / ValueError naming it).

    Attributes (after :meth:`fit`):
        predictions: int64 ``(N,)`` predicted classes of the reference images.
        logits: float64 ``(N, K)`` ``head(psi)`` of the reference images.
        psi_shape: the layer's output shape per image.
        image_shape: the reference images' shape per image.
        last_timings: seconds of the last :meth:`explain`:
            ``{"sampling", "configuration", "cover"}``.
    """

    def __init__(self, model: Any, layer: str, head: Any = None, *, batch_size: int = 64,
                 pairs_per_batch: int = 2048, tol: float = 1e-5, max_steps: int = 500,
                 check_head: bool = True, num_threads: Optional[int] = None, pool: int = 50,
                 delta: int = 0, seed: int = 0) -> None:
        from torch import nn

        from ...capture import find_module

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
        self.pool = check_positive_int(pool, "pool")
        self.delta = check_positive_int(delta, "delta", minimum=0)
        self.seed = check_positive_int(seed, "seed", minimum=0)
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
        from ...capture import model_device_dtype

        return model_device_dtype(self.model)

    def _forward(self, x: Any) -> Tuple[Any, Any]:
        """(psi detached clone, model logits) for one batch, psi in the
        layer's own shape (capture.OutputHooks); the hook is removed whatever
        happens."""
        import torch

        from ...capture import OutputHooks

        store: Dict[str, Any] = {}

        def see(output: Any) -> None:
            if "psi" in store:
                raise ValueError(f"layer {self.layer!r} ran more than once in one forward pass "
                                 f"(a shared module?); choose a layer that runs once")
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                raise TypeError(f"layer {self.layer!r} must output a floating tensor, got "
                                f"{describe(output)}")
            store["psi"] = output.detach().clone()

        with OutputHooks(self.model, {self.layer: see}), torch.no_grad():
            out = self.model(x)
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

        from ...capture import input_of

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
    def fit(self, reference: Any, *, pool: Optional[int] = None, delta: Optional[int] = None,
            seed: Optional[int] = None) -> "RepresentativeInterpretation":
        """Compute ``psi`` and the predicted classes of the reference images
        (once, batched).

        Args:
            reference: a tensor ``(N, C, H, W)`` (kept, for
                :func:`~interp_engine.report.plot_region`), or an iterable of
                batches: tensors, ``(x, y)`` tuples/lists (element 0 is the
                input) or dicts with an ``"image"`` key, as a ``DataLoader``
                gives.  All batches must share the image shape.
            pool, delta, seed: deprecated here (DeprecationWarning): pass them
                to the constructor.

        Returns:
            ``self``.
        """
        import torch

        old = {k: v for k, v in (("pool", pool), ("delta", delta), ("seed", seed)) if v is not None}
        if old:
            given = ", ".join(f"{k}={v!r}" for k, v in old.items())
            warnings.warn(f"fit(reference, {given}) is deprecated; use RepresentativeInterpretation(model, "
                          f"layer, {given}).fit(reference)", DeprecationWarning, stacklevel=2)
            if pool is not None:
                self.pool = check_positive_int(pool, "pool")
            if delta is not None:
                self.delta = check_positive_int(delta, "delta", minimum=0)
            if seed is not None:
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
    def sample_boundaries(self, seed: Any) -> Boundaries:
        """The pool of decision boundaries :meth:`explain` samples for one
        seed (same draws, same bisection; no cover).

        Args:
            seed: a reference index or one image (``image_shape``).
        """
        seeds = self._resolve_seeds(seed, "seed")
        if len(seeds) != 1:
            raise ValueError(f"seed must be one reference index or one image, got {len(seeds)} seeds")
        d = boundaries.sample(self, seeds)[0]
        boundaries.configure(self, seeds, [d])
        return Boundaries(d["W"].cpu().numpy(), d["B"].cpu().numpy(), d["P"].double().cpu().numpy(),
                          d["O"].astype(np.int64), d["others"], seeds[0][2], d["failed"])

    # ------------------------------------------------------------------ explain
    def explain(self, seeds: Any) -> Regions:
        """The decision regions of seeds.

        The bisections of all ``(seed, other)`` pairs run together (one
        batched head evaluation per step, chunks of ``pairs_per_batch``
        pairs), the gradients at all boundary points in one batched backward
        per chunk, and the covers in parallel in the core
        (:func:`~interp_engine.engine.cover.ratio_greedy_cover_many`).  A
        seed's region does not depend on the other seeds explained with it
        (up to floating-point differences of batched evaluation).

        Args:
            seeds: a reference index (int), reference indices (an iterable of
                ints, an int array), one image of the reference images' shape
                or images ``(B, *image_shape)`` (not necessarily reference
                images).

        Returns:
            :class:`Regions`, one :class:`Region` per seed, in order (one for
            a single index or image; empty for no seeds).
        """
        seeds = self._resolve_seeds(seeds)
        regions = self._explain(seeds) if seeds else []
        return Regions(regions, layer=self.layer, n_reference=self.n_reference, psi_shape=self.psi_shape,
                       image_shape=self.image_shape, pool=self.pool, delta=self.delta, seed=self.seed,
                       timings=self.last_timings if seeds else {})

    def explain_all(self, seeds: Any) -> List[Region]:
        """Deprecated: ``list(explain(seeds))``."""
        warnings.warn("explain_all(seeds) is deprecated; use explain(seeds) (Regions, a sequence of Region)",
                      DeprecationWarning, stacklevel=2)
        return list(self.explain(seeds))

    def _explain(self, seeds: List[Tuple[int, Any, int, Any]]) -> List[Region]:
        import torch

        t0 = time.perf_counter()
        sampled = boundaries.sample(self, seeds)
        t1 = time.perf_counter()
        boundaries.configure(self, seeds, sampled)
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
