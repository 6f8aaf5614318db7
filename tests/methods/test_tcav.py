"""TCAV (interp_engine.methods.tcav): known-answer synthetic model, equality
with captum's sign-count scores on the same CAVs, persistence, bad input."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")
from torch import nn  # noqa: E402

import interp_engine  # noqa: E402
from interp_engine.methods.tcav import (TCAV, Classifier, MeanDifferenceClassifier,  # noqa: E402
                                        train_cav)

D = 12


class Synth(nn.Module):
    """h = tanh(Q x) at the layer ``feat``; logit_1 = h_0 + 0.3 sum_{i>0} h_i^2,
    logit_0 = -logit_1.  Class 1 grows along the concept direction u = e_0
    only: the even terms make the gradient vary in sign from input to input
    along every other direction, without favouring any of them."""

    def __init__(self, q):
        super().__init__()
        self.feat = nn.Linear(D, D, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(q)

    def forward(self, x):
        h = torch.tanh(self.feat(x))
        logit = h[:, 0] + 0.3 * (h[:, 1:] ** 2).sum(1)
        return torch.stack([-logit, logit], 1)


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    u = torch.zeros(D)
    u[0] = 1.0
    model = Synth(q).eval()

    def inputs_with_features(f):  # x with Q x = f
        return f @ q  # (Q^T)^{-1} = Q for an orthogonal Q: Q (Q^T f) = f

    def rand(n):
        return inputs_with_features(0.5 * torch.randn(n, D, generator=g))

    concept = inputs_with_features(0.5 * torch.randn(40, D, generator=g) + 1.5 * u)
    return model, u, rand, concept


@pytest.mark.parametrize("classifier", ["sgd", "mean_difference"])
def test_known_concept_is_significant_random_ones_are_not(classifier):
    model, u, rand, concept = _setup()
    tcav = TCAV(model, "feat", classifier=classifier, num_random=10, seed=0)
    # noise concepts and the random reference drawn alike, larger than the
    # counterparts: each CAV sees a fresh equal-size subset (see docs)
    tcav.fit({"signal": concept, "noise_a": rand(400), "noise_b": rand(400)},
                  [rand(400)] + [rand(40) for _ in range(10)])
    # the signal CAVs point along u
    for j in range(1, 11):
        assert float(tcav.cavs[("signal", f"random_{j}")].vector @ u.double().numpy()) > 0.5
    inputs = rand(50)
    res = tcav.explain(inputs, target_class=1)
    assert res["signal"].score > 0.9 and res["signal"].significant
    assert res["signal"].p_corrected < 0.05
    assert res["signal"].accuracy > 0.8
    for name in ("noise_a", "noise_b"):
        assert not res[name].significant, str(res)
        assert 0.0 < res[name].p_value <= 1.0
    # the opposite class: the concept lowers its logit everywhere
    res0 = tcav.explain(inputs, target_class=0)
    assert res0["signal"].score < 0.1 and res0["signal"].significant
    # Bonferroni over the 3 concepts tested
    for r in res.rows:
        assert r.p_corrected == pytest.approx(min(1.0, 3 * r.p_value))
    # scores are sign counts against each counterpart: recompute by hand
    sens = tcav.sensitivities(inputs, 1)
    for r in res.rows:
        want = [np.mean(sens[(r.concept, f"random_{j}")] > 0) for j in range(1, 11)]
        np.testing.assert_array_equal(r.scores, want)
    from scipy.stats import ttest_ind
    for r in res.rows:  # the paper's test: concept-vs-random against random-vs-random scores
        np.testing.assert_array_equal(r.random_scores, res.rows[0].random_scores)
        with warnings.catch_warnings():  # scipy warns on a nearly constant sample
            warnings.simplefilter("ignore")
            want = ttest_ind(r.scores, r.random_scores).pvalue
        assert r.p_value == pytest.approx(want, rel=1e-12)
    table = res.table()
    assert [row["concept"] for row in table] == ["noise_a", "noise_b", "signal"]
    assert "signal" in str(res)


def test_significance_over_seeds():
    # FastCAV keeps this cheap; the signal is significant for every seed, the
    # noise concepts (drawn like the random reference) rarely (1 of 20 measured)
    false_pos = 0
    for seed in range(10):
        model, u, rand, concept = _setup(seed)
        t = TCAV(model, "feat", classifier="mean_difference", num_random=10, seed=seed)
        t.fit({"signal": concept, "noise_a": rand(400), "noise_b": rand(400)},
                   [rand(400)] + [rand(40) for _ in range(10)])
        res = t.explain(rand(50), 1)
        assert res["signal"].significant and res["signal"].score > 0.9, str(res)
        false_pos += res["noise_a"].significant + res["noise_b"].significant
    assert false_pos <= 2


def test_deterministic_from_seed_and_model_unchanged():
    model, u, rand, concept = _setup()
    sets = [rand(20) for _ in range(4)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = TCAV(model, "feat", num_random=3, seed=5).fit({"c": concept}, sets)
    b = TCAV(model, "feat", num_random=3, seed=5).fit({"c": concept}, sets)
    c = TCAV(model, "feat", num_random=3, seed=6).fit({"c": concept}, sets)
    for k in a.cavs:
        np.testing.assert_array_equal(a.cavs[k].vector, b.cavs[k].vector)
        assert np.linalg.norm(a.cavs[k].vector) == pytest.approx(1.0)
    assert any(not np.array_equal(a.cavs[k].vector, c.cavs[k].vector) for k in a.cavs)
    a.explain(rand(8), 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model.feat._forward_hooks and not model._forward_hooks
    assert not model._forward_pre_hooks


def test_mean_difference_is_normalized_class_mean_difference():
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(30, 5)) + 2.0
    neg = rng.normal(size=(30, 5))
    v, acc = train_cav(pos, neg, MeanDifferenceClassifier(), seed=0)
    # the train part: 20 of each (30 - round(0.33 * 30)); recompute with the same permutations
    r = np.random.default_rng(0)
    p, n = pos[r.permutation(30)], neg[r.permutation(30)]
    w = p[10:].mean(0) - n[10:].mean(0)
    np.testing.assert_allclose(v, w / np.linalg.norm(w), rtol=1e-12)
    assert acc > 0.9


def test_custom_classifier_and_save_load(tmp_path):
    class Fixed(Classifier):
        def fit(self, x, y, *, seed):
            self.w = np.zeros(x.shape[1])
            self.w[0] = 2.0

        def weights(self):
            return self.w

    rng = np.random.default_rng(1)
    acts = {"c": rng.normal(size=(10, 4))}
    rnd = [rng.normal(size=(10, 4)) for _ in range(3)]
    model, *_ = _setup()
    t = TCAV(model, "feat", classifier=Fixed(), num_random=2).fit_activations(acts, rnd)
    for cav in t.cavs.values():
        np.testing.assert_array_equal(cav.vector, [1.0, 0, 0, 0])
    path = tmp_path / "cavs.npz"
    t.save(path)
    t2 = TCAV.load(path, model, "feat", num_random=2)
    assert t2.cavs.keys() == t.cavs.keys() and t2.dim == 4
    for k in t.cavs:
        np.testing.assert_array_equal(t2.cavs[k].vector, t.cavs[k].vector)
        assert t2.cavs[k].accuracy == t.cavs[k].accuracy
    with pytest.raises(ValueError, match="num_random"):
        TCAV.load(path, model, "feat", num_random=3)


def test_cav_files_are_refused_for_another_model_or_layer(tmp_path):
    """The CAV file records the model the CAVs were computed for (its
    fingerprint, taken when they are fitted), the layer and D; loading refuses
    other weights of the same architecture and another layer, naming the
    field, and accepts the same model exactly."""
    import copy
    import json

    from interp_engine._fingerprint import model_fingerprint

    model, _, rand, concept = _setup()
    t = TCAV(model, "feat", classifier="mean_difference", num_random=2).fit({"c": concept}, [rand(20)
                                                                                                   for _ in range(3)])
    assert t.model_key == model_fingerprint(model)
    path = tmp_path / "cavs.npz"
    t.save(path)
    back = TCAV.load(path, model, "feat", num_random=2)
    assert back.cavs.keys() == t.cavs.keys() and back.dim == D and back.model_key == t.model_key
    for k in t.cavs:
        np.testing.assert_array_equal(back.cavs[k].vector, t.cavs[k].vector)
    other, *_ = _setup(seed=1)  # the same class and layers, other weights
    with pytest.raises(ValueError, match=r"cavs\.npz was computed for another model \(field 'header\.model' "
                                         r"differs: the model's parameters and buffers"):
        TCAV.load(path, other, "feat", num_random=2)
    wrapped = nn.Sequential(model)  # the same weights under another name: another layer "0.feat"
    with pytest.raises(ValueError, match=r"cavs\.npz was computed for layer 'feat', not '0\.feat' "
                                         r"\(field 'header\.layer'\)"):
        TCAV.load(path, wrapped, "0.feat", num_random=2)
    # the key is the model's when the CAVs were fitted, not when they are saved
    tuned = copy.deepcopy(model)
    t2 = TCAV(tuned, "feat", classifier="mean_difference", num_random=2).fit({"c": concept}, [rand(20)
                                                                                                     for _ in range(3)])
    with torch.no_grad():
        tuned.feat.weight.mul_(2.0)
    t2.save(tmp_path / "tuned.npz")
    with pytest.raises(ValueError, match="header.model"):
        TCAV.load(tmp_path / "tuned.npz", tuned, "feat", num_random=2)
    TCAV.load(tmp_path / "tuned.npz", model, "feat", num_random=2)
    # knowingly, with check_model=False; the CAVs keep their model when saved again
    used = TCAV.load(path, other, "feat", num_random=2, check_model=False)
    assert used.model_key == t.model_key
    used.save(tmp_path / "again.npz")
    with pytest.raises(ValueError, match="header.model"):
        TCAV.load(tmp_path / "again.npz", other, "feat", num_random=2)
    # a version-1 file (no model recorded): refused unless check_model=False
    with np.load(path, allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    h = json.loads(str(raw.pop("header")))
    del h["model"], h["dim"]
    np.savez(tmp_path / "v1.npz", header=np.array(json.dumps(dict(h, version=1))), **raw)
    with pytest.raises(ValueError, match=r"v1\.npz is a CAV file of version 1.*check_model=False"):
        TCAV.load(tmp_path / "v1.npz", model, "feat", num_random=2)
    old = TCAV.load(tmp_path / "v1.npz", model, "feat", num_random=2, check_model=False)
    assert old.model_key is None and old.cavs.keys() == t.cavs.keys()
    with pytest.raises(ValueError, match="num_random"):  # still checked
        TCAV.load(tmp_path / "v1.npz", model, "feat", num_random=3, check_model=False)
    old.save(tmp_path / "v1_again.npz")
    with pytest.raises(ValueError, match=r"field 'header\.model' is null"):
        TCAV.load(tmp_path / "v1_again.npz", model, "feat", num_random=2)


def test_features_mean_on_conv_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3)).eval()
    t = TCAV(model, "0", num_random=2, features="mean", classifier="mean_difference")
    sets = [torch.randn(6, 3, 6, 6) for _ in range(3)]
    t.fit({"c": torch.randn(6, 3, 6, 6) + 1}, sets)
    assert t.dim == 4
    x = torch.randn(5, 3, 6, 6)
    # reference: d/dt logit(f + t v at every position) by finite differences in float64
    m64 = model.double()
    f = m64[0](x.double())
    v = torch.from_numpy(t.cavs[("c", "random_1")].vector)
    eps = 1e-6
    rest = m64[1:]
    fd = (rest(f + eps * v[None, :, None, None])[:, 2] - rest(f - eps * v[None, :, None, None])[:, 2]) / (2 * eps)
    model.float()
    s = t.sensitivities(x, 2)[("c", "random_1")]
    np.testing.assert_allclose(s, fd.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_dataset_examples_match_tensor_examples():
    model, u, rand, concept = _setup()
    sets = [rand(8) for _ in range(3)]

    class DS:
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"image": self.x[i], "label": 0}

    a = TCAV(model, "feat", num_random=2, batch_size=3).fit({"c": concept}, sets)
    b = TCAV(model, "feat", num_random=2).fit({"c": DS(concept)}, [DS(s) for s in sets])
    for k in a.cavs:
        # float32 forwards in other batch sizes differ in the last bits
        np.testing.assert_allclose(a.cavs[k].vector, b.cavs[k].vector, atol=1e-5)


def test_bad_input():
    model, u, rand, concept = _setup()
    sets = [rand(6) for _ in range(3)]
    with pytest.raises(ValueError, match="'fet' is not a submodule.*'feat'"):
        TCAV(model, "fet")
    with pytest.raises(ValueError, match="classifier"):
        TCAV(model, "feat", classifier="svm")
    with pytest.raises(ValueError, match="num_random"):
        TCAV(model, "feat", num_random=1)
    t = TCAV(model, "feat", num_random=2)
    with pytest.raises(ValueError, match=r"concept_examples\['c'\] must hold at least one"):
        t.fit({"c": concept[:0]}, sets)
    with pytest.raises(ValueError, match="concept_examples must be a non-empty dict"):
        t.fit({}, sets)
    with pytest.raises(ValueError, match="at least 2 examples"):
        t.fit({"c": concept[:1]}, sets)
    with pytest.raises(ValueError, match="at least num_random \\+ 1 = 3 sets"):
        t.fit({"c": concept}, sets[:2])
    with pytest.raises(ValueError, match="same number of features"):
        t.fit_activations({"c": np.zeros((4, 5)) + 1}, [np.ones((4, 6))] * 3)
    with pytest.raises(TypeError, match="floating-point"):
        t.fit_activations({"c": np.zeros((4, 5), int)}, [np.ones((4, 5))] * 3)
    with pytest.raises(RuntimeError, match="no CAVs"):
        t.explain(rand(3), 1)
    t.fit({"c": concept}, sets)
    with pytest.raises(ValueError, match="target_class must be in \\[0, 2\\)"):
        t.explain(rand(3), 2)
    assert not model.feat._forward_hooks and not model._forward_hooks  # removed after errors
    with pytest.raises(RuntimeError, match="mat1 and mat2|shapes cannot"):
        t.explain(torch.randn(3, D + 1), 1)  # the model itself refuses the input size
    # CAVs from activations of another size than the layer's
    t2 = TCAV(model, "feat", num_random=2).fit_activations(
        {"c": np.random.default_rng(0).normal(size=(4, 5))},
        [np.random.default_rng(i).normal(size=(4, 5)) for i in range(1, 4)])
    with pytest.raises(ValueError, match="features have 12 values per input, the CAVs 5"):
        t2.explain(rand(3), 1)
    with pytest.raises(TypeError, match="inputs must be a tensor"):
        t.explain(42, 1)


def test_lazy_export():
    assert interp_engine.TCAV is TCAV


@pytest.mark.filterwarnings("ignore:Using default classifier for TCAV:UserWarning")
def test_sign_count_equals_captum():
    pytest.importorskip("captum.concept")
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept
    from captum.concept._core.cav import CAV as CaptumCAV

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    ours = TCAV(model, "1", num_random=3, classifier="mean_difference", seed=0)
    ours.fit({"bright": torch.randn(12, 3, 8, 8) + 0.7, "dark": torch.randn(12, 3, 8, 8) - 0.7},
                  [torch.randn(12, 3, 8, 8) for _ in range(4)])
    assert ours.dim == 5 * 8 * 8
    inputs = torch.randn(40, 3, 8, 8)
    keys = list(ours.cavs)

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        theirs = CaptumTCAV(model, ["1"], save_path=tmp)
    sets = []
    for i, (c, r) in enumerate(keys):  # inject our CAVs: rows [v, -v] for classes [concept, random]
        pair = [Concept(2 * i, f"{c}", None), Concept(2 * i + 1, f"{r}", None)]
        v = torch.from_numpy(ours.cavs[(c, r)].vector)
        theirs.cavs[f"{2 * i}-{2 * i + 1}"]["1"] = CaptumCAV(
            pair, "1", {"weights": torch.stack([v, -v]), "classes": [2 * i, 2 * i + 1]})
        sets.append(pair)
    theirs.compute_cavs = lambda experimental_sets, processes=None: theirs.cavs
    n = len(inputs)
    checked = 0
    for target in (0, 2):
        got = theirs.interpret(inputs, sets, target=target)
        res = ours.explain(inputs, target)
        sens = ours.sensitivities(inputs, target)
        for i, (c, r) in enumerate(keys):
            sc = got[f"{2 * i}-{2 * i + 1}"]["1"]["sign_count"]  # float32 fractions
            j = int(r.split("_")[1]) - 1
            ours_count = ours_row_scores(res, c)[j] * n
            assert ours_count == round(ours_count)
            # the same counts of inputs with S > 0 (captum: concept row) and S < 0 (random row)
            assert round(float(sc[0]) * n) == round(ours_count), (c, r, target)
            assert round(float(sc[1]) * n) == int(np.sum(sens[(c, r)] < 0)), (c, r, target)
            checked += 0 < ours_count < n  # not all trivially 0 or 1
    assert checked >= 4


def ours_row_scores(res, concept):
    if concept == "random_0":
        return res.rows[0].random_scores
    return res[concept].scores


def test_real_data_bundled_model(tmp_path):
    """TCAV on the bundled ConceptCNN and a generated concept dataset, where
    the answer is known from how the model was trained: its "red" / "blue"
    colour outputs and its "striped" texture output.  Concept sets: 60 images
    with > 5% of the colour's pixels, or with the texture label (at most 60); 10 random
    sets of 60 images.  The matching concept is significant with a score
    >= 0.9 and the highest among the colours."""
    pytest.importorskip("sklearn")
    from interp_engine.data import BrodenDataset, concept_dataset
    from interp_engine.data.concepts import COLOR_NAMES, TEXTURE_NAMES
    from interp_engine.models import load_default_model
    from interp_engine.models.concept_cnn import OUTPUTS

    ds = BrodenDataset(concept_dataset(tmp_path / "ds", seed=1, num_images=600), transform="unit")
    model = load_default_model().eval()
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    pl = torch.stack([ds[i]["pixel_labels"] for i in range(len(ds))])
    il = torch.stack([torch.as_tensor(ds[i]["image_labels"]) for i in range(len(ds))])
    with torch.no_grad():
        logits = model(x)
    rng = np.random.default_rng(0)
    names = ds.label_names
    colours = ["red", "blue", "green", "yellow"]
    sets = {}
    for c in colours:
        idx = np.flatnonzero((pl == names.index(c)).any(1).float().mean((1, 2)).numpy() > 0.05)
        sets[c] = x[rng.choice(idx, min(60, len(idx)), replace=False)]
    idx = np.flatnonzero((il == names.index("striped")).any(1).numpy())
    sets["striped"] = x[rng.choice(idx, min(60, len(idx)), replace=False)]
    randoms = [x[rng.choice(len(x), 60, replace=False)] for _ in range(11)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's convergence warnings
        tc = TCAV(model, "conv4", num_random=10, classifier="sgd", seed=0).fit(sets, randoms)
    for target in ("red", "blue"):
        k = OUTPUTS["color"].start + COLOR_NAMES.index(target)
        res = tc.explain(x[(logits[:, k] > 0).numpy()][:100], k)
        rows = {r.concept: r for r in res.rows}
        assert rows[target].significant and rows[target].score >= 0.9, str(res)
        assert max(colours, key=lambda c: rows[c].score) == target, str(res)
    k = OUTPUTS["texture"].start + TEXTURE_NAMES.index("striped")
    striped = (logits[:, OUTPUTS["texture"]].argmax(1) == TEXTURE_NAMES.index("striped")).numpy()
    res = tc.explain(x[striped][:100], k)
    row = next(r for r in res.rows if r.concept == "striped")
    assert row.significant and row.score >= 0.9, str(res)


# ----------------------------------------------------------------------------- the protocol

def _fitted(num_random=3, seed=0):
    model, u, rand, concept = _setup()
    t = TCAV(model, "feat", classifier="mean_difference", num_random=num_random, seed=seed)
    return model, rand, t.fit({"signal": concept, "noise": rand(40)}, [rand(40) for _ in range(num_random + 1)])


def test_load_is_a_classmethod_taking_the_files_layer_and_settings(tmp_path):
    """TCAV.load(path, model): the layer, features and num_random come from
    the file unless given; other settings (alpha, ...) are the caller's."""
    model, rand, t = _fitted()
    path = t.save(tmp_path / "cavs.npz")
    assert path == tmp_path / "cavs.npz"
    back = TCAV.load(path, model, alpha=0.01)
    assert (back.layer, back.num_random, back.features, back.alpha) == ("feat", 3, "flatten", 0.01)
    assert back.cavs.keys() == t.cavs.keys() and back.model_key == t.model_key
    x = rand(20)
    assert back.explain(x, 1).table() == TCAV.load(path, model, alpha=0.01, classifier="sgd").explain(x, 1).table()
    with pytest.raises(ValueError, match=r"computed with features='flatten', not 'mean' .*field 'header\.features'"):
        TCAV.load(path, model, features="mean")
    with pytest.raises(ValueError, match=r"cavs\.npz was computed for layer 'feat' \(field 'header\.layer'\), which "
                                         r"this model does not have"):
        TCAV.load(path, nn.Sequential(nn.Linear(D, 2)))
    with pytest.raises(TypeError, match="check_model"):
        TCAV.load(path, model, check_model=1)


