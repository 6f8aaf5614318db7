"""interp_engine: a fast engine for the statistics behind neural-network
interpretability (work in progress: public API assembled at merge)."""
from ._loader import core as _core

__version__ = getattr(_core, "__version__", "0.0.0")
