"""TCAV (docs/concept_vectors.md); the module moved into a package."""
from .method import *  # noqa: F401,F403
from .method import __all__  # noqa: F401
from .method import _make_classifier, train_cav  # noqa: F401
