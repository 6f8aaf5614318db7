"""Activation capture: forward hooks on named submodules of any ``torch.nn.Module``.

``Capture`` is a context manager that registers forward hooks on one or more
submodules, named as in ``model.named_modules()`` (``"layer4"``,
``"layer4.1.conv2"``, ``"features.17"``, ``"blocks.6.mlp"``), and always removes
them on exit, exceptions included.  Each captured output is brought to the
``(B, C, H, W)`` layout the statistics engine expects by an *adapter* (see
:func:`to_bchw`).

The model is left as it was: no parameter, buffer update or training flag is
changed by this module (the caller chooses ``model.eval()``; a model left in
training mode updates its BatchNorm running statistics in its own forward, as
it would without us) and no hook survives the ``with`` block.

The package: :mod:`.adapters` (module lookup, output layouts), :mod:`.hooks`
(:class:`Capture`, :class:`OutputHooks`), :mod:`.iterate` (activations of
batches).  See docs/capture.md for the rules in full.
"""
from __future__ import annotations

from .adapters import find_module, to_bchw
from .hooks import Capture, OutputHooks, capture
from .iterate import iter_activations, model_device_dtype, pooled_activations

# reachable here as before, not listed in __all__: the adapter type, and the batch reader the methods use
from .adapters import Adapter  # noqa: E402
from .iterate import input_of  # noqa: E402

_UNLISTED = (Adapter, input_of)

__all__ = ["find_module", "to_bchw", "Capture", "capture", "iter_activations",
           "pooled_activations", "model_device_dtype", "OutputHooks"]
