"""Representative interpretations (Lam et al., ICCV 2021), Grad-CAM and
Average Drop / Increase against obvious references (tests/reference.py) and
known answers.  Tiny float64 models: seconds."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import interp_engine
from interp_engine.methods.cam import average_drop_increase, grad_cam, keep_top_mask
from interp_engine.methods.representative import (Region, Regions, RepresentativeInterpretation,
                                                  derive_head)
from interp_engine.report import plot_region

from _npzedit import rewrite_npz
from reference import cam_from_channel_weights, naive_ratio_greedy_cover

N, K = 160, 5


def conv_model(seed: int, mlp: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    head = ([nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, K)] if mlp
            else [nn.Linear(4 * 6 * 6, K)])
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), *head)
    with torch.no_grad():
        model[-1].weight.mul_(4.0)  # livelier logits: every class predicted for some images
    return model.double().eval()


def images(seed: int, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def linear_ri():
    model = conv_model(1)
    x = images(2)
    ri = RepresentativeInterpretation(model, "1", pool=12, seed=3).fit(x)
    return model, x, ri


@pytest.fixture(scope="module")
def mlp_ri():
    model = conv_model(4, mlp=True)
    x = images(5)
    ri = RepresentativeInterpretation(model, "1", pool=12, seed=1).fit(x)
    return model, x, ri


def flat_features(model, x):
    with torch.no_grad():
        return model[1](model[0](x)).reshape(x.shape[0], -1).numpy()


def test_fit_predictions_and_features(linear_ri):
    model, x, ri = linear_ri
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_array_equal(ri.predictions, logits.argmax(1))
    np.testing.assert_allclose(ri.logits, logits, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ri.features.numpy(), flat_features(model, x))
    assert len(np.unique(ri.predictions)) >= 3
    assert ri.psi_shape == (4, 6, 6) and ri.image_shape == (3, 6, 6)
    # no hook left behind
    assert all(not m._forward_hooks for m in model.modules())


def test_fit_accepts_batches_and_tuples(linear_ri):
    model, x, ri = linear_ri
    y = torch.zeros(N, dtype=torch.long)
    batches = [(x[s:s + 50], y[s:s + 50]) for s in range(0, N, 50)]
    ri2 = RepresentativeInterpretation(model, "1", pool=12, seed=3).fit(batches)
    np.testing.assert_array_equal(ri2.predictions, ri.predictions)
    np.testing.assert_array_equal(ri2.features.numpy(), ri.features.numpy())
    ri3 = RepresentativeInterpretation(model, "1", pool=12, seed=3).fit([{"image": x}])
    np.testing.assert_array_equal(ri3.predictions, ri.predictions)
    assert ri2.images is None and ri.images is x


def check_boundaries_are_boundaries(ri, bnd, seed_class):
    pts = torch.from_numpy(bnd.points).reshape(-1, *ri.psi_shape)
    with torch.no_grad():
        lg = ri.head(pts).numpy()
    top = np.argsort(-lg, axis=1, kind="stable")[:, :2]
    gap = np.take_along_axis(lg, top, 1)
    assert np.all((gap[:, 0] - gap[:, 1]) ** 2 < 1e-5)
    assert np.all((top == seed_class).any(axis=1))
    # the other class is the other one of the top two
    other = np.where(top[:, 0] == seed_class, top[:, 1], top[:, 0])
    np.testing.assert_array_equal(other, bnd.other_classes)


@pytest.mark.parametrize("seed", [0, 7, 33])
def test_linear_head_exact_hyperplanes(linear_ri, seed):
    model, x, ri = linear_ri
    bnd = ri.sample_boundaries(seed)
    c = int(ri.predictions[seed])
    assert bnd.seed_class == c and bnd.n_unconverged == 0 and bnd.weights.shape == (12, 144)
    check_boundaries_are_boundaries(ri, bnd, c)
    W = model[-1].weight.detach().numpy()
    b = model[-1].bias.detach().numpy()
    for h in range(bnd.weights.shape[0]):
        o = bnd.other_classes[h]
        np.testing.assert_allclose(bnd.weights[h], W[c] - W[o], rtol=0, atol=1e-12)
        assert abs(bnd.biases[h] - (b[c] - b[o])) < 1e-10
    # the points lie on the segment between the seed and the drawn other-class images
    f = ri.features.numpy()
    for h in range(bnd.weights.shape[0]):
        d = f[bnd.others[h]] - f[seed]
        t = float(np.dot(bnd.points[h] - f[seed], d) / np.dot(d, d))
        assert 0 < t < 1
        np.testing.assert_allclose(bnd.points[h], f[seed] + t * d, atol=1e-10)
        assert ri.predictions[bnd.others[h]] != c


@pytest.mark.parametrize("seed", [1, 12, 40])
def test_relu_head_active_piece_hyperplanes(mlp_ri, seed):
    model, x, ri = mlp_ri
    bnd = ri.sample_boundaries(seed)
    c = int(ri.predictions[seed])
    check_boundaries_are_boundaries(ri, bnd, c)
    W1, b1 = model[3].weight.detach().numpy(), model[3].bias.detach().numpy()
    W2, b2 = model[5].weight.detach().numpy(), model[5].bias.detach().numpy()
    f = ri.features.numpy()
    for h in range(bnd.weights.shape[0]):
        z = W1 @ bnd.points[h] + b1
        assert np.min(np.abs(z)) > 1e-9  # not on a kink
        act = (z > 0).astype(float)
        Weff = W2 @ (act[:, None] * W1)
        beff = W2 @ (act * b1) + b2
        o = bnd.other_classes[h]
        sign = 1.0 if np.dot(Weff[c] - Weff[o], f[seed]) + beff[c] - beff[o] >= 0 else -1.0
        np.testing.assert_allclose(bnd.weights[h], sign * (Weff[c] - Weff[o]), rtol=0, atol=1e-10)
        assert abs(bnd.biases[h] - sign * (beff[c] - beff[o])) < 1e-9
        # oriented: the seed on the non-negative side
        assert np.dot(bnd.weights[h], f[seed]) + bnd.biases[h] >= 0


def brute_configuration(ri, bnd, c):
    vals = ri.features.numpy() @ bnd.weights.T + bnd.biases            # (N, P)
    excluded = (vals < 0).T
    same = np.flatnonzero(ri.predictions == c)
    other = np.flatnonzero(ri.predictions != c)
    return vals, excluded[:, same], excluded[:, other], same, other


@pytest.mark.parametrize("fixture", ["linear_ri", "mlp_ri"])
@pytest.mark.parametrize("delta", [0, 3])
def test_region_equals_naive_cover(request, fixture, delta):
    model, x, ri0 = request.getfixturevalue(fixture)
    ri = RepresentativeInterpretation(model, "1", pool=15, delta=delta, seed=2).fit(x)
    for seed in (0, 5, 9):
        (region,) = ri.explain(seed)
        bnd = ri.sample_boundaries(seed)
        c = region.seed_class
        vals, cost, gain, same, other = brute_configuration(ri, bnd, c)
        np.testing.assert_array_equal(region.cost_sets.to_dense(), cost)
        np.testing.assert_array_equal(region.gain_sets.to_dense(), gain)
        np.testing.assert_array_equal(region.same_indices, same)
        np.testing.assert_array_equal(region.other_indices, other)
        target = max(0, other.size - delta)
        idx, cc, cg, reached, n_greedy = naive_ratio_greedy_cover(cost, gain, target)
        np.testing.assert_array_equal(region.chosen, idx)
        assert (region.reached, region.n_greedy, region.target) == (reached, n_greedy, target)
        inside = np.all(vals[:, idx] >= 0, axis=1)
        np.testing.assert_array_equal(region.members, np.flatnonzero(inside))
        np.testing.assert_array_equal(region.member_classes, ri.predictions[inside])
        assert region.n_other == int((ri.predictions[inside] != c).sum())
        assert region.n_same == int((ri.predictions[inside] == c).sum())
        assert region.n_same == same.size - cc  # same-class images lost = covered cost
        assert region.n_other == other.size - cg
        if region.reached:
            assert region.n_other <= delta
        assert seed in region.members.tolist()
        np.testing.assert_array_equal(region.weights, bnd.weights[idx])
        np.testing.assert_array_equal(region.others, bnd.others[idx])
        np.testing.assert_allclose(region.seed_values, vals[seed, idx], rtol=0, atol=1e-12)


def test_region_reaches_target_on_linear_head(linear_ri):
    model, x, ri = linear_ri
    reached = list(ri.explain(range(8)))
    assert any(r.reached for r in reached)
    for r in reached:
        if r.reached:
            assert r.n_other == 0


def test_contains_agrees_with_membership(mlp_ri):
    model, x, ri = mlp_ri
    for seed in (2, 3):
        (region,) = ri.explain(seed)
        inside = region.contains(x)
        np.testing.assert_array_equal(inside, np.isin(np.arange(N), region.members))
        assert region.contains(x[seed]).tolist() == [True]
        np.testing.assert_array_equal(region.contains_features(ri.features), inside)
        # new images: the definition, by hand
        new = images(99, 30)
        vals = flat_features(model, new) @ region.weights.T + region.biases
        np.testing.assert_array_equal(region.contains(new), np.all(vals >= 0, axis=1))


def test_similar_ranking_brute_force(mlp_ri):
    model, x, ri = mlp_ri
    (region,) = ri.explain(4)
    f = ri.features.numpy()
    W, b = region.weights, region.biases
    s = W @ f[4] + b
    d = np.array([np.abs(s - (W @ f[i] + b)).sum() for i in region.members])
    order = sorted(range(len(d)), key=lambda j: (d[j], region.members[j] != 4, region.members[j]))
    sim = region.similar()
    np.testing.assert_array_equal(sim.indices, region.members[order])
    np.testing.assert_allclose(sim.distances, d[order], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sim.classes, ri.predictions[sim.indices])
    assert sim.indices[0] == 4 and sim.distances[0] == 0
    top3 = region.similar(3)
    np.testing.assert_array_equal(top3.indices, sim.indices[:3])


def test_heatmap_hand_reference(linear_ri):
    model, x, ri = linear_ri
    (region,) = ri.explain(6)
    assert region.n_boundaries >= 1
    alphas = region.weights.reshape(-1, 4, 36).mean(axis=2)
    f = ri.features.numpy().reshape(-1, 4, 6, 6)
    for i in (6, 11):
        ref = cam_from_channel_weights(alphas, f[i], (6, 6))
        np.testing.assert_allclose(region.heatmap(i), ref, rtol=0, atol=1e-12)
    # an unseen image, a batch, and upsampling to a larger size
    new = images(7, 3)
    fn = flat_features(model, new).reshape(-1, 4, 6, 6)
    hm = region.heatmap(new)
    assert hm.shape == (3, 6, 6)
    for j in range(3):
        np.testing.assert_allclose(hm[j], cam_from_channel_weights(alphas, fn[j], (6, 6)), atol=1e-12)
    np.testing.assert_allclose(region.heatmap(new[0]), hm[0], atol=1e-12)
    many = region.heatmap([11, 6])                       # reference indices: a batch
    np.testing.assert_allclose(many[1], region.heatmap(6), atol=1e-15)
    np.testing.assert_allclose(region.heatmap(np.array([11])), many[:1], atol=1e-15)
    with pytest.raises(ValueError, match=r"image index must be a reference index in \[0, 160\)"):
        region.heatmap([0, 160])
    assert hm.min() >= 0 and hm.max() <= 1


def test_heatmap_upsampled_to_image_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 4 * 5, 3)).double().eval()
    x = torch.randn(60, 3, 8, 10, dtype=torch.float64)
    ri = RepresentativeInterpretation(model, "2", pool=6).fit(x)
    (region,) = ri.explain(0)
    alphas = region.weights.reshape(-1, 3, 20).mean(axis=2)
    f = ri.features.numpy().reshape(-1, 3, 4, 5)
    np.testing.assert_allclose(region.heatmap(0), cam_from_channel_weights(alphas, f[0], (8, 10)),
                               atol=1e-12)


def test_explain_all_equals_explain(mlp_ri):
    model, x, ri0 = mlp_ri
    ri = RepresentativeInterpretation(model, "1", pairs_per_batch=7, pool=12, seed=1).fit(x)
    seeds = [0, 3, 8, 21, 3]
    many = ri.explain(seeds)
    assert list(ri.explain([])) == []
    assert set(ri.last_timings) == {"sampling", "configuration", "cover"}
    for s, r in zip(seeds, many):
        (one,) = ri0.explain(s)
        assert r.seed_index == s
        np.testing.assert_array_equal(r.chosen, one.chosen)
        np.testing.assert_array_equal(r.members, one.members)
        np.testing.assert_allclose(r.weights, one.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r.biases, one.biases, rtol=1e-9, atol=1e-12)
        assert (r.reached, r.n_other, r.n_greedy) == (one.reached, one.n_other, one.n_greedy)
    np.testing.assert_array_equal(ri.explain(np.array([8]))[0].members, many[2].members)


def test_determinism_and_seed(linear_ri):
    model, x, ri = linear_ri
    a, b = ri.sample_boundaries(10), ri.sample_boundaries(10)
    np.testing.assert_array_equal(a.others, b.others)
    np.testing.assert_array_equal(a.weights, b.weights)
    ri2 = RepresentativeInterpretation(model, "1", pool=12, seed=4).fit(x)
    assert not np.array_equal(ri2.sample_boundaries(10).others, a.others)
    # the draws: the documented generator
    others = np.flatnonzero(ri.predictions != ri.predictions[10])
    rng = np.random.default_rng(np.random.SeedSequence([3, 0, 10]))
    np.testing.assert_array_equal(a.others, rng.choice(others, size=12, replace=False))


def test_image_seed(linear_ri):
    model, x, ri = linear_ri
    img = images(123, 1)[0]
    (region,) = ri.explain(img)
    assert region.seed_index == -1
    with torch.no_grad():
        assert region.seed_class == int(model(img[None]).argmax())
    assert region.contains(img).tolist() == [True]
    f = flat_features(model, img[None])[0]
    np.testing.assert_allclose(region.seed_values, region.weights @ f + region.biases, atol=1e-12)
    sim = region.similar(4)
    assert sim.indices.size == min(4, region.n_members)
    # the same seed image in a batch gives the same region
    (again,) = ri.explain(img[None])
    np.testing.assert_array_equal(again.members, region.members)


def test_head_derivation_nested_and_explicit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
                          nn.Sequential(nn.Flatten(), nn.Linear(144, 16)), nn.ReLU(),
                          nn.Linear(16, 3)).double().eval()
    x = images(1, 20)
    head = derive_head(model, "0.1")
    with torch.no_grad():
        np.testing.assert_allclose(head(model[0](x)).numpy(), model(x).numpy(), atol=1e-12)
        flat = model[1][0](model[0](x))
        np.testing.assert_allclose(derive_head(model, "1.0")(flat).numpy(), model(x).numpy(),
                                   atol=1e-12)
    assert len(derive_head(model, "3")) == 0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(144, 3)

        def forward(self, x):
            return self.fc(self.body(x).flatten(1))

    net = Net().double().eval()
    with pytest.raises(ValueError, match=r"head=None: .* Net, not an nn.Sequential .*Pass head="):
        RepresentativeInterpretation(net, "body")
    ri = RepresentativeInterpretation(net, "body", head=lambda a: net.fc(a.flatten(1)), pool=3).fit(x)
    with torch.no_grad():
        np.testing.assert_array_equal(ri.predictions, net(x).argmax(1).numpy())


def test_concept_cnn_head():
    from interp_engine.models.concept_cnn import ConceptCNN

    torch.manual_seed(0)
    model = ConceptCNN(widths=(4, 4, 4, 8)).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 3.0)
    x = torch.rand(40, 3, 16, 16) * torch.rand(40, 3, 1, 1) * 3
    ri = RepresentativeInterpretation(model, "conv4", head=model.classify, pool=5).fit(x)
    (region,) = ri.explain(0)
    assert region.contains(x[0]).tolist() == [True]
    assert region.heatmap(x[:2]).shape == (2, 16, 16)


# ----------------------------------------------------------------------------- bad input

def test_bad_input(linear_ri):
    model, x, ri = linear_ri
    fresh = RepresentativeInterpretation(model, "1")
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        fresh.explain(0)
    with pytest.raises(ValueError, match="pool must be >= 1; got 0"):
        RepresentativeInterpretation(model, "1", pool=0)
    with pytest.raises(TypeError, match="pool must be an integer; got float"):
        RepresentativeInterpretation(model, "1", pool=2.5)
    with pytest.raises(ValueError, match="delta must be >= 0; got -1"):
        RepresentativeInterpretation(model, "1", delta=-1)
    with pytest.raises(ValueError, match="layer 'classifier' is not a submodule of Sequential"):
        RepresentativeInterpretation(model, "classifier")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        RepresentativeInterpretation("model", "1")
    with pytest.raises(TypeError, match="head must be a callable"):
        RepresentativeInterpretation(model, "1", head=3)
    with pytest.raises(ValueError, match=r"seed must have shape \(3, 6, 6\) .* got torch tensor of "
                                         r"shape \(3, 7, 6\)"):
        ri.sample_boundaries(torch.zeros(3, 7, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"images must have shape \(3, 6, 6\)"):
        ri.explain(0)[0].contains(torch.zeros(2, 3, 6, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"seed index must be a reference index in \[0, 160\), got 160"):
        ri.explain(N)
    with pytest.raises(TypeError, match="seed index must be an int"):
        ri.explain([True])
    with pytest.raises(ValueError, match="seed must be one reference index or one image, got 2"):
        ri.sample_boundaries(x[:2])
    with pytest.raises(ValueError, match=r"reference must be a tensor \(N, C, H, W\) with N >= 1"):
        fresh.fit(x[:0])
    with pytest.raises(TypeError, match="reference must be a tensor"):
        fresh.fit(x.numpy())
    with pytest.raises(ValueError, match=r"reference batch 1 has images of shape \(3, 5, 6\)"):
        fresh.fit([x[:3], x[:3, :, :5]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        ri.explain(0)[0].similar(0)


def test_head_checks():
    model = conv_model(1)
    x = images(2, 40)
    with pytest.raises(ValueError, match="head.psi. does not reproduce the model's logits"):
        RepresentativeInterpretation(model, "1", head=lambda a: model[2:](a) + 1.0).fit(x)
    with pytest.raises(ValueError, match=r"head.psi. gives logits of shape \(40, 2\)"):
        RepresentativeInterpretation(model, "1", head=lambda a: model[2:](a)[:, :2]).fit(x)
    ri = RepresentativeInterpretation(model, "1", head=lambda a: model[2:](a)[:, :2],
                                      check_head=False, pool=3).fit(x)
    assert set(ri.predictions.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match=r"to float logits \(B, num_classes\)"):
        RepresentativeInterpretation(model, "1", head=lambda a: a).fit(x)
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        RepresentativeInterpretation(model, "1", pool=3).fit(x)


@pytest.mark.parametrize("act", [nn.Sigmoid, nn.Tanh, nn.GELU, lambda: nn.Softmax(dim=1)])
def test_not_piecewise_linear_head_warns(act):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(144, 8), act(), nn.Linear(8, 3)).double().eval()
    x = images(3, 30)
    with torch.no_grad():  # centred, lively logits: several classes predicted
        model[3].weight.mul_(4.0)
        model[5].weight.normal_(0.0, 10.0)
        model[5].bias.copy_(-model[5].weight @ model[:5](x).mean(0))
    with pytest.warns(UserWarning, match="not piecewise linear .*local linearizations"):
        ri = RepresentativeInterpretation(model, "1", pool=3)
    ri.fit(x)
    assert len(np.unique(ri.predictions)) == 3
    bnd = ri.sample_boundaries(0)
    check_boundaries_are_boundaries(ri, bnd, bnd.seed_class)


def test_no_other_class_images():
    model = conv_model(1)
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([1e6, 0, 0, 0, 0], dtype=torch.float64))
    ri = RepresentativeInterpretation(model, "1").fit(images(2, 20))
    with pytest.raises(ValueError, match="seed index 3 is predicted as class 0, and no reference image "
                                         "has another predicted class"):
        ri.explain(3)


def test_heatmap_needs_feature_maps(linear_ri):
    model, x, _ = linear_ri
    ri = RepresentativeInterpretation(model, "2", pool=4).fit(x)  # Flatten: psi (144,)
    (region,) = ri.explain(0)
    with pytest.raises(ValueError, match=r"heatmap needs layer '2' to output \(B, C, h, w\)"):
        region.heatmap(0)
    np.testing.assert_array_equal(region.contains(x), np.isin(np.arange(N), region.members))


# ----------------------------------------------------------------------------- plots

def test_plot_region(tmp_path, linear_ri, monkeypatch):
    model, x, ri = linear_ri
    (region,) = ri.explain(0)
    path = tmp_path / "region.png"
    plot_region(region, path, k=3)
    assert path.stat().st_size > 1000
    plot_region(ri.explain(images(9, 1)[0])[0], tmp_path / "image_seed.png", images=x)
    assert (tmp_path / "image_seed.png").exists()
    with pytest.raises(TypeError, match="region must be a Region"):
        plot_region("r", path)
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="plotting needs matplotlib"):
        plot_region(region, tmp_path / "x.png")


def test_lazy_exports():
    for name in ("RepresentativeInterpretation", "Region", "plot_region", "grad_cam",
                 "average_drop_increase"):
        assert name in interp_engine.__all__
    # the top-level names are the defining modules' objects, not copies or stand-ins
    from interp_engine import report
    from interp_engine.methods import cam, representative

    for name in ("RepresentativeInterpretation", "Region", "Regions", "RegionEvaluation", "evaluate_regions"):
        obj = getattr(interp_engine, name)
        assert obj is getattr(representative, name)
        assert obj.__module__.startswith("interp_engine.methods.representative."), (name, obj.__module__)
    # plots live in the report layer (the old methods.coclustering.plot_region is a deprecated alias)
    assert interp_engine.plot_region is report.plot_region
    assert interp_engine.plot_region.__module__ == "interp_engine.report.represent_page"
    assert not hasattr(representative, "plot_region")
    for name in ("grad_cam", "average_drop_increase"):
        assert getattr(interp_engine, name) is getattr(cam, name)


# ----------------------------------------------------------------------------- Grad-CAM

def test_grad_cam_hand_reference():
    torch.manual_seed(0)
    # linear head on the conv features: d logit_t / d A = W[t] reshaped (C, h, w)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 3)).double().eval()
    x = images(8, 5)
    W = model[-1].weight.detach().numpy().reshape(3, 4, 3, 3)
    with torch.no_grad():
        A = model[2](model[1](model[0](x))).numpy()
        pred = model(x).argmax(1).numpy()
    for cls in (None, 2, np.array([0, 1, 2, 0, 1])):
        maps = grad_cam(model, "2", x, cls, batch_size=2)
        assert maps.shape == (5, 6, 6)
        t = pred if cls is None else np.broadcast_to(cls, (5,))
        for i in range(5):
            alpha = W[t[i]].reshape(4, 9).mean(axis=1)
            ref = cam_from_channel_weights(alpha[None], A[i], (6, 6))
            np.testing.assert_allclose(maps[i], ref, rtol=0, atol=1e-12)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match=r"class_idx must be an int or an integer array of shape \(5,\)"):
        grad_cam(model, "2", x, [0, 1])
    with pytest.raises(ValueError, match=r"grad_cam needs layer '3' to output \(B, C, h, w\)"):
        grad_cam(model, "3", x)
    with pytest.raises(ValueError, match=r"images must be a float tensor \(N, C, H, W\)"):
        grad_cam(model, "2", x[0])


def test_grad_cam_of_region_linear_head_matches(linear_ri):
    # one boundary between classes c and o of a linear head: the region map is
    # Grad-CAM of the logit difference l_c - l_o, i.e. of weights W_c - W_o
    model, x, ri = linear_ri
    (region,) = ri.explain(6)
    h = 0
    c, o = region.seed_class, region.other_classes[h]
    W = model[-1].weight.detach().numpy().reshape(K, 4, 6, 6)
    alpha = (W[c] - W[o]).reshape(4, 36).mean(axis=1)
    f = ri.features.numpy().reshape(-1, 4, 6, 6)
    single = Region(**{**region.__dict__, "weights": region.weights[:1], "biases": region.biases[:1]})
    np.testing.assert_allclose(single.heatmap(6), cam_from_channel_weights(alpha[None], f[6], (6, 6)),
                               atol=1e-12)


# ----------------------------------------------------------------------------- Average Drop / Increase

class SumModel(nn.Module):
    """logits = [sum of all pixels, 0]: class-0 softmax score = sigmoid(sum)."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_average_drop_increase_known_answer():
    x = torch.tensor([[[[1.0, 2.0, 3.0, 0.5, 0.0]]],
                      [[[-1.0, 1.0, 1.0, 0.0, 0.0]]],
                      [[[2.0, 0.0, 0.0, 0.0, 0.0]]]], dtype=torch.float64)   # (3, 1, 1, 5)
    maps = np.array([[[0.0, 0.9, 0.8, 0.1, 0.0]],     # keeps pixels 1, 2: sum 5 < 6.5
                     [[0.2, 0.7, 0.7, 0.1, 0.0]],     # keeps 1, 2: sum 2 > 1 (increase)
                     [[0.5, 0.5, 0.5, 0.5, 0.5]]])    # ties: keeps 0, 1: sum 2 = 2 (no change)
    res = average_drop_increase(SumModel(), x, maps, 0, keep=0.4)
    Y = np.array([sigmoid(6.5), sigmoid(1.0), sigmoid(2.0)])
    O = np.array([sigmoid(5.0), sigmoid(2.0), sigmoid(2.0)])
    np.testing.assert_allclose(res.full_scores, Y, rtol=1e-12)
    np.testing.assert_allclose(res.masked_scores, O, rtol=1e-12)
    assert res.average_drop == pytest.approx(100 * ((Y[0] - O[0]) / Y[0]) / 3, rel=1e-12)
    assert res.average_increase == pytest.approx(100 / 3)
    # fill with a value (e.g. the dataset mean): removed pixels count 1.0 each
    res = average_drop_increase(SumModel(), x, maps, [0, 0, 0], keep=0.4, fill=np.array([1.0]))
    O = np.array([sigmoid(5.0 + 3), sigmoid(2.0 + 3), sigmoid(2.0 + 3)])
    np.testing.assert_allclose(res.masked_scores, O, rtol=1e-12)
    assert res.average_drop == 0.0 and res.average_increase == pytest.approx(100.0)


