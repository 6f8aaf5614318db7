"""Semantic topic supervision: topics, InterpretiveLoss, prediction difference, editing, CLI.

Known answers: hand-built models whose neuron j drives class / topic j by
construction; a one-neuron-at-a-time reference (tests/reference.py); the loss
formula written out.  Tests on the real Fashion-MNIST files skip without them."""
import csv
import gzip
import math
import struct
import sys
from collections import OrderedDict

import _child
from _npzedit import rewrite_npz
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import interp_engine  # noqa: E402
from interp_engine.data import fashion_mnist as fm  # noqa: E402
from interp_engine.data.fashion_text import (FASHION_MNIST_DESCRIPTIONS, attribute_words,  # noqa: E402
                                             fashion_documents, image_attributes)
from interp_engine.methods.topics import (InterpretiveLoss, PredictionDifference,  # noqa: E402
                                          TopicInterpretation, extract_topics, fit_topic_head,
                                          validate_topic_matrix)
from reference import prediction_difference_reference  # noqa: E402

TOL = 1e-6


# ----------------------------------------------------------------------------- constructed models

def class_model(k=5, gain=4.0):
    """Input (N, k) -> enc = identity -> ReLU -> out = gain * identity: neuron j raises logit j only."""
    m = nn.Sequential(OrderedDict([("enc", nn.Linear(k, k)), ("act", nn.ReLU()), ("out", nn.Linear(k, k))]))
    with torch.no_grad():
        m.enc.weight.copy_(torch.eye(k))
        m.enc.bias.zero_()
        m.out.weight.copy_(gain * torch.eye(k))
        m.out.bias.zero_()
    return m.eval()


class Wrapped(nn.Module):
    """The same computation behind a custom forward (no Sequential split: the hook route)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def conv_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 4, 3, padding=1)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(2)),
        ("flat", nn.Flatten()), ("fc", nn.Linear(16, 3))])).eval()


def softmax_probs(out, _feats):
    return torch.softmax(out.float(), 1)


@pytest.fixture
def x5(rng):
    x = rng.normal(size=(40, 5)).astype(np.float32)
    return torch.from_numpy(x)


# ----------------------------------------------------------------------------- prediction difference

@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("wrap", [False, True], ids=["sequential-split", "hook"])
def test_known_neuron_class_relation_and_reference(x5, ablation, wrap):
    base = class_model()
    model = Wrapped(base) if wrap else base
    layer = "inner.act" if wrap else "act"
    res = TopicInterpretation(model, layer, targets="classes", ablation=ablation, batch_size=16,
                              n_ablate=2).explain(x5)
    # neuron j drives class j: its top target is j, with a positive drop
    act = (x5 > 0).sum(0).numpy()
    assert np.array_equal(res.counts, act)
    assert np.array_equal(res.top_targets[:, 0], np.arange(5))
    assert (res.score > 0).all()
    ref, counts = prediction_difference_reference(model, model.get_submodule(layer), x5, softmax_probs,
                                                  list(range(5)), ablation)
    assert np.array_equal(counts, res.counts)
    np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)
    if ablation == "mean":
        np.testing.assert_allclose(res.ablation_values, np.maximum(x5.numpy(), 0).mean(0), atol=1e-6)
    else:
        assert (res.ablation_values == 0).all()


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_spatial_layer_matches_reference_on_both_routes_and_any_chunking(rng, ablation):
    model = conv_model()
    x = torch.from_numpy(rng.normal(size=(23, 1, 6, 6)).astype(np.float32))
    ref, counts = prediction_difference_reference(model, model.relu, x, softmax_probs, [0, 1, 2, 3], ablation)
    results = [TopicInterpretation(model, "relu", targets="classes", ablation=ablation, batch_size=7,
                                   n_ablate=n).explain(x)
               for n in (1, 3, None)]
    results.append(TopicInterpretation(Wrapped(model), "inner.relu", targets="classes", ablation=ablation,
                                       batch_size=10, n_ablate=3).explain(x))
    # data as an iterable of (input, label) batches
    results.append(TopicInterpretation(model, "relu", targets="classes", ablation=ablation).explain(
        [(x[:12], None), (x[12:], None)]))
    for res in results:
        assert np.array_equal(res.counts, counts)  # active = spatial max > 0
        np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)
        assert res.n_samples == 23


class SkipAround(nn.Module):
    """A skip connection around the layer: the hook route's "expand" mode cannot run it for B > 1 (the input's
    batch is B, the layer's ablated output R*B) and must fall back to replicating the input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.lin1, self.act, self.lin2, self.out = nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.out(self.lin2(self.act(self.lin1(x))) + x)


@pytest.mark.parametrize("batch_size", [1, 7, 40])
@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_skip_connection_around_layer_falls_back_and_matches_reference(x5, batch_size, ablation):
    model = SkipAround().eval()
    res = TopicInterpretation(model, "act", targets="classes", ablation=ablation, batch_size=batch_size).explain(x5)
    ref, counts = prediction_difference_reference(model, model.act, x5, softmax_probs, list(range(6)), ablation)
    assert np.array_equal(res.counts, counts)
    np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)


def _max_rows(module, fn):
    rows = []
    h = module.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        fn()
    finally:
        h.remove()
    return max(rows)


def test_hook_route_expands_after_the_layer_when_valid(x5):
    wrapped = Wrapped(class_model())
    # expand: the module before the layer sees the 40 samples (80 once: the 2-neuron check of the replicate route)
    assert _max_rows(wrapped.inner.enc, lambda: TopicInterpretation(wrapped, "inner.act", targets="classes",
                                                                    batch_size=40).explain(x5)) == 80
    skip = SkipAround().eval()
    # skip connection: replicate, 6 neurons x 7 samples per forward
    assert _max_rows(skip.lin1, lambda: TopicInterpretation(skip, "act", targets="classes", batch_size=7,
                                                            n_ablate=6).explain(x5)) == 42


