"""Sizes too large for the arithmetic or the memory (issue 14, item 1).

Every size product of the core is computed with overflow detection: a size
that overflows, or that a kernel's index type cannot address, raises
ValueError; an allocation that cannot fit (more than the physical memory,
the cgroup limit or INTERP_ENGINE_MEMORY_LIMIT) raises MemoryError before
anything is allocated.  The limit is lowered with INTERP_ENGINE_MEMORY_LIMIT
here so that the tests do not depend on the machine's memory (the core reads
the variable at every check)."""
from __future__ import annotations

import numpy as np
import pytest

from interp_engine import ChannelQuantiles, IoUTally, _core
from interp_engine.engine.cover import PackedBits, greedy_cover, ratio_greedy_cover
from interp_engine.engine.rank import auc, midranks

sp = pytest.importorskip("scipy.sparse")

MB = 1 << 20


@pytest.fixture
def limit(monkeypatch):
    def set_limit(nbytes):
        monkeypatch.setenv("INTERP_ENGINE_MEMORY_LIMIT", str(int(nbytes)))
    return set_limit


# --------------------------------------------------------------------------- IoUTally
def test_tally_units_times_categories_wrapping_to_zero():
    # the reproducer: 4 x 2**62 wrapped to 0 and iou() read past the counts
    with pytest.raises(ValueError, match="num_categories must be < 2\\*\\*31"):
        IoUTally(4, 2, [0, 0], 2**62, output_size=(2, 2)).iou()
    # the core on its own refuses it too
    with pytest.raises(ValueError, match="num_categories must be < 2\\^31"):
        _core.IoUTallyCore(4, 2, np.zeros(2, np.int32), 2**62, 2, 2, False)
    with pytest.raises(ValueError, match="num_units x num_labels.*overflows"):
        _core.IoUTallyCore(2**62, 2, np.zeros(2, np.int32), 1, 2, 2, False)
    with pytest.raises(ValueError, match="num_units x num_categories.*overflows"):
        _core.IoUTallyCore(2**40, 2, np.zeros(2, np.int32), 2**24, 2, 2, False)


@pytest.mark.parametrize("size", [(2**32, 2**32), (2**31, 1), (1, 2**31), (2**16, 2**16)])
def test_tally_output_size_too_large_for_int32_pixels(size):
    with pytest.raises(ValueError, match="output_size"):
        IoUTally(1, 2, [0, 0], 1, output_size=size)
    with pytest.raises(ValueError, match="output_size"):
        _core.IoUTallyCore(1, 2, np.zeros(2, np.int32), 1, size[0], size[1], False)


def test_tally_counts_that_cannot_fit_are_a_memory_error(limit):
    limit(64 * MB)
    with pytest.raises(MemoryError, match="IoUTally: needs .* bytes of memory"):
        IoUTally(2**24, 2, [0, 0], 1, output_size=(2, 2))  # 2**25 counts of 8 bytes per array


def test_tally_output_size_fails_at_construction_not_at_the_first_update(limit):
    # (1, 2**31 - 1) fits int32 pixels, but one update's tables and row buffers
    # need about 40 bytes per column: ~86 GB
    limit(1 << 34)
    with pytest.raises(MemoryError, match="IoUTally: needs"):
        IoUTally(1, 2, [0, 0], 1, output_size=(1, 2**31 - 1))


def test_tally_update_refuses_work_buffers_that_cannot_fit_and_counts_nothing(limit):
    t = IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 2**16))
    acts = np.ones((1, 2, 2**12, 1), np.float32)  # (h x sw) H rows of 8 bytes: 2 GB
    limit(256 * MB)
    with pytest.raises(MemoryError, match="IoUTally.update: needs"):
        t.update(acts, [0.5, 0.5])
    assert t.images == 0 and not t.unit_pixels.any()
    limit(1 << 62)
    t.update(np.ones((1, 2, 2, 2), np.float32), [0.5, 0.5])
    assert t.images == 1


def test_tally_update_map_size_limit():
    t = IoUTally(1, 2, [0, 0], 1, output_size=(2, 2))
    big = np.broadcast_to(np.float32(0), (1, 1, 2**16, 2**15))  # 2**31 values per map, no memory
    with pytest.raises(ValueError, match="activations: maps of 65536 x 32768 are too large"):
        t.update(big, [0.5])