def test_keep_top_mask_and_bad_input():
    m = np.array([[[3.0, 1.0], [2.0, 2.0]]])
    np.testing.assert_array_equal(keep_top_mask(m, 0.5), [[[True, False], [True, False]]])
    np.testing.assert_array_equal(keep_top_mask(m, 0.01), [[[True, False], [False, False]]])
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"maps must be a real array of shape \(1, 2, 2\)"):
        average_drop_increase(SumModel(), x, np.zeros((1, 3, 2)), 0)
    with pytest.raises(ValueError, match=r"keep must be a fraction in \(0, 1\]"):
        average_drop_increase(SumModel(), x, m, 0, keep=0)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 2\)"):
        average_drop_increase(SumModel(), x, m, 5)
    with pytest.raises(ValueError, match=r"fill must be a float or per-channel values of shape \(1,\)"):
        average_drop_increase(SumModel(), x, m, 0, fill=np.zeros(3))


def test_unconverged_pairs_dropped(mlp_ri):
    model, x, _ = mlp_ri
    ri = RepresentativeInterpretation(model, "1", max_steps=6, pool=12, seed=1).fit(x)
    with pytest.warns(RuntimeWarning, match=r"bisections did not reach a squared top-2 logit gap < "
                                            r"1e-05 in max_steps=6 steps and were dropped"):
        regions = ri.explain([0, 5, 9])
    assert any(r.n_unconverged > 0 for r in regions)
    for seed, region in zip([0, 5, 9], regions):
        assert region.n_pool + region.n_unconverged == 12
        with pytest.warns(RuntimeWarning):
            bnd = ri.sample_boundaries(seed)
        assert bnd.weights.shape[0] == region.n_pool
        check_boundaries_are_boundaries(ri, bnd, region.seed_class)
        vals, cost, gain, same, other = brute_configuration(ri, bnd, region.seed_class)
        np.testing.assert_array_equal(region.cost_sets.to_dense(), cost)
        np.testing.assert_array_equal(region.gain_sets.to_dense(), gain)
        idx = naive_ratio_greedy_cover(cost, gain, other.size)[0]
        np.testing.assert_array_equal(region.chosen, idx)
        np.testing.assert_array_equal(region.members, np.flatnonzero(np.all(vals[:, idx] >= 0, 1)))


