"""The streaming helpers of one :meth:`ConceptVectors.fit
<interp_engine.methods.concept_vectors.ConceptVectors.fit>` (and of one
evaluation): the units' dissection counts, the calibration histograms, the
bounded-memory sample of the semantic solve and the activation cache.

Why these do not keep the accumulator protocol (update / merge / query /
state_dict / from_state_dict / pickle, as ``ChannelQuantiles`` does): none of
them is merged or resumed; each lives inside one pass of one fit and is
dropped when the pass ends.  The statistics that a split or resumed run would
have to carry live in the core accumulators they wrap, which keep the
protocol: :class:`~interp_engine.ChannelQuantiles` and its exact pass (the
thresholds) and :class:`~interp_engine.IoUTally` (the units' counts, held by
:class:`_UnitTally`).  Of the rest, :class:`_LogitHistograms` depends on the
vectors solved after the first pass, and :class:`_SemanticSample` /
:class:`_BottomK` draw their sampling keys from one seeded generator in data
order: merging samples of shards would need one key stream per shard, which
changes the sample a given seed gives; that design belongs to a distributed
fit, not to these helpers.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data import concept_masks

__all__: List[str] = []  # private helpers of the package


class _UnitTally:
    """The units' dissection counts against the concepts, by the core's
    :class:`~interp_engine.IoUTally` (the same upsampling and ``> threshold``
    binarization as :func:`~interp_engine.dissect`): int64 intersections
    ``(K, L)``, unit pixels ``(K,)`` (over all images) and label pixels
    ``(L,)``."""

    def __init__(self, ds, labels: Sequence[int], thresholds: np.ndarray) -> None:
        self.num_labels = int(ds.num_labels) if hasattr(ds, "num_labels") else len(ds.label_names)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = tuple(int(s) for s in ds.pixel_size)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.tally = None

    def update(self, a, pl) -> None:
        from ...engine.iou import IoUTally

        if self.tally is None:
            # one category holding every label: unit pixels count over every image
            self.tally = IoUTally(a.shape[1], self.num_labels, np.zeros(self.num_labels, np.int64), 1,
                                  output_size=self.size)
        self.tally.update(a, self.thresholds, pixel_labels=pl,
                          image_categories=np.ones((a.shape[0], 1), dtype=bool))

    def counts(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.tally
        if t is None:
            raise ValueError("no images were tallied")
        return (t.intersection[:, self.labels], t.unit_pixels[:, 0].copy(), t.label_pixels[self.labels])


class _LogitHistograms:
    """Per concept, histograms of the upsampled logits of its mask pixels and
    of the other pixels (bins of 0.01 over [-30, 30], clamped), streamed; the
    calibration offsets come from their tail sums."""

    LO, WIDTH, BINS = -30.0, 0.01, 6000

    def __init__(self, predict_logits: Callable[[Any], Any], ds, labels: Sequence[int]) -> None:
        import torch

        self.predict_logits, self.labels = predict_logits, list(labels)
        self.size = tuple(int(s) for s in ds.pixel_size)
        L = len(self.labels)
        self.hist = np.zeros(L * self.BINS * 2, dtype=np.int64)  # [concept, bin, in mask]
        self.base = (torch.arange(L, dtype=torch.int32) * (self.BINS * 2))[None, :, None, None]

    def update(self, a, pl) -> None:
        import torch
        import torch.nn.functional as F

        # float32 logits upsampled as explain() does; bin index * 2 + in-mask, in place
        z = F.interpolate(self.predict_logits(a), size=self.size, mode="bilinear", align_corners=False)
        q = z.sub_(self.LO).mul_(1.0 / self.WIDTH).floor_().clamp_(0, self.BINS - 1).to(torch.int32)
        q.mul_(2).add_(concept_masks(pl, self.labels)).add_(self.base)
        self.hist += np.bincount(q.numpy().ravel(), minlength=self.hist.size)

    def best_offsets(self) -> np.ndarray:
        """Per concept, the logit threshold ``t`` (a multiple of 0.01 in
        [-30, 30]) maximizing the set-IoU of ``upsampled logit > t`` on the
        streamed pixels (ties: the lowest threshold)."""
        h = self.hist.reshape(len(self.labels), self.BINS, 2)
        hp, hn = h[:, :, 1], h[:, :, 0]
        # pixels with logit in bin >= j are predicted positive at threshold lo + j * width
        tp = np.cumsum(hp[:, ::-1], axis=1)[:, ::-1]
        fp = np.cumsum(hn[:, ::-1], axis=1)[:, ::-1]
        iou = tp / np.maximum(hp.sum(1, keepdims=True) + fp, 1)
        return self.LO + np.argmax(iou, axis=1) * self.WIDTH


class _ActivationCache:
    """Activations (float32) and label maps of one fit's images in
    memory-mapped ``.npy`` files of a temporary directory (removed on exit)."""

    def __init__(self, parent: Optional[str]) -> None:
        import tempfile

        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="interp_engine_cv_", dir=parent)
        self.acts = self.labels = None
        self.complete = False

    def __enter__(self) -> "_ActivationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.acts = self.labels = None  # close the maps before the files go
        self._tmp.cleanup()

    def write(self, offset: int, a, pl, total: int) -> None:
        if self.acts is None:
            root = self._tmp.name
            self.acts = np.lib.format.open_memmap(os.path.join(root, "acts.npy"), mode="w+",
                                                  dtype=np.float32, shape=(total,) + tuple(a.shape[1:]))
            self.labels = np.lib.format.open_memmap(os.path.join(root, "labels.npy"), mode="w+",
                                                    dtype=pl.numpy().dtype, shape=(total,) + tuple(pl.shape[1:]))
        self.acts[offset:offset + a.shape[0]] = a.numpy()
        self.labels[offset:offset + a.shape[0]] = pl.numpy()

    def read(self, pos: np.ndarray):
        import torch

        if len(pos) and pos[-1] - pos[0] == len(pos) - 1 and np.all(np.diff(pos) == 1):
            sl = slice(int(pos[0]), int(pos[-1]) + 1)
            return torch.from_numpy(np.array(self.acts[sl])), torch.from_numpy(np.array(self.labels[sl]))
        return torch.from_numpy(self.acts[pos]), torch.from_numpy(self.labels[pos])


# ----------------------------------------------------------------------------- the semantic sample

class _BottomK:
    """The ``cap`` rows with the smallest keys among all rows added (a uniform
    sample without replacement when the keys are uniform random).  Rows are
    buffered and cut back to ``cap`` only when more than ``2 cap`` are held
    (amortized O(1) copies per row); :meth:`rows` returns the selection in
    ascending key order, so the result does not depend on the batching."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: List[Tuple[Any, ...]] = []
        self.held = 0

    def add(self, *cols) -> None:
        self.parts.append(cols)
        self.held += int(cols[-1].shape[0])
        if self.held > 2 * self.cap:
            self.parts = [self._cut(sort=False)]
            self.held = int(self.parts[0][-1].shape[0])

    def _cut(self, *, sort: bool):
        import torch

        cols = tuple(torch.cat(c) for c in zip(*self.parts)) if len(self.parts) > 1 else self.parts[0]
        key = cols[-1]
        if key.numel() > self.cap:
            sel = torch.topk(key, self.cap, largest=False, sorted=sort).indices
        elif sort:
            sel = torch.argsort(key)
        else:
            return cols
        return tuple(c[sel] for c in cols)

    def rows(self):
        """The selected columns (the last is the key), ascending key; None if empty."""
        if not self.parts:
            return None
        self.parts = [self._cut(sort=True)]
        self.held = int(self.parts[0][-1].shape[0])
        return self.parts[0]


