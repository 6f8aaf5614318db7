"""The state of a dissection run: its accumulators per result layer, the
passes that feed them, the activation cache, and the result they give.

Passes over the data (all requested layers at once, one forward per batch;
docs/dissection.md, "Passes"):

1. ``"quantiles"``: a :class:`~interp_engine.ChannelQuantiles` sketch per
   layer and the running top images per unit (:class:`TopImages`).
2. ``"exact"`` (only with ``thresholds="exact"``): the core's exact pass
   (:class:`~interp_engine.ExactQuantilePass`), giving each unit's threshold
   equal to ``np.quantile`` of all its values at level ``1 - quantile``.
3. ``"iou"``: an :class:`~interp_engine.IoUTally` per layer.

With ``activation_cache=True`` the first pass also writes the layers'
activations to a float16 memory-mapped file; the later passes read it and the
model runs once.  The checkpoint side of the state is
:class:`~interp_engine.methods.dissection.checkpoint.CheckpointFile`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..._npz import safe_name
from ...engine.iou import IoUTally
from ...engine.quantiles import ChannelQuantiles
from .accumulators import TopImages
from .checkpoint import CheckpointFile
from .datasets import label_category
from .result import LayerResult, _jsonable
from .rotation import random_rotation

if TYPE_CHECKING:  # pragma: no cover
    from .method import Dissection

__all__ = ["ResultLayer"]


@dataclass(frozen=True)
class ResultLayer:
    """A layer of the result: ``key`` (``"conv4"``, ``"conv4@rotation0"``), the
    captured ``module`` name, and ``rotation`` (the seed of the random basis,
    None for the units themselves)."""

    key: str
    module: str
    rotation: Optional[int]


class _RunState(CheckpointFile):
    """Accumulators of a run, their checkpoints (:class:`CheckpointFile`) and
    the activation cache."""

    def __init__(self, d: Dissection, config: Dict[str, Any], ds) -> None:
        from ..._fingerprint import digest_of

        self.d = d
        self.config = config
        comparable = {k: v for k, v in _jsonable(config).items() if k != "dataset"}
        comparable["data"] = {k: v for k, v in comparable.get("data", {}).items() if k != "root"}
        #: digest of everything that changes the result (the checkpoint and activation cache key)
        self.key = digest_of(comparable)
        self.ds = ds
        self.sketch: Dict[str, ChannelQuantiles] = {}
        self.topk: Dict[str, TopImages] = {}
        self.exact: Dict[str, Any] = {}
        self.thresholds: Dict[str, np.ndarray] = {}
        self.tally: Dict[str, IoUTally] = {}
        self.finished: List[str] = []
        self.position: Dict[str, int] = {}
        self.cache: Dict[str, np.memmap] = {}
        self.cache_root: Optional[Path] = None  # set by run() (a keyed subdirectory) or a resumed checkpoint
        self._rot: Dict[str, Any] = {}
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        self.label_cat_raw, self.label_cat_tally = label_category(ds)

    # ----- bookkeeping
    def done(self, pass_name: str) -> bool:
        return pass_name in self.finished

    def start_batch(self, pass_name: str) -> int:
        return self.position.get(pass_name, 0)

    def rotation(self, L: ResultLayer, k: int):
        if L.key not in self._rot:
            self._rot[L.key] = random_rotation(k, L.rotation)
        return self._rot[L.key]

    # ----- the passes
    def begin(self, pass_name: str) -> None:
        if pass_name == "exact" and not self.exact:  # (a resumed pass keeps its state)
            q = 1.0 - self.d.quantile
            self.exact = {k: sk.exact_pass(q) for k, sk in self.sketch.items()}
        elif pass_name == "iou" and not self.thresholds:
            self.thresholds = {k: sk.quantile(1.0 - self.d.quantile) for k, sk in self.sketch.items()}

    def consume(self, pass_name: str, batch: Mapping[str, Any], acts: Mapping[str, Any]) -> None:
        import torch

        d = self.d
        for key, a in acts.items():
            if a.ndim != 4:
                raise ValueError(f"layer {key!r} gave activations of shape {tuple(a.shape)}; expected (B, C, H, W)")
            a_cpu = a.detach().to("cpu")
            if pass_name == "quantiles":
                if key not in self.sketch:
                    self.sketch[key] = ChannelQuantiles(a.shape[1], seed=d.seed, num_threads=d.num_threads)
                    self.topk[key] = TopImages(a.shape[1], d.top_k, tuple(a.shape[2:]))
                    self._shapes[key] = tuple(a.shape[1:])
                elif tuple(a.shape[1:]) != self._shapes.get(key, tuple(a.shape[1:])):
                    raise ValueError(f"layer {key!r} changed shape from {self._shapes[key]} to "
                                     f"{tuple(a.shape[1:])} between batches; dissection needs one map size")
                self.sketch[key].update(a_cpu)
                self.topk[key].update(a_cpu, torch.as_tensor(batch["index"], dtype=torch.int64))
            elif pass_name == "exact":
                self.exact[key].update(a_cpu)
            else:
                if key not in self.tally:
                    self.tally[key] = IoUTally(a.shape[1], len(self.ds.label_names), self.label_cat_tally,
                                               int(self.ds.num_categories), output_size=tuple(self.ds.pixel_size),
                                               unit_rule=d.unit_rule, resize=d.resize, num_threads=d.num_threads)
                self.tally[key].update(a_cpu, self.thresholds[key], pixel_labels=batch.get("pixel_labels"),
                                       image_labels=batch.get("image_labels"),
                                       image_categories=batch.get("image_categories"))

    def finish(self, pass_name: str) -> None:
        if pass_name == "exact":
            self.thresholds = {k: p.result() for k, p in self.exact.items()}
            self.exact = {}
        if pass_name == "quantiles":
            missing = [L.key for L in self.d._layers if L.key not in self.sketch]
            if missing:
                raise RuntimeError(f"no activations were captured for {missing}")
        self.finished.append(pass_name)
        self.position[pass_name] = 0

    # ----- activation cache
    _CACHE_KEY = "cache_key.json"

    def write_cache(self, acts: Mapping[str, Any], offset: int, total: int) -> None:
        import json

        assert self.cache_root is not None
        for name, a in acts.items():
            if name not in self.cache:
                self.cache_root.mkdir(parents=True, exist_ok=True)
                # the key file goes first: files of a cache directory always belong to its key
                key_file = self.cache_root / self._CACHE_KEY
                tmp = key_file.with_name(key_file.name + f".tmp{os.getpid()}")
                tmp.write_text(json.dumps({"format": "interp_engine.activation_cache", "key": self.key,
                                           "num_images": int(total)}))
                os.replace(tmp, key_file)
                shape = (total,) + tuple(a.shape[1:])
                fn = self.cache_root / f"{safe_name(name)}.npy"
                self.cache[name] = np.lib.format.open_memmap(fn, mode="w+", dtype=np.float16, shape=shape)
            self.cache[name][offset:offset + a.shape[0]] = a.to("cpu").numpy()

    def _open_cache(self) -> None:
        """Open the activation cache a checkpoint refers to, after checking
        that it was written for this run's key and has its shape."""
        import json

        assert self.cache_root is not None
        key_file = self.cache_root / self._CACHE_KEY
        try:
            key = json.loads(key_file.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            key = None
        if key != self.key:
            raise ValueError(f"activation cache {self.cache_root} does not belong to this run (its "
                             f"{self._CACHE_KEY} is {'missing or unreadable' if key is None else 'for another key'}); "
                             f"the checkpoint in {self.d.checkpoint_dir} needs it to resume: delete the checkpoint "
                             f"to start over")
        n = len(self.ds)
        for name in self.d.layer_names:
            fn = self.cache_root / f"{safe_name(name)}.npy"
            if not fn.is_file():
                raise FileNotFoundError(f"activation cache {fn} is missing; the checkpoint in "
                                        f"{self.d.checkpoint_dir} needs it to resume: delete the checkpoint to "
                                        f"start over")
            try:
                m = np.load(fn, mmap_mode="r+")
            except (OSError, ValueError) as exc:
                raise ValueError(f"activation cache {fn} is unreadable ({exc}); delete the checkpoint in "
                                 f"{self.d.checkpoint_dir} to start over") from exc
            want = self._shapes.get(name)
            if m.dtype != np.float16 or m.ndim != 4 or m.shape[0] != n or \
                    (want is not None and tuple(m.shape[1:]) != tuple(want)):
                raise ValueError(f"activation cache {fn} has dtype {m.dtype} and shape {m.shape}; this run "
                                 f"needs float16 ({n}, {', '.join(map(str, want or ('C', 'H', 'W')))}); delete "
                                 f"the checkpoint in {self.d.checkpoint_dir} to start over")
            self.cache[name] = m

    def maybe_resume(self) -> None:
        ck = self.check_checkpoint()
        if ck is None:
            return
        d = self.d
        self.sketch, self.topk, self.exact, self.tally = ck["sketch"], ck["topk"], ck["exact"], ck["tally"]
        self.thresholds, self._shapes = ck["thresholds"], ck["shapes"]
        self.finished, self.position = ck["finished"], ck["position"]
        if d.activation_cache and ck["cache_root"]:
            self.cache_root = Path(ck["cache_root"])
            self._open_cache()
        d.resumed = {"path": str(self._ckpt_path()), "finished": list(self.finished),
                     "position": dict(self.position)}

    # ----- results
    def layer_result(self, L: ResultLayer) -> LayerResult:
        t = self.tally[L.key]
        top_values, top_images, top_maps = self.topk[L.key].top()
        return LayerResult(layer=L.module, label_names=list(self.ds.label_names), label_category=self.label_cat_raw,
                           categories=list(self.ds.categories), thresholds=np.asarray(self.thresholds[L.key]),
                           iou=t.iou(), intersection=t.intersection, label_pixels=t.label_pixels,
                           unit_pixels=t.unit_pixels, top_images=top_images, top_values=top_values,
                           top_maps=top_maps,
                           quantile=self.d.quantile, iou_threshold=self.d.iou_threshold,
                           basis="units" if L.rotation is None else f"rotation{L.rotation}")


