"""Concept data: the Broden-format reader (:mod:`interp_engine.data.broden`).

Needs torch (``pip install interp_engine[torch]``): the reader is a
``torch.utils.data.Dataset``.
"""
from .broden import (IMAGENET_MEAN, IMAGENET_STD, NETDISSECT_MEAN_RGB, NETDISSECT_SCALE, BrodenDataset,
                     broden_loader, decode_label_png)

__all__ = [
    "BrodenDataset",
    "broden_loader",
    "decode_label_png",
    "NETDISSECT_MEAN_RGB",
    "NETDISSECT_SCALE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
