"""INVERT: rank kernels against numpy/scipy/sklearn, the beam search against a
slow reference that scores every formula by sorting, a real-data test on
scikit-learn digits, the model path (Invert(model, layer).explain), and bad inputs
(results, their files and the deprecated aliases: test_invert_result.py)."""
import math

import _child
import numpy as np
import pytest
from scipy.stats import mannwhitneyu, rankdata
from sklearn.metrics import roc_auc_score

import interp_engine as ie
from interp_engine import PackedBits, _core
from interp_engine.engine.rank import auc, mannwhitney_pvalues, midranks
from interp_engine.methods.invert import Explanation, Invert, format_formula
from _params import NUMPY_FLOATS
from reference import (invert_beam_reference, invert_reference_evaluations, invert_reference_loop,
                       torchmetrics_binary_auroc, u2_by_sorting)


def tied_data(seed, n=240, k=4, c=7, levels=9):
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, levels, (n, k)).astype(np.float64)  # many ties
    prev = rng.uniform(0.03, 0.8, c)
    labels = rng.random((n, c)) < prev
    return acts, labels


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", NUMPY_FLOATS)
def test_midranks_equal_scipy(dtype):
    acts, _ = tied_data(0)
    a = acts.astype(dtype)
    np.testing.assert_array_equal(midranks(a), rankdata(a.astype(np.float64), axis=0))
    # strided view (every other sample, neurons reversed) is read in place
    v = np.asfortranarray(acts)[::2, ::-1]
    np.testing.assert_array_equal(midranks(v), rankdata(v, axis=0))


def test_midranks_torch_and_bfloat16():
    torch = pytest.importorskip("torch")
    acts, _ = tied_data(1)
    t = torch.from_numpy(acts).to(torch.bfloat16)
    ref = rankdata(t.float().numpy(), axis=0)
    np.testing.assert_array_equal(midranks(t), ref)


def test_auc_equals_sklearn_with_ties_and_nan_for_degenerate_concepts():
    acts, labels = tied_data(2)
    labels[:, 0] = False       # no positive
    labels[:, 1] = True        # no negative
    got = auc(acts, labels)
    assert got.shape == (acts.shape[1], labels.shape[1]) and got.dtype == np.float64
    assert np.isnan(got[:, :2]).all()
    for k in range(acts.shape[1]):
        for c in range(2, labels.shape[1]):
            assert abs(got[k, c] - roc_auc_score(labels[:, c], acts[:, k])) <= 1e-12
    # PackedBits (C, N) input gives the same
    np.testing.assert_array_equal(auc(acts, PackedBits.from_dense(labels.T)), got)


def test_pvalues_equal_scipy_asymptotic():
    acts, labels = tied_data(3, n=500)
    acts[:, 3] = np.random.default_rng(0).standard_normal(500)  # a neuron without ties
    labels[:, 0] = False
    a, p = mannwhitney_pvalues(acts, labels, method="asymptotic")
    assert np.isnan(p[:, 0]).all()
    for k in range(acts.shape[1]):
        for c in range(1, labels.shape[1]):
            m = labels[:, c]
            ref = mannwhitneyu(acts[~m, k], acts[m, k], method="asymptotic", use_continuity=True,
                               alternative="two-sided").pvalue
            assert p[k, c] == pytest.approx(ref, rel=1e-9, abs=0)
            assert a[k, c] == pytest.approx(roc_auc_score(m, acts[:, k]), abs=1e-12)
    # strongly separated data: tiny p-values still agree relatively
    x = np.arange(400.0)
    m = x >= 300
    _, p = mannwhitney_pvalues(x[:, None], m[:, None], method="asymptotic")
    assert p[0, 0] == pytest.approx(mannwhitneyu(x[~m], x[m], method="asymptotic").pvalue, rel=1e-9)


