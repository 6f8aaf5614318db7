"""The ``interp-engine`` command line."""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from . import concepts, dissect, invert, represent, topics
from .common import CLIError, _one_line, _Parser
from .loading import _load_model
from .options import _positive_int, add_detector, add_model, add_seed, add_threads

_EPILOG = """\
errors and interruptions:
  a user error prints one line, "interp-engine: error: ...", and exits with status 2
  (INTERP_ENGINE_TRACEBACK=1 shows the traceback instead); Ctrl-C prints one line saying
  where progress was saved and the command that resumes, and exits with status 130.
output directories:
  --out is written into a temporary directory next to it and moved into place when
  complete, so an interrupted run leaves the previous output untouched and a rerun
  leaves no stale file of the previous run.  An existing --out is replaced only when it
  is empty or holds interp_engine_output.json (written by this command line); anything
  else is refused."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interp-engine", description=__doc__, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="miniature Network Dissection on synthetic data with a known answer")
    demo.add_argument("--images", type=_positive_int, default=400, help="number of images (default 400)")
    add_seed(demo)
    add_detector(demo)
    add_threads(demo)

    sub.add_parser("info", help="version, threads and build of the compiled core")

    lay = sub.add_parser("layers", help="list the layer names of a model (the names --layer takes)",
                         description="Print every named submodule of the model, one per line, with its type.")
    add_model(lay)

    for command in (dissect, invert, concepts, represent, topics):
        command.add_parser(sub)
    return parser


def _run_layers(args: argparse.Namespace, argv: Sequence[str]) -> int:
    model = _load_model(args.model, args.weights)
    for name, m in model.named_modules():
        if name:
            print(f"{name}\t{type(m).__name__}")
    return 0


def _user_errors() -> tuple:
    errors: tuple = (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError)
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return errors + ((oom,) if isinstance(oom, type) else ())


def _interrupted(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The line printed on Ctrl-C: where progress was saved and how to resume."""
    cmd = shlex.join(["interp-engine", *argv])
    out = getattr(args, "out", None)
    kept = f"--out {out} is unchanged" if out else "nothing was written"
    if args.command != "dissect":
        return f"`interp-engine {args.command}` keeps no checkpoint, so nothing was saved; {kept}; rerun to start over"
    if args.checkpoint_dir is None:
        return (f"no checkpoint was asked for, so nothing was saved (--checkpoint-dir DIR saves progress to "
                f"resume from); {kept}")
    d = getattr(args, "_dissection", None)
    ck = None if d is None else d.last_checkpoint
    if ck is None:
        p = Path(args.checkpoint_dir) / "dissection_checkpoint.npz"
        if p.is_file():
            return f"no new progress was saved; the earlier checkpoint {p} is kept; resume with: {cmd}"
        return f"stopped before the first checkpoint, nothing to resume; {kept}; start again with: {cmd}"
    done = ", ".join(ck["finished"]) or "none"
    if ck["next_batch"] >= ck["batches"] or ck["pass"] in ck["finished"]:
        where = f"passes done: {done}"
    else:
        where = f"{ck['pass']} pass at batch {ck['next_batch']} of {ck['batches']}; passes done: {done}"
    return f"progress saved in {ck['path']} ({where}); {kept}; resume with: {cmd}"


def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import interp_engine

    if args.command == "info":
        print(f"interp_engine {interp_engine.__version__}")
        print(f"compiled core: {interp_engine._core.__file__}")
        print(f"threads: {interp_engine.get_num_threads()}")
        return 0
    if args.command != "demo" and importlib.util.find_spec("torch") is None:  # the rest run a model
        raise CLIError(f"interp-engine {args.command} runs a PyTorch model, and torch is not installed: "
                       f"pip install torch (or pip install 'interp_engine[torch]')")
    if getattr(args, "threads", 0) < 0:
        raise CLIError(f"--threads must be >= 0 (0: all cores); got {args.threads}")
    if args.command == "demo":
        from ..demo import run_demo

        interp_engine.set_num_threads(args.threads)
        summary = run_demo(args.images, seed=args.seed, quantile=args.quantile,
                           iou_threshold=args.iou_threshold)
        return 0 if summary["recovered"] > 0 else 1
    if hasattr(args, "threads"):
        interp_engine.set_num_threads(args.threads)
    run = {"dissect": dissect.run, "invert": invert.run, "concepts": concepts.run,
           "represent": represent.run, "topics": topics.run, "layers": _run_layers}[args.command]
    return run(args, argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, argv)
    except KeyboardInterrupt:
        print(f"interp-engine: interrupted: {_interrupted(args, argv)}", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if os.environ.get("INTERP_ENGINE_TRACEBACK"):
            raise
        text = str(exc) if isinstance(exc, (CLIError, ValueError, TypeError, OSError)) and str(exc) \
            else f"{type(exc).__name__}: {exc}"
        print(f"interp-engine: error: {_one_line(text)}", file=sys.stderr)
        return 2
    finally:
        out = getattr(args, "_output", None)
        if out is not None:
            out.discard()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
