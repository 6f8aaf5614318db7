"""The ``interp-engine`` command line."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interp-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="miniature Network Dissection on synthetic data with a known answer")
    demo.add_argument("--images", type=_positive_int, default=400, help="number of images (default 400)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quantile", type=_fraction, default=0.005,
                      help="top fraction of activations that fires (default 0.005)")
    demo.add_argument("--iou-threshold", type=_fraction, default=0.04,
                      help="IoU from which a unit is a detector (default 0.04)")
    demo.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")

    sub.add_parser("info", help="version, threads and build of the compiled core")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import interp_engine

    if args.command == "info":
        print(f"interp_engine {interp_engine.__version__}")
        print(f"compiled core: {interp_engine._core.__file__}")
        print(f"threads: {interp_engine.get_num_threads()}")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        if args.threads < 0:
            print("interp-engine: error: --threads must be >= 0", file=sys.stderr)
            return 2
        interp_engine.set_num_threads(args.threads)
        summary = run_demo(args.images, seed=args.seed, quantile=args.quantile,
                           iou_threshold=args.iou_threshold)
        return 0 if summary["recovered"] > 0 else 1
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