def test_deprecated_verbs_warn_and_give_the_same_result(tmp_path):
    model, rand, t = _fitted()
    _, u, rand2, concept = _setup()
    sets = [rand2(40) for _ in range(4)]
    new = TCAV(model, "feat", classifier="mean_difference", num_random=3).fit({"c": concept}, sets)
    with pytest.warns(DeprecationWarning, match=r"TCAV\.fit_cavs is deprecated; use TCAV\.fit$"):
        old = TCAV(model, "feat", classifier="mean_difference", num_random=3).fit_cavs({"c": concept}, sets)
    for k in new.cavs:
        np.testing.assert_array_equal(old.cavs[k].vector, new.cavs[k].vector)
    acts = {"c": np.random.default_rng(0).normal(size=(8, D))}
    rnd = [np.random.default_rng(i).normal(size=(8, D)) for i in range(1, 5)]
    a = TCAV(model, "feat", num_random=3, classifier="mean_difference").fit_activations(acts, rnd)
    with pytest.warns(DeprecationWarning, match=r"TCAV\.fit_cavs_from_activations is deprecated; use "
                                                r"TCAV\.fit_activations$"):
        b = TCAV(model, "feat", num_random=3, classifier="mean_difference").fit_cavs_from_activations(acts, rnd)
    for k in a.cavs:
        np.testing.assert_array_equal(a.cavs[k].vector, b.cavs[k].vector)
    x = rand(10)
    with pytest.warns(DeprecationWarning, match=r"TCAV\.scores is deprecated; use TCAV\.explain$"):
        assert t.scores(x, 1).table() == t.explain(x, 1).table()
    with pytest.warns(DeprecationWarning, match=r"TCAV\.save_cavs is deprecated; use TCAV\.save$"):
        t.save_cavs(tmp_path / "old.npz")
    t.save(tmp_path / "new.npz")
    with np.load(tmp_path / "old.npz") as o, np.load(tmp_path / "new.npz") as n:
        assert o.files == n.files and all(np.array_equal(o[k], n[k]) for k in o.files)
    into = TCAV(model, "feat", num_random=3)
    with pytest.warns(DeprecationWarning, match=r"TCAV\.load_cavs is deprecated; use TCAV\.load\(path, model\)$"):
        assert into.load_cavs(tmp_path / "old.npz") is into
    assert into.cavs.keys() == t.cavs.keys() and into.explain(x, 1).table() == t.explain(x, 1).table()
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="num_random"):
        TCAV(model, "feat", num_random=2).load_cavs(tmp_path / "old.npz")


