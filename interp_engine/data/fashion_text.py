"""Written descriptions of the Fashion-MNIST classes and per-image attribute words.

The inputs of topic supervision (Dong et al., 2017; docs/topics.md) on
Fashion-MNIST, which has no captions: each image's *document* is the short
description of its class (:data:`FASHION_MNIST_DESCRIPTIONS`, written for this
project) followed by attribute words measured on the image itself
(:func:`image_attributes`, :func:`attribute_words`), so that images of one
class get different documents when they differ in ink coverage, tone,
left-right symmetry or shape.  numpy only.

Attributes of a uint8 (28, 28) image ``x``, with ``ink = x > 25`` (pixels
above 10 % intensity):

==========  ==================================================  =============================
attribute   measure                                             words (thresholds)
==========  ==================================================  =============================
coverage    fraction of ink pixels                              ``ink_sparse`` (< 0.36),
                                                                ``ink_medium``, ``ink_dense``
                                                                (> 0.54)
tone        mean intensity of the ink pixels (/ 255)            ``tone_dark`` (< 0.56),
                                                                ``tone_mid``, ``tone_bright``
                                                                (> 0.72)
symmetry    sum |x - x mirrored left-right| / sum x             ``mirror_symmetric`` (< 0.4),
                                                                ``mirror_asymmetric``
shape       height / width of the ink's bounding box            ``shape_wide`` (< 0.9),
                                                                ``shape_squarish``,
                                                                ``shape_tall`` (> 1.5)
==========  ==================================================  =============================

The thresholds are near the terciles (coverage, tone) and the median
(symmetry) of the train split, rounded; they are fixed constants, not fitted.
An image without ink is ``ink_sparse tone_dark mirror_symmetric shape_squarish``.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

__all__ = ["FASHION_MNIST_DESCRIPTIONS", "ATTRIBUTE_WORDS", "image_attributes", "attribute_words",
           "fashion_documents"]

#: one short description per class, in label order (FASHION_MNIST_CLASSES)
FASHION_MNIST_DESCRIPTIONS = (
    # 0 T-shirt/top
    "A T-shirt or top is a light upper body garment made of soft cotton knit. It has short sleeves, "
    "a round neck and no buttons or collar. The torso is wide and straight and the shirt is pulled "
    "over the head.",
    # 1 Trouser
    "Trousers are a lower body garment with two long legs that cover the legs from the waist to the "
    "ankles. They are tall and narrow, with a waistband at the top and a gap between the legs. Jeans "
    "and slacks are trousers.",
    # 2 Pullover
    "A pullover is a warm knitted sweater for the upper body with long sleeves. It has no buttons or "
    "zipper and is pulled over the head. Wool or knit fabric covers the torso and arms.",
    # 3 Dress
    "A dress is a one piece garment for women that covers the torso and hangs down over the legs as a "
    "skirt. It is long and narrow at the waist, often without sleeves or with short sleeves, and "
    "flares toward the hem.",
    # 4 Coat
    "A coat is a heavy outer garment for the upper body with long sleeves, worn over other clothes in "
    "cold weather. It opens at the front with buttons or a zipper, has a collar and often pockets, and "
    "its thick fabric is warm.",
    # 5 Sandal
    "A sandal is open footwear made of straps on a thin flat sole. The toes and heel show through the "
    "gaps between the straps. Sandals are light shoes for summer, low and wide, with a strap around "
    "the ankle.",
    # 6 Shirt
    "A shirt is an upper body garment with a collar, buttons down the front and long or short "
    "sleeves. It is made of woven cotton fabric, often with a pocket or a pattern, and is worn "
    "tucked into trousers.",
    # 7 Sneaker
    "A sneaker is a low sport shoe with a rubber sole and laces over the toes. This footwear is "
    "closed, wide and flat, made for running and walking, with a padded heel and a canvas or leather "
    "upper.",
    # 8 Bag
    "A bag is a container for carrying things, made of leather or fabric, with a handle or a strap "
    "over the shoulder. It is a box shape or a pouch, with a zipper or clasp closing its top, and "
    "holds no part of the body.",
    # 9 Ankle boot
    "An ankle boot is closed footwear that covers the foot and rises above the ankle. It has a thick "
    "sole, often a raised heel, and a zipper or laces on the side. Boots are heavy leather shoes for "
    "cold weather.",
)

#: attribute -> its words, in threshold order
ATTRIBUTE_WORDS: Dict[str, tuple] = {
    "coverage": ("ink_sparse", "ink_medium", "ink_dense"),
    "tone": ("tone_dark", "tone_mid", "tone_bright"),
    "symmetry": ("mirror_symmetric", "mirror_asymmetric"),
    "shape": ("shape_wide", "shape_squarish", "shape_tall"),
}
_THRESHOLDS = {"coverage": (0.36, 0.54), "tone": (0.56, 0.72), "symmetry": (0.4,), "shape": (0.9, 1.5)}
_INK = 25


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W) or (H, W); got {arr.dtype} array of shape {arr.shape}")
    return arr


def _extent(mask: np.ndarray) -> np.ndarray:
    """Per row of (N, L) bool: last - first True index + 1 (0 when none)."""
    any_ = mask.any(1)
    first = np.argmax(mask, 1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], 1)
    return np.where(any_, last - first + 1, 0)


def image_attributes(images: np.ndarray) -> Dict[str, np.ndarray]:
    """The four measures of the module doc for uint8 images (N, H, W) (or one
    (H, W) image): a dict of float64 (N,) arrays ``coverage``, ``tone``,
    ``symmetry``, ``shape``.  ValueError for another dtype or shape."""
    arr = _check_images(images)
    x = arr.astype(np.float64) / 255.0
    ink = arr > _INK
    n_ink = ink.sum((1, 2))
    coverage = n_ink / float(arr.shape[1] * arr.shape[2])
    tone = np.where(n_ink > 0, (x * ink).sum((1, 2)) / np.maximum(n_ink, 1), 0.0)
    total = x.sum((1, 2))
    symmetry = np.where(total > 0, np.abs(x - x[:, :, ::-1]).sum((1, 2)) / np.maximum(total, 1e-12), 0.0)
    h = _extent(ink.any(2))
    w = _extent(ink.any(1))
    shape = np.where(w > 0, h / np.maximum(w, 1), 1.0)
    return {"coverage": coverage, "tone": tone, "symmetry": symmetry, "shape": shape}


def attribute_words(images: np.ndarray, repeat: int = 3) -> List[str]:
    """One string per image: its four attribute words (module doc), each
    repeated ``repeat`` times (so that they weigh like a few sentences of the
    class description in a bag of words), separated by spaces."""
    if int(repeat) != repeat or repeat < 1:
        raise ValueError(f"repeat must be a positive int; got {repeat!r}")
    attrs = image_attributes(images)
    cols = []
    for name, words in ATTRIBUTE_WORDS.items():
        bins = np.searchsorted(np.asarray(_THRESHOLDS[name]), attrs[name], side="right")
        cols.append([words[b] for b in bins])
    return [" ".join(w for w in ws for _ in range(int(repeat))) for ws in zip(*cols)]


def fashion_documents(images: np.ndarray, labels: Sequence[int], repeat: int = 3) -> List[str]:
    """The document of every image: the description of its class followed by
    its attribute words (:func:`attribute_words`).  ``labels``: ints in 0..9,
    one per image."""
    lab = np.asarray(labels)
    arr = _check_images(images)
    if lab.shape != (len(arr),) or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be ints (N,) with N = {len(arr)}; got {lab.dtype} array of shape {lab.shape}")
    if len(lab) and (lab.min() < 0 or lab.max() >= len(FASHION_MNIST_DESCRIPTIONS)):
        raise ValueError(f"labels must be in 0..{len(FASHION_MNIST_DESCRIPTIONS) - 1}; got values "
                         f"{int(lab.min())}..{int(lab.max())}")
    return [f"{FASHION_MNIST_DESCRIPTIONS[int(k)]} {w}" for k, w in zip(lab, attribute_words(arr, repeat))]