def test_active_rule_is_spatial_max_and_never_active_neuron(rng):
    model = conv_model()
    with torch.no_grad():
        model.conv.weight[2].zero_()
        model.conv.bias[2] = -1.0  # channel 2 is never active
    x = torch.from_numpy(rng.normal(size=(9, 1, 5, 5)).astype(np.float32))
    res = TopicInterpretation(model, "relu", targets="classes", top_k=2).explain(x)
    with torch.no_grad():
        maps = model.relu(model.conv(x))
    assert np.array_equal(res.counts, (maps.amax((2, 3)) > 0).sum(0).numpy())
    assert res.counts[2] == 0 and np.isnan(res.scores[2]).all() and np.isnan(res.score[2])
    assert list(res.top_targets[2]) == [-1, -1] and res.top_names(2) == []
    assert not res.consistent(-1.0)[2]
    # threshold: only activations above it count
    res_t = TopicInterpretation(model, "relu", targets="classes", active_threshold=0.3).explain(x)
    assert np.array_equal(res_t.counts, (maps.amax((2, 3)) > 0.3).sum(0).numpy())


def test_topic_head_identity_gives_known_scores(x5):
    """A head with W_t = I, b_t = 0, W_a = I, b_a = 0 predicts topic j = relu(h_j): ablating neuron j drops
    topic j by exactly h_j and nothing else, so score[j, j] = mean of h_j over the samples where it is active."""
    model = class_model()
    head = InterpretiveLoss(5, 5, 5)
    with torch.no_grad():
        for lin in (head.topic_hidden, head.topic_out):
            lin.weight.copy_(torch.eye(5))
            lin.bias.zero_()
    names = [f"topic{j}" for j in range(5)]
    res = TopicInterpretation(model, "act", targets="topics", topic_head=head, target_names=names,
                              top_k=1).explain(x5)
    h = np.maximum(x5.numpy().astype(np.float64), 0)
    expected = np.zeros((5, 5))
    for j in range(5):
        expected[j, j] = h[h[:, j] > 0, j].mean()
    np.testing.assert_allclose(res.scores, expected, atol=1e-6)
    assert res.top_names(3) == ["topic3"] and res.targets == "topics"
    # the same through the hook route and a plain callable head on the pooled features
    res2 = TopicInterpretation(Wrapped(model), "inner.act", targets="topics", topic_head=lambda f: f).explain(x5)
    np.testing.assert_allclose(res2.scores, expected, atol=1e-6)


def test_topics_from_a_later_layer_and_mean_ablation_match_reference(rng):
    model = conv_model(1)
    x = torch.from_numpy(rng.normal(size=(15, 1, 6, 6)).astype(np.float32))
    torch.manual_seed(3)
    head = InterpretiveLoss(4, 6, 8)
    for ablation in ("zero", "mean"):
        res = TopicInterpretation(model, "relu", targets="topics", ablation=ablation, topic_head=head,
                                  topic_layer="pool", topic_softmax=True, batch_size=4, n_ablate=3).explain(x)
        ref, _ = prediction_difference_reference(
            model, model.relu, x, lambda out, f: head.predict(model.pool(f), softmax=True), [0, 1, 2, 3], ablation)
        np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)
        res_hook = TopicInterpretation(Wrapped(model), "inner.relu", targets="topics", ablation=ablation,
                                       topic_head=head, topic_layer="inner.pool", topic_softmax=True,
                                       batch_size=4).explain(x)
        np.testing.assert_allclose(res_hook.scores, ref, atol=TOL, rtol=0)


def test_callable_targets_and_neuron_subset(x5):
    model = class_model()

    def two_way(out):  # P(class 0 or 1) vs the rest
        p = torch.softmax(out, 1)
        return torch.stack([p[:, :2].sum(1), p[:, 2:].sum(1)], 1)

    res = TopicInterpretation(model, "act", targets=two_way, neurons=[4, 0], target_names=["low", "high"],
                              top_k=2).explain(x5)
    assert res.targets == "callable" and list(res.neurons) == [4, 0]
    assert res.top_names(0)[0] == "high" and res.top_names(1)[0] == "low"
    ref, _ = prediction_difference_reference(model, model.act, x5, lambda o, f: two_way(o), [4, 0])
    np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)


def test_table_and_csv(tmp_path, x5):
    res = TopicInterpretation(class_model(), "act", targets="classes", top_k=2,
                              target_names=list("abcde")).explain(x5)
    rows = res.table()
    assert len(rows) == 5 and set(rows[0]) == {"neuron", "active", "score", "target_1", "score_1", "target_2",
                                                "score_2"}
    assert [r["target_1"] for r in rows] == list("abcde")
    assert rows[1]["score"] == pytest.approx(res.scores[1, 1])
    path = res.to_csv(tmp_path / "pd.csv")
    with open(path) as f:
        back = list(csv.DictReader(f))
    assert [int(r["neuron"]) for r in back] == list(range(5))
    assert float(back[2]["score_1"]) == pytest.approx(rows[2]["score_1"])
    assert isinstance(res, PredictionDifference) and "neurons=5" in repr(res)


def test_top_k_is_stable_on_ties():
    from interp_engine.methods.topics.ablation import _top_k

    s = torch.tensor([[0.1, 0.3, 0.3, 0.0], [math.nan] * 4, [0.0, 0.0, 0.0, 0.0], [math.nan, 0.2, -1.0, 0.5]],
                     dtype=torch.float64)
    idx, val = _top_k(s, 3)
    assert idx.tolist() == [[1, 2, 0], [-1, -1, -1], [0, 1, 2], [3, 1, 2]]
    assert val[0].tolist() == [0.3, 0.3, 0.1] and np.isnan(val[1]).all() and val[3].tolist() == [0.5, 0.2, -1.0]


