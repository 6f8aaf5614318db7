"""``interp-engine represent``: representative interpretations (Lam et al.
2021), the regions of seeds bounded by decision boundaries, with an HTML page."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .common import CLIError, _check_layers, _one_line, _Output, _timing
from .loading import _load_model, _probe
from .options import _positive_int, add_dataset, add_layer, add_model, add_out, add_seed, add_threads, add_transform


def add_parser(sub) -> None:
    rep = sub.add_parser(
        "represent",
        help="representative interpretations (Lam et al. 2021): regions of seeds bounded by decision boundaries",
        description="Fit representative interpretations on reference images, explain seeds, write an HTML page "
                    "of the regions (docs/representative.md); with --unseen, score the region heatmaps against "
                    "Grad-CAM (Average Drop / Increase) on images not used to build them.")
    add_model(rep, bundled="default (the bundled ConceptCNN's 4-way scene output), fashion_cnn (the bundled "
                           "Fashion-MNIST CNN); another model is split at --layer")
    add_layer(rep, "the bundled models' last conv layer; where psi is read")
    add_dataset(rep, fashion="too")
    add_out(rep, "represent")
    rep.add_argument("--reference", type=_positive_int, default=1000, help="reference images (default 1000)")
    rep.add_argument("--seeds", type=_positive_int, default=10, help="seeds: the first N reference images (default 10)")
    rep.add_argument("--unseen", type=int, default=1000,
                     help="images after the reference ones to evaluate on (default 1000; 0: no evaluation)")
    rep.add_argument("--pool", type=_positive_int, default=50, help="boundaries sampled per seed (default 50)")
    rep.add_argument("--delta", type=int, default=0, help="other-class images allowed in a region (default 0)")
    add_seed(rep)
    rep.add_argument("--similar", type=_positive_int, default=5, help="similar images shown per region (default 5)")
    add_transform(rep)
    add_threads(rep)


def _represent_setup(args: argparse.Namespace):
    """(model, layer, head, images (N, C, H, W), class names, black fill) for ``represent``."""
    import torch

    n = args.reference + max(args.unseen, 0)
    if args.model == "fashion_cnn":
        from ..data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist, fashion_mnist_tensor
        from ..models.fashion_cnn import CLASSES, DEFAULT_LAYER, fashion_cnn, load_model

        imgs, _ = fashion_mnist("test", root=args.dataset)
        model = fashion_cnn() if args.weights is None else load_model(args.weights)
        layer = args.layer or DEFAULT_LAYER
        _check_layers(model, [layer], args.model)
        return (model.eval(), layer, None, fashion_mnist_tensor(imgs[:n]), list(CLASSES),
                -FASHION_MNIST_MEAN / FASHION_MNIST_STD)
    if args.model == "default":
        from ..models.concept_cnn import OutputGroup, load_default_model

        model = OutputGroup(load_default_model() if args.weights is None else _load_model("default", args.weights))
        layer, head, names, transform = args.layer or "model.conv4", model.head, list(model.class_names), "unit"
    else:
        model = _load_model(args.model, args.weights)
        if not args.layer:
            raise CLIError("--layer is required with a model other than the bundled ones")
        layer, head, names, transform = args.layer, None, None, args.transform or "netdissect"
    _check_layers(model, [layer], args.model)
    from ..data import BrodenDataset
    from ..data.concepts import concept_dataset

    ds = BrodenDataset(args.dataset or concept_dataset(), transform=transform, max_images=n, check_files=True)
    if len(ds) == 0:
        raise CLIError(f"--dataset {ds.root} has no images")
    _probe(model, [layer], ds, args.model, transform, maps=False)
    x = torch.stack([ds.with_fields(pixel_labels=False)[i]["image"] for i in range(len(ds))])
    return model.eval(), layer, head, x, names, 0.0


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time
    import warnings

    from ..methods.representative import RepresentativeInterpretation, evaluate_regions
    from ..report import write_represent_report

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "represent")
    if args.seeds > args.reference:
        raise CLIError(f"--seeds ({args.seeds}) must be at most --reference ({args.reference})")
    model, layer, head, x, names, black = _represent_setup(args)
    ref, unseen = x[:args.reference], x[args.reference:]
    print(f"representative interpretations at {layer} of {args.model}: {len(ref)} reference images, "
          f"{args.seeds} seeds, pool {args.pool}", flush=True)
    ri = RepresentativeInterpretation(model, layer, head=head, num_threads=args.threads or None, pool=args.pool,
                                      delta=args.delta, seed=args.seed)
    ri.fit(ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regions = ri.explain(range(args.seeds))
    for w in caught:
        print(f"warning: {_one_line(w.message)}", file=sys.stderr)
    ev = evaluate_regions(ri, regions, unseen, fill=black) if len(unseen) else None
    index = write_represent_report(ri, regions, out.tmp, class_names=names, k=args.similar, evaluation=ev,
                                   title=f"Representative interpretations: {layer} of {args.model}")
    index = out.final_path(index)
    out.commit(argv)
    print(f"{'seed':>5}  {'class':<14s} {'members':>7} {'other':>5} {'bounds':>6}  reached")
    for r in regions:
        c = names[r.seed_class] if names else str(r.seed_class)
        print(f"{r.seed_index:>5}  {c:<14s} {r.n_members:>7} {r.n_other:>5} {r.n_boundaries:>6}  {bool(r.reached)}")
    if ev is not None:
        print("\n" + str(ev))
    print("\nseeds and images are numbered from 0 (their index among the reference images)")
    print(f"time: {_timing(t0)}; report: {index}")
    return 0
