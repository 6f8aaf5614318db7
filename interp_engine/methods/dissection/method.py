"""Network Dissection (Bau et al., CVPR 2017), end to end on Broden-format data.

``Dissection(model, layers, **settings).explain(dataset)`` labels every unit
of one or more layers of any ``torch.nn.Module`` with the concept whose masks
best overlap the unit's top-quantile activation regions (IoU) and returns a
:class:`~interp_engine.methods.dissection.result.DissectionResult`.
Semantics: docs/algorithms.md §1; the page: docs/dissection.md.  The
counting is done by the compiled core (:class:`~interp_engine.ChannelQuantiles`
for the thresholds, :class:`~interp_engine.IoUTally` for the counts).

The package, by role:

- ``method.py`` (here): the :class:`Dissection` settings and the pass loop
  (forward hooks, the activation cache's source, Ctrl-C, checkpoints' timing);
- ``state.py``: the run's accumulators, the passes that feed them, the
  activation cache;
- ``checkpoint.py``: the checkpoint file, its schema and its checks;
- ``accumulators.py``: :class:`TopImages`, the running top images per unit;
- ``result.py``: :class:`LayerResult`, :class:`DissectionResult` and their file;
- ``rotation.py``: the random bases of the paper's basis experiment;
- ``datasets.py``: what a dataset provides, and its part of the checkpoint key.

Dissection learns nothing from the data (the thresholds and counts are
statistics of the data it explains), so it has no ``fit``: ``explain`` is
its one verb.  ``Dissection.run``, :func:`dissect` and
:func:`rotation_experiment` are deprecated aliases.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ...engine.checks import (check_bool, check_choice, check_device, check_int, check_num_threads,
                             check_positive_int, check_real, describe)
from ...engine.iou import UNIT_RULES
from ...engine.resize import check_method
from .checkpoint import PASSES
from .datasets import as_dataset, dataset_fingerprint
from .result import DissectionResult
from .rotation import rotate
from .state import ResultLayer, _RunState

__all__ = ["Dissection", "dissect", "rotation_experiment"]



class Dissection:
    """Network Dissection of one or more layers of ``model``.

    Args:
        model: any ``torch.nn.Module``; it is put in eval mode for the run and
            left as it was (training flags, device) afterwards.
        layers: a layer name (``"layer4"``, ``"features.17"``, nested names)
            or a list of them; see :mod:`interp_engine.capture` for the
            accepted outputs (``(B, C, H, W)``; ``(B, C)``; tokens).
        quantile: the top fraction of activations that defines a unit's
            active region (0.005: top 0.5%).
        iou_threshold: IoU at which a unit counts as a detector (0.04).
        thresholds: ``"exact"`` (default; equal to ``np.quantile``, one more
            pass) or ``"approx"`` (the sketch's estimate, rank error 1e-4).
        unit_rule: ``"annotated"`` (original NetDissect) or ``"lite"``
            (NetDissect-Lite's rule); see :class:`IoUTally`.
        resize: how a unit's maps are brought to the label maps' size:
            ``"bilinear"`` (PyTorch's ``F.interpolate`` default, the
            bilinear upsampling the paper describes),
            ``"antialias"`` (``antialias=True``) or ``"pil"`` (Pillow's
            float32 resize, what NetDissect-Lite's code runs).  They differ
            only for layers whose maps are larger than the label maps.
            Default (None): ``"pil"`` with ``unit_rule="lite"`` (the Lite
            compatibility mode), else ``"bilinear"``.
        categories, transform: used when ``dataset`` is a path (see
            :class:`interp_engine.data.BrodenDataset`).
        batch_size, num_workers: of the DataLoader.
        device: where the model runs (default: where its parameters are).
        top_k: top-activating images kept per unit (10).
        rotations: seeds of random orthogonal bases to dissect as well (the
            paper's basis experiment): each adds a result ``"<layer>@rotation<seed>"``.
        activation_cache: cache the activations as float16 on disk so that the
            model runs once; ``cache_dir`` is where (default: a temporary
            directory removed after the run).
        checkpoint_dir, checkpoint_every, checkpoint_interval: save and
            resume (see module docs): a checkpoint is written every
            ``checkpoint_every`` batches (50) and whenever
            ``checkpoint_interval`` seconds (60; 0: after every batch) have
            passed since the last one, at the end of every pass, and when
            the run stops on an exception or Ctrl-C between batches.
        progress: show progress bars (tqdm when installed).
        seed: seed of the quantile sketches.
        num_threads: threads of the core (None: all cores).
    """

    def __init__(self, model, layers: Union[str, Sequence[str]], *, quantile: float = 0.005,
                 iou_threshold: float = 0.04, thresholds: str = "exact", unit_rule: str = "annotated",
                 resize: Optional[str] = None,
                 categories: Optional[Sequence[str]] = None, transform: Any = "netdissect",
                 batch_size: int = 64, num_workers: int = 0, device: Any = None, top_k: int = 10,
                 rotations: Sequence[int] = (), activation_cache: bool = False,
                 cache_dir: Optional[Union[str, os.PathLike]] = None,
                 checkpoint_dir: Optional[Union[str, os.PathLike]] = None, checkpoint_every: int = 50,
                 checkpoint_interval: float = 60.0,
                 progress: bool = True, seed: int = 0, num_threads: Optional[int] = None,
                 adapter: Any = "auto") -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if isinstance(layers, str):
            layers = [layers]
        if not isinstance(layers, (list, tuple)):
            raise TypeError(f"layers must be a layer name or a list of names; got {describe(layers)}")
        layers = list(layers)
        if not layers or not all(isinstance(x, str) and x for x in layers):
            raise ValueError(f"layers must be a non-empty layer name or list of names; got {layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a name; got {layers!r}")
        quantile = check_real(quantile, "quantile", what="a float in (0, 1) (the top fraction, e.g. 0.005)")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be a float in (0, 1) (the top fraction, e.g. 0.005); got {quantile!r}")
        iou_threshold = check_real(iou_threshold, "iou_threshold", what="a float in [0, 1]")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be a float in [0, 1]; got {iou_threshold!r}")
        check_choice(thresholds, "thresholds", ("exact", "approx"))
        check_choice(unit_rule, "unit_rule", UNIT_RULES)
        if resize is None:
            resize = "pil" if unit_rule == "lite" else "bilinear"
        check_method(resize, "resize")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        num_workers = check_int(num_workers, "num_workers", minimum=0)
        top_k = check_int(top_k, "top_k", minimum=0)
        self.checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        if isinstance(checkpoint_interval, bool) or not isinstance(checkpoint_interval, (int, float)) \
                or not math.isfinite(checkpoint_interval) or checkpoint_interval < 0:
            raise ValueError(f"checkpoint_interval must be a number of seconds >= 0 (0: after every batch); "
                             f"got {checkpoint_interval!r}")
        self.checkpoint_interval = float(checkpoint_interval)
        if isinstance(rotations, (str, bytes)) or not hasattr(rotations, "__iter__"):
            raise TypeError(f"rotations must be a sequence of integer seeds; got {describe(rotations)}")
        rotations = list(rotations)
        for r in rotations:
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) or r < 0:
                raise ValueError(f"rotations must be non-negative integer seeds; got {r!r}")
        rotations = [int(r) for r in rotations]
        device = check_device(device)
        seed = check_int(seed, "seed", maximum=None)
        num_threads = check_num_threads(num_threads) or None
        activation_cache = check_bool(activation_cache, "activation_cache")
        progress = check_bool(progress, "progress")
        from ...capture import find_module

        for name in layers:
            find_module(model, name)  # ValueError with close matches
        self.model = model
        self.layer_names = layers
        self.quantile = float(quantile)
        self.iou_threshold = float(iou_threshold)
        self.thresholds = thresholds
        self.unit_rule = unit_rule
        self.resize = resize
        self.categories = None if categories is None else list(categories)
        self.transform = transform
        self.num_workers = num_workers
        self.device = None if device is None else torch.device(device)
        self.top_k = top_k
        self.rotations = rotations
        self.activation_cache = bool(activation_cache)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.progress = bool(progress)
        self.seed = int(seed)
        self.num_threads = num_threads
        self.adapter = adapter
        self._layers = [ResultLayer(n, n, None) for n in layers] + \
            [ResultLayer(f"{n}@rotation{r}", n, r) for n in layers for r in rotations]
        #: test hook: called with (pass name, batch number) after each batch
        self._after_batch: Optional[Callable[[str, int], None]] = None
        #: how the model and data were named (e.g. by the command line): stored in checkpoints and
        #: shown when one is refused; not part of the checkpoint key
        self.provenance: Dict[str, Any] = {}
        #: after :meth:`explain` returns or raises: None (no checkpoint written by this run) or
        #: {"path", "pass", "next_batch", "batches", "finished"}: where progress was saved
        self.last_checkpoint: Optional[Dict[str, Any]] = None
        #: after :meth:`explain`: None, or {"path", "finished", "position"} of the checkpoint it resumed from
        self.resumed: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ helpers
    def _config(self, ds) -> Dict[str, Any]:
        config = {"layers": self.layer_names, "quantile": self.quantile, "iou_threshold": self.iou_threshold,
                  "thresholds": self.thresholds, "unit_rule": self.unit_rule, "batch_size": self.batch_size,
                  "resize": self.resize, "top_k": self.top_k, "rotations": self.rotations, "seed": self.seed,
                  "activation_cache": self.activation_cache, "num_images": len(ds),
                  "num_labels": len(ds.label_names), "categories": list(ds.categories),
                  "dataset": str(getattr(ds, "root", type(ds).__name__))}
        config.update(self._fingerprints(ds))
        return config

    def _fingerprints(self, ds) -> Dict[str, Any]:
        """The model, adapter and data parts of the checkpoint key (see
        :func:`interp_engine._fingerprint.model_fingerprint` and
        :meth:`interp_engine.data.BrodenDataset.fingerprint`)."""
        from ..._fingerprint import callable_name, model_fingerprint

        adapter = self.adapter if isinstance(self.adapter, str) or self.adapter is None \
            else callable_name(self.adapter)
        return {"model": model_fingerprint(self.model), "adapter": adapter, "data": dataset_fingerprint(ds)}

    def _loader(self, ds, start_batch: int, *, image: bool = True, pixel_labels: bool = True):
        import torch

        if hasattr(ds, "with_fields"):  # skip decoding what the pass does not use
            ds = ds.with_fields(image=image, pixel_labels=pixel_labels)
        start = min(len(ds), start_batch * self.batch_size)
        sub = torch.utils.data.Subset(ds, range(start, len(ds)))
        return torch.utils.data.DataLoader(sub, batch_size=self.batch_size, shuffle=False,
                                           num_workers=self.num_workers,
                                           pin_memory=bool(self.device is not None and self.device.type == "cuda"))

    def _bar(self, total: int, initial: int, desc: str):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is optional
            return None
        return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False)

    # ------------------------------------------------------------------ explain
    def explain(self, dataset: Any) -> DissectionResult:
        """Dissect on ``dataset`` (a Broden directory or a BrodenDataset-like
        object) and return a :class:`DissectionResult`: one
        :class:`LayerResult` per layer, and per layer and rotation seed one
        ``"<layer>@rotation<seed>"``.  With ``checkpoint_dir``, resumes from
        the checkpoint of this run there (refused, naming what differs, when
        it belongs to another run or is damaged; see :meth:`check_checkpoint`)."""
        import torch

        from ...capture import Capture

        ds = as_dataset(dataset, self.categories, self.transform)
        if len(ds) == 0:
            raise ValueError("dataset has no images")
        num_labels = len(ds.label_names)
        if np.shape(ds.label_category) != (num_labels,):
            raise ValueError(f"dataset.label_category must have shape ({num_labels},); "
                             f"got {np.shape(ds.label_category)}")
        config = self._config(ds)
        n_batches = -(-len(ds) // self.batch_size)

        model = self.model
        flags = {m: m.training for m in model.modules()}
        params = list(model.parameters()) + list(model.buffers())
        home = params[0].device if params else torch.device("cpu")
        device = self.device or home
        timings = {"forward": 0.0, "total": 0.0}
        t_start = time.perf_counter()

        state = _RunState(self, config, ds)
        self.last_checkpoint = self.resumed = None
        state.maybe_resume()
        cache_tmp = None
        try:
            model.eval()
            if device != home:
                model.to(device)
            with Capture(model, self.layer_names, adapter=self.adapter, stop_early=True) as cap:
                if self.activation_cache and state.cache_root is None:
                    base = self.cache_dir if self.cache_dir is not None else \
                        (self.checkpoint_dir / "activations" if self.checkpoint_dir is not None else None)
                    if base is not None:
                        # one subdirectory per run key: runs of other models or data never share files
                        state.cache_root = base / f"run-{state.key[:16]}"
                    else:
                        import tempfile

                        cache_tmp = tempfile.TemporaryDirectory(prefix="interp_engine_cache_")
                        state.cache_root = Path(cache_tmp.name)

                def source(pass_name: str, start: int):
                    """Yield (batch number, batch dict, {layer: acts}) from the model or the cache."""
                    use_cache = self.activation_cache and pass_name != "quantiles"
                    loader = self._loader(ds, start, image=not use_cache, pixel_labels=pass_name == "iou")
                    for b, batch in enumerate(loader, start=start):
                        if use_cache:
                            lo = b * self.batch_size
                            hi = lo + batch["index"].shape[0]
                            acts = {n: torch.from_numpy(np.asarray(state.cache[n][lo:hi])) for n in self.layer_names}
                        else:
                            t0 = time.perf_counter()
                            x = batch["image"].to(device)
                            acts = {n: a.detach() for n, a in cap(x).items()}
                            timings["forward"] += time.perf_counter() - t0
                            if self.activation_cache:
                                acts = {n: a.to(torch.float16) for n, a in acts.items()}
                                state.write_cache(acts, b * self.batch_size, len(ds))
                        yield b, batch, acts

                def views(acts):
                    """The activations of every result layer (rotations applied), float."""
                    out = {}
                    for L in self._layers:
                        a = acts[L.module]
                        if L.rotation is not None:
                            a = rotate(a, state.rotation(L, a.shape[1]))
                        out[L.key] = a
                    return out

                for pass_name in self._passes():
                    if state.done(pass_name):
                        continue
                    start = state.start_batch(pass_name)
                    state.begin(pass_name)
                    bar = self._bar(n_batches, start, pass_name)
                    done, dirty = start, False  # batches consumed; True while a batch is half-added
                    last_ck = time.monotonic()
                    try:
                        for b, batch, acts in source(pass_name, start):
                            v = views(acts)
                            with _DeferSigint():  # Ctrl-C waits until the batch is added (or never half-added)
                                dirty = True
                                state.consume(pass_name, batch, v)
                                dirty, done = False, b + 1
                            if bar is not None:
                                bar.update(1)
                            if self._after_batch is not None:
                                self._after_batch(pass_name, b)
                            if done < n_batches and (
                                    done % self.checkpoint_every == 0
                                    or time.monotonic() - last_ck >= self.checkpoint_interval):
                                with _DeferSigint():
                                    state.checkpoint(pass_name, done)
                                last_ck = time.monotonic()
                    except (Exception, KeyboardInterrupt):
                        # progress up to the last whole batch is consistent: keep it
                        if not dirty and done > state.start_batch(pass_name):
                            try:
                                with _DeferSigint():
                                    state.checkpoint(pass_name, done)
                            except Exception:  # noqa: BLE001 - the original error is the one to report
                                pass
                        raise
                    finally:
                        if bar is not None:
                            bar.close()
                    state.finish(pass_name)
                    with _DeferSigint():
                        state.checkpoint(pass_name, n_batches, finished=True)
        finally:
            if device != home:
                model.to(home)
            for m, f in flags.items():
                m.training = f
            if cache_tmp is not None:
                state.cache = {}
                cache_tmp.cleanup()
        timings["total"] = time.perf_counter() - t_start
        layers = {L.key: state.layer_result(L) for L in self._layers}
        return DissectionResult(layers, config, timings)

    def run(self, dataset: Any) -> DissectionResult:
        """Deprecated alias of :meth:`explain`."""
        warnings.warn("Dissection.run is deprecated; use Dissection.explain", DeprecationWarning, stacklevel=2)
        return self.explain(dataset)

    def check_checkpoint(self, dataset: Any) -> Optional[Dict[str, Any]]:
        """Check, without running, that the checkpoint in ``checkpoint_dir``
        (if any) was written for this model, data and settings and is whole
        (the file is read and checked as :meth:`explain` would before resuming):
        returns None (no checkpoint), or ``{"path", "finished", "position"}``
        of the one :meth:`explain` will resume from; ValueError naming what
        differs when it belongs to another run, or the file and the field
        when it is damaged (as :meth:`explain` would raise)."""
        ds = as_dataset(dataset, self.categories, self.transform)
        state = _RunState(self, self._config(ds), ds)
        meta = state.check_checkpoint()
        if meta is None:
            return None
        return {"path": str(state._ckpt_path()), "finished": list(meta.get("finished", [])),
                "position": dict(meta.get("position", {}))}

    def _passes(self) -> Tuple[str, ...]:
        return PASSES if self.thresholds == "exact" else ("quantiles", "iou")


class _DeferSigint:
    """Within the block, Ctrl-C (SIGINT) is held back and raised as
    KeyboardInterrupt when the block ends, so that an accumulator never keeps
    half a batch and a checkpoint file is never half written.  Only in the
    main thread and only while Python's default SIGINT handler is installed
    (elsewhere the block runs unchanged; the run then checks that no batch
    was half added before it saves progress)."""

    def __init__(self) -> None:
        self.pending = False
        self.old: Any = None

    def _handler(self, signum, frame) -> None:
        self.pending = True

    def __enter__(self) -> "_DeferSigint":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, et, ev, tb) -> None:
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            self.old = None
        if self.pending and et is None:
            raise KeyboardInterrupt


# ----------------------------------------------------------------------------- deprecated functions
def dissect(model, layers: Union[str, Sequence[str]], dataset: Any, **kwargs: Any) -> DissectionResult:
    """Deprecated: ``Dissection(model, layers, **kwargs).explain(dataset)``.

    (One spelling per method: the class keeps what a run leaves behind,
    ``last_checkpoint``, ``resumed`` and ``check_checkpoint``, which this
    shorthand hid.)"""
    warnings.warn("dissect is deprecated; use Dissection(model, layers, **settings).explain(dataset)",
                  DeprecationWarning, stacklevel=2)
    return Dissection(model, layers, **kwargs).explain(dataset)


def rotation_experiment(model, layer: str, dataset: Any, *, seed: int = 0, **kwargs: Any) -> Dict[str, Any]:
    """Deprecated: ``Dissection(model, [layer], rotations=[seed], **kwargs).explain(dataset)``
    then :meth:`DissectionResult.rotation_summary(layer, seed) <DissectionResult.rotation_summary>`,
    which returns the same dict: ``{"units": LayerResult, "rotated":
    LayerResult, "unique_units": int, "unique_rotated": int, "detectors_units":
    int, "detectors_rotated": int}``."""
    warnings.warn("rotation_experiment is deprecated; use Dissection(model, [layer], rotations=[seed], "
                  "**settings).explain(dataset).rotation_summary(layer, seed)", DeprecationWarning, stacklevel=2)
    seed = check_int(seed, "seed", minimum=0)
    res = Dissection(model, [layer], rotations=[seed], **kwargs).explain(dataset)
    return res.rotation_summary(layer, seed)
