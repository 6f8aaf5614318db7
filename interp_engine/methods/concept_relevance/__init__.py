"""Global and local interpretation with concept vectors (docs/concept_vectors.md)."""
from .method import (LocalContributions, RelevanceResult, concept_class_relevance, concept_contributions,
                     concept_maps, linear_head_relevance, plot_local)

__all__ = ["RelevanceResult", "LocalContributions", "concept_class_relevance", "linear_head_relevance",
           "concept_maps", "concept_contributions", "plot_local"]
