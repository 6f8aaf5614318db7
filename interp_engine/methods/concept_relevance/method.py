"""Global and local interpretation with concept vectors (issue 5).

Concept vectors ``V`` (``L`` concepts, ``K`` channels of a layer) come from a
fitted :class:`~interp_engine.methods.concept_vectors.ConceptVectors`, TCAV
(``features="mean"``) or any ``(L, K)`` array.  Every function here first
normalizes each row to unit norm, ``v_c = V[c] / |V[c]|`` (a zero row is an
error), so that values are directional derivatives / projections along the
concept direction whatever the vectors' scale.

Notation: ``a(h, w)`` is the layer's activation at position ``(h, w)`` of its
``(B, K, H, W)`` view (the capture adapter's layout; ``(B, K)`` outputs are
one position), ``g_k(h, w) = d logit_k / d a(h, w)``.

Global (:func:`concept_class_relevance`)::

    relevance[k, c] = mean over the inputs x predicted as class k (argmax of the
                      model's logits) of  < sum_{h,w} g_k(x)(h, w) , v_c >

the derivative of logit ``k`` when the activation moves by ``v_c`` at every
position (TCAV's sensitivity with ``features="mean"``, averaged instead of
sign-counted).  A class no input is predicted as has a NaN row and count 0.
For a linear head on spatially *mean*-pooled features, ``logit = W abar + b``,
``sum_{h,w} g_k = W[k]`` for every input, so ``relevance[k, c] = W[k] . v_c``
= :func:`linear_head_relevance` (with sum pooling: ``H*W`` times that).

Local (:func:`concept_maps`, :func:`concept_contributions`) for one image:

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
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...engine._arrays import check_dense_tensor, check_positive_int, describe, float_array
from .._gradients import iter_layer_gradients

__all__ = ["RelevanceResult", "LocalContributions", "concept_class_relevance",
           "linear_head_relevance", "concept_maps", "concept_contributions", "plot_local"]


# ----------------------------------------------------------------------------- helpers

def _unit_vectors(vectors: Any, concept_names: Optional[Sequence[str]], layer: Optional[str],
                  ) -> Tuple[np.ndarray, List[str]]:
    """``(L, K)`` float64 unit rows and the concept names from an array or a
    fitted ConceptVectors (whose layer must be ``layer`` when given)."""
    from ..concept_vectors import ConceptVectors

    names: Optional[List[str]] = None
    if isinstance(vectors, ConceptVectors):
        vectors._check_fitted()
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


def _check_model_layer(model: Any, layer: str) -> None:
    from ...capture import find_module

    find_module(model, layer)  # TypeError/ValueError naming the layer and close matches


def _check_image(image: Any) -> Any:
    import torch

    if isinstance(image, torch.Tensor):
        check_dense_tensor(image, "image")
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a torch.Tensor (C, H, W) (one model input), got "
                         f"{describe(image)}")
    return image[None]


# ----------------------------------------------------------------------------- global

@dataclass
class RelevanceResult:
    """Concept-class relevance.

    Attributes:
        relevance: float64 ``(num_rows, L)``; row ``i`` is class
            ``classes[i]``, column ``c`` concept ``concepts[c]`` (NaN for a
            class no input was predicted as).
        concepts: the ``L`` concept names.
        classes: the class index of every row.
        counts: int64 ``(num_rows,)`` inputs predicted as each class, or
            ``None`` for :func:`linear_head_relevance`.
        layer: the layer (``""`` when not known).
        method: ``"gradient"`` or ``"linear_head"``.
    """

    relevance: np.ndarray = field(repr=False)
    concepts: List[str]
    classes: List[int]
    counts: Optional[np.ndarray] = field(default=None, repr=False)
    layer: str = ""
    method: str = "gradient"

    def top(self, class_index: int, n: int = 5) -> List[Tuple[str, float]]:
        """The ``n`` concepts of highest relevance for class ``class_index``
        (a class index, not a row), highest first: ``[(concept, value)]``."""
        if class_index not in self.classes:
            raise KeyError(f"class {class_index} is not in this result (classes "
                           f"{self.classes[:10]}{'...' if len(self.classes) > 10 else ''})")
        row = self.relevance[self.classes.index(class_index)]
        if np.all(np.isnan(row)):
            return []
        order = np.argsort(-row, kind="stable")[:check_positive_int(n, "n")]
        return [(self.concepts[j], float(row[j])) for j in order]

    def table(self, top: int = 5) -> List[Dict[str, Any]]:
        """One plain dict per class: ``class``, ``count`` (None for a linear
        head) and ``top``, the ``top`` most relevant ``(concept, value)``
        pairs, highest first (empty when no input was predicted as it)."""
        return [{"class": k,
                 "count": None if self.counts is None else int(self.counts[i]),
                 "top": self.top(k, top)} for i, k in enumerate(self.classes)]

    def __str__(self) -> str:
        lines = [f"concept-class relevance ({self.method}) at {self.layer!r}: "
                 f"{len(self.classes)} classes x {len(self.concepts)} concepts"]
        for row in self.table(3):
            cnt = "" if row["count"] is None else f" (n={row['count']})"
            tops = ", ".join(f"{c} {v:+.3g}" for c, v in row["top"]) or "-"
            lines.append(f"class {row['class']}{cnt}: {tops}")
        return "\n".join(lines)

    def plot_heatmap(self, path: Any, *, class_names: Optional[Sequence[str]] = None) -> None:
        """Save a heatmap (classes x concepts, diverging colours centred on 0)
        to ``path`` (any format matplotlib knows from the suffix, e.g. PNG).
        Needs matplotlib."""
        rel = self.relevance
        nr, nc = rel.shape
        from ...report.figures import agg_figure

        fig = agg_figure(figsize=(min(2 + 0.45 * nc, 30), min(1.5 + 0.35 * nr, 30)))
        ax = fig.add_subplot(1, 1, 1)
        finite = rel[np.isfinite(rel)]
        lim = float(np.max(np.abs(finite))) if finite.size else 1.0
        im = ax.imshow(rel, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
        ax.set_xticks(range(nc), self.concepts, rotation=90)
        labels = ([str(class_names[k]) for k in self.classes] if class_names is not None
                  else [str(k) for k in self.classes])
        ax.set_yticks(range(nr), labels)
        ax.set_xlabel("concept")
        ax.set_ylabel("class")
        ax.set_title(f"concept-class relevance ({self.method})")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(path)


def concept_class_relevance(model: Any, layer: str, vectors: Any, inputs: Any, *,
                            classes: Optional[Sequence[int]] = None,
                            concept_names: Optional[Sequence[str]] = None,
                            batch_size: int = 64) -> RelevanceResult:
    """Which concepts each class's decision relies on, from gradients.

    ``relevance[k, c]`` = mean over the inputs predicted as class ``k`` of
    ``< sum_{h,w} d logit_k / d a(h, w), v_c >`` (module docstring).

    Args:
        model: ``torch.nn.Module`` returning logits ``(B, num_classes)``;
            not modified (call ``model.eval()`` yourself); hooks are removed.
        layer: a name from ``model.named_modules()``; its output, as
            ``(B, K, H, W)``, has ``K`` channels.
        vectors: float ``(L, K)`` array (numpy or torch) or a fitted
            ConceptVectors (fitted at ``layer``); rows are normalized.
        inputs: model inputs, tensor ``(N, ...)`` or dataset (items tensors,
            tuples or dicts with ``"image"``).
        classes: the class indices to report (rows, in this order); default
            all ``num_classes``.
        concept_names: ``L`` names (default the ConceptVectors' names or
            ``concept_i``).
        batch_size: inputs per forward/backward pass.

    Returns:
        :class:`RelevanceResult` with ``relevance`` float64
        ``(len(classes), L)`` and ``counts``.
    """
    import torch

    _check_model_layer(model, layer)
    v, names = _unit_vectors(vectors, concept_names, layer)
    batch_size = check_positive_int(batch_size, "batch_size")
    if classes is not None:
        classes = [_class_index(k, "classes") for k in classes]
        if not classes:
            raise ValueError("classes must hold at least one class index (or be None for all)")
    sums = counts = vt = None
    grads = iter_layer_gradients(model, layer, inputs, None, batch_size=batch_size,
                                 method="concept_class_relevance")
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
    return RelevanceResult(rel, names, rows, n.astype(np.int64), layer, "gradient")


def _class_index(k: Any, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{what} must hold integer class indices, got {k!r}")
    if k < 0:
        raise ValueError(f"{what} must hold class indices >= 0, got {k}")
    return int(k)


def linear_head_relevance(weight: Any, vectors: Any, *,
                          concept_names: Optional[Sequence[str]] = None,
                          layer: str = "") -> RelevanceResult:
    """Direct weight alignment for a linear head on the layer's pooled
    features: ``relevance[k, c] = weight[k] . v_c`` (``weight @ V_unit.T``).

    Equals :func:`concept_class_relevance` for a head ``W mean_{h,w} a + b``
    on every input (``H*W`` times it for sum pooling).

    Args:
        weight: float ``(num_classes, K)`` (numpy or torch, e.g.
            ``model.fc.weight``).
        vectors: ``(L, K)`` array or a fitted ConceptVectors; rows normalized.
        concept_names: ``L`` names (optional).
        layer: recorded in the result.

    Returns:
        :class:`RelevanceResult` ``(num_classes, L)``, ``counts=None``.
    """
    import sys

    if "torch" in sys.modules:
        import torch

        if isinstance(weight, torch.Tensor):
            weight = check_dense_tensor(weight, "weight").detach().cpu()
    v, names = _unit_vectors(vectors, concept_names, None)
    arr, _ = float_array(weight, "weight", ndim=2, allowed=("f16", "f32", "f64"))
    w = np.asarray(arr, dtype=np.float64)
    if w.shape[1] != v.shape[1] or w.shape[0] == 0:
        raise ValueError(f"weight must be (num_classes, K) with K={v.shape[1]} (the vectors' "
                         f"channels), got shape {w.shape}")
    return RelevanceResult(w @ v.T, names, list(range(w.shape[0])), None, layer, "linear_head")


# ----------------------------------------------------------------------------- local

def concept_maps(model: Any, layer: str, vectors: Any, image: Any, *,
                 concept_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Concept maps of one image: ``M_c(h, w) = v_c . a(h, w)`` at the
    layer's resolution, upsampled bilinearly (``align_corners=False``) to the
    image's ``(H, W)``.

    Args:
        model, layer: as :func:`concept_class_relevance`.
        vectors: ``(L, K)`` array or fitted ConceptVectors; rows normalized.
        image: one model input, tensor ``(C, H, W)``.

    Returns:
        float32 ``(L, H, W)`` numpy array (row order of ``vectors``).
    """
    import torch
    import torch.nn.functional as F
    from ...capture import Capture, model_device_dtype

    _check_model_layer(model, layer)
    v, _ = _unit_vectors(vectors, concept_names, layer)
    x = _check_image(image)
    dev, dt = model_device_dtype(model)
    x = x.to(device=dev, dtype=dt) if (x.is_floating_point() and dt) else x.to(dev)
    with Capture(model, layer, detach=False, clone=False) as cap, torch.no_grad():
        model(x)
        a = _bchw(cap.raw_outputs[layer], layer, v.shape[1]).to(torch.float32)
    m = torch.einsum("bkhw,lk->blhw", a, torch.as_tensor(v, dtype=torch.float32, device=a.device))
    m = F.interpolate(m, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
    return m[0].cpu().numpy()


@dataclass
class LocalContributions:
    """Each concept's contribution to one class logit for one image
    (module docstring), sorted by contribution, highest first.

    Attributes:
        target_class: the class whose logit is explained.
        logit: its value for the image.
        concepts: names, sorted by contribution (descending).
        contributions: float64 ``(L,)`` ``D_c * P_c`` in that order.
        derivatives: float64 ``(L,)`` ``D_c`` (directional derivatives).
        projections: float64 ``(L,)`` ``P_c`` (mean projections).
        order: int64 ``(L,)`` row of ``vectors`` of each entry (so
            ``maps[order]`` follows the sorted concepts).
        total: ``sum_{h,w} grad . a`` (gradient x activation).
        residual: ``total - contributions.sum()``.
    """

    target_class: int
    logit: float
    concepts: List[str]
    contributions: np.ndarray = field(repr=False)
    derivatives: np.ndarray = field(repr=False)
    projections: np.ndarray = field(repr=False)
    order: np.ndarray = field(repr=False)
    total: float = 0.0
    residual: float = 0.0

    def top(self, n: int = 5) -> List[Tuple[str, float]]:
        """The ``n`` largest contributions: ``[(concept, value)]``."""
        n = check_positive_int(n, "n")
        return [(c, float(x)) for c, x in zip(self.concepts[:n], self.contributions[:n])]

    def __str__(self) -> str:
        lines = [f"class {self.target_class}: logit {self.logit:.4g}, gradient x activation "
                 f"{self.total:.4g}, residual {self.residual:.4g}"]
        lines += [f"  {c:<20} {x:+.4g}" for c, x in self.top(len(self.concepts))]
        return "\n".join(lines)


def concept_contributions(model: Any, layer: str, vectors: Any, image: Any,
                          target_class: Optional[int] = None, *,
                          concept_names: Optional[Sequence[str]] = None) -> LocalContributions:
    """Contribution of each concept to ``target_class``'s logit for one
    image: ``D_c * P_c`` (directional derivative of the logit along ``v_c``
    at every position, times the mean projection of the activations on
    ``v_c``), with ``total`` and ``residual`` (module docstring).

    Args:
        model, layer: as :func:`concept_class_relevance`.
        vectors: ``(L, K)`` array or fitted ConceptVectors; rows normalized.
        image: one model input, tensor ``(C, H, W)``.
        target_class: class index; ``None``: the predicted class.
        concept_names: ``L`` names (optional).

    Returns:
        :class:`LocalContributions`, sorted by contribution, highest first.
    """
    import torch

    _check_model_layer(model, layer)
    v, names = _unit_vectors(vectors, concept_names, layer)
    if target_class is not None:
        target_class = _class_index(target_class, "target_class")
    x = _check_image(image)
    ((a, g, logits, t),) = list(iter_layer_gradients(model, layer, x, target_class, batch_size=1,
                                                      method="concept_contributions",
                                                      what="image"))
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
                              total - float(contrib.sum()))