# ----------------------------------------------------------------------------- evaluation on unseen images

def test_evaluate_regions_against_direct_calls(mlp_ri):
    """evaluate_regions: each unseen image goes to the first reached region of
    its predicted class that contains it; the scores equal
    average_drop_increase on those images with the region maps, Grad-CAM and
    the seeded random maps."""
    from interp_engine.methods.representative import evaluate_regions

    model, x, ri = mlp_ri
    regions = ri.explain(range(12))
    unseen = images(11, 80)
    ev = evaluate_regions(ri, regions, unseen, keep=0.25, fill=0.0, seed=4)
    with torch.no_grad():
        pred = model(unseen).argmax(1).numpy()
    for i in range(len(unseen)):
        ok = [j for j, r in enumerate(regions) if r.reached and r.seed_class == pred[i]
              and bool(r.contains(unseen[i:i + 1])[0])]
        assert ev.assigned[i] == (ok[0] if ok else -1)
    cov = np.flatnonzero(ev.assigned >= 0)
    assert ev.covered == len(cov) > 0 and ev.unseen == 80
    xs = unseen[torch.as_tensor(cov)]
    maps = np.stack([regions[ev.assigned[i]].heatmap(unseen[i:i + 1])[0] for i in cov])
    want = average_drop_increase(model, xs, maps, pred[cov], keep=0.25, fill=0.0)
    assert ev.scores["region"] == pytest.approx((want.average_drop, want.average_increase))
    cam = grad_cam(model, "1", xs, pred[cov])
    want = average_drop_increase(model, xs, cam, pred[cov], keep=0.25, fill=0.0)
    assert ev.scores["grad_cam"] == pytest.approx((want.average_drop, want.average_increase))
    assert ev.pure == sum(r.n_other == 0 for r in regions) and ev.regions == 12
    sizes = np.bincount(ri.predictions, minlength=K)
    np.testing.assert_allclose(ev.coverage, [r.n_same / sizes[r.seed_class] for r in regions])
    assert "Average Drop" in str(ev) and {t["method"] for t in ev.table()} == {"region", "grad_cam", "random"}
    with pytest.raises(ValueError, match="unseen"):
        evaluate_regions(ri, regions, unseen[:, :2])
    with pytest.raises(TypeError, match="regions"):
        evaluate_regions(ri, [], unseen)