# ----------------------------------------------------------------------------- bad input

class IntLayer(nn.Module):
    def forward(self, x):
        return (x > 0).long()


class TupleLayer(nn.Module):
    def forward(self, x):
        return x, x


class EmptyLayer(nn.Module):
    def forward(self, x):
        return x[:, :0]


@pytest.mark.parametrize("layer_cls,exc,match", [
    (IntLayer, TypeError, "no neurons to ablate.*floating-point"),
    (TupleLayer, TypeError, "no neurons to ablate.*got tuple"),
    (EmptyLayer, ValueError, "0 channels"),
])
@pytest.mark.parametrize("wrap", [False, True])
def test_layers_without_neurons(x5, layer_cls, exc, match, wrap):
    seq = nn.Sequential(OrderedDict([("enc", nn.Linear(5, 5)), ("bad", layer_cls())]))
    model = Wrapped(seq) if wrap else seq
    with pytest.raises(exc, match=match):
        TopicInterpretation(model, "inner.bad" if wrap else "bad",
                            targets=lambda out: torch.ones(len(x5), 1)).explain(x5)


def test_one_dimensional_layer_output_rejected():
    class Flat1(nn.Module):
        def forward(self, x):
            return x.sum(1)

    model = nn.Sequential(OrderedDict([("enc", nn.Linear(5, 5)), ("s", Flat1())]))
    with pytest.raises(ValueError, match=r"\(B, C\) or \(B, C, \*spatial\).*shape \(4,\)"):
        TopicInterpretation(model, "s", targets=lambda out: torch.ones(4, 1)).explain(torch.randn(4, 5))


def test_bad_arguments(x5):
    model = class_model()
    with pytest.raises(ValueError, match="'actt' is not a submodule.*'act'"):
        TopicInterpretation(model, "actt", targets="classes").explain(x5)
    with pytest.raises(ValueError, match=r"ablation must be one of \['zero', 'mean'\], got 'random'"):
        TopicInterpretation(model, "act", targets="classes", ablation="random").explain(x5)
    with pytest.raises(ValueError, match=r"targets must be one of \['topics', 'classes'\].*got 'words'"):
        TopicInterpretation(model, "act", targets="words").explain(x5)
    with pytest.raises(TypeError, match="targets must be one of.*got int"):
        TopicInterpretation(model, "act", targets=3).explain(x5)
    with pytest.raises(ValueError, match='targets="topics" needs topic_head'):
        TopicInterpretation(model, "act", targets="topics").explain(x5)
    with pytest.raises(TypeError, match="topic_head must be"):
        TopicInterpretation(model, "act", targets="topics", topic_head=3).explain(x5)
    with pytest.raises(ValueError, match="only used with targets=\"topics\""):
        TopicInterpretation(model, "act", targets="classes", topic_head=lambda f: f).explain(x5)
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got 0"):
        TopicInterpretation(model, "act", targets="classes", top_k=0).explain(x5)
    with pytest.raises(ValueError, match=r"neurons must be channel indices in \[0, 5\).*got 7"):
        TopicInterpretation(model, "act", targets="classes", neurons=[7]).explain(x5)
    with pytest.raises(ValueError, match="neurons must not repeat"):
        TopicInterpretation(model, "act", targets="classes", neurons=[1, 1]).explain(x5)
    with pytest.raises(ValueError, match=r"targets \(the callable\) must return float probabilities of shape "
                                         r"\(40, T\)"):
        TopicInterpretation(model, "act", targets=lambda out: out[:3]).explain(x5)
    with pytest.raises(TypeError, match="reads data twice"):
        TopicInterpretation(model, "act", targets="classes", ablation="mean").explain(iter([x5]))
    with pytest.raises(ValueError, match="target_names must be a sequence of 5 names"):
        TopicInterpretation(model, "act", targets="classes", target_names=["a"]).explain(x5)
    with pytest.raises(ValueError, match="active_threshold must be a finite number"):
        TopicInterpretation(model, "act", targets="classes", active_threshold=float("nan")).explain(x5)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        TopicInterpretation(lambda x: x, "act", targets="classes").explain(x5)
    with pytest.raises(ValueError, match="data yielded no samples"):
        TopicInterpretation(model, "act", targets="classes").explain([])
    with pytest.raises(TypeError, match='targets="classes" needs a model whose output is float logits'):
        TopicInterpretation(nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", IntLayer())])), "a",
                            targets="classes").explain(x5)


# ----------------------------------------------------------------------------- editing

def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_edit_flips_known_prediction_and_restores_model():
    model = class_model(k=4)
    x = torch.tensor([[3.0, 2.0, 0.5, -1.0]])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before_out = model(x).detach().clone()
    hooks = _hook_count(model)
    eff = TopicInterpretation(model, "act").explain_edit(x, {0: 0.0}, class_names=list("abcd"), labels=[1])
    assert eff.before_class.tolist() == [0] and eff.after_class.tolist() == [1] and eff.changed.tolist() == [True]
    expected_before = torch.softmax(4 * torch.tensor([[3.0, 2.0, 0.5, 0.0]]), 1).double().numpy()
    expected_after = torch.softmax(4 * torch.tensor([[0.0, 2.0, 0.5, 0.0]]), 1).double().numpy()
    np.testing.assert_allclose(eff.before, expected_before, atol=1e-6)
    np.testing.assert_allclose(eff.after, expected_after, atol=1e-6)
    row = eff.table()[0]
    assert row["before"] == "a" and row["after"] == "b" and row["correct_before"] is False \
        and row["correct_after"] is True
    assert "a (" in str(eff) and "wrong -> right" in str(eff)
    # amplification: scale 2 doubles the channel; the other channels untouched
    with TopicInterpretation(model, "act").edit({2: 2.0}) as ed:
        assert ed.active and _hook_count(model) == hooks + 1
        out = model(x)
    np.testing.assert_allclose(out.detach().numpy(), 4 * np.array([[3.0, 2.0, 1.0, 0.0]]), atol=1e-6)
    assert not ed.active
    # model unchanged: parameters, hooks, outputs
    assert _hook_count(model) == hooks
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert torch.equal(model(x), before_out)


