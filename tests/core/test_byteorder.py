"""Byte order at the boundary: every kernel entry point gives exactly the
native result for little- and big-endian inputs of every dtype.

The core reads raw buffers in native byte order; one helper of
``interp_engine.engine.checks`` (``native``) converts every array the
package hands to it, so a non-native array is read by value, never with its
bytes swapped.  Each test below feeds the same values as '<' and as '>'
arrays (one of the two is non-native on any machine) and compares with the
native result exactly.
"""
import numpy as np
import pytest
import scipy.sparse as sp

import interp_engine as ie
from interp_engine.engine import rank
from interp_engine.engine.checks import native
from interp_engine.methods.invert import Invert

FLOATS = ["f2", "f4", "f8"]
INTS = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
ORDERS = ["<", ">"]


def as_order(a, order):
    """``a`` with the same values, stored in byte order ``order``."""
    a = np.asarray(a)
    out = a.astype(a.dtype.newbyteorder(order))
    assert np.array_equal(out, a, equal_nan=a.dtype.kind == "f")
    return out


def test_native_helper_every_dtype():
    for code in FLOATS + INTS + ["?"]:
        base = (np.arange(12) % 2 == 1) if code == "?" else np.arange(12).astype(code)
        for order in ORDERS:
            x = as_order(base, order)
            y = native(x)
            assert y.dtype.isnative and y.dtype.kind == x.dtype.kind and y.dtype.itemsize == x.dtype.itemsize
            np.testing.assert_array_equal(y, base)
            if x.dtype.isnative:
                assert np.shares_memory(y, x)  # no copy when nothing is needed
                assert y.dtype is np.dtype(x.dtype.char)  # numpy's own dtype object
    # misaligned buffers and strides that are not multiples of the item size are copied
    buf = np.zeros(8 * 5 + 1, np.uint8)[1:]
    mis = buf.view(np.float64)
    assert not mis.flags.aligned
    fixed = native(mis)
    assert fixed.flags.aligned and np.array_equal(fixed, mis)
    # non-contiguous native views stay views
    v = np.arange(20.0)[::-2]
    assert native(v) is v


# ---------------------------------------------------------------------------- quantiles


def _quantile_summary(cq):
    q = np.linspace(0, 1, 21)
    return cq.quantile(q), cq.count, cq.min, cq.max, cq.nan_count


@pytest.mark.parametrize("code", FLOATS)
@pytest.mark.parametrize("order", ORDERS)
def test_channel_quantiles_update(code, order):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 3, 5, 4)) * 30).astype(code)
    x[0, 1, 0, 0] = np.inf
    ref = ie.ChannelQuantiles(3, k=64, seed=5).update(x)
    got = ie.ChannelQuantiles(3, k=64, seed=5).update(as_order(x, order))
    for a, b in zip(_quantile_summary(ref), _quantile_summary(got)):
        np.testing.assert_array_equal(a, b)
    # channel_axis and strided (transposed) views of a non-native array
    got2 = ie.ChannelQuantiles(3, k=64, seed=5).update(as_order(x, order).transpose(0, 2, 3, 1), channel_axis=-1)
    for a, b in zip(_quantile_summary(ref), _quantile_summary(got2)):
        np.testing.assert_array_equal(a, b)
    # NaN skipped, not invented by swapped bytes
    y = x.copy()
    y[1, 2, 1, 1] = np.nan
    ref_n = ie.ChannelQuantiles(3, k=64, nan="skip").update(y)
    got_n = ie.ChannelQuantiles(3, k=64, nan="skip").update(as_order(y, order))
    np.testing.assert_array_equal(ref_n.nan_count, got_n.nan_count)
    np.testing.assert_array_equal(ref_n.quantile([0.1, 0.5, 0.9]), got_n.quantile([0.1, 0.5, 0.9]))


@pytest.mark.parametrize("code", FLOATS)
@pytest.mark.parametrize("order", ORDERS)
def test_exact_quantile_pass_and_queries(code, order):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((300, 2)) * 10).astype(code)
    cq = ie.ChannelQuantiles(2, k=64, seed=0).update(x)
    q = np.array([0.0, 0.25, 0.5, 0.99, 1.0])
    ref = cq.exact_pass(q).update(x).result()
    got = cq.exact_pass(as_order(q, order)).update(as_order(x, order)).result()
    np.testing.assert_array_equal(ref, got)
    values = x[:4].T.astype(np.float64)
    np.testing.assert_array_equal(cq.rank(values), cq.rank(as_order(values.astype(code), order)))
    np.testing.assert_array_equal(cq.quantile(q), cq.quantile(as_order(q, order)))


# ---------------------------------------------------------------------------- IoU


