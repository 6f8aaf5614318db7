"""Shared fixtures. Tests import the *installed* package (run `pytest` from the
repository root; the rootdir is not put on sys.path, so the checkout's
uncompiled `interp_engine/` does not shadow the installed one).

Layout: ``core/`` the kernels, their states and the boundary (errors, files,
fuzzing, threads, interrupts, the package itself); ``methods/`` the methods,
capture, checkpoints, results and the command line; ``data/`` the datasets
and the bundled models.  The helpers they share live here in ``tests/``
(references, the dtype and device lists in ``_params``, child processes,
the fuzzer), which is put on sys.path for every test."""
import sys
from pathlib import Path

import numpy as np
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


ISA_LEVELS = ("generic", "avx2", "avx512")


@pytest.fixture(params=ISA_LEVELS)
def isa(request, monkeypatch):
    """Runs the test once per INTERP_ENGINE_ISA cap (the instruction sets the
    compiled kernels may use; read at the start of every core operation),
    skipping the caps above what this CPU has (they would repeat the run
    below them)."""
    from interp_engine import _core

    level = request.param
    if ISA_LEVELS.index(level) > ISA_LEVELS.index(_core.cpu_isa()):
        pytest.skip(f"this CPU has no {level} instructions the kernels use")
    monkeypatch.setenv("INTERP_ENGINE_ISA", level)
    return level
