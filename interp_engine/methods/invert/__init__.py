"""INVERT (docs/invert.md; docs/algorithms.md §3): the method (:mod:`.method`),
its results and their file (:mod:`.result`), what it reads from a model
(:mod:`.collect`)."""
from .method import Invert
from .result import Explanation, InvertResult, NeuronExplanation, format_formula

__all__ = ["Invert", "Explanation", "NeuronExplanation", "InvertResult", "format_formula"]
