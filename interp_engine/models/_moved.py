"""The training scripts moved out of the package, to ``scripts/`` of the source
checkout; their old module paths (:mod:`interp_engine.models.train`,
:mod:`interp_engine.models.train_fashion`) stay as deprecated shims that load
them from there."""
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: the checkout's scripts/ folder (absent where the package is installed without its checkout)
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str, old: str) -> ModuleType:
    """``scripts/<name>.py`` as the module ``name``: the one ``import name`` gives with
    ``scripts/`` on ``sys.path`` (so both ways share one module object), else the checkout's
    next to this package."""
    if name in sys.modules:
        return sys.modules[name]
    path = SCRIPTS / f"{name}.py"
    if not path.is_file():
        if importlib.util.find_spec(name) is not None:  # scripts/ on sys.path (an installed package)
            return importlib.import_module(name)
        raise ImportError(f"{old} moved out of the package to scripts/{name}.py of the interp_engine source "
                          f"checkout; run it from there (no {path} next to this installation, and no {name} "
                          f"on sys.path)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
