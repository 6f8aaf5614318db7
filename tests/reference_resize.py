"""Slow, obvious references for the resize methods (torch, Pillow, plain
Python with exact fused multiply-adds) and NetDissect-Lite's binarization."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np


def torch_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def torch_antialias(x64: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False,
    antialias=True)`` on NCHW-contiguous float64 (B, K, h, w).

    torch 2.13 returns wrong values when the output is one pixel wide and the
    height changes (every output row equals the first); there the reference is
    assembled from torch's own passes: its width pass alone, then its height
    pass on two identical columns (the per-column arithmetic does not depend
    on the width)."""
    import torch
    import torch.nn.functional as F

    sh, sw = (int(s) for s in size)
    h, w = x64.shape[-2:]
    t = torch.from_numpy(np.ascontiguousarray(x64, dtype=np.float64))

    def aa(u, s):
        return F.interpolate(u, size=s, mode="bilinear", align_corners=False, antialias=True)

    if sw == 1 and h != sh:
        if w != 1:
            t = aa(t, (h, 1))
        return aa(torch.cat([t, t], dim=-1).contiguous(), (sh, 2))[..., :1].numpy().copy()
    return aa(t, (sh, sw)).numpy()


def torch_bilinear(x64: np.ndarray, size: Sequence[int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x64, dtype=np.float64))
    return F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False).numpy()


def pil_width_first(h: int, w: int, sh: int, sw: int):
    """Whether the installed Pillow's one-call resize runs the width pass
    first: always before Pillow 12.2; 12.2-12.x unless only the height shrinks
    (its source); 13.x unless the height shrinks by more than twice the width
    (measured on 3,300 random shapes up to 250 pixels).  None for other
    versions (unknown)."""
    import PIL

    major, minor = (int(p) for p in PIL.__version__.split(".")[:2])
    if (major, minor) < (12, 2):
        return True
    if major == 12:
        return not (sw >= w and sh < h)
    if major == 13:
        return not (sh < h and h - sh > 2 * (w - sw))
    return None


def pil_resize(m: np.ndarray, size: Sequence[int], one_call: bool = False) -> np.ndarray:
    """Pillow's ``Image.resize((sw, sh), BILINEAR)`` of one map as a mode "F"
    image (float32).  ``one_call=False``: the width pass, then the height pass,
    as two calls (the order of Pillow 4.2-12.1, whatever Pillow is installed)."""
    from PIL import Image

    sh, sw = (int(s) for s in size)
    h, w = m.shape
    im = Image.fromarray(np.ascontiguousarray(m, dtype=np.float32), mode="F")
    if one_call:
        return np.array(im.resize((sw, sh), Image.BILINEAR))
    if sw != w:
        im = im.resize((sw, h), Image.BILINEAR)
    if sh != h:
        im = im.resize((sw, sh), Image.BILINEAR)
    return np.array(im, dtype=np.float32)


def pil_resize_all(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    B, K = x.shape[:2]
    out = np.empty((B, K) + tuple(int(s) for s in size), np.float32)
    for b in range(B):
        for k in range(K):
            out[b, k] = pil_resize(x[b, k], size)
    return out


def lite_masks(acts: np.ndarray, thresholds: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """NetDissect-Lite's tally, per image and unit: ``if feature_map.max() >
    threshold: mask = imresize(feature_map, (sh, sw), mode="F"); mask >
    threshold`` (scipy's imresize: float32 image, Pillow BILINEAR; NumPy 1.x
    compares the float32 mask with the float64 threshold in float32)."""
    B, K = acts.shape[:2]
    out = np.zeros((B, K) + tuple(int(s) for s in size), bool)
    for b in range(B):
        for k in range(K):
            fm = np.asarray(acts[b, k], dtype=np.float64)
            if fm.max() > thresholds[k]:
                out[b, k] = pil_resize(fm, size) > np.float32(thresholds[k])
    return out


# --------------------------------------------------------------------------- the formula, spelled out
def _fma(a: float, b: float, c: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def taps(n_in: int, n_out: int):
    """Per output index: (first source index, weights), the documented formulas."""
    scale = n_in / n_out
    s = max(scale, 1.0)
    rows = []
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - s + 0.5), 0)
        hi = min(int(center + s + 0.5), n_in)
        ws = []
        for j in range(hi - lo):
            x = abs(((j + lo) - center + 0.5) * (1.0 / s))
            ws.append(1.0 - x if x < 1.0 else 0.0)
        tot = 0.0
        for v in ws:
            tot += v
        if tot != 0.0:
            ws = [v / tot for v in ws]
        rows.append((lo, ws))
    return rows


def _torch_sum(t, ws):
    acc = t[0] * ws[0]
    j = 1
    while j + 1 < len(ws):
        acc = acc + t[j] * ws[j]
        acc = acc + t[j + 1] * ws[j + 1]
        j += 2
    if j < len(ws):
        acc = _fma(t[j], ws[j], acc)
    return acc


def antialias_formula(x64: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The documented "antialias" arithmetic in plain Python (exact fma):
    width pass, then height pass, an unchanged axis skipped."""
    B, K, h, w = x64.shape
    sh, sw = (int(s) for s in size)
    out = np.empty((B, K, sh, sw))
    tx, ty = taps(w, sw), taps(h, sh)
    for b in range(B):
        for k in range(K):
            a = [[float(v) for v in row] for row in x64[b, k]]
            if sw != w:
                a = [[_torch_sum(row[lo:lo + len(ws)], ws) for lo, ws in tx] for row in a]
            if sh != h:
                cols = list(zip(*a))
                a = list(zip(*[[_torch_sum(col[lo:lo + len(ws)], ws) for lo, ws in ty] for col in cols]))
            out[b, k] = np.array(a, dtype=np.float64)
    return out
