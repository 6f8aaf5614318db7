"""Semantic topic supervision (Dong et al., CVPR 2017; docs/algorithms.md §6,
docs/topics.md): topics, the interpretive loss, prediction-difference
maximization and neuron editing.

* :class:`TopicInterpretation` (:mod:`.method`): the method.
  ``TopicInterpretation(model, layer, **settings).fit(data, descriptions)``
  learns LDA topics and a topic head on the layer's pooled features;
  ``.explain(data)`` gives a :class:`PredictionDifference` (what each neuron
  drives); ``.edit(edits)`` (a :class:`NeuronEdit` context manager) and
  ``.explain_edit(x, edits)`` (an :class:`EditEffect`) suppress or amplify
  neurons and show the prediction change.
* :func:`extract_topics`, :class:`Topics`, :func:`validate_topic_matrix`
  (:mod:`.lda`): topic vectors from descriptions (LDA) or a given matrix.
* :class:`InterpretiveLoss`, :func:`fit_topic_head` (:mod:`.loss`, torch):
  the loss that supervises a layer with the topics, and its head fitted post
  hoc.
* :mod:`.ablation`: how the ablations run; :mod:`.result`: the results.

Deprecated aliases: :func:`prediction_difference`, :func:`edit_neurons`,
:func:`explain_edit` (the method's verbs).

Imports without torch (:func:`extract_topics` and
:func:`validate_topic_matrix` need numpy, and scikit-learn for LDA); the rest
imports torch when used (``InterpretiveLoss`` and ``fit_topic_head`` on first
access).
"""
from __future__ import annotations

import importlib.util
from typing import Any

from .editing import NeuronEdit
from .lda import Topics, extract_topics, validate_topic_matrix
from .method import (ABLATIONS, TARGETS, TopicInterpretation, edit_neurons, explain_edit,  # noqa: F401
                     prediction_difference)
from .result import EditEffect, PredictionDifference

__all__ = ["TopicInterpretation", "PredictionDifference", "EditEffect", "NeuronEdit", "Topics", "extract_topics",
           "validate_topic_matrix", "ABLATIONS", "TARGETS"]
_TORCH_NAMES = ("InterpretiveLoss", "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS")
if importlib.util.find_spec("torch") is not None:  # `import *` must not fail without torch
    __all__ += list(_TORCH_NAMES)
_DEPRECATED = ("prediction_difference", "edit_neurons", "explain_edit")  # importable, not in __all__


def __getattr__(name: str) -> Any:
    # the torch module is loaded on first access, so that this package imports without torch
    if name in _TORCH_NAMES[:2]:
        from . import loss

        return getattr(loss, name)
    if name == "FASHION_MNIST_DESCRIPTIONS":  # interp_engine.data imports torch (the Broden reader)
        from ...data.fashion_text import FASHION_MNIST_DESCRIPTIONS

        return FASHION_MNIST_DESCRIPTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
