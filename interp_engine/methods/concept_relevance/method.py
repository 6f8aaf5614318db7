"""Global and local interpretation with concept vectors (docs/algorithms.md §4;
docs/concept_vectors.md): :class:`ConceptRelevance`.

Concept vectors ``V`` (``L`` concepts, ``K`` channels of a layer) come from a
fitted :class:`~interp_engine.methods.concept_vectors.ConceptVectors`, TCAV
(``features="mean"``) or any ``(L, K)`` array.  The constructor first
normalizes each row to unit norm, ``v_c = V[c] / |V[c]|`` (a zero row is an
error), so that values are directional derivatives / projections along the
concept direction whatever the vectors' scale.

Notation: ``a(h, w)`` is the layer's activation at position ``(h, w)`` of its
``(B, K, H, W)`` view (the capture adapter's layout; ``(B, K)`` outputs are
one position), ``g_k(h, w) = d logit_k / d a(h, w)``.

Global (:meth:`ConceptRelevance.explain`)::

    relevance[k, c] = mean over the inputs x predicted as class k (argmax of the
                      model's logits) of  < sum_{h,w} g_k(x)(h, w) , v_c >

the derivative of logit ``k`` when the activation moves by ``v_c`` at every
position (TCAV's sensitivity with ``features="mean"``, averaged instead of
sign-counted).  A class no input is predicted as has a NaN row and count 0.
For a linear head on spatially *mean*-pooled features, ``logit = W abar + b``,
``sum_{h,w} g_k = W[k]`` for every input, so ``relevance[k, c] = W[k] . v_c``
= ``explain(weight=W)`` (with sum pooling: ``H*W`` times that).

Local (:meth:`ConceptRelevance.explain_image`, :meth:`ConceptRelevance.concept_maps`)
for one image:

* concept map ``M_c(h, w) = v_c . a(h, w)``, upsampled bilinearly
  (``align_corners=False``) to the image size.
* contribution ``contrib_c = D_c * P_c`` with the directional derivative
  ``D_c = < sum_{h,w} g_k(h, w), v_c >`` and the mean projection
  ``P_c = mean_{h,w} v_c . a(h, w)``; ``total = sum_{h,w} g_k(h, w) . a(h, w)``
  (gradient x activation at the layer: ``logit_k - b_k`` for a linear head on
  the layer's pooled features) and ``residual = total - sum_c contrib_c``.
  The residual is 0 when the vectors are orthonormal and span the ``K``
  channels and the gradient is the same at every position (a linear head on
  mean-pooled features); otherwise it measures what the concepts leave out.
"""
from __future__ import annotations

from contextlib import closing
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ...engine.checks import check_dense_tensor, check_positive_int, describe, float_array
from .._gradients import iter_layer_gradients
from .result import LocalContributions, RelevanceResult

__all__ = ["ConceptRelevance"]


# ----------------------------------------------------------------------------- helpers

def unit_vectors(vectors: Any, concept_names: Optional[Sequence[str]], layer: Optional[str],
                 ) -> Tuple[np.ndarray, List[str]]:
    """``(L, K)`` float64 unit rows and the concept names from an array or a
    fitted ConceptVectors (whose layer must be ``layer`` when given)."""
    from ..concept_vectors import ConceptVectors

    names: Optional[List[str]] = None
    if isinstance(vectors, ConceptVectors):
        if vectors.vectors is None:
            raise RuntimeError("no concept vectors: call fit() or load() first")
        if layer is not None and vectors.layer != layer:
            raise ValueError(f"vectors were fitted at layer {vectors.layer!r}, not at "
                             f"layer={layer!r}")
        names = list(vectors.concepts)
        vectors = vectors.vectors
    arr, _ = float_array(vectors, "vectors", ndim=2, allowed=("f16", "f32", "f64"))
    v = np.asarray(arr, dtype=np.float64)
    if v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"vectors must be (L, K) with L, K >= 1, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vectors must be finite (found NaN or inf)")
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"vectors has zero rows (concepts {np.flatnonzero(norms == 0).tolist()}); "
                         f"a concept direction must be non-zero")
    if concept_names is not None:
        if isinstance(concept_names, str) or len(concept_names) != v.shape[0]:
            raise ValueError(f"concept_names must be a list of {v.shape[0]} names (one per row "
                             f"of vectors), got {concept_names!r}")
        names = [str(n) for n in concept_names]
    if names is None:
        names = [f"concept_{i}" for i in range(v.shape[0])]
    return v / norms[:, None], names


def _bchw(t: Any, layer: str, k: int) -> Any:
    from ...capture import to_bchw

    t = to_bchw(t, layer=layer)
    if t.shape[1] != k:
        raise ValueError(f"layer {layer!r} has {t.shape[1]} channels, the vectors have K={k} "
                         f"(vectors from another layer?)")
    return t


def _check_image(image: Any) -> Any:
    import torch

    if isinstance(image, torch.Tensor):
        check_dense_tensor(image, "image")
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a torch.Tensor (C, H, W) (one model input), got "
                         f"{describe(image)}")
    return image[None]


