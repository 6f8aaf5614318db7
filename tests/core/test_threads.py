"""Threads and the stateful objects of the core (ChannelQuantiles,
ExactQuantilePass, IoUTally), and interpreter exit while daemon threads are
inside the core's kernels.

* 8 threads on one shared object give the sequential result exactly; reads
  (state_dict, pickling, iou, quantile, the count properties) taken while
  other threads update see the object between two whole calls.
* 8 threads on 8 separate objects each give their own sequential result, and
  a busy object never holds up another one.
* merge in both orders at once, and a.merge(a), cannot deadlock.
* A process whose daemon threads are inside every long kernel exits cleanly.
"""
from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path

import _child
import numpy as np
import pytest

import interp_engine as ie
from interp_engine.engine.iou import IoUTally

TESTS = Path(__file__).resolve().parents[1]  # tests/, where the helper modules are
THREADS = 8


def run_threads(fns, timeout=300):
    """Start one thread per function, join them; re-raise the first error."""
    errors = []

    def wrap(f):
        def run():
            try:
                f()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        return run

    ts = [threading.Thread(target=wrap(f)) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish (deadlock?)"
    if errors:
        raise errors[0]


# ----------------------------------------------------------------------------- inputs
K, NL, NC, SH, SW = 16, 10, 3, 56, 56
CAT = np.arange(NL) % NC


def iou_batch(seed, B=8):
    rng = np.random.default_rng(seed)
    acts = rng.random((B, K, 7, 7)).astype(np.float32)
    labels = rng.integers(0, NL, size=(B, 2, SH, SW)).astype(np.int16)
    image_labels = rng.integers(0, NL, size=(B, 1))
    return acts, labels, image_labels


THR = np.full(K, 0.7)


def new_tally(**kw):
    return IoUTally(K, NL, CAT, NC, output_size=(SH, SW), **kw)


def feed(t, batch):
    acts, labels, image_labels = batch
    t.update(acts, THR, labels, image_labels)


def counts(t):
    return t.intersection, t.label_pixels, t.unit_pixels, t.images


def assert_same_counts(a, b):
    for x, y in zip(counts(a), counts(b)):
        np.testing.assert_array_equal(x, y)


def cq_batch(seed, n=3, c=6, hw=(20, 30)):
    return np.random.default_rng(seed).standard_normal((n, c) + hw).astype(np.float32)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


# ----------------------------------------------------------------------------- one shared object
def test_shared_iou_tally_equals_sequential():
    rounds = 6
    batches = [[iou_batch(100 * i + r) for r in range(rounds)] for i in range(THREADS)]
    ref = new_tally()
    for per_thread in batches:
        for b in per_thread:
            feed(ref, b)
    shared = new_tally()
    run_threads([lambda bs=bs: [feed(shared, b) for b in bs] for bs in batches])
    assert_same_counts(shared, ref)  # exact: counts are sums
    np.testing.assert_array_equal(shared.iou(), ref.iou())


def test_shared_channel_quantiles_equals_sequential():
    # the sketch depends on the order of the batches; with the same batch in
    # every call the order does not matter: the whole state is equal
    x = cq_batch(1)
    rounds = 5
    ref = ie.ChannelQuantiles(6, k=256, seed=3)
    for _ in range(THREADS * rounds):
        ref.update(x)
    shared = ie.ChannelQuantiles(6, k=256, seed=3)
    run_threads([lambda: [shared.update(x) for _ in range(rounds)]] * THREADS)
    assert_same_state(shared, ref)
    # different batches: the counts, NaN counts, min and max are exact
    xs = [cq_batch(10 + i) for i in range(THREADS)]
    xs[3][0, 2, 0, 0] = np.nan
    ref = ie.ChannelQuantiles(6, k=256, nan="skip")
    for xi in xs:
        ref.update(xi)
    shared = ie.ChannelQuantiles(6, k=256, nan="skip")
    run_threads([lambda xi=xi: shared.update(xi) for xi in xs])
    for prop in ("count", "nan_count", "min", "max"):
        np.testing.assert_array_equal(getattr(shared, prop), getattr(ref, prop), err_msg=prop)


def test_shared_exact_pass_equals_numpy():
    xs = [cq_batch(20 + i) for i in range(THREADS)]
    q = [0.01, 0.5, 0.995]
    cq = ie.ChannelQuantiles(6, k=128)
    for xi in xs:
        cq.update(xi)
    plan = cq.exact_pass(q)
    run_threads([lambda xi=xi: plan.update(xi) for xi in xs])
    values = np.concatenate([xi.transpose(1, 0, 2, 3).reshape(6, -1) for xi in xs], axis=1)
    np.testing.assert_array_equal(plan.result(), np.quantile(values.astype(np.float64), q, axis=1).T)


def test_reads_while_updating_see_whole_updates():
    # every call adds the same batch: a consistent snapshot is j times the
    # counts of one batch, with one j for all its arrays
    one = new_tally()
    b = iou_batch(7)
    feed(one, b)
    I1, L1, A1, n1 = counts(one)
    shared = new_tally()
    stop = threading.Event()
    seen = []

    def check_iou_state(st):
        j, rem = divmod(st["images"], n1)
        assert rem == 0
        np.testing.assert_array_equal(st["intersection"], j * I1)
        np.testing.assert_array_equal(st["label_pixels"], j * L1)
        np.testing.assert_array_equal(st["unit_pixels"], j * A1)
        seen.append(j)

    def reader():
        while not stop.is_set():
            check_iou_state(shared.state_dict())
            check_iou_state(pickle.loads(pickle.dumps(shared)).state_dict())
            iou = shared.iou()
            assert iou.shape == (K, NL) and np.all((iou >= 0) & (iou <= 1))

    x = cq_batch(8)
    ref1 = ie.ChannelQuantiles(6, k=256)
    ref1.update(x)
    n_one = ref1.count
    cq = ie.ChannelQuantiles(6, k=256)
    cq.update(x)

    def cq_reader():
        while not stop.is_set():
            st = cq.state_dict()
            j = st["count"] // n_one
            assert np.all(st["count"] == j[0] * n_one), "a snapshot mixing two updates"
            assert np.all(cq.count % n_one == 0)
            st2 = pickle.loads(pickle.dumps(cq)).state_dict()
            assert np.all(st2["count"] == st2["count"][0] // n_one[0] * n_one)
            qs = cq.quantile([0.0, 0.5, 1.0])
            assert np.all(qs[:, 0] <= qs[:, 1]) and np.all(qs[:, 1] <= qs[:, 2])

    def writers():
        try:
            run_threads([lambda: [feed(shared, b) for _ in range(10)]] * (THREADS - 2) +
                        [lambda: [cq.update(x) for _ in range(10)]] * 2)
        finally:
            stop.set()

    run_threads([writers, reader, cq_reader])
    assert_same_counts(shared, _times(b, 10 * (THREADS - 2)))
    assert np.all(cq.count == 21 * n_one)
    assert seen


def _times(batch, n):
    t = new_tally()
    for _ in range(n):
        feed(t, batch)
    return t


# ----------------------------------------------------------------------------- separate objects
def test_separate_objects_give_their_own_results():
    batches = [iou_batch(200 + i) for i in range(THREADS)]
    xs = [cq_batch(300 + i) for i in range(THREADS)]
    tallies = [new_tally() for _ in range(THREADS)]
    sketches = [ie.ChannelQuantiles(6, k=256, seed=i) for i in range(THREADS)]

    def work(i):
        for _ in range(3):
            feed(tallies[i], batches[i])
            sketches[i].update(xs[i])

    run_threads([lambda i=i: work(i) for i in range(THREADS)])
    for i in range(THREADS):
        assert_same_counts(tallies[i], _times(batches[i], 3))
        ref = ie.ChannelQuantiles(6, k=256, seed=i)
        for _ in range(3):
            ref.update(xs[i])
        assert_same_state(sketches[i], ref)


@pytest.mark.parametrize("kind", ["IoUTally", "ChannelQuantiles", "ExactQuantilePass"])
def test_a_busy_object_does_not_hold_up_another(kind):
    # while one object is in a call (its lock held), calls on another object
    # of the same class go through: the objects share no lock
    if kind == "IoUTally":
        a, b = new_tally(), new_tally()
        call = lambda: feed(b, iou_batch(1))  # noqa: E731
    else:
        x = cq_batch(2)
        a, b = ie.ChannelQuantiles(6, k=256), ie.ChannelQuantiles(6, k=256)
        if kind == "ExactQuantilePass":
            a.update(x)
            b.update(x)
            a, b = a.exact_pass(0.5), b.exact_pass(0.5)
        call = lambda: b.update(x)  # noqa: E731
    with a._lock:
        t = threading.Thread(target=call)
        t.start()
        t.join(120)
        assert not t.is_alive(), "a call on another object waited for this one"


# ----------------------------------------------------------------------------- merge
def test_merge_both_orders_at_once_does_not_deadlock():
    ta, tb = new_tally(), new_tally()
    feed(ta, iou_batch(1))
    feed(tb, iou_batch(2))
    ca, cb = ie.ChannelQuantiles(6, k=256), ie.ChannelQuantiles(6, k=256)
    ca.update(cq_batch(1))
    cb.update(cq_batch(2))
    n = 30
    run_threads([lambda: [ta.merge(tb) for _ in range(n)], lambda: [tb.merge(ta) for _ in range(n)],
                 lambda: [ca.merge(cb) for _ in range(n)], lambda: [cb.merge(ca) for _ in range(n)],
                 lambda: [feed(ta, iou_batch(3)) for _ in range(5)]], timeout=120)
    # each merge added the other's counts at that moment: images are consistent
    assert ta.images >= 4 and tb.images >= 4
    assert ca.count[0] > 0 and cb.count[0] > 0


def test_self_merge_cannot_deadlock():
    # whatever the rule for a.merge(a) (refused or allowed), it returns
    def self_merge(obj):
        try:
            obj.merge(obj)
        except ValueError:
            pass

    t = new_tally()
    feed(t, iou_batch(1))
    c = ie.ChannelQuantiles(6, k=256)
    c.update(cq_batch(1))
    run_threads([lambda: self_merge(t), lambda: self_merge(c)] * 4, timeout=120)


# ----------------------------------------------------------------------------- interpreter exit
EXIT_SCRIPT = r"""
import atexit, sys, threading, time
sys.path.insert(0, {tests!r})
import numpy as np
import long_calls

names = {names!r}
calls = [long_calls.make(n) for n in names]
entered = [threading.Event() for _ in names]
finished = [False] * len(names)

def run(i):
    entered[i].set()
    try:
        calls[i]()
    finally:
        finished[i] = True

for i in range(len(names)):
    threading.Thread(target=run, args=(i,), daemon=True).start()
for e in entered:
    e.wait()
time.sleep(0.5)

def report():  # registered after interp_engine's hook: runs before it
    print("still inside:", sum(not f for f in finished), "of", len(names), flush=True)
atexit.register(report)
print("exiting", flush=True)
"""


def _run_script(code, timeout=240):
    return _child.run_code(code, timeout=timeout)


def _assert_clean_exit(res):
    assert res.returncode == 0, f"exit status {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    for bad in ("FATAL", "terminate called", "Traceback", "Fatal Python error", "Exception"):
        assert bad not in res.stderr, res.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="the long inputs are POSIX mmaps")
def test_exit_with_daemon_threads_inside_every_long_kernel():
    import long_calls

    names = list(long_calls.MAKERS)
    res = _run_script(EXIT_SCRIPT.format(tests=str(TESTS), names=names))
    _assert_clean_exit(res)
    # the test means something only if the kernels were still running at exit
    assert f"still inside: {len(names)} of {len(names)}" in res.stdout, res.stdout


LOOP_SCRIPT = r"""
import atexit, sys, threading
import numpy as np

results = []
def late_user():  # registered before interp_engine is imported: runs after its exit hook
    import interp_engine as ie
    cq = ie.ChannelQuantiles(4, k=64)
    cq.update(np.arange(400, dtype=np.float32).reshape(1, 4, 100))
    t = ie.IoUTally(2, 3, [0, 0, 1], 2, output_size=(8, 8))
    t.update(np.ones((1, 2, 2, 2)), [0.5, 2.0], image_labels=[[2]])
    print("after exit hook:", cq.count.tolist(), t.intersection[:, 2].tolist(), flush=True)
atexit.register(late_user)

import interp_engine as ie
from interp_engine.engine import rank

started = threading.Barrier(5)
def short_calls(seed):
    rng = np.random.default_rng(seed)
    cq = ie.ChannelQuantiles(8, k=64)
    a = rng.standard_normal((2000, 8)).astype(np.float32)
    lab = rng.random((2000, 3)) < 0.3
    started.wait()
    while True:  # in and out of the core until the interpreter abandons the thread
        cq.update(rng.standard_normal((4, 8, 64, 64)).astype(np.float32))
        rank.mannwhitney_pvalues(a, lab)

for i in range(4):
    threading.Thread(target=short_calls, args=(i,), daemon=True).start()
started.wait()
print("exiting", flush=True)
"""


def test_exit_with_daemon_threads_calling_the_core_in_a_loop():
    # threads entering and leaving the core at exit, and the core used by an
    # atexit hook that runs after interp_engine's
    for _ in range(5):  # the race with the threads' first calls is hit about once in ten runs
        res = _run_script(LOOP_SCRIPT, timeout=120)
        _assert_clean_exit(res)
        assert "after exit hook: [100, 100, 100, 100] [64, 0]" in res.stdout, res.stdout
