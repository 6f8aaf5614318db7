"""A model for the command-line interrupt tests (tests/methods/test_cli_errors.py):
the bundled ConceptCNN with a pause before every forward, so that a run lasts
long enough to be interrupted after its first checkpoint."""
import time


def model():
    from interp_engine.models import load_default_model

    m = load_default_model()
    m.register_forward_pre_hook(lambda module, args: time.sleep(0.1))
    return m
