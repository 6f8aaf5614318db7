"""Train :class:`FashionCNN` on Fashion-MNIST.

    PYTHONPATH=$PWD python scripts/train_fashion_cnn.py            # writes ./fashion_cnn.pt
    PYTHONPATH=$PWD python scripts/train_fashion_cnn.py --out interp_engine/models/fashion_cnn.pt

(``PYTHONPATH=$PWD`` in a checkout built in place; not needed where interp_engine
is installed.)  Without ``--out`` the weights go to ``fashion_cnn.pt`` in the
current directory, never over the shipped ones: replacing those takes
``--out interp_engine/models/fashion_cnn.pt``.

Reads the train and test splits with :func:`interp_engine.data.fashion_mnist.fashion_mnist`
(Debian's ``dataset-fashion-mnist``, or ``--root`` / ``$INTERP_ENGINE_FASHION_MNIST``),
trains on the 60,000 train images with AdamW and a one-cycle learning rate,
cross-entropy loss, and cheap augmentation (random horizontal flips, random
shifts of up to 2 pixels with zero padding), then rounds the weights to
float16, evaluates those on both splits, and saves them with the accuracies,
the config and the training time (:func:`fashion_cnn.weights_info` reads them).

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)`` and a
fixed thread count (``--threads``, default 2; the shipped weights were trained
with 2 threads on CPU).

:func:`train_fashion_cnn` is reusable (import it once ``scripts/`` is on
``sys.path``): ``extra_loss(model, features, batch)`` adds a term to the loss
(e.g. an interpretive loss on the ``relu3`` features); :func:`evaluate`,
:func:`predict` and :func:`features` are the batched evaluation
``benchmarks/eval_topics.py`` uses too.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from interp_engine.data.fashion_mnist import fashion_mnist, fashion_mnist_tensor
from interp_engine.models.fashion_cnn import DEFAULT_LAYER, FashionCNN, load_model, save_weights

__all__ = ["train_fashion_cnn", "evaluate", "predict", "features", "ExtraLoss", "main"]

#: where the weights go without --out (the current directory: never the shipped weights unless asked)
DEFAULT_OUT = "fashion_cnn.pt"

#: ``extra_loss(model, features, batch) -> scalar tensor`` (see :func:`train_fashion_cnn`)
ExtraLoss = Callable[[FashionCNN, torch.Tensor, Dict[str, torch.Tensor]], torch.Tensor]

#: what the normalized background (pixel value 0) becomes: the padding value of the shifts
_BACKGROUND = float(fashion_mnist_tensor(np.zeros((1, 1, 1), np.uint8)).item())


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch_size: int) -> List[torch.Tensor]:
    """``fn`` of the normalized uint8 images (N, 28, 28), ``batch_size`` at a time, without autograd."""
    return [fn(fashion_mnist_tensor(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]


def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Logits float32 (N, 10) of ``model`` (in eval mode) for uint8 images (N, 28, 28)."""
    model.eval()
    out = _batched(model, images, batch_size)
    return torch.cat(out).numpy() if out else np.zeros((0, 10), np.float32)


