"""``interp-engine dissect``: Network Dissection of a model's layers on
Broden-format data, with an HTML report."""
from __future__ import annotations

import argparse
from typing import Sequence

from .common import CLIError, _check_device, _check_dir_option, _check_layers, _Output, _timing
from .loading import _default_model_args, _load_model, _open_dataset, _probe
from .options import (_positive_int, _seconds, add_batch_size, add_categories, add_dataset, add_detector,
                      add_layer, add_loader, add_max_images, add_model, add_out, add_threads, add_transform)


def add_parser(sub) -> None:
    dis = sub.add_parser(
        "dissect", help="Network Dissection of a model's layers on Broden-format data, with an HTML report",
        description="Label every unit of the chosen layers with the concept its top activations overlap "
                    "best (IoU). With no arguments: the bundled model on the bundled concept dataset.")
    add_model(dis)
    add_layer(dis, "the bundled model's conv layers", repeatable=True)
    add_dataset(dis)
    add_out(dis, "dissection")
    add_detector(dis)
    dis.add_argument("--thresholds", choices=["exact", "approx"], default="exact",
                     help="exact quantile thresholds (one more pass) or the sketch's estimate")
    dis.add_argument("--unit-rule", choices=["annotated", "lite"], default="annotated",
                     help="which images add to a unit's pixels per category (see docs/dissection.md)")
    dis.add_argument("--resize", choices=["bilinear", "antialias", "pil"], default=None,
                     help="how maps are resized to the label maps (differs only for maps larger than them): "
                          "bilinear (torch's default), antialias (torch antialias=True) or pil (Pillow, as "
                          "NetDissect-Lite); default: pil with --unit-rule lite, else bilinear")
    add_categories(dis)
    add_transform(dis)
    add_batch_size(dis)
    add_loader(dis)
    dis.add_argument("--top-k", type=int, default=10, help="top images kept per unit (default 10)")
    dis.add_argument("--rotation-seed", type=int, action="append", default=None, dest="rotations",
                     help="also dissect a random orthogonal basis with this seed (repeatable)")
    dis.add_argument("--activation-cache", action="store_true",
                     help="cache activations as float16 on disk so the model runs once")
    dis.add_argument("--cache-dir", default=None, help="where the activation cache goes")
    dis.add_argument("--checkpoint-dir", default=None,
                     help="save progress here and resume from it (the same command resumes; a checkpoint of "
                          "another model, data or settings is refused)")
    dis.add_argument("--checkpoint-every", type=_positive_int, default=50,
                     help="also checkpoint every N batches (default 50)")
    dis.add_argument("--checkpoint-interval", type=_seconds, default=60.0,
                     help="checkpoint when this many seconds passed since the last one (default 60; 0: after "
                          "every batch); checkpoints are also written at the end of every pass and on Ctrl-C")
    add_max_images(dis)
    dis.add_argument("--report-units", type=int, default=None, help="units per layer in the report (default all)")
    add_threads(dis)
    dis.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from ..methods.dissection import Dissection
    from ..report import write_report
    from ..report.html import UNIT_NUMBERING

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "dissect")
    _check_dir_option(args.checkpoint_dir, "--checkpoint-dir", out)
    _check_dir_option(args.cache_dir, "--cache-dir", out)
    device = _check_device(args.device)
    model = _load_model(args.model, args.weights)
    layers, transform = _default_model_args(args, many_layers=True)
    if not layers:
        raise CLIError("--layer is required with a model other than the default")
    _check_layers(model, layers, args.model)
    if device is not None:
        model.to(device)
    root, ds = _open_dataset(args, transform)
    _probe(model, layers, ds, args.model, transform, maps=True)
    d = Dissection(model, layers, quantile=args.quantile, iou_threshold=args.iou_threshold,
                   thresholds=args.thresholds, unit_rule=args.unit_rule, batch_size=args.batch_size,
                   resize=args.resize, num_workers=args.num_workers, device=args.device, top_k=args.top_k,
                   rotations=args.rotations or (), activation_cache=args.activation_cache,
                   cache_dir=args.cache_dir, checkpoint_dir=args.checkpoint_dir,
                   checkpoint_every=args.checkpoint_every, checkpoint_interval=args.checkpoint_interval,
                   progress=not args.quiet, num_threads=args.threads or None)
    d.provenance = {"--model": args.model, "--weights": args.weights, "--transform": transform,
                    "--dataset": str(root)}
    args._dissection = d
    d.check_checkpoint(ds)  # a checkpoint of another run is refused before the work
    print(f"dissecting {', '.join(layers)} of {args.model} on {root} ({len(ds)} images)", flush=True)
    result = d.explain(ds)
    if d.resumed is not None:
        print(f"resumed from {d.resumed['path']} (passes done: {', '.join(d.resumed['finished']) or 'none'})")
    result.save(out.tmp / "result.npz")
    index = out.final_path(write_report(result, ds, out.tmp, max_units=args.report_units))
    out.commit(argv)
    for key in result:
        print(f"\n== {key}")
        print(result[key].format_table(max_rows=10))
    print("\n" + result.format_summary())
    print(UNIT_NUMBERING)
    t = result.timings
    print(f"\ntime: {_timing(t0)} (model forward {t['forward']:.1f} s); report: {index}")
    return 0
