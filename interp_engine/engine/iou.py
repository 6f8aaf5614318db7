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

``resize`` chooses how maps are brought to ``output_size``: ``"bilinear"``
(the default, above), ``"antialias"`` (PyTorch's ``antialias=True``) or
``"pil"`` (Pillow's float32 resize, NetDissect-Lite's); they differ only when
a layer's maps are larger than the label maps (see
:mod:`interp_engine.engine.resize`).  With ``"antialias"`` and ``"pil"`` each
batch is resized and binarized by the core (``resize_maps``' arithmetic, then
``> threshold`` in float64; ``"pil"`` compares the float32 value and, as Lite,
only in maps whose maximum exceeds the threshold), a few images at a time,
and the binary maps are tallied at identity scale (exact: the interpolation
at scale 1 returns its input).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .._loader import core as _core
from .checks import (bool_array, check_choice, check_num_threads, check_positive_int, describe,
                     float_array, int_array, to_numpy)
from .resize import check_method
from .states import check_declared_length, check_digest, state_digests
from .sync import Synchronized, synchronized, synchronized_pair

__all__ = ["IoUTally", "UNIT_RULES"]

UNIT_RULES = ("annotated", "lite")
_STATE_FORMAT = "interp_engine.IoUTally"
_STATE_VERSION = 1
# the binary maps of the "antialias" / "pil" resizes are made this many bytes at a time
_RESIZE_CHUNK_BYTES = 1 << 25


def _float64(arr: np.ndarray, kind: str) -> np.ndarray:
    """Exact widening of a validated float array (bf16 arrives as uint16 bits)."""
    if kind == "bf16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(arr, dtype=np.float64)


