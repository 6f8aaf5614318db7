"""ConceptCNN: the small CNN the project trains on its concept dataset.

Layers (names for capture / dissection; each is ``Sequential(Conv2d 3x3,
BatchNorm2d, ReLU)``, and a hook on the block gives its post-ReLU output):

=========  ===========  ========  ==================================
name       channels     size      (for 64x64 input)
=========  ===========  ========  ==================================
conv1      16           64 x 64
conv2      32           32 x 32   after 2x2 max pooling
conv3      64           16 x 16   after 2x2 max pooling
conv4      128          8 x 8     after 2x2 max pooling (recommended for dissection)
head       27 outputs             Linear on [spatial mean, spatial max] of conv4
dense      19 outputs   8 x 8     1x1 conv on conv4, used only in training (below)
=========  ===========  ========  ==================================

Input: float (N, 3, H, W) RGB in [0, 1] (:meth:`ConceptCNN.preprocess` turns
uint8 (N, H, W, 3) images into it); the model normalizes internally.  Output:
(N, 27) logits; :data:`OUTPUTS` names the slices: ``shape`` (6, multi-label:
which shapes are visible), ``color`` (11, multi-label: which colours cover
>= 2% of the image), ``texture`` (6 classes), ``scene`` (4 classes), in the
label order of :mod:`interp_engine.data.concepts`.

Training (``scripts/train_concept_cnn.py`` of the source checkout) adds deep supervision: the
``dense`` head predicts, at every conv4 position, the shape and the object
colour found at the centre of that cell in the label maps.  It makes conv4
spatially selective for the concepts, so that the demo dissection has real
detectors to find; ``forward`` does not use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.concepts import COLOR_NAMES, SCENE_NAMES, SHAPE_NAMES, TEXTURE_NAMES

OUTPUTS: Dict[str, slice] = {}
_o = 0
for _name, _names in (("shape", SHAPE_NAMES), ("color", COLOR_NAMES), ("texture", TEXTURE_NAMES),
                      ("scene", SCENE_NAMES)):
    OUTPUTS[_name] = slice(_o, _o + len(_names))
    _o += len(_names)
NUM_OUTPUTS = _o
DENSE_OUTPUTS = 1 + len(SHAPE_NAMES) + 1 + len(COLOR_NAMES)
del _o, _name, _names

#: the layer recommended for Network Dissection
DEFAULT_LAYER = "conv4"
#: the BrodenDataset transform that gives this model its input (RGB in [0, 1])
DEFAULT_TRANSFORM = "unit"
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4")
WEIGHTS_PATH = Path(__file__).with_name("concept_cnn.pt")


class ConceptCNN(nn.Module):
    """Four conv blocks (conv1..conv4) and a linear head; see the module doc."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive ints; got {widths}")
        self.widths = widths
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25), persistent=False)
        c_in = 3
        for i, w in enumerate(widths):
            setattr(self, f"conv{i + 1}", nn.Sequential(
                nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()))
            c_in = w
        self.head = nn.Linear(2 * widths[-1], NUM_OUTPUTS)
        # training-only auxiliary head: per conv4 position, the shape (7 classes, 0 = none) and the
        # colour (12 classes, 0 = none) of the label map there (deep supervision; not in forward)
        self.dense = nn.Conv2d(widths[-1], DENSE_OUTPUTS, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (N, 3, H, W) in [0, 1] -> conv4 output (N, widths[3], H/8, W/8)."""
        x = (x - self.mean) / self.std
        x = self.conv1(x)
        x = self.conv2(F.max_pool2d(x, 2))
        x = self.conv3(F.max_pool2d(x, 2))
        return self.conv4(F.max_pool2d(x, 2))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """conv4 features (N, C, h, w) -> (N, 27) logits (spatial mean and max, linear)."""
        return self.head(torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (N, 3, H, W) in [0, 1], H and W divisible by 8 -> (N, 27) logits."""
        return self.classify(self.features(x))

    @staticmethod
    def preprocess(images: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """uint8 images (N, H, W, 3) (numpy or torch) -> float32 (N, 3, H, W) in [0, 1]."""
        t = torch.as_tensor(images)
        if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
            raise ValueError(f"images must be uint8 of shape (N, H, W, 3); got {t.dtype} {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2).float().div_(255.0)


class OutputGroup(nn.Module):
    """One output group of a :class:`ConceptCNN` as a classifier of its own
    (``"scene"``: 4 classes and ``"texture"``: 6 are single-label tasks):
    ``forward(x)`` gives the group's logits, :meth:`head` maps ``conv4``
    features (layer name ``"model.conv4"``) to them (spatial mean and max,
    linear: piecewise linear), for methods that split a model at a layer
    (representative interpretations)."""

    def __init__(self, model: ConceptCNN, group: str = "scene") -> None:
        super().__init__()
        if not isinstance(model, ConceptCNN):
            raise TypeError(f"model must be a ConceptCNN; got {type(model).__name__}")
        if group not in OUTPUTS:
            raise ValueError(f"group must be one of {list(OUTPUTS)}; got {group!r}")
        self.model, self.group, self.slice = model, group, OUTPUTS[group]
        self.class_names = {"shape": SHAPE_NAMES, "color": COLOR_NAMES, "texture": TEXTURE_NAMES,
                            "scene": SCENE_NAMES}[group]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.slice]

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """conv4 features (N, C, h, w) -> the group's logits."""
        return self.model.classify(features)[:, self.slice]


def save_weights(model: ConceptCNN, path: Union[str, Path], *, half: bool = True,
                 extra: Optional[Dict[str, Any]] = None) -> None:
    """Save ``model``'s state_dict (float tensors as float16 when ``half``)
    with its widths, in a file :func:`load_model` reads."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).clone()
          for k, v in model.state_dict().items()}
    torch.save({"format": "interp_engine.ConceptCNN", "version": 1, "widths": list(model.widths),
                "state_dict": sd, "extra": dict(extra or {})}, str(path))


def load_model(path: Union[str, Path]) -> ConceptCNN:
    """Load a ConceptCNN saved by :func:`save_weights`, in eval mode, float32."""
    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != "interp_engine.ConceptCNN":
        raise ValueError(f"{path} is not a ConceptCNN weights file")
    model = ConceptCNN(blob["widths"])
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    model.load_state_dict(sd)
    return model.eval()


def load_default_model() -> ConceptCNN:
    """The shipped ConceptCNN (trained by ``scripts/train_concept_cnn.py``
    on ``concept_dataset()``'s train split), in eval mode."""
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(f"the shipped weights {WEIGHTS_PATH} are missing; reinstall the package "
                                f"or train them from a source checkout with "
                                f"`python scripts/train_concept_cnn.py --out {WEIGHTS_PATH}`")
    return load_model(WEIGHTS_PATH)


def output_names() -> Tuple[str, ...]:
    """The 27 output names, ``"<head>:<label>"``, in output order."""
    names = []
    for head, labels in (("shape", SHAPE_NAMES), ("color", COLOR_NAMES), ("texture", TEXTURE_NAMES),
                         ("scene", SCENE_NAMES)):
        names.extend(f"{head}:{n}" for n in labels)
    return tuple(names)
