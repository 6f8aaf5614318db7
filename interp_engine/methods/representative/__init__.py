"""Representative interpretations (Lam et al., ICCV 2021; docs/algorithms.md §5,
docs/representative.md): the decision region of a seed image, bounded by
linear decision boundaries of the model's head sampled around it and chosen by
a submodular-cost submodular cover.

    ri = RepresentativeInterpretation(model, layer, pool=50).fit(reference_images)
    regions = ri.explain(range(100))              # Regions (a Result): one Region per seed
    evaluate_regions(ri, regions, unseen_images)  # RegionEvaluation (a Result)

Modules: :mod:`.method` (the method), :mod:`.boundaries` (head derivation and
boundary sampling), :mod:`.region` (one region and its queries),
:mod:`.result` (:class:`Regions`, its table and file), :mod:`.evaluation`
(on unseen images).  The figure is :func:`interp_engine.report.plot_region`,
the HTML page :func:`interp_engine.report.write_represent_report`.

Importing this package does not import torch; using it does.
"""
from __future__ import annotations

from .boundaries import Boundaries, derive_head
from .evaluation import RegionEvaluation, evaluate_regions
from .method import EPS_COST, EPS_GAIN, RepresentativeInterpretation
from .region import Region, SimilarImages
from .result import Regions

__all__ = ["RepresentativeInterpretation", "Regions", "Region", "Boundaries", "SimilarImages",
           "RegionEvaluation", "evaluate_regions", "derive_head", "EPS_COST", "EPS_GAIN"]

