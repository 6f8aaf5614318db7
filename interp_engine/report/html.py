"""The dissection report: one self-contained directory that opens offline.

``index.html`` lists the layers with their summaries; ``<layer>.html`` shows,
per layer, the detector counts per category and per label as bar charts
(plain HTML/CSS, no script, no network) and every unit sorted by IoU with its
label, category, IoU and its top images, each with the unit's binarized
region (the map upsampled to the image, ``> threshold``) outlined and the rest
dimmed, as in NetDissect.  Images are PNG strips in ``images/``; each layer's
``tally.csv`` sits next to its page.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .._npz import safe_name

__all__ = ["write_report", "overlay_mask", "unit_strip", "UNIT_NUMBERING", "NEURON_NUMBERING"]

#: how units are numbered, stated on every page and console output that shows unit numbers
UNIT_NUMBERING = ("Units are numbered from 0 (the channel index, as in PyTorch); the unit column of "
                  "tally.csv is 1-based, as in NetDissect-Lite.")
#: the same for the pages and outputs that call them neurons
NEURON_NUMBERING = "Neurons are numbered from 0 (the channel index, as in PyTorch)."
#: for outputs whose unit columns are 0-based with -1 for "none" (concept_iou.csv)
UNIT_NUMBERING_CSV = "Units are numbered from 0 (the channel index, as in PyTorch); best_unit -1 means none."

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
table.summary td, table.summary th { padding: 2px 10px; text-align: left; }
.bars { margin: 8px 0 16px 0; }
.bar-row { display: flex; align-items: center; font-size: 13px; margin: 2px 0; }
.bar-label { width: 160px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { height: 14px; background: #4a7bd0; margin-right: 6px; }
.bar.unique { background: #9bb8ea; }
.unit { border-top: 1px solid #ddd; padding: 8px 0; }
.unit h3 { font-size: 15px; margin: 4px 0; font-weight: normal; }
.unit h3 b { font-size: 16px; }
.det { color: #0a7d22; } .nodet { color: #999; }
.unit img { image-rendering: auto; max-width: 100%; }
.note { color: #666; font-size: 13px; }
"""


def overlay_mask(image: np.ndarray, unit_map: np.ndarray, threshold: float) -> np.ndarray:
    """The image with the unit's active region shown: the map (h, w) is
    upsampled to the image size with bilinear interpolation (half-pixel
    centres, as the IoU uses), pixels ``> threshold`` keep their colour, the
    rest is dimmed to 25%, and the region's border is drawn in yellow.
    ``image`` is uint8 (H, W, 3); returns uint8 (H, W, 3)."""
    import torch
    import torch.nn.functional as F

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3); got {img.dtype} {img.shape}")
    H, W = img.shape[:2]
    m = torch.from_numpy(np.asarray(unit_map, dtype=np.float64))[None, None]
    up = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
    mask = up > threshold
    out = img.astype(np.float32)
    out[~mask] *= 0.25
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    edge[0, :] &= mask[0, :]
    out[edge] = (255, 220, 0)
    return out.clip(0, 255).astype(np.uint8)