def _pvalue_cases(seed, count):
    """(activations (N, 1), labels (N, M)) of small and large sizes, with and without ties,
    groups from 1 sample up."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.choice([2, 5, 9, 12, 17, 30, 60, 150]))
        ties = bool(rng.random() < 0.5)
        x = rng.integers(0, max(2, n // 3), n).astype(np.float64) if ties else rng.standard_normal(n)
        sizes = np.unique(np.clip(np.r_[1, 2, 3, 8, 9, n - 9, n - 8, n - 1, rng.integers(1, n, 3)], 1, n - 1))
        labels = np.zeros((n, len(sizes)), bool)
        for j, s in enumerate(sizes):
            inside = rng.choice(n, int(s), replace=False)
            if rng.random() < 0.3:   # a strongly separated group: tiny p-values
                inside = np.argsort(x)[n - int(s):]
            labels[inside, j] = True
        yield x[:, None], labels


@pytest.mark.parametrize("method", ["auto", "asymptotic", "exact"])
def test_pvalues_equal_scipy_every_method(method):
    # 1e-12 relative: scipy's exact distribution is itself within ~3e-13 of the exact
    # rationals on these sizes, ours within 1e-14 (test_exact_null_distribution_*)
    checked = exact_seen = 0
    for x, labels in _pvalue_cases(5, 60):
        _, p = mannwhitney_pvalues(x, labels, method=method)
        ties = len(np.unique(x)) < len(x)
        for j in range(labels.shape[1]):
            m = labels[:, j]
            ref = mannwhitneyu(x[~m, 0], x[m, 0], method=method).pvalue
            assert p[0, j] == pytest.approx(ref, rel=1e-12, abs=1e-300), (method, len(x), int(m.sum()), ties)
            checked += 1
            exact_seen += method == "auto" and min(m.sum(), (~m).sum()) <= 8 and not ties
    assert checked > 400 and (method != "auto" or exact_seen > 50)


def test_pvalue_auto_is_exact_for_tiny_groups_without_ties():
    # 3 of 200 samples (no ties) at the top: scipy's default is the exact test, whose
    # p-value 2 / C(200, 3) = 1.5e-6 is ~2,000x below the normal approximation's 3.0e-3
    x = np.arange(200.0)[:, None]
    m = np.zeros((200, 1), bool)
    m[-3:] = True
    _, p_auto = mannwhitney_pvalues(x, m)
    _, p_exact = mannwhitney_pvalues(x, m, method="exact")
    _, p_asym = mannwhitney_pvalues(x, m, method="asymptotic")
    assert p_auto[0, 0] == p_exact[0, 0] == pytest.approx(2 / math.comb(200, 3), rel=1e-13)
    assert p_auto[0, 0] == pytest.approx(mannwhitneyu(x[~m], x[m]).pvalue, rel=1e-12)
    assert p_asym[0, 0] / p_exact[0, 0] > 1000
    # one tie anywhere among the N values: auto is asymptotic (as scipy)
    x2 = x.copy()
    x2[0] = x2[1]
    _, p2 = mannwhitney_pvalues(x2, m)
    assert p2[0, 0] == pytest.approx(mannwhitneyu(x2[~m], x2[m], method="asymptotic").pvalue, rel=1e-12)


def test_invert_pvalue_method_as_scipy():
    rng = np.random.default_rng(12)
    acts = rng.standard_normal((60, 2))               # no ties: "auto" is exact for small groups
    labels = rng.random((60, 6)) < 0.3
    labels[:, 0] = False
    labels[np.argsort(acts[:, 0])[-3:], 0] = True     # 3 samples at the top of neuron 0
    acts[:5, 1] = acts[5, 1]                           # neuron 1 has ties: "auto" is asymptotic
    for method in ("auto", "asymptotic", "exact"):
        res = Invert(length=2, beam=5, pvalue_method=method).explain(acts, labels, top=5)
        assert res.params["pvalue_method"] == method
        for k, r in enumerate(res):
            for e in r.top:
                m = e.evaluate(labels)
                ref = mannwhitneyu(acts[~m, k], acts[m, k], method=method).pvalue
                assert e.p_value == pytest.approx(ref, rel=1e-12), (method, k, e.formula)
    best = Invert(length=1).explain(acts[:, :1], labels)[0].best
    assert best.n_inside == 3 and best.p_value == pytest.approx(2 / math.comb(60, 3), rel=1e-13)
    asym = Invert(length=1).explain(acts[:, :1], labels, pvalue_method="asymptotic")[0].best
    assert asym.p_value > 50 * best.p_value


def test_exact_null_distribution_equals_exact_rationals():
    from fractions import Fraction

    def counts(m, n):
        # arrangements of m + n samples with U = u: f(i, j) = f(i, j - 1) + q^j f(i - 1, j)
        prev = [[1] for _ in range(n + 1)]
        for i in range(1, m + 1):
            cur = [[1]]
            for j in range(1, n + 1):
                c = [0] * (i * j + 1)
                for u, v in enumerate(cur[j - 1]):
                    c[u] += v
                for u, v in enumerate(prev[j]):
                    c[u + j] += v
                cur.append(c)
            prev = cur
        return prev[n]

    for m, n in [(1, 1), (1, 30), (2, 7), (3, 4), (5, 5), (8, 40), (9, 12), (12, 25), (40, 8)]:
        cnt = counts(m, n)
        total = math.comb(m + n, m)
        assert sum(cnt) == total
        exact = np.cumsum([Fraction(c, total) for c in cnt])
        got = _core._rank_mwu_null_cdf(m, n, m * n)
        assert got.shape == (m * n + 1,) and got[-1] == 1.0
        np.testing.assert_allclose(got, [float(e) for e in exact], rtol=1e-14, atol=0)


def test_pvalue_method_arguments_and_size_limit():
    acts, labels = tied_data(4, n=60, k=1, c=2)
    with pytest.raises(ValueError, match="method must be 'auto', 'asymptotic' or 'exact'; got 'Exact'"):
        mannwhitney_pvalues(acts, labels, method="Exact")
    with pytest.raises(TypeError, match="method must be one of"):
        mannwhitney_pvalues(acts, labels, method=None)
    with pytest.raises(ValueError, match="pvalue_method must be 'auto'"):
        Invert(pvalue_method="permutation")
    # the exact distribution of two groups of 10,000 around the middle is refused, not computed
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 1))
    m = np.zeros((20_000, 1), bool)
    m[rng.choice(20_000, 10_000, replace=False)] = True
    with pytest.raises(ValueError, match="method='exact'.*groups of 10000 and 10000 samples.*use method='asymptotic'"):
        mannwhitney_pvalues(x, m, method="exact")


def test_pvalue_constant_neuron_is_one():
    acts = np.ones((50, 1))
    labels = np.zeros((50, 1), bool)
    labels[:10] = True
    a, p = mannwhitney_pvalues(acts, labels)
    assert a[0, 0] == 0.5 and p[0, 0] == 1.0


@pytest.mark.parametrize("method", ["index", "bits"])
@pytest.mark.parametrize("n", [1, 64, 129, 300])
def test_formula_sums_equal_numpy(method, n):
    rng = np.random.default_rng(n)
    c = 11
    labels = rng.random((n, c)) < rng.uniform(0, 1, c)    # sparse and dense (complemented) concepts
    x = rng.integers(0, 7, n).astype(float)
    r2 = (2 * rankdata(x)).astype(np.int64)
    phi = rng.random(n) < 0.4
    pb = PackedBits.from_dense(labels.T)
    idx = _core.RankConceptIndex(pb.words, n)
    got = _core._rank_formula_sums(r2, PackedBits.from_dense(phi[None]).words[0], idx, method)
    for name, op in (("and", lambda a, b: a & b), ("or", lambda a, b: a | b),
                     ("andnot", lambda a, b: a & ~b)):
        sets = op(phi[:, None], labels)
        np.testing.assert_array_equal(got[f"{name}_count"], sets.sum(0))
        np.testing.assert_array_equal(got[f"{name}_sum"], (r2[:, None] * sets).sum(0))


# ----------------------------------------------------------------------------- beam search
def _ours_as_reference_tuples(res):
    out = []
    for e in res.top:
        seq = []
        for t, (term, c, neg) in enumerate(zip(e.terms, e.concepts, e.negated)):
            if t:
                seq.append(0 if term[0] == "AND" else 1)
            seq.append(2 * c + int(neg))
        out.append((tuple(seq), e.n_inside))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_beam_search_equals_slow_reference(seed):
    rng = np.random.default_rng(100 + seed)
    acts, labels = tied_data(seed, n=int(rng.integers(60, 200)), k=3, c=int(rng.integers(3, 7)),
                             levels=int(rng.integers(3, 12)))
    labels[:, 0] = labels[:, 1]       # duplicate concept columns: same sets
    length = int(rng.integers(1, 4))
    beam = int(rng.integers(1, 7))
    lo = float(rng.choice([0.0, 0.05, 0.1]))
    hi = float(rng.choice([0.3, 0.5, 0.9]))
    mode = ["positive", "negative"][seed % 2]
    res = Invert(length=length, beam=beam, min_fraction=lo, max_fraction=hi, mode=mode).explain(
        acts, labels, neurons=None, top=None)
    n = acts.shape[0]
    for k, r in enumerate(res):
        ref = invert_beam_reference(acts[:, k], labels, length, beam, lo, hi, mode)
        assert _ours_as_reference_tuples(r) == [(s, n1) for s, n1, _ in ref], (k, length, beam, lo, hi, mode)
        for e, (_, n1, u2) in zip(r.top, ref):
            assert e.auc == pytest.approx(u2 / (2 * n1 * (n - n1)), abs=1e-15)
            assert e.differentiability == pytest.approx(2 * abs(e.auc - 0.5), abs=1e-15)
            assert e.concept_fraction == n1 / n
            m = e.evaluate(labels)
            assert int(m.sum()) == n1 and u2_by_sorting(acts[:, k], m) == u2
            assert e.auc == pytest.approx(roc_auc_score(m, acts[:, k]), abs=1e-12)
            pref = mannwhitneyu(acts[~m, k], acts[m, k], method="asymptotic").pvalue
            assert e.p_value == pytest.approx(pref, rel=1e-9)


# ----------------------------------------------------------------------------- the reference, side by side
@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """Mean-pooled activations of the bundled ConceptCNN (conv2, conv4) on 400 generated
    images and the 27 concepts present in each image."""
    pytest.importorskip("torch")
    from interp_engine.data import BrodenDataset, concept_dataset
    from interp_engine.models import DEFAULT_TRANSFORM, load_default_model

    root = concept_dataset(tmp_path_factory.mktemp("invert") / "ds", seed=3, num_images=400)
    ds = BrodenDataset(root, transform=DEFAULT_TRANSFORM)
    model = load_default_model()
    res = {layer: Invert(model, layer, length=1, beam=1).explain(ds) for layer in ("conv2", "conv4")}
    return {layer: r.activations for layer, r in res.items()}, res["conv4"].labels


def test_torchmetrics_port_equals_torchmetrics(bundled):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.classification")
    acts, labels = bundled
    rng = np.random.default_rng(0)
    cases = [(torch.from_numpy(acts["conv4"][:, k]), torch.from_numpy(labels[:, q]))
             for k, q in zip(rng.integers(0, 128, 40), rng.integers(0, labels.shape[1], 40))]
    cases.append((torch.tensor([0.1, 0.4, 0.4, 0.9]), torch.tensor([False, True, False, True])))  # in [0, 1]
    cases.append((torch.tensor([30.0, 18.0, -2.0, 1.0]), torch.tensor([1, 0, 0, 1])))          # sigmoid ties
    for a, t in cases:
        got, ref = torchmetrics_binary_auroc(a, t), tm.binary_auroc(a, t)
        assert got.dtype == ref.dtype and float(got) == float(ref)


def test_side_by_side_with_the_reference_loop(bundled):
    """Ours and the reference's own search (lapalap/invert v1.1, tests/reference.py) on
    real activations: the same best formula at lengths 1 and 2; ours never a lower AUC; at
    length 3 they differ only because the reference keeps duplicate sets in its beam (the
    loop with duplicates skipped gives our best formula)."""
    torch = pytest.importorskip("torch")
    acts, labels = bundled
    beam = 4
    differ = duplicates = 0
    for layer, mode, units in [("conv2", "positive", (0, 8, 9)), ("conv4", "negative", (11, 13))]:
        x = acts[layer]
        sign = 1 if mode == "positive" else -1
        for k in units:
            a = torch.from_numpy(x[:, k])
            states = invert_reference_loop(a, labels, 3, beam, mode=mode, memorize_states=True)
            for length in (1, 2, 3):
                ours = Invert(length=length, beam=beam, mode=mode).explain(x[:, k:k + 1], labels)[0].best
                ref = states[str(length)][0]
                ref_mask = ref["mask"].numpy()
                ref_auc = auc(x[:, k:k + 1], ref_mask[:, None])[0, 0]      # exact, as ours
                assert abs(float(ref["metric"]) - ref_auc) < 1e-6          # float32 and sigmoid
                same = np.array_equal(ref_mask, ours.evaluate(labels))
                if length <= 2:
                    assert same, (layer, k, mode, length, ours.formula, str(ref["formula"]))
                assert sign * ours.auc >= sign * ref_auc, (layer, k, mode, length)
                if length == 3 and not same:
                    differ += 1
                    assert sign * ours.auc > sign * ref_auc
                    # without its duplicates, the reference's loop finds our formula
                    dedup = invert_reference_loop(a, labels, 3, beam, mode=mode, skip_duplicates=True)
                    np.testing.assert_array_equal(dedup[0]["mask"].numpy(), ours.evaluate(labels))
            masks = [e["mask"].numpy().tobytes() for e in states["3"]]
            duplicates += len(masks) - len(set(masks))
    assert differ >= 3 and duplicates >= 3   # the units were picked to show the difference
    assert invert_reference_evaluations(27, 3, [beam, beam]) == 27 + 2 * 4 * 27 * beam


def test_top_formulas_sorted_distinct_and_within_fraction():
    acts, labels = tied_data(7, n=300, k=2, c=8)
    res = Invert(length=3, beam=8, min_fraction=0.05, max_fraction=0.4).explain(acts, labels, top=8)
    for r in res:
        aucs = [e.auc for e in r.top]
        assert aucs == sorted(aucs, reverse=True) and len(r.top) == 8
        masks = {e.evaluate(labels).tobytes() for e in r.top}
        assert len(masks) == 8
        assert all(0.05 <= e.concept_fraction <= 0.4 for e in r.top)
        assert r.best is r.top[0] and r.formula == r.top[0].formula


def test_deterministic_across_threads_and_neuron_order():
    acts, labels = tied_data(8, n=400, k=6, c=9, levels=4)
    a = Invert(beam=5, num_threads=1).explain(acts, labels, top=5)
    b = Invert(beam=5, num_threads=2).explain(acts, labels, neurons=[5, 4, 3, 2, 1, 0], top=5)
    assert [r.top for r in a] == [r.top for r in reversed(b.neurons)]


def test_formula_strings_and_structured_form():
    assert format_formula([(None, "red", False)]) == "red"
    assert format_formula([(None, "red", False), ("OR", "blue", False), ("AND", "sky", True)]) == \
        "(red OR blue) AND NOT sky"
    assert format_formula([(None, "a", True), ("AND", "b", False), ("OR", "c", False),
                           ("AND", "d", True)]) == "((NOT a AND b) OR c) AND NOT d"
    # a planted formula is found and its string / terms agree
    rng = np.random.default_rng(0)
    labels = rng.random((2000, 5)) < 0.3
    inside = (labels[:, 1] | labels[:, 3]) & ~labels[:, 0]
    acts = (inside + 0.01 * rng.standard_normal(2000))[:, None]
    r = Invert(length=3, beam=10, max_fraction=0.6).explain(acts, labels, ["sky", "red", "x", "blue", "y"])[0]
    assert r.formula == "(red OR blue) AND NOT sky"
    assert r.terms == ((None, "red", False), ("OR", "blue", False), ("AND", "sky", True))
    assert r.auc == 1.0 and r.differentiability == 1.0 and r.length == 3
    np.testing.assert_array_equal(r.best.evaluate(labels), inside)
    assert r.p_value < 1e-100


def test_negative_mode_finds_inhibiting_concept():
    rng = np.random.default_rng(1)
    labels = rng.random((1000, 4)) < 0.25
    acts = (-2.0 * labels[:, 2] + 0.1 * rng.standard_normal(1000))[:, None]
    r = Invert(length=1, mode="negative").explain(acts, labels, list("abcd"))[0]
    assert r.formula == "c" and r.auc < 0.01
    r = Invert(length=1, mode="positive").explain(acts, labels, list("abcd"))[0]
    assert r.formula == "NOT c" or r.auc < 0.6  # NOT c has fraction 0.75 > max_fraction


# ----------------------------------------------------------------------------- real data
def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_digits_logits_explained_by_their_class():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = _digits()
    clf = LinearDiscriminantAnalysis().fit(X, y)
    logits = clf.decision_function(X)                    # (1797, 10) logit neurons
    labels = y[:, None] == np.arange(10)[None]
    names = [f"digit{d}" for d in range(10)]
    res = Invert(length=3, beam=10).explain(logits, labels, names, top=3)
    for d, r in enumerate(res):
        assert r.formula == f"digit{d}", (d, r.formula)      # the class itself
        assert r.auc > 0.97, (d, r.formula, r.auc)
        assert r.auc == pytest.approx(roc_auc_score(labels[:, d], logits[:, d]), abs=1e-12)
        assert r.p_value < 1e-90
        # the runners-up are unions containing the class
        for e in r.top[1:]:
            assert (d, False) in zip(e.concepts, e.negated) and set(t[0] for t in e.terms[1:]) == {"OR"}


def test_from_model_on_digits_with_a_torch_classifier():
    torch = pytest.importorskip("torch")
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = _digits()
    # a torch classifier with the weights of a linear classifier fitted on the data
    lda = LinearDiscriminantAnalysis().fit(X, y)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(lda.coef_))
        model[0].bias.copy_(torch.tensor(lda.intercept_))
    model.eval()
    xt = torch.tensor(X, dtype=torch.float32)
    yt = torch.tensor(y)
    labels = y[:, None] == np.arange(10)[None]
    ds = torch.utils.data.TensorDataset(xt, yt)
    res = Invert(model, "0", batch_size=256, length=2, beam=5).explain(ds, labels, [str(d) for d in range(10)])
    with torch.no_grad():
        np.testing.assert_allclose(res.activations, model(xt).numpy(), rtol=1e-5, atol=1e-5)
    assert res.labels.shape == (1797, 10)
    for d, r in enumerate(res):
        assert str(d) in [t[1] for t in r.terms if not t[2]], (d, r.formula)
        assert r.auc > 0.97


def test_from_model_broden_labels_present_in_image(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from test_broden import make_broden

    from interp_engine.data import BrodenDataset

    root = tmp_path / "broden"
    make_broden(str(root))
    ds = BrodenDataset(str(root), transform=None)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    res = Invert(model, "0", pooling="max", length=2, beam=3, max_fraction=0.75).explain(ds)
    # expected labels: present anywhere in the maps or among the image-level labels
    exp = np.zeros((len(ds), ds.num_labels), bool)
    for i in range(len(ds)):
        item = ds[i]
        for v in np.concatenate([item["pixel_labels"].numpy().ravel(), item["image_labels"].numpy()]):
            exp[i, v] = True
    np.testing.assert_array_equal(res.labels, exp[:, 1:])
    assert res.concept_names[0] == ds.label_names[1] and len(res.concept_names) == ds.num_labels - 1
    with torch.no_grad():
        ref = torch.stack([model(ds[i]["image"][None]).amax(dim=(2, 3))[0] for i in range(len(ds))])
    np.testing.assert_allclose(res.activations, ref.numpy(), rtol=1e-5, atol=1e-3)
    assert len(res) == 4 and all(r.note in ("", "constant activations") for r in res)
    # a DataLoader over the dataset works the same
    from interp_engine.data import broden_loader

    res2 = Invert(model, "0", pooling="max", length=2, beam=3, max_fraction=0.75).explain(
        broden_loader(ds, batch_size=3))
    assert [r.top for r in res2] == [r.top for r in res]


def test_from_model_stops_after_the_layer(tmp_path):
    """Modules after the layer never run (the forward stops once the layer's output is
    captured, as in dissection), for a torch Dataset and for Broden data."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from test_broden import make_broden

    from interp_engine.data import BrodenDataset

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    calls = {"1": 0, "2": 0, "6": 0}
    for name in calls:
        model[int(name)].register_forward_hook(lambda *a, name=name: calls.__setitem__(name, calls[name] + 1))
    x = torch.randn(10, 3, 8, 8)
    labels = np.random.default_rng(0).random((10, 3)) < 0.4
    res = Invert(model, "1", batch_size=4, length=1).explain(torch.utils.data.TensorDataset(x), labels)
    assert calls == {"1": 3, "2": 0, "6": 0}          # 3 batches reach the layer, nothing after it
    with torch.no_grad():
        np.testing.assert_allclose(res.activations, model[:2](x).mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    root = tmp_path / "broden"
    make_broden(str(root))
    ds = BrodenDataset(str(root), transform=None)
    calls.update({"1": 0, "2": 0, "6": 0})
    Invert(model, "1", batch_size=2, length=1, max_fraction=1.0).explain(ds)
    assert calls["1"] > 0 and calls["2"] == 0 and calls["6"] == 0


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    acts, labels = tied_data(9, n=100, k=2, c=3)
    inv = Invert()
    with pytest.raises(TypeError, match="labels must .*boolean"):
        inv.explain(acts, labels.astype(float))
    with pytest.raises(ValueError, match="labels must hold only 0/1"):
        inv.explain(acts, labels.astype(int) * 2)
    with pytest.raises(ValueError, match="expected 100 rows"):
        inv.explain(acts, labels[:99])
    with pytest.raises(ValueError, match=r"PackedBits must have one row of N = 100 bits"):
        inv.explain(acts, PackedBits.from_dense(labels))
    bad = acts.copy()
    bad[17, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at sample 17 of neuron 1"):
        inv.explain(bad, labels)
    with pytest.raises(ValueError, match="NaN at sample 17 of neuron 1"):
        auc(bad, labels)
    with pytest.raises(TypeError, match="activations must have a floating-point dtype"):
        inv.explain(acts.astype(int), labels)
    with pytest.raises(ValueError, match="activations must be 2-dimensional"):
        inv.explain(acts[:, 0], labels)
    with pytest.raises(ValueError, match="concept_names must have one name per concept column: expected 3"):
        inv.explain(acts, labels, ["a"])
    with pytest.raises(ValueError, match=r"neurons: index 2 out of range \[0, 2\)"):
        inv.explain(acts, labels, neurons=[2])
    with pytest.raises(ValueError, match="top must be <= beam"):
        inv.explain(acts, labels, top=11)
    for kw, exc, msg in [({"length": 0}, ValueError, "length must be >= 1; got 0"),
                         ({"beam": 0}, ValueError, "beam must be >= 1; got 0"),
                         ({"length": 2.0}, TypeError, "length must be an integer"),
                         ({"min_fraction": -0.1}, ValueError, r"min_fraction must be in \[0, 1\]"),
                         ({"max_fraction": 1.5}, ValueError, r"max_fraction must be in \[0, 1\]"),
                         ({"max_fraction": math.nan}, ValueError, r"max_fraction must be in \[0, 1\]"),
                         ({"min_fraction": 0.6}, ValueError, "min_fraction must be <= max_fraction"),
                         ({"mode": "both"}, ValueError, "mode must be 'positive' or 'negative'"),
                         ({"num_threads": -1}, ValueError, "num_threads must be >= 0")]:
        with pytest.raises(exc, match=msg):
            Invert(**kw)


def test_documented_results_constant_neuron_no_positive_concept_no_admissible():
    acts, labels = tied_data(10, n=100, k=2, c=3)
    acts[:, 1] = 3.0                          # constant neuron
    labels[:, 2] = False                      # a concept without positives: never chosen
    res = Invert(length=2, beam=4).explain(acts, labels, ["a", "b", "empty"], top=4)
    assert res[1].best is None and res[1].note == "constant activations" and res[1].formula is None
    assert math.isnan(res[1].auc) and res[1].top == ()
    assert res[0].note == "" and all(2 not in e.concepts for e in res[0].top)
    # no atom in [0.9, 1.0) of the samples
    labels2 = np.zeros((100, 2), bool)
    labels2[:10, 0] = True
    r = Invert(min_fraction=0.95, max_fraction=1.0).explain(acts[:, :1], labels2)[0]
    assert r.best is None and r.note == "no admissible formula"


def test_records_and_lazy_torch_free_import():
    acts, labels = tied_data(11, n=80, k=2, c=3)
    rec = Invert(length=1).explain(acts, labels, list("abc")).table()
    assert [r["neuron"] for r in rec] == [0, 1] and set(rec[0]) >= {"formula", "auc", "p_value"}
    code = ("import sys, interp_engine as ie; assert 'Invert' in ie.__all__; ie.Invert; "
            "import numpy as np; ie.Invert(length=1).explain(np.arange(6.)[:, None], "
            "np.eye(6, dtype=bool)[:, :2]); assert 'torch' not in sys.modules")
    res = _child.run_code(code)
    assert res.returncode == 0, res.stderr
    assert ie.Invert is Invert and isinstance(Invert().explain(acts, labels)[0].best, Explanation)


def test_explain_takes_search_parameters_per_call():
    rng = np.random.default_rng(11)
    acts = rng.standard_normal((300, 4))
    labels = rng.random((300, 12)) < 0.2
    acts[:, 0] += 2.0 * labels[:, 3]
    base = Invert(length=3, beam=10)
    a = base.explain(acts, labels, length=2, beam=4, max_fraction=0.4, top=None)
    b = Invert(length=2, beam=4, max_fraction=0.4).explain(acts, labels, top=None)
    assert [r.formula for r in a] == [r.formula for r in b]
    assert [[t.auc for t in r.top] for r in a] == [[t.auc for t in r.top] for r in b]
    assert a.params == b.params and base.length == 3  # the object is unchanged
    with pytest.raises(ValueError, match="beam"):
        base.explain(acts, labels, beam=0)
