"""Class activation maps and their faithfulness metrics: the baseline and the
evaluation of representative interpretations (Lam et al., ICCV 2021).

:func:`grad_cam` (Selvaraju et al., ICCV 2017), exactly::

    g = d logit_t / d A            A = the layer's output (B, C, h, w), t = the class
    alpha[k] = mean_{i,j} g[k, i, j]
    M = ReLU(sum_k alpha[k] A[k])                       (h, w)
    M = M / max M                  (an all-zero map stays zero)
    upsampled bilinearly (align_corners=False) to the image size (H, W)

(the same order as :meth:`~interp_engine.methods.representative.Region.heatmap`:
normalize at the layer's resolution, then upsample; bilinear interpolation
of a map in [0, 1] stays in [0, 1]).

:func:`average_drop_increase` (Chattopadhyay et al., WACV 2018, "Grad-CAM++",
with top-pixel masking as in Lam et al.): for image ``i`` and class ``t_i``,
``Y_i`` = softmax score of ``t_i`` on the full image, ``O_i`` = the same on the
image where only the top ``keep`` fraction of pixels of the map are kept:

* kept pixels: the ``k = max(1, round(keep * H * W))`` largest map values
  (ties: lower row-major position first), all channels;
* the other pixels are set to ``fill`` (default 0 in the model's input space;
  pass the dataset mean, a float or per-channel ``(C,)`` values, to fill
  with it instead).  We do *not* multiply the image by the map (the Grad-CAM++
  paper's variant), so that every method is judged on the same number of
  pixels; both methods of a comparison go through this same function.

Average Drop = ``100 * mean_i max(0, Y_i - O_i) / Y_i`` (lower is better);
Average Increase = ``100 * mean_i [O_i > Y_i]`` (higher is better).

These stay functions, not method classes (docs/coclustering.md): evaluation
utilities with nothing to fit and no result beyond their arrays.  The layer's
output is read through :class:`interp_engine.capture.Capture` (the package's
one way to hook a model); :func:`average_drop_increase` needs no hook.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import numpy as np

from ..engine.checks import check_dense_tensor, check_positive_int, describe

__all__ = ["grad_cam", "average_drop_increase", "DropIncrease"]


class DropIncrease(NamedTuple):
    """Result of :func:`average_drop_increase`.

    average_drop:     percent, ``100 * mean max(0, Y - O) / Y``.
    average_increase: percent of images with ``O > Y``.
    full_scores:      float64 ``(N,)`` ``Y``: class softmax scores on the full images.
    masked_scores:    float64 ``(N,)`` ``O``: on the masked images.
    """

    average_drop: float
    average_increase: float
    full_scores: np.ndarray
    masked_scores: np.ndarray


def _images(images: Any, name: str) -> Any:
    import torch

    if isinstance(images, torch.Tensor):
        check_dense_tensor(images, name)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0 \
            or not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (N, C, H, W) with N >= 1, got "
                         f"{describe(images)}")
    return images


def _classes(classes: Any, n: int, num_classes: Optional[int], name: str) -> Optional[np.ndarray]:
    """int64 (n,) or None (predicted); ints are broadcast."""
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        arr = np.full(n, int(classes), dtype=np.int64)
    else:
        if hasattr(classes, "detach"):
            classes = classes.detach().cpu().numpy()
        arr = np.asarray(classes)
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise ValueError(f"{name} must be an int or an integer array of shape ({n},) (one class per "
                             f"image), got {describe(classes)}" +
                             (f" of dtype {arr.dtype}" if hasattr(arr, "dtype") else ""))
        arr = arr.astype(np.int64)
    if num_classes is not None and arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must be in [0, {num_classes}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def _logits(out: Any) -> Any:
    import torch

    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"model output must be logits (B, num_classes), got {describe(out)}")
    return out


def grad_cam(model: Any, layer: str, images: Any, class_idx: Any = None, *,
             batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps (see the module doc for the exact definition).

    Args:
        model: a ``torch.nn.Module`` returning logits ``(B, K)`` (eval mode).
        layer: name of a submodule whose output is ``(B, C, h, w)``.
        images: float tensor ``(N, C_in, H, W)``.
        class_idx: the class explained: an int for all images, an integer
            array ``(N,)``, or None for each image's predicted class.
        batch_size: images per forward/backward.

    Returns:
        float64 numpy ``(N, H, W)`` in ``[0, 1]``.
    """
    import torch
    import torch.nn.functional as F

    from ..capture import Capture, model_device_dtype

    images = _images(images, "images")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = images.shape[0]
    cls = _classes(class_idx, n, None, "class_idx")
    dev, dt = model_device_dtype(model)
    out = []
    with Capture(model, layer, detach=False, clone=False) as cap:
        for s in range(0, n, batch_size):
            x = images[s:s + batch_size].to(device=dev, dtype=dt or images.dtype)
            with torch.enable_grad():
                logits = _logits(model(x))
                if cls is None:
                    t = logits.detach().argmax(dim=1)
                else:
                    if cls.max() >= logits.shape[1]:
                        raise ValueError(f"class_idx must be in [0, {logits.shape[1]}), got values up "
                                         f"to {cls.max()}")
                    t = torch.from_numpy(cls[s:s + batch_size]).to(logits.device)
                A = cap.raw_outputs[layer]
                if not isinstance(A, torch.Tensor) or A.dim() != 4:
                    raise ValueError(f"grad_cam needs layer {layer!r} to output (B, C, h, w) feature "
                                     f"maps, got {describe(A)}")
                (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), A)
            A = A.detach().double()
            alpha = g.double().mean(dim=(2, 3))
            cam = torch.relu((alpha[:, :, None, None] * A).sum(dim=1, keepdim=True))
            mx = cam.amax(dim=(2, 3), keepdim=True)
            cam = torch.where(mx > 0, cam / torch.where(mx > 0, mx, torch.ones_like(mx)),
                              torch.zeros_like(cam))
            cam = F.interpolate(cam, size=tuple(images.shape[-2:]), mode="bilinear",
                                align_corners=False)
            out.append(cam[:, 0].cpu().numpy())
    return np.concatenate(out)


