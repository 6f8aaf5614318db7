"""Boundary sampling of representative interpretations (docs/algorithms.md
§5; docs/representative.md, steps 1-4): the head ``psi -> logits`` of a
model, the bisections between a seed and other-class reference images, the
hyperplanes at the boundary points and their values on the reference images.

The sampling functions take the fitted
:class:`~interp_engine.methods.representative.RepresentativeInterpretation`
(``ri``) whose features, predictions and settings they read.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, NamedTuple, Tuple

import numpy as np

__all__ = ["Boundaries", "derive_head"]


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

    from ...capture import find_module

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


# ----------------------------------------------------------------------------- sampling

def bisect(ri: Any, start: Any, other: Any, cls: Any) -> Tuple[Any, Any]:
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
        for _ in range(ri.max_steps):
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
            lg = ri._head_logits(b.reshape(-1, *ri.psi_shape))
            top = lg.topk(2, dim=1)
            gap = top.values[:, 0] - top.values[:, 1]
            conv = act & (gap * gap < ri.tol) & (top.indices == wcls[:, None]).any(dim=1)
            if bool(conv.any()):
                points.index_copy_(0, wrows[conv], b[conv])
                done[wrows[conv]] = True
            act = act & ~conv
            on_c = act & (lg.argmax(dim=1) == wcls)
            off_c = act & ~on_c
            t_pos[wrows[on_c]] = t[on_c]
            t_neg[wrows[off_c]] = t[off_c]
    return points, done


def hyperplanes(ri: Any, points: Any, cls: Any) -> Tuple[Any, Any, Any]:
    """(w float64 (M, D), bias float64 (M,), other class (M,)) at boundary points."""
    import torch

    x = points.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        lg = ri._head_logits(x.reshape(-1, *ri.psi_shape))
        top = lg.detach().topk(2, dim=1).indices
        other = torch.where(top[:, 0] == cls, top[:, 1], top[:, 0])
        d = lg.gather(1, cls[:, None])[:, 0] - lg.gather(1, other[:, None])[:, 0]
        (g,) = torch.autograd.grad(d.sum(), x)
    w = g.double()
    bias = d.detach().double() - (w * points.double()).sum(dim=1)
    return w, bias, other


def sample(ri: Any, seeds: List[Tuple[int, Any, int, Any]]) -> List[Dict[str, Any]]:
    """Boundary sampling for all seeds (batched), unoriented."""
    import torch

    n = ri.n_reference
    dev = ri._features.device
    pairs_seed, pairs_other = [], []
    for j, (i, _, c, _) in enumerate(seeds):
        others = np.flatnonzero(ri.predictions != c)
        if others.size == 0:
            raise ValueError(f"seed {'index ' + str(i) if i >= 0 else j} is predicted as class {c}, "
                             f"and no reference image has another predicted class: there is no "
                             f"decision boundary to sample (all {n} reference images are class {c})")
        ss = np.random.SeedSequence([ri.seed, 0, i] if i >= 0 else [ri.seed, 1])
        draw = np.random.default_rng(ss).choice(others, size=ri.pool,
                                                replace=ri.pool > others.size)
        pairs_seed.append(np.full(ri.pool, j, dtype=np.int64))
        pairs_other.append(draw.astype(np.int64))
    ps = np.concatenate(pairs_seed)
    po = np.concatenate(pairs_other)
    seed_feats = torch.stack([s[1] for s in seeds]).to(dev)
    seed_cls = torch.tensor([s[2] for s in seeds], dtype=torch.long, device=dev)
    m = ps.size
    W = torch.zeros((m, ri._features.shape[1]), dtype=torch.float64, device=dev)
    B = torch.zeros(m, dtype=torch.float64, device=dev)
    P = torch.empty((m, ri._features.shape[1]), dtype=ri._features.dtype, device=dev)
    O = torch.empty(m, dtype=torch.long, device=dev)
    ok = torch.zeros(m, dtype=torch.bool, device=dev)
    for s in range(0, m, ri.pairs_per_batch):
        sl = slice(s, min(m, s + ri.pairs_per_batch))
        js = torch.from_numpy(ps[sl]).to(dev)
        start = seed_feats.index_select(0, js)
        other = ri._features.index_select(0, torch.from_numpy(po[sl]).to(dev))
        cls = seed_cls.index_select(0, js)
        points, done = bisect(ri, start, other, cls)
        ok[sl] = done
        if bool(done.any()):
            sel = torch.nonzero(done)[:, 0]
            w, b, o = hyperplanes(ri, points.index_select(0, sel), cls.index_select(0, sel))
            rows = sel + s
            W[rows], B[rows], O[rows] = w, b, o
            P[rows] = points.index_select(0, sel)
    ok_np = ok.cpu().numpy()
    out = []
    for j in range(len(seeds)):
        rows = np.flatnonzero((ps == j) & ok_np)
        if rows.size == ri.pool:   # every pair converged: a contiguous block, use views
            sel: Any = slice(j * ri.pool, (j + 1) * ri.pool)
        else:
            sel = torch.from_numpy(rows).to(dev)
        out.append(dict(W=_take(W, sel), B=_take(B, sel), P=_take(P, sel), sel=sel,
                        O=O[sel].cpu().numpy(), others=po[rows],
                        failed=int(ri.pool - rows.size)))
    out[0]["all_W"], out[0]["all_B"] = W, B
    n_failed = sum(d["failed"] for d in out)
    if n_failed:
        warnings.warn(f"{n_failed} of {m} bisections did not reach a squared top-2 logit gap < "
                      f"{ri.tol:g} in max_steps={ri.max_steps} steps and were dropped "
                      f"(increase max_steps, or use a float64 model)", RuntimeWarning,
                      stacklevel=3)
    return out


def configure(ri: Any, seeds: List[Tuple[int, Any, int, Any]], sampled: List[Dict[str, Any]]
               ) -> None:
    """Orient each seed's hyperplanes and compute the reference images'
    values ``w . psi + bias`` (float64); stored in ``sampled[j]``."""
    import torch

    feats = ri._features
    # all sampled planes at once (rows of dropped pairs are zeros, never read)
    vals_all = ref_values(feats, sampled[0].pop("all_W"), sampled[0].pop("all_B"))
    for (i, psi, c, _), d in zip(seeds, sampled):
        W, B = d["W"], d["B"]
        vals = vals_all[:, d["sel"]]                                # (N, P) float64
        sv = (vals[i] if i >= 0 else psi.double()[None] @ W.T + B).reshape(-1).clone()
        sign = torch.where(sv < 0, -1.0, 1.0).to(torch.float64)
        W.mul_(sign[:, None])  # in place: W, B are this seed's rows (views or copies)
        B.mul_(sign)
        d["vals"] = vals * sign[None, :]
        d["seed_values"] = (sv * sign).cpu().numpy()


def ref_values(feats: Any, W: Any, B: Any) -> Any:
    import torch

    if W.shape[0] == 0:
        return torch.zeros((feats.shape[0], 0), dtype=torch.float64, device=feats.device)
    chunk = 4096
    return torch.cat([feats[s:s + chunk].double() @ W.T + B
                      for s in range(0, feats.shape[0], chunk)])


def _take(t: Any, sel: Any) -> Any:
    """Rows ``sel`` of ``t``: a view for a slice, a copy for an index tensor."""
    return t[sel] if isinstance(sel, slice) else t.index_select(0, sel)
