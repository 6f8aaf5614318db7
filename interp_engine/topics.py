"""Semantic topic supervision (Dong et al., CVPR 2017): ``interp_engine.topics``.

A short name for :mod:`interp_engine.methods.topics` (see there and
docs/topics.md): :func:`extract_topics`, :class:`InterpretiveLoss`,
:func:`fit_topic_head`, :func:`prediction_difference`, :func:`edit_neurons`,
:func:`explain_edit`.  Importing it needs neither torch nor scikit-learn;
``InterpretiveLoss``, ``fit_topic_head`` and ``FASHION_MNIST_DESCRIPTIONS``
load torch on first access.
"""
from typing import Any

from .methods import topics as _topics
from .methods.topics import (ABLATIONS, TARGETS, EditEffect, NeuronEdit,
                             PredictionDifference, Topics, edit_neurons, explain_edit, extract_topics,
                             prediction_difference, validate_topic_matrix)

__all__ = list(_topics.__all__)


def __getattr__(name: str) -> Any:
    if name in ("InterpretiveLoss", "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS"):
        return getattr(_topics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


_unused = (ABLATIONS, TARGETS, EditEffect, NeuronEdit, PredictionDifference, Topics,
           edit_neurons, explain_edit, extract_topics, prediction_difference, validate_topic_matrix)
del _unused
