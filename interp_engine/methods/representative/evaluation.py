"""Evaluation of representative interpretations on images not used to build
them (issue 6; Lam et al. 2021, section 5): coverage of the reference set, and
Average Drop / Average Increase of the region heatmaps against Grad-CAM on the
same model and the same unseen images, in one call.

Semantics (docs/representative.md, "Evaluation on unseen images"):

* **Reference set** (the images the regions were built from), per region: is
  it pure (no member of another predicted class), and the fraction of the
  reference images of the seed's predicted class that it holds (``n_same /
  class size``).
* **Unseen images**: each is explained by the first region (in the order
  given; with ``reached_only``, only regions whose cover reached its target,
  i.e. with at most ``delta`` other-class members) whose seed has the image's
  predicted class and that contains the image (:meth:`Region.contains`), i.e.
  the interpretation reused on new data;
  images no such region contains are counted as not covered and left out.
  On the covered images: the region heatmap, Grad-CAM at the same layer for
  the predicted class, and a uniformly random map (a floor), each scored by
  :func:`~interp_engine.methods.cam.average_drop_increase` with the same
  ``keep`` and ``fill``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from ..._npz import Array, Num, OneOf, load_npz, save_npz
from ...engine.checks import describe
from .._result import Result

__all__ = ["RegionEvaluation", "evaluate_regions"]

#: the maps scored by :func:`evaluate_regions`, in order
METHODS = ("region", "grad_cam", "random")


@dataclass(repr=False)
class RegionEvaluation(Result):
    """Result of :func:`evaluate_regions`.

    Attributes:
        regions: number of regions evaluated.
        pure: regions with no member of another predicted class.
        reached: regions whose cover reached its target.
        mean_coverage: mean over regions of ``n_same / size of the seed's
            class`` in the reference set (``coverage`` per region).
        unseen: number of unseen images; ``covered`` of them lie in a region
            of their predicted class (``assigned[i]``: region index or -1).
        scores: ``{method: (average_drop, average_increase)}`` on the covered
            unseen images, methods ``"region"``, ``"grad_cam"``, ``"random"``.
        keep, fill: the masking used (``fill``: a float, or per-channel
            values as a float64 array).
        coverage: float64 ``(regions,)``; assigned: int64 ``(unseen,)``.
    """

    regions: int
    pure: int
    reached: int
    mean_coverage: float
    unseen: int
    covered: int
    scores: Dict[str, tuple]
    keep: float
    fill: Any
    coverage: np.ndarray = field(repr=False)
    assigned: np.ndarray = field(repr=False)

    def table(self) -> List[Dict[str, Any]]:
        """One plain dict per method: ``method, average_drop, average_increase, images``."""
        return [{"method": m, "average_drop": d, "average_increase": i, "images": self.covered}
                for m, (d, i) in self.scores.items()]

    def _csv_fields(self) -> Sequence[str]:
        return ("method", "average_drop", "average_increase", "images")

    def _summary(self) -> str:
        return (f"regions={self.regions}, pure={self.pure}, reached={self.reached}, "
                f"covered={self.covered}/{self.unseen}, keep={self.keep:g}")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the evaluation to one ``.npz`` (arrays plus a JSON header); returns the path."""
        fill = np.atleast_1d(np.asarray(self.fill, dtype=np.float64))
        header = {"format": _FORMAT, "version": _VERSION, "regions": int(self.regions), "pure": int(self.pure),
                  "reached": int(self.reached), "mean_coverage": float(self.mean_coverage),
                  "unseen": int(self.unseen), "covered": int(self.covered), "keep": float(self.keep),
                  "fill_scalar": bool(np.ndim(self.fill) == 0),
                  "methods": [{"method": m, "average_drop": float(d), "average_increase": float(i)}
                              for m, (d, i) in self.scores.items()]}
        arrays = {"coverage": np.asarray(self.coverage, np.float64), "assigned": np.asarray(self.assigned, np.int64),
                  "fill": fill}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "RegionEvaluation":
        """Read a file written by :meth:`save`, checked against its schema
        (every header key's type and range, the arrays' dtypes, shapes from
        the header's counts and ranges, and the counts that follow from them);
        ValueError naming the file and the field otherwise."""
        path = Path(path)
        h, a = load_npz(path, _FORMAT, _VERSION, "region evaluation", _HEADER, _arrays)
        for key, limit in (("pure", "regions"), ("reached", "regions"), ("covered", "unseen")):
            if h[key] > h[limit]:
                raise ValueError(f"{path}: field 'header.{key}' must be at most {limit}={h[limit]}; got {h[key]}")
        covered = int((a["assigned"] >= 0).sum())
        if covered != h["covered"]:
            raise ValueError(f"{path}: field 'header.covered' must be the assigned unseen images ({covered}); "
                             f"got {h['covered']}")
        names = [m["method"] for m in h["methods"]]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: field 'header.methods' repeats a method: {names}")
        if h["fill_scalar"] and a["fill"].shape != (1,):
            raise ValueError(f"{path}: field 'fill' must hold one value when header.fill_scalar is true; "
                             f"got shape {a['fill'].shape}")
        fill: Any = float(a["fill"][0]) if h["fill_scalar"] else a["fill"]
        return cls(regions=h["regions"], pure=h["pure"], reached=h["reached"], mean_coverage=h["mean_coverage"],
                   unseen=h["unseen"], covered=h["covered"],
                   scores={m["method"]: (m["average_drop"], m["average_increase"]) for m in h["methods"]},
                   keep=h["keep"], fill=fill, coverage=a["coverage"], assigned=a["assigned"])

    def __str__(self) -> str:
        lines = [f"{self.regions} regions: {self.pure} with no other-class member on the reference set "
                 f"({self.reached} reached the cover target); mean coverage of the seed's class "
                 f"{self.mean_coverage:.3f}",
                 f"unseen images: {self.covered} of {self.unseen} lie in a region of their predicted class",
                 f"keeping the top {self.keep:.0%} pixels (others = {np.round(self.fill, 4)}):",
                 f"{'method':<10s} {'Average Drop %':>15s} {'Average Increase %':>19s}"]
        for m, (d, i) in self.scores.items():
            lines.append(f"{m:<10s} {d:15.2f} {i:19.2f}")
        return "\n".join(lines)


