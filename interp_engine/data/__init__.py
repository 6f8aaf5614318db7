"""Concept data: the Broden-format reader (:mod:`interp_engine.data.broden`),
the Broden-format writer (:mod:`interp_engine.data.writer`), the bundled
concept dataset generator (:mod:`interp_engine.data.concepts`) and the
Fashion-MNIST reader (:mod:`interp_engine.data.fashion_mnist`: local IDX
files, e.g. Debian's dataset-fashion-mnist).

The reader needs torch (it is a ``torch.utils.data.Dataset``); the writer and
the generator need numpy and Pillow only; the Fashion-MNIST module needs
numpy only (torch for :func:`fashion_mnist_tensor`, imported when called).
Its loader stays at ``interp_engine.data.fashion_mnist.fashion_mnist``: a
package attribute of that name would shadow the submodule.
"""
import importlib as _importlib

from .concepts import ConceptArrays, concept_dataset, default_cache_dir, render_concepts
from .fashion_mnist import (FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist_root,
                            fashion_mnist_tensor, read_idx)
from .writer import encode_label_png, label_numbers, read_manifest, write_broden

# the Broden reader is a torch Dataset: its names load on first access (PEP 562), so that the
# writer, the generator and the Fashion-MNIST reader import without torch
_BRODEN_NAMES = ("BrodenDataset", "broden_loader", "decode_label_png", "NETDISSECT_MEAN_RGB", "NETDISSECT_SCALE",
                 "IMAGENET_MEAN", "IMAGENET_STD")

__all__ = list(_BRODEN_NAMES) + [
    "concept_dataset",
    "render_concepts",
    "ConceptArrays",
    "default_cache_dir",
    "write_broden",
    "read_manifest",
    "encode_label_png",
    "label_numbers",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "fashion_mnist_root",
    "fashion_mnist_tensor",
    "read_idx",
]


def __getattr__(name):
    if name in _BRODEN_NAMES:
        return getattr(_importlib.import_module(".broden", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_BRODEN_NAMES))
