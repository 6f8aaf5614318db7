"""Network Dissection IoU tally (Bau et al., CVPR 2017): the streaming count
accumulator behind per-unit concept IoUs.

For every unit k and label c it accumulates, over all images seen,

* ``intersection[k, c]``: pixels of the unit's binarized upsampled map
  ``M_k = upsample(a_k) > T_k`` that carry label c (a pixel carrying c in
  several label maps counts once per map; an image-level label counts as a
  mask covering the whole image);
* ``label_pixels[c]``: pixels carrying label c (image-level labels:
  ``sh * sw`` per image and column);
* ``unit_pixels[k, cat]``: active pixels of unit k summed over the images
  where category ``cat`` is annotated (``unit_rule="annotated"``, the
  original NetDissect rule), or, with ``unit_rule="lite"``, over the images
  where some label of ``cat`` lies inside the unit's active region
  (NetDissect-Lite's rule; an image-level label lies inside whenever the
  region is non-empty);

and ``iou()[k, c] = I / (A[k, cat(c)] + L[c] - I)`` (0 where the denominator
is 0).  Label 0 means "no label" and is never tallied.

Upsampling and the tie rule: each (h, w) map is upsampled to ``output_size``
with bilinear interpolation, half-pixel centres and clamped edges, computed in
float64 from the exactly widened inputs with the arithmetic of PyTorch's
generic CPU kernel (``F.interpolate(x.double(), size, mode="bilinear",
align_corners=False)`` on an FMA-capable CPU, bit for bit, whenever
``sh + sw > 128``; for smaller outputs torch switches to another kernel whose
results can differ in the last bit), and compared ``> threshold`` in float64.
The upsampled maps are never materialized.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .._loader import core as _core
from ._arrays import (bool_array, check_choice, check_num_threads, check_positive_int, describe,
                      float_array, int_array, to_numpy)

__all__ = ["IoUTally", "UNIT_RULES"]

UNIT_RULES = ("annotated", "lite")
_STATE_FORMAT = "interp_engine.IoUTally"
_STATE_VERSION = 1


def _float64(arr: np.ndarray, kind: str) -> np.ndarray:
    """Exact widening of a validated float array (bf16 arrives as uint16 bits)."""
    if kind == "bf16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(arr, dtype=np.float64)


class IoUTally:
    """Streaming Network Dissection counts for ``num_units`` units and
    ``num_labels`` labels (label 0 = none).

    Args:
        num_units: K, the number of units (channels) of the layer.
        num_labels: number of label numbers, 0 .. num_labels-1 (0 = none).
        label_category: (num_labels,) integers: the category index of each
            label, in [0, num_categories) (the entry of label 0 is unused).
        num_categories: number of categories (object, part, color, ...).
        output_size: (sh, sw), the size of the label maps; activation maps
            are upsampled to it.
        unit_rule: ``"annotated"`` (default; original NetDissect: an image
            adds its active pixels to ``unit_pixels[k, cat]`` when ``cat`` is
            annotated in it) or ``"lite"`` (NetDissect-Lite: only when some
            label of ``cat`` lies inside the unit's active region).
        num_threads: threads of the core (None = all cores).

    The protocol of every accumulator: :meth:`update`, :meth:`merge`,
    :meth:`iou`, :meth:`state_dict` / :meth:`from_state_dict`, pickling.
    """

    def __init__(self, num_units: int, num_labels: int, label_category: Any, num_categories: int, *,
                 output_size: Tuple[int, int], unit_rule: str = "annotated",
                 num_threads: Optional[int] = None) -> None:
        num_units = check_positive_int(num_units, "num_units")
        num_labels = check_positive_int(num_labels, "num_labels")
        num_categories = check_positive_int(num_categories, "num_categories")
        if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, (bool, np.bool_)):
            output_size = (output_size, output_size)
        if isinstance(output_size, np.ndarray) and output_size.ndim == 1:
            output_size = tuple(output_size)
        if not isinstance(output_size, (tuple, list)):
            raise TypeError(f"output_size must be a pair (sh, sw) of positive integers; got {describe(output_size)}")
        if len(output_size) != 2:
            raise ValueError(f"output_size must be a pair (sh, sw) of positive integers; got {output_size!r}")
        sh = check_positive_int(output_size[0], "output_size[0]")
        sw = check_positive_int(output_size[1], "output_size[1]")
        check_choice(unit_rule, "unit_rule", UNIT_RULES)
        cat = int_array(label_category, "label_category", ndim=1, dtype=None, shape_hint="(num_labels,)", what="label numbers")
        if cat.shape[0] != num_labels:
            raise ValueError(f"label_category must have shape (num_labels,) = ({num_labels},); "
                             f"got shape {tuple(cat.shape)}")
        if cat.size and (int(cat.min()) < 0 or int(cat.max()) >= num_categories):
            bad = int(np.flatnonzero((cat < 0) | (cat >= num_categories))[0])
            raise ValueError(f"label_category values must lie in [0, num_categories) = [0, {num_categories}); "
                             f"got {int(cat[bad])} for label {bad}")
        self._num_threads = check_num_threads(num_threads)
        self._core = _core.IoUTallyCore(num_units, num_labels, np.ascontiguousarray(cat, dtype=np.int32),
                                        num_categories, sh, sw, unit_rule == "lite")
        self._unit_rule = unit_rule
        self._num_pixel_maps: Optional[int] = None
        self._num_image_labels: Optional[int] = None

    # ------------------------------------------------------------------ update
    def update(self, activations: Any, thresholds: Any, pixel_labels: Any = None,
               image_labels: Any = None, image_categories: Any = None) -> None:
        """Add a batch of B images.

        Args:
            activations: (B, K, h, w) float16, bfloat16, float32 or float64,
                numpy or torch (CPU; CUDA tensors are copied), any strides.
            thresholds: (K,) floats, no NaN; ``+inf`` means the unit never
                fires, ``-inf`` that every pixel with a value above -inf does.
            pixel_labels: (B, P, sh, sw) integer label maps (0 = none), or None.
            image_labels: (B, S) integer image-level labels (0 = none), or None.
            image_categories: (B, num_categories) bool: which categories are
                annotated in each image.  None: derived, a category is
                annotated in an image when any of its labels (non-zero)
                occurs there, pixel- or image-level.  Not used by the
                ``"lite"`` rule.
        """
        acts, kind = float_array(activations, "activations")
        if acts.ndim != 4:
            raise ValueError(f"activations must be 4-dimensional (B, K, h, w); got shape {tuple(acts.shape)}")
        B, K, h, w = (int(s) for s in acts.shape)
        if K != self.num_units:
            raise ValueError(f"activations must have num_units = {self.num_units} channels (dim 1); "
                             f"got shape {tuple(acts.shape)}")
        if h == 0 or w == 0:
            raise ValueError(f"activations must have non-empty maps (h, w >= 1); got shape {tuple(acts.shape)}")
        thr = self._thresholds(thresholds)
        # NaN in activations and label values are checked by the core, which reads
        # every value anyway, before any count changes
        sh, sw = self.output_size
        pl = None
        if pixel_labels is not None:
            pl = int_array(pixel_labels, "pixel_labels", ndim=4, dtype=None, shape_hint="(B, P, sh, sw)", what="label numbers")
            if pl.shape[0] != B:
                raise ValueError(f"pixel_labels must have the batch size of activations (B = {B}); "
                                 f"got shape {tuple(pl.shape)}")
            if tuple(pl.shape[2:]) != (sh, sw):
                raise ValueError(f"pixel_labels maps must have size output_size = {(sh, sw)}; "
                                 f"got shape {tuple(pl.shape)}")
            if self._num_pixel_maps is not None and pl.shape[1] != self._num_pixel_maps:
                raise ValueError(f"pixel_labels must have P = {self._num_pixel_maps} maps per image, as in "
                                 f"earlier batches; got shape {tuple(pl.shape)}")
            if pl.dtype.kind == "u" and pl.dtype.itemsize == 8 and pl.size and int(pl.max()) > 2**62:
                raise ValueError(f"pixel_labels must hold label numbers in [0, {self.num_labels}); "
                                 f"got {int(pl.max())}")
        il = None
        if image_labels is not None:
            il = int_array(image_labels, "image_labels", ndim=2, dtype=None, shape_hint="(B, S)", what="label numbers")
            if il.shape[0] != B:
                raise ValueError(f"image_labels must have the batch size of activations (B = {B}); "
                                 f"got shape {tuple(il.shape)}")
            if self._num_image_labels is not None and il.shape[1] != self._num_image_labels:
                raise ValueError(f"image_labels must have S = {self._num_image_labels} columns, as in "
                                 f"earlier batches; got shape {tuple(il.shape)}")
            if il.size:
                lo, hi = int(il.min()), int(il.max())
                if lo < 0 or hi >= self.num_labels:
                    bad = lo if lo < 0 else hi
                    raise ValueError(f"image_labels must hold label numbers in [0, num_labels) = "
                                     f"[0, {self.num_labels}); got {bad}")
            il = np.ascontiguousarray(il, dtype=np.int64)
        ic = None
        if image_categories is not None:
            ic = bool_array(image_categories, "image_categories", ndim=2,
                            shape_hint="(B, num_categories)")
            if ic.shape != (B, self.num_categories):
                raise ValueError(f"image_categories must have shape (B, num_categories) = "
                                 f"({B}, {self.num_categories}); got shape {tuple(ic.shape)}")
            ic = ic.view(np.uint8)
        self._core.update(acts, kind, thr, pl, il, ic, self._num_threads)
        if pl is not None:
            self._num_pixel_maps = int(pl.shape[1])
        if il is not None:
            self._num_image_labels = int(il.shape[1])

    def _thresholds(self, thresholds: Any) -> np.ndarray:
        arr, kind = to_numpy(thresholds, "thresholds")
        if kind == "bf16":
            thr = _float64(arr, "bf16")
        elif arr.dtype.kind in "iuf":
            thr = np.asarray(arr, dtype=np.float64)
        else:
            raise TypeError(f"thresholds must be a float array of shape (num_units,); got {describe(thresholds)}")
        if thr.shape != (self.num_units,):
            raise ValueError(f"thresholds must have shape (num_units,) = ({self.num_units},); "
                             f"got shape {tuple(thr.shape)}")
        if np.isnan(thr).any():
            raise ValueError(f"thresholds must not contain NaN (unit {int(np.flatnonzero(np.isnan(thr))[0])})")
        return np.ascontiguousarray(thr)

    # ------------------------------------------------------------------ query
    def iou(self) -> np.ndarray:
        """(K, num_labels) float64: ``I / (A[k, cat(c)] + L[c] - I)``, 0 where
        the denominator is 0 (column 0, label "none", is always 0)."""
        return self._core.iou()

    @property
    def intersection(self) -> np.ndarray:
        """(K, num_labels) int64 copy of I."""
        return self._core.intersection

    @property
    def label_pixels(self) -> np.ndarray:
        """(num_labels,) int64 copy of L."""
        return self._core.label_pixels

    @property
    def unit_pixels(self) -> np.ndarray:
        """(K, num_categories) int64 copy of A."""
        return self._core.unit_pixels

    @property
    def images(self) -> int:
        """Number of images added (merged tallies add up)."""
        return int(self._core.images)

    @property
    def num_units(self) -> int:
        return int(self._core.num_units)

    @property
    def num_labels(self) -> int:
        return int(self._core.num_labels)

    @property
    def num_categories(self) -> int:
        return int(self._core.num_categories)

    @property
    def label_category(self) -> np.ndarray:
        return self._core.label_category.astype(np.int64)

    @property
    def output_size(self) -> Tuple[int, int]:
        return int(self._core.out_h), int(self._core.out_w)

    @property
    def unit_rule(self) -> str:
        return self._unit_rule

    # ------------------------------------------------------------------ merge / state
    def merge(self, other: "IoUTally") -> "IoUTally":
        """Add the counts of ``other`` (same num_units, num_labels,
        label_category, num_categories, output_size and unit_rule).  Returns
        self."""
        if not isinstance(other, IoUTally):
            raise TypeError(f"other must be an IoUTally; got {type(other).__name__}")
        if not self._core.compatible(other._core):
            raise ValueError("other must have the same configuration (num_units, num_labels, label_category, "
                             f"num_categories, output_size, unit_rule); got {other!r} for {self!r}")
        for attr in ("_num_pixel_maps", "_num_image_labels"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a is not None and b is not None and a != b:
                name = "pixel label maps (P)" if attr == "_num_pixel_maps" else "image label columns (S)"
                raise ValueError(f"other was fed {b} {name}; this tally {a}")
        self._core.merge(other._core)
        if self._num_pixel_maps is None:
            self._num_pixel_maps = other._num_pixel_maps
        if self._num_image_labels is None:
            self._num_image_labels = other._num_image_labels
        return self

    def state_dict(self) -> Dict[str, Any]:
        """Plain dict of numpy arrays and Python scalars (for torch.save, np.savez, pickle)."""
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "num_units": self.num_units,
            "num_labels": self.num_labels,
            "label_category": self.label_category,
            "num_categories": self.num_categories,
            "output_size": self.output_size,
            "unit_rule": self.unit_rule,
            "num_pixel_maps": self._num_pixel_maps,
            "num_image_labels": self._num_image_labels,
            "intersection": self.intersection,
            "label_pixels": self.label_pixels,
            "unit_pixels": self.unit_pixels,
            "images": self.images,
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, Any], *, num_threads: Optional[int] = None) -> "IoUTally":
        """Rebuild a tally from :meth:`state_dict` (validated: keys, shapes,
        dtypes, non-negative counts)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from IoUTally.state_dict(); got {type(state).__name__}")
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state['format'] must be {_STATE_FORMAT!r}; got {state.get('format')!r}")
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"state['version'] must be {_STATE_VERSION}; got {state.get('version')!r}")
        keys = ("num_units", "num_labels", "label_category", "num_categories", "output_size", "unit_rule",
                "intersection", "label_pixels", "unit_pixels", "images")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state is missing keys {missing}")
        out = cls(state["num_units"], state["num_labels"], state["label_category"], state["num_categories"],
                  output_size=tuple(state["output_size"]), unit_rule=state["unit_rule"],
                  num_threads=num_threads)
        K, NL, NC = out.num_units, out.num_labels, out.num_categories
        arrays = {}
        for key, shape in (("intersection", (K, NL)), ("label_pixels", (NL,)), ("unit_pixels", (K, NC))):
            arr = np.asarray(state[key])
            if arr.dtype.kind not in "iu":
                raise TypeError(f"state[{key!r}] must be an integer array; got dtype {arr.dtype}")
            if arr.shape != shape:
                raise ValueError(f"state[{key!r}] must have shape {shape}; got {arr.shape}")
            if arr.size and int(arr.min()) < 0:
                raise ValueError(f"state[{key!r}] must hold non-negative counts")
            arrays[key] = np.ascontiguousarray(arr, dtype=np.int64)
        images = state["images"]
        if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 0:
            raise ValueError(f"state['images'] must be a non-negative integer; got {images!r}")
        if int(arrays["label_pixels"][0]) != 0 or np.any(arrays["intersection"][:, 0] != 0):
            raise ValueError("state: label 0 (none) must have zero counts")
        if np.any(arrays["intersection"] > arrays["label_pixels"][None, :]):
            raise ValueError("state: intersection must not exceed label_pixels")
        for key in ("num_pixel_maps", "num_image_labels"):
            v = state.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise ValueError(f"state[{key!r}] must be None or a non-negative integer; got {v!r}")
        out._core.set_counts(arrays["intersection"], arrays["label_pixels"], arrays["unit_pixels"], int(images))
        out._num_pixel_maps = None if state.get("num_pixel_maps") is None else int(state["num_pixel_maps"])
        out._num_image_labels = None if state.get("num_image_labels") is None else int(state["num_image_labels"])
        return out

    def __reduce__(self):
        return (_from_state, (self.state_dict(), self._num_threads or None))

    def __repr__(self) -> str:
        return (f"IoUTally(num_units={self.num_units}, num_labels={self.num_labels}, "
                f"num_categories={self.num_categories}, output_size={self.output_size}, "
                f"unit_rule={self.unit_rule!r}, images={self.images})")


def _from_state(state: Dict[str, Any], num_threads: Optional[int]) -> IoUTally:
    return IoUTally.from_state_dict(state, num_threads=num_threads)
