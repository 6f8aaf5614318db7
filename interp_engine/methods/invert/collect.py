"""What INVERT reads from a model: one pooled activation per image and neuron of
a layer (through :func:`interp_engine.capture.pooled_activations`), and the
image-level concept labels of a Broden dataset ("label present in the image")."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...engine.checks import bool_array, describe

__all__ = ["collect", "broden_dataset", "present_labels"]


def broden_dataset(data: Any) -> Any:
    """The BrodenDataset behind ``data`` (itself or a DataLoader's dataset), else None."""
    try:
        from ...data.broden import BrodenDataset
    except ImportError:  # pragma: no cover - torch or Pillow missing
        return None
    if isinstance(data, BrodenDataset):
        return data
    ds = getattr(data, "dataset", None)
    return ds if isinstance(ds, BrodenDataset) else None


def present_labels(batch: Any, num_labels: int) -> np.ndarray:
    """(B, num_labels) bool: label present anywhere in the image (pixel maps or image-level)."""
    if not isinstance(batch, dict) or "pixel_labels" not in batch or "image_labels" not in batch:
        raise ValueError("a Broden batch must be a dict with 'pixel_labels' and 'image_labels'; got "
                         f"{describe(batch) if not isinstance(batch, dict) else list(batch)}")
    pix = np.asarray(batch["pixel_labels"]).reshape(len(batch["pixel_labels"]), -1)
    img = np.asarray(batch["image_labels"]).reshape(pix.shape[0], -1)
    b = pix.shape[0]
    out = np.zeros((b, num_labels), dtype=bool)
    for arr in (pix, img):
        if arr.size:
            rows = np.repeat(np.arange(b), arr.shape[1])
            out[rows, arr.reshape(-1).astype(np.int64)] = True
    out[:, 0] = False
    return out


def collect(model: Any, layer: str, data: Any, labels: Any, concept_names: Optional[Sequence[str]], *,
            pooling: str, batch_size: int, num_workers: int, device: Any,
            ) -> Tuple[np.ndarray, np.ndarray, Optional[List[str]]]:
    """``(activations (N, K) float32, labels (N, C) bool, concept names or None)``
    of ``layer`` on ``data``, one row per image in data order (settings validated by
    :class:`~interp_engine.methods.invert.Invert`; see :meth:`Invert.explain`)."""
    import torch

    from ...capture import pooled_activations

    broden = broden_dataset(data)
    if broden is not None and data is broden:
        from ...data import broden_loader

        batches: Any = broden_loader(broden, batch_size=batch_size, num_workers=num_workers)
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        batches = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    else:
        batches = data
    gather = labels is None
    if gather and broden is None:
        raise ValueError("labels is required unless data is a BrodenDataset (or a DataLoader over "
                         f"one); got data of type {type(data).__name__}")
    parts: List[np.ndarray] = []

    def recording(it: Iterable[Any]) -> Iterator[Any]:
        for batch in it:
            if gather:
                parts.append(present_labels(batch, broden.num_labels))
            yield batch

    feats = pooled_activations(model, [layer], recording(batches), pooling=pooling, device=device)
    acts = feats[layer].numpy()
    if gather:
        lab = np.concatenate(parts, 0)[:, 1:]
        names: Optional[List[str]] = [nm if nm else f"label{i}" for i, nm in enumerate(broden.label_names)][1:]
        if concept_names is not None:
            names = list(concept_names)
    else:
        lab = bool_array(labels, "labels", ndim=2, shape_hint="(N images, C concepts)")
        if lab.shape[0] != acts.shape[0]:
            raise ValueError(f"labels must have one row per image: the data gave {acts.shape[0]} "
                             f"images; labels has shape {tuple(lab.shape)}")
        names = list(concept_names) if concept_names is not None else None
    return acts, lab, names
