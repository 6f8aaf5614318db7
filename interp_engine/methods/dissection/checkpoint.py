"""Dissection checkpoints: the file format, and writing, reading and checking it.

A run with ``checkpoint_dir`` saves its accumulators to
``<checkpoint_dir>/dissection_checkpoint.npz`` (docs/dissection.md,
"Checkpoints"): every ``checkpoint_every`` batches and ``checkpoint_interval``
seconds of every pass, at the end of every pass, and when it stops between
batches.  A later run with the same model, data and settings resumes there
(inside any pass) and gives the same result as an uninterrupted run.  The
checkpoint is keyed on a digest of everything that changes the result; a
checkpoint of another key is refused with a ValueError naming what differs,
and one that is damaged or does not match its schema and this run (see
:meth:`CheckpointFile.load_checkpoint`) with a ValueError naming the file and
the field.

:class:`CheckpointFile` is the checkpoint side of the run state
(:class:`~interp_engine.methods.dissection.state._RunState` derives from it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..._npz import Array, MapOf, Num, OneOf, check_json, load_header, load_npz, save_npz
from ...engine.iou import UNIT_RULES, IoUTally
from ...engine.quantiles import DEFAULT_K, ChannelQuantiles, ExactQuantilePass
from .accumulators import TopImages
from .result import _jsonable

__all__ = ["PASSES", "CHECKPOINT_NAME", "CheckpointFile"]

_CHECKPOINT_FORMAT = "interp_engine.dissection_checkpoint"
_CHECKPOINT_VERSION = 3
#: the passes of a run, in order (``"exact"`` only with ``thresholds="exact"``)
PASSES = ("quantiles", "exact", "iou")
#: the checkpoint's file name in ``checkpoint_dir``
CHECKPOINT_NAME = "dissection_checkpoint.npz"

# ----------------------------------------------------------------------------- checkpoints
# The checkpoint file (format interp_engine.dissection_checkpoint, version 3), written by
# _RunState.checkpoint and read by _RunState.load_checkpoint: a JSON header and arrays.
#
# header: "config", "key", "provenance" (the run it belongs to; key: digest of the config);
#   "finished" (the passes done, in order); "position" ({pass: next batch}; only the pass
#   under way may be above 0); "cache_root" (the activation cache, or null); "shapes"
#   ({layer: [C, H, W]}: the activation shape of each result layer); "sketch", "exact",
#   "tally" ({layer: the scalar fields of that accumulator's state_dict}); "thresholds"
#   (the layers whose thresholds are known); "digest" (BLAKE2b of the header without it and
#   of the arrays that carry no digest of their own: "thr.*" and "topk.*"; the
#   accumulators' arrays are covered by their own digests, which are in the header).
# arrays: "sketch.<layer>.<field>", "exact.<layer>.<field>", "tally.<layer>.<field>" (the
#   array fields of the accumulator's state_dict); "topk.<layer>.values" (C, T) float64,
#   ".index" (C, T) int64 (-1: an empty slot), ".maps" (C, T, H, W) float32;
#   "thr.<layer>" (C,) float64.
_SKETCH_SCALARS = {"version": Num(int, 1), "num_channels": Num(int, 1), "k": Num(int, 1), "seed": Num(int, 0),
                   "skip_nan": Num(int, 0, 1), "checksum_known": Num(int, 0, 1), "digest": str,
                   "field_digests": str}
_EXACT_SCALARS = {"format": str, "version": Num(int, 1), "num_channels": Num(int, 1), "scalar": Num(int, 0, 1),
                  "skip_nan": Num(int, 0, 1), "cap": Num(int, 0), "sketch_checksum_known": Num(int, 0, 1),
                  "digest": str, "field_digests": str}
_TALLY_SCALARS = {"format": str, "version": Num(int, 0), "num_units": Num(int, 1), "num_labels": Num(int, 1),
                  "num_categories": Num(int, 1), "output_size": [Num(int, 1)], "unit_rule": OneOf(UNIT_RULES),
                  "resize": str, "num_pixel_maps": (Num(int, 0), None), "num_image_labels": (Num(int, 0), None),
                  "images": Num(int, 0), "digest": str, "field_digests": str}
_CHECKPOINT_HEADER = {
    "config": dict, "key": str, "provenance": dict, "finished": [OneOf(PASSES)], "position": MapOf(Num(int, 0)),
    "cache_root": (str, None), "shapes": MapOf([Num(int, 1)]), "sketch": MapOf(_SKETCH_SCALARS),
    "exact": MapOf(_EXACT_SCALARS), "tally": MapOf(_TALLY_SCALARS), "thresholds": [str], "digest": str,
}
_WHAT = {"sketch": "the quantile sketch", "exact": "the exact quantile pass", "tally": "the IoU tally",
         "topk": "the top images"}


def _sketch_arrays(k: str, C: str) -> Dict[str, Array]:
    return {"items": Array("float64", (f"items[{k}]",), inf=True),
            "level_sizes": Array("int64", (C, f"levels[{k}]"), min=0), "count": Array("int64", (C,), min=0),
            "min": Array("float64", (C,), inf=True), "max": Array("float64", (C,), inf=True),
            "rng_state": Array("uint64", (C,)), "nan_count": Array("int64", (C,), min=0),
            "wide": Array("int64", (C,), min=0, max=1), "checksum": Array("uint64", (C, 2))}


def _exact_arrays(k: str, C: str) -> Dict[str, Array]:
    m = f"q[{k}]"
    out = {"q": Array("float64", (m,), min=0.0, max=1.0), "sketch_count": Array("int64", (C,), min=1),
           "sketch_nan_count": Array("int64", (C,), min=0), "sketch_checksum": Array("uint64", (C, 2)),
           "lower": Array("float64", (C, m), inf=True), "upper": Array("float64", (C, m), inf=True),
           "inside": Array("float64", (f"inside[{k}]",), inf=True), "seen": Array("int64", (C,), min=0),
           "seen_nan": Array("int64", (C,), min=0), "seen_checksum": Array("uint64", (C, 2))}
    out.update({f: Array("int64", (C, m), min=0) for f in ("below", "eq_lower", "eq_upper", "inside_sizes")})
    return out


def _tally_arrays(k: str, C: str) -> Dict[str, Array]:
    return {"label_category": Array("int64", ("L",), min=0, max="NC", max_offset=-1),
            "intersection": Array("int64", (C, "L"), min=0), "label_pixels": Array("int64", ("L",), min=0),
            "unit_pixels": Array("int64", (C, "NC"), min=0)}


def _topk_arrays(k: str, C: str, H: str, W: str) -> Dict[str, Array]:
    return {"values": Array("float64", (C, "T"), inf=True), "index": Array("int64", (C, "T"), min=-1, max="N",
                                                                         max_offset=-1),
            "maps": Array("float32", (C, "T", H, W), inf=True)}


_STATE_ARRAYS = {"sketch": _sketch_arrays, "exact": _exact_arrays, "tally": _tally_arrays}
_STATE_SCALARS = {"sketch": _SKETCH_SCALARS, "exact": _EXACT_SCALARS, "tally": _TALLY_SCALARS}


def _split_state(d: Mapping[str, Any], prefix: str, arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Put a state_dict's arrays into ``arrays`` (as ``<prefix>.<field>``) and
    return its other fields (JSON: tuples as lists)."""
    meta: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            arrays[f"{prefix}.{k}"] = v
        else:
            meta[k] = _jsonable(v)
    return meta


