"""Iteration helpers: activations of every batch (:func:`iter_activations`),
spatially pooled (:func:`pooled_activations`), and where a model's inputs go
(:func:`model_device_dtype`, :func:`input_of`)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .._loader import require_torch

torch = require_torch("interp_engine.capture")
from torch import nn  # noqa: E402

from ..engine.checks import check_device
from .adapters import Adapter
from .hooks import Capture, _layer_list


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
