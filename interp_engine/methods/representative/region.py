"""The decision region of one seed (docs/algorithms.md §5;
docs/representative.md, steps 5-6 and the queries): its chosen boundaries,
its members, and the similarity ranking, heatmap and membership queries."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import numpy as np

from ...engine.checks import check_positive_int
from ...engine.cover import PackedBits

__all__ = ["Region", "SimilarImages"]


class SimilarImages(NamedTuple):
    """Members of a region ranked by :meth:`Region.similar`.

    indices:   int64 ``(k,)`` reference indices, most similar first.
    distances: float64 ``(k,)`` ``sum_h |w_h . psi(seed) - w_h . psi(x)|``.
    classes:   int64 ``(k,)`` their predicted classes.
    """

    indices: np.ndarray
    distances: np.ndarray
    classes: np.ndarray


@dataclass(eq=False)
class Region:
    """The decision region of one seed: the chosen boundaries and the
    reference images inside (see the module doc).  The queries
    (:meth:`similar`, :meth:`heatmap`, :meth:`contains`) use the model and the
    reference features of the :class:`RepresentativeInterpretation` that made
    the region (refitting it changes them).

    Attributes:
        seed_index: reference index of the seed, or -1 for an image given
            to :meth:`RepresentativeInterpretation.explain` directly.
        seed_class: the seed's predicted class.
        weights: float64 ``(H, D)``: the chosen boundaries' ``w`` (seed side
            ``w . psi + bias >= 0``), in the cover's order (greedy choices,
            then the tighten pass's additions).
        biases: float64 ``(H,)``.
        points: float64 ``(H, D)``: the boundary points.
        other_classes: int64 ``(H,)``: the class across each boundary.
        others: int64 ``(H,)``: reference index of the other-class image whose
            bisection gave each boundary.
        chosen: int64 ``(H,)``: the boundaries' indices in the sampled pool
            (rows of :attr:`cost_sets` / :attr:`gain_sets`).
        n_greedy: how many leading boundaries the greedy phase chose (the
            rest come from the tighten pass).
        members: int64 ``(M,)``: reference images in the region, ascending.
        member_classes: int64 ``(M,)``: their predicted classes.
        n_other: members of another predicted class than the seed's.
        reached: whether the cover reached ``target`` (if not, more than
            ``delta`` other-class images remain inside).
        target: ``max(0, n_other_total - delta)``.
        delta: allowed other-class images in the region.
        seed_values: float64 ``(H,)``: ``w_h . psi(seed) + bias_h``.
        n_pool: boundaries sampled (pairs that converged).
        n_unconverged: pairs dropped (no convergence in ``max_steps``).
        cost_sets: :class:`PackedBits` ``(n_pool, len(same_indices))``: the
            same-class reference images each sampled boundary excludes.
        gain_sets: :class:`PackedBits` ``(n_pool, len(other_indices))``: the
            other-class images each sampled boundary excludes.
        same_indices: int64: reference index of each cost element (column).
        other_indices: int64: reference index of each gain element (column).
    """

    seed_index: int
    seed_class: int
    weights: np.ndarray
    biases: np.ndarray
    points: np.ndarray
    other_classes: np.ndarray
    others: np.ndarray
    chosen: np.ndarray
    n_greedy: int
    members: np.ndarray
    member_classes: np.ndarray
    n_other: int
    reached: bool
    target: int
    delta: int
    seed_values: np.ndarray
    n_pool: int
    n_unconverged: int
    cost_sets: PackedBits
    gain_sets: PackedBits
    same_indices: np.ndarray
    other_indices: np.ndarray
    _owner: Any = field(default=None, repr=False)
    _seed_image: Any = field(default=None, repr=False)

    @property
    def owner(self) -> Any:
        """The fitted :class:`RepresentativeInterpretation` whose model and
        reference features the queries use (RuntimeError for a region loaded
        from a file and not yet bound: :meth:`Regions.bind`)."""
        if self._owner is None:
            raise RuntimeError("this region has no fitted RepresentativeInterpretation (loaded from a file?): "
                               "bind the regions to one fitted on the same reference images, "
                               "Regions.load(path).bind(ri)")
        return self._owner

    @property
    def seed_image(self) -> Any:
        """The seed image tensor of an image seed (``seed_index == -1``), else None."""
        return self._seed_image

    @property
    def n_members(self) -> int:
        """Number of reference images in the region."""
        return int(self.members.shape[0])

    @property
    def n_same(self) -> int:
        """Members of the seed's predicted class (the seed included)."""
        return self.n_members - self.n_other

    @property
    def n_boundaries(self) -> int:
        """Number of chosen boundaries."""
        return int(self.weights.shape[0])

    def __repr__(self) -> str:
        return (f"Region(seed_index={self.seed_index}, seed_class={self.seed_class}, "
                f"boundaries={self.n_boundaries}/{self.n_pool}, members={self.n_members}, "
                f"n_other={self.n_other}, reached={self.reached})")

    # ------------------------------------------------------------------ queries
    def _values(self, feats64: Any) -> Any:
        """``(B, H)`` float64 tensor ``w_h . psi + bias_h`` for flattened features."""
        import torch

        w = torch.from_numpy(self.weights).to(feats64.device)
        b = torch.from_numpy(self.biases).to(feats64.device)
        return feats64 @ w.T + b

    def contains_features(self, features: Any) -> np.ndarray:
        """Whether features ``psi`` (``(B, *psi_shape)`` or flattened ``(B, D)``,
        tensor or array) lie in the region: on the seed's side
        (``w_h . psi + bias_h >= 0``) of every chosen boundary.  Returns bool ``(B,)``."""
        feats = self.owner._flat_features(features, "features")
        return (self._values(feats) >= 0).all(dim=1).cpu().numpy()

    def contains(self, images: Any) -> np.ndarray:
        """Whether images fall in the region.

        Args:
            images: a tensor ``(B, *image_shape)`` or one image ``image_shape``
                (the shape of the reference images).

        Returns:
            bool numpy ``(B,)`` (``(1,)`` for one image).  For the reference
            images this is exactly the membership :attr:`members` (the
            features are recomputed by the same forward).
        """
        feats, _ = self.owner._features_of_images(images, "images")
        return self.contains_features(feats)

    def similar(self, k: Optional[int] = None) -> SimilarImages:
        """The region's members ranked by ``Dist(seed, x) = sum_h |w_h . psi(seed)
        - w_h . psi(x)|`` over the chosen boundaries, ascending (ties: the seed
        first, then lower index).  The seed comes first when it is a reference
        image (its distance is 0).

        Args:
            k: how many to return (int >= 1); default all members.
        """
        import torch

        if k is not None:
            k = check_positive_int(k, "k")
        owner = self.owner
        members = self.members
        if members.size == 0:
            e = np.zeros(0, dtype=np.int64)
            return SimilarImages(e, np.zeros(0), e)
        idx = torch.from_numpy(members).to(owner._features.device)
        vals = self._values(owner._features.index_select(0, idx).double()).cpu().numpy()
        if self.seed_index >= 0 and (members == self.seed_index).any():
            s = vals[int(np.flatnonzero(members == self.seed_index)[0])]
        else:
            s = self.seed_values
        dist = np.abs(vals - s[None, :]).sum(axis=1)
        order = np.lexsort((members, members != self.seed_index, dist))
        if k is not None:
            order = order[:k]
        return SimilarImages(members[order], dist[order], self.member_classes[order])

    def heatmap(self, image: Any) -> np.ndarray:
        """The region's Grad-CAM-like map of an image (the seed, a reference
        image or an unseen one).

        For each chosen boundary ``h``, the channel weights are the spatial
        mean of ``w_h`` (the gradient of ``l_c - l_o`` w.r.t. ``psi`` at the
        boundary point, reshaped to ``(C, h, w)``): ``a_h[k] = mean_{i,j}
        w_h[k, i, j]``; the map is ``M_h = ReLU(sum_k a_h[k] A[k])`` on the
        image's feature maps ``A = psi(image)``, normalized by its maximum
        (``M_h / max M_h``; an all-zero map stays zero).  The region's map is
        the mean of ``M_h`` over the chosen boundaries, upsampled bilinearly
        (``align_corners=False``) to the image size; values in ``[0, 1]``.
        A region without boundaries gives zeros.

        Args:
            image: an int (reference index; uses the stored features and the
                reference images' size), a sequence / integer array of
                reference indices, one image ``image_shape`` or a batch
                ``(B, *image_shape)``.

        Returns:
            float64 numpy ``(H, W)`` for an int or one image, ``(B, H, W)``
            for indices or a batch.

        Raises:
            ValueError: the layer's output is not ``(C, h, w)`` per image.
        """
        import torch
        import torch.nn.functional as F

        owner = self.owner
        shape = owner.psi_shape
        if len(shape) != 3:
            raise ValueError(f"heatmap needs layer {owner.layer!r} to output (B, C, h, w) feature maps; "
                             f"its output per image has shape {tuple(shape)}")
        single = True
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            i = owner._check_index(image, "image")
            feats = owner._features[i:i + 1]
        elif isinstance(image, (list, tuple, np.ndarray)) or (
                isinstance(image, torch.Tensor) and not image.is_floating_point()):
            idx = [owner._check_index(i, "image index") for i in
                   (image.tolist() if hasattr(image, "tolist") else image)]
            feats = owner._features.index_select(0, torch.tensor(idx, dtype=torch.long,
                                                                 device=owner._features.device))
            single = False
        else:
            feats, single = owner._features_of_images(image, "image")
        size = tuple(owner.image_shape[-2:])
        A = feats.double().reshape(-1, *shape)
        n_b = self.weights.shape[0]
        if n_b == 0:
            out = np.zeros((A.shape[0],) + size)
            return out[0] if single else out
        w = torch.from_numpy(self.weights).to(A.device).reshape(n_b, shape[0], -1)
        alpha = w.mean(dim=2)                                   # (H, C)
        maps = torch.relu(torch.einsum("hc,bcij->bhij", alpha, A))
        mx = maps.amax(dim=(2, 3), keepdim=True)
        maps = torch.where(mx > 0, maps / torch.where(mx > 0, mx, torch.ones_like(mx)),
                           torch.zeros_like(maps))
        cam = maps.mean(dim=1, keepdim=True)
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
        out = cam.cpu().numpy()
        return out[0] if single else out
