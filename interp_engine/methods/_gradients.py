"""Shared pieces of the gradient-based methods (TCAV, concept relevance):
input batching and the gradient of a class logit w.r.t. a layer's output.

Private: used by :mod:`.tcav` and :mod:`.concept_relevance`.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

from ..engine.checks import describe


def iter_batches(examples: Any, batch_size: int, what: str) -> Iterator[Any]:
    """Yield input batches from a tensor ``(N, ...)`` or a map-style dataset
    (``len`` + ``__getitem__``) whose items are tensors, tuples (element 0) or
    dicts (``"image"``)."""
    import torch
    from ..capture import input_of

    if isinstance(examples, torch.Tensor):
        if examples.dim() < 1 or examples.shape[0] == 0:
            raise ValueError(f"{what} must hold at least one example, got {describe(examples)}")
        for s in range(0, examples.shape[0], batch_size):
            yield examples[s:s + batch_size]
        return
    if hasattr(examples, "__len__") and hasattr(examples, "__getitem__"):
        n = len(examples)
        if n == 0:
            raise ValueError(f"{what} must hold at least one example, got an empty "
                             f"{type(examples).__name__}")
        for s in range(0, n, batch_size):
            yield torch.stack([input_of(examples[i], what)
                               for i in range(s, min(n, s + batch_size))])
        return
    raise TypeError(f"{what} must be a tensor (N, ...) or a dataset (len + indexing), got "
                    f"{describe(examples)}")


def layer_tensor(out: Any, layer: str, method: str) -> Any:
    """``out`` if it is a floating tensor, else a TypeError naming the layer."""
    import torch

    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"layer {layer!r}: {method} needs a floating tensor output, got "
                        f"{describe(out)}")
    return out


def iter_layer_gradients(model: Any, layer: str, inputs: Any, target_class: Optional[int], *,
                         batch_size: int, method: str, what: str = "inputs",
                         ) -> Iterator[Tuple[Any, Any, Any, Any]]:
    """Per batch of ``inputs``: the layer's output, the gradient of a class
    logit w.r.t. it, the logits and the classes used.

    One forward and one backward per batch (the gradient of the sum over the
    batch of ``logits[i, t_i]``: per-example gradients as long as examples do
    not interact, i.e. the model is in eval mode).  The hook is removed when
    the generator finishes or is closed.

    Args:
        model: ``torch.nn.Module`` returning logits ``(B, num_classes)``.
        layer: a name from ``model.named_modules()`` with a floating tensor output.
        inputs: tensor ``(N, ...)`` or dataset (see :func:`iter_batches`).
        target_class: a class index for every example, or ``None`` for each
            example's predicted class (argmax of its logits).
        method: the caller's name, for error messages.

    Yields:
        ``(acts, grad, logits, targets)``: ``acts`` and ``grad`` detached
        tensors of the layer output's shape ``(B, ...)``, ``logits`` detached
        ``(B, num_classes)``, ``targets`` int64 ``(B,)``.
    """
    import torch
    from ..capture import Capture, model_device_dtype

    dev, dt = model_device_dtype(model)
    with Capture(model, layer, detach=False, clone=False) as cap:
        for x in iter_batches(inputs, batch_size, what):
            x = x.to(device=dev, dtype=dt) if (x.is_floating_point() and dt) else x.to(dev)
            if x.is_floating_point():
                x = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(x)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise ValueError(f"model output must be logits (B, num_classes), got "
                                     f"{describe(logits)}")
                if target_class is None:
                    t = logits.detach().argmax(dim=1)
                else:
                    if not 0 <= target_class < logits.shape[1]:
                        raise ValueError(f"target_class must be in [0, {logits.shape[1]}), got "
                                         f"{target_class}")
                    t = torch.full((logits.shape[0],), int(target_class), dtype=torch.long,
                                   device=logits.device)
                out = layer_tensor(cap.raw_outputs[layer], layer, method)
                (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), out)
            yield out.detach(), g, logits.detach(), t
