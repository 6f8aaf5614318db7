"""The free functions of concept relevance before :class:`ConceptRelevance`:
thin aliases that warn (DeprecationWarning) and delegate."""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

from .method import ConceptRelevance
from .result import LocalContributions, RelevanceResult

__all__ = ["concept_class_relevance", "linear_head_relevance", "concept_maps", "concept_contributions"]


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


def concept_class_relevance(model: Any, layer: str, vectors: Any, inputs: Any, *,
                            classes: Optional[Sequence[int]] = None,
                            concept_names: Optional[Sequence[str]] = None,
                            batch_size: int = 64) -> RelevanceResult:
    """Deprecated: ``ConceptRelevance(model, layer, vectors, concept_names=...,
    batch_size=...).explain(inputs, classes=...)``."""
    _warn("concept_class_relevance", "ConceptRelevance(model, layer, vectors).explain(inputs)")
    return ConceptRelevance(model, layer, vectors, concept_names=concept_names,
                            batch_size=batch_size).explain(inputs, classes=classes)


def linear_head_relevance(weight: Any, vectors: Any, *, concept_names: Optional[Sequence[str]] = None,
                          layer: str = "") -> RelevanceResult:
    """Deprecated: ``ConceptRelevance(model, layer, vectors).explain(weight=weight)``
    (``model`` may be None for this closed form)."""
    _warn("linear_head_relevance", "ConceptRelevance(model, layer, vectors).explain(weight=weight)")
    res = ConceptRelevance(None, None, vectors, concept_names=concept_names).explain(weight=weight)
    res.layer = layer  # recorded only, as before (the vectors' layer is not checked against it)
    return res


def concept_maps(model: Any, layer: str, vectors: Any, image: Any, *,
                 concept_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Deprecated: ``ConceptRelevance(model, layer, vectors).concept_maps(image)``."""
    _warn("concept_maps", "ConceptRelevance(model, layer, vectors).concept_maps(image)")
    return ConceptRelevance(model, layer, vectors, concept_names=concept_names).concept_maps(image)


def concept_contributions(model: Any, layer: str, vectors: Any, image: Any,
                          target_class: Optional[int] = None, *,
                          concept_names: Optional[Sequence[str]] = None) -> LocalContributions:
    """Deprecated: ``ConceptRelevance(model, layer, vectors).explain_image(image,
    target_class, maps=False)``."""
    _warn("concept_contributions", "ConceptRelevance(model, layer, vectors).explain_image(image)")
    return ConceptRelevance(model, layer, vectors, concept_names=concept_names).explain_image(
        image, target_class, maps=False)
