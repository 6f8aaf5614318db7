"""Concept-class relevance and local interpretation
(interp_engine.methods.concept_relevance): known answers on a linear head,
a per-example autograd reference on a nonlinear model, plots, hook removal,
bad input."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import interp_engine  # noqa: E402
from interp_engine.methods.concept_relevance import (LocalContributions,  # noqa: E402
                                                     RelevanceResult, concept_class_relevance,
                                                     concept_contributions, concept_maps,
                                                     linear_head_relevance, plot_local)

K, C, H, W = 6, 4, 5, 7


class PoolHead(nn.Module):
    """layer ``feat`` = identity on a (B, K, H, W) input; logits = fc(mean or
    sum over positions)."""

    def __init__(self, weight, bias, pool="mean"):
        super().__init__()
        self.feat = nn.Identity()
        self.fc = nn.Linear(K, C)
        self.pool = pool
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x):
        a = self.feat(x)
        p = a.mean(dim=(2, 3)) if self.pool == "mean" else a.sum(dim=(2, 3))
        return self.fc(p)


class ConvNet(nn.Module):
    """Nonlinear: conv -> relu (layer ``act``) -> squared pooled features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, K, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(K, C)

    def forward(self, x):
        a = self.act(self.conv(x))
        return self.fc(torch.tanh(a).mean(dim=(2, 3)) ** 2)


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(C, K, generator=g, dtype=torch.float64).float()
    b = torch.randn(C, generator=g)
    v = torch.randn(5, K, generator=g, dtype=torch.float64).numpy()
    x = torch.randn(40, K, H, W, generator=g)
    return w, b, v, x


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("pool", ["mean", "sum"])
def test_relevance_linear_head_known_answer(setup, pool):
    w, b, v, x = setup
    model = PoolHead(w, b, pool).eval()
    before = {k: t.clone() for k, t in model.state_dict().items()}
    res = concept_class_relevance(model, "feat", v, x, batch_size=7)
    assert isinstance(res, RelevanceResult)
    expect = w.double().numpy() @ _unit(v).T * (1 if pool == "mean" else H * W)
    pred = model(x).argmax(1).numpy()
    counts = np.bincount(pred, minlength=C)
    assert res.counts.tolist() == counts.tolist() and counts.sum() == len(x)
    seen = counts > 0
    assert seen.sum() >= 2
    np.testing.assert_allclose(res.relevance[seen], expect[seen], rtol=1e-5, atol=1e-6)
    assert np.all(np.isnan(res.relevance[~seen]))
    lin = linear_head_relevance(model.fc.weight, v)
    scale = 1 if pool == "mean" else H * W
    np.testing.assert_allclose(lin.relevance * scale, expect, rtol=1e-12)
    assert lin.counts is None and lin.method == "linear_head"
    # model unchanged, no hook left, no parameter gradients
    for k, t in model.state_dict().items():
        assert torch.equal(t, before[k])
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_relevance_reference_nonlinear_and_classes():
    torch.manual_seed(1)
    model = ConvNet().eval()
    x = torch.randn(12, 3, 8, 8)
    v = np.random.default_rng(0).normal(size=(3, K))
    res = concept_class_relevance(model, "act", v, list(x), batch_size=5,  # a "dataset"
                                  concept_names=["a", "b", "c"])
    vu = _unit(v)
    sums, cnt = np.zeros((C, 3)), np.zeros(C, int)
    for xi in x:  # one example at a time, plain autograd
        a = model.act(model.conv(xi[None]))
        a.retain_grad()
        out = model.fc(torch.tanh(a).mean(dim=(2, 3)) ** 2)
        k = int(out.argmax())
        out[0, k].backward()
        sums[k] += vu @ a.grad[0].sum(dim=(1, 2)).double().numpy()
        cnt[k] += 1
    seen = cnt > 0
    np.testing.assert_allclose(res.relevance[seen], sums[seen] / cnt[seen, None], rtol=1e-4,
                               atol=1e-7)
    assert res.concepts == ["a", "b", "c"]
    sub = concept_class_relevance(model, "act", v, x, classes=[3, 0])
    assert sub.classes == [3, 0] and sub.relevance.shape == (2, 3)
    np.testing.assert_array_equal(sub.relevance, res.relevance[[3, 0]])
    np.testing.assert_array_equal(sub.counts, res.counts[[3, 0]])
    # table: top concepts per class, highest first
    k = int(np.flatnonzero(seen)[0])
    row = next(r for r in res.table(top=2) if r["class"] == k)
    assert row["count"] == cnt[k]
    order = np.argsort(-res.relevance[k])[:2]
    assert [c for c, _ in row["top"]] == [res.concepts[j] for j in order]
    assert "class" in str(res)
    assert _hooks(model) == 0


