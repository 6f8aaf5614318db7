"""Dissection checkpoints (interp_engine.methods.dissection): resuming inside
every pass, the exact quantile pass included, gives the result of an
uninterrupted run bit for bit; a checkpoint that is damaged, edited or does
not fit the run is refused with one ValueError naming the file and the field."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine.methods.dissection import checkpoint as dmod  # noqa: E402
from interp_engine.methods.dissection import Dissection  # noqa: E402
from test_dissection import MemoryBroden, explain, make_model  # noqa: E402

NAME = "dissection_checkpoint.npz"
# 23 images in batches of 3: 8 batches per pass; thresholds="exact" (the default, stated) runs the exact pass
KW = dict(quantile=0.05, batch_size=3, thresholds="exact", progress=False, top_k=3)
ATTRS = ("thresholds", "iou", "intersection", "label_pixels", "unit_pixels", "top_images", "top_values", "top_maps")


@pytest.fixture(scope="module")
def ds():
    return MemoryBroden()


@pytest.fixture(scope="module")
def full(ds):
    return explain(make_model(), ["2", "4"], ds, rotations=[1], **KW)


class _Stop(Exception):
    pass


def _stopper(where):
    def hook(pass_name, b):
        if (pass_name, b) == where:
            raise _Stop()
    return hook


def _interrupted(ds, ck, where, **kw):
    """Run until batch ``where = (pass, b)`` is added, then stop with an exception."""
    d = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw))
    d._after_batch = _stopper(where)
    with pytest.raises(_Stop):
        d.explain(ds)
    return d


def _same(res, full):
    assert list(res) == list(full)
    for name in full:
        for attr in ATTRS:
            a, b = getattr(res[name], attr), getattr(full[name], attr)
            assert a.dtype == b.dtype and a.shape == b.shape, (name, attr)
            assert np.array_equal(a, b), (name, attr)  # bit for bit (no NaN in these results)


# ----------------------------------------------------------------------------- resume in every pass
@pytest.mark.parametrize("where", [("quantiles", 0), ("quantiles", 4), ("quantiles", 7),
                                   ("exact", 0), ("exact", 3), ("exact", 6), ("exact", 7),
                                   ("iou", 0), ("iou", 5)])
def test_resume_anywhere_gives_the_uninterrupted_result(ds, full, tmp_path, where):
    ck = tmp_path / "ck"
    d = _interrupted(ds, ck, where, checkpoint_every=1000, checkpoint_interval=3600.0)
    pass_name, b = where
    # the interruption saved the progress up to the batch it followed, in that pass
    assert d.last_checkpoint["pass"] == pass_name and d.last_checkpoint["next_batch"] == b + 1
    resumed = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **KW)
    seen = []
    resumed._after_batch = lambda p, i: seen.append((p, i))
    res = resumed.explain(ds)
    # resumed at the next batch of the same pass, never from the pass's start
    assert resumed.resumed["position"][pass_name] == b + 1
    assert seen[0] == ((pass_name, b + 1) if b + 1 < 8 else (dmod.PASSES[dmod.PASSES.index(pass_name) + 1], 0))
    assert not any(p == pass_name and i <= b for p, i in seen)
    _same(res, full)


def test_resume_after_several_interruptions_and_ctrl_c(ds, full, tmp_path):
    """Stopped in every pass of one run, the exact pass twice (once by Ctrl-C),
    with periodic checkpoints: each resume continues, the result is the same."""
    ck = tmp_path / "ck"
    for where in [("quantiles", 2), ("quantiles", 5), ("exact", 1), ("exact", 4), ("iou", 3)]:
        d = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, checkpoint_every=2, **KW)
        if where == ("exact", 4):
            def ctrl_c(p, b):
                if (p, b) == where:
                    raise KeyboardInterrupt
            d._after_batch = ctrl_c
            with pytest.raises(KeyboardInterrupt):
                d.explain(ds)
        else:
            d._after_batch = _stopper(where)
            with pytest.raises(_Stop):
                d.explain(ds)
        assert d.last_checkpoint["pass"] == where[0] and d.last_checkpoint["next_batch"] == where[1] + 1
    res = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, checkpoint_every=2, **KW).explain(ds)
    _same(res, full)


@pytest.mark.parametrize("b", [2, 6])
def test_resume_inside_the_exact_pass_with_the_activation_cache(ds, tmp_path, b):
    kw = dict(activation_cache=True)
    full = explain(make_model(), ["2", "4"], ds, rotations=[1], **dict(KW, **kw))
    ck = tmp_path / "ck"
    _interrupted(ds, ck, ("exact", b), **kw)
    resumed = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw))
    seen = []
    resumed._after_batch = lambda p, i: seen.append((p, i))
    res = resumed.explain(ds)
    assert seen[0] == ("exact", b + 1) and res.timings["forward"] == 0.0  # the cache, not the model
    _same(res, full)


def test_the_checkpoint_inside_the_exact_pass_holds_its_state(ds, tmp_path):
    ck = tmp_path / "ck"
    _interrupted(ds, ck, ("exact", 3))
    with np.load(ck / NAME, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        files = set(z.files)
    assert header["finished"] == ["quantiles"] and header["position"] == {"quantiles": 0, "exact": 4}
    assert sorted(header["exact"]) == ["2", "2@rotation1", "4", "4@rotation1"]
    for k in header["exact"]:
        assert {f"exact.{k}.inside", f"exact.{k}.seen", f"exact.{k}.lower"} <= files
    # (4 batches of 3 images) x (8 x 8 maps of layer 4: 16 x 16 images, one stride-2 conv) values per channel
    assert header["shapes"]["4"] == [5, 8, 8]
    with np.load(ck / NAME, allow_pickle=False) as z:
        assert (z["exact.4.seen"] == 12 * 8 * 8).all()


# ----------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def checkpoints(ds, tmp_path_factory):
    """Pristine checkpoints stopped inside the exact pass and inside the IoU
    pass (between them every kind of field), and an approximate-threshold one."""
    base = tmp_path_factory.mktemp("cks")
    out = {}
    for name, where, kw in (("exact", ("exact", 3), {}), ("iou", ("iou", 2), {}),
                            ("approx", ("iou", 2), dict(thresholds="approx"))):
        ck = base / name
        _interrupted(ds, ck, where, **kw)
        out[name] = ((ck / NAME).read_bytes(), kw)
    return out


def _read(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays.pop("header")))


def _write(path, arrays, header, redigest=True):
    if redigest:  # the checkpoint's own digest made to fit: the field checks must find the edit themselves
        header["digest"] = dmod._checkpoint_digest(header, arrays)
    np.savez(path, header=np.array(json.dumps(header)), **arrays)


def _redigest_exact(header, arrays, k):
    """Give an edited exact pass state the digest of its fields (as an attacker could)."""
    from interp_engine.engine.states import state_digest
    from interp_engine.engine._quantiles_exact import _exact_fields

    st = dict(header["exact"][k])
    st.update({f[len(f"exact.{k}."):]: v for f, v in arrays.items() if f.startswith(f"exact.{k}.")})
    st["q"] = np.asarray(st["q"], np.float64)
    header["exact"][k]["digest"] = state_digest(
        [(f, np.ascontiguousarray(v, np.float64 if v.dtype.kind == "f" else
                                  (np.uint64 if v.dtype.kind == "u" else np.int64)) if isinstance(v, np.ndarray)
          else v) for f, v in _exact_fields(st)])


def _refused(ds, tmp_path, checkpoints, which, edit, *words):
    data, kw = checkpoints[which]
    ck = tmp_path / "ck"
    ck.mkdir(exist_ok=True)
    path = ck / NAME
    path.write_bytes(data)
    if edit is not None:
        edit(path)
    d = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw))
    with pytest.raises(ValueError) as exc:
        d.check_checkpoint(ds)
    msg = str(exc.value)
    assert msg.startswith(f"checkpoint {path}"), msg
    assert "\n" not in msg, msg
    assert any(w in msg for w in ("delete the checkpoint", "remove it", "another checkpoint directory")), msg
    print(msg.replace(str(path), "<path>"))
    for w in words:
        assert w in msg, (w, msg)
    # resuming refuses it the same way, before any batch
    d2 = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw))
    d2._after_batch = lambda p, b: pytest.fail("a refused checkpoint started the work")
    with pytest.raises(ValueError) as exc2:
        d2.explain(ds)
    assert str(exc2.value) == msg
    return msg


def _edit(fn, redigest=True):
    def g(path):
        arrays, header = _read(path)
        fn(arrays, header)
        _write(path, arrays, header, redigest=redigest)
    return g


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _flip_byte(path):
    """One byte of an array's data changed in place (the zip's CRC no longer matches)."""
    data = bytearray(path.read_bytes())
    i = data.index(b"topk.4.maps.npy") + 400
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


RAW = [
    ("empty file", lambda p: p.write_bytes(b""), "not a readable dissection checkpoint"),
    ("truncated", _truncate, "not a readable dissection checkpoint"),
    ("random bytes", lambda p: p.write_bytes(np.random.default_rng(1).bytes(300)), "not a readable"),
    ("a byte flipped", _flip_byte, "field 'topk.4.maps' cannot be read"),
    ("a directory", lambda p: (os.remove(p), os.mkdir(p)), "is not a file"),
    ("one .npy array", lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or
     os.replace(p.with_suffix(".npy"), p), "not an .npz archive"),
    ("an object array", lambda p: np.savez(p, header=np.array([{"a": 1}], dtype=object)), "allow_pickle=False"),
]


@pytest.mark.parametrize("desc,damage,words", RAW, ids=[r[0] for r in RAW])
def test_damaged_file_is_one_value_error_naming_it(ds, tmp_path, checkpoints, desc, damage, words):
    _refused(ds, tmp_path, checkpoints, "iou", damage, words)


def _h(path_, value):
    def f(a, h):
        d = h
        for k in path_[:-1]:
            d = d[k]
        if value is _DEL:
            del d[path_[-1]]
        else:
            d[path_[-1]] = value(d[path_[-1]]) if callable(value) else value
    return f


_DEL = object()


def _a(key, fn):
    def f(a, h):
        if fn is _DEL:
            del a[key]
        else:
            a[key] = fn(a[key])
    return f


def _lower_bracket(a, h):
    a["exact.4.lower"] = a["exact.4.lower"] - 1.0
    _redigest_exact(h, a, "4")


def _seen_plus_one(a, h):
    a["exact.4.seen"] = a["exact.4.seen"] + 1


EDITS = [
    # the header: JSON types, pass names, stage
    ("exact", "format", _h(("format",), "x"), ["format"]),
    ("exact", "version 2", _h(("version",), 2), ["version 3", "version 2"]),
    ("exact", "finished a str", _h(("finished",), "quantiles"), ["header.finished"]),
    ("exact", "finished an unknown pass", _h(("finished",), ["quantiles", "warp"]), ["header.finished[1]", "warp"]),
    ("exact", "finished out of order", _h(("finished",), ["exact"]), ["header.finished", "prefix"]),
    ("iou", "finished repeats a pass", _h(("finished",), ["quantiles", "quantiles"]), ["header.finished"]),
    ("exact", "position of an unknown pass", _h(("position", "warp"), 1), ["header.position.warp"]),
    ("exact", "position negative", _h(("position", "exact"), -5), ["header.position.exact"]),
    ("exact", "position past the batches", _h(("position", "exact"), 9), ["header.position.exact", "8 batches"]),
    ("iou", "position of a done pass", _h(("position", "exact"), 2), ["header.position.exact", "done"]),
    ("exact", "position a float", _h(("position", "exact"), 4.0), ["header.position.exact"]),
    ("exact", "a header key missing", _h(("shapes",), _DEL), ["header", "shapes", "missing"]),
    ("exact", "a header key more", _h(("extra",), 1), ["extra", "not part of this format"]),
    ("exact", "shapes of 2", _h(("shapes", "4"), [4, 4]), ["header.shapes.4"]),
    ("exact", "a layer missing", _h(("sketch", "4"), _DEL), ["header.sketch"]),
    ("exact", "a layer of another run", lambda a, h: h["sketch"].update(conv9=h["sketch"]["4"]),
     ["header.sketch", "'conv9', which is not a layer of this run"]),
    ("exact", "the exact pass missing inside it", _h(("exact",), {}), ["header.exact"]),
    ("iou", "an exact pass after it", None, ["header.exact"]),  # (the edit: _exact_into_iou)
    ("exact", "thresholds before they exist", _h(("thresholds",), ["2", "4", "2@rotation1", "4@rotation1"]),
     ["header.thresholds"]),
    ("iou", "thresholds a layer short", _h(("thresholds",), ["2", "4", "2@rotation1"]), ["header.thresholds"]),
    ("exact", "cache_root without a cache", _h(("cache_root",), "/tmp/x"), ["header.cache_root"]),
    ("exact", "a sketch scalar a string", _h(("sketch", "4", "k"), "25000"), ["header.sketch.4.k"]),
    ("iou", "unit_rule unknown", _h(("tally", "4", "unit_rule"), "best"), ["header.tally.4.unit_rule"]),
    # arrays: presence, dtype, shape, range
    ("exact", "an array missing", _a("sketch.4.items", _DEL), ["sketch.4.items", "missing"]),
    ("exact", "an array more", lambda a, h: a.update(extra=np.zeros(2)), ["'extra'", "not part of"]),
    ("exact", "sketch wide = 2", _a("sketch.4.wide", lambda v: v * 0 + 2), ["sketch.4.wide", "[0, 1]"]),
    ("exact", "sketch count a float", _a("sketch.4.count", lambda v: v.astype(float)), ["sketch.4.count", "int64"]),
    ("exact", "rng_state signed", _a("sketch.4.rng_state", lambda v: v.astype(np.int64)),
     ["sketch.4.rng_state", "uint64"]),
    ("exact", "sketch items NaN", _a("sketch.4.items", lambda v: np.where(np.arange(v.size) == 0, np.nan, v)),
     ["sketch.4.items", "NaN"]),
    ("exact", "top-k values 1-d", _a("topk.4.values", lambda v: v.reshape(-1)), ["topk.4.values", "dimensions"]),
    ("exact", "top-k k changed", _a("topk.4.index", lambda v: v[:, :2]), ["topk.4.index", "T=3"]),
    ("exact", "top-k index past the dataset", _a("topk.4.index", lambda v: v + 1000), ["topk.4.index", "22"]),
    ("exact", "top-k maps of another size", _a("topk.4.maps", lambda v: v[..., :2]), ["topk.4.maps"]),
    ("exact", "exact seen of another shape", _a("exact.4.seen", lambda v: v[:-1]), ["exact.4.seen", "shape"]),
    ("iou", "tally intersection negative", _a("tally.4.intersection", lambda v: v - 1), ["tally.4.intersection"]),
    ("iou", "tally label_category past the categories", _a("tally.4.label_category", lambda v: v + 3),
     ["tally.4.label_category"]),
    ("iou", "thresholds one short", _a("thr.4", lambda v: v[:-1]), ["thr.4", "shape"]),
    ("iou", "thresholds NaN", _a("thr.4", lambda v: np.full_like(v, np.nan)), ["thr.4", "NaN"]),
    # each accumulator through its own loader (its invariants and digest)
    ("exact", "sketch count changed", _a("sketch.4.count", lambda v: v + 7), ["'sketch.4'", "quantile sketch",
                                                                             "count"]),
    ("exact", "exact seen changed", _seen_plus_one, ["'exact.4'", "exact quantile pass"]),
    ("iou", "tally intersection over label_pixels", _a("tally.4.intersection", lambda v: v + 10 ** 6),
     ["'tally.4'", "IoU tally", "intersection"]),
    # against this run and each other
    ("exact", "exact pass of other brackets (own digest fitted)", _lower_bracket, ["exact.4.lower", "planned"]),
    ("exact", "the position moved back", _h(("position", "exact"), 2), ["exact.2.seen", "6 images"]),
    ("iou", "the iou position moved on", _h(("position", "iou"), 5), ["tally.2.images", "15 images"]),
    ("iou", "top-k values not their maps' maximum", _a("topk.4.values", lambda v: np.where(v > -np.inf, v + 1, v)),
     ["topk.4.values", "maximum"]),
    ("iou", "top-k not sorted", _a("topk.4.values", lambda v: v[:, ::-1].copy()), ["topk.4.values"]),
    ("iou", "top-k empty slot before an image", _a("topk.4.index", lambda v: np.where(np.arange(3) == 0, -1, v)),
     ["topk.4."]),
]

# edits every field check accepts, found by the checkpoint's own digest
DIGEST_EDITS = [
    ("iou", "a threshold changed", _a("thr.4", lambda v: v + 1e-3)),
    ("exact", "a top-k map value changed below its maximum",
     _a("topk.4.maps", lambda v: np.where(v == v.max(axis=(2, 3), keepdims=True), v, v - 1))),
    ("exact", "the provenance changed", _h(("provenance",), {"--model": "other"})),
]


def _exact_into_iou(checkpoints):
    """The iou checkpoint with the exact checkpoint's exact-pass states added."""
    import io

    with np.load(io.BytesIO(checkpoints["exact"][0]), allow_pickle=False) as z:
        arrays_e = {k: z[k] for k in z.files if k.startswith("exact.")}
        header_e = json.loads(str(z["header"]))

    def f(a, h):
        a.update(arrays_e)
        h["exact"] = header_e["exact"]
    return f


