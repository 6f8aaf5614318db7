"""How much the resize of a layer's maps to the label maps changes a dissection,
and what each resize costs (the numbers in docs/dissection.md and docs/iou.md).

    PYTHONPATH=$PWD python benchmarks/eval_resize.py [--images 2500] [--layer conv1] [--timing]

Dissects ``--layer`` of the bundled ConceptCNN on the bundled concept dataset
(seed 0, generated on first use; ``conv1`` is 16 x 64 x 64 against label maps
of 32 x 32) with each resize (``bilinear``, ``antialias``, ``pil``) under both
unit rules, and prints, for each pair of resizes, the largest IoU difference
over all (unit, label) pairs and the number of units whose best label
differs.  ``--timing`` also times ``IoUTally.update`` per resize on synthetic
batches (single thread, CPU time, best of 5).
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np


def dissect_modes(images: int, layer: str):
    from interp_engine.data import BrodenDataset
    from interp_engine.data.concepts import concept_dataset
    from interp_engine.methods.dissection import Dissection
    from interp_engine.models import DEFAULT_TRANSFORM, load_default_model

    root = concept_dataset(num_images=images)
    ds = BrodenDataset(root, transform=DEFAULT_TRANSFORM)
    model = load_default_model()
    for rule in ("lite", "annotated"):
        res = {m: Dissection(model, layer, unit_rule=rule, resize=m, progress=False).explain(ds)[layer]
               for m in ("bilinear", "antialias", "pil")}
        print(f"{layer} ({len(ds)} images, unit_rule={rule!r}); units: {res['pil'].num_units}")
        for a, b in itertools.combinations(res, 2):
            d = np.abs(res[a].iou - res[b].iou)
            k, c = np.unravel_index(int(np.argmax(d)), d.shape)
            diff = int((res[a].best_label != res[b].best_label).sum())
            print(f"  {a:>9} vs {b:<9}: max |IoU difference| {d.max():.4f} (unit {k}, label "
                  f"{res[a].label_names[c]!r}: {res[a].iou[k, c]:.4f} vs {res[b].iou[k, c]:.4f}); "
                  f"best label differs for {diff} of {res[a].num_units} units")


def timing():
    from interp_engine.engine.iou import IoUTally

    rng = np.random.default_rng(0)
    print("IoUTally.update, 1 thread, CPU ms (best of 5); 60 labels, 2 label maps per image")
    for (B, K, h, w, sh, sw) in [(64, 16, 64, 64, 32, 32), (32, 64, 112, 112, 56, 56),
                                 (32, 64, 56, 56, 112, 112), (64, 128, 8, 8, 32, 32)]:
        acts = np.maximum(rng.standard_normal((B, K, h, w)), 0).astype(np.float32)
        thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(K, -1), 0.995, axis=1)
        pl = rng.integers(0, 60, size=(B, 2, sh, sw)).astype(np.int16)
        cat = rng.integers(0, 3, 60)
        row = []
        for m in ("bilinear", "antialias", "pil"):
            t = IoUTally(K, 60, cat, 3, output_size=(sh, sw), resize=m, num_threads=1)
            t.update(acts, thr, pl)
            best = min(_cpu(lambda: t.update(acts, thr, pl)) for _ in range(5))
            row.append(f"{m} {best * 1e3:.0f}")
        print(f"  B={B} K={K} {h}x{w} -> {sh}x{sw}: " + ", ".join(row))


def _cpu(f) -> float:
    t0 = time.process_time()
    f()
    return time.process_time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2500, help="images of the bundled dataset (default 2500)")
    ap.add_argument("--layer", default="conv1", help="layer of the bundled model (default conv1)")
    ap.add_argument("--timing", action="store_true", help="also time IoUTally.update per resize")
    args = ap.parse_args(argv)
    dissect_modes(args.images, args.layer)
    if args.timing:
        timing()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
