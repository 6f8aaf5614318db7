"""Deprecated: ``interp_engine.topics`` was a second name of
:mod:`interp_engine.methods.topics`; import from there (or the names at
``interp_engine``'s top level).  This module re-exports the names and warns
on import."""
import warnings
from typing import Any

from .methods import topics as _topics
from .methods.topics import (ABLATIONS, TARGETS, EditEffect, NeuronEdit, PredictionDifference,  # noqa: F401
                             TopicInterpretation, Topics, edit_neurons, explain_edit, extract_topics,
                             prediction_difference, validate_topic_matrix)

warnings.warn("interp_engine.topics is deprecated; use interp_engine.methods.topics (TopicInterpretation)",
              DeprecationWarning, stacklevel=2)

__all__ = list(_topics.__all__)


def __getattr__(name: str) -> Any:
    if name in ("InterpretiveLoss", "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS"):
        return getattr(_topics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