def test_real_data_fashion_mnist_regions():
    """Real data (skipped without Debian's dataset-fashion-mnist): the bundled
    FashionCNN at relu3 on 400 test images, 20 seeds: regions that reach the
    cover target hold no image of another predicted class, contains() agrees
    with the members, and they keep most of the seed's class."""
    from interp_engine.data.fashion_mnist import fashion_mnist, fashion_mnist_tensor
    from interp_engine.models.fashion_cnn import fashion_cnn

    try:
        imgs, _ = fashion_mnist("test")
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    x = fashion_mnist_tensor(imgs[:400])
    ri = RepresentativeInterpretation(fashion_cnn().eval(), "relu3", pool=50, seed=0).fit(x)
    regions = ri.explain(range(20))
    pure = [r for r in regions if r.reached]
    assert len(pure) >= 8
    sizes = np.bincount(ri.predictions, minlength=10)
    for r in pure:
        assert r.n_other == 0 and np.all(ri.predictions[r.members] == r.seed_class)
        np.testing.assert_array_equal(np.flatnonzero(r.contains(x)), np.sort(r.members))
    assert np.mean([r.n_same / sizes[r.seed_class] for r in pure]) > 0.5


# ----------------------------------------------------------------------------- the result: Regions

def test_regions_table_csv_repr(linear_ri, tmp_path):
    import csv

    model, x, ri = linear_ri
    regions = ri.explain([0, 5, 9])
    assert isinstance(regions, Regions) and len(regions) == 3 and regions.pool == 12 and regions.seed == 3
    rows = regions.table()
    assert [r["seed_index"] for r in rows] == [0, 5, 9]
    for r, row in zip(regions, rows):
        assert row == {"seed_index": r.seed_index, "seed_class": r.seed_class, "members": r.n_members,
                       "same_class": r.n_same, "other_class": r.n_other, "boundaries": r.n_boundaries,
                       "greedy": r.n_greedy, "pool": r.n_pool, "unconverged": r.n_unconverged,
                       "target": r.target, "reached": r.reached}
    with open(regions.to_csv(tmp_path / "regions.csv")) as f:
        back = list(csv.DictReader(f))
    assert [int(r["members"]) for r in back] == [r["members"] for r in rows]
    assert back[0]["reached"] in ("True", "False")
    # an empty result still writes its header
    with open(ri.explain([]).to_csv(tmp_path / "empty.csv")) as f:
        assert f.readline().strip().split(",")[:3] == ["seed_index", "seed_class", "members"]
    text = repr(regions)
    assert text.startswith("Regions(3 regions, layer='1'") and "\n" not in text and len(text) <= 200
    assert isinstance(regions[1:], Regions) and [r.seed_index for r in regions[1:]] == [5, 9]


