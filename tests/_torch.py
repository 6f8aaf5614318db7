"""torch for the tests that compare with it or feed it, when it is installed.

The kernels (quantiles, IoU, resize, rank/AUC, cover, Invert on arrays) need
numpy alone, and so do their tests: CI runs them once more in an environment
without torch (.ci/run).  A test that needs torch says so with ``@needs_torch``
(or ``pytest.param(..., marks=needs_torch)``); a reference that torch computes
falls back to an independent one where the test is about something else.
"""
import pytest

try:
    import torch
except ImportError:  # the kernels without the methods' dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (not installed)")
