"""Prediction-difference maximization (Dong et al., CVPR 2017; our
formulation: docs/algorithms.md §6, docs/topics.md "Prediction difference"):
the ablation runs (a Sequential split, or the whole model with hooks through
:class:`~interp_engine.capture.OutputHooks`), the masked accumulation and the
per-neuron top targets.  The method and its settings are
:class:`~interp_engine.methods.topics.TopicInterpretation`.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from ...engine.checks import describe
from .result import PredictionDifference

__all__: List[str] = []


def _accumulate(sums: Any, counts: Any, drops: Any, active: Any) -> None:
    """``sums (R, T) += einsum("br,rbt->rt", active (B, R), drops (R, B, T))``
    and ``counts (R,) += active.sum(0)``: the masked accumulation of one chunk,
    as one batched float64 matrix product (``bmm`` of (R, 1, B) by (R, B, T);
    benchmarks/bench_topics.py compares it with an einsum, a per-neuron loop
    and numpy scatter / einsum)."""
    import torch

    a = active.t().to(torch.float64).unsqueeze(1)  # (R, 1, B)
    sums += torch.bmm(a, drops.to(torch.float64)).squeeze(1)
    counts += active.sum(0).to(counts.dtype)


def _top_k(scores: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per row of (K, T) float64 scores (NaN rows = never active): the top ``k``
    indices (stable descending: ties keep the lower index first) and values;
    -1 / NaN for NaN rows.  One vectorized stable ``np.argsort`` over all rows
    (faster than ``torch.sort(stable=True)`` on CPU: benchmarks/bench_topics.py);
    returns numpy int64 / float64 arrays."""
    s = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    s = np.asarray(s, np.float64)
    filled = np.where(np.isnan(s), -np.inf, s)
    idx = np.argsort(-filled, axis=1, kind="stable")[:, :k].astype(np.int64)
    vals = np.take_along_axis(filled, idx, 1)
    dead = np.isnan(s).all(1) if s.shape[1] else np.ones(len(s), bool)
    idx[dead] = -1
    vals[dead] = np.nan
    return idx, vals


def _batches(data: Any, batch_size: int) -> Iterable[Any]:
    import torch

    if isinstance(data, torch.Tensor):
        if data.dim() < 1 or len(data) == 0:
            raise ValueError(f"data must be a non-empty batch of inputs (N, ...), got {describe(data)}")
        return (data[i:i + batch_size] for i in range(0, len(data), batch_size))
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, Mapping)):
        raise TypeError(f"data must be a tensor of inputs (N, ...) or an iterable of batches (tensors, "
                        f"(input, ...) tuples or dicts with 'image'), got {type(data).__name__}")
    return data


def _probs_from_output(output: Any, where: str) -> Any:
    import torch

    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() != 2:
        raise TypeError(f'targets="classes" needs a model whose output is float logits (B, classes); {where} '
                        f"returned {describe(output)}; pass targets=callable to map the output to probabilities")
    return torch.softmax(output.float(), dim=1)


def _check_probs(p: Any, b: int, where: str) -> Any:
    import torch

    if not isinstance(p, torch.Tensor):
        try:
            p = torch.as_tensor(np.asarray(p))
        except (TypeError, ValueError):
            raise TypeError(f"{where} must return probabilities (B, T) as a tensor or array, got "
                            f"{type(p).__name__}") from None
    if not p.is_floating_point() or p.dim() != 2 or p.shape[0] != b or p.shape[1] == 0:
        raise ValueError(f"{where} must return float probabilities of shape ({b}, T) with T >= 1, got "
                         f"{describe(p)}")
    return p.float()


def _check_layer_output(out: Any, layer: str) -> Any:
    import torch

    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"layer {layer!r} has no neurons to ablate: its output must be a floating-point tensor "
                        f"(B, C) or (B, C, *spatial) with channels on axis 1, got {describe(out)}")
    if out.dim() < 2:
        raise ValueError(f"layer {layer!r} has no neurons to ablate: its output must be (B, C) or "
                         f"(B, C, *spatial) with channels on axis 1, got shape {tuple(out.shape)}")
    if out.shape[1] == 0:
        raise ValueError(f"layer {layer!r} has no neurons to ablate: its output has 0 channels "
                         f"(shape {tuple(out.shape)})")
    return out


def torch_cat(parts: List[Any]) -> Any:
    import torch

    return torch.cat(parts, 0)


