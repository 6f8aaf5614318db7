"""Network Dissection (Bau et al., CVPR 2017): :class:`Dissection` and its results.

``Dissection(model, layers, **settings).explain(dataset)`` returns a
:class:`DissectionResult` of :class:`LayerResult`\\ s (docs/dissection.md).
Modules by role: ``method`` (the class and its passes), ``state`` (the
run's accumulators and activation cache), ``checkpoint`` (the checkpoint
file), ``accumulators`` (:class:`TopImages`), ``result`` (the results and
their file), ``rotation`` (the basis experiment), ``datasets``.
"""
from .accumulators import TopImages
from .method import Dissection, dissect, rotation_experiment
from .result import DissectionResult, LayerResult
from .rotation import random_rotation

__all__ = ["Dissection", "DissectionResult", "LayerResult", "TopImages", "random_rotation", "dissect",
           "rotation_experiment"]
