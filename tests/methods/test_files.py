"""Result files (issue 14, item 8): every loader checks its file against the
format's schema (interp_engine/_npz.py): each array's dtype, shape against
the header and value range, each header key's JSON type, no field missing or
unknown, no pickles; a damaged file, a truncated zip or a malformed header is a
ValueError naming the file and the field.  Round trips stay exact."""
import json
import re
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from interp_engine._npz import MAX_DEPTH, Array, MapOf, Num, OneOf, check_json, load_npz  # noqa: E402
from interp_engine.methods.concept_vectors import ConceptVectors  # noqa: E402
from interp_engine.methods.dissection import DissectionResult, LayerResult  # noqa: E402
from interp_engine.methods.tcav import TCAV  # noqa: E402


# ----------------------------------------------------------------------------- valid files
def _layer(rng, name, k=5, names=("-", "red", "blue", "sky", "grass", "stripes"), cats=("color", "scene"),
           top=3, h=2, w=3):
    cat = np.array([0, 0, 0, 1, 1, -1], np.int64)[:len(names)]
    lpix = rng.integers(50, 200, len(names)).astype(np.int64)
    upix = rng.integers(200, 400, (k, len(cats))).astype(np.int64)
    inter = np.minimum(rng.integers(0, 50, (k, len(names))), lpix[None, :]).astype(np.int64)
    den = np.maximum(upix[:, np.maximum(cat, 0)] + lpix[None, :] - inter, 1)
    return LayerResult(layer=name, label_names=list(names), label_category=cat, categories=list(cats),
                       thresholds=rng.standard_normal(k), iou=inter / den, intersection=inter,
                       label_pixels=lpix, unit_pixels=upix,
                       top_images=np.array([[4, 1, -1]] * k, np.int64)[:, :top],
                       top_values=np.array([[2.0, 1.0, -np.inf]] * k)[:, :top],
                       top_maps=rng.standard_normal((k, top, h, w)).astype(np.float32))


@pytest.fixture
def dissection_file(tmp_path):
    rng = np.random.default_rng(0)
    res = DissectionResult({"conv1": _layer(rng, "conv1"), "conv2@rotation0": _layer(rng, "conv2", k=4)},
                           config={"quantile": 0.005, "nested": {"a": [1, 2]}}, timings={"forward": 1.5})
    return res, res.save(tmp_path / "result.npz")


def _tcav(num_random=2):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    rng = np.random.default_rng(1)
    acts = {"c": rng.normal(size=(12, 4)) + 1.0, "d": rng.normal(size=(12, 4)) - 1.0}
    rnd = [rng.normal(size=(12, 4)) for _ in range(num_random + 1)]
    t = TCAV(model, "0", classifier="mean_difference", num_random=num_random, features="mean")
    return model, t.fit_activations(acts, rnd)


@pytest.fixture
def cav_file(tmp_path):
    model, t = _tcav()
    path = tmp_path / "cavs.npz"
    t.save(path)
    return (model, t), path


def _cv(model):
    cv = ConceptVectors(model, "0")
    rng = np.random.default_rng(2)
    L, K = 3, 4
    v = rng.standard_normal((L, K))
    cv.concepts, cv.categories, cv.labels = ["red", "circle", "sky"], ["color", "shape", "scene"], [1, 5, 9]
    cv.vectors = v / np.linalg.norm(v, axis=1, keepdims=True)
    cv.scales, cv.biases = rng.uniform(0.5, 2, L), rng.standard_normal(L)
    cv.thresholds = rng.standard_normal(K)
    cv.best_units = np.array([2, -1, 0], np.int64)
    cv.train_unit_iou = np.array([0.3, 0.0, 0.1])
    return cv


