"""Interpretability methods built on the core and the capture layer."""
from typing import Any

from .concept_relevance import (ConceptRelevance, LocalContributions, RelevanceResult, concept_class_relevance,
                                concept_contributions, concept_maps, linear_head_relevance)
from .cam import DropIncrease, average_drop_increase, grad_cam
from .representative import (Boundaries, Region, RegionEvaluation, Regions, RepresentativeInterpretation,
                             SimilarImages, evaluate_regions)
from .concept_vectors import ConceptIoURow, ConceptVectors, ConceptVectorsEvaluation
from .dissection import (Dissection, DissectionResult, LayerResult, dissect, random_rotation,
                         rotation_experiment)
from .invert import Explanation, Invert, InvertResult, NeuronExplanation, format_formula
from .tcav import (CAV, TCAV, Classifier, MeanDifferenceClassifier, SGDLinearClassifier,
                   TCAVResult, TCAVRow)

__all__ = ["Dissection", "DissectionResult", "LayerResult", "dissect", "random_rotation",
           "rotation_experiment", "Invert", "InvertResult", "NeuronExplanation", "Explanation",
           "format_formula", "TCAV", "TCAVResult", "TCAVRow", "CAV", "Classifier",
           "SGDLinearClassifier", "MeanDifferenceClassifier", "ConceptVectors",
           "ConceptVectorsEvaluation", "ConceptIoURow", "ConceptRelevance", "concept_class_relevance",
           "linear_head_relevance", "concept_maps", "concept_contributions", "plot_local",
           "RelevanceResult", "LocalContributions", "RepresentativeInterpretation", "Regions", "Region",
           "Boundaries", "SimilarImages", "RegionEvaluation", "evaluate_regions", "grad_cam", "average_drop_increase",
           "DropIncrease"]


def __getattr__(name: str) -> Any:
    # plot_local is drawn by the report layer (above the methods): loaded on first use
    if name == "plot_local":
        from ..report.relevance_plots import plot_local

        return plot_local
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
