"""The data side of :class:`~interp_engine.methods.concept_vectors.ConceptVectors`:
the dataset and its rows, the pixel-level concepts, their masks, the batches
of layer activations and label maps (from the model, or from the activation
cache of a fit), and the transform a dataset's images were prepared by."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["resolve", "pixel_labels", "select", "concept_masks", "iter_batches", "in_eval_mode",
           "transform_key", "describe_transform"]


def resolve(dataset: Any, split: Optional[str], transform: Any) -> Tuple[Any, List[int]]:
    """(BrodenDataset-like, indices) for ``split`` (None: all rows); a
    directory is opened with ``transform``."""
    if isinstance(dataset, (str, os.PathLike)):
        from ...data.broden import BrodenDataset

        ds = BrodenDataset(dataset, split=split, transform=transform)
        idx = list(range(len(ds)))
    else:
        need = ("label_names", "label_category", "categories", "pixel_size", "__getitem__", "__len__")
        missing = [n for n in need if not hasattr(dataset, n)]
        if missing:
            raise TypeError(f"dataset must be a Broden directory path or a BrodenDataset-like object; "
                            f"got {type(dataset).__name__} without {missing}")
        ds = dataset
        if split is None:
            idx = list(range(len(ds)))
        else:
            splits = getattr(ds, "splits", None)
            if splits is None or all(s is None for s in splits):
                raise ValueError(f"split={split!r} needs a dataset with a split column; this one has none")
            idx = [i for i, s in enumerate(splits) if s == split]
    if not idx:
        raise ValueError(f"dataset has no images{'' if split is None else f' in split {split!r}'}")
    pix = list(getattr(ds, "pixel_categories", []))
    if not pix or int(getattr(ds, "num_pixel_maps", 0)) == 0:
        raise ValueError("dataset has no pixel-level labels (no pixel category / label maps); concept "
                         "vectors need segmentation masks")
    return ds, idx


def pixel_labels(ds: Any) -> Dict[str, Tuple[int, str]]:
    """``{name: (label number, category)}`` of the dataset's pixel-level labels."""
    cat_of = np.asarray(ds.label_category, dtype=np.int64)
    pix = set(ds.pixel_categories)
    out = {}
    for lab, name in enumerate(ds.label_names):
        c = int(cat_of[lab])
        if lab > 0 and 0 <= c < len(ds.categories) and ds.categories[c] in pix:
            out[str(name)] = (lab, ds.categories[c])
    return out


def select(ds: Any, concepts: Optional[Sequence[str]]) -> Tuple[List[str], List[int], List[str], bool]:
    """(names, label numbers, categories, named explicitly) of the concepts
    to fit: ``concepts`` (checked to be pixel-level labels, without repeats)
    or, for None, every pixel-level label."""
    avail = pixel_labels(ds)
    if concepts is None:
        names = list(avail)
        explicit = False
    else:
        if isinstance(concepts, str):
            concepts = [concepts]
        names = list(concepts)
        if not names:
            raise ValueError("concepts must be None (all pixel labels) or a non-empty list of names")
        unknown = [n for n in names if n not in avail]
        if unknown:
            raise ValueError(f"concepts {unknown} are not pixel-level labels of this dataset; "
                             f"available: {sorted(avail)}")
        if len(set(names)) != len(names):
            raise ValueError(f"concepts must not repeat a name; got {names}")
        explicit = True
    return names, [avail[n][0] for n in names], [avail[n][1] for n in names], explicit


def concept_masks(pl: Any, labels: Sequence[int]) -> Any:
    """bool (B, L, S, S): concept masks from int (B, P, S, S) label maps."""
    import torch

    lab = torch.as_tensor(labels, dtype=pl.dtype)
    return (pl[:, :, None] == lab[None, None, :, None, None]).any(dim=1)


def iter_batches(model: Any, layer: str, ds: Any, idx: Sequence[int], *, batch_size: int, cache: Any = None,
                 shuffle_seed: Optional[int] = None) -> Iterator[Tuple[Any, Any]]:
    """Yield (acts float32 cpu (B, K, h, w), pixel_labels int (B, P, S, S)) of
    the rows ``idx`` (in a seeded order with ``shuffle_seed``): from the
    model, or from ``cache`` (an ``_ActivationCache``) once a pass has filled
    it (the first pass in data order fills it)."""
    import torch

    from ...capture import iter_activations

    pos = np.arange(len(idx))
    if shuffle_seed is not None:
        pos = np.random.default_rng(shuffle_seed).permutation(len(idx))
    if cache is not None and cache.complete:
        for s in range(0, len(pos), batch_size):
            yield cache.read(pos[s:s + batch_size])
        return
    fill = cache is not None and shuffle_seed is None
    order = [idx[i] for i in pos]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, order), batch_size=batch_size,
                                         shuffle=False)
    offset = 0
    for batch, acts in iter_activations(model, layer, loader):
        a = acts[layer].detach().to("cpu", torch.float32)
        if a.ndim != 4:
            raise ValueError(f"layer {layer!r} gave activations of shape {tuple(a.shape)}; "
                             f"expected (B, K, h, w)")
        pl = batch["pixel_labels"]
        if pl.shape[0] != a.shape[0] or tuple(pl.shape[2:]) != tuple(int(s) for s in ds.pixel_size):
            raise ValueError(f"pixel_labels of shape {tuple(pl.shape)} do not match {a.shape[0]} images "
                             f"with label maps of size {tuple(ds.pixel_size)}")
        if fill:
            cache.write(offset, a, pl, len(idx))
        offset += a.shape[0]
        yield a, pl
    if fill:
        cache.complete = True


def in_eval_mode(model: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` with ``model`` in eval mode, restoring its training flags."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        return fn()
    finally:
        for m, f in flags.items():
            m.training = f


def transform_key(ds: Any) -> Optional[Dict[str, Any]]:
    """The dataset's transform fingerprint (``transform_key()``), None when it has none."""
    get = getattr(ds, "transform_key", None)
    return dict(get()) if callable(get) else None


def describe_transform(key: Mapping[str, Any]) -> str:
    probe = key.get("probe")
    return repr(key.get("name")) + ("" if probe is None else f" (output on a probe image: {str(probe)[:16]})")
