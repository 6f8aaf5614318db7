"""HTML page and figure of representative interpretations (issue 6;
docs/representative.md): :func:`write_represent_report`, one offline
directory, ``index.html`` plus PNG strips in ``images/``, no script; and
:func:`plot_region`, a matplotlib figure of one region.

Per region: the seed with the region's heatmap overlaid, then its most
similar members (the region's similarity ranking) with theirs, and the
region's numbers: members, same-class coverage of the reference set,
other-class members, boundaries (greedy + tighten), whether the cover reached
its target.  An optional evaluation (:func:`~interp_engine.methods.
representative.evaluate_regions`) is shown as a table at the top.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .html import _page, unit_strip

__all__ = ["write_represent_report", "heat_overlay", "plot_region", "display_image"]


def display_image(img: Any) -> np.ndarray:
    """One image as :func:`plot_region` and the page show it: a ``(C, H, W)``
    tensor or array -> float64 ``(H, W, 3)`` (or ``(H, W)`` for one channel),
    min-max scaled to ``[0, 1]`` when its values lie outside ``[0, 1]``
    (a constant image becomes zeros).  ValueError for another shape."""
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


def _rgb(img: Any) -> np.ndarray:
    """(C, H, W) image tensor/array -> uint8 (H, W, 3); float images outside
    [0, 1] are min-max scaled (as plot_region displays them)."""
    a = display_image(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heat_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3) image blended with a jet-coloured map (H, W) in [0, 1]."""
    img = np.asarray(image)
    h = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != h.shape:
        raise ValueError(f"image must be (H, W, 3) and heat (H, W) of the same size; got {img.shape} and {h.shape}")
    jet = np.stack([np.clip(1.5 - np.abs(4.0 * h - 3.0), 0, 1), np.clip(1.5 - np.abs(4.0 * h - 2.0), 0, 1),
                    np.clip(1.5 - np.abs(4.0 * h - 1.0), 0, 1)], axis=2) * 255.0
    return (img * (1.0 - alpha) + jet * alpha + 0.5).clip(0, 255).astype(np.uint8)


def _thumb(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    resample = Image.NEAREST if rgb.shape[0] * 2 <= size else Image.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((size, size), resample))


