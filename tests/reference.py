"""Slow, obvious references for the tests (numpy / torch, no cleverness)."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np


# --------------------------------------------------------------------------- IoU tally
def upsample_torch(acts64: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """torch F.interpolate(bilinear, align_corners=False) on float64 (B, K, h, w)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(acts64, dtype=np.float64))
    return F.interpolate(t, size=tuple(output_size), mode="bilinear", align_corners=False).numpy()


def upsample_default(acts64: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """The counts' default reference upsampling: torch's, or without torch
    (the kernels' tests run without it) the core's own bilinear upsampling,
    which test_iou checks bit for bit against :func:`upsample_exact`, the
    documented formula; the counts are then checked independently."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from interp_engine import _core

        a = np.asarray(acts64, dtype=np.float64)
        out = np.empty(a.shape[:2] + tuple(output_size))
        for b in range(a.shape[0]):
            for k in range(a.shape[1]):
                out[b, k] = _core.iou_upsample_bilinear(a[b, k], *output_size)
        return out
    return upsample_torch(acts64, output_size)


def _fma(a: float, b: float, c: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _axis(n_in: int, n_out: int):
    scale = n_in / n_out
    rows = []
    for d in range(n_out):
        src = max(_fma(scale, d + 0.5, -0.5), 0.0)
        i0 = min(int(math.floor(np.float32(src))), n_in - 1)
        l1 = min(max(src - i0, 0.0), 1.0)
        rows.append((i0, i0 + (1 if i0 < n_in - 1 else 0), 1.0 - l1, l1))
    return rows


def upsample_exact(acts64: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """The documented formula, spelled out with exact (Fraction) fma: what
    torch's generic CPU kernel computes on FMA hardware, for any size."""
    B, K, h, w = acts64.shape
    sh, sw = output_size
    ty, tx = _axis(h, sh), _axis(w, sw)
    out = np.empty((B, K, sh, sw))
    for b in range(B):
        for k in range(K):
            a = acts64[b, k]
            H = [[_fma(a[r, x0], lx0, a[r, x1] * lx1) for (x0, x1, lx0, lx1) in tx] for r in range(h)]
            for yo, (y0, y1, ly0, ly1) in enumerate(ty):
                for xo in range(sw):
                    out[b, k, yo, xo] = _fma(H[y0][xo], ly0, H[y1][xo] * ly1)
    return out


def iou_counts(activations, thresholds, pixel_labels, image_labels, image_categories, label_category,
               num_labels: int, num_categories: int, output_size, unit_rule: str = "annotated",
               upsample=upsample_default):
    """Reference Network Dissection counts: upsample (float64), compare
    ``> threshold``, np.bincount.  Returns (I, L, A) int64."""
    acts = np.asarray(activations, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    B, K = acts.shape[:2]
    sh, sw = output_size
    cat = np.asarray(label_category, dtype=np.int64)
    I = np.zeros((K, num_labels), np.int64)
    L = np.zeros(num_labels, np.int64)
    A = np.zeros((K, num_categories), np.int64)
    if B == 0:
        return I, L, A
    up = upsample(acts, output_size)
    M = up > thr[None, :, None, None]
    for b in range(B):
        labs = np.zeros((0, sh, sw), np.int64) if pixel_labels is None else np.asarray(pixel_labels[b], np.int64)
        imgl = np.zeros(0, np.int64) if image_labels is None else np.asarray(image_labels[b], np.int64)
        imgl = imgl[imgl != 0]
        L += np.bincount(labs.ravel(), minlength=num_labels)
        for s in imgl:
            L[s] += sh * sw
        if image_categories is None:
            present = np.unique(np.concatenate([labs.ravel(), imgl]))
            present = present[present != 0]
            cats_b = np.zeros(num_categories, bool)
            cats_b[cat[present]] = True
        else:
            cats_b = np.asarray(image_categories[b], bool)
        for k in range(K):
            m = M[b, k]
            cnt = int(m.sum())
            inside = labs[:, m].ravel()
            I[k] += np.bincount(inside, minlength=num_labels)
            for s in imgl:
                I[k, s] += cnt
            if unit_rule == "lite":
                hit = np.zeros(num_categories, bool)
                nz = inside[inside != 0]
                hit[cat[nz]] = True
                if cnt > 0:
                    hit[cat[imgl]] = True
                A[k, hit] += cnt
            else:
                A[k, cats_b] += cnt
    L[0] = 0
    I[:, 0] = 0
    return I, L, A


def iou_from_counts(I, L, A, label_category):
    cat = np.asarray(label_category)
    den = A[:, cat] + L[None, :] - I
    out = np.zeros(I.shape)
    np.divide(I, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- quantiles


def channel_values(x: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """(C, n) float64: every value of each channel, over all other axes."""
    x = np.asarray(x)
    c = np.moveaxis(x, channel_axis, 0)
    return c.reshape(c.shape[0], -1).astype(np.float64)


def empirical_cdf_bounds(values: np.ndarray, v: np.ndarray):
    """For one channel's values and candidate answers v: (F(v-), F(v)), the
    fractions strictly below and at-or-below v."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    n = s.size
    return np.searchsorted(s, v, "left") / n, np.searchsorted(s, v, "right") / n


def rank_error(values: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How far q lies outside [F(v-), F(v)] (0 when inside)."""
    lo, hi = empirical_cdf_bounds(values, v)
    q = np.asarray(q, dtype=np.float64)
    return np.maximum(np.maximum(lo - q, q - hi), 0.0)


def exact_rank(values: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Fraction of values <= v."""
    return empirical_cdf_bounds(values, v)[1]


def exact_quantile(values: np.ndarray, q) -> np.ndarray:
    """numpy's 'linear' quantile of one channel, except that where the wanted
    order statistic is exact (gamma == 0) or both neighbours are equal it is
    returned as is (numpy gives NaN there for infinite order statistics)."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    n = s.size
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    out = []
    for qq in q:
        virt = (n - 1) * qq
        if virt >= n - 1:
            out.append(s[-1])
            continue
        lo = int(np.floor(virt))
        g = virt - lo
        a, b = s[lo], s[lo + 1]
        if g == 0 or a == b:
            out.append(a)
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            d = b - a
            out.append(b - d * (1 - g) if g >= 0.5 else a + d * g)
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------- greedy cover


# ----------------------------------------------------------------------------- cover


def naive_greedy_cover(dense, weights=None, budget=None, target=None):
    """Greedy weighted max coverage on a dense bool matrix (candidates x
    elements), recomputing every candidate's gain from scratch at each step.
    Ties: lowest index. Returns (indices, gains, covered)."""
    dense = np.asarray(dense, dtype=bool)
    n_cand, n_el = dense.shape
    w = np.ones(n_el, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    covered = np.zeros(n_el, dtype=bool)
    chosen, gains = [], []
    total = 0.0
    while True:
        if budget is not None and len(chosen) >= budget:
            break
        if target is not None and total >= target:
            break
        g = (dense & ~covered) @ w if n_cand else np.zeros(0)
        if n_cand == 0 or g.max() <= 0:
            break
        best = int(np.argmax(g))  # first maximum = lowest index
        chosen.append(best)
        gains.append(float(g[best]))
        total += float(g[best])
        covered |= dense[best]
    return np.array(chosen, dtype=np.int64), np.array(gains, dtype=np.float64), total


def naive_ratio_greedy_cover(cost, gain, target, eps_cost=1e-5, eps_gain=1e-10, tighten=True):
    """Ratio greedy of Lam et al. on dense bool matrices, from scratch each step.
    Returns (indices, covered_cost, covered_gain, reached, n_greedy)."""
    cost = np.asarray(cost, dtype=bool)
    gain = np.asarray(gain, dtype=bool)
    n = cost.shape[0]
    cc = np.zeros(cost.shape[1], dtype=bool)
    gc = np.zeros(gain.shape[1], dtype=bool)
    chosen = []
    while gc.sum() < target:
        new_gain = (gain & ~gc).sum(axis=1)
        new_cost = (cost & ~cc).sum(axis=1)
        best, best_r = -1, None
        for c in range(n):
            if new_gain[c] <= 0:
                continue
            r = (float(new_cost[c]) + eps_cost) / (float(new_gain[c]) + eps_gain)
            if best < 0 or r < best_r:
                best, best_r = c, r
        if best < 0:
            break
        chosen.append(best)
        cc |= cost[best]
        gc |= gain[best]
    reached = bool(gc.sum() >= target)
    n_greedy = len(chosen)
    if tighten:
        for c in range(n):
            if c not in chosen[:n_greedy] and not (cost[c] & ~cc).any():
                chosen.append(c)
                gc |= gain[c]
    return np.array(chosen, dtype=np.int64), int(cc.sum()), int(gc.sum()), reached, n_greedy


# --------------------------------------------------------------------------- INVERT
def u2_by_sorting(x: np.ndarray, mask: np.ndarray) -> int:
    """2 * Mann-Whitney U of the samples in ``mask``, by sorting all activations
    (as the reference implementation's AUROC does for every formula): doubled
    midranks of the sorted values, summed over the mask."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    _, counts = np.unique(xs, return_counts=True)
    ends = np.cumsum(counts)
    r2_sorted = np.repeat(ends - counts + 1 + ends, counts)
    r2 = np.empty(len(x), dtype=np.int64)
    r2[order] = r2_sorted
    n1 = int(mask.sum())
    return int(r2[mask].sum()) - n1 * (n1 + 1)


def invert_beam_reference(x, labels, length, beam, min_fraction=0.0, max_fraction=0.5,
                          mode="positive"):
    """The INVERT beam search spelled out (docs/invert.md), every formula
    evaluated on dense boolean masks and scored by sorting.  Returns the final
    beam as a list of (seq, n1, u2), best first; seq = (code_0, op_1, code_1, ...)
    with code = 2 * concept + negated and op 0 = AND, 1 = OR."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n, c = labels.shape
    if n < 2 or np.all(x == x[0]):
        return []

    def admissible(n1):
        return 0 < n1 < n and min_fraction <= n1 / n <= max_fraction

    def atom(code):
        col = labels[:, code // 2]
        return ~col if code & 1 else col.copy()

    def key(item):
        seq, mask, n1, u2 = item
        auc = Fraction(u2, 2 * n1 * (n - n1))
        return (-auc if mode == "positive" else auc, (len(seq) + 1) // 2, seq)

    def select(pool):
        pool = sorted(pool, key=key)
        out, seen = [], set()
        for item in pool:
            b = item[1].tobytes()
            if b in seen:
                continue
            seen.add(b)
            out.append(item)
            if len(out) == beam:
                break
        return out

    pool = []
    for code in range(2 * c):
        m = atom(code)
        n1 = int(m.sum())
        if admissible(n1):
            pool.append(((code,), m, n1, u2_by_sorting(x, m)))
    cur = select(pool)
    for _ in range(2, length + 1):
        if not cur:
            break
        pool = list(cur)
        for seq, m, n1p, _u in cur:
            for code in range(2 * c):
                a = atom(code)
                for op, new in ((0, m & a), (1, m | a)):
                    n1 = int(new.sum())
                    if n1 == n1p or not admissible(n1):   # unchanged set, or not admissible
                        continue
                    pool.append((seq + (op, code), new, n1, u2_by_sorting(x, new)))
        cur = select(pool)
    return [(seq, n1, u2) for seq, _m, n1, u2 in cur]


def torchmetrics_binary_auroc(preds, target):
    """``torchmetrics.functional.classification.binary_auroc(preds, target)``
    (torchmetrics 1.9: thresholds=None, max_fpr=None, validate_args=True)
    ported line by line in torch, so that tests need not install torchmetrics:
    the argument checks (same shape, integer/bool target holding only 0/1,
    floating preds), a **sigmoid of preds when any is outside [0, 1]** (they are
    taken for logits), the ROC curve at every distinct score (sort descending,
    cumulative true positives at the last index of each run of equal scores),
    a (0, 0) start, the rates (all-zero when a class is absent, where
    torchmetrics warns) and the trapezoid.  The result is a float32 0-d tensor
    for float32 preds."""
    import torch
    import torch.nn.functional as F

    if preds.shape != target.shape:
        raise RuntimeError("Predictions and targets are expected to have the same shape")
    if target.is_floating_point():
        raise ValueError("Expected argument `target` to be an int or long tensor")
    if not preds.is_floating_point():
        raise ValueError("Expected argument `preds` to be an floating tensor")
    unique_values = torch.unique(target, dim=None)
    if torch.any((unique_values != 0) & (unique_values != 1)):
        raise RuntimeError("Detected values in `target` other than 0 and 1")
    preds = preds.flatten()
    target = target.flatten()
    if not torch.all((preds >= 0) * (preds <= 1)):
        preds = preds.sigmoid()
    with torch.no_grad():
        desc = torch.argsort(preds, descending=True)
        preds = preds[desc]
        target = target[desc]
        distinct = torch.where(preds[1:] - preds[:-1])[0]
        threshold_idxs = F.pad(distinct, [0, 1], value=target.size(0) - 1)
        target = (target == 1).to(torch.long)
        tps = torch.cumsum(target * 1.0, dim=0)[threshold_idxs]
        fps = 1 + threshold_idxs - tps
        thres = preds[threshold_idxs]
        tps = torch.cat([torch.zeros(1, dtype=tps.dtype, device=tps.device), tps])
        fps = torch.cat([torch.zeros(1, dtype=fps.dtype, device=fps.device), fps])
        thres = torch.cat([torch.ones(1, dtype=thres.dtype, device=thres.device), thres])
        fpr = torch.zeros_like(thres) if fps[-1] <= 0 else fps / fps[-1]
        tpr = torch.zeros_like(thres) if tps[-1] <= 0 else tps / tps[-1]
        return torch.trapz(tpr, fpr, dim=-1) * 1.0


class ReferenceLoopCut(Exception):
    """Raised by :func:`invert_reference_loop` after ``max_evaluations``."""


def invert_reference_loop(A, labels, L, B, limit_search=None, min_fraction=0.0, max_fraction=0.5,
                          mode="positive", memorize_states=False, metric=None,
                          max_evaluations=None, names=None, skip_duplicates=False):
    """The search of lapalap/invert's ``Invert.explain_representation`` at its
    current version (v1.1: ``invert/explainer.py`` and ``invert/phi.py`` at
    commit 33b5bcb, 2024-04-09), re-implemented from reading it (same
    operations in the same order, not a copy of its code; checked to give the
    same beams, formula strings and float32 metrics as that code on the
    bundled model's activations):

    * Atoms: for every concept q, its AUROC ``binary_auroc(A, labels[:, q])``
      (torchmetrics, float32) and fraction ``|q| / N`` (a float32 tensor);
      for ``NOT q``: ``1 - AUROC(q)`` and ``1 - fraction(q)``.
    * Atoms sorted by AUROC (descending for "positive", ascending for
      "negative"; Python's stable sort); the beam is the first B with
      ``min_fraction <= fraction <= max_fraction`` and ``0 < fraction < 1``.
    * The atoms to extend with: all 2C, admissible or not, re-sorted by
      differentiability ``2 |0.5 - AUROC|`` descending (stable), the first
      ``limit_search`` (default all).
    * For lengths 2..L: for each of the first min(B, len(beam)) beam entries
      and each atom, ``phi & atom`` then ``phi | atom`` as sympy expressions
      (And/Or flatten and drop a repeated argument: ``a & a`` is ``a``); the
      AUROC and fraction are computed for **every** extension, also when its
      set is empty, all samples or phi's own set (``Phi.__and__`` returns a
      formula, never None, since v1.1), and the admissible ones are appended
      to the beam list, duplicates included; the list (previous beam first,
      then the extensions in loop order) is sorted by AUROC (stable) and cut
      to B.  An entry's ``length`` is the loop's length.

    The formula's samples are computed with AND / OR of boolean tensors (what
    sympytorch's torch.mul / torch.add give on them) instead of a sympytorch
    module per formula, so this runs faster than the reference; the concept
    description file is not needed.

    Args:
        A: (N,) activations of one neuron (torch or numpy).
        labels: (N, C) booleans.
        metric: the AUROC (default :func:`torchmetrics_binary_auroc`; pass
            ``torchmetrics.functional.classification.binary_auroc`` itself).
        max_evaluations: raise :class:`ReferenceLoopCut` before evaluation
            number ``max_evaluations + 1`` (to time a prefix of the loop).
        names: symbol names (default ``c0, c1, ...``).
        skip_duplicates: *not* the reference: do not append an extension whose
            set is already in the beam list (as our search keeps each set
            once), to isolate the effect of the duplicates.

    Returns:
        The final beam: dicts with ``formula`` (sympy), ``mask`` (bool tensor),
        ``length``, ``metric``, ``differentiability``, ``concept_fraction``; with
        ``memorize_states`` a dict ``{"1": beam, "2": beam, ...}``.
    """
    import sympy
    import torch

    auroc = metric or torchmetrics_binary_auroc
    A = torch.as_tensor(A)
    labels = torch.as_tensor(labels).to(torch.bool)
    n, c = labels.shape
    symbols = [sympy.Symbol(nm) for nm in (names or [f"c{q}" for q in range(c)])]
    done = [0]

    def score(mask):
        if max_evaluations is not None and done[0] >= max_evaluations:
            raise ReferenceLoopCut()
        done[0] += 1
        return auroc(A, mask)

    def entry(expr, mask, length, m, frac):
        return {"formula": expr, "mask": mask, "length": length, "metric": m,
                "differentiability": 2 * abs(0.5 - m), "concept_fraction": frac}

    def admissible(frac):
        return bool((frac >= min_fraction) & (frac <= max_fraction) & (frac > 0.) & (frac < 1.))

    by_metric = (lambda e: e["metric"])
    positives = []
    for q in range(c):
        col = labels[:, q]
        positives.append(entry(symbols[q], col, 1, score(col), col.sum() / n))
    negatives = [entry(~symbols[q], ~labels[:, q], 1, 1 - positives[q]["metric"],
                       1 - positives[q]["concept_fraction"]) for q in range(c)]
    atoms = sorted(positives + negatives, key=by_metric, reverse=mode == "positive")
    beam = [e for e in atoms if admissible(e["concept_fraction"])][:B]
    states = {"1": list(beam)} if memorize_states else None
    extend_with = sorted(atoms, key=lambda e: e["differentiability"], reverse=True)
    if limit_search is None:
        limit_search = len(extend_with)
    extend_with = extend_with[:limit_search]
    for length in range(2, L + 1):
        seen = {e["mask"].numpy().tobytes() for e in beam} if skip_duplicates else None
        for i in range(min(B, len(beam))):
            phi = beam[i]
            for atom in extend_with[:limit_search]:
                for expr, mask in ((phi["formula"] & atom["formula"], phi["mask"] & atom["mask"]),
                                   (phi["formula"] | atom["formula"], phi["mask"] | atom["mask"])):
                    m = score(mask)
                    frac = mask.sum() / n
                    if skip_duplicates:
                        key = mask.numpy().tobytes()
                        if key in seen:
                            continue
                    if admissible(frac):
                        beam.append(entry(expr, mask, length, m, frac))
                        if skip_duplicates:
                            seen.add(key)
        beam = sorted(beam, key=by_metric, reverse=mode == "positive")[:B]
        if memorize_states:
            states[str(length)] = list(beam)
    return states if memorize_states else beam


def invert_reference_evaluations(num_concepts, L, beam_sizes):
    """AUROC evaluations of :func:`invert_reference_loop` (limit_search=None):
    C for the atoms (a negation reuses its concept's), then 2 (AND, OR) x 2C
    atoms for each of the min(B, len(beam)) entries at each length 2..L;
    ``beam_sizes[l - 2]`` = that entry count at length l."""
    return num_concepts + sum(4 * num_concepts * b for b in beam_sizes[:max(L - 1, 0)])


# --------------------------------------------------------------------------- representative interpretations
def bilinear_resize(m: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of one (h, w) map with half-pixel centres (torch's
    align_corners=False): source coordinate (d + 0.5) * n_in / n_out - 0.5,
    clamped below at 0, neighbours clamped at the last row/column."""
    h, w = m.shape
    H, W = size

    def taps(n_in, n_out):
        out = []
        for d in range(n_out):
            src = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = min(int(math.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            t = src - i0
            out.append((i0, i1, 1.0 - t, t))
        return out

    ty, tx = taps(h, H), taps(w, W)
    res = np.zeros((H, W))
    for yo, (y0, y1, a0, a1) in enumerate(ty):
        for xo, (x0, x1, b0, b1) in enumerate(tx):
            res[yo, xo] = (a0 * (b0 * m[y0, x0] + b1 * m[y0, x1]) +
                           a1 * (b0 * m[y1, x0] + b1 * m[y1, x1]))
    return res


def cam_from_channel_weights(alphas: np.ndarray, A: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Mean over rows h of alphas (H, C) of normalize(ReLU(sum_k alphas[h, k] A[k])),
    normalized by the maximum (zero map stays zero), then resized: the region
    heatmap (and, with one row, Grad-CAM), with explicit loops."""
    C, h, w = A.shape
    acc = np.zeros((h, w))
    for row in alphas:
        m = np.zeros((h, w))
        for k in range(C):
            m += row[k] * A[k]
        m = np.maximum(m, 0.0)
        if m.max() > 0:
            m = m / m.max()
        acc += m
    if len(alphas):
        acc /= len(alphas)
    return bilinear_resize(acc, size)


# --------------------------------------------------------------------------- prediction difference
def prediction_difference_reference(model, layer_module, x, probs_fn, neurons, ablation="zero",
                                    threshold=0.0):
    """One neuron at a time, one sample at a time, float64 numpy sums.

    ``probs_fn(model_output, layer_output) -> (B, T)`` probabilities (the
    layer's output after the ablation, for topic heads); the layer's output is
    captured (and, for one neuron, overwritten on the whole batch) by a
    forward hook.  Returns (scores (K, T) with NaN rows for never
    active neurons, counts (K,))."""
    import torch

    store = {}
    edit = {}

    def hook(module, args, out):
        if not edit:
            store["feats"] = store["after"] = out.detach().clone()
            return None
        out = out.clone()
        out[:, edit["d"]] = edit["v"]
        store["after"] = out
        return out

    h = layer_module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            p0 = probs_fn(model(x), store["after"]).double().numpy()
            feats = store["feats"].double().numpy()
            n = feats.shape[0]
            flat = feats.reshape(n, feats.shape[1], -1)
            mean = flat.transpose(1, 0, 2).reshape(feats.shape[1], -1).mean(1)
            scores = np.full((len(neurons), p0.shape[1]), np.nan)
            counts = np.zeros(len(neurons), np.int64)
            for k, d in enumerate(neurons):
                edit.update(d=d, v=0.0 if ablation == "zero" else float(mean[d]))
                p = probs_fn(model(x), store["after"]).double().numpy()
                edit.clear()
                total = np.zeros(p0.shape[1])
                for i in range(n):
                    if flat[i, d].max() > threshold:
                        total += p0[i] - p[i]
                        counts[k] += 1
                if counts[k]:
                    scores[k] = total / counts[k]
    finally:
        h.remove()
    return scores, counts