def test_edit_restores_on_exception():
    model = class_model(k=4)
    x = torch.tensor([[3.0, 2.0, 0.5, -1.0]])
    before = model(x).detach().clone()
    hooks = _hook_count(model)
    with pytest.raises(RuntimeError, match="boom"):
        with TopicInterpretation(model, "act").edit({0: 0.0, 1: 5.0}):
            assert not torch.equal(model(x), before)
            raise RuntimeError("boom")
    assert _hook_count(model) == hooks
    assert torch.equal(model(x), before)
    # an invalid neuron raises in the forward, and the hook is removed too
    with pytest.raises(ValueError, match=r"edits name neurons \[9\] but layer 'act' has 4 channels"):
        with TopicInterpretation(model, "act").edit({9: 0.0}):
            model(x)
    assert _hook_count(model) == hooks and torch.equal(model(x), before)


def test_edit_bad_arguments():
    model = class_model()
    with pytest.raises(TypeError, match="edits must be a dict"):
        TopicInterpretation(model, "act").edit([0])
    with pytest.raises(ValueError, match="edits keys must be channel indices"):
        TopicInterpretation(model, "act").edit({-1: 0.0})
    with pytest.raises(ValueError, match=r"edits\[0\] must be a finite scale"):
        TopicInterpretation(model, "act").edit({0: float("nan")})
    with pytest.raises(ValueError, match="is not a submodule"):
        TopicInterpretation(model, "nope").edit({0: 0.0})
    with pytest.raises(ValueError, match="x must be a non-empty batch"):
        TopicInterpretation(model, "act").explain_edit(torch.zeros(0, 5), {0: 0.0})
    with pytest.raises(ValueError, match="labels must be ints"):
        TopicInterpretation(model, "act").explain_edit(torch.zeros(2, 5), {0: 0.0}, labels=[0, 9])


# ----------------------------------------------------------------------------- interpretive loss

def test_interpretive_loss_formula_and_gradients(rng):
    torch.manual_seed(0)
    loss_fn = InterpretiveLoss(6, 4, 5, weight=0.1)
    h = torch.randn(7, 6, requires_grad=True)
    s = torch.from_numpy(rng.dirichlet(np.ones(4), size=7).astype(np.float32))
    wt, bt = loss_fn.topic_hidden.weight, loss_fn.topic_hidden.bias
    wa, ba = loss_fn.topic_out.weight, loss_fn.topic_out.bias
    pred = torch.relu(h @ wt.T + bt) @ wa.T + ba
    per = ((pred - s) ** 2).sum(1)
    loss = loss_fn(h, s)
    assert loss.shape == () and torch.allclose(loss, 0.1 * per.mean(), atol=1e-7)
    # numpy by hand, float64
    hn, sn = h.detach().double().numpy(), s.double().numpy()
    p = np.maximum(hn @ wt.detach().double().numpy().T + bt.detach().double().numpy(), 0) \
        @ wa.detach().double().numpy().T + ba.detach().double().numpy()
    assert float(loss.detach()) == pytest.approx(0.1 * ((p - sn) ** 2).sum(1).mean(), rel=1e-5)
    loss.backward()
    for t in (h, wt, bt, wa, ba):
        assert t.grad is not None and t.grad.abs().sum() > 0
    for red, expect in (("sum", 0.1 * per.sum()), ("none", 0.1 * per)):
        other = InterpretiveLoss(6, 4, 5, weight=0.1, reduction=red)
        other.load_state_dict(loss_fn.state_dict())
        assert torch.allclose(other(h, s), expect, atol=1e-6)
    np.testing.assert_allclose(loss_fn.predict(h).detach().numpy(), p, atol=1e-5)
    soft = loss_fn.predict(h, softmax=True)
    assert torch.allclose(soft.sum(1), torch.ones(7))


def test_interpretive_loss_pools_maps_and_validates():
    torch.manual_seed(1)
    f = torch.randn(3, 4, 5, 5)
    s = torch.full((3, 2), 0.5)
    mean_head = InterpretiveLoss(4, 2, 3)
    max_head = InterpretiveLoss(4, 2, 3, pooling="max")
    max_head.load_state_dict(mean_head.state_dict())
    assert torch.allclose(mean_head(f, s), mean_head(f.mean((2, 3)), s))
    assert torch.allclose(max_head(f, s), mean_head(f.amax((2, 3)), s))
    with pytest.raises(ValueError, match=r"features must have shape \(B, 4\).*got \(3, 5\)"):
        mean_head(torch.randn(3, 5), s)
    with pytest.raises(ValueError, match=r"topics must have shape \(3, 2\).*got \(3, 3\)"):
        mean_head(f, torch.full((3, 3), 1 / 3))
    with pytest.raises(TypeError, match="topics must be a floating-point"):
        mean_head(f, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="pooling must be one of"):
        InterpretiveLoss(4, 2, 3, pooling="sum")
    with pytest.raises(ValueError, match="weight must be >= 0"):
        InterpretiveLoss(4, 2, 3, weight=-1)
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        InterpretiveLoss(4, 2, 0)


