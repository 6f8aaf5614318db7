"""Semantic topic supervision as one method (Dong et al., CVPR 2017;
docs/algorithms.md §6, docs/topics.md): :class:`TopicInterpretation`.

    ti = TopicInterpretation(model, "relu_fc", n_topics=12)
    ti.fit(train_images, descriptions)        # LDA topics + a topic head on the layer's pooled features
    res = ti.explain(images)                  # PredictionDifference: what each neuron drives
    ti.explain_edit(images[:1], {17: 0.0})    # EditEffect: the prediction without / with the edit
    with ti.edit({17: 0.0}):                  # NeuronEdit: neuron 17 suppressed inside the block
        model(images)

The free functions :func:`prediction_difference`, :func:`edit_neurons` and
:func:`explain_edit` are deprecated aliases of the verbs.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Union

from ...engine.checks import check_device
from . import ablation, editing
from .ablation import check_neurons
from .editing import NeuronEdit
from .lda import Topics, _check_int, _looks_numeric, extract_topics
from .result import EditEffect, PredictionDifference

__all__ = ["TopicInterpretation", "ABLATIONS", "TARGETS", "prediction_difference", "edit_neurons",
           "explain_edit"]

ABLATIONS = ("zero", "mean")
TARGETS = ("topics", "classes")
POOLINGS = ("mean", "max", "none")


class TopicInterpretation:
    """Prediction-difference maximization on ``layer``'s neurons (channels),
    with topics learned from descriptions, and neuron editing.

    For every neuron ``d`` of ``layer`` and target ``t`` (a topic, a class, or
    any probability computed from the model's output), :meth:`explain` gives
    the mean drop ``p_t(x) - p_t(x with d ablated)`` over the samples where
    ``d`` is active, and each neuron's ``top_k`` targets (docs/topics.md).

    Args:
        model: a ``torch.nn.Module`` (call ``model.eval()`` first for
            inference behaviour; the model is not modified).
        layer: the name of the submodule (``model.named_modules()``) whose
            output channels are the neurons: a float (B, C) or (B, C, *spatial)
            tensor, channels on axis 1.
        targets: ``"topics"`` (default: the topic head applied to
            ``topic_layer``'s output; the head comes from :meth:`fit` or
            ``topic_head``), ``"classes"`` (softmax of the model's logits,
            (B, classes)) or a callable ``f(model_output) -> (B, T)``
            probabilities.
        ablation: ``"zero"`` or ``"mean"`` (the channel's mean over the data
            and positions, from a first pass).
        topic_head: for ``targets="topics"``, a head given instead of fitted:
            an :class:`InterpretiveLoss` (its ``predict``, pooling itself,
            softmax if ``topic_softmax``; e.g. trained jointly with the model)
            or any callable mapping the output of ``topic_layer``, pooled over
            its spatial axes by ``topic_pooling``, to (B, T) topic
            probabilities.
        topic_layer: the layer the topic head reads (default ``layer``: the
            paper's setting); it must run after ``layer``.
        topic_pooling: ``"mean"``, ``"max"`` or ``"none"`` (raw output, for a
            callable head); :meth:`fit` pools the features the same way
            (``"none"``: by the mean).
        topic_softmax: apply a softmax over the topics to the head's output.
        target_names: T names (default: the fitted topics' names
            ``Topics.names(3)``, else ``"t0"``, ... / ``"class 0"``, ...).
        top_k: targets kept per neuron (at most T).
        neurons: channel indices to ablate (default all).
        batch_size: samples per batch when the data is a tensor.
        n_ablate: neurons ablated per forward (default: as many as fit in
            about 2**24 layer values per forward).
        active_threshold: a neuron is active on a sample when its activation
            (spatial maximum for maps) is > this.
        device: where inputs go (default the model's).
        n_topics: LDA topics fitted by :meth:`fit` on texts (for a topic
            matrix, its column count).
        hidden, head_epochs, head_lr, head_batch_size: the topic head fitted
            by :meth:`fit` (:func:`fit_topic_head`'s ``hidden``, ``epochs``,
            ``lr``, ``batch_size``).
        seed: of LDA and of the head's initialization and order.

    Every setting is keyword-only and validated here (TypeError /
    ValueError naming it); the ranges that depend on the layer (``neurons``
    within its channels, ``target_names`` one per target) are checked by
    :meth:`explain`.

    Attributes (after :meth:`fit`): ``topics`` (:class:`Topics`) and
    ``topic_head`` (the fitted :class:`InterpretiveLoss`).
    """

    def __init__(self, model: Any, layer: str, *, targets: Union[str, Callable[[Any], Any]] = "topics",
                 ablation: str = "zero", topic_head: Optional[Callable[[Any], Any]] = None,
                 topic_layer: Optional[str] = None, topic_pooling: str = "mean", topic_softmax: bool = False,
                 target_names: Optional[Sequence[str]] = None, top_k: int = 3, neurons: Optional[Sequence[int]] = None,
                 batch_size: int = 256, n_ablate: Optional[int] = None, active_threshold: float = 0.0,
                 device: Any = None, n_topics: int = 12, hidden: int = 64, head_epochs: int = 200,
                 head_lr: float = 1e-2, head_batch_size: int = 1024, seed: int = 0) -> None:
        from torch import nn

        from ...capture import find_module

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        find_module(model, layer)
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {list(ABLATIONS)}, got {ablation!r}")
        if isinstance(targets, str):
            if targets not in TARGETS:
                raise ValueError(f"targets must be one of {list(TARGETS)} or a callable, got {targets!r}")
        elif not callable(targets):
            raise TypeError(f"targets must be one of {list(TARGETS)} or a callable f(model_output) -> (B, T) "
                            f"probabilities, got {type(targets).__name__}")
        self.top_k = _check_int(top_k, "top_k")
        self.batch_size = _check_int(batch_size, "batch_size")
        self.n_ablate = None if n_ablate is None else _check_int(n_ablate, "n_ablate")
        if isinstance(active_threshold, bool) or not isinstance(active_threshold, (int, float)) \
                or not math.isfinite(active_threshold):
            raise ValueError(f"active_threshold must be a finite number, got {active_threshold!r}")
        if not isinstance(topic_softmax, bool):
            raise TypeError(f"topic_softmax must be a bool, got {type(topic_softmax).__name__}")
        if targets == "topics":
            if topic_head is not None and not callable(topic_head):
                raise TypeError(f"topic_head must be an InterpretiveLoss or a callable, got "
                                f"{type(topic_head).__name__}")
            if topic_pooling not in POOLINGS:
                raise ValueError(f"topic_pooling must be one of {list(POOLINGS)}, got {topic_pooling!r}")
            if topic_layer is not None:
                find_module(model, topic_layer)
        elif topic_head is not None or topic_layer is not None:
            raise ValueError(f'topic_head and topic_layer are only used with targets="topics", got targets={targets!r}')
        self.neurons = None if neurons is None else check_neurons(neurons)
        self.device = check_device(device) if device is not None else None
        self.n_topics = _check_int(n_topics, "n_topics")
        self.hidden = _check_int(hidden, "hidden")
        self.head_epochs = _check_int(head_epochs, "head_epochs")
        self.head_batch_size = _check_int(head_batch_size, "head_batch_size")
        if isinstance(head_lr, bool) or not isinstance(head_lr, (int, float)) or not math.isfinite(head_lr) \
                or head_lr <= 0:
            raise ValueError(f"head_lr must be a finite number > 0, got {head_lr!r}")
        self.seed = _check_int(seed, "seed", minimum=0)
        self.model = model
        self.layer = layer
        self.targets = targets
        self.ablation = ablation
        self.topic_head = topic_head
        self.topic_layer = topic_layer
        self.topic_pooling = topic_pooling
        self.topic_softmax = topic_softmax
        self.target_names = target_names
        self.active_threshold = float(active_threshold)
        self.head_lr = float(head_lr)
        self.topics: Optional[Topics] = None
        self._head_given = topic_head is not None

    def __repr__(self) -> str:
        targets = self.targets if isinstance(self.targets, str) else "callable"
        return (f"TopicInterpretation(layer={self.layer!r}, targets={targets!r}, ablation={self.ablation!r}, "
                f"topics={None if self.topics is None else self.topics.n_topics}, "
                f"topic_head={type(self.topic_head).__name__ if self.topic_head is not None else None})")

    # ------------------------------------------------------------------ fit
    def fit(self, data: Any, descriptions: Any) -> "TopicInterpretation":
        """Learn the topics and the topic head (post hoc: the model is not trained).

        1. Topics: :func:`extract_topics` of ``descriptions`` (``n_topics``
           LDA topics, ``seed``), or ``descriptions`` itself when it is a
           :class:`Topics`.
        2. Features: the output of ``topic_layer`` (default ``layer``) on
           ``data``, pooled over its spatial axes (``topic_pooling``; float32,
           :func:`~interp_engine.capture.pooled_activations`).
        3. Head: :func:`fit_topic_head` on those features and the topic
           vectors (``hidden``, ``head_epochs``, ``head_lr``,
           ``head_batch_size``, ``seed``).

        Args:
            data: the samples the descriptions describe, a tensor of inputs
                (N, ...) (cut into ``batch_size`` batches) or an iterable of
                batches (tensors, ``(input, ...)`` tuples, dicts with
                ``"image"``), in the order of ``descriptions``.
            descriptions: N str (one document per sample), an (N, T) topic
                matrix, or a :class:`Topics` with N rows.

        Returns:
            ``self``; ``self.topics`` and ``self.topic_head`` are set.

        Raises:
            ValueError: ``targets`` is not ``"topics"``, ``topic_head`` was
                given (nothing to fit), or ``descriptions`` and ``data`` do not
                have the same number of samples.
        """
        from ...capture import pooled_activations
        from .loss import fit_topic_head

        if self.targets != "topics":
            raise ValueError(f'fit learns topics and a topic head, used only with targets="topics"; got '
                             f"targets={self.targets if isinstance(self.targets, str) else 'a callable'!r}")
        if self._head_given:
            raise ValueError("topic_head was given to TopicInterpretation: there is nothing to fit (explain "
                             "directly, or leave topic_head=None to fit one)")
        if isinstance(descriptions, Topics):
            topics = descriptions
        elif _looks_numeric(descriptions):
            topics = extract_topics(descriptions, seed=self.seed)
        else:
            topics = extract_topics(descriptions, self.n_topics, seed=self.seed)
        layer = self.topic_layer or self.layer
        pooling = self.topic_pooling if self.topic_pooling in ("mean", "max") else "mean"
        batches = ablation._batches(data, self.batch_size)
        feats = pooled_activations(self.model, layer, batches, pooling=pooling, device=self.device)[layer]
        if feats.shape[0] != topics.matrix.shape[0]:
            raise ValueError(f"descriptions must give one topic vector per sample of data: "
                             f"{topics.matrix.shape[0]} descriptions for {feats.shape[0]} samples")
        self.topic_head = fit_topic_head(feats, topics.matrix, self.hidden, epochs=self.head_epochs,
                                         lr=self.head_lr, batch_size=self.head_batch_size, seed=self.seed,
                                         pooling=pooling)
        self.topics = topics
        return self

    # ------------------------------------------------------------------ explain
    def explain(self, data: Any) -> PredictionDifference:
        """Prediction-difference maximization on ``data``: what each neuron of
        ``layer`` drives.

        Args:
            data: a tensor of inputs (N, ...) (cut into ``batch_size``
                batches) or an iterable of batches (tensors, ``(input, ...)``
                tuples, dicts with ``"image"``); for ``ablation="mean"`` it is
                read twice, so it must be re-iterable (not a generator).

        Returns:
            :class:`PredictionDifference`.

        How it runs: when ``model`` is an ``nn.Sequential`` (without its own
        ``forward``) and ``layer`` (and ``topic_layer``) are its direct
        children, the children up to ``layer`` run once per batch and only
        those after it run on the ablated copies (Sequential route).
        Otherwise a forward hook on ``layer``
        (:class:`~interp_engine.capture.OutputHooks`, always removed) does the
        ablation, *expanding* the layer's output into the ablated copies when
        that gives the same probabilities as *replicating* the input (checked
        on two neurons of the first batch; docs/topics.md).  Drops are
        accumulated in float64 by one batched matrix product per chunk of
        neurons.

        Raises:
            TypeError / ValueError: a layer without channels to ablate,
                ``targets="topics"`` without a head (not fitted, no
                ``topic_head``), targets callables that return the wrong shape,
                ``neurons`` outside the layer's channels, ``target_names`` of
                the wrong length, a one-shot iterator with ``ablation="mean"``,
                no samples; messages name the argument.
        """
        return ablation.prediction_difference(self, data)

    def _target_names_for(self, n_targets: int) -> Optional[Sequence[str]]:
        if self.target_names is None and self.targets == "topics" and self.topics is not None \
                and self.topics.n_topics == n_targets:
            return self.topics.names(3)
        return self.target_names

    # ------------------------------------------------------------------ editing
    def edit(self, edits: Mapping[int, float]) -> NeuronEdit:
        """Suppress or amplify neurons of ``layer`` inside a ``with`` block::

            with ti.edit({17: 0.0, 42: 2.0}):
                logits = model(x)        # channel 17 zeroed, channel 42 doubled

        ``edits``: ``{channel: scale}`` (see :class:`NeuronEdit`)."""
        return NeuronEdit(self.model, self.layer, edits)

    def explain_edit(self, x: Any, edits: Mapping[int, float], class_names: Optional[Sequence[str]] = None, *,
                     labels: Optional[Sequence[int]] = None) -> EditEffect:
        """The model's prediction for inputs ``x`` (a batch (N, ...); for one
        sample pass ``x[None]``) without and with :meth:`edit` ``(edits)``.

        The model must return float logits (N, C); probabilities are their
        softmax.  ``class_names``: C names (default ``"class 0"``, ...);
        ``labels``: optional true classes (N,), to show whether the edit fixes
        a wrong prediction.  The model is run under ``torch.no_grad()`` and
        left as it was.

        Returns:
            :class:`EditEffect`.
        """
        return editing.explain_edit(self.model, self.layer, x, edits, class_names, labels=labels)


# ----------------------------------------------------------------------------- deprecated aliases

def prediction_difference(model: Any, layer: str, data: Any, targets: Union[str, Callable[[Any], Any]] = "classes",
                          ablation: str = "zero", **settings: Any) -> PredictionDifference:
    """Deprecated: ``TopicInterpretation(model, layer, targets=targets,
    ablation=ablation, **settings).explain(data)`` (same keyword settings)."""
    warnings.warn("prediction_difference(model, layer, data, ...) is deprecated; use "
                  "TopicInterpretation(model, layer, targets=..., ablation=..., ...).explain(data)",
                  DeprecationWarning, stacklevel=2)
    return TopicInterpretation(model, layer, targets=targets, ablation=ablation, **settings).explain(data)


def edit_neurons(model: Any, layer: str, edits: Mapping[int, float]) -> NeuronEdit:
    """Deprecated: ``TopicInterpretation(model, layer).edit(edits)`` (a :class:`NeuronEdit`)."""
    warnings.warn("edit_neurons(model, layer, edits) is deprecated; use "
                  "TopicInterpretation(model, layer).edit(edits)", DeprecationWarning, stacklevel=2)
    return NeuronEdit(model, layer, edits)


def explain_edit(model: Any, layer: str, x: Any, edits: Mapping[int, float],
                 class_names: Optional[Sequence[str]] = None, *, labels: Optional[Sequence[int]] = None
                 ) -> EditEffect:
    """Deprecated: ``TopicInterpretation(model, layer).explain_edit(x, edits,
    class_names, labels=labels)``."""
    warnings.warn("explain_edit(model, layer, x, edits, ...) is deprecated; use "
                  "TopicInterpretation(model, layer).explain_edit(x, edits, ...)", DeprecationWarning,
                  stacklevel=2)
    return editing.explain_edit(model, layer, x, edits, class_names, labels=labels)
