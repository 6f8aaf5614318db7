"""The model and the data a command runs on, loaded and checked before the
work: ``--model`` / ``--weights`` (:func:`_load_model`), the bundled model's
layers and transform (:func:`_default_model_args`), the Broden dataset
(:func:`_open_dataset`) and one image through the model (:func:`_probe`)."""
from __future__ import annotations

import argparse
import os
from typing import Any, List, Optional, Sequence

from .common import CLIError, _one_line


def _default_model_args(args: argparse.Namespace, many_layers: bool):
    """Layers and transform, filled in for the bundled model."""
    transform = args.transform
    layers = args.layers if many_layers else ([args.layer] if args.layer else None)
    if args.model == "default":
        from ..models import DEFAULT_LAYER, DEFAULT_TRANSFORM, LAYER_NAMES

        layers = layers or (list(LAYER_NAMES) if many_layers else [DEFAULT_LAYER])
        transform = transform or DEFAULT_TRANSFORM
    elif args.model == "mobilenet_v2":
        transform = transform or "imagenet"
    return layers, transform or "netdissect"


def _load_model(spec: str, weights: Optional[str]):
    """The model named on the command line (see ``--model``), in eval mode."""
    import importlib
    import importlib.util

    import torch

    if spec == "default":
        from ..models import load_default_model

        model = load_default_model()
    elif spec == "mobilenet_v2" and importlib.util.find_spec("torchvision") is None:
        from ..models.mobilenet_v2 import mobilenet_v2

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
    from ..data import BrodenDataset

    if args.dataset is None:
        from ..data.concepts import concept_dataset

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

    from ..capture import Capture

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
