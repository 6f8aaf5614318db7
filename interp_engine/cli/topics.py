"""``interp-engine topics``: prediction-difference maximization, the topics (or
classes) each neuron of a layer drives, with an HTML page."""
from __future__ import annotations

import argparse
from typing import Sequence

from .common import CLIError, _check_layers, _Output, _timing
from .loading import _load_model
from .options import (_positive_int, add_batch_size, add_dataset, add_layer, add_max_images, add_model, add_out,
                      add_seed, add_threads)


def add_parser(sub) -> None:
    tp = sub.add_parser(
        "topics",
        help="prediction-difference maximization: the topics (or classes) each neuron of a layer drives",
        description="For every neuron of a layer, the topics (LDA over the Fashion-MNIST class descriptions and "
                    "per-image attribute words, predicted by a topic head fitted on the layer's pooled features) or "
                    "classes whose predicted probability drops most when the neuron is ablated, averaged over the "
                    "images where it is active (docs/topics.md). Writes topics.csv and index.html. With no "
                    "arguments: the bundled FashionCNN's relu_fc on 2,000 Fashion-MNIST test images.")
    add_model(tp, default="fashion_cnn", bundled="'fashion_cnn' (the bundled FashionCNN with its shipped weights)")
    add_layer(tp, "for fashion_cnn: relu_fc, 128 neurons")
    add_dataset(tp, fashion="only")
    tp.add_argument("--split", choices=["train", "test"], default="test")
    add_max_images(tp, 2000)
    add_out(tp, "topics")
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
    add_batch_size(tp, 500)
    add_seed(tp)
    add_threads(tp)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import time

    import numpy as np

    from ..data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_root, fashion_mnist_tensor
    from ..data.fashion_text import fashion_documents
    from ..methods.topics import TopicInterpretation
    from ..report.html import NEURON_NUMBERING
    from ..report.topics_page import write_topics_report

    t0 = time.perf_counter()
    out = args._output = _Output(args.out, "topics")
    try:
        images, labels = fashion_mnist(args.split, args.dataset)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(f"Fashion-MNIST is needed for `topics` and could not be read: {exc}") from None
    images, labels = images[:args.max_images], labels[:args.max_images]
    if args.model == "fashion_cnn":
        from ..models.fashion_cnn import fashion_cnn, load_model

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
