"""``python -m interp_engine.cli``: the same as ``interp-engine``."""
import sys

from .app import main

sys.exit(main())
