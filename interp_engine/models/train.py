"""Deprecated: the training script of the bundled ConceptCNN moved to
``scripts/train_concept_cnn.py`` of the source checkout (scripts are not part
of the package).  In a checkout this module loads it from there, re-exports
its names and warns on import; ``python -m interp_engine.models.train`` still
runs it."""
import sys
import warnings

from ._moved import load_script

warnings.warn("interp_engine.models.train is deprecated; use scripts/train_concept_cnn.py",
              DeprecationWarning, stacklevel=2)

_script = load_script("train_concept_cnn", "interp_engine.models.train")
SHAPE_MIN_PIXELS, COLOR_MIN_PIXELS = _script.SHAPE_MIN_PIXELS, _script.COLOR_MIN_PIXELS
concept_targets, dense_targets, evaluate = _script.concept_targets, _script.dense_targets, _script.evaluate
capture, unit_iou, detector_table = _script.capture, _script.unit_iou, _script.detector_table
train, main = _script.train, _script.main

__all__ = ["SHAPE_MIN_PIXELS", "COLOR_MIN_PIXELS", "concept_targets", "dense_targets", "evaluate", "capture",
           "unit_iou", "detector_table", "train", "main"]

if __name__ == "__main__":  # pragma: no cover  (python -m: the warning above is not shown there)
    print("interp_engine.models.train is deprecated; use scripts/train_concept_cnn.py", file=sys.stderr)
    raise SystemExit(main())