def test_fit_topic_head_learns_a_linear_topic_map(rng):
    f = rng.random((400, 3)).astype(np.float32)
    s = f / f.sum(1, keepdims=True)  # topics = normalized features
    baseline = float(((s - s.mean(0)) ** 2).sum(1).mean())  # predicting the mean topic vector
    threads = torch.get_num_threads()
    head = fit_topic_head(f, s, hidden=16, epochs=150, lr=1e-2, batch_size=400, seed=0)
    assert torch.get_num_threads() == threads  # restored
    with torch.no_grad():
        err = float((head.predict(torch.from_numpy(f)) - torch.from_numpy(s)).pow(2).sum(1).mean())
    assert err < 0.1 * baseline
    head2 = fit_topic_head(f, s, hidden=16, epochs=3, seed=0)
    head3 = fit_topic_head(f, s, hidden=16, epochs=3, seed=0)
    for a, b in zip(head2.parameters(), head3.parameters()):
        assert torch.equal(a, b)  # deterministic from the seed
    with pytest.raises(ValueError, match="rows must sum to 1"):
        fit_topic_head(f, s * 2)


def test_train_fashion_cnn_trains_extra_parameters(rng):
    import _scripts  # noqa: F401  (scripts/ on sys.path)
    from train_fashion_cnn import train_fashion_cnn

    images = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 64)
    s = torch.from_numpy(rng.dirichlet(np.ones(3), size=64).astype(np.float32))
    head = InterpretiveLoss(128, 3, 8, weight=1.0)
    start = [p.detach().clone() for p in head.parameters()]
    seen = []

    def extra(model, features, batch):
        seen.append(tuple(features.shape))
        return head(features, s[batch["index"]])

    train_fashion_cnn(data=(images, labels), epochs=1, batch_size=32, layer="relu_fc", extra_loss=extra,
                      extra_parameters=head.parameters(), augment=False, log=False)
    assert seen == [(32, 128), (32, 128)]
    assert all(not torch.equal(a, b) for a, b in zip(start, head.parameters()))
    with pytest.raises(TypeError, match="extra_parameters must hold torch.nn.Parameter"):
        train_fashion_cnn(data=(images, labels), epochs=1, extra_parameters=[torch.zeros(2)], log=False)


# ----------------------------------------------------------------------------- topics

CORPUS = ["the cat chased the dog and the cat slept", "a dog and a cat play with a kitten puppy",
          "kitten cat dog puppy pets animals", "stock market prices fell as investors sold shares",
          "investors buy shares when the stock market rises", "market stock shares investors trading prices"]


def test_extract_topics_lda_toy_corpus():
    pytest.importorskip("sklearn")
    docs = CORPUS + CORPUS[:2]  # duplicates: same rows
    t = extract_topics(docs, 2, seed=0, n_top_words=4)
    assert t.matrix.shape == (8, 2) and t.matrix.dtype == np.float64
    np.testing.assert_allclose(t.matrix.sum(1), 1.0, atol=1e-12)
    assert (t.matrix >= 0).all()
    np.testing.assert_array_equal(t.matrix[6:], t.matrix[:2])
    animal = int(np.argmax(t.matrix[0]))
    finance = 1 - animal
    assert (t.matrix[:3].argmax(1) == animal).all() and (t.matrix[3:6].argmax(1) == finance).all()
    assert set(t.top_words[animal]) <= {"cat", "dog", "kitten", "puppy", "chased", "slept", "play", "pets",
                                        "animals"}
    assert set(t.top_words[finance]) <= {"stock", "market", "investors", "shares", "prices", "fell", "sold",
                                         "buy", "rises", "trading"}
    assert len(t.word_weights[0]) == 4 and t.word_weights[0] == sorted(t.word_weights[0], reverse=True)
    again = extract_topics(docs, 2, seed=0, n_top_words=4)
    np.testing.assert_array_equal(again.matrix, t.matrix)  # deterministic from the seed
    assert again.top_words == t.top_words
    new = t.transform(["cat dog kitten", "stock market shares"])
    assert new.argmax(1).tolist() == [animal, finance]
    assert t.names(2)[animal].startswith(f"t{animal}: ")
    nodup = extract_topics(docs, 2, seed=0, dedupe=False)
    assert nodup.matrix.shape == (8, 2)


def test_extract_topics_errors(monkeypatch):
    with pytest.raises(TypeError, match="single str"):
        extract_topics("one text", 2)
    with pytest.raises(ValueError, match="n_topics is required"):
        extract_topics(CORPUS)
    with pytest.raises(ValueError, match="n_topics must be an int >= 1, got 0"):
        extract_topics(CORPUS, 0)
    with pytest.raises(TypeError, match=r"descriptions\[1\] must be a str, got int"):
        extract_topics(["a text", 3], 2)
    with pytest.raises(ValueError, match="must not be empty"):
        extract_topics([], 2)
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="no words to model"):
        extract_topics(["the a of", "and the"], 2)
    monkeypatch.setitem(sys.modules, "sklearn.decomposition", None)
    with pytest.raises(ImportError, match="needs scikit-learn"):
        extract_topics(CORPUS, 2)


