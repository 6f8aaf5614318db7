"""Representative interpretations evaluated as the paper does (issue 6).

    python benchmarks/eval_represent.py --data fashion  [--reference 1000] [--seeds 100] [--unseen 2000] [--pool 50]
    python benchmarks/eval_represent.py --data concepts [...]

Workloads:

* ``fashion`` (real data): the bundled FashionCNN (trained on Fashion-MNIST,
  test accuracy 91.15%), psi = its last conv layer (``relu3``, 64 x 7 x 7),
  its piecewise-linear head (derived: the model is an nn.Sequential), on
  Fashion-MNIST test images.  Needs Debian's ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``) or ``INTERP_ENGINE_FASHION_MNIST``
  pointing at the four IDX files.
* ``concepts``: the bundled ConceptCNN's scene output (4 classes; psi =
  ``conv4``, 128 x 8 x 8; head = ``classify`` restricted to the scene logits)
  on images of the bundled concept dataset rendered in memory (seed 0).

Reference set: the first ``--reference`` images; seeds: the first
``--seeds`` of them; unseen images: the next ``--unseen`` (never used to
build a region).  Delta 0, seed 0.  Average Drop / Increase keep the top 20%
pixels and set the others to black (Fashion-MNIST's background; the zero of
the ConceptCNN's [0, 1] input).  Prints the reference-set check (pure regions,
coverage of the seed's class) and the scores of the region heatmaps,
Grad-CAM and a random map on the same unseen images.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp_engine.methods.representative import RepresentativeInterpretation, evaluate_regions


def fashion(n: int):
    """(model, layer, head, images (n, 1, 28, 28), black)."""
    from interp_engine.data.fashion_mnist import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist,
                                                  fashion_mnist_tensor)
    from interp_engine.models.fashion_cnn import DEFAULT_LAYER, fashion_cnn

    images, _ = fashion_mnist("test")
    return (fashion_cnn().eval(), DEFAULT_LAYER, None, fashion_mnist_tensor(images[:n]),
            -FASHION_MNIST_MEAN / FASHION_MNIST_STD)


def concepts(n: int):
    from interp_engine.data.concepts import render_concepts
    from interp_engine.models.concept_cnn import ConceptCNN, OutputGroup, load_default_model

    m = OutputGroup(load_default_model(), "scene").eval()
    return m, "model.conv4", m.head, ConceptCNN.preprocess(render_concepts(n, seed=0, image_size=64).images), 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["fashion", "concepts"], default="fashion")
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--unseen", type=int, default=2000)
    ap.add_argument("--pool", type=int, default=50)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model, layer, head, x, black = (fashion if args.data == "fashion" else concepts)(args.reference + args.unseen)
    ref, unseen = x[:args.reference], x[args.reference:]
    t0 = time.perf_counter()
    ri = RepresentativeInterpretation(model, layer, head=head, pool=args.pool, delta=0, seed=0).fit(ref)
    regions = ri.explain(range(args.seeds))
    t1 = time.perf_counter()
    ev = evaluate_regions(ri, regions, unseen, keep=0.2, fill=black)
    t2 = time.perf_counter()
    print(f"{args.data}: psi = {layer}, {args.reference} reference images, {args.seeds} seeds, "
          f"pool {args.pool}, delta 0")
    print(ev)
    print(f"mean boundaries per region {np.mean([r.n_boundaries for r in regions]):.1f}, mean members "
          f"{np.mean([r.n_members for r in regions]):.1f}; coverage of pure regions "
          f"{np.mean([c for c, r in zip(ev.coverage, regions) if r.n_other == 0]):.3f}")
    print(f"time: fit + regions {t1 - t0:.1f} s, evaluation {t2 - t1:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