@pytest.mark.parametrize("which,desc,edit,words", EDITS, ids=[e[1] for e in EDITS])
def test_edited_checkpoint_is_refused_naming_the_field(ds, tmp_path, checkpoints, which, desc, edit, words):
    if edit is None:
        edit = _exact_into_iou(checkpoints)
    _refused(ds, tmp_path, checkpoints, which, _edit(edit), *words)


@pytest.mark.parametrize("which,desc,edit", DIGEST_EDITS, ids=[e[1] for e in DIGEST_EDITS])
def test_other_edits_are_found_by_the_checkpoints_digest(ds, tmp_path, checkpoints, which, desc, edit):
    _refused(ds, tmp_path, checkpoints, which, _edit(edit, redigest=False), "field 'digest'",
             "changed after it was written")
    # the same edit with the digest fitted to it loads: the digest, not another check, refused it
    data, kw = checkpoints[which]
    ck = tmp_path / "fitted"
    ck.mkdir()
    (ck / NAME).write_bytes(data)
    _edit(edit)(ck / NAME)
    Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw)).check_checkpoint(ds)


def test_approximate_thresholds_must_be_the_sketchs(ds, tmp_path, checkpoints):
    _refused(ds, tmp_path, checkpoints, "approx", _edit(_a("thr.4", lambda v: v + 1e-3)), "thr.4",
             "the sketch's quantile")