def test_user_topic_matrix_validated(rng):
    m = rng.dirichlet(np.ones(3), size=5)
    t = extract_topics(m, 3, topic_words=[["a"], ["b"], ["c"]])
    np.testing.assert_array_equal(t.matrix, m)
    assert t.names() == ["t0: a", "t1: b", "t2: c"] and t.components is None
    t2 = extract_topics(torch.from_numpy(m).float())
    np.testing.assert_allclose(t2.matrix, m, atol=1e-6)
    with pytest.raises(ValueError, match="transform needs topics fitted by LDA"):
        t.transform(["x"])
    with pytest.raises(ValueError, match=r"n_topics=4 columns, got shape \(5, 3\)"):
        extract_topics(m, 4)
    with pytest.raises(ValueError, match=r"2-dimensional \(samples, topics\), got shape \(3,\)"):
        validate_topic_matrix(np.array([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match=r"10 rows"):
        validate_topic_matrix(m, n_rows=10)
    with pytest.raises(ValueError, match=r"at least one sample and one topic, got shape \(0, 3\)"):
        validate_topic_matrix(np.zeros((0, 3)))
    bad = m.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"must be finite, found NaN or inf \(first in row 2\)"):
        validate_topic_matrix(bad)
    bad = m.copy()
    bad[1] = [1.2, -0.2, 0.0]
    with pytest.raises(ValueError, match=r"non-negative.*-0.2.*row 1, column 1"):
        validate_topic_matrix(bad)
    with pytest.raises(ValueError, match=r"rows must sum to 1 \(within 0.001\), row 0 sums to 2"):
        validate_topic_matrix(m * 2)
    assert validate_topic_matrix(m + 5e-4 / 3).shape == (5, 3)  # within the tolerance
    with pytest.raises(TypeError, match="must hold real numbers"):
        validate_topic_matrix(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="must hold real numbers"):
        validate_topic_matrix(torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="topic_words must have one list per topic"):
        extract_topics(m, topic_words=[["a"]])


def test_fashion_text_attributes_known_images():
    img = np.zeros((4, 28, 28), np.uint8)
    img[0] = 255  # full, bright, symmetric, square
    img[1, 2:26, 12:16] = 100  # a tall thin bar in the middle: sparse, dark, symmetric, tall
    img[2, 10:14, 0:14] = 200  # left half only: asymmetric, wide
    a = image_attributes(img)
    assert a["coverage"][0] == 1.0 and a["tone"][0] == 1.0 and a["symmetry"][0] == 0.0 and a["shape"][0] == 1.0
    assert a["shape"][1] == 24 / 4 and a["shape"][2] == 4 / 14 and a["symmetry"][2] == pytest.approx(2.0)
    words = attribute_words(img, repeat=1)
    assert words[0] == "ink_dense tone_bright mirror_symmetric shape_squarish"
    assert words[1] == "ink_sparse tone_dark mirror_symmetric shape_tall"
    assert words[2].split()[2:] == ["mirror_asymmetric", "shape_wide"]
    assert words[3] == "ink_sparse tone_dark mirror_symmetric shape_squarish"
    assert attribute_words(img[:1], repeat=2)[0].split().count("ink_dense") == 2
    docs = fashion_documents(img[:2], np.array([5, 9]))
    assert docs[0].startswith(FASHION_MNIST_DESCRIPTIONS[5]) and docs[1].endswith("shape_tall " * 2 + "shape_tall")
    assert len(FASHION_MNIST_DESCRIPTIONS) == 10
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        fashion_documents(img[:1], np.array([10]))
    with pytest.raises(ValueError, match="images must be uint8"):
        image_attributes(img.astype(np.float32))


# ----------------------------------------------------------------------------- package and CLI

def test_namespace_is_lazy_and_torch_free():
    code = ("import sys, interp_engine; import interp_engine.methods.topics as t; "
            "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'eager import'; "
            "assert interp_engine.methods.topics is t and callable(interp_engine.extract_topics)")
    res = _child.run_code(code)
    assert res.returncode == 0, res.stderr
    assert interp_engine.InterpretiveLoss is InterpretiveLoss
    assert interp_engine.TopicInterpretation is TopicInterpretation
    from interp_engine.methods.topics import prediction_difference

    assert interp_engine.prediction_difference is prediction_difference
    assert "prediction_difference" not in interp_engine.__all__  # a deprecated alias: reachable, not listed


def _write_idx(path, arr):
    arr = np.asarray(arr)
    code = 0x08
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(">u1").tobytes()))


