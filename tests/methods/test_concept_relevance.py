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
from interp_engine.methods.concept_relevance import (ConceptRelevance,  # noqa: E402
                                                     LocalContributions, RelevanceResult, plot_local)

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
    res = ConceptRelevance(model, "feat", v, batch_size=7).explain(x)
    assert isinstance(res, RelevanceResult)
    expect = w.double().numpy() @ _unit(v).T * (1 if pool == "mean" else H * W)
    pred = model(x).argmax(1).numpy()
    counts = np.bincount(pred, minlength=C)
    assert res.counts.tolist() == counts.tolist() and counts.sum() == len(x)
    seen = counts > 0
    assert seen.sum() >= 2
    np.testing.assert_allclose(res.relevance[seen], expect[seen], rtol=1e-5, atol=1e-6)
    assert np.all(np.isnan(res.relevance[~seen]))
    lin = ConceptRelevance(model, "feat", v).explain(weight=model.fc.weight)
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
    res = ConceptRelevance(model, "act", v, batch_size=5,
                           concept_names=["a", "b", "c"]).explain(list(x))  # a "dataset"
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
    sub = ConceptRelevance(model, "act", v).explain(x, classes=[3, 0])
    assert sub.classes == [3, 0] and sub.relevance.shape == (2, 3)
    np.testing.assert_array_equal(sub.relevance, res.relevance[[3, 0]])
    np.testing.assert_array_equal(sub.counts, res.counts[[3, 0]])
    # table: top concepts per class, highest first
    k = int(np.flatnonzero(seen)[0])
    row = next(r for r in res.top_table(top=2) if r["class"] == k)
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
    res = ConceptRelevance(model, "feat", cv).explain(x)
    assert res.concepts == cv.concepts
    cv.layer = "fc"
    with pytest.raises(ValueError, match="fitted at layer 'fc', not at layer='feat'"):
        ConceptRelevance(model, "feat", cv).explain(x)


def test_concept_maps_match_einsum_interpolate():
    torch.manual_seed(2)
    model = ConvNet().eval()
    img = torch.randn(3, 13, 11)
    v = np.random.default_rng(3).normal(size=(4, K))
    maps = ConceptRelevance(model, "act", v).concept_maps(img)
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
    res = ConceptRelevance(model, "feat", basis, concept_names=names).explain_image(img, 2)
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
    part = ConceptRelevance(model, "feat", basis[:2]).explain_image(img, 2)
    assert part.residual == pytest.approx(res.total - part.contributions.sum())
    assert part.residual == pytest.approx(float(res.contributions[res.order >= 2].sum()),
                                          abs=1e-5)
    # None -> predicted class
    pred = ConceptRelevance(model, "feat", basis).explain_image(img, None)
    with torch.no_grad():
        assert pred.target_class == int(model(img[None]).argmax())
    assert _hooks(model) == 0


def test_plots_write_png(tmp_path, setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    res = ConceptRelevance(model, "feat", v).explain(x)
    p = tmp_path / "heat.png"
    res.plot_heatmap(p, class_names=["a", "b", "c", "d"])
    assert p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ConceptRelevance(None, None, v).explain(weight=w).plot_heatmap(tmp_path / "lin.png")
    assert (tmp_path / "lin.png").stat().st_size > 1000
    maps = ConceptRelevance(model, "feat", v).concept_maps(x[0])
    con = ConceptRelevance(model, "feat", v).explain_image(x[0], 1)
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
    CR = ConceptRelevance
    with pytest.raises(ValueError, match="'fet' is not a submodule.*'feat'"):
        CR(model, "fet", v).explain(x)
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4") as ei:
        CR(model, "feat", v[:, :4]).explain(x)
    assert ei.value is not None and _hooks(model) == 0  # removed while the traceback lives
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4"):
        CR(model, "feat", v[:, :4]).concept_maps(x[0])
    with pytest.raises(ValueError, match="has 6 channels, the vectors have K=4"):
        CR(model, "feat", v[:, :4]).explain_image(x[0], 0)
    with pytest.raises(ValueError, match=r"weight must be \(num_classes, K\) with K=6"):
        CR(None, None, v).explain(weight=w[:, :4])
    with pytest.raises(ValueError, match=r"target_class must be in \[0, 4\), got 4"):
        CR(model, "feat", v).explain_image(x[0], 4)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 4\)"):
        CR(model, "feat", v).explain(x, classes=[0, 7])
    with pytest.raises(ValueError, match="classes must hold class indices >= 0"):
        CR(model, "feat", v).explain(x, classes=[-1])
    with pytest.raises(TypeError, match="target_class must hold integer"):
        CR(model, "feat", v).explain_image(x[0], 1.5)
    with pytest.raises(ValueError, match="vectors must be 2-dimensional"):
        CR(model, "feat", v[0]).concept_maps(x[0])
    with pytest.raises(ValueError, match="zero rows"):
        CR(model, "feat", np.zeros((2, K))).concept_maps(x[0])
    with pytest.raises(ValueError, match="concept_names must be a list of 5 names"):
        CR(model, "feat", v, concept_names=["a"]).concept_maps(x[0])
    with pytest.raises(ValueError, match=r"image must be a torch.Tensor \(C, H, W\)"):
        CR(model, "feat", v).concept_maps(x[:1])
    with pytest.raises(ValueError, match="inputs must hold at least one example"):
        CR(model, "feat", v).explain(x[:0])
    with pytest.raises(TypeError, match="vectors must have a floating-point dtype"):
        CR(model, "feat", np.ones((2, K), dtype=np.int64)).concept_maps(x[0])
    with pytest.raises(RuntimeError, match="no concept vectors"):
        from interp_engine.methods.concept_vectors import ConceptVectors
        CR(model, "feat", ConceptVectors(model, "feat")).concept_maps(x[0])
    assert _hooks(model) == 0