def _checkpoint_digest(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """The checkpoint's own digest (see the file layout above)."""
    import json

    from ...engine.states import state_digest

    text = json.dumps({k: v for k, v in header.items() if k != "digest"}, sort_keys=True)
    own = sorted(n for n in arrays if n.startswith(("thr.", "topk.")))
    return state_digest([("header", text)] + [(n, np.asarray(arrays[n])) for n in own])


_INFORMATIONAL = ("dataset", "data.root")  # config entries recorded but not compared
_KEY_LABELS = {"model.parameters": "the model's parameters and buffers (weights)",
               "model.structure": "the model's module tree", "model.class": "the model class",
               "model.tensors": "the model's number of parameters and buffers",
               "model.bytes": "the model's size in bytes", "data.rows": "the dataset's selected rows",
               "data.labels": "the dataset's labels", "data.transform.name": "the transform",
               "data.transform.probe": "the transform's output", "data.sizes": "the image sizes",
               "data.num_images": "the number of images", "layers": "the layers"}


class CheckpointFile:
    """The checkpoint of a run: written by :meth:`checkpoint`, read and checked
    whole by :meth:`load_checkpoint`.  A mixin of the run state, which holds
    ``d`` (the :class:`Dissection`), ``ds``, ``config``, ``key`` and the
    accumulators."""

    def _ckpt_path(self) -> Optional[Path]:
        cd = self.d.checkpoint_dir
        return None if cd is None else cd / CHECKPOINT_NAME

    def checkpoint(self, pass_name: str, next_batch: int, finished: bool = False) -> None:
        path = self._ckpt_path()
        if path is None:
            return
        if not finished:
            self.position[pass_name] = next_batch
        arrays: Dict[str, np.ndarray] = {}
        meta: Dict[str, Any] = {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION,
                                "config": _jsonable(self.config), "key": self.key,
                                "provenance": _jsonable(self.d.provenance),
                                "finished": list(self.finished), "position": dict(self.position),
                                "cache_root": None if self.cache_root is None else str(self.cache_root),
                                "shapes": {k: [int(x) for x in v] for k, v in self._shapes.items()},
                                "sketch": {}, "exact": {}, "tally": {}, "thresholds": []}
        for k, sk in self.sketch.items():
            meta["sketch"][k] = _split_state(sk.state_dict(), f"sketch.{k}", arrays)
            st = self.topk[k].state_dict()
            for f in ("values", "index", "maps"):
                arrays[f"topk.{k}.{f}"] = st[f]
        for k, p in self.exact.items():
            meta["exact"][k] = _split_state(p.state_dict(), f"exact.{k}", arrays)
        for k, t in self.tally.items():
            meta["tally"][k] = _split_state(t.state_dict(), f"tally.{k}", arrays)
        for k, v in self.thresholds.items():
            arrays[f"thr.{k}"] = np.asarray(v, dtype=np.float64)
            meta["thresholds"].append(k)
        meta["digest"] = _checkpoint_digest(meta, arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        for m in self.cache.values():
            m.flush()
        save_npz(path, arrays, meta, compress=False)  # atomic: a temporary file, then os.replace
        self.d.last_checkpoint = {"path": str(path), "pass": pass_name,
                                  "next_batch": int(next_batch), "finished": list(self.finished),
                                  "batches": -(-len(self.ds) // self.d.batch_size)}

    def check_checkpoint(self) -> Optional[Dict[str, Any]]:
        """The checkpoint this run would resume from, read and checked whole
        (see :meth:`load_checkpoint`); None when there is none."""
        path = self._ckpt_path()
        if path is None or not os.path.lexists(path):
            return None
        return self.load_checkpoint(path)

    def _check_key(self, meta: Mapping[str, Any], path: Path) -> None:
        if meta.get("key") != self.key:
            from ..._fingerprint import differences

            diff = differences(meta["config"], _jsonable(self.config), ignore=_INFORMATIONAL,
                               labels=_KEY_LABELS)
            prov = meta.get("provenance") or {}
            by = f"; it was written for {', '.join(f'{k} {v}' for k, v in prov.items())}" if prov else ""
            raise ValueError(f"checkpoint {path} was written by a run with other arguments or inputs "
                             f"(differing: {'; '.join(diff) or 'the run key'}){by}; use another "
                             f"checkpoint directory or delete the file")

    def load_checkpoint(self, path: Path) -> Dict[str, Any]:
        """Read the checkpoint at ``path`` and check all of it against this
        run: ``{"finished", "position", "cache_root", "shapes", "sketch",
        "topk", "exact", "tally", "thresholds"}`` (the accumulators rebuilt).

        First its header: a file of this format and version whose key is
        this run's (else the differing settings are named).  Then the whole
        file against its schema (see the layout above): every header field's
        JSON type; every array present, none extra, each of its dtype, shape
        (C, H, W of its layer, T = top_k, L labels, NC categories) and range;
        the passes done a prefix of this run's passes, only the pass under way
        at a position above 0 (at most the number of batches), and exactly the
        accumulators that pass order implies.  Then each accumulator through
        its own ``from_state_dict`` (its invariants and digest), and against
        this run: its settings (sketch k, seed, NaN policy; tally sizes,
        label categories, unit rule, resize) and its counts (the values a pass
        has seen equal its position's images times H * W; the tally's images;
        an exact pass planned from this checkpoint's sketch, brackets and
        all); the top images sorted, empty slots last and each value the
        maximum of its map; approximate thresholds equal to the sketch's.
        Last the checkpoint's own digest.  Every refusal is one ValueError
        ``checkpoint <path>: field '<field>' ...`` (a damaged, truncated or
        non-npz file: ``checkpoint <path>: not a readable ...``)."""
        d = self.d
        what = "dissection checkpoint"
        hint = "; delete the checkpoint to start over"

        def fail(msg: str) -> ValueError:  # msg: "<path>: ..." from the schema loader
            return ValueError(f"checkpoint {msg.rstrip('.')}{hint}")

        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"checkpoint {path}: field {field!r} {msg}{hint}")

        if not os.path.isfile(path):
            raise ValueError(f"checkpoint {path} is not a file (a directory or another kind of entry); "
                             f"remove it to start over")
        try:
            meta = load_header(path, _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, what)
            for key, spec in (("key", str), ("config", dict), ("provenance", dict)):
                if key not in meta:
                    raise ValueError(f"{path}: field 'header.{key}' is missing")
                check_json(meta[key], spec, path, f"header.{key}")
        except ValueError as exc:
            raise fail(str(exc)) from None
        self._check_key(meta, path)

        # the whole file against its schema, built from this run and the header's stage
        N, bs = len(self.ds), d.batch_size
        n_batches = -(-N // bs)
        passes = d._passes()
        layers = [L.key for L in d._layers]
        stage: Dict[str, Any] = {}

        def schema(h: Dict[str, Any]) -> Tuple[Dict[str, Array], Dict[str, int]]:
            finished = h["finished"]
            if finished != list(passes[:len(finished)]):
                raise ValueError(f"field 'header.finished' must be the passes done, in order: a prefix of "
                                 f"{list(passes)}; got {finished}")
            current = passes[len(finished)] if len(finished) < len(passes) else None
            for p, v in h["position"].items():
                if p not in passes:
                    raise ValueError(f"field 'header.position.{p}' names no pass of this run (passes: "
                                     f"{list(passes)})")
                if p == current and v > n_batches:
                    raise ValueError(f"field 'header.position.{p}' must be at most the {n_batches} batches "
                                     f"of this run; got {v}")
                if p != current and v != 0:
                    raise ValueError(f"field 'header.position.{p}' must be 0 (the pass is "
                                     f"{'done' if p in finished else 'not started'}); got {v}")

            def seen(p: str) -> int:
                """Images the pass has consumed."""
                if p in finished:
                    return N
                return min(N, h["position"].get(p, 0) * bs) if p == current else 0

            need = {"sketch": seen("quantiles") > 0, "exact": current == "exact" and seen("exact") > 0,
                    "tally": seen("iou") > 0}
            need["shapes"] = need["sketch"]
            for name, required in need.items():
                have = sorted(h[name])
                want = sorted(layers) if required else []
                if have != want:
                    extra = [k for k in have if k not in want]
                    why = (f"names {extra[0]!r}, which is not a layer of this run (layers: {layers})"
                           if extra and extra[0] not in layers else
                           f"must hold the layers {want} at this stage (passes done: {finished}, position: "
                           f"{h['position']}); got {have}")
                    raise ValueError(f"field 'header.{name}' {why}")
            thr = h["thresholds"]
            want_thr = sorted(layers) if ("exact" in finished or seen("iou") > 0) else []
            if sorted(thr) != want_thr or len(set(thr)) != len(thr):
                raise ValueError(f"field 'header.thresholds' must list the layers {want_thr} at this stage "
                                 f"(passes done: {finished}); got {thr}")
            if d.activation_cache and need["sketch"] and not isinstance(h["cache_root"], str):
                raise ValueError("field 'header.cache_root' must name the activation cache (this run has "
                                 "activation_cache=True); got null")
            if not d.activation_cache and h["cache_root"] is not None:
                raise ValueError("field 'header.cache_root' must be null (this run has activation_cache=False); "
                                 f"got {h['cache_root']!r}")
            out: Dict[str, Array] = {}
            dims = {"N": N, "T": d.top_k, "L": len(self.ds.label_names), "NC": int(self.ds.num_categories)}
            for k, shape in h["shapes"].items():
                if len(shape) != 3:
                    raise ValueError(f"field 'header.shapes.{k}' must be [C, H, W]; got {shape}")
                C, H, W = f"C[{k}]", f"H[{k}]", f"W[{k}]"
                dims.update({C: shape[0], H: shape[1], W: shape[2]})
                out.update({f"topk.{k}.{f}": a for f, a in _topk_arrays(k, C, H, W).items()})
            for kind in ("sketch", "exact", "tally"):
                for k in h[kind]:
                    out.update({f"{kind}.{k}.{f}": a for f, a in _STATE_ARRAYS[kind](k, f"C[{k}]").items()})
            for k in thr:
                out[f"thr.{k}"] = Array("float64", (f"C[{k}]",), inf=True)
            stage.update(finished=finished, current=current, seen={p: seen(p) for p in PASSES})
            return out, dims

        try:
            h, arrays = load_npz(path, _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, what, _CHECKPOINT_HEADER, schema)
        except ValueError as exc:
            raise fail(str(exc)) from None
        self._check_key(h, path)  # the file may have changed since the first look
        seen = stage["seen"]
        shapes = {k: tuple(v) for k, v in h["shapes"].items()}

        def state(kind: str, k: str) -> Dict[str, Any]:
            st = dict(h[kind][k])
            st.update({f: arrays[f"{kind}.{k}.{f}"] for f in _STATE_ARRAYS[kind](k, "C")})
            return st

        def rebuild(kind: str, k: str, cls):
            try:
                return cls.from_state_dict(state(kind, k), num_threads=d.num_threads)
            except (ValueError, TypeError) as exc:
                raise bad(f"{kind}.{k}", f"({_WHAT[kind]} of layer {k!r}): {str(exc).rstrip('.')}") from None

        def same_count(field: str, got: np.ndarray, pass_name: str, k: str) -> None:
            C, H, W = shapes[k]
            want = seen[pass_name] * H * W
            if not np.array_equal(got, np.full(C, want)):
                c = int(np.flatnonzero(got != want)[0])
                raise bad(field, f"counts {int(got[c])} values in channel {c}, but the {pass_name} pass has seen "
                                 f"{seen[pass_name]} images of {H}x{W} maps ({want} values) at its position")

        sketch: Dict[str, ChannelQuantiles] = {}
        top_arrays: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for k in h["sketch"]:
            sk = rebuild("sketch", k, ChannelQuantiles)
            C, H, W = shapes[k]
            for what_, got, want in (("num_channels", sk.num_channels, C), ("k", sk.k, DEFAULT_K),
                                     ("seed", sk.seed, d.seed), ("skip_nan", sk.nan, "raise")):
                if got != want:
                    raise bad(f"sketch.{k}.{what_}", f"is {got!r}; this run's sketch has {want!r}")
            same_count(f"sketch.{k}.count", sk.count + sk.nan_count, "quantiles", k)
            sketch[k] = sk
            vals, idx, maps = (arrays[f"topk.{k}.{f}"] for f in ("values", "index", "maps"))
            filled = idx >= 0
            T = d.top_k
            n = filled.sum(axis=1)
            gap = filled != (np.arange(T)[None, :] < n[:, None])
            if gap.any():
                u = int(np.argwhere(gap)[0][0])
                raise bad(f"topk.{k}.index", f"has an empty slot (-1) before an image for unit {u}")
            if T and int(n.max()) > seen["quantiles"]:
                u = int(np.argmax(n))
                raise bad(f"topk.{k}.index", f"holds {int(n[u])} images for unit {u}, more than the "
                                             f"{seen['quantiles']} the quantile pass has seen")
            if T and ((~filled) & (vals != -np.inf)).any():
                u = int(np.argwhere((~filled) & (vals != -np.inf))[0][0])
                raise bad(f"topk.{k}.values", f"must be -inf where the slot is empty (unit {u})")
            if T > 1 and (vals[:, 1:] > vals[:, :-1]).any():
                u = int(np.argwhere(vals[:, 1:] > vals[:, :-1])[0][0])
                raise bad(f"topk.{k}.values", f"must be sorted from the largest (unit {u})")
            if T and filled.any():
                mx = maps.reshape(C, T, -1).max(axis=2).astype(np.float64)
                off = filled & (mx != vals)
                if off.any():
                    u, j = (int(x) for x in np.argwhere(off)[0])
                    raise bad(f"topk.{k}.values", f"must be the maximum of the unit's map ('topk.{k}.maps'); "
                                                  f"unit {u}, slot {j}: {float(vals[u, j])!r} but the map's maximum "
                                                  f"is {float(mx[u, j])!r}")
            top_arrays[k] = (vals, idx, maps)

        exact: Dict[str, ExactQuantilePass] = {}
        for k in h["exact"]:
            p = rebuild("exact", k, ExactQuantilePass)
            plan = sketch[k].exact_pass(1.0 - d.quantile).state_dict()
            st = state("exact", k)
            for f in ("num_channels", "q", "scalar", "skip_nan", "cap", "sketch_count", "sketch_nan_count",
                      "sketch_checksum", "sketch_checksum_known", "lower", "upper"):
                a, b = np.asarray(st[f]), np.asarray(plan[f])
                if a.shape != b.shape or not np.array_equal(a, b):
                    raise bad(f"exact.{k}.{f}", f"is not that of the exact pass planned from this checkpoint's "
                                                f"sketch of layer {k!r} (for quantile {d.quantile!r})")
            same_count(f"exact.{k}.seen", st["seen"] + st["seen_nan"], "exact", k)
            exact[k] = p

        tally: Dict[str, IoUTally] = {}
        for k in h["tally"]:
            t = rebuild("tally", k, IoUTally)
            C = shapes[k][0]
            for what_, got, want in (("num_units", t.num_units, C),
                                     ("num_labels", t.num_labels, len(self.ds.label_names)),
                                     ("num_categories", t.num_categories, int(self.ds.num_categories)),
                                     ("output_size", tuple(t.output_size), tuple(int(x) for x in self.ds.pixel_size)),
                                     ("unit_rule", t.unit_rule, d.unit_rule), ("resize", t.resize, d.resize)):
                if got != want:
                    raise bad(f"tally.{k}.{what_}", f"is {got!r}; this run's tally has {want!r}")
            if not np.array_equal(np.asarray(t.label_category), self.label_cat_tally):
                raise bad(f"tally.{k}.label_category", "is not this dataset's label categories")
            if t.images != seen["iou"]:
                raise bad(f"tally.{k}.images", f"is {t.images}, but the iou pass has seen {seen['iou']} images "
                                              f"at its position")
            tally[k] = t

        thresholds = {k: arrays[f"thr.{k}"] for k in h["thresholds"]}
        if d.thresholds == "approx":
            for k, v in thresholds.items():
                if not np.array_equal(v, sketch[k].quantile(1.0 - d.quantile)):
                    raise bad(f"thr.{k}", f"is not the sketch's quantile {1.0 - d.quantile!r} of layer {k!r}")
        if h["digest"] != _checkpoint_digest(h, arrays):
            raise bad("digest", "does not match the file: it was changed after it was written (the fields "
                                "are each valid, but not the ones written together)")
        topk: Dict[str, TopImages] = {}
        for k, (vals, idx, maps) in top_arrays.items():
            try:
                topk[k] = TopImages.from_top(vals, idx, maps)
            except (ValueError, TypeError) as exc:
                raise bad(f"topk.{k}", f"({_WHAT['topk']} of layer {k!r}): {str(exc).rstrip('.')}") from None
        return {"finished": list(h["finished"]), "position": dict(h["position"]), "cache_root": h["cache_root"],
                "shapes": shapes, "sketch": sketch, "topk": topk, "exact": exact, "tally": tally,
                "thresholds": thresholds}