def unit_strip(images: List[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of equal height side by side with a white gap."""
    if not images:
        return np.full((1, 1, 3), 255, np.uint8)
    h = max(im.shape[0] for im in images)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    strip = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for im in images:
        strip[:im.shape[0], x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    return strip


def _bars(items: List[tuple], scale: Optional[int] = None) -> str:
    """Horizontal bar chart: items are (label, value, unique or None)."""
    if not items:
        return '<p class="note">none</p>'
    top = scale or max(max(v for _, v, _ in items), 1)
    rows = []
    for label, value, unique in items:
        width = int(round(300 * value / top))
        extra = ""
        if unique is not None:
            extra = (f'<div class="bar unique" style="width:{int(round(300 * unique / top))}px" '
                     f'title="unique labels"></div>')
            text = f"{value} detectors, {unique} unique"
        else:
            text = str(value)
        rows.append(f'<div class="bar-row"><div class="bar-label">{html.escape(str(label))}</div>'
                    f'<div class="bar" style="width:{width}px"></div>{extra}{text}</div>')
    return '<div class="bars">' + "\n".join(rows) + "</div>"


def write_report(result: Any, dataset: Any, out_dir: Union[str, os.PathLike], *,
                 max_units: Optional[int] = None, images_per_unit: Optional[int] = None,
                 thumb_size: int = 112, title: str = "Network Dissection") -> Path:
    """Write the HTML report of a :class:`~interp_engine.methods.dissection.DissectionResult`.

    Args:
        result: the dissection result.
        dataset: the dataset it ran on (``load_image(i)`` gives the uint8
            (H, W, 3) image of dataset index i).
        out_dir: the report directory (created; existing files are replaced).
        max_units: show only the best ``max_units`` units of each layer
            (default: all).
        images_per_unit: top images shown per unit (default: all kept).
        thumb_size: the height of the thumbnails in pixels.
    Returns the path of ``index.html``."""
    from PIL import Image

    if not hasattr(dataset, "load_image"):
        raise TypeError(f"dataset must provide load_image(i); got {type(dataset).__name__}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cache: Dict[int, np.ndarray] = {}

    def image(i: int) -> np.ndarray:
        if i not in cache:
            im = np.asarray(dataset.load_image(int(i)))
            if thumb_size and im.shape[0] != thumb_size:
                w = max(1, int(round(im.shape[1] * thumb_size / im.shape[0])))
                im = np.asarray(Image.fromarray(im).resize((w, thumb_size), Image.BILINEAR))
            cache[i] = im
        return cache[i]

    index_rows = []
    for key in result:
        lr = result[key]
        page = f"{safe_name(key)}.html"
        csv_name = f"{safe_name(key)}_tally.csv"
        lr.to_csv(out / csv_name)
        s = lr.summary()
        order = lr.unit_order()
        if max_units is not None:
            order = order[:max_units]
        best, biou, bcat, det = lr.best_label, lr.best_iou, lr.best_category, lr.detectors
        k_img = lr.top_images.shape[1] if images_per_unit is None else min(images_per_unit, lr.top_images.shape[1])
        units_html = []
        for u in order:
            tiles = []
            for j in range(k_img):
                i = int(lr.top_images[u, j])
                if i < 0:
                    continue
                tiles.append(overlay_mask(image(i), lr.top_maps[u, j], float(lr.thresholds[u])))
            fn = f"images/{safe_name(key)}_unit{int(u):04d}.png"
            Image.fromarray(unit_strip(tiles)).save(out / fn, optimize=False, compress_level=3)
            cls = "det" if det[u] else "nodet"
            if best[u] >= 0:
                label = (f'<b class="{cls}">{html.escape(lr.label_names[int(best[u])])}</b> '
                         f'({html.escape(lr.categories[int(bcat[u])])})')
            else:
                label = '<b class="nodet">(none)</b> <span class="note">IoU 0 for every label</span>'
            units_html.append(
                f'<div class="unit" id="unit{int(u)}"><h3>unit <b>{int(u)}</b> &nbsp; '
                f'{label} &nbsp; IoU {biou[u]:.4f}'
                f'{" &nbsp; detector" if det[u] else ""} &nbsp; '
                f'<span class="note">threshold {lr.thresholds[u]:.4g}</span></h3>'
                f'<img src="{fn}" alt="top images of unit {int(u)}" height="{thumb_size}"></div>')
        per_cat = [(c, v["detectors"], v["unique"]) for c, v in s["per_category"].items()]
        per_label = list(s["per_label"].items())
        body = (f"<h1>{html.escape(title)}: layer {html.escape(key)}</h1>"
                f'<p><a href="index.html">all layers</a> &middot; <a href="{csv_name}">tally.csv</a></p>'
                f"<p>{s['detectors']} of {s['units']} units are detectors (IoU &ge; {lr.iou_threshold}); "
                f"{s['unique_detectors']} unique labels. Threshold: top {lr.quantile:.2%} of each unit's "
                f"activations. Basis: {html.escape(lr.basis)}."
                + (f" {s['unlabelled']} units have no label (IoU 0 for every label)." if s.get("unlabelled") else "")
                + f'</p><p class="note">{html.escape(UNIT_NUMBERING)}</p>'
                f"<h2>Detectors per category</h2>{_bars(per_cat)}"
                f"<h2>Detectors per label</h2>{_bars([(n, v, None) for n, v in per_label])}"
                f"<h2>Units by IoU</h2>"
                f'<p class="note">Each unit: its top images by maximum activation; the highlighted region '
                f"is where the unit's map, upsampled to the image, exceeds its threshold.</p>"
                + "\n".join(units_html))
        (out / page).write_text(_page(f"{title}: {key}", body), encoding="utf-8")
        index_rows.append(f'<tr><td><a href="{page}">{html.escape(key)}</a></td><td>{s["units"]}</td>'
                          f'<td>{s["detectors"]}</td><td>{s["unique_detectors"]}</td>'
                          f'<td>{html.escape(lr.basis)}</td></tr>')
    config = getattr(result, "config", {}) or {}
    cfg = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_config_text(v))}</td></tr>"
                  for k, v in config.items())
    body = (f"<h1>{html.escape(title)}</h1>"
            '<table class="summary"><tr><th>layer</th><th>units</th><th>detectors</th><th>unique labels</th>'
            f'<th>basis</th></tr>{"".join(index_rows)}</table>'
            f'<p class="note">{html.escape(UNIT_NUMBERING)}</p>'
            f'<h2>Run</h2><table class="summary">{cfg}</table>')
    index = out / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")
    return index


def _config_text(v: Any) -> str:
    """A run setting as text; nested dicts (fingerprints) as ``key: value; ...``."""
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_config_text(x)}" for k, x in v.items())
    return str(v)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
