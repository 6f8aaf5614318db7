"""Concept data: the Broden-format writer and the bundled concept dataset
generator (the Broden reader lives in :mod:`interp_engine.data.broden`)."""
from .concepts import ConceptArrays, concept_dataset, default_cache_dir, render_concepts
from .writer import decode_label_png, encode_label_png, read_manifest, write_broden

__all__ = ["concept_dataset", "render_concepts", "ConceptArrays", "default_cache_dir", "write_broden",
           "read_manifest", "encode_label_png", "decode_label_png"]