def plot_local(image_uint8: Any, maps: Any, contributions: LocalContributions, path: Any, *,
               top: int = 4, alpha: float = 0.5) -> None:
    """Save a figure: the image, the image with each of the ``top``
    concepts' maps overlaid (highest contributions first), and a bar chart of
    all contributions.  Needs matplotlib.

    Args:
        image_uint8: uint8 ``(H, W, 3)`` (or ``(3, H, W)``), numpy or torch.
        maps: ``(L, H, W)`` from :func:`concept_maps` (rows in the order of
            the vectors given to both functions).
        contributions: from :func:`concept_contributions` with the same vectors.
        path: output file (format from the suffix, e.g. ``.png``).
        top: number of concept maps shown.
        alpha: opacity of the overlaid maps.
    """
    import sys

    if "torch" in sys.modules:
        import torch

        if isinstance(image_uint8, torch.Tensor):
            image_uint8 = image_uint8.detach().cpu().numpy()
        if isinstance(maps, torch.Tensor):
            maps = maps.detach().cpu().numpy()
    img = np.asarray(image_uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or 3 not in (img.shape[0], img.shape[2]):
        raise ValueError(f"image_uint8 must be a uint8 (H, W, 3) or (3, H, W) image, got "
                         f"{describe(image_uint8)}")
    if img.shape[2] != 3:
        img = img.transpose(1, 2, 0)
    m = np.asarray(maps, dtype=np.float64)
    if not isinstance(contributions, LocalContributions):
        raise TypeError(f"contributions must be a LocalContributions, got "
                        f"{describe(contributions)}")
    L = len(contributions.concepts)
    if m.shape != (L,) + img.shape[:2]:
        raise ValueError(f"maps must be (L, H, W) = ({L}, {img.shape[0]}, {img.shape[1]}) (one "
                         f"map per concept, at the image's size), got shape {m.shape}")
    top = min(check_positive_int(top, "top"), L)
    from ...report.figures import agg_figure

    fig = agg_figure(figsize=(3 * (top + 1), 6))
    gs = fig.add_gridspec(2, top + 1)
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(img)
    ax.set_title(f"class {contributions.target_class}")
    ax.axis("off")
    for j in range(top):
        ax = fig.add_subplot(gs[0, j + 1])
        ax.imshow(img)
        ax.imshow(m[contributions.order[j]], cmap="jet", alpha=alpha)
        ax.set_title(f"{contributions.concepts[j]}\n{contributions.contributions[j]:+.3g}",
                     fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(gs[1, :])
    vals = contributions.contributions
    ax.bar(range(L), vals, color=["tab:red" if x > 0 else "tab:blue" for x in vals])
    ax.set_xticks(range(L), contributions.concepts, rotation=90, fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("contribution to logit")
    ax.set_title(f"residual {contributions.residual:+.3g} of gradient x activation "
                 f"{contributions.total:+.3g}")
    fig.tight_layout()
    fig.savefig(path)
