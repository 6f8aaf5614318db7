"""The engine demo: a miniature Network Dissection on synthetic data with a
known answer, run end to end through the compiled core.

Until the dissection module lands this is the package's main job
(`interp-engine demo`). It builds a small concept dataset in memory
(pixel-labelled colour blobs and an image-level scene label per image), a
layer of 7x7 "units" whose ground-truth concept is known (each unit responds
to one colour's mask, one scene, or nothing), then:

1. thresholds every unit at its top-0.5% activation with ``ChannelQuantiles``
   (one streaming sketch pass, then the exact pass);
2. tallies intersections and unions against the concept masks with
   ``IoUTally`` at the label resolution (56x56);
3. labels each unit with its best concept and checks it against the truth;
4. picks, with ``greedy_cover``, the fewest units whose detected concepts cover
   every detected concept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, TextIO

import numpy as np

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SCENES = ["beach", "forest", "street", "kitchen"]


@dataclass(frozen=True)
class DemoData:
    activations: np.ndarray        # (N, K, 7, 7) float32
    pixel_labels: np.ndarray       # (N, 1, S, S) int32, 0 = none, 1..6 colours
    image_labels: np.ndarray       # (N, 1) int32, scene label numbers
    label_names: List[str]         # index = label number (0 = "-")
    label_category: np.ndarray     # (L,) category index per label
    category_names: List[str]
    truth: List[str]               # ground-truth concept name per unit ("-" for noise units)


def make_demo_data(num_images: int = 400, units_per_concept: int = 3, noise_units: int = 4,
                   size: int = 56, seed: int = 0) -> DemoData:
    """Synthetic concept data with units whose concept is known by construction."""
    rng = np.random.default_rng(seed)
    n_col, n_scene = len(COLOURS), len(SCENES)
    label_names = ["-"] + COLOURS + SCENES
    label_category = np.array([0] + [0] * n_col + [1] * n_scene, dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.zeros((num_images, 1, size, size), dtype=np.int32)
    for i in range(num_images):
        for _ in range(rng.integers(1, 4)):  # 1-3 blobs per image, later ones on top
            c = rng.integers(1, n_col + 1)
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(size / 10, size / 4, 2)
            pix[i, 0][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = c
    scenes = rng.integers(0, n_scene, num_images)
    img = (1 + n_col + scenes).astype(np.int32)[:, None]

    # unit responses at 7x7: the fraction of each 8x8 cell covered by the unit's colour
    cells = size // 7
    truth: List[str] = []
    maps = []
    for c in range(1, n_col + 1):
        cover = (pix[:, 0] == c).reshape(num_images, 7, cells, 7, cells).mean(axis=(2, 4))
        for _ in range(units_per_concept):
            maps.append(cover + 0.05 * rng.standard_normal(cover.shape))
            truth.append(COLOURS[c - 1])
    for s in range(n_scene):
        on = (scenes == s).astype(np.float64)[:, None, None]
        for _ in range(units_per_concept):
            maps.append(on * (0.6 + 0.1 * rng.standard_normal((num_images, 7, 7)))
                        + 0.05 * rng.standard_normal((num_images, 7, 7)))
            truth.append(SCENES[s])
    for _ in range(noise_units):
        maps.append(rng.standard_normal((num_images, 7, 7)))
        truth.append("-")
    acts = np.maximum(np.stack(maps, axis=1), 0.0).astype(np.float32)  # ReLU
    return DemoData(acts, pix, img, label_names, label_category, ["colour", "scene"], truth)