class _SemanticSample:
    """The bounded-memory sample of one streaming pass (see module docs).

    Every position gets a seeded uniform key; a bottom-``cap`` selection by
    key is a uniform sample without replacement of what was seen.  Kept:
    per concept the positive positions (``y > 0``) with the smallest keys
    (all of them up to ``max_positives``) and, shared, the ``max_negatives``
    positions with the smallest keys (their targets for every concept).
    Memory: at most ``2 (max_negatives (K + L) + L max_positives (K + 1))``
    values while streaming (float32 features, float64 targets)."""

    def __init__(self, num_concepts: int, max_pos: int, max_neg: int, seed: int) -> None:
        import torch

        self.L = num_concepts
        self.gen = torch.Generator().manual_seed(int(seed))
        self.pos = [_BottomK(max_pos) for _ in range(num_concepts)]   # (feats (n, K), y (n,), key (n,))
        self.pool = _BottomK(max_neg)                                 # (feats (n, K), Y (n, L), key (n,))
        self.n_pos = torch.zeros(num_concepts, dtype=torch.int64)
        self.n_neg = torch.zeros(num_concepts, dtype=torch.int64)
        self.mass_pos = torch.zeros(num_concepts, dtype=torch.float64)
        self.mass_neg = torch.zeros(num_concepts, dtype=torch.float64)

    def update(self, a, m) -> None:
        import torch
        import torch.nn.functional as F

        h, w = a.shape[2], a.shape[3]
        y = F.adaptive_avg_pool2d(m.to(torch.float32), (h, w))          # (B, L, h, w)
        x = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])               # (n, K)
        Y = y.permute(0, 2, 3, 1).reshape(-1, self.L).to(torch.float64)  # (n, L)
        key = torch.rand(x.shape[0], generator=self.gen, dtype=torch.float64)
        posm = Y > 0
        self.n_pos += posm.sum(0)
        self.n_neg += (~posm).sum(0)
        self.mass_pos += Y.sum(0)
        self.mass_neg += (1 - Y).sum(0)
        self.pool.add(x, Y, key)
        for c in torch.nonzero(posm.any(0)).flatten().tolist():
            sel = torch.nonzero(posm[:, c]).flatten()
            self.pos[c].add(x[sel], Y[sel, c], key[sel])

    def problem(self, c: int):
        """(x float64 (n, K), c1 (n,), c0 (n,)) of concept ``c``'s loss."""
        import torch

        fp, yp, _ = self.pos[c].rows()
        fn, Yn, _ = self.pool.rows()
        neg = Yn[:, c] == 0
        fn = fn[neg]
        wp = float(self.n_pos[c]) / fp.shape[0]
        wn = float(self.n_neg[c]) / max(fn.shape[0], 1)
        a = 1.0 / (2.0 * float(self.mass_pos[c]))
        n = 1.0 / (2.0 * float(self.mass_neg[c]))
        x = torch.cat([fp, fn]).to(torch.float64)
        c1 = torch.cat([a * wp * yp, torch.zeros(fn.shape[0], dtype=torch.float64)])
        c0 = torch.cat([n * wp * (1 - yp), torch.full((fn.shape[0],), n * wn, dtype=torch.float64)])
        # ratio estimators: on a capped sample the two masses are made exactly 1/2 each (no change
        # when the sample holds every position)
        c1 = c1 * (0.5 / c1.sum())
        if float(c0.sum()) > 0:
            c0 = c0 * (0.5 / c0.sum())
        return x, c1, c0

    def info(self, c: int) -> Dict[str, Any]:
        kept_neg = int((self.pool.rows()[1][:, c] == 0).sum())
        kept_pos = int(self.pos[c].rows()[0].shape[0])
        return {"positives": int(self.n_pos[c]), "positives_kept": kept_pos,
                "negatives": int(self.n_neg[c]), "negatives_kept": kept_neg,
                "exact": kept_neg == int(self.n_neg[c]) and kept_pos == int(self.n_pos[c])}
