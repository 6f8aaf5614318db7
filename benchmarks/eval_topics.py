"""Evaluation of topic supervision on Fashion-MNIST (docs/topics.md).

    PYTHONPATH=$PWD python benchmarks/eval_topics.py --out topics_eval.json

Trains FashionCNN twice with the same settings (seed 0, ``--epochs`` epochs,
no augmentation, AdamW one-cycle: ``train_fashion_cnn`` of ``scripts/train_fashion_cnn.py``): once with the
cross-entropy alone (baseline), once with the interpretive loss
(:class:`~interp_engine.methods.topics.InterpretiveLoss`, ``--weight``, a
topic head of ``--hidden`` units) on the pooled ``relu_fc`` features (128
neurons), trained jointly.  Topics: LDA (``--topics`` topics, seed 0) over one
document per train image: its class description
(:data:`~interp_engine.data.fashion_text.FASHION_MNIST_DESCRIPTIONS`) plus its
attribute words (ink coverage, tone, symmetry, shape;
:mod:`interp_engine.data.fashion_text`); test images get the topic vectors of
their own documents under the fitted LDA.

Reported per model: test accuracy; the topic head's test squared error; and
prediction-difference maximization on ``relu_fc`` over the test images with
``targets="topics"`` (zero ablation): the share of the 128 neurons whose top
topic's score (mean drop of the predicted topic proportion when the neuron is
ablated, over the images where it is active) is at least each bar, among all
128 neurons and among those active on at least one test image.  The
baseline has no topic head: one is fitted post hoc on its frozen train
features (:func:`~interp_engine.methods.topics.fit_topic_head`); the
interpretive model is scored with its jointly trained head and with a post-hoc
head fitted the same way.  Needs the Fashion-MNIST files (exit code 2 without).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

BARS = (0.005, 0.01, 0.02, 0.05)


def _doc_topics(topics: Any, docs: List[str]) -> np.ndarray:
    uniq, inv = np.unique(np.asarray(docs, dtype=object).astype(str), return_inverse=True)
    return topics.transform(list(uniq))[np.asarray(inv).reshape(-1)]


def _training_script() -> Any:
    """scripts/train_fashion_cnn.py of this checkout, which trains and evaluates the models here."""
    scripts = str(Path(__file__).resolve().parents[1] / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import train_fashion_cnn

    return train_fashion_cnn


def _score(model: Any, head: Any, test_x: Any, test_feats: Any, test_s: Any, names: List[str]) -> Dict[str, Any]:
    import torch

    from interp_engine.methods.topics import TopicInterpretation

    with torch.no_grad():
        mse = float((head.predict(test_feats) - test_s).pow(2).sum(1).mean())
    t0 = time.perf_counter()
    res = TopicInterpretation(model, "relu_fc", targets="topics", ablation="zero", topic_head=head,
                              target_names=names, batch_size=1000).explain(test_x)
    seconds = time.perf_counter() - t0
    score = res.score
    out: Dict[str, Any] = {"topic_mse": round(mse, 5), "never_active": int((res.counts == 0).sum()),
                           "median_score": round(float(np.nanmedian(score)), 5),
                           "distinct_top_topics": int(len(set(res.top_targets[:, 0][res.top_targets[:, 0] >= 0]))),
                           "pd_seconds": round(seconds, 2)}
    alive = res.counts > 0
    for bar in BARS:
        ok = res.consistent(bar)
        out[f"share_score_ge_{bar}"] = round(float(ok.mean()), 4)
        out[f"share_of_active_ge_{bar}"] = round(float(ok[alive].mean()) if alive.any() else 0.0, 4)
    return out


def run(epochs: int = 6, n_topics: int = 12, weight: float = 0.1, hidden: int = 64, root: Optional[str] = None,
        seed: int = 0, log: bool = True, max_train: Optional[int] = None) -> Dict[str, Any]:
    """Train both models and score them; returns the numbers (see the module doc)."""
    import torch

    from interp_engine.data.fashion_mnist import fashion_mnist, fashion_mnist_tensor
    from interp_engine.data.fashion_text import fashion_documents
    from interp_engine.methods.topics import InterpretiveLoss, extract_topics, fit_topic_head
    script = _training_script()
    evaluate, features, train_fashion_cnn = script.evaluate, script.features, script.train_fashion_cnn

    t_start = time.perf_counter()
    train = fashion_mnist("train", root)
    if max_train is not None:  # a quick smoke run
        train = (train[0][:max_train], train[1][:max_train])
    test = fashion_mnist("test", root)
    docs = fashion_documents(*train)
    topics = extract_topics(docs, n_topics, seed=seed)
    names = topics.names(3)
    s_train = torch.from_numpy(topics.matrix.astype(np.float32))
    s_test = torch.from_numpy(_doc_topics(topics, fashion_documents(*test)).astype(np.float32))
    if log:
        print(f"topics ({time.perf_counter() - t_start:.0f} s):", *[f"  {n}" for n in topics.names(8)], sep="\n",
              flush=True)
    config = dict(epochs=epochs, augment=False, seed=seed, layer="relu_fc", log=log)
    results: Dict[str, Any] = {"config": {"epochs": epochs, "n_topics": n_topics, "weight": weight, "hidden": hidden,
                                          "augment": False, "seed": seed, "layer": "relu_fc",
                                          "bars": list(BARS), "ablation": "zero", "test_images": len(test[0]),
                                          "train_images": len(train[0])},
                               "topics": topics.names(8)}
    test_x = fashion_mnist_tensor(test[0])

    t0 = time.perf_counter()
    base = train_fashion_cnn(data=train, **config)
    base_seconds = time.perf_counter() - t0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 100)
        head = InterpretiveLoss(128, n_topics, hidden, weight=weight)

    def extra_loss(model: Any, features: Any, batch: Dict[str, Any]) -> Any:
        return head(features, s_train[batch["index"]])

    t0 = time.perf_counter()
    interp = train_fashion_cnn(data=train, extra_loss=extra_loss, extra_parameters=list(head.parameters()), **config)
    interp_seconds = time.perf_counter() - t0
    head.eval()
    for key, model, secs in (("baseline", base, base_seconds), ("interpretive", interp, interp_seconds)):
        train_feats = features(model, train[0], "relu_fc")
        test_feats = features(model, test[0], "relu_fc")
        post = fit_topic_head(train_feats, s_train, hidden, epochs=20, lr=3e-3, seed=seed)
        entry: Dict[str, Any] = {"test_accuracy": evaluate(model, *test), "train_seconds": round(secs, 1),
                                 "post_hoc_head": _score(model, post, test_x, test_feats, s_test, names)}
        if key == "interpretive":
            entry["joint_head"] = _score(model, head, test_x, test_feats, s_test, names)
        results[key] = entry
        if log:
            print(key, json.dumps(entry, indent=1), flush=True)
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/eval_topics.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--root", default=None, help="directory of the Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--topics", type=int, default=12)
    p.add_argument("--weight", type=float, default=0.1, help="the interpretive loss weight (lambda)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the topic head")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N train images (smoke runs)")
    args = p.parse_args(argv)
    try:
        res = run(args.epochs, args.topics, args.weight, args.hidden, args.root, args.seed,
                  max_train=args.max_train)
    except FileNotFoundError as exc:
        print(f"topics_eval: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
