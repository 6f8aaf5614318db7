"""Interpretability methods built on the core and the capture layer."""
from .dissection import (Dissection, DissectionResult, LayerResult, dissect, random_rotation,
                         rotation_experiment)
from .invert import Explanation, Invert, InvertResult, NeuronExplanation, format_formula

__all__ = ["Dissection", "DissectionResult", "LayerResult", "dissect", "random_rotation",
           "rotation_experiment", "Invert", "InvertResult", "NeuronExplanation", "Explanation",
           "format_formula"]