def features(model: FashionCNN, images: np.ndarray, layer: str = DEFAULT_LAYER, batch_size: int = 2000) -> torch.Tensor:
    """The output of ``layer`` (``model.split(layer)``'s first part, in eval mode) for uint8 images
    (N, 28, 28): a float32 tensor (N, ...), e.g. (N, 128) at ``relu_fc``."""
    model.eval()
    return torch.cat(_batched(model.split(layer)[0], images, batch_size))


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Accuracy (fraction in [0, 1]) of ``model`` on uint8 images (N, 28, 28)
    with int labels (N,), evaluated in batches of ``batch_size``."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length; got {len(images)} and {len(labels)}")
    if len(images) == 0:
        raise ValueError("images must not be empty")
    return float((predict(model, images, batch_size).argmax(1) == np.asarray(labels)).mean())


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> Tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """Random horizontal flip and shift of (B, 1, H, W); returns the images,
    the flips (B,) bool and the shifts (B, 2) int64 (dy, dx: content moves by +dy, +dx)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    shift = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=gen)
    padded = F.pad(x[:, 0], (max_shift,) * 4, value=_BACKGROUND)
    rows = (max_shift - shift[:, 0])[:, None] + torch.arange(h)
    cols = (max_shift - shift[:, 1])[:, None] + torch.arange(w)
    out = padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.unsqueeze(1), flip, shift


def train_fashion_cnn(*, data: Optional[Tuple[np.ndarray, np.ndarray]] = None, root: Optional[str] = None,
                      epochs: int = 12, batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 1e-4,
                      seed: int = 0, threads: int = 2, augment: bool = True, layer: str = DEFAULT_LAYER,
                      extra_loss: Optional[ExtraLoss] = None, model: Optional[FashionCNN] = None,
                      log: bool = True, extra_parameters: Optional[Iterable[torch.nn.Parameter]] = None
                      ) -> FashionCNN:
    """Train a FashionCNN; returns it in eval mode (float32).

    ``data``: ``(images, labels)``, uint8 (N, 28, 28) and int (N,) in 0..9;
    default the Fashion-MNIST train split read from ``root``.  ``model``: a
    FashionCNN to train further (default: a new one, initialized after
    ``torch.manual_seed(seed)``).  AdamW (``lr`` is the one-cycle peak,
    ``weight_decay``), ``epochs`` passes in a seeded random order, batches of
    ``batch_size``; with ``augment``, random horizontal flips and shifts of up
    to 2 pixels.  Runs with ``threads`` torch threads and deterministic
    algorithms; torch's global thread count and determinism flag are restored
    afterwards.

    ``extra_loss``, when given, is called at every step as
    ``extra_loss(model, features, batch)`` and must return a scalar tensor that
    is added to the cross-entropy.  ``features`` is the output of ``layer``
    (default ``"relu3"``: float (B, 64, 7, 7), with the graph: gradients flow
    through it), computed once and shared with the loss (the logits are the
    head applied to it).  ``batch`` is a dict of tensors: ``images`` float
    (B, 1, 28, 28) (normalized, augmented), ``labels`` int64 (B,), ``logits``
    float (B, 10), ``index`` int64 (B,) (rows of ``data``, to look up
    per-image annotations), ``flip`` bool (B,) and ``shift`` int64 (B, 2)
    (dy, dx) (the augmentation applied; all False / 0 without ``augment``).

    ``extra_parameters``: parameters of ``extra_loss`` that are trained with
    the model (e.g. the topic head of an
    :class:`~interp_engine.methods.topics.InterpretiveLoss`): they join the
    model's in the same AdamW optimizer and schedule.
    """
    if extra_loss is not None and not callable(extra_loss):
        raise TypeError(f"extra_loss must be callable or None; got {type(extra_loss).__name__}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("threads", threads)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
    if data is None:
        data = fashion_mnist("train", root)
    images, labels = data
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
        raise ValueError(f"data must be uint8 images (N, H, W) and labels (N,); got {images.dtype} "
                         f"{images.shape} and {labels.shape}")
    if len(images) == 0 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("data must be non-empty with labels in 0..9")
    extra = [] if extra_parameters is None else list(extra_parameters)
    for p in extra:
        if not isinstance(p, torch.nn.Parameter):
            raise TypeError(f"extra_parameters must hold torch.nn.Parameter; got {type(p).__name__}")
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        return _train(images, labels.astype(np.int64), epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                      weight_decay=weight_decay, seed=seed, augment=augment, layer=layer,
                      extra_loss=extra_loss, model=model, log=log, extra_parameters=extra)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _train(images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int, lr: float,
           weight_decay: float, seed: int, augment: bool, layer: str, extra_loss: Optional[ExtraLoss],
           model: Optional[FashionCNN], log: bool,
           extra_parameters: Sequence[torch.nn.Parameter] = ()) -> FashionCNN:
    torch.manual_seed(seed)
    if model is None:
        model = FashionCNN()
    features_part, head = model.split(layer)
    x = fashion_mnist_tensor(images)
    y = torch.from_numpy(labels)
    n = len(x)
    opt = torch.optim.AdamW(list(model.parameters()) + list(extra_parameters), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed + 1)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, extra_total, correct = 0.0, 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                xb, flip, shift = _augment(xb, gen)
            else:
                flip, shift = torch.zeros(len(idx), dtype=torch.bool), torch.zeros(len(idx), 2, dtype=torch.int64)
            feats = features_part(xb)
            logits = head(feats)
            loss = F.cross_entropy(logits, yb)
            if extra_loss is not None:
                extra = extra_loss(model, feats, {"images": xb, "labels": yb, "logits": logits, "index": idx,
                                                  "flip": flip, "shift": shift})
                if not isinstance(extra, torch.Tensor) or extra.numel() != 1:
                    raise ValueError(f"extra_loss must return a scalar tensor; got "
                                     f"{type(extra).__name__} {tuple(getattr(extra, 'shape', ()))}")
                loss = loss + extra.reshape(())
                extra_total += float(extra.detach()) * len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
        if log:
            msg = f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f}"
            if extra_loss is not None:
                msg += f" (extra {extra_total / n:.4f})"
            print(f"{msg}, train acc (augmented) {correct / n:.4f} ({time.time() - start:.0f} s)", flush=True)
    return model.eval()


def _round_half(model: FashionCNN) -> FashionCNN:
    """Round the float parameters to float16 and back, in place (what saving does)."""
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.half().float())
    return model


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/train_fashion_cnn.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where to write the weights (.pt; default ./{DEFAULT_OUT})")
    parser.add_argument("--root", default=None, help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        train_data = fashion_mnist("train", args.root)
        test_data = fashion_mnist("test", args.root)
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_fashion_cnn: error: {exc}", file=sys.stderr)
        return 2
    model = train_fashion_cnn(data=train_data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              weight_decay=args.weight_decay, seed=args.seed, threads=args.threads,
                              augment=not args.no_augment)
    seconds = time.time() - start
    _round_half(model)  # evaluate exactly the weights that are saved
    old = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        acc: Dict[str, Any] = {"train_accuracy": evaluate(model, *train_data),
                               "test_accuracy": evaluate(model, *test_data)}
    finally:
        torch.set_num_threads(old)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "root")}
    save_weights(model, args.out, extra={"train_config": config, **acc, "train_seconds": round(seconds, 1),
                                         "torch_version": str(torch.__version__)})
    check = evaluate(load_model(args.out), *test_data)
    if check != acc["test_accuracy"]:  # pragma: no cover (saving rounds exactly as _round_half)
        raise RuntimeError(f"saved weights give test accuracy {check}, expected {acc['test_accuracy']}")
    print(f"train accuracy {acc['train_accuracy']:.4f}, test accuracy {acc['test_accuracy']:.4f} "
          f"(float16 weights); training {seconds:.0f} s; saved to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
