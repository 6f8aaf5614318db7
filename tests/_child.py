"""Run Python in a child process that imports the same interp_engine as the tests.

A test run from a checkout may test either the package built in place or the
one `pip install .` put in site-packages (CI).  In the second case the
checkout's source tree has no compiled core, and a child started with the
checkout on sys.path (`python -c` and `python -m` put the working directory
first) would import it and fail.  So every child gets the directory holding
the imported package first on PYTHONPATH and as its working directory, then
tests/ (for helper modules such as long_calls and _slow_model).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import interp_engine

TESTS = Path(__file__).resolve().parent
PACKAGE_ROOT = Path(interp_engine.__file__).resolve().parents[1]


def env(**extra):
    """os.environ with PYTHONPATH = the imported package's root, tests/, then the caller's."""
    paths = [str(PACKAGE_ROOT), str(TESTS)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


def popen(args, **kwargs):
    """subprocess.Popen of `python *args` in the child environment (cwd: the package root)."""
    kwargs.setdefault("cwd", str(PACKAGE_ROOT))
    kwargs.setdefault("env", env())
    return subprocess.Popen([sys.executable, *args], **kwargs)


def run(args, **kwargs):
    """subprocess.run of `python *args` in the child environment, text output captured."""
    kwargs.setdefault("cwd", str(PACKAGE_ROOT))
    kwargs.setdefault("env", env())
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, *args], **kwargs)


def run_code(code, *argv, **kwargs):
    """run(["-c", code, *argv])."""
    return run(["-c", code, *map(str, argv)], **kwargs)