def _class_index(k: Any, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{what} must hold integer class indices, got {k!r}")
    if k < 0:
        raise ValueError(f"{what} must hold class indices >= 0, got {k}")
    return int(k)


def linear_relevance(weight: Any, v: np.ndarray) -> np.ndarray:
    """``weight @ v.T`` (float64) for a ``(num_classes, K)`` weight (numpy or torch)."""
    import sys

    if "torch" in sys.modules:
        import torch

        if isinstance(weight, torch.Tensor):
            weight = check_dense_tensor(weight, "weight").detach().cpu()
    arr, _ = float_array(weight, "weight", ndim=2, allowed=("f16", "f32", "f64"))
    w = np.asarray(arr, dtype=np.float64)
    if w.shape[1] != v.shape[1] or w.shape[0] == 0:
        raise ValueError(f"weight must be (num_classes, K) with K={v.shape[1]} (the vectors' "
                         f"channels), got shape {w.shape}")
    return w @ v.T


# ----------------------------------------------------------------------------- the method

class ConceptRelevance:
    """Which concepts a model's decisions rely on, globally (per class) and
    locally (per image), from concept vectors at a layer (module docstring).

    Args:
        model: ``torch.nn.Module`` returning logits ``(B, num_classes)``; not
            modified (call ``model.eval()`` yourself); hooks are removed after
            every call.  None for the linear-head closed form alone
            (``explain(weight=...)``).
        layer: a name from ``model.named_modules()``; its output, as
            ``(B, K, H, W)``, has ``K`` channels.  Optional without a model
            (recorded in the result).
        vectors: float ``(L, K)`` array (numpy or torch) or a fitted
            ConceptVectors (fitted at ``layer``); rows are normalized.
        concept_names: ``L`` names (default the ConceptVectors' names or
            ``concept_i``).
        batch_size: inputs per forward/backward pass of :meth:`explain`.

    Settings are keyword-only and checked here (ValueError / TypeError naming
    them; an unfitted ConceptVectors: RuntimeError).
    """

    def __init__(self, model: Any, layer: Optional[str], vectors: Any, *,
                 concept_names: Optional[Sequence[str]] = None, batch_size: int = 64):
        if model is not None:
            from ...capture import find_module

            find_module(model, layer)  # TypeError/ValueError naming the layer and close matches
        elif layer is not None and not isinstance(layer, str):
            raise TypeError(f"layer must be a module name (str) or None; got {describe(layer)}")
        self.model = model
        self.layer = layer
        self.vectors, self.concepts = unit_vectors(vectors, concept_names, layer)
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def __repr__(self) -> str:
        return (f"ConceptRelevance(layer={self.layer!r}, {len(self.concepts)} concepts x "
                f"{self.vectors.shape[1]} channels, batch_size={self.batch_size})")

    def _need_model(self, verb: str) -> None:
        if self.model is None:
            raise ValueError(f"{verb} needs a model: ConceptRelevance(model, layer, vectors); without one, "
                             "only explain(weight=...) (the linear-head closed form) is available")

    # ----- global
    def explain(self, inputs: Any = None, *, classes: Optional[Sequence[int]] = None,
                weight: Any = None) -> RelevanceResult:
        """Concept-class relevance: ``relevance[k, c]`` = mean over the inputs
        predicted as class ``k`` of ``< sum_{h,w} d logit_k / d a(h, w), v_c >``
        (module docstring); or, with ``weight`` instead of inputs, the closed
        form for a linear head on the layer's mean-pooled features,
        ``weight[k] . v_c`` (equal to the former for such a head on every input;
        ``H*W`` times it for sum pooling).

        Args:
            inputs: model inputs, tensor ``(N, ...)`` or dataset (items tensors,
                tuples or dicts with ``"image"``).
            classes: the class indices to report (rows, in this order); default
                all ``num_classes``.
            weight: float ``(num_classes, K)`` (numpy or torch, e.g.
                ``model.fc.weight``), instead of ``inputs``.

        Returns:
            :class:`RelevanceResult` ``(len(classes), L)``: with inputs
            ``method="gradient"`` and ``counts``; with a weight
            ``method="linear_head"``, ``counts=None``.
        """
        if (inputs is None) == (weight is None):
            raise ValueError("explain takes inputs (gradient relevance) or weight= (the linear-head closed "
                             f"form), exactly one; got {'both' if weight is not None else 'neither'}")
        if classes is not None:
            classes = [_class_index(k, "classes") for k in classes]
            if not classes:
                raise ValueError("classes must hold at least one class index (or be None for all)")
        if weight is not None:
            rel = linear_relevance(weight, self.vectors)
            if classes is not None and not all(k < rel.shape[0] for k in classes):
                raise ValueError(f"classes must be in [0, {rel.shape[0]}) (the weight's rows), got {classes}")
            rows = list(range(rel.shape[0])) if classes is None else classes
            return RelevanceResult(rel[rows], list(self.concepts), rows, None, self.layer or "", "linear_head")
        self._need_model("explain(inputs)")
        return self._gradient_relevance(inputs, classes)

    def _gradient_relevance(self, inputs: Any, classes: Optional[List[int]]) -> RelevanceResult:
        import torch

        v, layer = self.vectors, self.layer
        sums = counts = vt = None
        grads = iter_layer_gradients(self.model, layer, inputs, None, batch_size=self.batch_size,
                                     method="ConceptRelevance.explain")
        with closing(grads):  # the hook goes even when a check below raises
            for _, g, logits, t in grads:
                if sums is None:
                    nk = logits.shape[1]
                    if classes is not None and not all(0 <= k < nk for k in classes):
                        raise ValueError(f"classes must be in [0, {nk}) (the model's "
                                         f"num_classes), got {classes}")
                    sums = torch.zeros(nk, v.shape[0], dtype=torch.float64)
                    counts = torch.zeros(nk, dtype=torch.int64)
                    vt = torch.as_tensor(v)
                gs = _bchw(g, layer, v.shape[1]).sum(dim=(2, 3)).to("cpu", torch.float64)  # (B, K)
                tc = t.cpu()
                sums.index_add_(0, tc, gs @ vt.T)
                counts += torch.bincount(tc, minlength=counts.shape[0])
        rows = list(range(sums.shape[0])) if classes is None else classes
        s, n = sums.numpy()[rows], counts.numpy()[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(n[:, None] > 0, s / np.maximum(n, 1)[:, None], np.nan)
        return RelevanceResult(rel, list(self.concepts), rows, n.astype(np.int64), layer, "gradient")

    # ----- local
    def concept_maps(self, image: Any) -> np.ndarray:
        """Concept maps of one image: ``M_c(h, w) = v_c . a(h, w)`` at the layer's
        resolution, upsampled bilinearly (``align_corners=False``) to the image's
        ``(H, W)``; one forward, no gradient, no logits needed.

        Args:
            image: one model input, tensor ``(C, H, W)``.

        Returns:
            float32 ``(L, H, W)`` numpy array (row order of the vectors).
        """
        import torch
        import torch.nn.functional as F

        from ...capture import Capture, model_device_dtype

        self._need_model("concept_maps")
        model, layer, v = self.model, self.layer, self.vectors
        x = _check_image(image)
        dev, dt = model_device_dtype(model)
        x = x.to(device=dev, dtype=dt) if (x.is_floating_point() and dt) else x.to(dev)
        with Capture(model, layer, detach=False, clone=False) as cap, torch.no_grad():
            model(x)
            a = _bchw(cap.raw_outputs[layer], layer, v.shape[1]).to(torch.float32)
        m = torch.einsum("bkhw,lk->blhw", a, torch.as_tensor(v, dtype=torch.float32, device=a.device))
        m = F.interpolate(m, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
        return m[0].cpu().numpy()

    def explain_image(self, image: Any, target_class: Optional[int] = None, *,
                      maps: bool = True) -> LocalContributions:
        """Contribution of each concept to ``target_class``'s logit for one image:
        ``D_c * P_c`` (directional derivative of the logit along ``v_c`` at every
        position, times the mean projection of the activations on ``v_c``), with
        ``total`` and ``residual`` (module docstring).

        Args:
            image: one model input, tensor ``(C, H, W)``.
            target_class: class index; ``None``: the predicted class.
            maps: also compute the image's concept maps (:meth:`concept_maps`, one
                more forward without gradient) into the result's ``maps``.

        Returns:
            :class:`LocalContributions`, sorted by contribution, highest first.
        """
        import torch

        self._need_model("explain_image")
        if not isinstance(maps, (bool, np.bool_)):
            raise TypeError(f"maps must be a bool; got {describe(maps)}")
        v, names, layer = self.vectors, self.concepts, self.layer
        if target_class is not None:
            target_class = _class_index(target_class, "target_class")
        x = _check_image(image)
        ((a, g, logits, t),) = list(iter_layer_gradients(self.model, layer, x, target_class, batch_size=1,
                                                          method="ConceptRelevance.explain_image", what="image"))
        a = _bchw(a, layer, v.shape[1])[0].to("cpu", torch.float64)   # (K, H, W)
        g = _bchw(g, layer, v.shape[1])[0].to("cpu", torch.float64)
        vt = torch.as_tensor(v)
        deriv = (vt @ g.sum(dim=(1, 2))).numpy()                      # (L,)
        proj = (vt @ a.mean(dim=(1, 2))).numpy()                      # (L,)
        contrib = deriv * proj
        total = float((g * a).sum())
        order = np.argsort(-contrib, kind="stable")
        k = int(t[0])
        return LocalContributions(k, float(logits[0, k]), [names[i] for i in order], contrib[order],
                                  deriv[order], proj[order], order.astype(np.int64), total,
                                  total - float(contrib.sum()), self.concept_maps(image) if maps else None)
