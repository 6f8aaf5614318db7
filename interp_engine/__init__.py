"""interp_engine: a fast engine for the statistics behind neural-network
interpretability.

The compiled core (``interp_engine._core``, C++17, no libtorch) does the
counting; this package converts numpy arrays and torch tensors at its
boundary, with errors that name the argument, what was expected and what
arrived.

- :class:`ChannelQuantiles`: streaming per-channel quantiles (rank error
  1e-4), with an exact second pass.
- :class:`IoUTally`: Network Dissection's intersection / union counts between
  binarized, upsampled activation maps and concept masks; :func:`resize_maps`
  resizes maps exactly as PyTorch (with or without antialiasing) or Pillow
  (NetDissect-Lite) does.
- :func:`greedy_cover`, :func:`ratio_greedy_cover`: greedy weighted max
  coverage / set cover, and the submodular-cost submodular cover of Lam et al.
  (2021); :func:`ratio_greedy_cover_many` solves many such problems across
  the thread pool; :class:`PackedBits` for bit-packed sets.
- :class:`Capture`, :func:`iter_activations`, :func:`pooled_activations`:
  activations of named submodules of any ``torch.nn.Module`` through forward
  hooks that are always removed (needs the optional PyTorch extra; imported
  on first use, so ``import interp_engine`` does not import torch).
- :func:`dissect`, :class:`Dissection`: Network Dissection end to end
  (thresholds, IoU, labels, report; :mod:`interp_engine.report`).
- :class:`Invert`: INVERT explanations of neurons by AND/OR/NOT formulas of
  concepts scored by AUC, with Mann-Whitney p-values (imported on first use;
  ``Invert.from_model`` needs torch, ``Invert.explain`` does not).
- :class:`TCAV`: concept activation vectors and TCAV scores with the paper's
  significance test (imported on first use; needs torch, scipy, and
  scikit-learn for the SGD classifier).
- :class:`ConceptVectors`: segmentation concept vectors (semantic vectors,
  our formulation of Gu & Tresp; Net2Vec) with the held-out IoU against the
  best single unit (imported on first use; needs torch).
- :class:`RepresentativeInterpretation`, :class:`Region`, :func:`plot_region`:
  representative interpretations (Lam et al., ICCV 2021): a seed's decision
  region from sampled linear decision boundaries and the ratio-greedy cover;
  :func:`grad_cam` and :func:`average_drop_increase` to evaluate such maps
  (imported on first use; needs torch).
- :mod:`interp_engine.topics`: semantic topic supervision (Dong et al., CVPR
  2017): :func:`extract_topics` (LDA, needs scikit-learn),
  :class:`InterpretiveLoss`, :func:`prediction_difference`,
  :func:`edit_neurons` and :func:`explain_edit` (imported on first use; all
  but the topics need torch).
"""
import importlib as _importlib
import importlib.util as _importlib_util
from ._loader import core as _core
from .engine.cover import (CoverResult, PackedBits, RatioCoverResult, greedy_cover, pack_bits,
                           ratio_greedy_cover, ratio_greedy_cover_many)
from .engine.iou import IoUTally
from .engine.quantiles import ChannelQuantiles, ExactQuantilePass
from .engine.resize import resize_maps

__version__ = getattr(_core, "__version__", "0.0.0")

get_num_threads = _core.get_num_threads


def set_num_threads(n: int) -> None:
    """Set the default number of threads of the core (an integer >= 0; 0 =
    all cores).  Not a bool, a float or a string (TypeError); out of range:
    ValueError."""
    from .engine._arrays import INT32_MAX, check_int

    _core.set_num_threads(check_int(n, "num_threads", minimum=0, maximum=INT32_MAX))

__all__ = [
    "ChannelQuantiles",
    "ExactQuantilePass",
    "IoUTally",
    "resize_maps",
    "greedy_cover",
    "ratio_greedy_cover",
    "ratio_greedy_cover_many",
    "PackedBits",
    "pack_bits",
    "CoverResult",
    "RatioCoverResult",
    "get_num_threads",
    "set_num_threads",
    "__version__",
]

# interp_engine.capture imports torch, an optional extra: its names are loaded
# on first access (PEP 562) and listed in __all__ only when torch is installed,
# so that `from interp_engine import *` keeps working without it.  The
# `capture()` shorthand is not re-exported: `interp_engine.capture` is the
# submodule (use `from interp_engine.capture import capture`).
_CAPTURE_NAMES = ("Capture", "find_module", "to_bchw", "iter_activations",
                  "pooled_activations")
if _importlib_util.find_spec("torch") is not None:
    __all__ += list(_CAPTURE_NAMES)

# Methods are loaded on first access too (they need no torch to import).
_METHOD_NAMES = {"Invert": ".methods.invert", "InvertResult": ".methods.invert",
                 "dissect": ".methods.dissection", "Dissection": ".methods.dissection",
                 "DissectionResult": ".methods.dissection", "LayerResult": ".methods.dissection",
                 "rotation_experiment": ".methods.dissection",
                 "TCAV": ".methods.tcav", "TCAVResult": ".methods.tcav",
                 "ConceptVectors": ".methods.concept_vectors",
                 **{n: ".methods.representative" for n in (
                     "RepresentativeInterpretation", "Regions", "Region", "RegionEvaluation",
                     "evaluate_regions")},
                 "plot_region": ".report.represent_page",
                 "grad_cam": ".methods.cam", "average_drop_increase": ".methods.cam",
                 **{n: ".methods.concept_relevance" for n in (
                     "ConceptRelevance", "concept_class_relevance", "linear_head_relevance", "concept_maps",
                     "concept_contributions", "RelevanceResult", "LocalContributions")},
                 "plot_local": ".report.relevance_plots",
                 **{n: ".methods.topics" for n in (
                     "TopicInterpretation", "extract_topics", "Topics", "validate_topic_matrix",
                     "PredictionDifference", "NeuronEdit", "EditEffect")}}
# deprecated aliases, reachable but not listed in __all__
_DEPRECATED_NAMES = {n: ".methods.topics" for n in ("prediction_difference", "edit_neurons", "explain_edit")}
__all__ += list(_METHOD_NAMES)
# names that need torch to be loaded (listed in __all__ only when torch is installed)
_TORCH_METHOD_NAMES = {"InterpretiveLoss": ".methods.topics", "fit_topic_head": ".methods.topics"}
if _importlib_util.find_spec("torch") is not None:
    __all__ += list(_TORCH_METHOD_NAMES)
_METHOD_NAMES.update(_TORCH_METHOD_NAMES)
_METHOD_NAMES.update(_DEPRECATED_NAMES)
# subpackages reachable as attributes (interp_engine.report.write_report(...)) after `import interp_engine`
_SUBPACKAGES = ("data", "models", "methods", "report", "topics")


def __getattr__(name):
    if name in _CAPTURE_NAMES:
        # import_module, not `from . import capture`: the latter probes this
        # __getattr__ again.  Raises a clear ImportError without torch.
        module = _importlib.import_module(".capture", __name__)
        return getattr(module, name)
    if name in _METHOD_NAMES:
        return getattr(_importlib.import_module(_METHOD_NAMES[name], __name__), name)
    if name in _SUBPACKAGES:
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'interp_engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_CAPTURE_NAMES) | set(_METHOD_NAMES) | set(_SUBPACKAGES))
