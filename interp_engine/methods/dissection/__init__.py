"""Network Dissection (Bau et al., CVPR 2017): :class:`Dissection` and its results."""
from .method import (Dissection, DissectionResult, LayerResult, dissect, random_rotation,
                     rotation_experiment)

__all__ = ["Dissection", "DissectionResult", "LayerResult", "dissect", "random_rotation",
           "rotation_experiment"]
