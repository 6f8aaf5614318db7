"""Concept data: the Broden-format reader (:mod:`interp_engine.data.broden`),
the Broden-format writer (:mod:`interp_engine.data.writer`) and the bundled
concept dataset generator (:mod:`interp_engine.data.concepts`).

The reader needs torch (it is a ``torch.utils.data.Dataset``); the writer and
the generator need numpy and Pillow only.
"""
from . import broden as _broden
from .broden import *  # noqa: F401,F403  (its __all__: BrodenDataset, broden_loader, decode_label_png, constants)
from .concepts import ConceptArrays, concept_dataset, default_cache_dir, render_concepts
from .writer import encode_label_png, label_numbers, read_manifest, write_broden

__all__ = list(_broden.__all__) + [
    "concept_dataset",
    "render_concepts",
    "ConceptArrays",
    "default_cache_dir",
    "write_broden",
    "read_manifest",
    "encode_label_png",
    "label_numbers",
]