def write_represent_report(ri: Any, regions: Sequence[Any], out_dir: Union[str, os.PathLike], *,
                           images: Any = None, class_names: Optional[Sequence[str]] = None, k: int = 5,
                           evaluation: Any = None, title: str = "Representative interpretations",
                           thumb_size: int = 112) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/images/region_*.png``.

    Args:
        ri: the fitted :class:`~interp_engine.methods.representative.RepresentativeInterpretation`.
        regions: its regions (:class:`~interp_engine.methods.representative.Regions`
            or a sequence of Region; reference-index seeds).
        images: the reference images, indexable by reference index giving
            ``(C, H, W)``; default: the tensor given to ``fit``.
        class_names: names of the predicted classes (default: numbers).
        k: similar members shown per region.
        evaluation: an optional :class:`~interp_engine.methods.representative.RegionEvaluation`.
        title: the page title.
        thumb_size: pixel size of each image tile.

    Returns:
        the path of ``index.html``.
    """
    from PIL import Image

    images = ri.images if images is None else images
    if images is None:
        raise ValueError("images=None: fit() was given an iterable, so the reference images are not kept; "
                         "pass images= (indexable by reference index)")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)

    def cname(c: int) -> str:
        return html.escape(str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c))

    preds = np.asarray(ri.predictions)
    sizes = np.bincount(preds, minlength=int(preds.max()) + 1)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">layer {html.escape(str(ri.layer))}; {len(preds)} reference images; '
             f"{len(regions)} regions (seeds). Each region: the seed (first tile) and its most similar members, "
             f"with the region's Grad-CAM-like map; members are the reference images on the seed's side of every "
             f"chosen decision boundary. Seeds and images (#i) are numbered from 0: their index among the "
             f"reference images.</p>"]
    if evaluation is not None:
        rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{d:.2f}</td><td>{i:.2f}</td></tr>"
                       for m, (d, i) in evaluation.scores.items())
        parts.append(f"<h2>Evaluation on unseen images</h2><p class=\"note\">{evaluation.covered} of "
                     f"{evaluation.unseen} unseen images lie in a region of their predicted class; top "
                     f"{evaluation.keep:.0%} pixels kept. {evaluation.pure} of {evaluation.regions} regions have "
                     f"no other-class member; mean coverage of the seed's class {evaluation.mean_coverage:.3f}.</p>"
                     f'<table class="summary"><tr><th>map</th><th>Average Drop %</th><th>Average Increase %</th>'
                     f"</tr>{rows}</table>")
    for j, r in enumerate(regions):
        sim = r.similar()
        idx = [int(i) for i in sim.indices[:k + 1]]
        dist = [float(d) for d in sim.distances[:k + 1]]
        maps = np.asarray(r.heatmap(idx)) if idx else np.zeros((0,))
        tiles = [_thumb(heat_overlay(_rgb(_image(images, i)), maps[t]), thumb_size) for t, i in enumerate(idx)]
        fn = f"images/region_{j:04d}.png"
        Image.fromarray(unit_strip(tiles)).save(out / fn, optimize=False, compress_level=3)
        caps = " &middot; ".join(f"#{i} ({cname(int(preds[i]))}, d={d:.3g})" for i, d in zip(idx, dist))
        status = '<span class="det">pure</span>' if r.n_other == 0 else \
            f'<span class="nodet">{r.n_other} other-class</span>'
        seed = f"#{r.seed_index}" if r.seed_index >= 0 else "(image)"
        cov = r.n_same / max(int(sizes[r.seed_class]), 1) if r.seed_class < len(sizes) else 0.0
        parts.append(f'<div class="unit"><h3><b>seed {seed}</b>, class {cname(int(r.seed_class))}: '
                     f"{r.n_members} members ({r.n_same} same-class = {cov:.0%} of the class), {status}; "
                     f"{r.n_boundaries} boundaries ({r.n_greedy} greedy), target "
                     f"{'reached' if r.reached else 'not reached'}</h3>"
                     f'<img src="{fn}" alt="region {j}"><div class="note">{caps}</div></div>')
    index = out / "index.html"
    index.write_text(_page(title, "\n".join(parts)), encoding="utf-8")
    return index


def _image(images: Any, i: int) -> Any:
    from ..capture import input_of

    return input_of(images[i], f"images[{i}]")


def plot_region(region: Any, path: Any, *, images: Any = None, k: int = 5,
                alpha: float = 0.5) -> None:
    """Save a figure: the seed with its region heatmap, then the ``k`` most
    similar members of the region (:meth:`Region.similar`, the seed excluded)
    with theirs.  Needs matplotlib.

    Args:
        region: a :class:`~interp_engine.methods.representative.Region`, or
            :class:`~interp_engine.methods.representative.Regions` holding one
            (what ``explain(seed)`` returns for one seed).
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
    from ..engine.checks import check_positive_int, describe
    from ..methods.representative import Region, Regions
    from .figures import agg_figure

    if isinstance(region, Regions) and len(region) == 1:
        region = region[0]
    if not isinstance(region, Region):
        raise TypeError(f"region must be a Region (or Regions of one region), got {describe(region)}")
    k = check_positive_int(k, "k")
    owner = region.owner
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
        seed_img = region.seed_image
        seed_map = region.heatmap(seed_img)
        title = f"seed (image)\nclass {region.seed_class}"
    panels = [(seed_img, seed_map, title)]
    for i, dd, c in rest:
        panels.append((get(i), region.heatmap(i), f"#{i} class {c}\nd={dd:.3g}"))
    for j, (img, hm, t) in enumerate(panels):
        ax = fig.add_subplot(1, k + 1, j + 1)
        a = display_image(img)
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None)
        ax.imshow(hm, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"region of {region.n_members} images ({region.n_other} of other classes), "
                 f"{region.n_boundaries} boundaries", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
