"""The paper's basis experiment: a layer dissected in a random orthogonal basis.

``Dissection(model, layers, rotations=[seed, ...])`` adds, per layer and seed,
a result layer ``"<layer>@rotation<seed>"`` whose unit j is
``sum_k Q[j, k] * a_k`` for the Haar-random orthogonal ``Q`` of that seed
(:func:`random_rotation`), computed from the same forward passes
(docs/algorithms.md §1; docs/dissection.md, "The basis experiment").
:meth:`DissectionResult.rotation_summary` compares the two bases.
"""
from __future__ import annotations

from typing import Any

from ...engine.checks import check_positive_int

__all__ = ["random_rotation", "rotate"]


def random_rotation(num_units: int, seed: int = 0):
    """A (K, K) random orthogonal matrix (Haar-distributed: QR of a Gaussian
    matrix with the signs of R's diagonal fixed), float64 torch tensor,
    deterministic from ``seed``."""
    import torch

    num_units = check_positive_int(num_units, "num_units")
    g = torch.Generator().manual_seed(int(seed))
    a = torch.randn(num_units, num_units, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))[None, :]


def rotate(acts: Any, q: Any):
    """The activations ``acts`` (B, K, H, W) in the basis ``q`` (K, K): unit j
    is ``sum_k q[j, k] * acts[:, k]``, computed in float64 on ``acts``' device."""
    import torch

    return torch.einsum("bkhw,jk->bjhw", acts.to(torch.float64), q.to(acts.device))
