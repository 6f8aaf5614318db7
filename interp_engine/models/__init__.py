"""The embedded default model: :class:`ConceptCNN` and its shipped weights."""
from .concept_cnn import (DEFAULT_LAYER, LAYER_NAMES, OUTPUTS, ConceptCNN, load_default_model,
                          load_model, output_names, save_weights)

__all__ = ["ConceptCNN", "load_default_model", "load_model", "save_weights", "output_names", "OUTPUTS",
           "DEFAULT_LAYER", "LAYER_NAMES"]
