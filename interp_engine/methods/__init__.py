"""Interpretability methods built on the core and the capture layer."""
from .dissection import (Dissection, DissectionResult, LayerResult, dissect, random_rotation,
                         rotation_experiment)

__all__ = ["Dissection", "DissectionResult", "LayerResult", "dissect", "random_rotation",
           "rotation_experiment"]
