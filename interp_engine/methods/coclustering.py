"""Deprecated: representative interpretations moved to
:mod:`interp_engine.methods.representative` (the figure to
:func:`interp_engine.report.plot_region`).  This module re-exports the names
it had, and warns on import."""
import warnings
from typing import Any

from .representative import (EPS_COST, EPS_GAIN, Boundaries, Region, Regions, RepresentativeInterpretation,
                             SimilarImages, derive_head)

warnings.warn("interp_engine.methods.coclustering is deprecated; use interp_engine.methods.representative "
              "(and interp_engine.report.plot_region)", DeprecationWarning, stacklevel=2)

__all__ = ["RepresentativeInterpretation", "Region", "Regions", "Boundaries", "SimilarImages", "derive_head",
           "plot_region", "EPS_COST", "EPS_GAIN"]


def plot_region(region: Any, path: Any, **kwargs: Any) -> None:
    """Deprecated alias of :func:`interp_engine.report.plot_region` (plots live in the report layer)."""
    warnings.warn("interp_engine.methods.coclustering.plot_region is deprecated; use "
                  "interp_engine.report.plot_region", DeprecationWarning, stacklevel=2)
    from ..report.represent_page import plot_region as _plot

    _plot(region, path, **kwargs)