def _iou_inputs(seed=3):
    rng = np.random.default_rng(seed)
    B, K, h, w, sh, sw, NL = 3, 4, 3, 5, 6, 10, 9
    label_category = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    acts = rng.standard_normal((B, K, h, w)) * 4
    thr = np.array([0.5, -1.0, 2.0, 0.0])
    pl = rng.integers(0, NL, (B, 2, sh, sw))
    il = rng.integers(0, NL, (B, 3))
    ic = rng.random((B, 3)) < 0.7
    return label_category, acts, thr, pl, il, ic, (sh, sw)


def _tally(label_category, out, rule="annotated"):
    return ie.IoUTally(4, 9, label_category, 3, output_size=out, unit_rule=rule)


def _counts(t):
    return t.intersection, t.label_pixels, t.unit_pixels, t.images


@pytest.mark.parametrize("code", FLOATS)
@pytest.mark.parametrize("order", ORDERS)
def test_iou_activations_and_thresholds(code, order):
    cat, acts, thr, pl, il, ic, out = _iou_inputs()
    a = acts.astype(code)
    for rule in ("annotated", "lite"):
        ref = _tally(cat, out, rule)
        ref.update(a, thr, pl, il)
        got = _tally(cat, out, rule)
        got.update(as_order(a, order), as_order(thr.astype(code), order), pl, il)
        for x, y in zip(_counts(ref), _counts(got)):
            np.testing.assert_array_equal(x, y)
    # NaN: found in the right image and unit, not invented by swapped bytes
    bad = a.copy()
    bad[1, 2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"activations must not contain NaN \(image 1, unit 2\)"):
        _tally(cat, out).update(as_order(bad, order), thr, pl)


@pytest.mark.parametrize("code", INTS)
@pytest.mark.parametrize("order", ORDERS)
def test_iou_label_arrays(code, order):
    cat, acts, thr, pl, il, ic, out = _iou_inputs()
    ref = _tally(cat, out)
    ref.update(acts, thr, pl.astype(code), il.astype(code), ic.astype(code))
    got = _tally(as_order(cat.astype(code), order), out)
    got.update(acts, thr, as_order(pl.astype(code), order), as_order(il.astype(code), order),
               as_order(ic.astype(code), order))
    for x, y in zip(_counts(ref), _counts(got)):
        np.testing.assert_array_equal(x, y)
    # without image_categories (derived from the labels) and with bool categories
    ref2, got2 = _tally(cat, out), _tally(cat, out)
    ref2.update(acts, thr, pl.astype(code), il.astype(code))
    got2.update(acts, thr, as_order(pl.astype(code), order), as_order(il.astype(code), order))
    for x, y in zip(_counts(ref2), _counts(got2)):
        np.testing.assert_array_equal(x, y)
    # the same counts as int64 labels
    ref3 = _tally(cat, out)
    ref3.update(acts, thr, pl, il, ic)
    for x, y in zip(_counts(ref3), _counts(got)):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- rank / INVERT


def _rank_inputs(code, seed=4):
    rng = np.random.default_rng(seed)
    acts = np.round(rng.standard_normal((40, 3)) * 3, 1).astype(code)  # ties
    labels = rng.random((40, 4)) < 0.4
    return acts, labels