def test_another_run_is_named_before_the_fields(ds, tmp_path, checkpoints):
    """A checkpoint of other settings is refused for them (not for a shape its
    arrays have under the other settings), even when its arrays are damaged."""
    msg = _refused(ds, tmp_path, checkpoints, "iou", _edit(_h(("key",), "0" * 32)), "other arguments or inputs")
    assert "field" not in msg
    data, _ = checkpoints["iou"]
    ck = tmp_path / "ck2"
    ck.mkdir()
    (ck / NAME).write_bytes(data)
    d = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, top_k=5))
    with pytest.raises(ValueError, match=r"other arguments or inputs \(differing: .*top_k"):
        d.check_checkpoint(ds)


def test_pristine_checkpoints_load(ds, tmp_path, checkpoints):
    for which, (data, kw) in checkpoints.items():
        ck = tmp_path / which
        ck.mkdir()
        (ck / NAME).write_bytes(data)
        d = Dissection(make_model(), ["2", "4"], rotations=[1], checkpoint_dir=ck, **dict(KW, **kw))
        info = d.check_checkpoint(ds)
        assert info["path"] == str(ck / NAME) and info["position"][{"exact": "exact"}.get(which, "iou")] > 0


def test_the_schema_covers_every_field_of_the_states():
    """Every field of each accumulator's state_dict has its place in the
    checkpoint schema (a field added to a state must be added to the file
    format too)."""
    import interp_engine as ie

    sk = ie.ChannelQuantiles(2)
    sk.update(np.arange(8, dtype=np.float32).reshape(2, 2, 2))
    t = ie.IoUTally(2, 3, [0, 0, 1], 2, output_size=(2, 2))
    for kind, st in (("sketch", sk.state_dict()), ("exact", sk.exact_pass(0.5).state_dict()),
                     ("tally", t.state_dict())):
        arrays = {k for k, v in st.items() if isinstance(v, np.ndarray)}
        scalars = set(st) - arrays
        assert arrays == set(dmod._STATE_ARRAYS[kind]("x", "C")), kind
        assert scalars == set(dmod._STATE_SCALARS[kind]), kind
