"""Deprecated: the training script of the bundled FashionCNN moved to
``scripts/train_fashion_cnn.py`` of the source checkout (scripts are not part
of the package).  In a checkout this module loads it from there, re-exports
its names and warns on import; ``python -m interp_engine.models.train_fashion``
still runs it."""
import sys
import warnings

from ._moved import load_script

warnings.warn("interp_engine.models.train_fashion is deprecated; use scripts/train_fashion_cnn.py",
              DeprecationWarning, stacklevel=2)

_script = load_script("train_fashion_cnn", "interp_engine.models.train_fashion")
train_fashion_cnn, evaluate, predict, features = (_script.train_fashion_cnn, _script.evaluate, _script.predict,
                                                  _script.features)
ExtraLoss, main = _script.ExtraLoss, _script.main

__all__ = ["train_fashion_cnn", "evaluate", "predict", "features", "ExtraLoss", "main"]

if __name__ == "__main__":  # pragma: no cover  (python -m: the warning above is not shown there)
    print("interp_engine.models.train_fashion is deprecated; use scripts/train_fashion_cnn.py", file=sys.stderr)
    raise SystemExit(main())
