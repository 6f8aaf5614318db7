"""Shared fixtures. Tests import the *installed* package (run `pytest` from the
repository root; the rootdir is not put on sys.path, so the checkout's
uncompiled `interp_engine/` does not shadow the installed one)."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
