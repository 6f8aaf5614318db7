"""interp_engine: a fast engine for the statistics behind neural-network
interpretability.

The compiled core (``interp_engine._core``, C++17, no libtorch) does the
counting; this package converts numpy arrays and torch tensors at its
boundary, with errors that name the argument, what was expected and what
arrived.

- :class:`ChannelQuantiles`: streaming per-channel quantiles (rank error
  1e-4), with an exact second pass.
- :class:`IoUTally`: Network Dissection's intersection / union counts between
  binarized, upsampled activation maps and concept masks.
- :func:`greedy_cover`, :func:`ratio_greedy_cover`: greedy weighted max
  coverage / set cover, and the submodular-cost submodular cover of Lam et al.
  (2021); :class:`PackedBits` for bit-packed sets.
"""
from ._loader import core as _core
from .engine.cover import (CoverResult, PackedBits, RatioCoverResult, greedy_cover, pack_bits,
                           ratio_greedy_cover)
from .engine.iou import IoUTally
from .engine.quantiles import ChannelQuantiles, ExactQuantilePass

__version__ = getattr(_core, "__version__", "0.0.0")

get_num_threads = _core.get_num_threads
set_num_threads = _core.set_num_threads

__all__ = [
    "ChannelQuantiles",
    "ExactQuantilePass",
    "IoUTally",
    "greedy_cover",
    "ratio_greedy_cover",
    "PackedBits",
    "pack_bits",
    "CoverResult",
    "RatioCoverResult",
    "get_num_threads",
    "set_num_threads",
    "__version__",
]
