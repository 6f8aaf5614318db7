"""Neuron editing, the human-in-the-loop step of Dong et al. (CVPR 2017;
docs/topics.md "Editing"): scale channels of a layer inside a ``with`` block
(:class:`NeuronEdit`) and compare the predictions before and after
(:func:`explain_edit`, an :class:`~interp_engine.methods.topics.EditEffect`)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ...engine.checks import describe
from .ablation import _check_layer_output, _probs_from_output, _target_names
from .result import EditEffect

__all__ = ["NeuronEdit"]


def _check_edits(edits: Any) -> Dict[int, float]:
    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a dict {{neuron: scale}}, got {type(edits).__name__}")
    out: Dict[int, float] = {}
    for k, v in edits.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"edits keys must be channel indices (ints >= 0), got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            raise ValueError(f"edits[{int(k)}] must be a finite scale (0 suppresses, > 1 amplifies), got {v!r}")
        out[int(k)] = float(v)
    return out


class NeuronEdit:
    """Context manager that multiplies channels of a layer's output::

        with TopicInterpretation(model, "relu_fc").edit({17: 0.0, 42: 2.0}):
            logits = model(x)        # channel 17 zeroed, channel 42 doubled

    ``edits``: ``{channel: scale}``; the layer's output (float (B, C) or
    (B, C, *spatial)) is replaced by a copy whose channel ``c`` is multiplied
    by ``scale`` (0 suppresses, > 1 amplifies, negative flips), at every
    position.  A forward hook (:class:`~interp_engine.capture.OutputHooks`)
    does it; it is removed when the block exits, exceptions included, and the
    model's parameters and buffers are never touched.  Keys are checked
    against the channel count at the first forward (ValueError); bad keys or
    scales raise at once.  Reusable; not reentrant."""

    def __init__(self, model: Any, layer: str, edits: Mapping[int, float]) -> None:
        from torch import nn

        from ...capture import OutputHooks, find_module

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer = layer
        self.module = find_module(model, layer)
        self.edits = _check_edits(edits)
        self._hooks = OutputHooks(model, {layer: self._edit})

    @property
    def active(self) -> bool:
        """True inside the ``with`` block (hook registered)."""
        return self._hooks.active

    def _edit(self, output: Any) -> Any:
        import torch

        out = _check_layer_output(output, self.layer)
        if not self.edits:
            return None
        c = out.shape[1]
        bad = [k for k in self.edits if k >= c]
        if bad:
            raise ValueError(f"edits name neurons {bad} but layer {self.layer!r} has {c} channels")
        idx = torch.tensor(list(self.edits), dtype=torch.int64, device=out.device)
        scale = torch.tensor(list(self.edits.values()), dtype=out.dtype, device=out.device)
        new = out.clone()
        new[:, idx] = out[:, idx] * scale.view(1, -1, *([1] * (out.dim() - 2)))
        return new

    def __enter__(self) -> "NeuronEdit":
        if self._hooks.active:
            raise RuntimeError("this NeuronEdit is already active (entered twice)")
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    def __repr__(self) -> str:
        return f"NeuronEdit(layer={self.layer!r}, edits={self.edits}, active={self.active})"


def explain_edit(model: Any, layer: str, x: Any, edits: Mapping[int, float],
                 class_names: Optional[Sequence[str]] = None, *, labels: Optional[Sequence[int]] = None
                 ) -> EditEffect:
    """The model's prediction for inputs ``x`` (a batch (N, ...); for one
    sample pass ``x[None]``) without and with :class:`NeuronEdit`
    ``(model, layer, edits)`` (what :meth:`TopicInterpretation.explain_edit
    <interp_engine.methods.topics.TopicInterpretation.explain_edit>` runs).

    The model must return float logits (N, C); probabilities are their
    softmax.  ``class_names``: C names (default ``"class 0"``, ...);
    ``labels``: optional true classes (N,), to show whether the edit fixes a
    wrong prediction.  The model is run under ``torch.no_grad()`` and left as
    it was."""
    import torch

    edit = NeuronEdit(model, layer, edits)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of inputs (N, ...) as a torch.Tensor, got {describe(x)}")
    with torch.no_grad():
        before = _probs_from_output(model(x), "the model")
        with edit:
            after = _probs_from_output(model(x), "the model")
    c = before.shape[1]
    names = _target_names(class_names, c, "classes", None)
    lab = None
    if labels is not None:
        lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if lab.shape != (x.shape[0],) or lab.dtype.kind not in "iu" or (len(lab) and (lab.min() < 0 or lab.max() >= c)):
            raise ValueError(f"labels must be ints in [0, {c}) of shape ({x.shape[0]},), got {describe(labels)}")
        lab = lab.astype(np.int64)
    b, a = before.double().cpu().numpy(), after.double().cpu().numpy()
    return EditEffect(layer=layer, edits=dict(edit.edits), class_names=names, before=b, after=a,
                      before_class=b.argmax(1).astype(np.int64), after_class=a.argmax(1).astype(np.int64),
                      labels=lab)