def _same_region(a, b):
    for f in ("weights", "biases", "points", "other_classes", "others", "chosen", "members", "member_classes",
              "seed_values", "same_indices", "other_indices"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert getattr(a, f).dtype == getattr(b, f).dtype, f
    assert a.cost_sets == b.cost_sets and a.gain_sets == b.gain_sets
    for f in ("seed_index", "seed_class", "n_greedy", "n_other", "reached", "target", "delta", "n_pool",
              "n_unconverged"):
        assert getattr(a, f) == getattr(b, f), f


def test_regions_save_load_round_trip_and_bind(mlp_ri, tmp_path):
    model, x, ri = mlp_ri
    img = images(77, 1)[0]
    regions = ri.explain(torch.cat([x[:4], img[None]]))        # image seeds: seed images are saved
    regions = Regions(list(ri.explain([0, 3, 8])) + list(regions[-1:]), layer=regions.layer,
                      n_reference=regions.n_reference, psi_shape=regions.psi_shape,
                      image_shape=regions.image_shape, pool=regions.pool, delta=regions.delta,
                      seed=regions.seed, timings=regions.timings)
    path = regions.save(tmp_path / "regions.npz")
    back = Regions.load(path)
    assert back.table() == regions.table()
    assert (back.layer, back.n_reference, back.psi_shape, back.image_shape, back.pool, back.delta, back.seed) == \
        (regions.layer, regions.n_reference, regions.psi_shape, regions.image_shape, regions.pool,
         regions.delta, regions.seed)
    for a, b in zip(regions, back):
        _same_region(a, b)
    torch.testing.assert_close(back[3].seed_image, img, rtol=0, atol=0, check_dtype=False)
    # unbound: the queries need the model and the reference features
    with pytest.raises(RuntimeError, match=r"no fitted RepresentativeInterpretation .*bind"):
        back[0].similar()
    back.bind(ri)
    np.testing.assert_array_equal(back[0].similar().indices, regions[0].similar().indices)
    np.testing.assert_array_equal(back[1].heatmap(x[:3]), regions[1].heatmap(x[:3]))
    np.testing.assert_array_equal(back[3].contains(x), regions[3].contains(x))
    np.testing.assert_array_equal(back[3].heatmap(back[3].seed_image), regions[3].heatmap(img))
    # a method fitted on other data is refused
    other = RepresentativeInterpretation(model, "1", pool=12).fit(images(6))
    with pytest.raises(ValueError, match="predicted classes of region 0's members differ"):
        Regions.load(path).bind(other)
    with pytest.raises(ValueError, match="n_reference 40, the regions' is 160"):
        Regions.load(path).bind(RepresentativeInterpretation(model, "1").fit(x[:40]))
    with pytest.raises(TypeError, match="ri must be a RepresentativeInterpretation"):
        Regions.load(path).bind(model)




def test_regions_file_damage_refused_naming_the_field(linear_ri, tmp_path):
    model, x, ri = linear_ri
    good = ri.explain([0, 6]).save(tmp_path / "good.npz")
    r0 = ri.explain(0)[0]
    assert r0.n_boundaries >= 1

    def bump(name, value):
        def change(a, h):
            a[name] = a[name].copy()
            a[name].flat[0] = value
        return change

    def set_header(key, value):
        def change(a, h):
            h["regions"][0][key] = value
        return change

    cases = [
        (bump("r0.chosen", 12), "r0.chosen"),                       # beyond the pool of 12
        (bump("r0.members", N), "r0.members"),                      # not a reference index
        (bump("r1.weights", np.nan), "r1.weights"),
        (lambda a, h: a.pop("r0.biases"), "r0.biases"),
        (lambda a, h: a.update({"r0.extra": np.zeros(2)}), "r0.extra"),
        (lambda a, h: a.update({"r0.others": a["r0.others"].astype(np.float64)}), "r0.others"),
        (set_header("n_other", 99), "header.regions[0].n_other"),
        (set_header("n_greedy", 99), "header.regions[0].n_greedy"),
        (set_header("n_unconverged", 3), "header.regions[0].n_unconverged"),
        (set_header("seed_index", N), "header.regions[0].seed_index"),
        (set_header("reached", 1), "header.regions[0].reached"),
        (lambda a, h: h.pop("layer"), "layer"),
        (lambda a, h: a.update({"r0.cost_words": a["r0.cost_words"] | np.uint64(1 << 63)}), "r0.cost_words"),
        (lambda a, h: a.update({"r0.same_indices": a["r0.same_indices"][::-1].copy(),
                                "r0.other_indices": np.zeros_like(a["r0.other_indices"])}), "r0.other_indices"),
    ]
    for i, (change, field) in enumerate(cases):
        bad = rewrite_npz(good, tmp_path / f"bad{i}.npz", change)
        with pytest.raises(ValueError) as e:
            Regions.load(bad)
        assert str(bad) in str(e.value) and field in str(e.value), (field, str(e.value))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable representative regions file"):
        Regions.load(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------- deprecated aliases

def test_deprecated_aliases_warn_and_agree(linear_ri, tmp_path):
    import importlib

    model, x, ri = linear_ri
    new = ri.explain([0, 4])
    with pytest.warns(DeprecationWarning, match=r"explain_all\(seeds\) is deprecated; use explain\(seeds\)"):
        old = ri.explain_all([0, 4])
    assert isinstance(old, list) and [r.members.tolist() for r in old] == [r.members.tolist() for r in new]
    with pytest.warns(DeprecationWarning, match=r"fit\(reference, pool=12, seed=3\) is deprecated"):
        ri_old = RepresentativeInterpretation(model, "1").fit(x, pool=12, seed=3)
    assert (ri_old.pool, ri_old.seed, ri_old.delta) == (12, 3, 0)
    np.testing.assert_array_equal(ri_old.explain(4)[0].chosen, new[1].chosen)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="pool must be >= 1; got 0"):
        RepresentativeInterpretation(model, "1").fit(x, pool=0)
    # explain(seed) returned the Region itself: one region's attributes are forwarded, with a warning
    one = ri.explain(4)
    with pytest.warns(DeprecationWarning, match=r"explain\(seed\).members is deprecated; use explain\(seed\)\[0\]"):
        np.testing.assert_array_equal(one.members, new[1].members)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(one.similar(3).indices, new[1].similar(3).indices)
    with pytest.raises(AttributeError, match="it holds 2 regions"):
        new.members
    # the old module paths
    for mod, names in (("interp_engine.methods.coclustering", ("RepresentativeInterpretation", "Region",
                                                               "derive_head", "Boundaries")),
                       ("interp_engine.methods.represent_eval", ("evaluate_regions", "RegionEvaluation"))):
        sys.modules.pop(mod, None)
        with pytest.warns(DeprecationWarning, match=f"{mod} is deprecated; use interp_engine.methods.representative"):
            m = importlib.import_module(mod)
        for name in names:
            assert getattr(m, name) is getattr(interp_engine.methods.representative, name)
    with pytest.warns(DeprecationWarning, match="use interp_engine.report.plot_region"):
        sys.modules["interp_engine.methods.coclustering"].plot_region(new[0], tmp_path / "old.png", k=2)
    plot_region(new[0], tmp_path / "new.png", k=2)
    assert (tmp_path / "old.png").stat().st_size == (tmp_path / "new.png").stat().st_size


# ----------------------------------------------------------------------------- the evaluation result

def test_region_evaluation_result_round_trip(mlp_ri, tmp_path):
    from interp_engine.methods.representative import RegionEvaluation, evaluate_regions

    model, x, ri = mlp_ri
    regions = ri.explain(range(6))
    ev = evaluate_regions(ri, regions, images(11, 40), keep=0.25, fill=np.array([0.0, 0.5, 1.0]), seed=4)
    assert ev.covered > 0
    text = repr(ev)
    assert text.startswith("RegionEvaluation(regions=6, pure=") and "\n" not in text and len(text) <= 200
    back = RegionEvaluation.load(ev.save(tmp_path / "ev.npz"))
    assert back.table() == ev.table() and str(back) == str(ev)
    np.testing.assert_array_equal(back.coverage, ev.coverage)
    np.testing.assert_array_equal(back.assigned, ev.assigned)
    np.testing.assert_array_equal(back.fill, ev.fill)
    scalar = evaluate_regions(ri, regions, images(11, 40), keep=0.25, fill=0.0, seed=4)
    again = RegionEvaluation.load(scalar.save(tmp_path / "ev0.npz"))
    assert again.fill == 0.0 and isinstance(again.fill, float) and again.table() == scalar.table()
    import csv

    with open(ev.to_csv(tmp_path / "ev.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["region", "grad_cam", "random"]
    assert float(rows[1]["average_drop"]) == ev.scores["grad_cam"][0]
    for change, field in ((lambda a, h: h.update(covered=h["covered"] + 1), "header.covered"),
                          (lambda a, h: a.update(assigned=a["assigned"] + 10), "assigned"),
                          (lambda a, h: h["methods"].append(dict(h["methods"][0])), "header.methods"),
                          (lambda a, h: h["methods"][0].update(method="lime"), "header.methods[0].method"),
                          (lambda a, h: a.update(coverage=a["coverage"][:2]), "coverage")):
        bad = rewrite_npz(tmp_path / "ev.npz", tmp_path / "bad.npz", change)
        with pytest.raises(ValueError) as e:
            RegionEvaluation.load(bad)
        assert field in str(e.value) and str(bad) in str(e.value), (field, str(e.value))
