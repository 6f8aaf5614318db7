"""One lock per stateful object of the core: the thread-safety of the
accumulators (:class:`~interp_engine.ChannelQuantiles`,
:class:`~interp_engine.ExactQuantilePass`, :class:`~interp_engine.IoUTally`,
and the Dissection's running top-k, which reuses this module from outside the
engine).  Public and documented (docs/api.md), not re-exported at the top.

Each accumulator holds a re-entrant lock (``self._lock``).  Every public method
or property that reads or changes its state is marked :func:`synchronized` and
holds the lock for the whole call: validation, the compiled core's work and
the Python-side bookkeeping kept next to the core's state.  So calls on one
object from several threads run one at a time, each one sees the object
between two whole calls (a ``state_dict()``, ``iou()``, ``quantile()`` or
pickle taken while other threads update is the state after some number of
whole updates), and the result is the one of some sequential order of the
calls.  Calls on different objects share no lock and run in parallel (the
core releases the GIL while it computes).  ``merge`` is marked
:func:`synchronized_pair`: it holds the locks of both objects, taken in a fixed
order (:func:`both_locked`), so that ``a.merge(b)`` and ``b.merge(a)`` in two
threads cannot deadlock; ``a.merge(a)`` takes the one lock once.

Why a Python lock and not a mutex in the C++ bindings: part of the state lives
in Python next to the core object (for example the number of label maps an
``IoUTally`` was fed) and has to change together with the core's counts; and a
Python lock waits with the GIL released, so it can never deadlock with the GIL,
which the core takes back at the end of every call (a C++ mutex taken while
holding the GIL could: thread A holds the mutex and waits for the GIL, thread B
holds the GIL and waits for the mutex).  The stateless functions of the core
(``greedy_cover``, ``midranks``, ``auc``, ...) need no lock; ``PackedBits`` is a
read-only view for the core.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, TypeVar

__all__ = ["Synchronized", "synchronized", "synchronized_pair", "both_locked"]

F = TypeVar("F", bound=Callable[..., Any])


class Synchronized:
    """Mixin of the accumulators: ``_init_lock()`` gives the object its lock."""

    _lock: threading.RLock

    def _init_lock(self) -> None:
        self._lock = threading.RLock()


def synchronized(method: F) -> F:
    """Run ``method`` holding ``self._lock`` (re-entrant: a synchronized method
    may call another)."""

    @functools.wraps(method)
    def locked(self: Synchronized, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


@contextlib.contextmanager
def both_locked(a: Synchronized, b: Synchronized) -> Iterator[None]:
    """Hold the locks of ``a`` and ``b`` (once when ``a is b``), taken in a
    fixed order (by ``id``) whatever the order of the arguments."""
    if a is b:
        with a._lock:
            yield
        return
    first, second = (a, b) if id(a) < id(b) else (b, a)
    with first._lock, second._lock:
        yield


def synchronized_pair(method: F) -> F:
    """Run ``method(self, other, ...)`` holding the locks of ``self`` and, when
    it is an accumulator, of ``other`` (:func:`both_locked`); for ``merge``."""

    @functools.wraps(method)
    def locked(self: Synchronized, other: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(other, Synchronized):
            with both_locked(self, other):
                return method(self, other, *args, **kwargs)
        with self._lock:
            return method(self, other, *args, **kwargs)

    return locked  # type: ignore[return-value]
