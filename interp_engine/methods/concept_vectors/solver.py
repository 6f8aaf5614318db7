"""The solvers of :class:`~interp_engine.methods.concept_vectors.ConceptVectors`
(docs/algorithms.md §4; docs/concept_vectors.md): Newton's method on the
class-balanced logistic loss of the semantic vectors, Net2Vec's Adam epochs,
and the CAVs of ``method="cav"`` (TCAV's :func:`~interp_engine.methods.classifiers.train_cav`
on spatially averaged activations)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Sequence, Tuple

import numpy as np

from ..classifiers import Classifier, train_cav
from .data import concept_masks

__all__ = ["METHODS", "solve_balanced_logistic", "train_net2vec", "train_cavs", "predictor_input"]

#: the methods, by their solver: Newton on the balanced logistic loss, Net2Vec's Adam, TCAV's CAV
METHODS = ("semantic", "net2vec", "cav")


def _balanced_loss_grad(x, c1, c0, theta, l2):
    """Loss, gradient for ``theta = [w; b]`` (float64 torch)."""
    import torch
    import torch.nn.functional as F

    z = x @ theta[:-1] + theta[-1]
    loss = (c1 * F.softplus(-z) + c0 * F.softplus(z)).sum() + 0.5 * l2 * (theta[:-1] @ theta[:-1])
    s = torch.sigmoid(z)
    r = (c1 + c0) * s - c1
    g = torch.cat([x.T @ r + l2 * theta[:-1], r.sum()[None]])
    return loss, g, s


def solve_balanced_logistic(x, c1, c0, *, l2: float, tol: float = 1e-9, max_iter: int = 100
                            ) -> Tuple[np.ndarray, float, Dict[str, Any]]:
    """Minimize ``sum_i c1_i softplus(-z_i) + c0_i softplus(z_i) + l2/2 |w|^2``
    with ``z_i = w . x_i + b`` by Newton's method with backtracking (Armijo)
    until the gradient's 2-norm is ``<= tol``.

    Args:
        x: float ``(n, K)`` features (numpy or torch; computed in float64).
        c1, c0: float ``(n,)`` non-negative weights of the positive and the
            negative term of each row (a soft label ``y`` with weight ``m``
            gives ``c1 = m y``, ``c0 = m (1 - y)``).
        l2: the L2 penalty on ``w`` (> 0: strictly convex in ``w``).
        tol: stop when ``|grad|_2 <= tol``.
        max_iter: at most this many Newton steps.

    Returns:
        ``(w float64 (K,), b float, info)`` with ``info`` = ``{"iterations",
        "grad_norm", "loss", "converged"}``.
    """
    import torch

    x = torch.as_tensor(x, dtype=torch.float64)
    c1 = torch.as_tensor(c1, dtype=torch.float64)
    c0 = torch.as_tensor(c0, dtype=torch.float64)
    n, k = x.shape
    theta = torch.zeros(k + 1, dtype=torch.float64)
    reg = torch.full((k + 1,), float(l2), dtype=torch.float64)
    reg[-1] = 0.0
    loss, g, s = _balanced_loss_grad(x, c1, c0, theta, l2)
    it = 0
    while float(torch.linalg.vector_norm(g)) > tol and it < max_iter:
        h = (c1 + c0) * s * (1 - s)
        xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
        hess = (xt * h[:, None]).T @ xt + torch.diag(reg)
        try:
            step = torch.linalg.solve(hess, g)
        except RuntimeError:  # singular (e.g. an all-zero feature with l2 == 0): least squares
            step = torch.linalg.lstsq(hess, g[:, None]).solution[:, 0]
        t, dec = 1.0, float(g @ step)
        while True:
            cand = theta - t * step
            new_loss, new_g, new_s = _balanced_loss_grad(x, c1, c0, cand, l2)
            if float(new_loss) <= float(loss) - 1e-4 * t * dec or t < 1e-10:
                break
            t *= 0.5
        theta, loss, g, s = cand, new_loss, new_g, new_s
        it += 1
    gn = float(torch.linalg.vector_norm(g))
    info = {"iterations": it, "grad_norm": gn, "loss": float(loss), "converged": gn <= tol}
    return theta[:-1].numpy().copy(), float(theta[-1]), info



def predictor_input(a: Any, thresholds: Any, binarize: bool) -> Any:
    """What the per-position predictor reads: the unit maps ``a`` (B, K, h, w)
    binarized above ``thresholds`` (K,) (Net2Vec with ``binarize=True``), or
    the raw maps."""
    import torch

    if binarize:
        return (a > thresholds[None, :, None, None]).to(torch.float32)
    return a


def train_net2vec(epoch_batches: Callable[[int], Iterator[Tuple[Any, Any]]], labels: Sequence[int],
                  alpha: np.ndarray, num_units: int, size: Tuple[int, int], thresholds: np.ndarray, *,
                  binarize: bool, epochs: int, lr: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Net2Vec's weights ``(L, K)`` and biases ``(L,)`` (float64): Adam from
    zero on the class-balanced BCE of the upsampled prediction, ``epochs``
    passes; ``epoch_batches(shuffle_seed)`` yields one pass's (activations,
    label maps) in a seeded order."""
    import torch
    import torch.nn.functional as F

    L = len(labels)
    thr_t = torch.as_tensor(thresholds, dtype=torch.float32)
    w = torch.zeros(L, num_units, dtype=torch.float32, requires_grad=True)
    b = torch.zeros(L, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    al = torch.as_tensor(alpha, dtype=torch.float32)
    rng = np.random.default_rng([seed, 5])
    for _ in range(epochs):
        for a, pl in epoch_batches(int(rng.integers(2**31 - 1))):
            x = predictor_input(a, thr_t, binarize)
            m = concept_masks(pl, labels).to(torch.float32)                 # (B, L, S, S)
            has = (m.flatten(2).sum(2) > 0).to(torch.float32)              # (B, L)
            n_img = has.sum(0)                                              # (L,)
            if float(n_img.sum()) == 0:
                continue
            z = torch.einsum("bkhw,lk->blhw", x, w) + b[None, :, None, None]
            z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
            # -(alpha M log p + (1 - alpha)(1 - M) log(1 - p)), mean over the images containing c
            pix = al[None, :, None, None] * m * F.softplus(-z) + \
                (1 - al)[None, :, None, None] * (1 - m) * F.softplus(z)
            per = (pix.mean((2, 3)) * has).sum(0) / n_img.clamp(min=1)  # (L,)
            loss = per.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach().to(torch.float64).numpy(), b.detach().to(torch.float64).numpy()


def train_cavs(x: np.ndarray, present: np.ndarray, keep: Sequence[int], names: Sequence[str],
               classifier: Classifier, seed: int) -> Tuple[np.ndarray, np.ndarray, Dict[str, Dict[str, Any]]]:
    """CAVs on the images' spatial means ``x`` (N, K): each kept concept's
    images (``present`` (N, L)) against a seeded random sample of all images
    (equal size); weights ``v / std(x v)`` and bias ``-mean(x v) / std(x v)``
    (the calibration then moves the bias).  Returns (W (L, K), B (L,),
    ``{name: {"accuracy", "positive_images", "random_images"}}``)."""
    W = np.zeros((present.shape[1], x.shape[1]))
    B = np.zeros(present.shape[1])
    info: Dict[str, Dict[str, Any]] = {}
    for i in keep:
        pos = x[present[:, i]]
        rng = np.random.default_rng([seed, i, 11])
        neg = x[rng.choice(len(x), size=min(len(pos), len(x)), replace=False)]
        if len(pos) < 2:
            raise ValueError(f"concept {names[i]!r} is in {len(pos)} image(s) of the fitting data; a CAV "
                             f"needs at least 2")
        v, acc = train_cav(pos, neg, classifier, seed=int(rng.integers(2**31 - 1)))
        proj = x @ v
        sd = float(proj.std())
        sd = sd if sd > 0 else 1.0
        W[i], B[i] = v / sd, -float(proj.mean()) / sd
        info[names[i]] = {"accuracy": acc, "positive_images": int(len(pos)), "random_images": int(len(neg))}
    return W, B, info
