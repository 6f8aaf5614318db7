"""capture.OutputHooks: forward hooks that see and may replace a layer's
output, always removed (the interventions of the topics method and the raw
outputs of representative interpretations go through it)."""
from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from interp_engine.capture import OutputHooks  # noqa: E402


def model():
    m = nn.Sequential(OrderedDict([("a", nn.Linear(3, 3, bias=False)), ("b", nn.ReLU()), ("c", nn.Linear(3, 2))]))
    with torch.no_grad():
        m.a.weight.copy_(torch.eye(3))
    return m.eval()


def hooks(m):
    return sum(len(x._forward_hooks) for x in m.modules())


def test_see_replace_order_and_removal():
    m = model()
    x = torch.tensor([[1.0, -2.0, 3.0]])
    clean = m(x).detach()
    seen = []
    with OutputHooks(m, [("a", lambda out: seen.append(out.clone())), ("b", lambda out: out * 0),
                         ("b", lambda out: seen.append(out.clone()))]) as oh:
        assert oh.active and hooks(m) == 3
        out = m(x)
    assert not oh.active and hooks(m) == 0
    torch.testing.assert_close(seen[0], x)                  # the raw output of "a"
    assert torch.equal(seen[1], torch.zeros(1, 3))          # the second hook on "b" sees the replaced output
    torch.testing.assert_close(out, m.c(torch.zeros(1, 3)))
    torch.testing.assert_close(m(x), clean)                 # removed: the model computes as before
    with OutputHooks(m, {"b": lambda out: None}):           # None keeps the output
        torch.testing.assert_close(m(x), clean)


def test_removed_on_exception_and_not_reentrant():
    m = model()
    oh = OutputHooks(m, {"b": lambda out: out})
    with pytest.raises(RuntimeError, match="boom"):
        with oh:
            raise RuntimeError("boom")
    assert hooks(m) == 0

    def bad(out):
        raise ValueError("in the hook")

    with pytest.raises(ValueError, match="in the hook"):
        with OutputHooks(m, {"a": bad}):
            m(torch.zeros(1, 3))
    assert hooks(m) == 0
    with oh:
        with pytest.raises(RuntimeError, match="already active"):
            oh.__enter__()
    assert hooks(m) == 0
    with oh:  # reusable
        assert hooks(m) == 1


def test_bad_arguments():
    m = model()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        OutputHooks(lambda x: x, {"a": print})
    with pytest.raises(ValueError, match="'aa' is not a submodule.*'a'"):
        OutputHooks(m, {"aa": print})
    with pytest.raises(TypeError, match="the hook of layer 'a' must be callable"):
        OutputHooks(m, {"a": 3})
    with pytest.raises(TypeError, match=r"hooks must be a dict \{layer: fn\} or a sequence of \(layer, fn\) pairs"):
        OutputHooks(m, "a")
    with pytest.raises(TypeError, match="got an element"):
        OutputHooks(m, ["a"])
    with pytest.raises(ValueError, match="at least one layer"):
        OutputHooks(m, {})
