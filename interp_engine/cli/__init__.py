"""The ``interp-engine`` command line (``interp-engine`` and
``python -m interp_engine.cli``).

One module per command (:mod:`.dissect`, :mod:`.invert`, :mod:`.concepts`,
:mod:`.represent`, :mod:`.topics`; ``demo``, ``info`` and ``layers`` in
:mod:`.app`, which builds the parser and dispatches); the options several
commands take are written once in :mod:`.options`; what every command shares
(the one-line error, the atomic ``--out``, the checks before the work) is in
:mod:`.common` and :mod:`.loading`.  Nothing here imports torch at import
time: every command but ``info`` and ``demo`` says in one line when it is
missing.
"""
from .app import build_parser, main
from .common import OUTPUT_MARKER, CLIError

__all__ = ["main", "build_parser", "CLIError", "OUTPUT_MARKER"]
