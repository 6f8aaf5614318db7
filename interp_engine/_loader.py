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


def require_torch(what: str):
    """``import torch`` for a module that needs it (the methods, the capture
    hooks, the Broden reader), with a message saying how to install it: the
    kernels need numpy alone, torch is an extra."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{what} needs PyTorch, an optional extra of interp_engine: "
            "`pip install 'interp_engine[torch]'` (or `pip install torch`). "
            f"Import failed with: {exc}"
        ) from exc
    return torch
