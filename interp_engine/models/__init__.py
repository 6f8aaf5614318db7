"""Models: the embedded default :class:`ConceptCNN` (trained on the bundled
concept dataset, weights shipped in the package) and torchvision's
MobileNetV2 written without torchvision (:mod:`.mobilenet_v2`)."""
from .concept_cnn import (DEFAULT_LAYER, DEFAULT_TRANSFORM, LAYER_NAMES, OUTPUTS, ConceptCNN,
                          load_default_model, load_model, output_names, save_weights)
from .mobilenet_v2 import MobileNetV2, find_mobilenet_v2_weights, imagenet_preprocess

# the pretrained constructor stays at interp_engine.models.mobilenet_v2.mobilenet_v2: a package
# attribute of that name would shadow the submodule

__all__ = ["ConceptCNN", "load_default_model", "load_model", "save_weights", "output_names", "OUTPUTS",
           "DEFAULT_LAYER", "DEFAULT_TRANSFORM", "LAYER_NAMES", "MobileNetV2",
           "imagenet_preprocess", "find_mobilenet_v2_weights"]
