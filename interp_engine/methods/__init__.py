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
from . import topics as _topics
from .topics import (ABLATIONS, TARGETS, EditEffect, NeuronEdit, PredictionDifference, TopicInterpretation, Topics,
                     extract_topics, validate_topic_matrix)
from .tcav import (CAV, TCAV, Classifier, MeanDifferenceClassifier, SGDLinearClassifier,
                   TCAVResult, TCAVRow)

#: the public names (the deprecated aliases dissect, rotation_experiment, concept_class_relevance,
#: linear_head_relevance, concept_maps and concept_contributions stay importable, unlisted; plot_local
#: is the report layer's, reachable here for old code)
__all__ = ['Dissection', 'DissectionResult', 'LayerResult', 'random_rotation', 'Invert', 'InvertResult', 'NeuronExplanation', 'Explanation', 'format_formula', 'TCAV', 'TCAVResult', 'TCAVRow', 'CAV', 'Classifier', 'SGDLinearClassifier', 'MeanDifferenceClassifier', 'ConceptVectors', 'ConceptVectorsEvaluation', 'ConceptIoURow', 'ConceptRelevance', 'RelevanceResult', 'LocalContributions', 'RepresentativeInterpretation', 'Regions', 'Region', 'Boundaries', 'SimilarImages', 'RegionEvaluation', 'evaluate_regions', 'grad_cam', 'average_drop_increase', 'DropIncrease']
# the topics package's names; the ones that load torch only where torch is installed (as there)
__all__ += list(_topics.__all__)



def __getattr__(name: str) -> Any:
    # plot_local is drawn by the report layer (above the methods): loaded on first use
    if name in _topics._TORCH_NAMES:
        return getattr(_topics, name)
    if name == "plot_local":
        from ..report.relevance_plots import plot_local

        return plot_local
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
