"""INVERT's protocol: the method class (settings checked in the constructor,
explain on a model or on arrays), engine.rank.beam_search (the public face of
the core's search), InvertResult on the Result base (table, to_csv, one-line
repr, save/load with a checked schema), the report's invert.csv, and the
deprecated aliases (from_model, to_records)."""
import csv
import json
import math
import zipfile

import numpy as np
import pytest

from interp_engine import PackedBits, _core
from interp_engine.engine.rank import beam_search
from interp_engine.methods._result import MAX_REPR, Result
from interp_engine.methods.invert import Invert, InvertResult

from _npzedit import rewrite_npz


def data(seed=0, n=300, k=5, c=9):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < rng.uniform(0.05, 0.5, c)
    acts = rng.standard_normal((n, k)) + 1.5 * labels[:, :k] - 1.0 * labels[:, 1:k + 1]
    acts[:, -1] = 2.0                      # a constant neuron: no explanation
    return acts, labels


def rows_text(res):
    """The table with NaN as a string, comparable with ==."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in res.table()]


# ----------------------------------------------------------------------------- the method
def test_constructor_checks_its_settings():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    for kw, exc, msg in [({"pooling": "median"}, ValueError, "pooling must be 'mean' or 'max'"),
                         ({"pooling": 1}, TypeError, "pooling must be 'mean' or 'max'"),
                         ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
                         ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
                         ({"device": "nope"}, ValueError, "device must be a device torch knows"),
                         ({"length": 0}, ValueError, "length must be >= 1")]:
        with pytest.raises(exc, match=msg):
            Invert(model, "0", **kw)
    with pytest.raises(ValueError, match="layer is required with a model"):
        Invert(model)
    with pytest.raises(ValueError, match="layer='0' needs a model"):
        Invert(layer="0")
    with pytest.raises(TypeError, match="layer must be a module name"):
        Invert(model, 5)
    with pytest.raises(ValueError, match="'nope' is not a submodule"):
        Invert(model, "nope")
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module \(the settings are keyword-only"):
        Invert(3)
    with pytest.raises(TypeError):
        Invert(None, None, 3)                  # settings are keyword-only
    assert repr(Invert(model, "0", length=2)).startswith("Invert(layer='0', length=2,")


def test_model_path_equals_the_array_path():
    torch = pytest.importorskip("torch")
    acts, labels = data(1, k=4)
    x = torch.tensor(acts, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(4, 2)).eval()
    inv = Invert(model, "0", length=2, beam=4, batch_size=64)
    res = inv.explain(torch.utils.data.TensorDataset(x), labels, list("abcdefghi"), top=None)
    ref = Invert(length=2, beam=4).explain(x.numpy(), labels, list("abcdefghi"), top=None)
    assert [r.top for r in res] == [r.top for r in ref] and res.params == ref.params
    np.testing.assert_array_equal(res.activations, x.numpy())
    np.testing.assert_array_equal(res.labels, labels)
    assert ref.labels is None
    # per-call search parameters keep the model
    one = inv.explain(torch.utils.data.TensorDataset(x), labels, length=1)
    assert one.params["length"] == 1 and all(r.length <= 1 for r in one) and inv.length == 2


def test_beam_search_is_the_cores_search():
    acts, labels = data(2)
    pb = PackedBits.from_dense(labels.T)
    out = beam_search(acts, labels, length=2, beam=3, max_fraction=0.6, neurons=[3, 0], pvalue_method="asymptotic")
    index = _core.RankConceptIndex(pb.words, pb.n_bits, 0)
    ref = _core._rank_beam_search(acts, index, 2, 3, 0.0, 0.6, False, True, [3, 0], 0, "asymptotic")
    assert sorted(out) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)
    neg = beam_search(acts, pb, length=1, beam=2, negative=True)
    assert neg["status"].shape == (acts.shape[1],) and neg["auc"][0, 0] <= 0.5
    for kw, exc, msg in [({"length": 0}, ValueError, "length must be >= 1"),
                         ({"beam": 1.5}, TypeError, "beam must be an integer"),
                         ({"min_fraction": 0.7, "max_fraction": 0.6}, ValueError, "min_fraction must be <="),
                         ({"max_fraction": math.nan}, ValueError, r"max_fraction must be in \[0, 1\]"),
                         ({"negative": "yes"}, TypeError, "negative must be a bool"),
                         ({"pvalue_method": "scipy"}, ValueError, "pvalue_method must be"),
                         ({"neurons": [5]}, ValueError, r"neurons: index 5 out of range \[0, 5\)")]:
        with pytest.raises(exc, match=msg):
            beam_search(acts, labels, **kw)
    with pytest.raises(ValueError, match="expected 300 rows"):
        beam_search(acts, labels[:10])


def test_the_method_calls_no_private_name_of_the_core():
    import inspect
    import re

    import interp_engine.methods.invert as pkg
    from interp_engine.methods.invert import collect, method, result

    for mod in (pkg, method, result, collect):
        src = inspect.getsource(mod)
        assert not re.search(r"(?<!\w)_(core|loader)\b", src), mod.__name__


# ----------------------------------------------------------------------------- the result
def test_result_protocol_table_csv_repr(tmp_path):
    acts, labels = data(3)
    res = Invert(length=2, beam=4).explain(acts, labels, top=3)
    assert isinstance(res, Result)
    rows = res.table()
    assert [r["neuron"] for r in rows] == list(range(5))
    assert list(rows[0]) == ["neuron", "formula", "length", "auc", "differentiability", "concept_fraction",
                             "p_value", "note"]
    assert rows[4]["note"] == "constant activations" and rows[4]["formula"] == "" and math.isnan(rows[4]["auc"])
    res.to_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as f:
        got = list(csv.DictReader(f))
    assert [g["formula"] for g in got] == [r["formula"] for r in rows]
    assert float(got[0]["auc"]) == rows[0]["auc"] and got[4]["auc"] == ""   # exact floats, NaN empty
    text = repr(res)
    assert text == "InvertResult(5 neurons, 4 explained, 9 concepts, length=2, beam=4, mode='positive')"
    assert "\n" not in text and len(text) <= MAX_REPR
    empty = InvertResult([], ["a"], {})
    empty.to_csv(tmp_path / "e.csv")                 # a header even without rows
    assert (tmp_path / "e.csv").read_text().startswith("neuron,formula,length,auc")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_save_load_round_trip(tmp_path, dtype):
    acts, labels = data(4)
    res = Invert(length=3, beam=5, mode="negative", pvalue_method="asymptotic").explain(
        acts.astype(dtype), labels, [f"concept {i}" for i in range(9)], neurons=[4, 2, 0, 2], top=None)
    res.labels = labels
    p = res.save(tmp_path / "r.npz")
    back = InvertResult.load(p)
    assert rows_text(back) == rows_text(res)
    assert [r.top for r in back] == [r.top for r in res]
    assert [(r.neuron, r.note, r.evaluations) for r in back] == [(r.neuron, r.note, r.evaluations) for r in res]
    assert back.concept_names == res.concept_names and back.params == res.params
    assert back.activations.dtype == dtype
    np.testing.assert_array_equal(back.activations, res.activations)
    np.testing.assert_array_equal(back.labels, labels)
    assert (back.num_samples, back.num_neurons) == (300, 5)
    assert repr(back) == repr(res)
    # without the data
    res.save(tmp_path / "s.npz", data=False)
    small = InvertResult.load(tmp_path / "s.npz")
    assert small.activations is None and small.labels is None and rows_text(small) == rows_text(res)
    # the report of a loaded result is the report of the result
    from interp_engine.report import write_invert_report

    for r, d in ((res, "a"), (back, "b")):
        write_invert_report(r, tmp_path / d)
    for name in ("invert.csv", "index.html"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_save_without_any_explanation(tmp_path):
    acts = np.ones((10, 2))
    res = Invert().explain(acts, np.eye(10, dtype=bool)[:, :3])
    back = InvertResult.load(res.save(tmp_path / "c.npz"))
    assert [r.note for r in back] == ["constant activations"] * 2 and rows_text(back) == rows_text(res)




def test_damaged_files_are_refused_naming_the_field(tmp_path):
    acts, labels = data(5)
    res = Invert(length=3, beam=4).explain(acts, labels, top=3)
    res.labels = labels
    good = res.save(tmp_path / "good.npz")
    InvertResult.load(good)

    def put(name, index, value):
        def change(a, h):
            a[name] = a[name].copy()
            a[name][index] = value
        return change

    def header(key, value):
        def change(a, h):
            if value is KeyError:
                del h[key]
            else:
                h[key] = value
        return change

    def drop(name):
        return lambda a, h: a.pop(name)

    def retype(name, dtype):
        def change(a, h):
            a[name] = a[name].astype(dtype)
        return change

    cases = [
        ("codes", put("codes", (0, 0, 0), 18)),                    # 2C = 18: no such concept
        ("codes", put("codes", (0, 0, 0), -1)),                    # an atom missing
        ("ops", put("ops", (0, 0, 0), 1)),                         # an operator before the first atom
        ("ops", put("ops", (0, 0, 1), 2)),
        ("lengths", put("lengths", (0, 0), 0)),                    # a kept formula without atoms
        ("count", put("count", 0, 9)),                             # more than T formulas
        ("count", put("status", 0, 1)),                            # constant neuron with formulas
        ("status", put("status", 0, 3)),
        ("n1", put("n1", (0, 0), 300)),                            # all N samples inside
        ("auc", put("auc", (0, 0), 1.5)),
        ("auc", put("auc", (0, 0), np.nan)),                       # a kept formula without AUC
        ("pvalue", put("pvalue", (0, 0), -0.1)),
        ("neurons", put("neurons", 1, 5)),                         # K = 5
        ("evaluations", put("evaluations", 0, -1)),
        ("activations", put("activations", (3, 1), np.nan)),
        ("activations", drop("activations")),
        ("labels", retype("labels", np.float64)),
        ("codes", retype("codes", np.float64)),
        ("lengths", lambda a, h: a.__setitem__("lengths", a["lengths"][:, :2])),
        ("codes", header("concept_names", ["a"])),                # C = 1: the codes are out of range
        ("concept_names", header("concept_names", [])),
        ("params.mode", header("params", dict(h_params(good), mode="both"))),
        ("params", header("params", KeyError)),
        ("num_samples", header("num_samples", 0)),
        ("activations", header("activations", "float16")),
        ("bogus", lambda a, h: a.__setitem__("bogus", np.zeros(1))),
        ("version", header("version", 2)),
    ]
    for i, (field, change) in enumerate(cases):
        bad = rewrite_npz(good, tmp_path / f"bad{i}.npz", change)
        with pytest.raises(ValueError, match=field.replace(".", r"\.")) as exc:
            InvertResult.load(bad)
        assert str(bad) in str(exc.value), (field, str(exc.value))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        InvertResult.load(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "trunc.npz", "w") as z:
        z.writestr("codes.npy", b"\x93NUMPY")
    with pytest.raises(ValueError, match="trunc.npz"):
        InvertResult.load(tmp_path / "trunc.npz")
    with pytest.raises(ValueError, match="params"):
        InvertResult(res.neurons, res.concept_names, {"length": 3}, num_samples=300).save(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="num_samples is unknown"):
        InvertResult(res.neurons, res.concept_names, res.params).save(tmp_path / "y.npz")


def h_params(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["header"]))["params"]


def test_report_csv_is_the_tables_csv(tmp_path):
    """invert.csv is written by the one CSV writer: the rows of the explained neurons
    are what the page's own DictWriter wrote before, the NaN cells of neurons
    without a formula are empty (they were "nan")."""
    from interp_engine.report import write_invert_report

    acts, labels = data(6)
    res = Invert(length=2, beam=3).explain(acts, labels)
    write_invert_report(res, tmp_path / "rep")
    res.to_csv(tmp_path / "t.csv")
    text = (tmp_path / "rep" / "invert.csv").read_text()
    assert text == (tmp_path / "t.csv").read_text()
    with open(tmp_path / "old.csv", "w", newline="") as f:  # the page's writer before
        fields = ["neuron", "formula", "length", "auc", "differentiability", "concept_fraction", "p_value", "note"]
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in res.table():
            w.writerow({k: r[k] for k in fields})
    old = (tmp_path / "old.csv").read_text().splitlines()
    new = text.splitlines()
    assert old[:5] == new[:5]                               # header + the 4 explained neurons
    assert old[5] == "4,,0,nan,nan,nan,nan,constant activations" and new[5] == "4,,0,,,,,constant activations"


# ----------------------------------------------------------------------------- deprecated aliases
def test_from_model_alias_warns_and_gives_the_same_result():
    torch = pytest.importorskip("torch")
    acts, labels = data(7, k=4)
    x = torch.tensor(acts, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Identity()).eval()
    ds = torch.utils.data.TensorDataset(x)
    with pytest.warns(DeprecationWarning, match=r"Invert.from_model is deprecated; use Invert\(model, layer"):
        old = Invert.from_model(model, "0", ds, labels=labels, concept_names=list("abcdefghi"), batch_size=7,
                                length=2, beam=3, top=2, neurons=[1, 0])
    new = Invert(model, "0", batch_size=7, length=2, beam=3).explain(ds, labels, list("abcdefghi"), top=2,
                                                                     neurons=[1, 0])
    assert [r.top for r in old] == [r.top for r in new] and old.params == new.params
    np.testing.assert_array_equal(old.activations, new.activations)
    np.testing.assert_array_equal(old.labels, new.labels)


def test_to_records_alias_warns_and_gives_the_table():
    acts, labels = data(8)
    res = Invert(length=1).explain(acts, labels)
    with pytest.warns(DeprecationWarning, match="InvertResult.to_records is deprecated; use InvertResult.table"):
        rec = res.to_records()
    assert [{k: str(v) for k, v in r.items()} for r in rec] == [{k: str(v) for k, v in r.items()}
                                                               for r in res.table()]