@pytest.mark.parametrize("code", FLOATS)
@pytest.mark.parametrize("order", ORDERS)
def test_rank_functions(code, order):
    acts, labels = _rank_inputs(code)
    a = as_order(acts, order)
    np.testing.assert_array_equal(rank.midranks(acts), rank.midranks(a))
    np.testing.assert_array_equal(rank.auc(acts, labels), rank.auc(a, labels))
    for x, y in zip(rank.mannwhitney_pvalues(acts, labels), rank.mannwhitney_pvalues(a, labels)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("code", INTS)
@pytest.mark.parametrize("order", ORDERS)
def test_rank_label_dtypes(code, order):
    acts, labels = _rank_inputs("f4")
    ref = rank.auc(acts, labels)
    np.testing.assert_array_equal(ref, rank.auc(acts, as_order(labels.astype(code), order)))


def _explanations(res):
    return [(n.neuron, [(e.formula, e.auc, e.p_value, e.n_inside) for e in n.top]) for n in res]


@pytest.mark.parametrize("code", FLOATS)
@pytest.mark.parametrize("order", ORDERS)
def test_invert_explain(code, order):
    acts, labels = _rank_inputs(code)
    inv = Invert(length=2, beam=3)
    ref = _explanations(inv.explain(acts, labels, top=None))
    assert ref[0][1]  # something was found
    assert _explanations(inv.explain(as_order(acts, order), labels, top=None)) == ref
    assert _explanations(inv.explain(as_order(acts, order), as_order(labels.astype("u2"), order),
                                     top=None)) == ref


# ---------------------------------------------------------------------------- cover / bits


def _cover_inputs(seed=5):
    rng = np.random.default_rng(seed)
    dense = rng.random((12, 70)) < 0.15
    weights = rng.integers(0, 9, 70)
    return dense, weights


@pytest.mark.parametrize("code", FLOATS + INTS)
@pytest.mark.parametrize("order", ORDERS)
def test_greedy_cover_weights(code, order):
    dense, w = _cover_inputs()
    wc = w.astype(code)
    if code.startswith("f"):
        wc = wc + np.asarray(0.25, code)  # non-integer weights take the float path
    ref = ie.greedy_cover(dense, weights=wc)
    got = ie.greedy_cover(dense, weights=as_order(wc, order))
    np.testing.assert_array_equal(ref.indices, got.indices)
    np.testing.assert_array_equal(ref.gains, got.gains)
    assert ref.covered == got.covered


@pytest.mark.parametrize("code", ["?"] + INTS)
@pytest.mark.parametrize("order", ORDERS)
def test_cover_sets_and_bits(code, order):
    dense, w = _cover_inputs()
    d = as_order(dense.astype(code), order)
    ref = ie.greedy_cover(dense, weights=w)
    for sets in (d, ie.pack_bits(d), ie.PackedBits.from_dense(d)):
        got = ie.greedy_cover(sets, weights=w)
        np.testing.assert_array_equal(ref.indices, got.indices)
        np.testing.assert_array_equal(ref.gains, got.gains)
    pb = ie.pack_bits(dense)
    assert ie.pack_bits(d) == pb
    np.testing.assert_array_equal(pb.to_dense(), dense)
    rref = ie.ratio_greedy_cover(dense[:, :30], dense[:, 30:], target=10)
    rgot = ie.ratio_greedy_cover(d[:, :30], d[:, 30:], target=10)
    np.testing.assert_array_equal(rref.indices, rgot.indices)
    assert rref[1:] == rgot[1:]


@pytest.mark.parametrize("order", ORDERS)
def test_packed_words_and_sparse_arrays(order):
    dense, w = _cover_inputs()
    pb = ie.pack_bits(dense)
    for code in ("u8", "i8"):
        words = as_order(pb.words.view(code), order)
        again = ie.PackedBits(words, pb.n_bits)
        assert again == pb
        ref = ie.greedy_cover(pb, weights=w)
        got = ie.greedy_cover(again, weights=w)
        np.testing.assert_array_equal(ref.indices, got.indices)
    ref = ie.greedy_cover(dense, weights=w)
    for fmt in ("csr", "csc", "coo"):
        m = sp.csr_matrix(dense).asformat(fmt)
        m.data = as_order(m.data.astype("f8"), order)
        if fmt == "coo":
            m.row, m.col = as_order(m.row, order), as_order(m.col, order)
        else:
            m.indices, m.indptr = as_order(m.indices, order), as_order(m.indptr, order)
        got = ie.greedy_cover(m, weights=as_order(w, order))
        np.testing.assert_array_equal(ref.indices, got.indices)
        np.testing.assert_array_equal(ref.gains, got.gains)


@pytest.mark.parametrize("code", INTS)
@pytest.mark.parametrize("order", ORDERS)
def test_integer_thresholds_and_rank_values(code, order):
    cat, acts, thr, pl, il, ic, out = _iou_inputs()
    t_int = np.array([0, 1, 2, 3]).astype(code)
    ref = _tally(cat, out)
    ref.update(acts, t_int.astype(np.float64), pl, il)
    got = _tally(cat, out)
    got.update(acts, as_order(t_int, order), pl, il)
    for x, y in zip(_counts(ref), _counts(got)):
        np.testing.assert_array_equal(x, y)
    cq = ie.ChannelQuantiles(2, k=64).update(np.arange(40.0).reshape(20, 2))
    values = np.array([[1, 5, 30], [0, 7, 100]]).astype(code)
    np.testing.assert_array_equal(cq.rank(values.astype(np.float64)), cq.rank(as_order(values, order)))


@pytest.mark.parametrize("order", ORDERS)
def test_states_with_non_native_arrays(order):
    """A state dict whose arrays were stored in the other byte order (an npz
    written on another machine) rebuilds the same accumulator."""
    cq = ie.ChannelQuantiles(2, k=64, seed=3).update(np.random.default_rng(0).standard_normal((500, 2)))
    st = {k: (as_order(v, order) if isinstance(v, np.ndarray) and v.dtype.itemsize > 1 else v)
          for k, v in cq.state_dict().items()}
    back = ie.ChannelQuantiles.from_state_dict(st)
    for a, b in zip(_quantile_summary(cq), _quantile_summary(back)):
        np.testing.assert_array_equal(a, b)
    cat, acts, thr, pl, il, ic, out = _iou_inputs()
    t = _tally(cat, out)
    t.update(acts, thr, pl, il, ic)
    st = {k: (as_order(v, order) if isinstance(v, np.ndarray) and v.dtype.itemsize > 1 else v)
          for k, v in t.state_dict().items()}
    back = ie.IoUTally.from_state_dict(st)
    for x, y in zip(_counts(t), _counts(back)):
        np.testing.assert_array_equal(x, y)
