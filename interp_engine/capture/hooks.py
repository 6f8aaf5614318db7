"""The hooks: :class:`Capture` records the outputs of named submodules during a
forward pass, :class:`OutputHooks` sees and may replace them; both register
on ``__enter__`` and always remove their hooks on exit."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

from .._loader import require_torch

torch = require_torch("interp_engine.capture")
from torch import nn  # noqa: E402

from .adapters import Adapter, _check_adapter, _describe, find_module, to_bchw

_REPEAT_RULES = ("error", "first", "last")


class _StopForward(BaseException):
    """Raised from a hook to abort the rest of a forward pass (``stop_early``).

    A BaseException, so that a model's own ``except Exception`` cannot swallow
    it; it never leaves :meth:`Capture.__call__`.
    """


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
