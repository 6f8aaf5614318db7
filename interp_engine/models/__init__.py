"""Models: the embedded default :class:`ConceptCNN` (trained on the bundled
concept dataset, weights shipped in the package), :class:`FashionCNN`
(trained on Fashion-MNIST, weights shipped; :mod:`.fashion_cnn`) and
torchvision's MobileNetV2 written without torchvision (:mod:`.mobilenet_v2`)."""
from .concept_cnn import (DEFAULT_LAYER, DEFAULT_TRANSFORM, LAYER_NAMES, OUTPUTS, ConceptCNN,
                          load_default_model, load_model, output_names, save_weights)
from .fashion_cnn import FashionCNN
from .mobilenet_v2 import MobileNetV2, find_mobilenet_v2_weights, imagenet_preprocess

# the pretrained constructors stay at interp_engine.models.mobilenet_v2.mobilenet_v2 and
# interp_engine.models.fashion_cnn.fashion_cnn: a package attribute of that name would shadow the
# submodule.  FashionCNN's DEFAULT_LAYER / LAYER_NAMES / MEAN / STD stay in its submodule too (the
# package-level DEFAULT_LAYER and LAYER_NAMES are ConceptCNN's)

__all__ = ["ConceptCNN", "load_default_model", "load_model", "save_weights", "output_names", "OUTPUTS",
           "DEFAULT_LAYER", "DEFAULT_TRANSFORM", "LAYER_NAMES", "FashionCNN", "MobileNetV2",
           "imagenet_preprocess", "find_mobilenet_v2_weights"]