def test_upsample_sizes(limit):
    a = np.ones((2, 2))
    with pytest.raises(ValueError):
        _core.iou_upsample_bilinear(a, 2**40, 2**40)
    limit(64 * MB)
    with pytest.raises(MemoryError, match="upsample_bilinear: needs"):
        _core.iou_upsample_bilinear(a, 2**15, 2**15)  # 8 GB of output
    np.testing.assert_array_equal(_core.iou_upsample_bilinear(a, 4, 4), np.ones((4, 4)))


# --------------------------------------------------------------------------- quantiles
def test_sketch_k_limit_and_channel_memory(limit):
    with pytest.raises(ValueError, match="k must be <= 1073741824"):
        ChannelQuantiles(1, k=2**31 - 1)
    with pytest.raises(ValueError, match="k must be in"):
        _core.QuantileSketch(1, 2**31 - 1, 0)
    limit(64 * MB)
    with pytest.raises(MemoryError, match="ChannelQuantiles: needs"):
        ChannelQuantiles(2**24)


def test_exact_pass_sizes(limit):
    with pytest.raises(ValueError, match="channels x quantiles.*overflows"):
        _core.ExactPassCore(2**40, 2**40, np.zeros(1), np.zeros(1), 1)
    limit(64 * MB)
    with pytest.raises(MemoryError, match="exact pass: needs"):
        _core.ExactPassCore(4, 1, np.zeros(4), np.ones(4), 2**28)  # brackets may keep 8 GB
    cq = ChannelQuantiles(2, k=64)
    cq.update(np.random.default_rng(0).standard_normal((5000, 2)))
    limit(1000)  # margin 1 keeps every value: 2 x 10064 doubles
    with pytest.raises(MemoryError, match="exact pass: needs"):
        cq.exact_pass(0.5, margin=1.0)


# --------------------------------------------------------------------------- cover and bitsets
def test_cover_shape_far_larger_than_the_data(limit):
    one = sp.csr_matrix((np.ones(1), (np.zeros(1, int), np.zeros(1, int))), shape=(1, 2**31 - 1))
    limit(1 << 30)  # the transpose needs the column pointers of 2**31 elements: ~80 GB
    with pytest.raises(MemoryError, match="greedy_cover: needs"):
        greedy_cover(one)
    with pytest.raises(MemoryError, match="ratio_greedy_cover \\(cost_sets\\): needs"):
        ratio_greedy_cover(one, sp.csr_matrix((1, 3)), target=1)
    tall = sp.coo_matrix((np.ones(1), (np.zeros(1, int), np.zeros(1, int))), shape=(2**31 - 1, 2))
    with pytest.raises(MemoryError, match="sparse matrix to CSR: needs"):
        greedy_cover(tall)
    small = sp.csr_matrix(np.eye(3))
    limit(1 << 62)
    assert greedy_cover(small).covered == 3.0


def test_unpack_bits_output_checked(limit):
    pb = PackedBits(np.zeros((1024, 16), np.uint64), 1024)
    limit(100_000)
    with pytest.raises(MemoryError, match="unpack_bits: needs 1048576 bytes"):
        pb.to_dense()
    limit(1 << 62)
    assert pb.to_dense().shape == (1024, 1024)


# --------------------------------------------------------------------------- rank
def test_rank_samples_limit_and_output_memory(limit):
    many = np.broadcast_to(np.float32(1), (2**31, 1))  # a view: no memory
    with pytest.raises(ValueError, match="at most 2\\*\\*31 - 1 samples"):
        midranks(many)
    wide = np.broadcast_to(np.float32(1), (2**20, 2**12))
    limit(64 * MB)
    with pytest.raises(MemoryError, match="midranks: needs"):
        midranks(wide)
    labels = np.zeros((16, 1024), bool)  # (K, M) = (2**14, 2**10) results: 128 MB
    labels[::2] = True
    with pytest.raises(MemoryError, match="auc: needs"):
        auc(np.broadcast_to(np.float32(1), (16, 2**14)), labels)
