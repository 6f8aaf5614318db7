"""Figures of concept relevance (docs/concept_vectors.md): the classes x concepts
heatmap of a :class:`~interp_engine.methods.concept_relevance.RelevanceResult`
and the local figure of a
:class:`~interp_engine.methods.concept_relevance.LocalContributions`.  Drawn
with matplotlib's Agg canvas (:func:`~interp_engine.report.figures.agg_figure`:
no pyplot, no global backend change); without matplotlib, ImportError saying to
install it."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..engine.checks import check_positive_int, describe
from .figures import agg_figure

__all__ = ["plot_relevance_heatmap", "plot_local"]


def plot_relevance_heatmap(result: Any, path: Any, *, class_names: Optional[Sequence[str]] = None) -> None:
    """Save a heatmap of ``result.relevance`` (classes x concepts, diverging
    colours centred on 0) to ``path`` (any format matplotlib knows from the
    suffix, e.g. PNG).

    Args:
        result: a :class:`~interp_engine.methods.concept_relevance.RelevanceResult`.
        path: output file.
        class_names: a name per class index (indexed by ``result.classes``).
    """
    rel = result.relevance
    nr, nc = rel.shape
    fig = agg_figure(figsize=(min(2 + 0.45 * nc, 30), min(1.5 + 0.35 * nr, 30)))
    ax = fig.add_subplot(1, 1, 1)
    finite = rel[np.isfinite(rel)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    im = ax.imshow(rel, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
    ax.set_xticks(range(nc), result.concepts, rotation=90)
    labels = ([str(class_names[k]) for k in result.classes] if class_names is not None
              else [str(k) for k in result.classes])
    ax.set_yticks(range(nr), labels)
    ax.set_xlabel("concept")
    ax.set_ylabel("class")
    ax.set_title(f"concept-class relevance ({result.method})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path)


def plot_local(image_uint8: Any, maps: Any, contributions: Any, path: Any, *,
               top: int = 4, alpha: float = 0.5) -> None:
    """Save a figure: the image, the image with each of the ``top`` concepts'
    maps overlaid (highest contributions first), and a bar chart of all
    contributions.

    Args:
        image_uint8: uint8 ``(H, W, 3)`` (or ``(3, H, W)``), numpy or torch.
        maps: ``(L, H, W)`` concept maps, rows in the order of the vectors
            (``ConceptRelevance.concept_maps``, or ``contributions.maps``).
        contributions: a :class:`~interp_engine.methods.concept_relevance.LocalContributions`
            from the same vectors (``ConceptRelevance.explain_image``).
        path: output file (format from the suffix, e.g. ``.png``).
        top: number of concept maps shown.
        alpha: opacity of the overlaid maps.
    """
    import sys

    from ..methods.concept_relevance.result import LocalContributions

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
