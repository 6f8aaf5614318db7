"""Train the embedded default model on the concept dataset.

    PYTHONPATH=$PWD python scripts/train_concept_cnn.py            # writes ./concept_cnn.pt
    PYTHONPATH=$PWD python scripts/train_concept_cnn.py --out interp_engine/models/concept_cnn.pt

(``PYTHONPATH=$PWD`` in a checkout built in place; not needed where interp_engine
is installed.)  Without ``--out`` the weights go to ``concept_cnn.pt`` in the
current directory, never over the shipped ones: replacing those takes
``--out interp_engine/models/concept_cnn.pt``.  The functions (targets,
evaluation, the miniature dissection :func:`unit_iou`) import from here once
``scripts/`` is on ``sys.path``.

Trains :class:`ConceptCNN` on the train split of the concept dataset (seed 0,
2,500 images of 64x64: 2,000 train, 500 val), rendered in memory with
:func:`interp_engine.data.concepts.render_concepts` (the same arrays
:func:`concept_dataset` writes), with random horizontal flips.  Targets come
from the labels alone (:func:`concept_targets`, :func:`dense_targets`): the
four heads of the model plus deep supervision of conv4 (the ``dense`` head:
shape and object colour at each conv4 cell).  Deterministic: fixed seeds,
``torch.use_deterministic_algorithms(True)``, a fixed thread count
(``--threads``, default 2; the shipped weights were trained with 2).
Prints the val accuracies of the saved (float16) weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from interp_engine.capture import Capture
from interp_engine.data.concepts import (COLOR_NAMES, DEFAULT_IMAGE_SIZE, DEFAULT_NUM_IMAGES, LABEL_OFFSET,
                                         SHAPE_NAMES, ConceptArrays, render_concepts)
from interp_engine.models.concept_cnn import OUTPUTS, ConceptCNN, load_model, save_weights

#: where the weights go without --out (the current directory: never the shipped weights unless asked)
DEFAULT_OUT = "concept_cnn.pt"

#: a shape / an object colour is "present" when it covers at least this many label-map pixels
SHAPE_MIN_PIXELS = 4
COLOR_MIN_PIXELS = 4


def concept_targets(data: ConceptArrays) -> Dict[str, np.ndarray]:
    """Training targets from the labels alone: ``shape`` (N, 6) and ``color``
    (N, 11) float32 multi-hot (a label is present when it covers at least
    ``SHAPE_MIN_PIXELS`` / ``COLOR_MIN_PIXELS`` label-map pixels), ``texture``
    (N,) and ``scene`` (N,) int64 class indices."""
    out: Dict[str, np.ndarray] = {}
    for cat, maps, minimum, names in (("shape", data.shape, SHAPE_MIN_PIXELS, SHAPE_NAMES),
                                      ("color", data.color, COLOR_MIN_PIXELS, COLOR_NAMES)):
        lo, k = LABEL_OFFSET[cat], len(names)
        counts = np.stack([np.bincount(m.ravel(), minlength=lo + k)[lo:lo + k] for m in maps]) \
            if len(maps) else np.zeros((0, k), np.int64)
        out[cat] = (counts >= minimum).astype(np.float32)
    out["texture"] = data.texture.astype(np.int64) - LABEL_OFFSET["texture"]
    out["scene"] = data.scene.astype(np.int64) - LABEL_OFFSET["scene"]
    return out


def dense_targets(data: ConceptArrays, size: int) -> Dict[str, np.ndarray]:
    """Per-cell targets of the ``dense`` head at (size, size): the shape
    (0 = none, 1..6) and colour (0 = none, 1..11) at each cell's centre in the
    label maps; int64 (N, size, size)."""
    step = data.shape.shape[1] // size
    centre = slice(step // 2, None, step)
    out = {}
    for cat, maps in (("shape", data.shape), ("color", data.color)):
        m = maps[:, centre, centre].astype(np.int64)
        out[cat] = np.where(m > 0, m - LABEL_OFFSET[cat] + 1, 0)
    return out


def _loss(model: ConceptCNN, x: torch.Tensor, t: Dict[str, torch.Tensor],
          bg_weight: float = 1.0) -> torch.Tensor:
    feats = model.features(x)
    logits = model.classify(feats)
    dense = model.dense(feats)
    n_shape = 1 + len(SHAPE_NAMES)
    w_shape = torch.ones(n_shape)
    w_shape[0] = bg_weight
    w_color = torch.ones(dense.shape[1] - n_shape)
    w_color[0] = bg_weight
    return (F.binary_cross_entropy_with_logits(logits[:, OUTPUTS["shape"]], t["shape"])
            + F.binary_cross_entropy_with_logits(logits[:, OUTPUTS["color"]], t["color"])
            + F.cross_entropy(logits[:, OUTPUTS["texture"]], t["texture"])
            + F.cross_entropy(logits[:, OUTPUTS["scene"]], t["scene"])
            + F.cross_entropy(dense[:, :n_shape], t["dense_shape"], weight=w_shape)
            + F.cross_entropy(dense[:, n_shape:], t["dense_color"], weight=w_color))


@torch.no_grad()
def evaluate(model: ConceptCNN, images: np.ndarray, targets: Dict[str, np.ndarray],
             batch_size: int = 250) -> Dict[str, float]:
    """Accuracies: per-label accuracy of the multi-label heads (logit > 0) and
    exact-set accuracy, class accuracy of texture and scene."""
    model.eval()
    logits = torch.cat([model(ConceptCNN.preprocess(images[i:i + batch_size]))
                        for i in range(0, len(images), batch_size)]).numpy()
    out = {}
    for head in ("shape", "color"):
        pred = logits[:, OUTPUTS[head]] > 0
        out[f"{head}_label_acc"] = float((pred == (targets[head] > 0.5)).mean())
        out[f"{head}_exact_acc"] = float((pred == (targets[head] > 0.5)).all(1).mean())
    for head in ("texture", "scene"):
        out[f"{head}_acc"] = float((logits[:, OUTPUTS[head]].argmax(1) == targets[head]).mean())
    return out


@torch.no_grad()
def capture(model: ConceptCNN, images: np.ndarray, layer: str = "conv4", batch_size: int = 250) -> torch.Tensor:
    """The output of submodule ``layer`` for uint8 images (N, H, W, 3): float32
    (N, K, h, w), through :class:`interp_engine.capture.Capture` (hooks always removed)."""
    outs: List[torch.Tensor] = []
    model.eval()
    with Capture(model, layer) as cap:
        for i in range(0, len(images), batch_size):
            outs.append(cap(ConceptCNN.preprocess(images[i:i + batch_size]))[layer])
    return torch.cat(outs)


def unit_iou(model: ConceptCNN, data: ConceptArrays, layer: str = "conv4",
             top: float = 0.005) -> np.ndarray:
    """A miniature Network Dissection of ``layer`` on ``data`` with the core:
    exact top-``top`` thresholds per unit (:class:`interp_engine.ChannelQuantiles`
    exact pass), masks upsampled to the label size and tallied against the
    colour and shape maps and the texture and scene labels
    (:class:`interp_engine.IoUTally`, rule "annotated").  Returns (K, 28)
    float64 IoUs indexed by global label number."""
    from interp_engine import ChannelQuantiles, IoUTally
    from interp_engine.data.concepts import CATEGORIES, NUM_LABELS, label_categories

    acts = capture(model, data.images, layer)
    k = acts.shape[1]
    cq = ChannelQuantiles(k, seed=0).update(acts)
    plan = cq.exact_pass(1.0 - top)
    plan.update(acts)
    thresholds = plan.result()
    cats = label_categories()
    label_cat = np.array([0] + [CATEGORIES.index(c) for c in cats[1:]], dtype=np.int64)
    tally = IoUTally(k, NUM_LABELS, label_cat, len(CATEGORIES), output_size=data.color.shape[1:])
    tally.update(acts, thresholds, pixel_labels=np.stack([data.color, data.shape], 1),
                 image_labels=np.stack([data.texture, data.scene], 1))
    return tally.iou()


def detector_table(iou: np.ndarray, min_iou: float = 0.04) -> List[tuple]:
    """(unit, category, label, IoU) of each unit's best label, for units with
    IoU >= min_iou, by decreasing IoU."""
    from interp_engine.data.concepts import label_categories, label_names

    names, cats = label_names(), label_categories()
    best = iou.argmax(1)
    rows = [(u, cats[best[u]], names[best[u]], float(iou[u, best[u]])) for u in range(iou.shape[0])
            if iou[u, best[u]] >= min_iou]
    return sorted(rows, key=lambda r: -r[3])


def train(*, seed: int = 0, num_images: int = DEFAULT_NUM_IMAGES, image_size: int = DEFAULT_IMAGE_SIZE,
          epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, threads: int = 2,
          bg_weight: float = 0.2, log: bool = True) -> ConceptCNN:
    """Train a ConceptCNN on the train split of ``render_concepts(num_images, seed=seed)``.

    Runs with ``threads`` torch threads and deterministic algorithms; torch's
    global thread count and determinism flag are restored afterwards."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(seed=seed, num_images=num_images, image_size=image_size, epochs=epochs,
                      batch_size=batch_size, lr=lr, bg_weight=bg_weight, log=log)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _train(*, seed: int, num_images: int, image_size: int, epochs: int, batch_size: int, lr: float,
           bg_weight: float, log: bool) -> ConceptCNN:
    torch.manual_seed(seed)
    data = render_concepts(num_images, seed=seed, image_size=image_size)
    targets = concept_targets(data)
    tr = data.split == "train"
    x = ConceptCNN.preprocess(data.images[tr])
    t = {k: torch.from_numpy(v[tr]) for k, v in targets.items()}
    for k, v in dense_targets(data, image_size // 8).items():
        t[f"dense_{k}"] = torch.from_numpy(v[tr])
    model = ConceptCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed + 1)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], x[idx].flip(3), x[idx])
            tb = {k: v[idx] for k, v in t.items()}
            for k in ("dense_shape", "dense_color"):
                tb[k] = torch.where(flip[:, None, None], tb[k].flip(2), tb[k])
            loss = _loss(model, xb, tb, bg_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log:
            print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f} ({time.time() - start:.0f} s)",
                  flush=True)
    return model.eval()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/train_concept_cnn.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where to write the weights (.pt; default ./{DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bg-weight", type=float, default=0.2,
                        help="weight of the 'none' class in the dense losses (default 0.2)")
    args = parser.parse_args(argv)
    model = train(seed=args.seed, num_images=args.num_images, image_size=args.image_size,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                  bg_weight=args.bg_weight)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    save_weights(model, args.out, extra={"train_config": config})
    # report on the saved (float16) weights
    data = render_concepts(args.num_images, seed=args.seed, image_size=args.image_size)
    val = data.split == "val"
    targets = {k: v[val] for k, v in concept_targets(data).items()}
    acc = evaluate(load_model(args.out), data.images[val], targets)
    for k, v in acc.items():
        print(f"val {k}: {v:.4f}")
    val_data = ConceptArrays(*(getattr(data, f.name)[val] for f in dataclasses.fields(ConceptArrays)))
    model = load_model(args.out)
    for layer in ("conv3", "conv4"):
        table = detector_table(unit_iou(model, val_data, layer))
        by_cat: Dict[str, int] = {}
        for row in table:
            by_cat[row[1]] = by_cat.get(row[1], 0) + 1
        print(f"{layer}: {len(table)} units with IoU >= 0.04 {by_cat}; "
              f"unique labels {len(set(r[2] for r in table))}; top: "
              + ", ".join(f"{u}:{lab} {v:.2f}" for u, _, lab, v in table[:12]))
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