class IoUTally(Synchronized):
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
    Safe to share between threads: calls on one tally run one at a time.
    """

    def __init__(self, num_units: int, num_labels: int, label_category: Any, num_categories: int, *,
                 output_size: Tuple[int, int], unit_rule: str = "annotated", resize: str = "bilinear",
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
        self._resize = check_method(resize, "resize")
        cat = int_array(label_category, "label_category", ndim=1, dtype=None, shape_hint="(num_labels,)", what="label numbers")
        if cat.shape[0] != num_labels:
            raise ValueError(f"label_category must have shape (num_labels,) = ({num_labels},); "
                             f"got shape {tuple(cat.shape)}")
        if cat.size and (int(cat.min()) < 0 or int(cat.max()) >= num_categories):
            bad = int(np.flatnonzero((cat < 0) | (cat >= num_categories))[0])
            raise ValueError(f"label_category values must lie in [0, num_categories) = [0, {num_categories}); "
                             f"got {int(cat[bad])} for label {bad}")
        _check_sizes(num_units, num_labels, num_categories, sh, sw)
        self._num_threads = check_num_threads(num_threads)
        self._init_lock()  # calls from several threads run one at a time (see sync.py)
        self._core = _core.IoUTallyCore(num_units, num_labels, np.ascontiguousarray(cat, dtype=np.int32),
                                        num_categories, sh, sw, unit_rule == "lite")
        self._unit_rule = unit_rule
        self._num_pixel_maps: Optional[int] = None
        self._num_image_labels: Optional[int] = None

    # ------------------------------------------------------------------ update
    @synchronized
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
        if self._resize == "bilinear":
            self._core.update(acts, kind, thr, pl, il, ic, self._num_threads)
        else:
            self._update_resized(acts, kind, thr, pl, il, ic)
        if pl is not None:
            self._num_pixel_maps = int(pl.shape[1])
        if il is not None:
            self._num_image_labels = int(il.shape[1])

    def _update_resized(self, acts, kind, thr, pl, il, ic) -> None:
        """resize "antialias" / "pil": resize and binarize a few images at a
        time, tally the binary maps at identity scale; counts change only
        when every chunk succeeded."""
        B, K = int(acts.shape[0]), int(acts.shape[1])
        sh, sw = self.output_size
        half = np.full(K, 0.5)
        step = max(1, _RESIZE_CHUNK_BYTES // max(1, K * sh * sw * 4))
        target = self._core
        if B > step:  # several chunks: tally into a scratch accumulator, merge at the end
            target = _core.IoUTallyCore(self.num_units, self.num_labels,
                                        np.ascontiguousarray(self._core.label_category, dtype=np.int32),
                                        self.num_categories, sh, sw, self._unit_rule == "lite")
        for b0 in range(0, max(B, 1), step):
            sl = slice(b0, b0 + step)
            binary = _core.resize_above(acts[sl], kind, thr, sh, sw, self._resize, self._num_threads,
                                        "activations", True, b0)
            target.update(binary, "f32", half, None if pl is None else pl[sl], None if il is None else il[sl],
                          None if ic is None else ic[sl], self._num_threads)
        if target is not self._core:
            self._core.merge(target)

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
    @synchronized
    def iou(self) -> np.ndarray:
        """(K, num_labels) float64: ``I / (A[k, cat(c)] + L[c] - I)``, 0 where
        the denominator is 0 (column 0, label "none", is always 0)."""
        return self._core.iou()

    @property
    @synchronized
    def intersection(self) -> np.ndarray:
        """(K, num_labels) int64 copy of I."""
        return self._core.intersection

    @property
    @synchronized
    def label_pixels(self) -> np.ndarray:
        """(num_labels,) int64 copy of L."""
        return self._core.label_pixels

    @property
    @synchronized
    def unit_pixels(self) -> np.ndarray:
        """(K, num_categories) int64 copy of A."""
        return self._core.unit_pixels

    @property
    @synchronized
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

    @property
    def resize(self) -> str:
        """How maps are brought to ``output_size`` (one of
        :data:`~interp_engine.engine.resize.RESIZE_METHODS`)."""
        return self._resize

    # ------------------------------------------------------------------ merge / state
    @synchronized_pair
    def merge(self, other: "IoUTally") -> "IoUTally":
        """Add the counts of ``other`` (same num_units, num_labels,
        label_category, num_categories, output_size, unit_rule and resize).
        Returns self."""
        if not isinstance(other, IoUTally):
            raise TypeError(f"other must be an IoUTally; got {type(other).__name__}")
        if other is self or other._core is self._core:
            raise ValueError("other must be another tally: merging a tally with itself would count the "
                             "same images twice")
        if other._resize != self._resize:
            raise ValueError(f"other must use the same resize; got resize={other._resize!r} for a tally "
                             f"with resize={self._resize!r}")
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

    @synchronized
    def state_dict(self) -> Dict[str, Any]:
        """Plain dict of numpy arrays and Python scalars (for torch.save, np.savez, pickle), with
        a digest of them all (see :meth:`from_state_dict`)."""
        d = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "num_units": self.num_units,
            "num_labels": self.num_labels,
            "label_category": self.label_category,
            "num_categories": self.num_categories,
            "output_size": self.output_size,
            "unit_rule": self.unit_rule,
            "resize": self.resize,
            "num_pixel_maps": self._num_pixel_maps,
            "num_image_labels": self._num_image_labels,
            "intersection": self.intersection,
            "label_pixels": self.label_pixels,
            "unit_pixels": self.unit_pixels,
            "images": self.images,
        }
        d["digest"], d["field_digests"] = state_digests(_tally_fields(d, d["output_size"]))
        return d

    @classmethod
    def from_state_dict(cls, state: Dict[str, Any], *, num_threads: Optional[int] = None) -> "IoUTally":
        """Rebuild a tally from :meth:`state_dict`.

        Every field is validated against the others before anything is
        built: keys, types, shapes and integer dtypes (a uint64 count above
        2**63 - 1 is refused, not wrapped), and the invariants every tally
        keeps: counts >= 0, label 0 never tallied, ``intersection[k, c] <=
        label_pixels[c]``, ``unit_pixels <= images * sh * sw``, with the label
        map counts known ``label_pixels`` (and their sum) ``<= images * (P +
        S) * sh * sw``, and under ``unit_rule="lite"`` ``intersection[k, c]
        <= (P + S) * unit_pixels[k, cat(c)]``.  A violation raises ValueError
        (TypeError for a wrong type) naming ``state[<field>]``.  Finally
        ``state["digest"]`` (written by :meth:`state_dict`) must be the digest
        of all the other fields, so that a state edited or corrupted within
        those bounds is refused too (naming the changed fields when
        ``state["field_digests"]`` is there); a state without a digest is checked by
        its fields alone.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from IoUTally.state_dict(); got {type(state).__name__}")
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state['format'] must be {_STATE_FORMAT!r}; got {state.get('format')!r}")
        if _state_int(state, "version", 0) != _STATE_VERSION:
            raise ValueError(f"state['version'] must be {_STATE_VERSION}; got {state.get('version')!r}")
        keys = ("num_units", "num_labels", "label_category", "num_categories", "output_size", "unit_rule",
                "intersection", "label_pixels", "unit_pixels", "images")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state is missing keys {missing}")
        size = state["output_size"]
        if isinstance(size, np.ndarray):
            size = size.tolist()
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(f"state['output_size'] must be a pair (sh, sw); got {size!r}")
        rule = state["unit_rule"]
        if isinstance(rule, np.ndarray) and rule.ndim == 0:
            rule = rule.item()
        if rule not in UNIT_RULES:
            raise ValueError(f"state['unit_rule'] must be one of {UNIT_RULES}; got {rule!r}")
        K, NL, NC = (_state_int(state, key, 1) for key in ("num_units", "num_labels", "num_categories"))
        # a declared size that none of the arrays has is the field that changed (else the array is named)
        for key, n, axes in (("num_units", K, {"intersection": 0, "unit_pixels": 0}),
                             ("num_labels", NL, {"intersection": 1, "label_pixels": 0, "label_category": 0}),
                             ("num_categories", NC, {"unit_pixels": 1})):
            check_declared_length("state", key, n, {a: state[a] for a in axes}, axes, what=key[4:])
        try:
            out = cls(K, NL, state["label_category"], NC,
                      output_size=(_state_int(size, 0, 1, "output_size"), _state_int(size, 1, 1, "output_size")),
                      unit_rule=rule, resize=state.get("resize", "bilinear"),
                      num_threads=num_threads)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"state: {exc}") from None
        K, NL, NC = out.num_units, out.num_labels, out.num_categories
        arrays = {}
        for key, shape in (("intersection", (K, NL)), ("label_pixels", (NL,)), ("unit_pixels", (K, NC))):
            arrays[key] = _state_counts(state, key, shape)
        images = _state_int(state, "images", 0)
        maps = {}
        for key in ("num_pixel_maps", "num_image_labels"):
            v = state.get(key)
            maps[key] = None if v is None else _state_int(state, key, 0)
        # P + S label maps per image bound the pixel counts (None: never fed, so 0);
        # a state without these keys (written by hand) is checked without them
        known = "num_pixel_maps" in state and "num_image_labels" in state
        per_image = sum(v or 0 for v in maps.values()) if known else -1
        try:
            out._core.set_counts(arrays["intersection"], arrays["label_pixels"], arrays["unit_pixels"],
                                 images, per_image)
        except ValueError as exc:  # names the field: "IoUTally state: <field>: ..."
            msg = str(exc).replace("IoUTally state: ", "", 1)
            field, _, rest = msg.partition(": ")
            raise ValueError(f"state[{field!r}]: {rest}") from None
        out._num_pixel_maps = maps["num_pixel_maps"]
        out._num_image_labels = maps["num_image_labels"]
        conv = dict(state, label_category=out.label_category, num_units=K, num_labels=NL, num_categories=NC,
                    unit_rule=rule, images=images, **arrays, **maps)
        check_digest(state, _tally_fields(conv, out.output_size))
        return out

    def __reduce__(self):
        return (_from_state, (self.state_dict(), self._num_threads or None))

    @synchronized
    def __repr__(self) -> str:
        return (f"IoUTally(num_units={self.num_units}, num_labels={self.num_labels}, "
                f"num_categories={self.num_categories}, output_size={self.output_size}, "
                f"unit_rule={self.unit_rule!r}, resize={self.resize!r}, images={self.images})")


