"""``interp-engine concepts``: concept vectors (semantic, Net2Vec or CAV) of a
layer, scored against single units."""
from __future__ import annotations

import argparse
from typing import Sequence

from .common import CLIError, _check_layers, _Output, _timing
from .loading import _default_model_args, _load_model, _open_dataset, _probe
from .options import (add_batch_size, add_categories, add_dataset, add_layer, add_max_images, add_model, add_out,
                      add_seed, add_threads, add_transform)


def add_parser(sub) -> None:
    cv = sub.add_parser(
        "concepts",
        help="learn concept vectors (semantic, Net2Vec or CAV) and score them against single units",
        description="Learn one vector per pixel-level concept at a layer (docs/concept_vectors.md) on the "
                    "training split, then print and save its held-out set-IoU next to the best single unit's.")
    add_model(cv)
    add_layer(cv, "the bundled model's conv4")
    add_dataset(cv)
    add_out(cv, "concepts")
    cv.add_argument("--method", choices=["semantic", "net2vec", "cav"], default="semantic")
    cv.add_argument("--concepts", default=None, help="comma-separated concept names (default: every pixel label)")
    cv.add_argument("--train-split", default="train", help="rows to fit on (default train; 'all': every row)")
    cv.add_argument("--eval-split", default="val", help="rows to score on (default val; 'all': every row)")
    cv.add_argument("--classifier", choices=["sgd", "mean_difference"], default="sgd", help="for --method cav")
    add_categories(cv)
    add_transform(cv)
    add_batch_size(cv)
    add_max_images(cv)
    add_seed(cv)
    add_threads(cv)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from ..methods.concept_vectors import ConceptVectors
    from ..report.html import UNIT_NUMBERING_CSV

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "concepts")
    model = _load_model(args.model, args.weights)
    layers, transform = _default_model_args(args, many_layers=False)
    if not layers:
        raise CLIError("--layer is required with a model other than the default")
    _check_layers(model, layers, args.model)
    fit_split = None if args.train_split == "all" else args.train_split
    eval_split = None if args.eval_split == "all" else args.eval_split
    names = None if args.concepts is None else [c.strip() for c in args.concepts.split(",") if c.strip()]
    root, ds = _open_dataset(args, transform)
    _probe(model, layers, ds, args.model, transform, maps=True)
    print(f"concept vectors ({args.method}) at {layers[0]} of {args.model} on {root} ({len(ds)} images)",
          flush=True)
    cv = ConceptVectors(model, layers[0], method=args.method, classifier=args.classifier, seed=args.seed)
    cv.fit(ds, names, split=fit_split)
    ev = cv.explain(ds, split=eval_split)
    cv.save(out.tmp / "vectors.npz")
    ev.to_csv(out.tmp / "concept_iou.csv")
    out.commit(argv)
    print(ev)
    if cv.skipped:
        print(f"skipped (no pixel in the fitting rows): {', '.join(cv.skipped)}")
    print(f"\n{UNIT_NUMBERING_CSV}")
    print(f"time: {_timing(t0)}; vectors: {out.final / 'vectors.npz'}; table: {out.final / 'concept_iou.csv'}")
    return 0
