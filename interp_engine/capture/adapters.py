"""Module lookup and adapters: :func:`find_module` finds a submodule by its
dotted name (with close matches when it is none), :func:`to_bchw` brings a
module's output to the ``(B, C, H, W)`` layout the statistics engine expects."""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Mapping, Union

from .._loader import require_torch

torch = require_torch("interp_engine.capture")
from torch import nn  # noqa: E402

Adapter = Union[str, Callable[[Any], "torch.Tensor"]]
_ADAPTER_NAMES = ("auto", "none", "first")


# ----------------------------------------------------------------------------- module lookup

def find_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule of ``model`` called ``name``.

    Args:
        model: any ``torch.nn.Module``.
        name: a dotted name as listed by ``model.named_modules()``, e.g.
            ``"layer4"``, ``"layer4.1.conv2"``, ``"features.17"``.  The empty
            name (the model itself) is not allowed: capture a submodule.

    Returns:
        The submodule (the object itself, not a copy).

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``name`` is not a str.
        ValueError: ``name`` is empty or names no submodule; the message lists
            up to 5 close matches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"layer name must be a str, got {type(name).__name__}: {name!r}")
    if name == "":
        raise ValueError("layer name must be a submodule's dotted name (as in "
                         "model.named_modules()), got '' (the model itself)")
    try:
        return model.get_submodule(name)
    except AttributeError:
        pass
    names = [n for n, _ in model.named_modules(remove_duplicate=False) if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:  # fall back to names sharing the last component or a prefix
        last = name.rsplit(".", 1)[-1]
        close = [n for n in names if n.rsplit(".", 1)[-1] == last or n.startswith(name)][:5]
    if close:
        hint = f" Close matches: {', '.join(repr(c) for c in close)}."
    elif len(names) <= 10:
        hint = f" Its submodules: {', '.join(repr(n) for n in names)}."
    else:
        hint = ""
    raise ValueError(
        f"layer {name!r} is not a submodule of {type(model).__name__} "
        f"({len(names)} named submodules).{hint} "
        "List the valid names with [n for n, _ in model.named_modules()].")


# ----------------------------------------------------------------------------- adapters

def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} ({x.dtype})"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_describe(e) if isinstance(e, torch.Tensor) else type(e).__name__
                          for e in list(x)[:4])
        more = ", ..." if len(x) > 4 else ""
        return f"a {type(x).__name__} of {len(x)} ({inner}{more})"
    if isinstance(x, Mapping):
        return f"a {type(x).__name__} with keys {list(x.keys())[:8]}"
    return f"an object of type {type(x).__name__}"


def _plain(t: torch.Tensor) -> torch.Tensor:
    # Tensor subclasses (nn.Parameter, user subclasses) become plain tensors
    # sharing the same storage, so downstream code sees ordinary tensors.
    return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)