def _from_state(state: Dict[str, Any], num_threads: Optional[int]) -> IoUTally:
    return IoUTally.from_state_dict(state, num_threads=num_threads)


_INT64_MAX = np.iinfo(np.int64).max
_INT32_MAX = np.iinfo(np.int32).max


def _check_sizes(num_units: int, num_labels: int, num_categories: int, sh: int, sw: int) -> None:
    """Size limits of the core (int32 label, category and pixel indices);
    products and memory are checked by the core before it allocates."""
    for name, v in (("num_labels", num_labels), ("num_categories", num_categories),
                    ("output_size[0]", sh), ("output_size[1]", sw)):
        if v > _INT32_MAX:
            raise ValueError(f"{name} must be < 2**31; got {v}")
    if sh * sw > _INT32_MAX:
        raise ValueError(f"output_size must have sh * sw < 2**31 pixels; got {(sh, sw)} "
                         f"({sh * sw} pixels)")
    if num_units > _INT64_MAX:
        raise ValueError(f"num_units must be < 2**63; got {num_units}")


def _state_int(state: Any, key: Any, minimum: int, name: Optional[str] = None) -> int:
    """state[key] as a Python int >= minimum (numpy integers and 0-d arrays
    accepted; bool, floats and out-of-range values refused)."""
    label = f"state[{key!r}]" if name is None else f"state[{name!r}][{key}]"
    v = state[key]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{label} must be an integer; got {type(v).__name__} {v!r}")
    v = int(v)
    if v < minimum or v > _INT64_MAX:
        raise ValueError(f"{label} must be an integer in [{minimum}, 2**63 - 1]; got {v}")
    return v


