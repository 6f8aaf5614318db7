"""The interpretive loss of Dong et al. (2017) as a torch module (imports
torch; docs/algorithms.md §6, docs/topics.md "InterpretiveLoss").

Public through :mod:`interp_engine.methods.topics` (``InterpretiveLoss``,
``fit_topic_head``), which loads this module on first use so that the topics
package itself imports without torch.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ...engine.checks import describe

__all__ = ["InterpretiveLoss", "fit_topic_head", "POOLINGS", "REDUCTIONS"]

POOLINGS = ("mean", "max")
REDUCTIONS = ("mean", "sum", "none")


def _pos_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _finite_float(value: Any, name: str, *, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


class InterpretiveLoss(nn.Module):
    """The interpretive loss (Dong et al., CVPR 2017, eq. 2) with its topic head.

    ``loss(h, s) = weight * reduce_b || W_a ReLU(W_t h_b + b_t) + b_a - s_b ||^2``

    where ``h_b`` are the pooled features of sample ``b`` (``features_dim``
    values), ``s_b`` its topic vector (``n_topics`` proportions summing to 1)
    and ``(W_t, b_t)`` = :attr:`topic_hidden` (``features_dim -> hidden``),
    ``(W_a, b_a)`` = :attr:`topic_out` (``hidden -> n_topics``), both
    ``nn.Linear`` with PyTorch's default initialization.  The squared norm sums
    over the topics; ``reduction`` reduces over the batch: ``"mean"`` (default,
    the mean over the samples of the per-sample squared error, so the loss
    does not grow with the batch size), ``"sum"`` or ``"none"`` (a (B,)
    tensor).  ``weight`` is the paper's lambda (0.1 in the reference).

    Add it to any task loss and train its parameters with the model's::

        head = InterpretiveLoss(128, n_topics, hidden=64)
        opt = torch.optim.AdamW([*model.parameters(), *head.parameters()])
        with Capture(model, "relu_fc", detach=False, clone=False) as cap:
            logits = model(x)
            loss = F.cross_entropy(logits, y) + head(cap.raw_outputs["relu_fc"], s)

    Features: ``(B, D)``, or ``(B, D, *spatial)`` maps pooled over the spatial
    axes by ``pooling`` (``"mean"`` default, or ``"max"``).
    """

    def __init__(self, features_dim: int, n_topics: int, hidden: int, weight: float = 0.1, *,
                 pooling: str = "mean", reduction: str = "mean") -> None:
        super().__init__()
        self.features_dim = _pos_int(features_dim, "features_dim")
        self.n_topics = _pos_int(n_topics, "n_topics")
        self.hidden = _pos_int(hidden, "hidden")
        self.weight = _finite_float(weight, "weight", nonnegative=True)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        self.pooling = pooling
        self.reduction = reduction
        self.topic_hidden = nn.Linear(self.features_dim, self.hidden)  # W_t, b_t
        self.topic_out = nn.Linear(self.hidden, self.n_topics)  # W_a, b_a

    def extra_repr(self) -> str:
        return (f"features_dim={self.features_dim}, n_topics={self.n_topics}, hidden={self.hidden}, "
                f"weight={self.weight}, pooling={self.pooling!r}, reduction={self.reduction!r}")

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features as is; ``(B, D, *spatial)`` pooled over the
        spatial axes (``self.pooling``).  ValueError/TypeError for a non-float
        tensor or ``D != features_dim``."""
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise TypeError(f"features must be a floating-point torch.Tensor (B, {self.features_dim}) or "
                            f"(B, {self.features_dim}, *spatial), got {describe(features)}")
        if features.dim() < 2 or features.shape[1] != self.features_dim:
            raise ValueError(f"features must have shape (B, {self.features_dim}) or (B, {self.features_dim}, "
                             f"*spatial), got {tuple(features.shape)}")
        if features.dim() == 2:
            return features
        flat = features.flatten(2)
        return flat.mean(2) if self.pooling == "mean" else flat.amax(2)

    def predict(self, features: torch.Tensor, softmax: bool = False) -> torch.Tensor:
        """The head's topic prediction ``W_a ReLU(W_t h + b_t) + b_a`` (B, T),
        an estimate of the topic proportions (trained by squared error, so not
        constrained to be positive or to sum to 1); ``softmax=True``
        normalizes it with a softmax over the topics."""
        out = self.topic_out(torch.relu(self.topic_hidden(self.pool(features))))
        return torch.softmax(out, dim=1) if softmax else out

    def forward(self, features: torch.Tensor, topics: torch.Tensor) -> torch.Tensor:
        """The weighted loss: a scalar (``reduction`` "mean"/"sum") or (B,).

        ``topics``: float (B, n_topics), the samples' topic vectors (not
        re-validated here, for speed: check them once with
        :func:`~interp_engine.methods.topics.validate_topic_matrix`)."""
        pred = self.predict(features)
        if not isinstance(topics, torch.Tensor) or not topics.is_floating_point():
            raise TypeError(f"topics must be a floating-point torch.Tensor (B, {self.n_topics}), got "
                            f"{describe(topics)}")
        if tuple(topics.shape) != tuple(pred.shape):
            raise ValueError(f"topics must have shape {tuple(pred.shape)} (batch, n_topics) to match the "
                             f"features, got {tuple(topics.shape)}")
        per_sample = (pred - topics.to(pred.dtype)).pow(2).sum(1)
        if self.reduction == "mean":
            per_sample = per_sample.mean()
        elif self.reduction == "sum":
            per_sample = per_sample.sum()
        return self.weight * per_sample


