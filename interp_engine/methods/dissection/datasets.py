"""The data side of a dissection: what a dataset must provide, and its part
of the checkpoint key.

A dataset is a Broden directory (opened as
:class:`interp_engine.data.BrodenDataset`) or any object with the
BrodenDataset interface: ``label_names``, ``categories``, ``num_categories``,
``pixel_size``, ``label_category``, ``__len__`` and ``__getitem__`` giving
dicts with ``"image"``, ``"index"`` and the label fields (docs/data.md).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .result import _jsonable

__all__ = ["as_dataset", "dataset_fingerprint", "label_category"]

def as_dataset(dataset: Any, categories: Optional[Sequence[str]], transform: Any):
    if isinstance(dataset, (str, os.PathLike)):
        from ...data.broden import BrodenDataset

        return BrodenDataset(dataset, categories=categories, transform=transform)
    need = ("label_names", "categories", "num_categories", "pixel_size", "__getitem__", "__len__")
    missing = [n for n in need if not hasattr(dataset, n)]
    if missing:
        raise TypeError(f"dataset must be a Broden directory path or a BrodenDataset-like object; "
                        f"got {type(dataset).__name__} without {missing}")
    if categories is not None and list(categories) != list(dataset.categories):
        raise ValueError("categories can only be chosen when dataset is a path; build the BrodenDataset "
                         "with categories=... instead")
    return dataset


def dataset_fingerprint(ds) -> Dict[str, Any]:
    """The data part of the checkpoint key: ``ds.fingerprint()`` when the
    dataset has one (a BrodenDataset: its selected rows, labels, sizes and
    transform), else its class, size, label tables and a digest of three
    items (the first, the middle and the last: a deterministic sample, not
    every item)."""
    import torch

    from ..._fingerprint import Digest, callable_name

    fp = getattr(ds, "fingerprint", None)
    if callable(fp):
        out = fp()
        if not isinstance(out, Mapping):
            raise TypeError(f"dataset.fingerprint() must return a dict; got {type(out).__name__}")
        return dict(_jsonable(dict(out)))
    d = Digest()
    d.json([list(ds.label_names), list(ds.categories), list(ds.pixel_size)]).array(np.asarray(ds.label_category))
    n = len(ds)
    for i in sorted({0, n // 2, n - 1}):
        item = ds[i]
        for k in sorted(item):
            v = item[k]
            d.text(k)
            if isinstance(v, torch.Tensor):
                d.tensor(v)
            elif isinstance(v, np.ndarray):
                d.array(v)
            else:
                d.text(repr(v))
    return {"class": callable_name(ds), "num_images": n, "items": d.hexdigest(),
            "sampled": "items 0, n // 2 and n - 1"}


def label_category(ds) -> Tuple[np.ndarray, np.ndarray]:
    """(label_category with -1 for labels of no selected category, the same
    mapped into [0, C) for the tally)."""
    raw = np.asarray(ds.label_category, dtype=np.int64)
    if hasattr(ds, "label_category_for_tally"):
        tally = np.asarray(ds.label_category_for_tally(), dtype=np.int64)
    else:
        tally = np.where(raw < 0, 0, raw)
    return raw, tally

