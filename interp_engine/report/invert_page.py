"""The INVERT report: a CSV and one self-contained HTML page.

Per neuron: its formula, AUC, 2|AUC - 0.5|, concept fraction and p-value, and
the distributions of its activations inside vs outside the formula as two
histograms (inline SVG: no script, no network, no plotting library).
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np

from .html import NEURON_NUMBERING, _page

__all__ = ["write_invert_report", "histogram_svg"]


def histogram_svg(inside: np.ndarray, outside: np.ndarray, *, bins: int = 30, width: int = 360,
                  height: int = 120) -> str:
    """Two density histograms on shared bins: inside the formula (orange) and
    outside (blue), as an inline SVG string."""
    inside = np.asarray(inside, np.float64)
    outside = np.asarray(outside, np.float64)
    both = np.concatenate([inside, outside])
    if both.size == 0:
        return ""
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    parts = []
    peak = 0.0
    dens = []
    for vals in (outside, inside):
        h = np.histogram(vals, bins=edges)[0].astype(np.float64)
        h = h / max(1.0, h.sum())
        dens.append(h)
        peak = max(peak, float(h.max()) if h.size else 0.0)
    peak = peak or 1.0
    bw = width / bins
    for h, colour in zip(dens, ("#4a7bd0", "#e8891c")):
        for j, v in enumerate(h):
            if v <= 0:
                continue
            bh = (height - 14) * v / peak
            parts.append(f'<rect x="{j * bw:.1f}" y="{height - 14 - bh:.1f}" width="{bw:.1f}" '
                         f'height="{bh:.1f}" fill="{colour}" fill-opacity="0.55"/>')
    axis = (f'<text x="0" y="{height - 2}" font-size="10">{lo:.3g}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{hi:.3g}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}{axis}</svg>')


def write_invert_report(result: Any, out_dir: Union[str, os.PathLike], *,
                        activations: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                        title: str = "INVERT explanations", max_neurons: Optional[int] = None,
                        bins: int = 30) -> Path:
    """Write ``invert.csv`` (:meth:`InvertResult.to_csv
    <interp_engine.methods.invert.InvertResult.to_csv>`: one row per neuron,
    NaN as empty cells) and ``index.html`` for an
    :class:`~interp_engine.methods.invert.InvertResult`.

    Formulas whose p-value is not below 0.05 are marked "not significant".

    ``activations`` (N, K) and ``labels`` (N, C) default to those attached to
    the result by ``Invert(model, layer).explain`` (or saved with it); without them the page has no
    histograms.  Neurons are listed by AUC distance from 0.5, best first.
    Returns the path of ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    acts = activations if activations is not None else getattr(result, "activations", None)
    labs = labels if labels is not None else getattr(result, "labels", None)
    records = result.table()
    result.to_csv(out / "invert.csv")  # the one CSV writer (interp_engine._io.write_csv)
    order: List[Any] = sorted(result, key=lambda r: (-(r.differentiability if r.best else -1.0), r.neuron))
    if max_neurons is not None:
        order = order[:max_neurons]
    rows = []
    for r in order:
        if r.best is None:
            rows.append(f'<div class="unit"><h3>neuron <b>{r.neuron}</b> &nbsp; '
                        f'<span class="note">{html.escape(r.note or "no explanation")}</span></h3></div>')
            continue
        plot = ""
        if acts is not None and labs is not None:
            inside = r.best.evaluate(labs)
            col = np.asarray(acts)[:, r.neuron]
            plot = (histogram_svg(col[inside], col[~inside], bins=bins)
                    + '<div class="note"><span style="color:#e8891c">&#9632;</span> inside the formula '
                      f'({int(inside.sum())} samples) &nbsp; <span style="color:#4a7bd0">&#9632;</span> '
                      f'outside ({int((~inside).sum())})</div>')
        p = r.p_value
        ptxt = "nan" if math.isnan(p) else f"{p:.3g}"
        if math.isnan(p) or p >= 0.05:
            ptxt += ' <span class="note">(not significant at 0.05)</span>'
        rows.append(f'<div class="unit"><h3>neuron <b>{r.neuron}</b> &nbsp; '
                    f'<b>{html.escape(r.formula or "")}</b> &nbsp; AUC {r.auc:.4f} &nbsp; '
                    f'2|AUC-0.5| {r.differentiability:.3f} &nbsp; fraction {r.concept_fraction:.4f} &nbsp; '
                    f'p {ptxt}</h3>{plot}</div>')
    params = getattr(result, "params", {}) or {}
    ptab = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in params.items())
    body = (f"<h1>{html.escape(title)}</h1>"
            f'<p><a href="invert.csv">invert.csv</a> &middot; {len(records)} neurons, '
            f"{len(getattr(result, 'concept_names', []) or [])} concepts</p>"
            f'<p class="note">{html.escape(NEURON_NUMBERING)}</p>'
            f'<table class="summary">{ptab}</table>' + "\n".join(rows))
    index = out / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")
    return index
