"""interp_engine: a fast engine for the statistics behind neural-network
interpretability.

The compiled core (``interp_engine._core``, C++17, no libtorch) does the
counting; :mod:`interp_engine.engine` converts numpy arrays (and torch tensors,
read in place) at its boundary, with errors that name the argument, what was
expected and what arrived.  The kernels need numpy alone:

- :class:`ChannelQuantiles`, :class:`ExactQuantilePass`: streaming per-channel
  quantiles (rank error 1e-4) and the exact second pass;
- :class:`IoUTally`, :func:`resize_maps`: Network Dissection's intersection /
  union counts, and the resizes of PyTorch and Pillow, exactly;
- :func:`midranks`, :func:`auc`, :func:`mannwhitney_pvalues`,
  :func:`beam_search`: rank statistics and INVERT's formula search;
- :func:`greedy_cover`, :func:`ratio_greedy_cover`,
  :func:`ratio_greedy_cover_many`, :class:`PackedBits`: greedy (submodular) cover.

The methods (torch for the ones that run a model) follow one protocol: a class
built from ``(model, layer, **settings)``, ``fit(data)`` where it learns
something, ``explain(data)`` returning a result with ``table()``,
``to_csv()``, ``save()`` / ``load()``: :class:`Dissection`, :class:`Invert`,
:class:`TCAV`, :class:`ConceptVectors`, :class:`ConceptRelevance`,
:class:`RepresentativeInterpretation`, :class:`TopicInterpretation`.  They,
the capture hooks, the data and the reports load on first access, so
``import interp_engine`` imports no torch.  docs/index.md maps each method to
its module, docs, CLI command, report, benchmark and tests; docs/api.md lists
every public name.
"""
import importlib as _importlib
import importlib.util as _importlib_util
from ._loader import core as _core
from .engine import *  # noqa: F401,F403  (the kernels, numpy only: engine.__all__, imported now)

__version__ = getattr(_core, "__version__", "0.0.0")

get_num_threads = _core.get_num_threads


def set_num_threads(n: int) -> None:
    """Set the default number of threads of the core (an integer >= 0; 0 =
    all cores).  Not a bool, a float or a string (TypeError); out of range:
    ValueError."""
    from .engine.checks import INT32_MAX, check_int

    _core.set_num_threads(check_int(n, "num_threads", minimum=0, maximum=INT32_MAX))

# The public surface: every subpackage's __all__, in one table (tests/core/test_package.py checks
# that each entry equals its subpackage's __all__ and that every name is documented).  The kernels
# are imported above; the rest loads on first access (PEP 562), so `import interp_engine` needs
# numpy alone.  Names that need torch to load are listed in __all__ only when torch is installed,
# so that `from interp_engine import *` works without it.  (capture's `capture()` shorthand is not
# re-exported: `interp_engine.capture` is the submodule.)
_EXPORTS = {
    ".engine": ("ChannelQuantiles", "ExactQuantilePass", "DEFAULT_K", "RANK_ERROR_BOUND", "IoUTally", "UNIT_RULES",
                "RESIZE_METHODS", "resize_maps", "CoverResult", "RatioCoverResult", "PackedBits", "pack_bits",
                "greedy_cover", "ratio_greedy_cover", "ratio_greedy_cover_many", "midranks", "auc",
                "mannwhitney_pvalues", "beam_search", "PVALUE_METHODS"),
    ".methods": ("Dissection", "DissectionResult", "LayerResult", "random_rotation", "Invert", "InvertResult",
                 "NeuronExplanation", "Explanation", "format_formula", "TCAV", "TCAVResult", "TCAVRow", "CAV",
                 "Classifier", "SGDLinearClassifier", "MeanDifferenceClassifier", "ConceptVectors",
                 "ConceptVectorsEvaluation", "ConceptIoURow", "ConceptRelevance", "RelevanceResult",
                 "LocalContributions", "RepresentativeInterpretation", "Regions", "Region", "Boundaries",
                 "SimilarImages", "RegionEvaluation", "evaluate_regions", "grad_cam", "average_drop_increase",
                 "DropIncrease", "TopicInterpretation", "PredictionDifference", "EditEffect", "NeuronEdit",
                 "Topics", "extract_topics", "validate_topic_matrix", "ABLATIONS", "TARGETS", "InterpretiveLoss",
                 "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS"),
    ".data": ("BrodenDataset", "broden_loader", "decode_label_png", "NETDISSECT_MEAN_RGB", "NETDISSECT_SCALE",
              "IMAGENET_MEAN", "IMAGENET_STD", "concept_dataset", "render_concepts", "ConceptArrays",
              "default_cache_dir", "write_broden", "read_manifest", "encode_label_png", "label_numbers",
              "FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "fashion_mnist_root",
              "fashion_mnist_tensor", "read_idx"),
    ".report": ("write_report", "overlay_mask", "unit_strip", "write_invert_report", "histogram_svg",
                "write_represent_report", "heat_overlay", "plot_region", "display_image", "plot_relevance_heatmap",
                "plot_local"),
    ".capture": ("find_module", "to_bchw", "Capture", "iter_activations", "pooled_activations",
                 "model_device_dtype", "OutputHooks"),
    ".models": ("ConceptCNN", "load_default_model", "load_model", "save_weights", "output_names", "OUTPUTS",
                "DEFAULT_LAYER", "DEFAULT_TRANSFORM", "LAYER_NAMES", "FashionCNN", "MobileNetV2",
                "imagenet_preprocess", "find_mobilenet_v2_weights"),
}
#: names whose module imports torch
_NEEDS_TORCH = frozenset(_EXPORTS[".capture"] + _EXPORTS[".models"] + (
    "BrodenDataset", "broden_loader", "decode_label_png", "NETDISSECT_MEAN_RGB", "NETDISSECT_SCALE", "IMAGENET_MEAN",
    "IMAGENET_STD", "InterpretiveLoss", "fit_topic_head", "FASHION_MNIST_DESCRIPTIONS"))
#: deprecated aliases: reachable, not listed in __all__ (each warns when called, naming its replacement)
_DEPRECATED = {**{n: ".methods.dissection" for n in ("dissect", "rotation_experiment")},
               **{n: ".methods.concept_relevance" for n in (
                   "concept_class_relevance", "linear_head_relevance", "concept_maps", "concept_contributions")},
               **{n: ".methods.topics" for n in ("prediction_difference", "edit_neurons", "explain_edit")}}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_WHERE.update(_DEPRECATED)
_HAVE_TORCH = _importlib_util.find_spec("torch") is not None
__all__ = [n for names in _EXPORTS.values() for n in names if _HAVE_TORCH or n not in _NEEDS_TORCH]
__all__ += ["get_num_threads", "set_num_threads", "__version__"]
# subpackages reachable as attributes (interp_engine.report.write_report(...)) after `import interp_engine`;
# "topics" is the deprecated shim of interp_engine.methods.topics
_SUBPACKAGES = ("data", "models", "methods", "report", "engine", "topics")


def __getattr__(name):
    if name in _WHERE:
        # import_module, not `from . import x`: the latter probes this __getattr__ again.  The capture
        # module raises a clear ImportError without torch.
        return getattr(_importlib.import_module(_WHERE[name], __name__), name)
    if name in _SUBPACKAGES:
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'interp_engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE) | set(_SUBPACKAGES))
