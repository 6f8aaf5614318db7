"""Python faces of the compiled core: conversion of numpy/torch arrays,
validation with clear errors, and the accumulator classes.  numpy is their
only dependency (a torch tensor is read in place when torch is there).

``__all__`` is the kernels.  Three public modules hold the plumbing that
methods written outside the engine reuse, and are not re-exported here:
:mod:`~interp_engine.engine.checks` (the argument checks, with errors naming
the argument, what was expected and what arrived),
:mod:`~interp_engine.engine.states` (the digests of accumulator states) and
:mod:`~interp_engine.engine.sync` (the accumulators' locks)."""
from . import cover as _cover, iou as _iou, quantiles as _quantiles, rank as _rank, resize as _resize
from .cover import (CoverResult, PackedBits, RatioCoverResult, greedy_cover, pack_bits, ratio_greedy_cover,
                    ratio_greedy_cover_many)
from .iou import UNIT_RULES, IoUTally
from .quantiles import DEFAULT_K, RANK_ERROR_BOUND, ChannelQuantiles, ExactQuantilePass
from .rank import PVALUE_METHODS, auc, beam_search, mannwhitney_pvalues, midranks
from .resize import RESIZE_METHODS, resize_maps

__all__ = [*_quantiles.__all__, *_iou.__all__, *_resize.__all__, *_cover.__all__, *_rank.__all__]
