"""Error wording at the boundary (issue 14, item 17): every user error is a
ValueError or TypeError naming the argument, what was expected and what
arrived; valid spellings of a value (numpy integers, 0-d arrays, tensors)
are accepted.  The fuzz test (test_fuzz.py) draws many more such inputs;
these are the cases the issue names, spelled out."""
import math
import re

import numpy as np
import pytest
import scipy.sparse as sp

import interp_engine as ie
from interp_engine.engine import rank
from interp_engine.engine.checks import check_device, check_int, check_real
from interp_engine.methods.invert import Invert

torch = pytest.importorskip("torch")


def raises(exc, name, fn):
    """fn() raises exc whose message names ``name`` as a word and says what arrived ("got")."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", msg), msg
    assert "incompatible function arguments" not in msg
    return msg


def test_csr_whose_indptr_is_too_short_is_refused():
    m = sp.csr_matrix(np.ones((3, 4), bool))
    m.indptr = m.indptr[:2].copy()  # scipy checks arrays when it builds a matrix, not after
    msg = raises(ValueError, "sets", lambda: ie.greedy_cover(m))
    assert "indptr of length 4" in msg and "got length 2" in msg
    m = sp.csr_matrix(np.ones((3, 4), bool))
    m.indices = m.indices.copy()
    m.indices[0] = 9
    raises(ValueError, "cost_sets", lambda: ie.ratio_greedy_cover(m, np.ones((3, 2), bool), target=1))
    c = sp.coo_matrix(np.ones((3, 4), bool))
    c.row = c.row.copy()
    c.row[0] = -1
    raises(ValueError, "sets", lambda: ie.greedy_cover(c))


@pytest.mark.parametrize("q", ["0.5", ["0.5"], [0.5, "x"], b"0.5", np.array(["0.5"]), True, [True], 0.5 + 0j])
def test_quantile_refuses_strings_and_bools(q):
    cq = ie.ChannelQuantiles(2, k=64).update(np.arange(20.0).reshape(10, 2))
    raises(TypeError, "q", lambda: cq.quantile(q))


def test_quantile_accepts_numeric_spellings():
    cq = ie.ChannelQuantiles(2, k=64).update(np.arange(20.0).reshape(10, 2))
    want = cq.quantile([0.25, 0.5])
    for q in (np.array([0.25, 0.5], ">f8"), torch.tensor([0.25, 0.5], dtype=torch.float64), (0.25, 0.5)):
        np.testing.assert_array_equal(cq.quantile(q), want)
    np.testing.assert_array_equal(cq.quantile(np.array(0.5)), cq.quantile(0.5))


@pytest.mark.parametrize("value", [10 ** 400, -(10 ** 400)])
def test_huge_python_ints_where_floats_are_expected_are_value_errors(value):
    raises(ValueError, "target", lambda: ie.greedy_cover(np.eye(3, dtype=bool), target=value))
    raises(ValueError, "margin", lambda: ie.ChannelQuantiles(1, k=64).update(np.zeros((3, 1))).exact_pass(0.5, margin=value))
    raises(ValueError, "min_fraction", lambda: Invert(min_fraction=value))
    raises(ValueError, "eps_cost", lambda: ie.ratio_greedy_cover(np.eye(2, dtype=bool), np.eye(2, dtype=bool), target=1,
                                                                 eps_cost=value))


@pytest.mark.parametrize("value", [2 ** 63, 2 ** 64, 10 ** 30])
def test_ints_beyond_int64_are_value_errors(value):
    raises(ValueError, "num_channels", lambda: ie.ChannelQuantiles(value))
    raises(ValueError, "budget", lambda: ie.greedy_cover(np.eye(2, dtype=bool), budget=value))
    raises(ValueError, "output_size[1]", lambda: ie.IoUTally(1, 1, [0], 1, output_size=(2, value)))
    raises(ValueError, "num_threads", lambda: ie.set_num_threads(value))
    raises(ValueError, "length", lambda: Invert(length=value))


@pytest.mark.parametrize("value,exc", [(True, TypeError), (2.0, TypeError), ("2", TypeError), (np.float64(2), TypeError),
                                       ([2], TypeError), (np.array([2]), TypeError), (-1, ValueError), (math.nan, TypeError)])
def test_bad_integers_name_the_argument(value, exc):
    raises(exc, "num_threads", lambda: ie.set_num_threads(value))
    raises(exc, "k", lambda: ie.ChannelQuantiles(2, k=value))
    raises(exc, "beam", lambda: Invert(beam=value))
    raises(exc, "n_bits", lambda: ie.PackedBits(np.zeros((1, 1), np.uint64), value))


def test_integer_spellings_are_accepted():
    for v in (np.int64(3), np.int32(3), np.uint8(3), np.array(3), torch.tensor(3)):
        assert check_int(v, "x") == 3
        assert ie.ChannelQuantiles(v, k=64).num_channels == 3
        assert Invert(length=v).length == 3
    for v in (np.float32(0.25), np.array(0.25), torch.tensor(0.25, dtype=torch.float64)):
        assert check_real(v, "x") == 0.25
    ie.set_num_threads(np.int64(1))
    try:
        assert ie.get_num_threads() == 1
    finally:
        ie.set_num_threads(0)


@pytest.mark.parametrize("make,exc", [
    (lambda: torch.empty(4, 2, device="meta"), ValueError),
    (lambda: torch.zeros(4, 2).to_sparse(), TypeError),
    (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(2)], layout=torch.jagged), TypeError),
    (lambda: torch.zeros(4, 2, dtype=torch.complex64), TypeError),
    (lambda: torch.zeros(4, 2).to(torch.float8_e4m3fn), TypeError),
    (lambda: np.array([[1.0, None]], dtype=object), TypeError),
    (lambda: np.zeros((4, 2), np.complex128), TypeError),
    (lambda: np.ma.masked_array(np.zeros((4, 2)), mask=np.eye(4, 2, dtype=bool)), ValueError),
])
def test_tensors_without_plain_data_are_refused_by_name(make, exc):
    raises(exc, "x", lambda: ie.ChannelQuantiles(2, k=64).update(make()))
    raises(exc, "activations", lambda: rank.midranks(make()))


def test_torch_views_with_conjugate_or_negative_bits_are_read():
    x = torch.arange(8.0).reshape(4, 2)
    neg = torch._neg_view(-x)  # a lazily negated view: same values as x
    np.testing.assert_array_equal(rank.midranks(neg), rank.midranks(x.numpy()))


def test_choices_refuse_arrays_and_other_types():
    raises(TypeError, "unit_rule", lambda: ie.IoUTally(1, 1, [0], 1, output_size=(2, 2), unit_rule=np.array(["lite"])))
    raises(TypeError, "nan", lambda: ie.ChannelQuantiles(2, nan=np.array(["skip"])))
    raises(TypeError, "mode", lambda: Invert(mode=["positive"]))
    raises(ValueError, "unit_rule", lambda: ie.IoUTally(1, 1, [0], 1, output_size=(2, 2), unit_rule="Lite"))


def test_devices_are_checked_before_any_work():
    raises(ValueError, "device", lambda: check_device("nope"))
    raises(TypeError, "device", lambda: check_device(1.5))
    raises(ValueError, "device", lambda: check_device("meta"))
    if not torch.cuda.is_available():
        msg = raises(ValueError, "device", lambda: check_device("cuda"))
        assert "CUDA" in msg
    assert check_device("cpu") == torch.device("cpu") and check_device(None) is None


def test_big_uint64_labels_are_refused_not_wrapped():
    t = ie.IoUTally(1, 3, np.array([0, 0, 0], np.uint64), 1, output_size=(1, 1))
    raises(ValueError, "label_category",
           lambda: ie.IoUTally(1, 3, np.array([0, 2 ** 63, 0], np.uint64), 1, output_size=(1, 1)))
    t.update(np.zeros((1, 1, 1, 1)), [0.0], image_labels=np.array([[2]], np.uint64))
    raises(ValueError, "image_labels", lambda: t.update(np.zeros((1, 1, 1, 1)), [0.0],
                                                        image_labels=np.array([[2 ** 64 - 1]], np.uint64)))