def keep_top_mask(maps: Any, keep: float) -> np.ndarray:
    """bool ``(N, H, W)``: the ``max(1, round(keep * H * W))`` largest values of
    each map (ties: lower row-major position first)."""
    m = np.asarray(maps, dtype=np.float64)
    n, h, w = m.shape
    k = max(1, int(round(keep * h * w)))
    flat = m.reshape(n, h * w)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(n, h, w)


def average_drop_increase(model: Any, images: Any, maps: Any, classes: Any, *, keep: float = 0.2,
                          fill: Union[float, Any] = 0.0, batch_size: int = 64) -> DropIncrease:
    """Average Drop and Average Increase of explanation maps (module doc).

    Args:
        model: a ``torch.nn.Module`` returning logits ``(B, K)`` (eval mode).
        images: float tensor ``(N, C, H, W)``, images not used to build the maps'
            explanation (for a fair evaluation).
        maps: ``(N, H, W)`` explanation maps (numpy or tensor), any scale.
        classes: the explained class: an int for all images or an integer
            array ``(N,)``.
        keep: fraction of pixels kept, in ``(0, 1]`` (default 0.2).
        fill: value of the removed pixels in the model's input space: a float
            (default 0.0) or per-channel values ``(C,)`` (e.g. the dataset
            mean).
        batch_size: images per forward.

    Returns:
        :class:`DropIncrease`.
    """
    import torch

    from ..capture import model_device_dtype

    images = _images(images, "images")
    n, c, h, w = images.shape
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    m = np.asarray(maps)
    if m.shape != (n, h, w) or m.dtype.kind not in "iuf":
        raise ValueError(f"maps must be a real array of shape ({n}, {h}, {w}) (one map per image, at "
                         f"the image size), got {describe(maps)}")
    if np.isnan(m).any():
        raise ValueError("maps must not contain NaN")
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        fill_t = torch.full((1, c, 1, 1), float(fill))
    else:
        f = torch.as_tensor(np.asarray(fill.detach().cpu() if hasattr(fill, "detach") else fill,
                                       dtype=np.float64))
        if f.shape != (c,):
            raise ValueError(f"fill must be a float or per-channel values of shape ({c},), got "
                             f"{describe(fill)}")
        fill_t = f.reshape(1, c, 1, 1)
    dev, dt = model_device_dtype(model)
    dt = dt or images.dtype
    mask = torch.from_numpy(keep_top_mask(m, float(keep)))[:, None]   # (N, 1, H, W)
    full, masked = [], []
    cls_arr = None
    with torch.no_grad():
        for s in range(0, n, batch_size):
            x = images[s:s + batch_size]
            xm = torch.where(mask[s:s + batch_size], x, fill_t.to(x.dtype))
            p_full = torch.softmax(_logits(model(x.to(device=dev, dtype=dt))).double(), dim=1)
            p_mask = torch.softmax(_logits(model(xm.to(device=dev, dtype=dt))).double(), dim=1)
            if cls_arr is None:
                cls_arr = _classes(classes, n, p_full.shape[1], "classes")
                if cls_arr is None:
                    raise ValueError("classes must be an int or an integer array (N,), got None")
            t = torch.from_numpy(cls_arr[s:s + batch_size]).to(p_full.device)[:, None]
            full.append(p_full.gather(1, t)[:, 0].cpu().numpy())
            masked.append(p_mask.gather(1, t)[:, 0].cpu().numpy())
    Y = np.concatenate(full)
    O = np.concatenate(masked)
    drop = float(100.0 * np.mean(np.maximum(0.0, Y - O) / Y))
    inc = float(100.0 * np.mean(O > Y))
    return DropIncrease(drop, inc, Y, O)