def _set_channels(rep: Any, chans: Any, values: Any) -> Any:
    """``rep`` (R, B, C, *spatial), contiguous: channel ``chans[r]`` of copy r
    set to ``values[r]`` (in place); returns rep."""
    import torch

    r = rep.shape[0]
    view = rep.view(r, rep.shape[1], rep.shape[2], -1)
    view[torch.arange(r), :, chans] = values.to(rep.dtype)[:, None, None]
    return rep


class _Plan:
    """How one forward with ablations runs (a Sequential split or the whole model with hooks)."""

    def __init__(self, model: Any, layer: str, targets: Any, topic_fn: Optional[Callable[[Any], Any]],
                 topic_layer: Optional[str]) -> None:
        from torch import nn

        self.model, self.layer, self.targets = model, layer, targets
        self.topic_fn, self.topic_layer = topic_fn, topic_layer
        self.prefix = self.suffix = None
        names = list(model._modules) if isinstance(model, nn.Sequential) else []
        sequential = type(model).forward is nn.Sequential.forward and layer in names
        if sequential and targets == "topics":
            sequential = topic_layer in names and names.index(topic_layer) >= names.index(layer)
        if sequential:
            i = names.index(layer) + 1
            j = names.index(topic_layer) + 1 if targets == "topics" else len(names)
            self.prefix = nn.Sequential(*[model._modules[n] for n in names[:i]])
            self.suffix = nn.Sequential(*[model._modules[n] for n in names[i:j]])
        self.split = sequential
        # hook route: "expand" (the layer's output of the B samples is replicated R times inside the hook, so
        # only the modules after it run on R*B rows) is tried on the first chunk and checked against "replicate"
        # (the input replicated R times; always valid); None = not yet known
        self.expand_ok: Optional[bool] = None
        self.replicate_chunk: Optional[int] = None
        self._ablate: Optional[Tuple[Any, Any, int]] = None
        self._feats: Optional[Any] = None
        self._topic_out: Optional[Any] = None

    # -- the probabilities of the targets from the end of the forward
    def _finish(self, output: Any, topic_feats: Any, b: int) -> Any:
        if self.targets == "topics":
            return _check_probs(self.topic_fn(topic_feats), b, "topic_head")
        if self.targets == "classes":
            return _probs_from_output(output, "the model")
        return _check_probs(self.targets(output), b, "targets (the callable)")

    def clean(self, x: Any) -> Tuple[Any, Any]:
        """The layer's output (B, C, ...) and the clean probabilities (B, T)."""
        b = x.shape[0]
        if self.split:
            feats = _check_layer_output(self.prefix(x), self.layer)
            out = self.suffix(feats)
            return feats, self._finish(out, out, b)
        self._ablate = None
        out = self.model(x)
        feats = self._feats
        if feats is None:
            raise RuntimeError(f"layer {self.layer!r} produced no output during the forward pass")
        return feats, self._finish(out, self._topic_out, b)

    def ablated(self, x: Any, feats: Any, chans: Any, values: Any) -> Any:
        """Probabilities (R, B, T) with channel ``chans[r]`` set to ``values[r]`` in copy r."""
        import torch

        r, b = len(chans), x.shape[0]
        if self.split:
            rep = _set_channels(feats.unsqueeze(0).expand(r, *feats.shape).clone(), chans, values)
            out = self.suffix(rep.flatten(0, 1))
            return self._finish(out, out, r * b).view(r, b, -1)
        if self.expand_ok is None and r > 1:  # check expand on 2 neurons (2 full forwards of the replicate route)
            p_exp = self._try_expand(x, chans[:2], values[:2])
            p_rep = self._replicated(x, chans[:2], values[:2])
            self.expand_ok = p_exp is not None and p_exp.shape == p_rep.shape and \
                bool(torch.allclose(p_exp, p_rep, rtol=1e-4, atol=1e-6))
        if self.expand_ok and r > 1:
            p_exp = self._try_expand(x, chans, values)
            if p_exp is not None:
                return p_exp
        return self._replicated(x, chans, values)

    def _try_expand(self, x: Any, chans: Any, values: Any) -> Optional[Any]:
        try:
            return self._run(x, chans, values, "expand")
        except Exception:  # a model that mixes the layer's output with earlier tensors (skip connections)
            return None

    def _replicated(self, x: Any, chans: Any, values: Any) -> Any:
        b = x.shape[0]
        step = self.replicate_chunk or max(1, 2048 // b)  # the whole model runs on every copy: ~2048 rows
        parts = [self._run(x, chans[i:i + step], values[i:i + step], "replicate") for i in range(0, len(chans), step)]
        return parts[0] if len(parts) == 1 else torch_cat(parts)

    def _run(self, x: Any, chans: Any, values: Any, how: str) -> Any:
        r, b = len(chans), x.shape[0]
        self._ablate = (chans, values, r, how)
        self._topic_out = None
        try:
            out = self.model(x if how == "expand" else x.repeat(r, *([1] * (x.dim() - 1))))
        finally:
            self._ablate = None
        return self._finish(out, self._topic_out, r * b).view(r, b, -1)

    # -- hooks of the whole-model route (capture.OutputHooks: fn(output) -> replacement or None)
    def layer_hook(self, output: Any) -> Any:
        if self._ablate is None:
            self._feats = _check_layer_output(output, self.layer).detach()
            return None
        chans, values, r, how = self._ablate
        out = _check_layer_output(output, self.layer)
        if how == "expand":
            rep = out.unsqueeze(0).expand(r, *out.shape).clone()
            return _set_channels(rep, chans, values).flatten(0, 1)
        rep = out.reshape(r, out.shape[0] // r, *out.shape[1:]).clone()
        return _set_channels(rep, chans, values).view(out.shape)

    def topic_hook(self, output: Any) -> None:
        self._topic_out = output


def prediction_difference(ti: Any, data: Any) -> PredictionDifference:
    """Run prediction-difference maximization with the settings of ``ti``
    (a :class:`~interp_engine.methods.topics.TopicInterpretation`, validated
    by its constructor; its topic head resolved) on ``data``."""
    import torch

    from ...capture import OutputHooks, input_of, model_device_dtype

    model, layer, targets, ablation = ti.model, ti.layer, ti.targets, ti.ablation
    batch_size, neurons, n_ablate = ti.batch_size, ti.neurons, ti.n_ablate
    active_threshold, top_k = ti.active_threshold, ti.top_k
    topic_head, topic_pooling, topic_softmax = ti.topic_head, ti.topic_pooling, ti.topic_softmax
    topic_layer = (ti.topic_layer or layer) if targets == "topics" else None
    topic_fn = None
    if targets == "topics":
        if topic_head is None:
            raise ValueError('targets="topics" needs topic_head= (an InterpretiveLoss, or a callable mapping '
                             "the pooled features of topic_layer to (B, T) topic probabilities), got None; or "
                             "fit(data, descriptions) to fit one")
        from .loss import InterpretiveLoss

        if isinstance(topic_head, InterpretiveLoss):
            def topic_fn(f: Any) -> Any:
                return topic_head.predict(f, softmax=topic_softmax)
        else:
            def topic_fn(f: Any) -> Any:
                if topic_pooling != "none" and isinstance(f, torch.Tensor) and f.dim() > 2:
                    f = f.flatten(2).mean(2) if topic_pooling == "mean" else f.flatten(2).amax(2)
                p = topic_head(f)
                return torch.softmax(p, dim=1) if topic_softmax and isinstance(p, torch.Tensor) else p
    if ablation == "mean" and not isinstance(data, torch.Tensor) and iter(data) is data:
        raise TypeError('ablation="mean" reads data twice: pass a tensor, a list of batches or a DataLoader, '
                        f"not a one-shot iterator ({type(data).__name__})")
    mdev, mdtype = model_device_dtype(model)
    dev = ti.device if ti.device is not None else mdev

    def inputs() -> Iterable[Any]:
        for i, batch in enumerate(_batches(data, batch_size)):
            x = input_of(batch, f"batch {i}")
            if x.shape[0] == 0:
                continue
            yield x.to(device=dev, dtype=mdtype) if x.is_floating_point() and mdtype is not None else x.to(dev)

    plan = _Plan(model, layer, targets, topic_fn, topic_layer)
    hooks = contextlib.nullcontext()
    if not plan.split:
        pairs = [(layer, plan.layer_hook)] + ([(topic_layer, plan.topic_hook)] if targets == "topics" else [])
        hooks = OutputHooks(model, pairs)  # registered in this order: the topic hook sees the ablated output
    with hooks, torch.no_grad():
        means = None
        if ablation == "mean":
            tot, n_pos = None, 0
            for x in inputs():
                feats, _ = plan.clean(x)
                f = feats.double().transpose(0, 1).reshape(feats.shape[1], -1)
                tot = f.sum(1) if tot is None else tot + f.sum(1)
                n_pos += f.shape[1]
            if tot is None:
                raise ValueError("data yielded no samples")
            means = tot / n_pos
        sums = counts = chans_all = values_all = None
        n_samples, n_targets = 0, None
        for x in inputs():
            feats, p0 = plan.clean(x)
            c = feats.shape[1]
            if chans_all is None:
                chans_all = _neuron_index(neurons, c, layer).to(feats.device)
                k = len(chans_all)
                n_targets = p0.shape[1]
                sums = torch.zeros(k, n_targets, dtype=torch.float64, device=feats.device)
                counts = torch.zeros(k, dtype=torch.int64, device=feats.device)
                values_all = (means[chans_all] if means is not None
                              else torch.zeros(k, dtype=torch.float64, device=feats.device))
                # about 2**24 layer values per forward after the layer
                chunk = n_ablate or max(1, (1 << 24) // (max(1, feats[0].numel()) * x.shape[0]))
                plan.replicate_chunk = n_ablate
                c0 = c
            elif c != c0:
                raise ValueError(f"layer {layer!r} changed its channel count between batches: {c0} then {c}")
            if p0.shape[1] != n_targets:
                raise ValueError(f"the number of targets changed between batches: {n_targets} then {p0.shape[1]}")
            b = x.shape[0]
            act = feats.reshape(b, c, -1).amax(2) > active_threshold  # (B, C)
            act = act[:, chans_all]
            for s in range(0, len(chans_all), chunk):
                sl = slice(s, s + chunk)
                p = plan.ablated(x, feats, chans_all[sl], values_all[sl])
                _accumulate(sums[sl], counts[sl], p0.unsqueeze(0) - p, act[:, sl])
            n_samples += b
        if sums is None:
            raise ValueError("data yielded no samples")
        scores = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].double(),
                             torch.full_like(sums, math.nan))
        top_idx, top_val = _top_k(scores, min(top_k, n_targets))
    names = _target_names(ti._target_names_for(n_targets), n_targets, targets, topic_head)
    return PredictionDifference(
        layer=layer, targets=targets if isinstance(targets, str) else "callable", ablation=ablation,
        neurons=chans_all.cpu().numpy().astype(np.int64), target_names=names, scores=scores.cpu().numpy(),
        counts=counts.cpu().numpy(), n_samples=n_samples, top_targets=top_idx, top_scores=top_val,
        ablation_values=values_all.cpu().numpy())


def check_neurons(neurons: Any, c: Optional[int] = None, layer: Optional[str] = None) -> List[int]:
    """``neurons`` as a list of distinct channel indices: in ``[0, c)`` of ``layer`` when ``c`` is
    given, else only >= 0 (the range is checked when the layer is known)."""
    if isinstance(neurons, (str, bytes)) or not isinstance(neurons, Iterable):
        raise TypeError(f"neurons must be a sequence of channel indices or None, got {type(neurons).__name__}")
    idx = list(neurons)
    if not idx:
        raise ValueError("neurons must not be empty (None = all channels)")
    for v in idx:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"neurons must hold ints, got {v!r} ({type(v).__name__})")
        if c is None and v < 0:
            raise ValueError(f"neurons must be channel indices >= 0, got {int(v)}")
        if c is not None and not 0 <= v < c:
            raise ValueError(f"neurons must be channel indices in [0, {c}) of layer {layer!r}, got {int(v)}")
    if len(set(int(v) for v in idx)) != len(idx):
        raise ValueError("neurons must not repeat an index")
    return [int(v) for v in idx]


def _neuron_index(neurons: Any, c: int, layer: str) -> Any:
    import torch

    if neurons is None:
        return torch.arange(c)
    return torch.tensor(check_neurons(neurons, c, layer), dtype=torch.int64)


def _target_names(names: Optional[Sequence[str]], t: int, targets: Any, topic_head: Any) -> List[str]:
    if names is None:
        prefix = "t" if targets == "topics" else ("class " if targets == "classes" else "target ")
        return [f"{prefix}{i}" for i in range(t)]
    if isinstance(names, str) or len(names) != t:
        raise ValueError(f"target_names must be a sequence of {t} names (one per target), got {names!r}"[:300])
    return [str(n) for n in names]
