"""Deprecated: representative interpretations moved to
:mod:`interp_engine.methods.representative` (the figure to
:func:`interp_engine.report.plot_region`).  This module re-exports the names
it had, and warns once on import."""
import warnings

from .representative import (EPS_COST, EPS_GAIN, Boundaries, Region, Regions, RepresentativeInterpretation,
                             SimilarImages, derive_head, plot_region)

warnings.warn("interp_engine.methods.coclustering is deprecated; use interp_engine.methods.representative "
              "(and interp_engine.report.plot_region)", DeprecationWarning, stacklevel=2)

__all__ = ["RepresentativeInterpretation", "Region", "Regions", "Boundaries", "SimilarImages", "derive_head",
           "plot_region", "EPS_COST", "EPS_GAIN"]
