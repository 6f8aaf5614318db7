"""The result of :meth:`RepresentativeInterpretation.explain`: the regions of
the seeds explained together, on the :class:`~interp_engine.methods._result.Result`
base (table, CSV, one ``.npz`` file with its schema, a one-line repr)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np

from ..._npz import Array, MapOf, Num, load_npz, save_npz
from ...engine.checks import describe
from ...engine.cover import PackedBits
from .._result import Result
from .region import Region

__all__ = ["Regions"]

#: the columns of :meth:`Regions.table`
TABLE_FIELDS = ("seed_index", "seed_class", "members", "same_class", "other_class", "boundaries", "greedy",
                "pool", "unconverged", "target", "reached")

# The regions file (format interp_engine.representative_regions, version 1): a JSON header
# and, for region i of header["regions"], the arrays "r{i}.<name>" below (H boundaries,
# M members, P sampled boundaries, S / O reference images of the seed's / another class,
# D = prod(psi_shape) feature values).
_FORMAT = "interp_engine.representative_regions"
_VERSION = 1
_HEADER = {
    "layer": str,
    "n_reference": Num(int, 1),
    "psi_shape": [Num(int, 1)],
    "image_shape": [Num(int, 1)],
    "pool": Num(int, 1),
    "delta": Num(int, 0),
    "seed": Num(int, 0),
    "timings": MapOf(Num(float, 0.0)),
    "regions": [{"seed_index": Num(int, -1), "seed_class": Num(int, 0), "n_boundaries": Num(int, 0),
                 "n_greedy": Num(int, 0), "n_members": Num(int, 0), "n_other": Num(int, 0), "reached": bool,
                 "target": Num(int, 0), "delta": Num(int, 0), "n_pool": Num(int, 0),
                 "n_unconverged": Num(int, 0), "n_same_class": Num(int, 0)}],
}
_ARRAYS = ("weights", "biases", "points", "other_classes", "others", "chosen", "members", "member_classes",
           "seed_values", "cost_words", "gain_words", "same_indices", "other_indices")


def _schema(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
    n = h["n_reference"]
    d = int(np.prod(h["psi_shape"]))
    dims: Dict[str, int] = {"N": n, "D": d}
    schema: Dict[str, Array] = {}
    for i, r in enumerate(h["regions"]):
        if r["seed_index"] >= n:
            raise ValueError(f"field 'header.regions[{i}].seed_index' must be -1 or a reference index in "
                             f"[0, {n}); got {r['seed_index']}")
        if r["n_same_class"] > n:
            raise ValueError(f"field 'header.regions[{i}].n_same_class' must be at most n_reference={n}; "
                             f"got {r['n_same_class']}")
        s, o = r["n_same_class"], n - r["n_same_class"]
        dims.update({f"H{i}": r["n_boundaries"], f"M{i}": r["n_members"], f"P{i}": r["n_pool"], f"S{i}": s,
                     f"O{i}": o, f"CW{i}": (s + 63) // 64, f"GW{i}": (o + 63) // 64})
        H, M, P = f"H{i}", f"M{i}", f"P{i}"
        schema.update({
            f"r{i}.weights": Array("float64", (H, "D")),
            f"r{i}.biases": Array("float64", (H,)),
            f"r{i}.points": Array("float64", (H, "D")),
            f"r{i}.other_classes": Array("int64", (H,), min=0),
            f"r{i}.others": Array("int64", (H,), min=0, max="N", max_offset=-1),
            f"r{i}.chosen": Array("int64", (H,), min=0, max=P, max_offset=-1),
            f"r{i}.members": Array("int64", (M,), min=0, max="N", max_offset=-1),
            f"r{i}.member_classes": Array("int64", (M,), min=0),
            f"r{i}.seed_values": Array("float64", (H,)),
            f"r{i}.cost_words": Array("uint64", (P, f"CW{i}")),
            f"r{i}.gain_words": Array("uint64", (P, f"GW{i}")),
            f"r{i}.same_indices": Array("int64", (f"S{i}",), min=0, max="N", max_offset=-1),
            f"r{i}.other_indices": Array("int64", (f"O{i}",), min=0, max="N", max_offset=-1),
        })
        if r["seed_index"] < 0:
            schema[f"r{i}.seed_image"] = Array("float64", tuple(h["image_shape"]), inf=True)
    return schema, dims


class Regions(Result):
    """The regions of the seeds given to one
    :meth:`~interp_engine.methods.representative.RepresentativeInterpretation.explain`,
    in the order of the seeds: a sequence of :class:`Region`
    (``len``, ``regions[i]``, iteration; a slice is a :class:`Regions`).

    Attributes:
        layer, n_reference, psi_shape, image_shape, pool, delta, seed: those
            of the fitted method that made them (checked by :meth:`bind`).
        timings: seconds of the explain: ``{"sampling", "configuration", "cover"}``.

    :meth:`table` gives one row per region (:data:`TABLE_FIELDS`);
    :meth:`save` writes every region's boundaries, members, cover sets and
    (for image seeds) seed image to one ``.npz``; :meth:`load` reads it back
    without a model: bind the loaded regions to a fitted method
    (:meth:`bind`) before the queries that need the model or the reference
    features (``similar``, ``heatmap``, ``contains``).
    """

    def __init__(self, regions: Sequence[Region], *, layer: str, n_reference: int, psi_shape: Sequence[int],
                 image_shape: Sequence[int], pool: int, delta: int, seed: int,
                 timings: Optional[Dict[str, float]] = None) -> None:
        regions = list(regions)
        for j, r in enumerate(regions):
            if not isinstance(r, Region):
                raise TypeError(f"regions[{j}] must be a Region, got {describe(r)}")
        self._regions: List[Region] = regions
        self.layer = layer
        self.n_reference = int(n_reference)
        self.psi_shape = tuple(int(v) for v in psi_shape)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.pool = int(pool)
        self.delta = int(delta)
        self.seed = int(seed)
        self.timings: Dict[str, float] = dict(timings or {})

    # ------------------------------------------------------------------ sequence
    def __len__(self) -> int:
        return len(self._regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions)

    @overload
    def __getitem__(self, i: int) -> Region: ...

    @overload
    def __getitem__(self, i: slice) -> "Regions": ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self._like(self._regions[i])
        return self._regions[i]

    def _like(self, regions: Sequence[Region]) -> "Regions":
        return Regions(regions, layer=self.layer, n_reference=self.n_reference, psi_shape=self.psi_shape,
                       image_shape=self.image_shape, pool=self.pool, delta=self.delta, seed=self.seed,
                       timings=self.timings)

    def __getattr__(self, name: str) -> Any:
        # Until 0.x, explain(seed) returned the Region itself: a Regions of one region forwards
        # the Region's attributes, with a DeprecationWarning.
        if name.startswith("_") or name not in _REGION_NAMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        regions = self.__dict__.get("_regions", [])
        if len(regions) != 1:
            raise AttributeError(f"Regions has no attribute {name!r}: it holds {len(regions)} regions; "
                                 f"use regions[i].{name}")
        warnings.warn(f"explain(seed).{name} is deprecated; use explain(seed)[0].{name} (explain returns "
                      f"Regions, a sequence of Region)", DeprecationWarning, stacklevel=2)
        return getattr(regions[0], name)

    # ------------------------------------------------------------------ Result
    def table(self) -> List[Dict[str, Any]]:
        """One plain dict per region: ``seed_index`` (-1 for an image seed),
        ``seed_class``, ``members``, ``same_class`` / ``other_class``
        members, ``boundaries`` (chosen), ``greedy`` (chosen by the greedy
        phase), ``pool`` (sampled), ``unconverged`` (pairs dropped),
        ``target``, ``reached``."""
        return [{"seed_index": int(r.seed_index), "seed_class": int(r.seed_class), "members": r.n_members,
                 "same_class": r.n_same, "other_class": int(r.n_other), "boundaries": r.n_boundaries,
                 "greedy": int(r.n_greedy), "pool": int(r.n_pool), "unconverged": int(r.n_unconverged),
                 "target": int(r.target), "reached": bool(r.reached)} for r in self._regions]

    def _csv_fields(self) -> Sequence[str]:
        return TABLE_FIELDS

    def _summary(self) -> str:
        reached = sum(bool(r.reached) for r in self._regions)
        return (f"{len(self)} regions, layer={self.layer!r}, reached={reached}, pool={self.pool}, "
                f"delta={self.delta}, reference={self.n_reference}")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the regions to one ``.npz`` (no pickles: arrays plus a JSON
        header); returns the path.  The cover sets are stored packed."""
        arrays: Dict[str, np.ndarray] = {}
        metas = []
        for i, r in enumerate(self._regions):
            metas.append({"seed_index": int(r.seed_index), "seed_class": int(r.seed_class),
                          "n_boundaries": r.n_boundaries, "n_greedy": int(r.n_greedy), "n_members": r.n_members,
                          "n_other": int(r.n_other), "reached": bool(r.reached), "target": int(r.target),
                          "delta": int(r.delta), "n_pool": int(r.n_pool), "n_unconverged": int(r.n_unconverged),
                          "n_same_class": int(r.same_indices.shape[0])})
            for a in ("weights", "biases", "points", "other_classes", "others", "chosen", "members",
                      "member_classes", "seed_values", "same_indices", "other_indices"):
                arrays[f"r{i}.{a}"] = np.asarray(getattr(r, a))
            arrays[f"r{i}.cost_words"] = r.cost_sets.words
            arrays[f"r{i}.gain_words"] = r.gain_sets.words
            if r.seed_index < 0:
                img = r.seed_image
                if img is None:
                    raise ValueError(f"region {i} has an image seed but no seed image to save")
                arrays[f"r{i}.seed_image"] = img.detach().cpu().double().numpy() if hasattr(img, "detach") \
                    else np.asarray(img, np.float64)
        header = {"format": _FORMAT, "version": _VERSION, "layer": self.layer, "n_reference": self.n_reference,
                  "psi_shape": list(self.psi_shape), "image_shape": list(self.image_shape), "pool": self.pool,
                  "delta": self.delta, "seed": self.seed,
                  "timings": {k: float(v) for k, v in self.timings.items()}, "regions": metas}
        return save_npz(path, arrays, header)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Regions":
        """Read a file written by :meth:`save`, checked against its schema:
        every array's dtype, shape (from the header's counts) and range (indices
        within the reference set, chosen boundaries within the pool), every
        header key's JSON type, the cover sets' padding bits, and the counts
        that follow from the arrays (other-class members, same/other
        partition); ValueError naming the file and the field otherwise.  The
        regions come back unbound: :meth:`bind` them to a fitted method for
        the queries."""
        path = Path(path)
        h, arrays = load_npz(path, _FORMAT, _VERSION, "representative regions file", _HEADER, _schema)
        regions = []
        for i, m in enumerate(h["regions"]):
            a = {k: arrays[f"r{i}.{k}"] for k in _ARRAYS}

            def bad(field_: str, msg: str) -> ValueError:
                return ValueError(f"{path}: field {field_!r} {msg}")

            if m["n_greedy"] > m["n_boundaries"]:
                raise bad(f"header.regions[{i}].n_greedy", f"must be at most n_boundaries="
                                                            f"{m['n_boundaries']}; got {m['n_greedy']}")
            if m["n_pool"] + m["n_unconverged"] != h["pool"]:
                raise bad(f"header.regions[{i}].n_unconverged", f"must be pool - n_pool = "
                                                                 f"{h['pool'] - m['n_pool']}; got {m['n_unconverged']}")
            part = np.concatenate([a["same_indices"], a["other_indices"]])
            if not np.array_equal(np.sort(part), np.arange(h["n_reference"])):
                raise bad(f"r{i}.other_indices", "and 'same_indices' must partition the reference indices "
                                                  f"0..{h['n_reference'] - 1}")
            if a["members"].size and np.any(np.diff(a["members"]) <= 0):
                raise bad(f"r{i}.members", "must be strictly ascending reference indices")
            n_other = int((a["member_classes"] != m["seed_class"]).sum())
            if n_other != m["n_other"]:
                raise bad(f"header.regions[{i}].n_other", f"must be the members of another class than "
                                                           f"seed_class ({n_other}); got {m['n_other']}")
            sets = []
            for words, n_bits, name in ((a["cost_words"], a["same_indices"].size, "cost_words"),
                                        (a["gain_words"], a["other_indices"].size, "gain_words")):
                try:
                    sets.append(PackedBits(words, n_bits))
                except ValueError as exc:
                    raise bad(f"r{i}.{name}", str(exc)) from None
            img = None
            if m["seed_index"] < 0:
                import torch

                img = torch.from_numpy(arrays[f"r{i}.seed_image"])
            regions.append(Region(
                seed_index=m["seed_index"], seed_class=m["seed_class"], weights=a["weights"], biases=a["biases"],
                points=a["points"], other_classes=a["other_classes"], others=a["others"], chosen=a["chosen"],
                n_greedy=m["n_greedy"], members=a["members"], member_classes=a["member_classes"],
                n_other=m["n_other"], reached=m["reached"], target=m["target"], delta=m["delta"],
                seed_values=a["seed_values"], n_pool=m["n_pool"], n_unconverged=m["n_unconverged"],
                cost_sets=sets[0], gain_sets=sets[1], same_indices=a["same_indices"],
                other_indices=a["other_indices"], _owner=None, _seed_image=img))
        return cls(regions, layer=h["layer"], n_reference=h["n_reference"], psi_shape=h["psi_shape"],
                   image_shape=h["image_shape"], pool=h["pool"], delta=h["delta"], seed=h["seed"],
                   timings=h["timings"])

    def bind(self, ri: Any) -> "Regions":
        """Attach the regions to ``ri``, a fitted
        :class:`~interp_engine.methods.representative.RepresentativeInterpretation`
        on the same reference images (same layer, reference count, shapes, and
        the members' predicted classes), for the queries; returns ``self``.

        Raises:
            TypeError: ``ri`` is not a RepresentativeInterpretation.
            RuntimeError: ``ri`` is not fitted.
            ValueError: ``ri`` was fitted on other data (the message names what differs).
        """
        if not all(hasattr(ri, a) for a in ("_check_fitted", "_features_of_images", "predictions", "layer")):
            raise TypeError(f"ri must be a RepresentativeInterpretation, got {describe(ri)}")
        ri._check_fitted()
        for name, mine, theirs in (("layer", self.layer, ri.layer), ("n_reference", self.n_reference, ri.n_reference),
                                   ("psi_shape", self.psi_shape, tuple(ri.psi_shape)),
                                   ("image_shape", self.image_shape, tuple(ri.image_shape))):
            if mine != theirs:
                raise ValueError(f"ri does not match these regions: {name} {theirs!r}, the regions' is {mine!r}")
        for j, r in enumerate(self._regions):
            if not np.array_equal(ri.predictions[r.members], r.member_classes):
                raise ValueError(f"ri does not match these regions: the predicted classes of region {j}'s members "
                                 f"differ (fitted on other reference images, or another model?)")
        for r in self._regions:
            r._owner = ri
        return self


#: the Region attributes a one-region Regions forwards (deprecated; see Regions.__getattr__)
_REGION_NAMES = frozenset(
    [f for f in Region.__dataclass_fields__ if not f.startswith("_")]
    + ["n_members", "n_same", "n_boundaries", "owner", "seed_image", "contains", "contains_features",
       "similar", "heatmap"])