def _state_counts(state: Dict[str, Any], key: str, shape: Tuple[int, ...]) -> np.ndarray:
    """state[key] as a C-contiguous int64 array of the given shape: integer
    dtype, no value outside [0, 2**63 - 1] (uint64 above int64 is refused, not
    wrapped)."""
    v = state[key]
    if not isinstance(v, np.ndarray):
        try:
            v = np.asarray(v)
        except Exception:
            raise TypeError(f"state[{key!r}] must be an integer array of shape {shape}; "
                            f"got {type(state[key]).__name__}") from None
    if v.dtype.kind not in "iu":
        raise TypeError(f"state[{key!r}] must be an integer array of shape {shape}; got dtype {v.dtype}")
    if v.shape != shape:
        raise ValueError(f"state[{key!r}] must have shape {shape}; got {v.shape}")
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < 0:
            raise ValueError(f"state[{key!r}] must hold counts >= 0; got {lo}")
        if hi > _INT64_MAX:
            raise ValueError(f"state[{key!r}] must hold counts <= 2**63 - 1; got {hi}")
    return np.ascontiguousarray(v, dtype=np.int64)


_TALLY_FIELDS = ("format", "version", "num_units", "num_labels", "label_category", "num_categories", "unit_rule", "resize",
                 "num_pixel_maps", "num_image_labels", "intersection", "label_pixels", "unit_pixels", "images")


def _tally_fields(d: Dict[str, Any], output_size: Tuple[int, int]):
    """The fields of an IoUTally state that its digest covers, in order (arrays as int64)."""
    out = [(key, np.asarray(d[key], dtype=np.int64) if key in ("label_category", "intersection", "label_pixels",
                                                                "unit_pixels") else d.get(key))
           for key in _TALLY_FIELDS]
    return out + [("output_size", int(output_size[0])), ("output_size", int(output_size[1]))]