def fit_topic_head(features: Any, topics: Any, hidden: int = 64, *, epochs: int = 200, lr: float = 1e-2,
                   batch_size: int = 1024, seed: int = 0, pooling: str = "mean",
                   weight_decay: float = 0.0, head: Optional[InterpretiveLoss] = None,
                   threads: Optional[int] = 1) -> InterpretiveLoss:
    """Fit an :class:`InterpretiveLoss` head on fixed features (post hoc: the
    model is not trained), by Adam on the unweighted squared error.

    Args:
        features: float (N, D) or (N, D, *spatial) tensor or array (pooled as
            in :meth:`InterpretiveLoss.pool`).
        topics: (N, T) topic vectors (validated: finite, >= 0, rows sum to 1).
        hidden: the head's hidden width.
        epochs: passes over the data in a seeded random order, minibatches of
            ``batch_size``; ``lr``, ``weight_decay``: Adam's.
        seed: seeds the head's initialization and the order (the global torch
            random state is left as it was).
        head: an existing head to fit further (then ``hidden``/``pooling`` are
            ignored).
        threads: torch's thread count while fitting (restored afterwards);
            default 1: the head's matrix products are small, and on a busy
            machine several threads were 10-100x slower than one
            (oversubscription).  None keeps torch's setting.

    Returns:
        The head (``weight`` 1.0 unless ``head`` was given), in eval mode,
        float32, on the CPU.
    """
    import numpy as np

    from .lda import validate_topic_matrix

    if isinstance(features, torch.Tensor):
        f = features.detach().cpu().float()
    else:
        arr = np.asarray(features)
        if arr.dtype.kind != "f":
            raise TypeError(f"features must be a float tensor or array (N, D), got {describe(features)}")
        f = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if f.dim() < 2 or f.shape[0] == 0:
        raise ValueError(f"features must be (N, D) or (N, D, *spatial) with N >= 1, got {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("features must be finite (found NaN or inf)")
    s = torch.from_numpy(validate_topic_matrix(topics, n_rows=f.shape[0], name="topics").astype(np.float32))
    epochs = _pos_int(epochs, "epochs")
    batch_size = _pos_int(batch_size, "batch_size")
    lr = _finite_float(lr, "lr", nonnegative=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if head is None:
            head = InterpretiveLoss(f.shape[1], s.shape[1], hidden, weight=1.0, pooling=pooling)
        elif not isinstance(head, InterpretiveLoss):
            raise TypeError(f"head must be an InterpretiveLoss or None, got {type(head).__name__}")
    if head.n_topics != s.shape[1]:
        raise ValueError(f"head predicts {head.n_topics} topics, topics has {s.shape[1]} columns")
    if threads is not None:
        threads = _pos_int(threads, "threads")
    x = head.pool(f).detach()
    gen = torch.Generator().manual_seed(int(seed) + 1)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=float(weight_decay))
    head.train()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.enable_grad():
            for _ in range(epochs):
                perm = torch.randperm(len(x), generator=gen)
                for i in range(0, len(x), batch_size):
                    idx = perm[i:i + batch_size]
                    loss = (head.predict(x[idx]) - s[idx]).pow(2).sum(1).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(old_threads)
    return head.eval()
