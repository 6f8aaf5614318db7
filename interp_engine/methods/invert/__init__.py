"""INVERT (docs/invert.md)."""
from .method import Explanation, Invert, InvertResult, NeuronExplanation, format_formula

__all__ = ["Invert", "Explanation", "NeuronExplanation", "InvertResult", "format_formula"]
