"""FashionCNN: a small CNN trained on Fashion-MNIST, for interpretability methods.

One flat ``nn.Sequential`` with named children, so that any child name is a
layer for capture / dissection and the model splits at it into a feature
extractor and a head (:meth:`FashionCNN.split`):

==========  =======================================  ===============
name        module                                   output (28x28)
==========  =======================================  ===============
conv1       Conv2d(1, 16, 3, padding=1)              16 x 28 x 28
relu1       ReLU
pool1       MaxPool2d(2)                             16 x 14 x 14
conv2       Conv2d(16, 32, 3, padding=1)             32 x 14 x 14
relu2       ReLU
pool2       MaxPool2d(2)                             32 x 7 x 7
conv3       Conv2d(32, 64, 3, padding=1)             64 x 7 x 7
relu3       ReLU                                     64 x 7 x 7   (DEFAULT_LAYER)
pool3       AdaptiveAvgPool2d(3)                     64 x 3 x 3   (head from here)
flatten     Flatten                                  576
fc1         Linear(576, 128)                         128
relu_fc     ReLU                                     128
fc2         Linear(128, 10)                          10 logits
==========  =======================================  ===============

``relu3`` (the last conv block's post-ReLU output, 64 units at 7x7) is the
layer the interpretability methods use.  The head after it contains only
average pooling, flatten, Linear and ReLU: as a function of the ``relu3``
features it is piecewise linear, and its linear regions are exactly the sets
of inputs with the same ``relu_fc`` activation pattern (the setting of Lam et
al.'s representative interpretations).  ``AdaptiveAvgPool2d(3)`` on 7x7 averages
the overlapping 3x3 windows starting at rows/columns 0, 2, 4.

Input: float32 (N, 1, 28, 28) normalized with the Fashion-MNIST constants
(:data:`MEAN`, :data:`STD`; :meth:`FashionCNN.preprocess` turns uint8
(N, 28, 28) images into it).  Output: (N, 10) logits in the class order of
:data:`CLASSES`.  No BatchNorm or dropout: train and eval modes compute the
same function.

The shipped weights (``fashion_cnn.pt``, float16) are trained by
``scripts/train_fashion_cnn.py`` of the source checkout (see that script and
``docs/models.md``).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist_tensor

__all__ = ["FashionCNN", "fashion_cnn", "save_weights", "load_model", "DEFAULT_LAYER", "LAYER_NAMES",
           "HEAD_MODULE_TYPES", "MEAN", "STD", "CLASSES", "WEIGHTS_PATH"]

#: the last conv block's output (post-ReLU), where the model is split for the methods
DEFAULT_LAYER = "relu3"
#: every named child, in forward order
LAYER_NAMES = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3",
               "flatten", "fc1", "relu_fc", "fc2")
#: module types allowed after DEFAULT_LAYER (each piecewise linear)
HEAD_MODULE_TYPES = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Linear, nn.ReLU)
#: input normalization: (x / 255 - MEAN) / STD
MEAN = FASHION_MNIST_MEAN
STD = FASHION_MNIST_STD
CLASSES = FASHION_MNIST_CLASSES
WEIGHTS_PATH = Path(__file__).with_name("fashion_cnn.pt")
_FORMAT = "interp_engine.FashionCNN"


class FashionCNN(nn.Sequential):
    """The architecture of the module doc, randomly initialized (PyTorch's
    default initialization, seeded by ``torch.manual_seed``).

    ``widths``: channels of conv1, conv2, conv3 (default 16, 32, 64);
    ``hidden``: width of fc1 (default 128)."""

    def __init__(self, widths: Tuple[int, int, int] = (16, 32, 64), hidden: int = 128,
                 num_classes: int = 10) -> None:
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be 3 positive ints; got {widths}")
        if int(hidden) < 1 or int(num_classes) < 1:
            raise ValueError(f"hidden and num_classes must be >= 1; got {hidden}, {num_classes}")
        c1, c2, c3 = widths
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, c1, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU()),
            ("pool3", nn.AdaptiveAvgPool2d(3)), ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(9 * c3, int(hidden))), ("relu_fc", nn.ReLU()),
            ("fc2", nn.Linear(int(hidden), int(num_classes))),
        ]))
        self.widths = widths
        self.hidden = int(hidden)
        self.num_classes = int(num_classes)

    def split(self, layer: str = DEFAULT_LAYER) -> Tuple[nn.Sequential, nn.Sequential]:
        """``(features, head)``: the children up to and including ``layer``,
        and those after it, as two ``nn.Sequential`` sharing this model's
        modules (so ``head(features(x)) == model(x)``, and training either
        trains the model).  For the default layer, features map (N, 1, 28, 28)
        to (N, 64, 7, 7) and the head maps those to (N, 10) logits."""
        names = list(self._modules)
        if layer not in names:
            raise ValueError(f"layer must be one of {names}; got {layer!r}")
        i = names.index(layer) + 1
        return (nn.Sequential(OrderedDict((n, self._modules[n]) for n in names[:i])),
                nn.Sequential(OrderedDict((n, self._modules[n]) for n in names[i:])))

    @staticmethod
    def preprocess(images: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28), ``(x / 255 - MEAN) / STD``."""
        return fashion_mnist_tensor(images)


def save_weights(model: FashionCNN, path: Union[str, Path], *, half: bool = True,
                 extra: Optional[Dict[str, Any]] = None) -> None:
    """Save ``model``'s state_dict (float tensors as float16 when ``half``)
    with its sizes, in a file :func:`load_model` reads; ``extra`` (plain
    Python values) is stored alongside (training config, accuracies)."""
    if not isinstance(model, FashionCNN):
        raise TypeError(f"model must be a FashionCNN; got {type(model).__name__}")
    sd = {k: (v.half() if half and v.is_floating_point() else v).clone()
          for k, v in model.state_dict().items()}
    torch.save({"format": _FORMAT, "version": 1, "widths": list(model.widths), "hidden": model.hidden,
                "num_classes": model.num_classes, "state_dict": sd, "extra": dict(extra or {})}, str(path))


def _read(path: Union[str, Path]) -> Dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"FashionCNN weights file {path} not found")
    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a FashionCNN weights file (format {_FORMAT!r})")
    return blob


def load_model(path: Union[str, Path]) -> FashionCNN:
    """Load a FashionCNN saved by :func:`save_weights` (strictly), in eval mode, float32."""
    blob = _read(path)
    model = FashionCNN(tuple(blob["widths"]), blob["hidden"], blob["num_classes"])
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def weights_info(path: Union[str, Path] = WEIGHTS_PATH) -> Dict[str, Any]:
    """The ``extra`` dict stored with the weights (for the shipped file: the
    training config, train/test accuracy of the saved float16 weights and the
    training time)."""
    return dict(_read(path).get("extra", {}))


def fashion_cnn(pretrained: bool = True) -> FashionCNN:
    """A FashionCNN in eval mode: with the shipped weights (trained by
    ``scripts/train_fashion_cnn.py`` on the Fashion-MNIST train
    split) when ``pretrained``, else randomly initialized."""
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool; got {type(pretrained).__name__}")
    if not pretrained:
        return FashionCNN().eval()
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(f"the shipped weights {WEIGHTS_PATH} are missing; reinstall the package or "
                                f"train them from a source checkout with "
                                f"`python scripts/train_fashion_cnn.py --out {WEIGHTS_PATH}`")
    return load_model(WEIGHTS_PATH)