@pytest.fixture
def fake_fmnist(tmp_path, rng):
    root = tmp_path / "fmnist"
    root.mkdir()
    labels = np.arange(40) % 10
    images = rng.integers(0, 120, (40, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):  # some class-dependent structure
        images[i, 4:24, 8 + k:14 + k] = 230
    _write_idx(root / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    # train split (the topics and the topic head are fitted there, never on the scored test images)
    _write_idx(root / "train-images-idx3-ubyte.gz", np.clip(images.astype(int) + 5, 0, 255).astype(np.uint8))
    _write_idx(root / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return root


@pytest.mark.parametrize("targets", ["topics", "classes"])
def test_cli_topics_on_a_fake_fashion_mnist(tmp_path, fake_fmnist, capsys, targets):
    pytest.importorskip("sklearn")
    from interp_engine.cli import main

    out = tmp_path / "out"
    rc = main(["topics", "--dataset", str(fake_fmnist), "--out", str(out), "--max-images", "30", "--n-topics", "3",
               "--head-epochs", "2", "--targets", targets, "--threads", "1", "--head-images", "40"])
    assert rc == 0
    with open(out / "topics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 128 and [int(r["neuron"]) for r in rows] == list(range(128))
    page = (out / "index.html").read_text()
    assert "<script" not in page and "neuron <b>" in page and "topics.csv" in page
    text = capsys.readouterr().out
    assert "neurons with score >=" in text
    if targets == "classes":
        assert any(r["target_1"] in fm.FASHION_MNIST_CLASSES for r in rows)
    else:
        assert any(r["target_1"].startswith("t") for r in rows)


def test_cli_topics_without_fashion_mnist(tmp_path, capsys):
    from interp_engine.cli import main

    rc = main(["topics", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST is needed for `topics`" in err and "not found" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- real data (skips without)

def _have_fashion_mnist():
    root = fm.fashion_mnist_root()
    return all((root / f"{n}.gz").is_file() or (root / n).is_file()
               for pair in fm.FASHION_MNIST_FILES.values() for n in pair)


@pytest.mark.skipif(not _have_fashion_mnist(), reason="Fashion-MNIST files not installed")
def test_real_fashion_cnn_matches_reference_and_edit_changes_prediction():
    from interp_engine.models.fashion_cnn import fashion_cnn

    images, labels = fm.fashion_mnist("test")
    x = fm.fashion_mnist_tensor(images[:120])
    model = fashion_cnn()
    res = TopicInterpretation(model, "relu_fc", targets="classes", neurons=list(range(0, 128, 8)),
                              batch_size=50).explain(x)
    ref, counts = prediction_difference_reference(model, model.relu_fc, x, softmax_probs, list(range(0, 128, 8)))
    assert np.array_equal(res.counts, counts)
    np.testing.assert_allclose(res.scores, ref, atol=TOL, rtol=0)
    # suppressing the neurons that drive the predicted class of image 0 the most changes the prediction
    full = TopicInterpretation(model, "relu_fc", targets="classes", top_k=10).explain(x[:1])
    cls = int(model(x[:1]).argmax())
    drivers = np.argsort(-np.nan_to_num(full.scores[:, cls], nan=-1))[:20]
    eff = TopicInterpretation(model, "relu_fc").explain_edit(x[:1], {int(d): 0.0 for d in drivers})
    assert eff.before_class[0] == cls and eff.after[0, cls] < eff.before[0, cls]


def test_eval_script_without_fashion_mnist(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from eval_topics import main

    assert main(["--root", str(tmp_path / "missing"), "--epochs", "1"]) == 2
    assert "topics_eval: error:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the method: fit, results, aliases



def test_fit_is_lda_pooled_features_and_head(rng):
    """fit = extract_topics on the descriptions + fit_topic_head on the layer's pooled features; explain then
    scores with that head and the topics' names (what the topics CLI did by hand)."""
    pytest.importorskip("sklearn")
    from interp_engine.capture import pooled_activations

    model = conv_model(2)
    x = torch.from_numpy(rng.normal(size=(12, 1, 6, 6)).astype(np.float32))
    docs = [CORPUS[i % len(CORPUS)] for i in range(12)]
    ti = TopicInterpretation(model, "relu", n_topics=2, hidden=5, head_epochs=3, head_lr=3e-3, batch_size=5, seed=1)
    assert ti.fit(x, docs) is ti and ti.topics.n_topics == 2
    topics = extract_topics(docs, 2, seed=1)
    np.testing.assert_array_equal(ti.topics.matrix, topics.matrix)
    feats = pooled_activations(model, "relu", [x[i:i + 5] for i in range(0, 12, 5)])["relu"]
    head = fit_topic_head(feats, topics.matrix, 5, epochs=3, lr=3e-3, seed=1)
    for a, b in zip(ti.topic_head.parameters(), head.parameters()):
        assert torch.equal(a, b)
    res = ti.explain(x)
    want = TopicInterpretation(model, "relu", topic_head=head, target_names=topics.names(3), batch_size=5).explain(x)
    np.testing.assert_array_equal(res.scores, want.scores)
    assert res.target_names == topics.names(3) and res.targets == "topics"
    # a given Topics, and a topic matrix (its own column count)
    again = TopicInterpretation(model, "relu", hidden=5, head_epochs=3, seed=1).fit(x, topics)
    assert again.topics is topics
    m = rng.dirichlet(np.ones(3), size=12)
    assert TopicInterpretation(model, "relu", hidden=5, head_epochs=2).fit(x, m).explain(x).scores.shape == (4, 3)


def test_fit_and_explain_refusals(x5):
    model = class_model()
    with pytest.raises(ValueError, match=r'targets="topics" needs topic_head=.*or fit\(data, descriptions\)'):
        TopicInterpretation(model, "act").explain(x5)
    with pytest.raises(ValueError, match='fit learns topics and a topic head, used only with targets="topics"'):
        TopicInterpretation(model, "act", targets="classes").fit(x5, np.full((40, 2), 0.5))
    with pytest.raises(ValueError, match="topic_head was given to TopicInterpretation: there is nothing to fit"):
        TopicInterpretation(model, "act", topic_head=lambda f: f).fit(x5, np.full((40, 2), 0.5))
    with pytest.raises(ValueError, match="one topic vector per sample of data: 39 descriptions for 40 samples"):
        TopicInterpretation(model, "act").fit(x5, np.full((39, 2), 0.5))
    for kw, exc, match in [({"n_topics": 0}, ValueError, "n_topics must be an int >= 1, got 0"),
                           ({"hidden": 2.0}, ValueError, "hidden must be an int >= 1"),
                           ({"head_epochs": -1}, ValueError, "head_epochs must be an int >= 1"),
                           ({"head_lr": 0.0}, ValueError, "head_lr must be a finite number > 0"),
                           ({"head_batch_size": True}, ValueError, "head_batch_size must be an int"),
                           ({"seed": -1}, ValueError, "seed must be an int >= 0"),
                           ({"neurons": [-1]}, ValueError, "neurons must be channel indices >= 0, got -1"),
                           ({"neurons": "12"}, TypeError, "neurons must be a sequence"),
                           ({"topic_pooling": "sum"}, ValueError, "topic_pooling must be one of"),
                           ({"topic_layer": "nope"}, ValueError, "'nope' is not a submodule"),
                           ({"device": "nope"}, (TypeError, ValueError), "device"),
                           ({"topic_softmax": 1}, TypeError, "topic_softmax must be a bool")]:
        with pytest.raises(exc, match=match):
            TopicInterpretation(model, "act", **kw)


def test_prediction_difference_result_file_csv_repr(tmp_path, rng):
    model = conv_model()
    with torch.no_grad():
        model.conv.weight[2].zero_()
        model.conv.bias[2] = -1.0  # channel 2 is never active: NaN scores, -1 targets
    x = torch.from_numpy(rng.normal(size=(9, 1, 5, 5)).astype(np.float32))
    res = TopicInterpretation(model, "relu", targets="classes", ablation="mean", top_k=2).explain(x)
    text = repr(res)
    assert text == ("PredictionDifference(layer='relu', targets='classes', ablation='mean', neurons=4, "
                    "targets_count=3, samples=9, ever_active=3)")
    back = PredictionDifference.load(res.save(tmp_path / "pd.npz"))
    def nan_free(rows):  # NaN != NaN: compare tables with NaN as None
        return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]

    assert nan_free(back.table()) == nan_free(res.table()) and math.isnan(res.table()[2]["score"])
    for f in ("neurons", "scores", "counts", "top_targets", "top_scores", "ablation_values"):
        np.testing.assert_array_equal(getattr(back, f), getattr(res, f))
    assert (back.layer, back.targets, back.ablation, back.target_names, back.n_samples) == \
        (res.layer, res.targets, res.ablation, res.target_names, res.n_samples)
    with open(res.to_csv(tmp_path / "pd.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[2]["score"] == "" and rows[2]["target_1"] == "" and int(rows[2]["active"]) == 0
    assert list(rows[0]) == ["neuron", "active", "score", "target_1", "score_1", "target_2", "score_2"]
    good = tmp_path / "pd.npz"
    for change, field in [
            (lambda a, h: a.update(counts=a["counts"] + 100), "counts"),            # above n_samples
            (lambda a, h: a.update(top_targets=a["top_targets"] + 5), "top_targets"),
            (lambda a, h: a.update(top_scores=a["top_scores"] * 0.5), "top_scores"),  # not the scores' values
            (lambda a, h: a.update(scores=np.nan_to_num(a["scores"])), "scores"),     # never-active not NaN
            (lambda a, h: a.update(neurons=np.zeros_like(a["neurons"])), "neurons"),
            (lambda a, h: a.update(ablation_values=a["ablation_values"][:2]), "ablation_values"),
            (lambda a, h: h.update(ablation="random"), "header.ablation"),
            (lambda a, h: h.update(target_names=[]), "header.target_names"),
            (lambda a, h: h.pop("n_samples"), "n_samples")]:
        bad = rewrite_npz(good, tmp_path / "bad.npz", change)
        with pytest.raises(ValueError) as e:
            PredictionDifference.load(bad)
        assert field in str(e.value) and str(bad) in str(e.value), (field, str(e.value))


def test_edit_effect_result_file_csv_repr(tmp_path):
    from interp_engine.methods.topics import EditEffect

    model = class_model(k=4)
    x = torch.tensor([[3.0, 2.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]])
    eff = TopicInterpretation(model, "act").explain_edit(x, {0: 0.0, 2: 0.5}, class_names=list("abcd"),
                                                          labels=[1, 2])
    assert repr(eff) == "EditEffect(layer='act', edits=2 neurons, samples=2, changed=1)"
    back = EditEffect.load(eff.save(tmp_path / "edit.npz"))
    assert back.table() == eff.table() and back.edits == eff.edits and str(back) == str(eff)
    np.testing.assert_array_equal(back.after, eff.after)
    no_labels = TopicInterpretation(model, "act").explain_edit(x, {0: 0.0})
    again = EditEffect.load(no_labels.save(tmp_path / "edit0.npz"))
    assert again.labels is None and again.table() == no_labels.table()
    with open(eff.to_csv(tmp_path / "edit.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["before"] == "a" and rows[0]["after"] == "b" and rows[0]["correct_after"] == "True"
    for change, field in [
            (lambda a, h: a.update(after_class=a["before_class"]), "after_class"),   # not the argmax of after
            (lambda a, h: a.update(before=a["before"] * 2), "before"),
            (lambda a, h: a.update(labels=a["labels"] + 4), "labels"),
            (lambda a, h: h.update(edits=[[0, 0.0], [0, 1.0]]), "header.edits[1]"),
            (lambda a, h: h.update(has_labels=False), "labels")]:
        bad = rewrite_npz(tmp_path / "edit.npz", tmp_path / "bad.npz", change)
        with pytest.raises(ValueError) as e:
            EditEffect.load(bad)
        assert field in str(e.value) and str(bad) in str(e.value), (field, str(e.value))


def test_deprecated_aliases_warn_and_agree(x5):
    import importlib

    from interp_engine.methods.topics import edit_neurons, explain_edit, prediction_difference

    model = Wrapped(class_model())
    new = TopicInterpretation(model, "inner.act", targets="classes", ablation="mean", top_k=2).explain(x5)
    with pytest.warns(DeprecationWarning, match=r"prediction_difference\(model, layer, data, ...\) is deprecated; "
                                                r"use TopicInterpretation"):
        old = prediction_difference(model, "inner.act", x5, "classes", "mean", top_k=2)
    np.testing.assert_array_equal(old.scores, new.scores)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="ablation must be one of"):
        prediction_difference(model, "inner.act", x5, ablation="random")
    x = torch.tensor([[3.0, 2.0, 0.5, -1.0, 0.0]])
    with pytest.warns(DeprecationWarning, match=r"explain_edit\(model, layer, x, edits, ...\) is deprecated"):
        old_eff = explain_edit(model, "inner.act", x, {0: 0.0}, labels=[1])
    new_eff = TopicInterpretation(model, "inner.act").explain_edit(x, {0: 0.0}, labels=[1])
    assert old_eff.table() == new_eff.table()
    with pytest.warns(DeprecationWarning, match=r"edit_neurons\(model, layer, edits\) is deprecated"):
        ed = edit_neurons(model, "inner.act", {1: 0.0})
    with ed:
        a = model(x)
    with TopicInterpretation(model, "inner.act").edit({1: 0.0}):
        b = model(x)
    assert torch.equal(a, b)
    sys.modules.pop("interp_engine.topics", None)
    with pytest.warns(DeprecationWarning, match="interp_engine.topics is deprecated; use interp_engine.methods.topics"):
        old_mod = importlib.import_module("interp_engine.topics")
    import interp_engine.methods.topics as new_mod

    for name in ("TopicInterpretation", "extract_topics", "PredictionDifference", "prediction_difference",
                 "InterpretiveLoss"):
        assert getattr(old_mod, name) is getattr(new_mod, name)
