"""TopImages, the running top images of a dissection
(interp_engine.methods.dissection.accumulators): the accumulator protocol
(update / merge / top / state_dict / from_state_dict / pickle, thread-safe)
against a plain numpy reference.  Numpy only: no torch needed."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from interp_engine.methods.dissection import TopImages


def reference(maps: np.ndarray, index: np.ndarray, k: int):
    """Per unit, the k images with the largest map maximum (ties: lower index),
    padded with (-inf, -1, zero maps): sorted by Python over (value, index) pairs."""
    B, K, h, w = maps.shape
    values = maps.reshape(B, K, -1).max(axis=2).astype(np.float64)
    out_v = np.full((K, k), -np.inf)
    out_i = np.full((K, k), -1, np.int64)
    out_m = np.zeros((K, k, h, w), np.float32)
    for u in range(K):
        best = sorted(range(B), key=lambda b: (-values[b, u], index[b]))[:k]
        for j, b in enumerate(best):
            out_v[u, j], out_i[u, j], out_m[u, j] = values[b, u], index[b], maps[b, u]
    return out_v, out_i, out_m


def _data(seed=0, n=40, K=3, h=2, w=3, ties=True):
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((n, K, h, w)).astype(np.float32)
    if ties:  # repeated maxima across images
        maps = np.round(maps, 1)
    return maps, np.arange(n, dtype=np.int64) + 100


def _assert_top(t, ref):
    for got, want in zip(t.top(), ref):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


@pytest.mark.parametrize("k", [0, 1, 5, 60])
@pytest.mark.parametrize("batch", [1, 7, 40])
def test_update_matches_the_reference(k, batch):
    maps, index = _data()
    t = TopImages(3, k, (2, 3))
    for lo in range(0, len(maps), batch):
        t.update(maps[lo:lo + batch], index[lo:lo + batch])
    _assert_top(t, reference(maps, index, k))


def test_merge_equals_one_stream_in_any_split_and_order():
    maps, index = _data(1)
    want = reference(maps, index, 6)
    rng = np.random.default_rng(3)
    for _ in range(5):
        perm = rng.permutation(len(maps))
        parts = np.array_split(perm, 3)
        accs = []
        for p in parts:
            a = TopImages(3, 6, (2, 3))
            a.update(maps[p], index[p])  # out of order within a part too
            accs.append(a)
        accs[2].merge(accs[0]).merge(accs[1])
        _assert_top(accs[2], want)


def test_merge_refuses_what_does_not_fit():
    maps, index = _data()
    a, b = TopImages(3, 4, (2, 3)), TopImages(3, 4, (2, 3))
    a.update(maps[:5], index[:5])
    b.update(maps[3:8], index[3:8])
    with pytest.raises(ValueError, match=r"both hold image 10[34] among the top images of unit \d"):
        a.merge(b)
    with pytest.raises(ValueError, match="with itself"):
        a.merge(a)
    with pytest.raises(ValueError, match=r"other.k must equal k"):
        a.merge(TopImages(3, 2, (2, 3)))
    with pytest.raises(ValueError, match=r"other.map_shape must equal map_shape"):
        a.merge(TopImages(3, 4, (3, 2)))
    with pytest.raises(ValueError, match=r"other.num_units must equal num_units"):
        a.merge(TopImages(2, 4, (2, 3)))
    with pytest.raises(TypeError, match="other must be a TopImages"):
        a.merge(object())
    _assert_top(a, reference(maps[:5], index[:5], 4))  # nothing changed


def test_constructor_and_update_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_units"):
        TopImages(0, 1, (1, 1))
    with pytest.raises(TypeError, match="k must be"):
        TopImages(1, 1.5, (1, 1))
    with pytest.raises(ValueError, match="k must be >= 0"):
        TopImages(1, -1, (1, 1))
    with pytest.raises(TypeError, match="map_shape"):
        TopImages(1, 1, 4)
    with pytest.raises(ValueError, match="map_shape"):
        TopImages(1, 1, (0, 2))
    with pytest.raises(ValueError, match="do not fit in 2\\*\\*63 bytes"):
        TopImages(1 << 31, 1 << 31, (1 << 31, 2))
    t = TopImages(2, 3, (2, 2))
    x = np.zeros((4, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"acts must have shape \(B, 2, 2, 2\)"):
        t.update(np.zeros((4, 3, 2, 2), np.float32), np.arange(4))
    with pytest.raises(ValueError, match="acts must be 4-dimensional"):
        t.update(np.zeros((4, 2, 2), np.float32), np.arange(4))
    with pytest.raises(TypeError, match="acts must have a floating-point dtype"):
        t.update(np.zeros((4, 2, 2, 2), np.int32), np.arange(4))
    with pytest.raises(ValueError, match=r"index must have shape \(4,\)"):
        t.update(x, np.arange(3))
    with pytest.raises(ValueError, match="index must hold dataset indices >= 0"):
        t.update(x, np.array([0, 1, -2, 3]))
    with pytest.raises(TypeError, match="index must have an integer dtype"):
        t.update(x, np.arange(4.0))
    bad = x.copy()
    bad[2, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="acts must not contain NaN"):
        t.update(bad, np.arange(4))
    assert (t.top()[1] == -1).all()  # nothing was added


def test_float16_and_bfloat16_inputs_are_exact():
    torch = pytest.importorskip("torch")
    maps, index = _data(2, ties=False)
    for dt in (torch.float16, torch.bfloat16):
        x = torch.from_numpy(maps).to(dt)
        t = TopImages(3, 4, (2, 3))
        t.update(x, torch.from_numpy(index))
        _assert_top(t, reference(x.float().numpy(), index, 4))


def test_state_dict_and_pickle_round_trip():
    maps, index = _data()
    t = TopImages(3, 5, (2, 3))
    t.update(maps[:17], index[:17])
    st = t.state_dict()
    assert {"format", "version", "num_units", "k", "height", "width", "values", "index", "maps", "digest",
            "field_digests"} == set(st)
    for back in (TopImages.from_state_dict(st), pickle.loads(pickle.dumps(t)), TopImages.from_top(*t.top())):
        _assert_top(back, t.top())
        back.update(maps[17:], index[17:])  # and it goes on as the original would
        _assert_top(back, reference(maps, index, 5))
    assert repr(t) == "TopImages(num_units=3, k=5, map_shape=(2, 3), filled=5 of 5 per unit)"


def _edit(st, key, fn):
    st = dict(st)
    st[key] = fn(st[key])
    st.pop("digest"), st.pop("field_digests")
    return st


def test_from_state_dict_refuses_a_damaged_state_naming_the_field():
    maps, index = _data()
    t = TopImages(3, 5, (2, 3))
    t.update(maps[:3], index[:3])  # 3 of 5 slots filled
    st = t.state_dict()
    cases = [
        (_edit(st, "format", lambda v: "other"), "'format'"),
        (_edit(st, "version", lambda v: 2), "'version'"),
        (_edit(st, "k", lambda v: 4), "'values'.*shape"),
        (_edit(st, "values", lambda v: v[:, :4]), r"'values'.*shape \(3, 5\)"),
        (_edit(st, "maps", lambda v: v.astype(np.int64)), "'maps'.*kind"),
        (_edit(st, "values", lambda v: np.where(np.isfinite(v), np.nan, v)), "'values'\\] must not contain NaN"),
        (_edit(st, "index", lambda v: v - 200), "'index'\\] must hold dataset indices >= 0, or -1"),
        (_edit(st, "index", lambda v: np.roll(v, 1, axis=1)), "'index'\\] has an empty slot"),
        (_edit(st, "index", lambda v: np.where(v == v[:, :1], v[:, 1:2], v)), "'index'\\] holds image"),
        (_edit(st, "values", lambda v: np.where(np.isfinite(v), v, 0.0)), "'values'\\] must be -inf"),
        (_edit(st, "values", lambda v: np.concatenate([v[:, 2::-1], v[:, 3:]], axis=1)), "sorted"),
        (_edit(st, "maps", lambda v: v * 2), "maximum of the unit's map"),
        ({k: v for k, v in st.items() if k != "maps"}, "missing keys \\['maps'\\]"),
        ([1, 2], "must be a dict"),
    ]
    for bad, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            TopImages.from_state_dict(bad)
    # an edit every field check accepts is refused by the digest, naming the field
    with pytest.raises(ValueError, match=r"state_dict\['maps'\].*not what state_dict\(\) wrote"):
        TopImages.from_state_dict(dict(st, maps=np.where(st["maps"] == st["maps"].max(axis=(2, 3), keepdims=True),
                                                         st["maps"], st["maps"] - 1)))
    with pytest.raises(ValueError, match="pickled state of a TopImages must be a dict"):
        TopImages.__new__(TopImages).__setstate__([1])


def test_threads_see_whole_updates():
    """Updates from several threads give the result of one stream (any order:
    the order of the top images does not depend on it), and a state taken
    meanwhile is the state after some number of whole updates (it loads)."""
    maps, index = _data(4, n=400, K=8)
    t = TopImages(8, 10, (2, 3))
    states = []

    def work(part):
        for lo in range(part * 100, part * 100 + 100, 5):
            t.update(maps[lo:lo + 5], index[lo:lo + 5])
            if lo % 25 == 0:
                states.append(t.state_dict())

    threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    _assert_top(t, reference(maps, index, 10))
    for st in states:
        TopImages.from_state_dict(st)
