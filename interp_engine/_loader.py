"""Import of the compiled core with a clear message when it is missing."""
from __future__ import annotations

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "interp_engine's compiled core (interp_engine._core) could not be imported: "
        f"{exc}. The package must be installed with its C++ extension built, e.g. "
        "`pip install .` from a checkout (needs a C++17 compiler), or "
        "`python setup.py build_ext --inplace` for development."
    ) from exc

core = _core
