"""Global and local interpretation with concept vectors (docs/concept_vectors.md;
docs/algorithms.md §4): the method (:mod:`.method`, :class:`ConceptRelevance`),
its results and their files (:mod:`.result`), the deprecated free functions
(:mod:`.deprecated`).  The figures are drawn by :mod:`interp_engine.report.relevance_plots`
(``plot_local`` stays importable from here)."""
from typing import Any

from .deprecated import concept_class_relevance, concept_contributions, concept_maps, linear_head_relevance
from .method import ConceptRelevance
from .result import LocalContributions, RelevanceResult

__all__ = ["ConceptRelevance", "RelevanceResult", "LocalContributions", "concept_class_relevance",
           "linear_head_relevance", "concept_maps", "concept_contributions", "plot_local"]


def __getattr__(name: str) -> Any:
    # the figure lives in the report layer, above the methods: loaded on first use
    if name == "plot_local":
        from ...report.relevance_plots import plot_local

        return plot_local
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