@pytest.fixture
def cv_file(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    cv = _cv(model)
    path = tmp_path / "vectors.npz"
    cv.save(path)
    return (model, cv), path


def _load_dissection(path, _obj):
    return DissectionResult.load(path)


def _load_cavs(path, obj):
    model, t = obj
    return TCAV.load(path, model, "0", num_random=t.num_random, features="mean")


def _load_cv(path, obj):
    model, _ = obj
    return ConceptVectors.load(path, model, "0")


# ----------------------------------------------------------------------------- round trips
def test_dissection_round_trip_is_exact(dissection_file):
    res, path = dissection_file
    back = DissectionResult.load(path)
    assert list(back) == list(res) and back.config == res.config and back.timings == res.timings
    for name in res:
        a, b = res[name], back[name]
        for attr in LayerResult._ARRAYS:
            x, y = getattr(a, attr), getattr(b, attr)
            assert y.dtype == np.asarray(x).dtype, attr
            np.testing.assert_array_equal(x, y)
        assert (a.layer, a.label_names, a.categories, a.quantile, a.iou_threshold, a.basis) == \
            (b.layer, b.label_names, b.categories, b.quantile, b.iou_threshold, b.basis)
    assert back.table() == res.table()


def test_layer_result_save_and_load(dissection_file, tmp_path):
    """LayerResult.save writes a one-layer dissection file; LayerResult.load
    reads the file's only layer, or the one named (the same schema checks)."""
    res, path = dissection_file
    lr = res["conv1"]
    one = lr.save(tmp_path / "one.npz")
    back = LayerResult.load(one)
    assert back.table() == lr.table() and list(DissectionResult.load(one)) == ["conv1"]
    for attr in LayerResult._ARRAYS:
        np.testing.assert_array_equal(getattr(back, attr), getattr(lr, attr))
    assert LayerResult.load(path, "conv2@rotation0").table() == res["conv2@rotation0"].table()
    with pytest.raises(ValueError, match=r"holds the layers \['conv1', 'conv2@rotation0'\]; pass layer="):
        LayerResult.load(path)
    with pytest.raises(ValueError, match=r"has no layer 'conv3'"):
        LayerResult.load(path, "conv3")
    raw = _raw(one)
    raw["l0.iou"] = raw["l0.iou"] + 2.0
    with pytest.raises(ValueError, match=r"one_bad.npz.*'l0.iou'"):
        LayerResult.load(_write(tmp_path / "one_bad.npz", raw))


def test_cav_and_concept_vector_round_trips_are_exact(cav_file, cv_file):
    (model, t), path = cav_file
    t2 = _load_cavs(path, (model, t))
    assert t2.cavs.keys() == t.cavs.keys() and t2.dim == t.dim
    for key in t.cavs:
        np.testing.assert_array_equal(t2.cavs[key].vector, t.cavs[key].vector)
    (model, cv), path = cv_file
    back = _load_cv(path, (model, cv))
    assert (back.concepts, back.categories, back.labels) == (cv.concepts, cv.categories, cv.labels)
    for k in ("vectors", "scales", "biases", "thresholds", "best_units", "train_unit_iou"):
        np.testing.assert_array_equal(getattr(back, k), getattr(cv, k))
        assert getattr(back, k).dtype == np.asarray(getattr(cv, k)).dtype


def test_big_endian_arrays_load_as_native(dissection_file, tmp_path):
    _, path = dissection_file
    raw = _raw(path)
    for k in list(raw):
        if k != "header" and raw[k].dtype.kind in "fi":
            raw[k] = raw[k].astype(raw[k].dtype.newbyteorder(">"))
    out = _write(tmp_path / "be.npz", raw)
    back = DissectionResult.load(out)
    assert back["conv1"].iou.dtype == np.float64 and back["conv1"].iou.dtype.isnative
    np.testing.assert_array_equal(back["conv1"].iou, DissectionResult.load(path)["conv1"].iou)


# ----------------------------------------------------------------------------- damaged files
def _raw(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, raw):
    np.savez(path, **raw)
    return path


def _header(raw):
    return json.loads(str(raw["header"]))


def _set_header(raw, h):
    raw["header"] = np.array(json.dumps(h))


def _edit_array(key, fn):
    def edit(raw):
        raw[key] = fn(raw[key])
    return edit


def _edit_header(fn):
    def edit(raw):
        h = _header(raw)
        fn(h)
        _set_header(raw, h)
    return edit


def _raw_header(text):
    def edit(raw):
        raw["header"] = np.array(text)
    return edit


def _drop(key):
    def edit(raw):
        del raw[key]
    return edit


def _add(key, value):
    def edit(raw):
        raw[key] = value
    return edit


def _setitem(a, idx, v):
    a = a.copy()
    a[idx] = v
    return a


# (name, edit, field named in the message)
COMMON = [
    ("header is a list", _raw_header("[1, 2]"), "header"),
    ("header is a number", _raw_header("3"), "header"),
    ("header is not JSON", _raw_header("{'format': 1"), "header"),
    ("header deeply nested", _raw_header("[" * 200_000 + "]" * 200_000), "header"),
    ("header is bytes", _add("header", np.frombuffer(b"{}", np.uint8)), "header"),
    ("header missing", _drop("header"), "header"),
    ("version", _edit_header(lambda h: h.update(version=99)), "version"),
    ("version is a bool", _edit_header(lambda h: h.update(version=True)), "version"),
    ("unknown header key", _edit_header(lambda h: h.update(extra=1)), "header.extra"),
    ("unknown array", _add("surprise", np.zeros(3)), "surprise"),
    ("object array", _add("header", np.array([{"a": 1}], dtype=object)), "header"),
]

DISSECTION = COMMON + [
    ("wrong shape", _edit_array("l0.iou", lambda a: a[:, :-1]), "l0.iou"),
    ("wrong shape, second layer", _edit_array("l1.unit_pixels", lambda a: a[:, :1]), "l1.unit_pixels"),
    ("units disagree", _edit_array("l0.top_maps", lambda a: a[:-1]), "l0.top_maps"),
    ("wrong ndim", _edit_array("l0.thresholds", lambda a: a[:, None]), "l0.thresholds"),
    ("float counts", _edit_array("l0.intersection", lambda a: a.astype(np.float64)), "l0.intersection"),
    ("string thresholds", _edit_array("l0.thresholds", lambda a: a.astype(str)), "l0.thresholds"),
    ("negative count", _edit_array("l0.label_pixels", lambda a: _setitem(a, 2, -5)), "l0.label_pixels"),
    ("uint64 count past int64", _edit_array("l0.unit_pixels", lambda a: _setitem(a.astype(np.uint64), (0, 0),
                                                                                    2 ** 63)), "l0.unit_pixels"),
    ("iou above 1", _edit_array("l0.iou", lambda a: _setitem(a, (1, 1), 1.5)), "l0.iou"),
    ("iou NaN", _edit_array("l1.iou", lambda a: _setitem(a, (0, 0), np.nan)), "l1.iou"),
    ("category index past the categories", _edit_array("l0.label_category", lambda a: _setitem(a, 1, 2)),
     "l0.label_category"),
    ("top image below -1", _edit_array("l0.top_images", lambda a: _setitem(a, (0, 0), -2)), "l0.top_images"),
    ("NaN threshold", _edit_array("l0.thresholds", lambda a: _setitem(a, 0, np.nan)), "l0.thresholds"),
    ("intersection above label pixels",
     _edit_array("l0.intersection", lambda a: _setitem(a, (0, 1), 10 ** 6)), "l0.intersection"),
    ("unit pixels below intersection",
     _edit_array("l0.unit_pixels", lambda a: _setitem(a, (0, 0), 0)), "l0.unit_pixels"),
    ("missing array", _drop("l1.top_values"), "l1.top_values"),
    ("layers not a list", _edit_header(lambda h: h.update(layers={"a": 1})), "header.layers"),
    ("layer key missing", _edit_header(lambda h: h["layers"][0].pop("key")), "header.layers[0].key"),
    ("label name not a string", _edit_header(lambda h: h["layers"][1]["label_names"].__setitem__(2, 7)),
     "header.layers[1].label_names[2]"),
    ("more labels than arrays", _edit_header(lambda h: h["layers"][0]["label_names"].append("x")),
     "l0.label_category"),
    ("quantile out of range", _edit_header(lambda h: h["layers"][0].update(quantile=3)),
     "header.layers[0].quantile"),
    ("timings not numbers", _edit_header(lambda h: h["timings"].update(forward="slow")), "header.timings.forward"),
    ("config nested too deep", _edit_header(lambda h: h.update(config=_nested(MAX_DEPTH + 5))), "header.config"),
    ("repeated layer", _edit_header(lambda h: h["layers"][1].update(key="conv1")), "header.layers[1].key"),
]

CAVS = COMMON + [
    ("wrong shape", _edit_array("vectors", lambda a: a[:-1]), "vectors"),
    ("wrong dtype", _edit_array("accuracies", lambda a: (a > 0.5)), "accuracies"),
    ("accuracy above 1", _edit_array("accuracies", lambda a: _setitem(a, 0, 2.0)), "accuracies"),
    ("vector NaN", _edit_array("vectors", lambda a: _setitem(a, (0, 1), np.nan)), "vectors"),
    ("vector inf", _edit_array("vectors", lambda a: _setitem(a, (0, 1), np.inf)), "vectors"),
    ("missing array", _drop("accuracies"), "accuracies"),
    ("counterparts shorter", _edit_header(lambda h: h["counterparts"].pop()), "header.counterparts"),
    ("concepts not strings", _edit_header(lambda h: h.update(concepts=[1] * len(h["concepts"]))),
     "header.concepts[0]"),
    ("features unknown", _edit_header(lambda h: h.update(features="pool")), "header.features"),
    ("num_random a string", _edit_header(lambda h: h.update(num_random="2")), "header.num_random"),
    ("layer missing", _edit_header(lambda h: h.pop("layer")), "header.layer"),
    ("dim not the vectors'", _edit_header(lambda h: h.update(dim=h["dim"] + 1)), "vectors"),
    ("model missing", _edit_header(lambda h: h.pop("model")), "header.model"),
    ("repeated CAV", _edit_header(lambda h: h["counterparts"].__setitem__(1, h["counterparts"][0])
                                  if h["concepts"][1] == h["concepts"][0] else None), "header.concepts"),
]

CONCEPT_VECTORS = COMMON + [
    ("wrong shape", _edit_array("vectors", lambda a: a[:, :-1]), "vectors"),  # K is the header's dim
    ("thresholds of other K", _edit_array("thresholds", lambda a: a[:-1]), "thresholds"),
    ("concepts shorter", _edit_header(lambda h: h["concepts"].pop()), "header.concepts"),
    ("dim not the vectors'", _edit_header(lambda h: h.update(dim=h["dim"] + 1)), "vectors"),
    ("model not an object", _edit_header(lambda h: h.update(model="resnet")), "header.model"),
    ("fewer concepts", _edit_array("scales", lambda a: a[:-1]), "scales"),
    ("wrong dtype", _edit_array("best_units", lambda a: a.astype(np.float64)), "best_units"),
    ("best unit past K", _edit_array("best_units", lambda a: _setitem(a, 0, 4)), "best_units"),
    ("best unit below -1", _edit_array("best_units", lambda a: _setitem(a, 0, -3)), "best_units"),
    ("negative scale", _edit_array("scales", lambda a: _setitem(a, 0, -1.0)), "scales"),
    ("iou above 1", _edit_array("train_unit_iou", lambda a: _setitem(a, 0, 1.2)), "train_unit_iou"),
    ("NaN bias", _edit_array("biases", lambda a: _setitem(a, 0, np.nan)), "biases"),
    ("missing array", _drop("thresholds"), "thresholds"),
    ("labels shorter", _edit_header(lambda h: h["labels"].pop()), "header.labels"),
    ("label negative", _edit_header(lambda h: h["labels"].__setitem__(0, -1)), "header.labels[0]"),
    ("method unknown", _edit_header(lambda h: h.update(method="pca")), "header.method"),
    ("binarize not a bool", _edit_header(lambda h: h.update(binarize=1)), "header.binarize"),
]


def _nested(depth):
    v = 0
    for _ in range(depth):
        v = {"a": v}
    return v


def _check_damaged(path, loader, obj, edit, field, tmp_path):
    raw = _raw(path)
    edit(raw)
    bad = _write(tmp_path / "damaged.npz", raw)
    with pytest.raises(ValueError) as info:
        loader(bad, obj)
    msg = str(info.value)
    assert str(bad) in msg, msg
    assert re.search(r"(?<![\w.])" + re.escape(field) + r"(?!\w)", msg), (field, msg)


@pytest.mark.parametrize("name,edit,field", DISSECTION, ids=[c[0] for c in DISSECTION])
def test_damaged_dissection_result(dissection_file, tmp_path, name, edit, field):
    _, path = dissection_file
    _check_damaged(path, _load_dissection, None, edit, field, tmp_path)


@pytest.mark.parametrize("name,edit,field", CAVS, ids=[c[0] for c in CAVS])
def test_damaged_cav_file(cav_file, tmp_path, name, edit, field):
    obj, path = cav_file
    if name == "repeated CAV":  # make the first two CAVs the same pair
        def edit(raw):
            h = _header(raw)
            h["concepts"][1], h["counterparts"][1] = h["concepts"][0], h["counterparts"][0]
            _set_header(raw, h)
    _check_damaged(path, _load_cavs, obj, edit, field, tmp_path)


@pytest.mark.parametrize("name,edit,field", CONCEPT_VECTORS, ids=[c[0] for c in CONCEPT_VECTORS])
def test_damaged_concept_vector_file(cv_file, tmp_path, name, edit, field):
    obj, path = cv_file
    _check_damaged(path, _load_cv, obj, edit, field, tmp_path)


@pytest.mark.parametrize("fmt", ["dissection", "cavs", "concept_vectors"])
def test_not_a_zip_truncated_empty_or_npy(fmt, dissection_file, cav_file, cv_file, tmp_path):
    path, loader, obj = {"dissection": (dissection_file[1], _load_dissection, None),
                         "cavs": (cav_file[1], _load_cavs, cav_file[0]),
                         "concept_vectors": (cv_file[1], _load_cv, cv_file[0])}[fmt]
    data = path.read_bytes()
    cases = {"not_a_zip.npz": b"not a zip at all",
             "empty.npz": b"",
             "truncated.npz": data[: len(data) // 2],
             "truncated_tail.npz": data[:-30]}
    for fname, content in cases.items():
        p = tmp_path / fname
        p.write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(str(p))):
            loader(p, obj)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        loader(tmp_path / "single.npy", obj)
    # a damaged member (bytes changed, the zip directory intact: a CRC error on reading it)
    raw = _raw(path)
    victim = next(k for k in raw if k != "header")
    stored = _write(tmp_path / "stored.npz", raw)       # np.savez stores members verbatim
    with zipfile.ZipFile(stored) as zf:
        member = zf.read(victim + ".npy")
    blob = stored.read_bytes()
    at = blob.index(member) + len(member) - 8
    p = tmp_path / "crc.npz"
    p.write_bytes(blob[:at] + bytes(b ^ 0xFF for b in blob[at:at + 8]) + blob[at + 8:])
    with pytest.raises(ValueError, match=re.escape(str(p)) + r".*field " + re.escape(repr(victim))):
        loader(p, obj)
    with pytest.raises(FileNotFoundError):
        loader(tmp_path / "missing.npz", obj)


# ----------------------------------------------------------------------------- the helper itself
def test_check_json_specs():
    spec = {"a": str, "b": [Num(int, 0, 3)], "c": (None, float), "d": OneOf(("x", "y")), "e": MapOf(bool),
            "f": dict}
    ok = {"a": "s", "b": [0, 3], "c": None, "d": "y", "e": {"k": True}, "f": {"free": [1]}}
    assert check_json(ok, spec, "f.npz") is ok
    for bad, field in [({**ok, "a": 1}, "h.a"), ({**ok, "b": [4]}, "h.b[0]"), ({**ok, "b": [True]}, "h.b[0]"),
                       ({**ok, "c": "1"}, "h.c"), ({**ok, "d": "z"}, "h.d"), ({**ok, "e": {"k": 1}}, "h.e.k"),
                       ({k: v for k, v in ok.items() if k != "f"}, "h.f"), ({**ok, "g": 1}, "h.g"),
                       ([ok], "h")]:
        with pytest.raises(ValueError, match=re.escape(f"f.npz: field {field!r}")):
            check_json(bad, spec, "f.npz", "h")


def test_load_npz_binds_dimensions_and_bounds(tmp_path):
    from interp_engine._npz import save_npz

    p = save_npz(tmp_path / "x.npz", {"a": np.zeros((2, 3)), "b": np.array([0, 2], np.int32)},
                 {"format": "t", "version": 1, "n": 2})
    schema = {"a": Array("float64", ("n", "k")), "b": Array("int64", ("n",), min=0, max="k", max_offset=-1)}
    h, arrs = load_npz(p, "t", 1, "test file", {"n": int}, lambda h: (schema, {"n": h["n"]}))
    assert arrs["b"].dtype == np.int64 and h["n"] == 2
    with pytest.raises(ValueError, match=r"field 'a' must have shape \(n=3, k\)"):
        load_npz(p, "t", 1, "test file", {"n": int}, lambda h: (schema, {"n": 3}))
    with pytest.raises(ValueError, match=r"field 'b' must hold values in \[-inf, 1\]"):
        load_npz(p, "t", 1, "test file", {"n": int},
                 {"a": Array("float64", ("n", "k")), "b": Array("int64", ("n",), max=1)})
