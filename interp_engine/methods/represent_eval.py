"""Deprecated: the evaluation of representative interpretations moved to
:mod:`interp_engine.methods.representative` (``evaluate_regions``,
``RegionEvaluation``).  This module re-exports them and warns on import."""
import warnings

from .representative.evaluation import RegionEvaluation, evaluate_regions

warnings.warn("interp_engine.methods.represent_eval is deprecated; use interp_engine.methods.representative "
              "(evaluate_regions, RegionEvaluation)", DeprecationWarning, stacklevel=2)

__all__ = ["RegionEvaluation", "evaluate_regions"]
