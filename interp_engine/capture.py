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

See docs/capture.md for the rules in full.
"""
from __future__ import annotations

import difflib
import math
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from ._loader import require_torch

torch = require_torch("interp_engine.capture")
from torch import nn  # noqa: E402

from .engine.checks import check_device

__all__ = ["find_module", "to_bchw", "Capture", "capture", "iter_activations",
           "pooled_activations", "model_device_dtype", "OutputHooks"]

Adapter = Union[str, Callable[[Any], "torch.Tensor"]]
_ADAPTER_NAMES = ("auto", "none", "first")
_REPEAT_RULES = ("error", "first", "last")


class _StopForward(BaseException):
    """Raised from a hook to abort the rest of a forward pass (``stop_early``).

    A BaseException, so that a model's own ``except Exception`` cannot swallow
    it; it never leaves :meth:`Capture.__call__`.
    """


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


# ----------------------------------------------------------------------------- Capture

def _layer_list(layers: Any) -> List[str]:
    if isinstance(layers, str):
        return [layers]
    if not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a str or a sequence of str, got {type(layers).__name__}")
    out = list(layers)
    if not out:
        raise ValueError("layers must name at least one submodule, got an empty sequence")
    for n in out:
        if not isinstance(n, str):
            raise TypeError(f"layers must be a str or a sequence of str, got an element of type "
                            f"{type(n).__name__}: {n!r}")
    seen = set()
    dups = sorted({n for n in out if n in seen or seen.add(n)})
    if dups:
        raise ValueError(f"layers must not repeat a name, got {dups} more than once")
    return out


class _Hooked:
    """The hook handles of a context manager that registers forward hooks: removed on exit, on
    an error while registering, and never left behind."""

    _handles: List[Any]

    def _remove(self) -> None:
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    def __exit__(self, *exc: Any) -> None:
        self._remove()


class Capture(_Hooked):
    """Capture the outputs of named submodules during a forward pass.

    Use as a context manager: ``__enter__`` registers a forward hook on every
    requested layer (names validated up front), ``__exit__`` removes them all,
    also when the block raises::

        model.eval()
        with Capture(model, ["layer3", "layer4"]) as cap:
            acts = cap(images)            # {"layer3": (B,256,14,14), "layer4": (B,512,7,7)}

    Calling the model yourself inside the block also fills ``cap.outputs``
    (any forward through ``model`` resets it first); that is how gradients at a
    layer are taken: ``Capture(..., detach=False)``, then ``model(x)`` under
    ``torch.enable_grad()`` and ``torch.autograd.grad(score, cap.raw_outputs[name])``.

    Args:
        model: any ``torch.nn.Module``; not modified.
        layers: a name or a sequence of distinct names from
            ``model.named_modules()``.
        adapter: an adapter (see :func:`to_bchw`) for all layers, or a dict
            ``{layer: adapter}`` (layers not in the dict use ``"auto"``).
        stop_early: in :meth:`__call__`, abort the forward as soon as every
            requested layer has produced its output, so that capturing early
            layers does not pay for the rest of the network.  The model's
            remaining modules do not run; its return value is not computed.
            Hooks of other libraries on later modules do not fire either.
        detach: store detached outputs (default).  ``False`` keeps them attached
            to the autograd graph (for gradients, when you run the forward
            yourself with grad enabled) and keeps the raw module outputs in
            :attr:`raw_outputs`.
        on_repeat: what to do when a layer's module runs more than once in one
            forward (a shared block): ``"error"`` (default, ValueError naming the
            layer), ``"first"`` (keep the first call's output) or ``"last"``
            (keep the last).  With ``stop_early=True`` the forward stops when
            every layer has fired once, so later calls never happen:
            ``"last"`` is refused there, and ``"error"`` cannot see them.
        clone: store a copy of each output (same device and dtype).  Needed
            when the model modifies the layer's output in place later in the
            forward (``nn.ReLU(inplace=True)`` after a captured convolution, as
            in VGG's ``features``; ``out += identity`` after a captured
            ``bn2`` in ResNet blocks): without it the stored tensor, which
            shares memory with the output, shows the modified values.  Default
            True (correct first: a copy costs little next to the forward);
            pass False to skip the copy when nothing modifies the output.

    Attributes:
        outputs: ``{layer: (B, C, H, W) tensor}`` from the last forward, on the
            model's device and in its dtype (a copy unless ``clone=False``).
            Only forwards through ``model`` are recorded; a submodule called
            directly (outside a forward of ``model``) is ignored.
        raw_outputs: ``{layer: raw module output}`` when ``detach=False``, else
            empty.
    """

    def __init__(self, model: nn.Module, layers: Union[str, Sequence[str]], *,
                 adapter: Union[Adapter, Mapping[str, Adapter]] = "auto",
                 stop_early: bool = False, detach: bool = True, on_repeat: str = "error",
                 clone: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        names = _layer_list(layers)
        modules = [find_module(model, n) for n in names]
        if isinstance(adapter, Mapping):
            unknown = [k for k in adapter if k not in names]
            if unknown:
                raise ValueError(f"adapter dict names layers that are not captured: {unknown}; "
                                 f"captured layers: {names}")
            adapters = {n: adapter.get(n, "auto") for n in names}
        else:
            adapters = {n: adapter for n in names}
        for n, a in adapters.items():
            _check_adapter(a, f"adapter for layer {n!r}")
        for argname, val in (("stop_early", stop_early), ("detach", detach), ("clone", clone)):
            if not isinstance(val, bool):
                raise TypeError(f"{argname} must be a bool, got {type(val).__name__}")
        if not isinstance(on_repeat, str) or on_repeat not in _REPEAT_RULES:
            raise ValueError(f"on_repeat must be one of {list(_REPEAT_RULES)}, got {on_repeat!r}")
        if stop_early and on_repeat == "last":
            raise ValueError('on_repeat="last" cannot be combined with stop_early=True: the '
                             "forward stops after the first call of every layer")
        self.model = model
        self.layers: Tuple[str, ...] = tuple(names)
        self.modules: Dict[str, nn.Module] = dict(zip(names, modules))
        self.adapters: Dict[str, Adapter] = adapters
        self.stop_early = stop_early
        self.detach = detach
        self.on_repeat = on_repeat
        self.clone = clone
        self.outputs: Dict[str, torch.Tensor] = {}
        self.raw_outputs: Dict[str, Any] = {}
        self._handles: List[Any] = []
        self._in_call = False
        self._in_forward = False

    # -- hooks
    def _reset(self) -> None:
        self.outputs = {}
        self.raw_outputs = {}

    def _root_pre_hook(self, *_: Any) -> None:
        # every forward through the model starts with empty outputs
        self._in_forward = True
        self._reset()

    def _root_post_hook(self, *_: Any) -> None:
        self._in_forward = False

    def _make_hook(self, name: str) -> Callable[..., None]:
        adapter = self.adapters[name]

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._in_forward:  # the submodule was called directly, not by the model
                return
            if name in self.outputs:
                if self.on_repeat == "error":
                    raise ValueError(
                        f"layer {name!r} ({type(module).__name__}) ran more than once in one "
                        "forward pass of the model (a shared module?); pass on_repeat='first' or "
                        "on_repeat='last' to Capture to choose which output to keep")
                if self.on_repeat == "first":
                    return
            t = to_bchw(output, layer=name, adapter=adapter)
            if self.detach:
                t = t.detach()
            if self.clone:
                t = t.clone()
            if not self.detach:
                self.raw_outputs[name] = output
            self.outputs[name] = t
            if self.stop_early and self._in_call and len(self.outputs) == len(self.layers):
                raise _StopForward()

        return hook

    def __enter__(self) -> "Capture":
        if self._handles:
            raise RuntimeError("this Capture is already active (entered twice)")
        try:
            # outputs are reset at the start of every forward through the model and
            # recorded only during one
            self._in_forward = False
            self._handles.append(self.model.register_forward_pre_hook(self._root_pre_hook))
            try:
                self._handles.append(self.model.register_forward_hook(self._root_post_hook,
                                                                      always_call=True))
            except TypeError:  # torch < 2.1 has no always_call: the flag is never cleared,
                pass  # so direct calls of a submodule after a forward are recorded too
            for name in self.layers:
                self._handles.append(
                    self.modules[name].register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self


    @property
    def active(self) -> bool:
        """True inside the ``with`` block (hooks registered)."""
        return bool(self._handles)

    def __call__(self, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        """Run ``model(*args, **kwargs)`` under ``torch.inference_mode()`` and
        return ``{layer: (B, C, H, W) tensor}`` for every requested layer.

        Outside a ``with`` block the hooks are registered for this call only.

        Raises:
            RuntimeError: some layers did not fire (a module not used by the
                model's forward for these inputs); the message names them.
        """
        if not self._handles:
            with self:
                return self(*args, **kwargs)
        self._reset()
        self._in_call = True
        try:
            with torch.inference_mode():
                self.model(*args, **kwargs)
        except _StopForward:
            pass
        finally:
            self._in_call = False
            self._in_forward = False
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise RuntimeError(
                f"layers {missing} produced no output during the forward pass (modules not "
                "called by the model's forward for these inputs?)")
        return self.outputs

    def __repr__(self) -> str:
        return (f"Capture({type(self.model).__name__}, layers={list(self.layers)}, "
                f"stop_early={self.stop_early}, active={self.active})")


# ----------------------------------------------------------------------------- OutputHooks

class OutputHooks(_Hooked):
    """Forward hooks that see, and may replace, the outputs of named submodules.

    For methods that intervene in a forward pass (ablating or scaling channels)
    or need a layer's raw output in its own shape (not brought to
    ``(B, C, H, W)`` like :class:`Capture`'s)::

        def ablate(out):
            out = out.clone()
            out[:, 3] = 0
            return out                     # replaces the layer's output

        with OutputHooks(model, {"layer4": ablate}):
            logits = model(x)

    Args:
        model: any ``torch.nn.Module``; its parameters and buffers are never
            touched.
        hooks: ``{layer: fn}``, or a sequence of ``(layer, fn)`` pairs (a
            layer may repeat).  ``fn(output)`` is called with what the
            module's forward returned; returning None keeps the output,
            anything else replaces it for the rest of the forward (as a
            PyTorch forward hook's return value).  Hooks on one layer run in
            the order given, each seeing the output the previous one left.

    The hooks are registered on ``__enter__`` and all removed on
    ``__exit__``, also when the block raises.  Unlike :class:`Capture` they
    fire at every call of the module (also a call outside a forward of
    ``model``, and every call of a module that runs several times in one
    forward) and store nothing: the functions keep what they need.
    Reusable, not reentrant.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, a layer name is not a
            str, ``fn`` is not callable, ``hooks`` is not a mapping or a
            sequence of pairs.
        ValueError: a name that is no submodule (with close matches), no hook.
    """

    def __init__(self, model: nn.Module,
                 hooks: Union[Mapping[str, Callable[[Any], Any]], Sequence[Tuple[str, Callable[[Any], Any]]]]):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(hooks, Mapping):
            pairs = list(hooks.items())
        elif isinstance(hooks, (list, tuple)):
            pairs = list(hooks)
            for p in pairs:
                if not (isinstance(p, (tuple, list)) and len(p) == 2):
                    raise TypeError(f"hooks must be a dict {{layer: fn}} or a sequence of (layer, fn) pairs, "
                                    f"got an element {_describe(p)}")
        else:
            raise TypeError(f"hooks must be a dict {{layer: fn}} or a sequence of (layer, fn) pairs, "
                            f"got {type(hooks).__name__}")
        if not pairs:
            raise ValueError("hooks must name at least one layer, got none")
        self.model = model
        self.hooks: List[Tuple[str, nn.Module, Callable[[Any], Any]]] = []
        for name, fn in pairs:
            module = find_module(model, name)
            if not callable(fn):
                raise TypeError(f"the hook of layer {name!r} must be callable fn(output), got "
                                f"{type(fn).__name__}")
            self.hooks.append((name, module, fn))
        self._handles: List[Any] = []

    @property
    def active(self) -> bool:
        """True inside the ``with`` block (hooks registered)."""
        return bool(self._handles)

    def __enter__(self) -> "OutputHooks":
        if self._handles:
            raise RuntimeError("these OutputHooks are already active (entered twice)")
        try:
            for _, module, fn in self.hooks:
                self._handles.append(module.register_forward_hook(
                    lambda m, args, output, fn=fn: fn(output)))
        except BaseException:
            self._remove()
            raise
        return self


    def __repr__(self) -> str:
        return (f"OutputHooks({type(self.model).__name__}, layers={[n for n, _, _ in self.hooks]}, "
                f"active={self.active})")


def capture(model: nn.Module, layers: Union[str, Sequence[str]], **kw: Any) -> Capture:
    """Shorthand for :class:`Capture` ``(model, layers, **kw)``."""
    return Capture(model, layers, **kw)


# ----------------------------------------------------------------------------- iteration helpers

def model_device_dtype(model: nn.Module) -> Tuple[torch.device, Optional[torch.dtype]]:
    """The device of the model's first parameter or buffer (CPU if it has none) and the dtype of
    its first floating-point one (None if none): where and in what precision inputs should go."""
    device = None
    dtype = None
    for t in list(model.parameters()) + list(model.buffers()):
        if device is None:
            device = t.device
        if dtype is None and t.is_floating_point():
            dtype = t.dtype
        if device is not None and dtype is not None:
            break
    return (device if device is not None else torch.device("cpu")), dtype


def input_of(item: Any, where: str) -> torch.Tensor:
    """The model input inside ``item``: a tensor itself, element 0 of a
    tuple/list, or the ``"image"`` of a dict (a BrodenDataset item or batch).
    ``where`` names the item in error messages (e.g. ``"batch 3"``)."""
    if isinstance(item, torch.Tensor):
        x = item
    elif isinstance(item, (tuple, list)):
        if len(item) == 0:
            raise ValueError(f"{where} is an empty {type(item).__name__}")
        x = item[0]
    elif isinstance(item, Mapping):
        if "image" not in item:
            raise ValueError(f"{where} is a dict without an 'image' key (keys: {list(item.keys())})")
        x = item["image"]
    else:
        raise TypeError(f"{where} must be a tensor, a tuple/list whose element 0 is the input or a dict "
                        f"with an 'image' key; got {type(item).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: the model input must be a torch.Tensor, got {type(x).__name__}")
    return x


def iter_activations(model: nn.Module, layers: Union[str, Sequence[str]], batches: Iterable[Any],
                     *, device: Union[str, torch.device, None] = None,
                     dtype: Optional[torch.dtype] = None,
                     adapter: Union[Adapter, Mapping[str, Adapter]] = "auto",
                     stop_early: bool = True, on_repeat: str = "error", clone: bool = True,
                     ) -> Iterator[Tuple[Any, Dict[str, torch.Tensor]]]:
    """Yield ``(batch, {layer: (B, C, H, W) activations})`` for each batch.

    Args:
        model: any ``torch.nn.Module`` (call ``model.eval()`` first if you
            want inference behaviour; the model is not modified).
        layers: names as in ``model.named_modules()``.
        batches: an iterable of tensors, of tuples/lists whose element 0 is the
            model input (``(images, labels)`` as a DataLoader gives), or of
            dicts whose ``"image"`` key is the input.
        device: where inputs go; default the device of the model's parameters
            (CPU for a model without any).
        dtype: the dtype floating-point inputs are cast to; default the dtype of
            the model's first floating parameter (so a bfloat16 model takes
            float32 images).  Integer inputs are not cast.
        adapter, stop_early, on_repeat, clone: as in :class:`Capture`
            (``stop_early`` defaults to True here).

    Yields:
        The batch as it came from ``batches`` (labels at hand) and a new dict of
        activations, on the model's device and dtype.  Hooks are registered
        while the generator runs and removed when it is exhausted, closed or
        garbage-collected; arguments are validated when this function is called.
    """
    cap = Capture(model, layers, adapter=adapter, stop_early=stop_early, on_repeat=on_repeat,
                  clone=clone)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    mdev, mdtype = model_device_dtype(model)
    dev = check_device(device) if device is not None else mdev
    cast = dtype if dtype is not None else mdtype

    def gen() -> Iterator[Tuple[Any, Dict[str, torch.Tensor]]]:
        with cap:
            for i, batch in enumerate(batches):
                x = input_of(batch, f"batch {i}")
                if x.is_floating_point() and cast is not None:
                    x = x.to(device=dev, dtype=cast)
                else:
                    x = x.to(device=dev)
                yield batch, dict(cap(x))

    return gen()


def pooled_activations(model: nn.Module, layers: Union[str, Sequence[str]],
                       batches: Iterable[Any], *, pooling: str = "mean",
                       device: Union[str, torch.device, None] = None,
                       dtype: Optional[torch.dtype] = None,
                       adapter: Union[Adapter, Mapping[str, Adapter]] = "auto",
                       clone: bool = True,
                       ) -> Dict[str, torch.Tensor]:
    """Spatially pooled activations of every image, per layer.

    Args:
        model, layers, batches, device, dtype, adapter, clone: as in
            :func:`iter_activations` (pass ``clone=True`` when a layer's output
            is modified in place later in the forward).
        pooling: ``"mean"`` (average over H, W) or ``"max"`` (maximum over
            H, W); computed in float32 on the model's device.

    Returns:
        ``{layer: (N, C) float32 CPU tensor}``, rows in the order of the
        batches, N = total number of images.

    Raises:
        ValueError: unknown ``pooling``, or ``batches`` yielded nothing.
    """
    if pooling not in ("mean", "max"):
        raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
    names = _layer_list(layers)
    parts: Dict[str, List[torch.Tensor]] = {n: [] for n in names}
    it = iter_activations(model, names, batches, device=device, dtype=dtype, adapter=adapter,
                          clone=clone)
    try:
        for _, acts in it:
            for n in names:
                a = acts[n].float()
                p = a.mean(dim=(2, 3)) if pooling == "mean" else a.amax(dim=(2, 3))
                parts[n].append(p.cpu())
    finally:
        it.close()
    if not parts[names[0]]:
        raise ValueError("batches yielded no batch")
    return {n: torch.cat(parts[n], 0) for n in names}