# The evaluation file (format interp_engine.region_evaluation, version 1).
_FORMAT = "interp_engine.region_evaluation"
_VERSION = 1
_HEADER = {"regions": Num(int, 1), "pure": Num(int, 0), "reached": Num(int, 0), "mean_coverage": Num(float, 0.0, 1.0),
           "unseen": Num(int, 1), "covered": Num(int, 0), "keep": Num(float, 0.0, 1.0), "fill_scalar": bool,
           "methods": [{"method": OneOf(METHODS), "average_drop": Num(float, 0.0, 100.0),
                        "average_increase": Num(float, 0.0, 100.0)}]}


def _arrays(h: Dict[str, Any]) -> tuple:
    return ({"coverage": Array("float64", ("R",), min=0.0, max=1.0),
             "assigned": Array("int64", ("U",), min=-1, max="R", max_offset=-1),
             "fill": Array("float64", ("F",))},
            {"R": h["regions"], "U": h["unseen"]})


def evaluate_regions(ri: Any, regions: Sequence[Any], unseen: Any, *, keep: float = 0.2, fill: Any = 0.0,
                     reached_only: bool = True, seed: int = 0, batch_size: int = 64) -> RegionEvaluation:
    """Evaluate ``regions`` of the fitted ``ri`` on ``unseen`` images.

    Args:
        ri: a fitted :class:`~interp_engine.methods.representative.RepresentativeInterpretation`.
        regions: its regions (:class:`~interp_engine.methods.representative.Regions`
            from ``explain``, or a sequence of Region), non-empty.
        unseen: images not used to build them, a tensor ``(N, C, H, W)`` of
            the reference images' shape.
        keep, fill: as :func:`~interp_engine.methods.cam.average_drop_increase`
            (the top ``keep`` pixels kept, the rest set to ``fill``).
        reached_only: explain unseen images only with regions that reached
            their cover target (default True).
        seed: of the random-map floor.
        batch_size: of the model passes.

    Returns:
        :class:`RegionEvaluation`.
    """
    import torch

    from ..cam import average_drop_increase, grad_cam
    from .region import Region

    regions = list(regions)
    if not regions or not all(isinstance(r, Region) for r in regions):
        raise TypeError(f"regions must be a non-empty sequence of Region objects; got "
                        f"{describe(regions) if not regions else [type(r).__name__ for r in regions][:3]}")
    if ri.predictions is None:
        raise RuntimeError("ri is not fitted")
    if not isinstance(unseen, torch.Tensor) or unseen.ndim != 4 or tuple(unseen.shape[1:]) != tuple(ri.image_shape):
        raise ValueError(f"unseen must be a tensor (N, {', '.join(map(str, ri.image_shape))}) of the reference "
                         f"images' shape; got {describe(unseen)}")
    if unseen.shape[0] == 0:
        raise ValueError("unseen must hold at least one image; got 0")
    preds_ref = np.asarray(ri.predictions)
    class_size = np.bincount(preds_ref, minlength=int(preds_ref.max()) + 1)
    coverage = np.array([r.n_same / max(int(class_size[r.seed_class]), 1) for r in regions])
    model = ri.model
    with torch.no_grad():
        pred = torch.cat([model(unseen[s:s + batch_size]).argmax(1) for s in range(0, len(unseen), batch_size)])
    pred = pred.cpu().numpy()
    assigned = np.full(len(unseen), -1, dtype=np.int64)
    for j, r in enumerate(regions):
        if reached_only and not r.reached:
            continue
        todo = np.flatnonzero((assigned < 0) & (pred == r.seed_class))
        if len(todo):
            inside = np.asarray(r.contains(unseen[torch.as_tensor(todo)]), dtype=bool)
            assigned[todo[inside]] = j
    cov = np.flatnonzero(assigned >= 0)
    scores: Dict[str, tuple] = {}
    if len(cov):
        x = unseen[torch.as_tensor(cov)]
        cls = pred[cov]
        region_maps = np.zeros((len(cov),) + tuple(ri.image_shape[1:]))
        for j in np.unique(assigned[cov]):
            rows = np.flatnonzero(assigned[cov] == j)
            region_maps[rows] = np.asarray(regions[int(j)].heatmap(x[torch.as_tensor(rows)])).reshape(
                (len(rows),) + region_maps.shape[1:])
        cam = np.asarray(grad_cam(model, ri.layer, x, cls, batch_size=batch_size))
        rnd = np.random.default_rng(seed).random(region_maps.shape)
        for name, maps in (("region", region_maps), ("grad_cam", cam), ("random", rnd)):
            r = average_drop_increase(model, x, maps, cls, keep=keep, fill=fill, batch_size=batch_size)
            scores[name] = (float(r.average_drop), float(r.average_increase))
    return RegionEvaluation(regions=len(regions), pure=int(sum(r.n_other == 0 for r in regions)),
                            reached=int(sum(bool(r.reached) for r in regions)),
                            mean_coverage=float(coverage.mean()), unseen=int(len(unseen)), covered=int(len(cov)),
                            scores=scores, keep=float(keep), fill=fill, coverage=coverage, assigned=assigned)
