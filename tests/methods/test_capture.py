"""Activation capture (interp_engine.capture): names, hooks always removed,
adapters, stop_early, dtypes, devices, and the batch iterators.

References are the submodules run by hand on the same input."""
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import _child
import interp_engine  # noqa: E402
from interp_engine.capture import (Capture, capture, find_module, iter_activations,  # noqa: E402
                                   pooled_activations, to_bchw)


# ----------------------------------------------------------------------------- models

class Counter(nn.Module):
    """Identity that counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.block = nn.ModuleList([Block(6), Block(6)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = nn.ModuleDict({"cls": nn.Linear(6, 5)})
        self.tail = Counter()
        self.unused = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        x = self.features(x)
        for b in self.block:
            x = b(x)
        x = self.pool(x).flatten(1)
        return self.tail(self.heads["cls"](x))


def make_net(dtype=torch.float32):
    torch.manual_seed(0)
    return Net().to(dtype).eval()


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def manual(net, x):
    """Every intermediate of Net, computed by calling the submodules by hand."""
    f = net.features
    out = {}
    h = x
    for i, m in enumerate(f):
        h = m(h)
        out[f"features.{i}"] = h
    for j, b in enumerate(net.block):
        a = b.conv1(h)
        out[f"block.{j}.conv1"] = a
        c = b.conv2(b.relu(a))
        out[f"block.{j}.conv2"] = c
        h = h + c
        out[f"block.{j}"] = h
    p = net.pool(h)
    out["pool"] = p
    out["heads.cls"] = net.heads["cls"](p.flatten(1))
    return out


@pytest.fixture
def net():
    return make_net()


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- find_module

def test_find_module_nested_names(net):
    assert find_module(net, "features.3") is net.features[3]
    assert find_module(net, "block.1.conv2") is net.block[1].conv2
    assert find_module(net, "heads.cls") is net.heads["cls"]
    assert find_module(net, "block") is net.block


def test_find_module_unknown_name_lists_close_matches(net):
    with pytest.raises(ValueError) as e:
        find_module(net, "block.1.conv3")
    msg = str(e.value)
    assert "'block.1.conv3'" in msg and "'block.1.conv2'" in msg and "named_modules" in msg
    with pytest.raises(ValueError, match="feature"):
        find_module(net, "feature.3")
    with pytest.raises(ValueError, match=r"Its submodules: '0', '1'\."):
        find_module(nn.Sequential(nn.ReLU(), nn.ReLU()), "2")
    with pytest.raises(ValueError, match="the model itself"):
        find_module(net, "")
    with pytest.raises(TypeError, match="layer name must be a str"):
        find_module(net, 3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        find_module(object(), "a")


# ----------------------------------------------------------------------------- Capture

def test_several_layers_in_one_pass_equal_manual(net, x):
    names = ["features.1", "features.3", "block.0.conv1", "block.1.conv2", "block.1", "pool",
             "heads.cls"]
    with torch.no_grad():
        ref = manual(net, x)
    with Capture(net, names) as cap:
        out = cap(x)
    assert list(out) == sorted(out, key=names.index) and set(out) == set(names)
    for n in names:
        r = ref[n] if ref[n].dim() == 4 else ref[n][:, :, None, None]
        assert out[n].shape == r.shape, n
        torch.testing.assert_close(out[n], r, rtol=0, atol=0)
    assert cap.outputs is out
    assert no_hooks(net)


def test_call_outside_with_block_and_alias(net, x):
    out = capture(net, "features.3")(x)
    torch.testing.assert_close(out["features.3"], manual(net, x)["features.3"].detach(),
                               rtol=0, atol=0)
    assert no_hooks(net)


def test_user_forward_inside_block_resets_outputs_each_forward(net, x):
    with Capture(net, ["features.3"]) as cap:
        with torch.no_grad():
            net(x)
            first = cap.outputs["features.3"].clone()
            net(x[:1] * 2)  # a second forward: no "ran twice" error, fresh outputs
        assert cap.outputs["features.3"].shape[0] == 1
        # submodules called directly (not through the model) are not recorded
        ref = manual(net, x)["features.3"].detach()
        assert cap.outputs["features.3"].shape[0] == 1
        torch.testing.assert_close(first, ref)


def test_hooks_removed_after_normal_exit_and_exceptions(net, x):
    names = ["features.0", "block.1.conv2", "heads.cls"]
    with Capture(net, names) as cap:
        assert cap.active and not no_hooks(net)
        cap(x)
    assert not cap.active and no_hooks(net)

    with pytest.raises(KeyError):
        with Capture(net, names):
            raise KeyError("in the with body")
    assert no_hooks(net)

    with pytest.raises(RuntimeError):  # inside the forward: wrong channel count
        with Capture(net, names) as cap:
            cap(torch.randn(1, 5, 8, 8))
    assert no_hooks(net)

    with pytest.raises(RuntimeError):  # __call__ outside a with block, forward fails
        Capture(net, names)(torch.randn(1, 5, 8, 8))
    assert no_hooks(net)

    with pytest.raises(ValueError):  # hook raises (bad adapter result) mid-forward
        Capture(net, "features.0", adapter=lambda o: o[0])(x)
    assert no_hooks(net)

    with Capture(net, names) as cap:
        with pytest.raises(RuntimeError, match="already active"):
            cap.__enter__()
    assert no_hooks(net)


def test_argument_validation(net):
    with pytest.raises(ValueError, match="more than once"):
        Capture(net, ["features.0", "features.0"])
    with pytest.raises(ValueError, match="at least one"):
        Capture(net, [])
    with pytest.raises(TypeError, match="sequence of str"):
        Capture(net, ["features.0", 1])
    with pytest.raises(ValueError, match="'features.3'"):
        Capture(net, ["features.0", "features.33"])
    with pytest.raises(ValueError, match="not captured"):
        Capture(net, "features.0", adapter={"features.1": "none"})
    with pytest.raises(ValueError, match="adapter"):
        Capture(net, "features.0", adapter="grid")
    with pytest.raises(ValueError, match="on_repeat"):
        Capture(net, "features.0", on_repeat="sometimes")
    with pytest.raises(TypeError, match="stop_early"):
        Capture(net, "features.0", stop_early=1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Capture(lambda t: t, "a")
    assert no_hooks(net)


def test_layer_not_called_in_forward_is_named(net, x):
    with pytest.raises(RuntimeError, match="unused"):
        Capture(net, ["features.0", "unused"])(x)
    assert no_hooks(net)


def test_stop_early_skips_later_modules_and_keeps_outputs(net, x):
    names = ["features.3", "block.0.conv1"]
    full = Capture(net, names)(x)
    assert net.tail.calls == 1
    net.tail.calls = 0
    counter_b1 = Counter()
    net.block[1].conv1.register_forward_pre_hook(lambda m, a: counter_b1(a))
    early = Capture(net, names, stop_early=True)(x)
    assert net.tail.calls == 0 and counter_b1.calls == 0  # nothing after block.0.conv1 ran
    for n in names:
        torch.testing.assert_close(early[n], full[n], rtol=0, atol=0)
    # a forward the user runs inside the block is not stopped
    with Capture(net, names, stop_early=True) as cap:
        with torch.no_grad():
            y = net(x)
    assert y.shape == (2, 5) and net.tail.calls == 1 and set(cap.outputs) == set(names)
    net.block[1].conv1._forward_pre_hooks.clear()


def test_model_left_as_it_was(x):
    for training in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
        model.train(training)
        if training:  # BN in train mode updates its buffers by itself: check parameters only
            model[1].track_running_stats = False
            model[1].running_mean = model[1].running_var = None
        before = {k: v.clone() for k, v in model.state_dict().items()}
        flags = [m.training for m in model.modules()]
        grads = [p.requires_grad for p in model.parameters()]
        Capture(model, ["1", "3"])(x)
        list(iter_activations(model, ["1"], [x, x]))
        assert [m.training for m in model.modules()] == flags
        assert [p.requires_grad for p in model.parameters()] == grads
        after = model.state_dict()
        assert before.keys() == after.keys()
        for k in before:
            assert torch.equal(before[k], after[k]), k
        assert no_hooks(model)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_float_dtypes_kept(dtype, x):
    if dtype == torch.float16:
        try:
            nn.Conv2d(3, 1, 1).half()(x[:1, :, :2, :2].half())
        except RuntimeError:
            pytest.skip("float16 convolution not available on this CPU build")
    net = make_net(dtype)
    xd = x.to(dtype)
    names = ["features.3", "block.1.conv2", "heads.cls"]
    out = Capture(net, names)(xd)
    with torch.no_grad():
        ref = manual(net, xd)
    for n in names:
        assert out[n].dtype == dtype
        r = ref[n] if ref[n].dim() == 4 else ref[n][:, :, None, None]
        torch.testing.assert_close(out[n], r, rtol=0, atol=0)


def test_repeated_module_rule(x):
    shared = nn.Conv2d(3, 3, 1)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = shared

        def forward(self, t):
            return self.shared(self.shared(t) * 2)

    m = Twice()
    with pytest.raises(ValueError, match="more than once.*on_repeat"):
        Capture(m, "shared")(x)
    assert no_hooks(m)
    with torch.no_grad():
        first = shared(x)
        last = shared(first * 2)
    torch.testing.assert_close(Capture(m, "shared", on_repeat="first")(x)["shared"], first)
    torch.testing.assert_close(Capture(m, "shared", on_repeat="last")(x)["shared"], last)
    torch.testing.assert_close(Capture(m, "shared", stop_early=True)(x)["shared"], first)
    with pytest.raises(ValueError, match="stop_early"):
        Capture(m, "shared", on_repeat="last", stop_early=True)


def test_clone_protects_against_later_in_place_ops(x):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        pre = m[0](x)
    assert (pre < 0).any()
    shared = Capture(m, "0", clone=False)(x)["0"]  # no copy: shows the in-place ReLU's result
    torch.testing.assert_close(shared, pre.clamp_min(0), rtol=0, atol=0)
    copied = Capture(m, "0")(x)["0"]  # the default copies
    torch.testing.assert_close(copied, pre, rtol=0, atol=0)
    pooled = pooled_activations(m, "0", [x], pooling="mean")["0"]
    torch.testing.assert_close(pooled, pre.mean((2, 3)))


def test_tensor_subclass_output(x):
    class Marked(torch.Tensor):
        pass

    class Mark(nn.Module):
        def forward(self, t):
            return t.as_subclass(Marked)

    m = nn.Sequential(nn.Conv2d(3, 2, 1), Mark(), nn.ReLU())
    out = Capture(m, "1")(x)["1"]
    assert type(out) is torch.Tensor
    with torch.no_grad():
        torch.testing.assert_close(out, m[0](x), rtol=0, atol=0)


def test_gradients_at_a_layer_with_detach_false(net, x):
    xg = x.clone()
    with Capture(net, "features.3", detach=False) as cap:
        with torch.enable_grad():
            score = net(xg).sum()
            (g,) = torch.autograd.grad(score, cap.raw_outputs["features.3"])
    # reference: run the tail by hand from a leaf at features.3
    with torch.no_grad():
        h0 = manual(net, x)["features.3"]
    h = h0.clone().requires_grad_(True)
    t = h
    for b in net.block:
        t = b(t)
    ref_score = net.heads["cls"](net.pool(t).flatten(1)).sum()
    (g_ref,) = torch.autograd.grad(ref_score, h)
    torch.testing.assert_close(g, g_ref)
    assert cap.outputs["features.3"].requires_grad


# ----------------------------------------------------------------------------- adapters

def test_to_bchw_4d_and_2d():
    t = torch.randn(2, 3, 4, 5)
    assert to_bchw(t, layer="l") is t
    assert to_bchw(t, layer="l", adapter="none") is t
    v = torch.randn(2, 7)
    out = to_bchw(v, layer="l")
    assert out.shape == (2, 7, 1, 1) and torch.equal(out[:, :, 0, 0], v)


@pytest.mark.parametrize("cls", [False, True])
def test_to_bchw_tokens_grid(cls):
    b, s, c = 2, 3, 5
    t = torch.randn(b, s * s + cls, c)
    out = to_bchw(t, layer="blocks.6")
    assert out.shape == (b, c, s, s)
    for bi in range(b):
        for i in range(s):
            for j in range(s):
                assert torch.equal(out[bi, :, i, j], t[bi, cls + i * s + j, :])
    assert out.data_ptr() == t[:, cls:].data_ptr()  # a view, no copy


def test_to_bchw_errors_name_layer_and_remedy():
    with pytest.raises(ValueError, match=r"'blocks.6'.*\(2, 15, 4\).*neither a perfect square"):
        to_bchw(torch.randn(2, 15, 4), layer="blocks.6")
    with pytest.raises(ValueError, match=r"'l'.*\(1, 2, 3, 4, 5\).*callable adapter"):
        to_bchw(torch.randn(1, 2, 3, 4, 5), layer="l")
    with pytest.raises(ValueError, match="1 dims|\\(7,\\)"):
        to_bchw(torch.randn(7), layer="l")
    with pytest.raises(TypeError, match=r"'lstm'.*tuple of 2.*adapter=\"first\""):
        to_bchw((torch.randn(2, 3), torch.randn(2)), layer="lstm")
    with pytest.raises(TypeError, match=r"dict.*out\[\"key\"\]"):
        to_bchw({"a": torch.randn(2, 3)}, layer="l")
    with pytest.raises(TypeError, match="floating-point"):
        to_bchw(torch.ones(2, 3, dtype=torch.int64), layer="l")
    with pytest.raises(ValueError, match=r"'l'.*\(2, 3\).*4 dims"):
        to_bchw(torch.randn(2, 3), layer="l", adapter="none")
    with pytest.raises(ValueError, match="the adapter's result"):
        to_bchw(torch.randn(2, 3, 4, 4), layer="l", adapter=lambda o: o[0])
    with pytest.raises(ValueError, match="adapter must be one of"):
        to_bchw(torch.randn(2, 3), layer="l", adapter="grid")
    with pytest.raises(ValueError, match="empty"):
        to_bchw((), layer="l", adapter="first")


def test_to_bchw_first_and_callable():
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 9, 9)
    assert to_bchw((a, b), layer="l", adapter="first") is a
    assert to_bchw(a, layer="l", adapter="first") is a
    tok = torch.randn(2, 17, 4)
    out = to_bchw([tok, None], layer="l", adapter="first")
    assert out.shape == (2, 4, 4, 4)
    assert to_bchw((a, b), layer="l", adapter=lambda o: o[1][:, None]).shape == (2, 1, 9, 9)


def test_capture_vit_like_and_tuple_outputs(x):
    class Tokens(nn.Module):  # (B, 3, 8, 8) -> (B, 1 + 16, 6): CLS + 4x4 patches
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 6, 2, stride=2)
            self.cls = nn.Parameter(torch.randn(1, 1, 6))

        def forward(self, t):
            p = self.patch(t).flatten(2).transpose(1, 2)
            return torch.cat([self.cls.expand(t.shape[0], -1, -1), p], 1)

    class Attn(nn.Module):
        def forward(self, t):
            return t * 2, t.sum(-1)

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = Tokens()
            self.attn = Attn()

        def forward(self, t):
            return self.attn(self.embed(t))[0].mean(1)

    torch.manual_seed(0)
    vit = ViT().eval()
    with pytest.raises(TypeError, match=r"'attn'.*adapter=\"first\""):
        Capture(vit, ["embed", "attn"])(x)
    assert no_hooks(vit)
    out = Capture(vit, ["embed", "attn"], adapter={"attn": "first"})(x)
    with torch.no_grad():
        grid = vit.embed.patch(x)  # (B, 6, 4, 4): the patch tokens back on their grid
    torch.testing.assert_close(out["embed"], grid, rtol=0, atol=0)
    torch.testing.assert_close(out["attn"], grid * 2, rtol=0, atol=0)


# ----------------------------------------------------------------------------- iterators

def test_iter_activations_batches_and_cleanup(net):
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(n, 3, 8, 8, generator=g) for n in (2, 3, 1)]
    batches = [(xs[0], "a"), {"image": xs[1], "y": 1}, xs[2]]
    names = ["features.3", "block.1"]
    seen = []
    for batch, acts in iter_activations(net, names, batches):
        seen.append(batch)
        i = len(seen) - 1
        with torch.no_grad():
            ref = manual(net, xs[i])
        for n in names:
            torch.testing.assert_close(acts[n], ref[n], rtol=0, atol=0)
        assert not no_hooks(net)
    assert all(s is b for s, b in zip(seen, batches)) and len(seen) == 3
    assert no_hooks(net) and net.tail.calls == 0  # stop_early by default

    it = iter_activations(net, names, batches)
    next(it)
    it.close()
    assert no_hooks(net)

    with pytest.raises(ValueError, match="'image' key"):
        list(iter_activations(net, names, [{"img": xs[0]}]))
    with pytest.raises(TypeError, match="batch 0"):
        list(iter_activations(net, names, ["not a tensor"]))
    assert no_hooks(net)
    with pytest.raises(ValueError, match="close matches|Close matches"):
        iter_activations(net, ["block.9"], batches)  # validated before the first batch


def test_iter_activations_casts_to_model_dtype(x):
    net = make_net(torch.float64)
    (_, acts), = list(iter_activations(net, "features.3", [x]))
    assert acts["features.3"].dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(acts["features.3"], manual(net, x.double())["features.3"])
    # bfloat16 images into a float32 net: cast to the net's dtype by default
    (_, acts), = list(iter_activations(make_net(), "features.3", [x.bfloat16()]))
    assert acts["features.3"].dtype == torch.float32
    # an explicit dtype overrides (here: to a float64 net's dtype, from float16 images)
    (_, acts), = list(iter_activations(net, "features.3", [x.half()], dtype=torch.float64))
    assert acts["features.3"].dtype == torch.float64
    with pytest.raises(TypeError, match="dtype"):
        iter_activations(net, "features.3", [x], dtype=torch.int32)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooled_activations_equal_manual(net, pooling):
    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(n, 3, 8, 8, generator=g) for n in (2, 3)]
    names = ["features.1", "block.0.conv2", "heads.cls"]
    out = pooled_activations(net, names, [(xi, 0) for xi in xs], pooling=pooling)
    with torch.no_grad():
        refs = [manual(net, xi) for xi in xs]
    for n in names:
        r = torch.cat([ref[n] if ref[n].dim() == 4 else ref[n][:, :, None, None] for ref in refs])
        r = r.mean((2, 3)) if pooling == "mean" else r.amax((2, 3))
        assert out[n].dtype == torch.float32 and out[n].device.type == "cpu"
        assert out[n].shape == (5, r.shape[1])
        torch.testing.assert_close(out[n], r)
    assert no_hooks(net)


def test_pooled_activations_errors(net, x):
    with pytest.raises(ValueError, match="pooling"):
        pooled_activations(net, "features.1", [x], pooling="median")
    with pytest.raises(ValueError, match="no batch"):
        pooled_activations(net, "features.1", [])
    assert no_hooks(net)


# ----------------------------------------------------------------------------- devices, package

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_outputs_stay_on_device(x):
    net = make_net().cuda()
    xc = x.cuda()
    names = ["features.3", "block.1.conv2", "heads.cls"]
    out = Capture(net, names)(xc)
    with torch.no_grad():
        ref = manual(net, xc)
    for n in names:
        assert out[n].is_cuda
        r = ref[n] if ref[n].dim() == 4 else ref[n][:, :, None, None]
        torch.testing.assert_close(out[n], r)
    pooled = pooled_activations(net, names, [x, x])  # inputs moved to the model's device
    assert pooled["features.3"].device.type == "cpu"
    torch.testing.assert_close(pooled["features.3"][:2], ref["features.3"].mean((2, 3)).cpu())
    for dtype in (torch.float16, torch.bfloat16):
        o = Capture(make_net(dtype).cuda(), "features.3")(xc.to(dtype))["features.3"]
        assert o.dtype == dtype and o.is_cuda
    assert no_hooks(net)


def test_package_exports_capture_lazily():
    for name in ("Capture", "find_module", "to_bchw", "iter_activations", "pooled_activations"):
        assert name in interp_engine.__all__
        assert getattr(interp_engine, name) is getattr(sys.modules["interp_engine.capture"], name)


def _run(code):
    return _child.run_code(code)


def test_import_interp_engine_does_not_import_torch():
    res = _run("import sys, interp_engine; assert 'torch' not in sys.modules, 'torch imported'")
    assert res.returncode == 0, res.stderr


def test_package_works_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import interp_engine\n"
            "from interp_engine import *\n"
            "assert 'Capture' not in interp_engine.__all__\n"
            "try:\n"
            "    interp_engine.Capture\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert "needs PyTorch" in res.stdout and "interp_engine[torch]" in res.stdout