def _auto(output: Any, layer: str, came_from: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        if isinstance(output, (tuple, list)):
            how = ('pass adapter="first" to take element 0, or a callable, e.g. '
                   "adapter=lambda out: out[1]")
        elif isinstance(output, Mapping):
            how = 'pass a callable adapter, e.g. adapter=lambda out: out["key"]'
        else:
            how = "pass a callable adapter that returns a (B, C, H, W) tensor"
        raise TypeError(f"layer {layer!r}: output is {_describe(output)}{came_from}, "
                        f"expected a tensor; {how}")
    if not (output.is_floating_point()):
        raise TypeError(f"layer {layer!r}: output is {_describe(output)}{came_from}, "
                        "expected a floating-point tensor")
    t = _plain(output)
    if t.dim() == 4:
        return t
    if t.dim() == 2:  # (B, C): linear neurons as 1x1 maps
        return t[:, :, None, None]
    if t.dim() == 3:  # (B, T, C): tokens on a square grid, optionally after a CLS token
        b, n_tok, c = t.shape
        for drop in (0, 1):
            n = n_tok - drop
            s = math.isqrt(n) if n > 0 else 0
            if n > 0 and s * s == n:
                grid = t[:, drop:, :] if drop else t
                return grid.transpose(1, 2).unflatten(2, (s, s))  # a view, no copy
        raise ValueError(
            f"layer {layer!r}: output is {_describe(output)}{came_from}, read as (B, T, C) tokens, "
            f"but T={n_tok} is neither a perfect square nor 1 + a perfect square (CLS token); "
            "pass a callable adapter that returns (B, C, H, W), e.g. one that drops the extra "
            "tokens and reshapes to the patch grid")
    raise ValueError(
        f"layer {layer!r}: output is {_describe(output)}{came_from}; the 'auto' adapter takes "
        "(B, C, H, W), (B, C) or (B, T, C) tensors; pass a callable adapter that returns "
        "(B, C, H, W)")


def _require_bchw(t: Any, layer: str, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"layer {layer!r}: {what} is {_describe(t)}, expected a (B, C, H, W) "
                        "tensor")
    if t.dim() != 4:
        raise ValueError(f"layer {layer!r}: {what} is {_describe(t)}, expected a (B, C, H, W) "
                         "tensor (4 dims)")
    if not t.is_floating_point():
        raise TypeError(f"layer {layer!r}: {what} is {_describe(t)}, expected a "
                        "floating-point tensor")
    return _plain(t)


def _check_adapter(adapter: Any, argname: str = "adapter") -> None:
    if callable(adapter):
        return
    if isinstance(adapter, str) and adapter in _ADAPTER_NAMES:
        return
    raise ValueError(f"{argname} must be one of {list(_ADAPTER_NAMES)} or a callable, "
                     f"got {adapter!r}")


def to_bchw(output: Any, *, layer: str, adapter: Adapter = "auto") -> torch.Tensor:
    """Bring a module's output to the ``(B, C, H, W)`` layout.

    Args:
        output: what the module's forward returned.
        layer: the layer's name, used in error messages.
        adapter: how to read ``output``:

            - ``"auto"`` (default): a ``(B, C, H, W)`` tensor as is; ``(B, C)``
              (linear neurons) as ``(B, C, 1, 1)``; ``(B, T, C)`` tokens (vision
              transformer) as ``(B, C, s, s)`` when ``T = s*s``, or when
              ``T = 1 + s*s`` after dropping the first (CLS) token; tokens are
              read in row-major order.  Anything else raises.
            - ``"none"``: ``output`` must already be a ``(B, C, H, W)`` tensor.
            - ``"first"``: for tuple/list outputs (e.g. an RNN or an attention
              block returning ``(out, weights)``), element 0, then ``"auto"``; a
              tensor output goes straight to ``"auto"``.
            - a callable: applied to the raw output; it must return a
              ``(B, C, H, W)`` tensor.

    Returns:
        A floating-point ``(B, C, H, W)`` tensor on ``output``'s device, in its
        dtype; a view of ``output`` wherever the layout allows (no copy; the
        token grid is a non-contiguous view).  Tensor subclasses come back as
        plain ``torch.Tensor`` views.

    Raises:
        TypeError: ``output`` (or what the adapter returned) is not a floating
            tensor: tuples, lists, dicts, integer tensors; the message names the
            layer, what came and which adapter to pass.
        ValueError: a shape the adapter cannot read (1-D, 5-D, a token count
            that is not a square grid), or an unknown adapter name.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a str, got {type(layer).__name__}")
    _check_adapter(adapter)
    if callable(adapter):
        return _require_bchw(adapter(output), layer, "the adapter's result")
    if adapter == "none":
        return _require_bchw(output, layer, "output")
    if adapter == "first":
        if isinstance(output, (tuple, list)):
            if len(output) == 0:
                raise ValueError(f'layer {layer!r}: adapter="first" got an empty '
                                 f"{type(output).__name__}")
            return _auto(output[0], layer, f" (element 0 of {_describe(output)})")
        return _auto(output, layer, "")
    return _auto(output, layer, "")
