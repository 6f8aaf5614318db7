"""The checkout's scripts/ (the training scripts, not part of the package) on
sys.path, so that tests import them by name (``import _scripts`` first):

    import _scripts  # noqa: F401
    from train_fashion_cnn import train_fashion_cnn
"""
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
