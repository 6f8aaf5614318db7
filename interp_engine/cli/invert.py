"""``interp-engine invert``: INVERT, each neuron of a layer labelled with the
concept formula its activations separate best (AUC)."""
from __future__ import annotations

import argparse
from typing import Sequence

from .common import CLIError, _check_device, _check_layers, _Output, _timing
from .loading import _default_model_args, _load_model, _open_dataset, _probe
from .options import (_positive_int, add_batch_size, add_categories, add_dataset, add_layer, add_loader,
                      add_max_images, add_model, add_out, add_threads, add_transform)


def add_parser(sub) -> None:
    inv = sub.add_parser(
        "invert", help="INVERT: label neurons with the concept formula their activations separate best (AUC)",
        description="Explain every neuron (channel) of a layer by a formula of image-level concepts "
                    "(AND, OR, NOT) with the best AUC and its Mann-Whitney p-value. With no arguments: the "
                    "bundled model's last conv layer on the bundled concept dataset.")
    add_model(inv)
    add_layer(inv, "the bundled model's last conv layer")
    add_dataset(inv)
    add_out(inv, "invert")
    inv.add_argument("--pooling", choices=["mean", "max"], default="mean", help="spatial pooling (default mean)")
    inv.add_argument("--length", type=_positive_int, default=3, help="maximum formula length (default 3)")
    inv.add_argument("--beam", type=_positive_int, default=10, help="beam size (default 10)")
    inv.add_argument("--min-fraction", type=float, default=0.0, help="minimum concept fraction (default 0)")
    inv.add_argument("--max-fraction", type=float, default=0.5, help="maximum concept fraction (default 0.5)")
    inv.add_argument("--mode", choices=["positive", "negative"], default="positive")
    inv.add_argument("--pvalue-method", choices=["auto", "asymptotic", "exact"], default="auto",
                     help="how the Mann-Whitney p-value is computed, as scipy.stats.mannwhitneyu(method=...): "
                          "auto (default, scipy's and the INVERT reference's: exact when the formula or its "
                          "complement holds for at most 8 images and the neuron has no tied values, else "
                          "asymptotic), asymptotic (normal approximation, tie and continuity corrected) or "
                          "exact (refused for groups too large)")
    add_categories(inv)
    add_transform(inv)
    add_batch_size(inv)
    add_loader(inv)
    add_max_images(inv)
    add_threads(inv)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from ..methods.invert import Invert
    from ..report import write_invert_report
    from ..report.html import NEURON_NUMBERING

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "invert")
    device = _check_device(args.device)
    model = _load_model(args.model, args.weights)
    layers, transform = _default_model_args(args, many_layers=False)
    if not layers:
        raise CLIError("--layer is required with a model other than the default")
    _check_layers(model, layers, args.model)
    if device is not None:
        model.to(device)
    root, ds = _open_dataset(args, transform)
    _probe(model, layers, ds, args.model, transform, maps=False)
    print(f"INVERT on {layers[0]} of {args.model} on {root} ({len(ds)} images; p-values: "
          f"{args.pvalue_method})", flush=True)
    res = Invert(model, layers[0], pooling=args.pooling, batch_size=args.batch_size,
                 num_workers=args.num_workers, device=args.device, length=args.length,
                 beam=args.beam, min_fraction=args.min_fraction, max_fraction=args.max_fraction,
                 mode=args.mode, num_threads=args.threads or None,
                 pvalue_method=args.pvalue_method).explain(ds)
    index = out.final_path(write_invert_report(res, out.tmp, title=f"INVERT: {layers[0]} of {args.model}"))
    out.commit(argv)
    best = sorted((r for r in res if r.best is not None), key=lambda r: -r.differentiability)
    print(f"{'neuron':>6}  {'AUC':>6}  {'p-value':>9}  formula")
    for r in best[:15]:
        print(f"{r.neuron:>6}  {r.auc:6.3f}  {r.p_value:9.2e}  {r.formula}")
    print(f"\n{len(best)} of {len(res)} neurons explained; {NEURON_NUMBERING[0].lower()}{NEURON_NUMBERING[1:]}")
    print(f"time {_timing(t0)}; report: {index}")
    return 0