def test_lazy_exports():
    for name in ("ConceptRelevance", "plot_local", "RelevanceResult", "LocalContributions"):
        assert getattr(interp_engine, name) is getattr(interp_engine.methods, name)
        assert name in interp_engine.__all__
    # the deprecated free functions: reachable from the top, not listed in __all__
    for name in ("concept_class_relevance", "linear_head_relevance", "concept_maps", "concept_contributions"):
        assert getattr(interp_engine, name) is getattr(interp_engine.methods, name)
        assert name not in interp_engine.__all__


def test_plot_without_matplotlib(monkeypatch, tmp_path, setup):
    import sys

    w, _, v, _ = setup
    res = ConceptRelevance(None, None, v).explain(weight=w)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="plotting needs matplotlib.*pip install matplotlib"):
        res.plot_heatmap(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- the method protocol
def test_constructor_and_explain_check_their_arguments(setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ConceptRelevance(model, "feat", v, batch_size=0)
    with pytest.raises(TypeError, match="layer name must be a str"):
        ConceptRelevance(model, None, v)
    with pytest.raises(TypeError, match="layer must be a module name"):
        ConceptRelevance(None, 5, v)
    with pytest.raises(TypeError):
        ConceptRelevance(model, "feat", v, None)     # settings are keyword-only
    cr = ConceptRelevance(model, "feat", v)
    assert repr(cr) == "ConceptRelevance(layer='feat', 5 concepts x 6 channels, batch_size=64)"
    with pytest.raises(ValueError, match="exactly one; got both"):
        cr.explain(x, weight=w)
    with pytest.raises(ValueError, match="exactly one; got neither"):
        cr.explain()
    bare = ConceptRelevance(None, None, v)
    for call in (lambda: bare.explain(x), lambda: bare.concept_maps(x[0]), lambda: bare.explain_image(x[0])):
        with pytest.raises(ValueError, match="needs a model"):
            call()
    with pytest.raises(ValueError, match=r"classes must be in \[0, 4\) \(the weight's rows\)"):
        bare.explain(weight=w, classes=[4])
    with pytest.raises(TypeError, match="maps must be a bool"):
        cr.explain_image(x[0], maps="yes")
    sub = bare.explain(weight=w, classes=[2, 0])
    np.testing.assert_array_equal(sub.relevance, bare.explain(weight=w).relevance[[2, 0]])
    assert sub.classes == [2, 0] and sub.layer == ""
    assert _hooks(model) == 0


def test_explain_image_attaches_the_concept_maps(setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    cr = ConceptRelevance(model, "feat", v)
    con = cr.explain_image(x[3], 1)
    np.testing.assert_array_equal(con.maps, cr.concept_maps(x[3]))
    bare = cr.explain_image(x[3], 1, maps=False)
    assert bare.maps is None
    np.testing.assert_array_equal(bare.contributions, con.contributions)


# ----------------------------------------------------------------------------- the results
def test_relevance_result_table_csv_repr_save_load(tmp_path, setup):
    import csv

    from interp_engine.methods._result import MAX_REPR, Result

    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    res = ConceptRelevance(model, "feat", v, concept_names=list("abcde")).explain(x[:3], classes=[0, 1, 2, 3])
    assert isinstance(res, Result) and 0 in res.counts and res.counts.sum() == 3
    rows = res.table()
    assert len(rows) == 4 * 5 and list(rows[0]) == ["class", "count", "rank", "concept", "relevance"]
    for k in range(4):
        mine = [r for r in rows if r["class"] == k]
        if res.counts[k] == 0:
            assert [r["rank"] for r in mine] == [None] * 5 and all(np.isnan(r["relevance"]) for r in mine)
            assert [r["concept"] for r in mine] == list("abcde")
        else:
            assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]
            assert [(r["concept"], r["relevance"]) for r in mine] == res.top(k, 5)
    res.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        got = list(csv.DictReader(f))
    assert [g["concept"] for g in got] == [r["concept"] for r in rows]
    empty = next(g for g in got if g["count"] == "0")
    assert empty["relevance"] == "" and empty["rank"] == ""
    assert repr(res) == "RelevanceResult(gradient at 'feat': 4 classes x 5 concepts)" and len(repr(res)) <= MAX_REPR
    for r in (res, ConceptRelevance(None, None, v).explain(weight=w)):
        back = RelevanceResult.load(r.save(tmp_path / "r.npz"))
        np.testing.assert_array_equal(back.relevance, r.relevance)
        assert (back.concepts, back.classes, back.layer, back.method) == (r.concepts, r.classes, r.layer, r.method)
        assert (back.counts is None) == (r.counts is None) and repr(back) == repr(r)
        if r.counts is not None:
            np.testing.assert_array_equal(back.counts, r.counts)
        assert [str(x) for x in back.table()] == [str(x) for x in r.table()]


def test_local_contributions_table_csv_repr_save_load(tmp_path, setup):
    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    con = ConceptRelevance(model, "feat", v).explain_image(x[0], 2)
    rows = con.table()
    assert [r["concept"] for r in rows] == con.concepts and [r["vector"] for r in rows] == con.order.tolist()
    assert [r["contribution"] for r in rows] == con.contributions.tolist() and {r["class"] for r in rows} == {2}
    con.to_csv(tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == \
        "class,concept,vector,contribution,derivative,projection"
    assert repr(con).startswith("LocalContributions(class 2: logit ") and "\n" not in repr(con)
    for maps in (True, False):
        back = LocalContributions.load(con.save(tmp_path / f"c{maps}.npz", maps=maps))
        assert back.table() == con.table() and repr(back) == repr(con)
        assert (back.target_class, back.logit, back.total, back.residual) == \
            (con.target_class, con.logit, con.total, con.residual)
        if maps:
            np.testing.assert_array_equal(back.maps, con.maps)
        else:
            assert back.maps is None
    u8 = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    con.plot(u8, tmp_path / "local.png", top=2)
    assert (tmp_path / "local.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="maps: these contributions have no concept maps"):
        back.plot(u8, tmp_path / "none.png")


def test_damaged_result_files_are_refused_naming_the_field(tmp_path, setup):
    import json

    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    cr = ConceptRelevance(model, "feat", v)
    rel = cr.explain(x[:3]).save(tmp_path / "rel.npz")
    loc = cr.explain_image(x[0]).save(tmp_path / "loc.npz")

    def rewrite(src, change, i):
        with np.load(src, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        h = json.loads(str(arrays.pop("header")))
        change(arrays, h)
        dst = tmp_path / f"bad{i}.npz"
        np.savez(dst, header=np.array(json.dumps(h)), **arrays)
        return dst

    def put(name, index, value):
        def change(a, h):
            a[name] = a[name].copy()
            a[name][index] = value
        return change

    def head(key, value):
        return lambda a, h: h.__setitem__(key, value)

    zero = int(np.flatnonzero(np.load(rel)["counts"] == 0)[0])
    cases = [(rel, "relevance", put("relevance", (zero, 0), 1.0)),       # a class never predicted, not NaN
             (rel, "relevance", lambda a, h: a.__setitem__("relevance", a["relevance"][:, :2])),
             (rel, "counts", put("counts", 0, -1)),
             (rel, "counts", lambda a, h: a.pop("counts")),
             (rel, "method", head("method", "both")),
             (rel, "relevance", head("classes", [0, 1])),                  # R = 2, the arrays have 4 rows
             (rel, "classes", head("classes", [])),
             (loc, "order", put("order", 0, 5)),                           # L = 5
             (loc, "order", put("order", 1, int(np.load(loc)["order"][0]))),  # not a permutation
             (loc, "maps", lambda a, h: a.pop("maps")),
             (loc, "maps", lambda a, h: a.__setitem__("maps", a["maps"][:2])),
             (loc, "target_class", head("target_class", -1)),
             (loc, "contributions", head("concepts", ["a"])),             # L = 1, the arrays have 5
             (loc, "concepts", head("concepts", [1, 2, 3, 4, 5])),
             (loc, "contributions", lambda a, h: a.__setitem__("contributions", a["contributions"].astype(np.int64)))]
    for i, (src, field, change) in enumerate(cases):
        bad = rewrite(src, change, i)
        cls = RelevanceResult if src == rel else LocalContributions
        with pytest.raises(ValueError, match=field) as exc:
            cls.load(bad)
        assert str(bad) in str(exc.value), (i, str(exc.value))
    with pytest.raises(ValueError, match="format"):
        LocalContributions.load(rel)                                    # another format


# ----------------------------------------------------------------------------- deprecated aliases
def test_free_functions_warn_and_give_the_same_results(setup):
    from interp_engine.methods.concept_relevance import (concept_class_relevance, concept_contributions,
                                                         concept_maps, linear_head_relevance)

    w, b, v, x = setup
    model = PoolHead(w, b).eval()
    cr = ConceptRelevance(model, "feat", v, batch_size=7, concept_names=list("abcde"))
    with pytest.warns(DeprecationWarning, match=r"concept_class_relevance is deprecated; use ConceptRelevance"):
        old = concept_class_relevance(model, "feat", v, x, classes=[1, 0], batch_size=7,
                                      concept_names=list("abcde"))
    new = cr.explain(x, classes=[1, 0])
    np.testing.assert_array_equal(old.relevance, new.relevance)
    assert (old.classes, old.concepts, old.method, old.layer) == (new.classes, new.concepts, new.method, new.layer)
    np.testing.assert_array_equal(old.counts, new.counts)
    with pytest.warns(DeprecationWarning, match=r"linear_head_relevance is deprecated; use ConceptRelevance"):
        lin = linear_head_relevance(w, v, layer="feat")
    ref = cr.explain(weight=w)
    np.testing.assert_array_equal(lin.relevance, ref.relevance)
    assert lin.layer == "feat" and lin.counts is None and lin.method == "linear_head"
    with pytest.warns(DeprecationWarning, match=r"concept_maps is deprecated; use ConceptRelevance"):
        maps = concept_maps(model, "feat", v, x[0])
    np.testing.assert_array_equal(maps, cr.concept_maps(x[0]))
    with pytest.warns(DeprecationWarning, match=r"concept_contributions is deprecated; use ConceptRelevance"):
        con = concept_contributions(model, "feat", v, x[0], 2, concept_names=list("abcde"))
    ref = cr.explain_image(x[0], 2, maps=False)
    assert con.table() == ref.table() and con.maps is None and (con.total, con.residual) == (ref.total, ref.residual)
    with pytest.warns(DeprecationWarning, match=r"RelevanceResult.table\(top=...\) is deprecated; use "
                                                r"RelevanceResult.top_table"):
        assert str(new.table(top=2)) == str(new.top_table(2))
    assert _hooks(model) == 0


def test_plots_are_drawn_by_the_report_layer():
    import interp_engine.methods.concept_relevance as cr_mod
    import interp_engine.report as report
    from interp_engine.report import relevance_plots

    assert plot_local is relevance_plots.plot_local is report.plot_local is cr_mod.plot_local
    assert interpreter_free_of_matplotlib_in_methods()


def interpreter_free_of_matplotlib_in_methods():
    """No module of methods/concept_relevance/ imports matplotlib (the figures live in report/)."""
    import inspect

    from interp_engine.methods.concept_relevance import deprecated, method, result

    return all("import matplotlib" not in inspect.getsource(m) and "from matplotlib" not in inspect.getsource(m)
               for m in (method, result, deprecated))