def test_concept_vectors_object_is_accepted(setup):
    from interp_engine.methods.concept_vectors import ConceptVectors

    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    cv = ConceptVectors(model, "feat")
    cv.vectors, cv.concepts = _unit(v), [f"c{i}" for i in range(len(v))]
    res = concept_class_relevance(model, "feat", cv, x)
    assert res.concepts == cv.concepts
    cv.layer = "fc"
    with pytest.raises(ValueError, match="fitted at layer 'fc', not at layer='feat'"):
        concept_class_relevance(model, "feat", cv, x)


def test_concept_maps_match_einsum_interpolate():
    torch.manual_seed(2)
    model = ConvNet().eval()
    img = torch.randn(3, 13, 11)
    v = np.random.default_rng(3).normal(size=(4, K))
    maps = concept_maps(model, "act", v, img)
    a = model.act(model.conv(img[None])).detach()
    ref = torch.einsum("bkhw,lk->blhw", a, torch.as_tensor(_unit(v), dtype=torch.float32))
    ref = F.interpolate(ref, size=(13, 11), mode="bilinear", align_corners=False)[0]
    assert maps.shape == (4, 13, 11) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert _hooks(model) == 0


def test_contributions_rank_aligned_concept_first(setup):
    w, b, _, x = setup
    model = PoolHead(w, b).eval()
    # orthonormal basis of R^K, the first aligned with the class-2 weight
    wk = w[2].double().numpy()
    q, _ = np.linalg.qr(np.column_stack([wk, np.random.default_rng(0).normal(size=(K, K - 1))]))
    basis = q.T.copy()
    basis[0] *= np.sign(basis[0] @ wk)
    img = torch.as_tensor(wk, dtype=torch.float32)[:, None, None].expand(K, H, W).clone()
    img += 0.05 * torch.randn(K, H, W, generator=torch.Generator().manual_seed(4))
    names = [f"c{i}" for i in range(K)]
    res = concept_contributions(model, "feat", basis, img, 2, concept_names=names)
    assert isinstance(res, LocalContributions)
    assert res.concepts[0] == "c0" and res.order[0] == 0
    assert np.all(np.diff(res.contributions) <= 0)
    # known decomposition: D_c = w_k . v_c, P_c = v_c . mean a; complete orthonormal basis,
    # constant gradient -> residual 0 and total = logit - bias
    abar = img.double().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(res.derivatives, basis[res.order] @ wk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.projections, basis[res.order] @ abar, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logit = float(model(img[None])[0, 2])
    assert res.logit == pytest.approx(logit, rel=1e-6)
    assert res.total == pytest.approx(logit - float(b[2]), rel=1e-5, abs=1e-5)
    assert abs(res.residual) < 1e-5
    assert res.top(2)[0][0] == "c0"
    # an incomplete basis leaves the rest in the residual
    part = concept_contributions(model, "feat", basis[:2], img, 2)
    assert part.residual == pytest.approx(res.total - part.contributions.sum())
    assert part.residual == pytest.approx(float(res.contributions[res.order >= 2].sum()),
                                          abs=1e-5)
    # None -> predicted class
    pred = concept_contributions(model, "feat", basis, img, None)
    with torch.no_grad():
        assert pred.target_class == int(model(img[None]).argmax())
    assert _hooks(model) == 0


def test_plots_write_png(tmp_path, setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    res = concept_class_relevance(model, "feat", v, x)
    p = tmp_path / "heat.png"
    res.plot_heatmap(p, class_names=["a", "b", "c", "d"])
    assert p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    linear_head_relevance(w, v).plot_heatmap(tmp_path / "lin.png")
    assert (tmp_path / "lin.png").stat().st_size > 1000
    maps = concept_maps(model, "feat", v, x[0])
    con = concept_contributions(model, "feat", v, x[0], 1)
    u8 = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    q = tmp_path / "local.png"
    plot_local(u8, maps, con, q, top=3)
    assert q.stat().st_size > 1000 and q.read_bytes()[:4] == b"\x89PNG"
    plot_local(torch.as_tensor(u8).permute(2, 0, 1), torch.as_tensor(maps), con,
               tmp_path / "chw.png", top=10)  # CHW tensor image, top clipped to L
    assert (tmp_path / "chw.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="image_uint8 must be a uint8"):
        plot_local(x[0, :3].numpy(), maps, con, q)  # float, not uint8
    with pytest.raises(ValueError, match=r"maps must be \(L, H, W\) = \(5, 5, 7\)"):
        plot_local(u8, maps[:2], con, q)


def test_bad_input(setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    with pytest.raises(ValueError, match="'fet' is not a submodule.*'feat'"):
        concept_class_relevance(model, "fet", v, x)
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4") as ei:
        concept_class_relevance(model, "feat", v[:, :4], x)
    assert ei.value is not None and _hooks(model) == 0  # removed while the traceback lives
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4"):
        concept_maps(model, "feat", v[:, :4], x[0])
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4"):
        concept_contributions(model, "feat", v[:, :4], x[0], 0)
    with pytest.raises(ValueError, match=r"weight must be \(num_classes, K\) with K=6"):
        linear_head_relevance(w[:, :4], v)
    with pytest.raises(ValueError, match=r"target_class must be in \[0, 4\), got 4"):
        concept_contributions(model, "feat", v, x[0], 4)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 4\)"):
        concept_class_relevance(model, "feat", v, x, classes=[0, 7])
    with pytest.raises(ValueError, match="classes must hold class indices >= 0"):
        concept_class_relevance(model, "feat", v, x, classes=[-1])
    with pytest.raises(TypeError, match="target_class must hold integer"):
        concept_contributions(model, "feat", v, x[0], 1.5)
    with pytest.raises(ValueError, match="vectors must be 2-dimensional"):
        concept_maps(model, "feat", v[0], x[0])
    with pytest.raises(ValueError, match="zero rows"):
        concept_maps(model, "feat", np.zeros((2, K)), x[0])
    with pytest.raises(ValueError, match="concept_names must be a list of 5 names"):
        concept_maps(model, "feat", v, x[0], concept_names=["a"])
    with pytest.raises(ValueError, match=r"image must be a torch.Tensor \(C, H, W\)"):
        concept_maps(model, "feat", v, x[:1])
    with pytest.raises(ValueError, match="inputs must hold at least one example"):
        concept_class_relevance(model, "feat", v, x[:0])
    with pytest.raises(TypeError, match="vectors must have a floating-point dtype"):
        concept_maps(model, "feat", np.ones((2, K), dtype=np.int64), x[0])
    with pytest.raises(RuntimeError, match="no concept vectors"):
        from interp_engine.methods.concept_vectors import ConceptVectors
        concept_maps(model, "feat", ConceptVectors(model, "feat"), x[0])
    assert _hooks(model) == 0


def test_lazy_exports():
    for name in ("concept_class_relevance", "linear_head_relevance", "concept_maps",
                 "concept_contributions", "plot_local", "RelevanceResult", "LocalContributions"):
        assert getattr(interp_engine, name) is getattr(interp_engine.methods, name)
        assert name in interp_engine.__all__


def test_plot_without_matplotlib(monkeypatch, tmp_path, setup):
    import sys

    w, _, v, _ = setup
    res = linear_head_relevance(w, v)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="plotting needs matplotlib.*pip install matplotlib"):
        res.plot_heatmap(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