def test_result_is_a_result(tmp_path):
    """table / to_csv / save / load / repr of the Result base."""
    import csv

    from interp_engine.methods._result import MAX_REPR, Result
    from interp_engine.methods.tcav import TCAVResult

    model, rand, t = _fitted()
    res = t.explain(rand(30), 1)
    assert isinstance(res, Result)
    n = sum(r.significant for r in res.rows)
    assert repr(res) == f"TCAVResult(layer 'feat', class 1, 2 concepts, {n} significant at alpha=0.05, 30 inputs)"
    assert len(repr(res)) <= MAX_REPR
    with open(res.to_csv(tmp_path / "t.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [list(r) for r in rows] == [list(r) for r in res.table()]
    for got, want in zip(rows, res.table()):
        assert got == {k: str(v) for k, v in want.items()}
    back = TCAVResult.load(res.save(tmp_path / "r.npz"))
    assert back.table() == res.table() and str(back) == str(res) and repr(back) == repr(res)
    for a, b in zip(back.rows, res.rows):
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.random_scores, b.random_scores)
    empty = TCAVResult("feat", 1, 0.05, 0, [])
    assert TCAVResult.load(empty.save(tmp_path / "e.npz")).table() == []
    with open(empty.to_csv(tmp_path / "e.csv")) as f:
        assert f.read().strip() == ",".join(TCAVResult._TABLE_KEYS)


@pytest.mark.parametrize("edit,field", [
    (lambda a, h: a.update(score=a["score"] + 2.0), "score"),
    (lambda a, h: a.update(std=np.full_like(a["std"], 0.7)), "std"),
    (lambda a, h: a.update(scores=a["scores"][:, :-1]), "random_scores"),
    (lambda a, h: a.update(significant=~a["significant"]), "significant"),
    (lambda a, h: a.update(p_corrected=a["p_value"] / 2 - 1e-3), "p_corrected"),
    (lambda a, h: a.update(accuracy=a["accuracy"].astype(str)), "accuracy"),
    (lambda a, h: a.pop("p_value"), "p_value"),
    (lambda a, h: h.update(alpha=2.0), "alpha"),
    (lambda a, h: h.update(target_class="1"), "target_class"),
    (lambda a, h: h["concepts"].pop(), "score"),
])
def test_damaged_result_files_are_refused_naming_the_field(tmp_path, edit, field):
    import json
    import re

    from interp_engine.methods.tcav import TCAVResult

    model, rand, t = _fitted()
    res = t.explain(rand(30), 1)
    with np.load(res.save(tmp_path / "r.npz"), allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    h = json.loads(str(raw.pop("header")))
    edit(raw, h)
    np.savez(tmp_path / "bad.npz", header=np.array(json.dumps(h)), **raw)
    with pytest.raises(ValueError) as info:
        TCAVResult.load(tmp_path / "bad.npz")
    msg = str(info.value)
    assert str(tmp_path / "bad.npz") in msg and re.search(rf"'(header\.)?{field}'", msg), msg
