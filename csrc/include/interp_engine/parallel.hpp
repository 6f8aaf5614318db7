// Threading and interruption helpers shared by every kernel of the core.
//
// Pure C++17, no Python.  Kernels call check_interrupt() from their long
// loops; parallel_for() runs work on worker threads and carries the first
// exception back to the calling thread.
//
// Interruption belongs to one call.  A CallScope marks one top-level call into
// the core (the bindings open one per call from Python; parallel_for opens one
// itself when none is open on its thread).  The call has its own stop flag:
// an exception in one of its workers, or a signal reported by the interrupt
// callback, stops that call's threads only, never a call running concurrently
// in another thread.  Only the thread that opened the scope (its "owner") asks
// the interrupt callback, and only when the scope allows it (the bindings
// allow it for Python's main thread, the only one Python delivers signals to);
// worker threads only read the call's stop flag.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace interp_engine {

// Raised inside the core when the call was asked to stop (a signal reported
// by the interrupt callback, or stop_all_calls()); the bindings turn it into
// the exception the signal handler raised (KeyboardInterrupt for Ctrl-C).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Callback returning true when the computation should stop (set by the
// bindings; nullptr in pure C++ use).  Called only by the owner thread of a
// CallScope opened with poll_signals = true, at most every kInterruptPollMs.
using InterruptCallback = bool (*)();
void set_interrupt_callback(InterruptCallback cb);

// Interval between two calls of the interrupt callback within one call.  With
// the loops' checks (each at most a few ms apart) and the workers' reaction
// to the stop flag, a signal stops a call in well under 100 ms.
constexpr int kInterruptPollMs = 20;

namespace detail {
struct CallState;
}

// One top-level call into the core (RAII, on the calling thread).  Nested
// scopes on the same thread (and scopes on the call's worker threads) join the
// outer call.  Not copyable, not movable.
class CallScope {
 public:
  explicit CallScope(bool poll_signals = false);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // True when this scope opened the call (it was not nested).
  bool outermost() const { return state_ != nullptr; }

 private:
  detail::CallState* state_ = nullptr;
};

// Throws Interrupted when the current call was asked to stop; on the owner
// thread of a polling call, also asks the interrupt callback (at most every
// kInterruptPollMs).  Safe to call from any thread; a no-op outside a call.
void check_interrupt();

// True when the current call (if any) was asked to stop.  Never throws.
bool stop_requested();

// Asks every call open at this moment to stop at its next check_interrupt();
// calls opened later are not affected.  Used by the bindings at interpreter
// exit (daemon threads still inside the core).
void stop_all_calls();

// Number of worker threads used by default: hardware concurrency, or the
// value set by set_num_threads() (0 = hardware concurrency).
int get_num_threads();
void set_num_threads(int n);

// Runs fn(begin, end, thread_index) over [0, n) split in contiguous chunks on
// up to `num_threads` threads (0 = get_num_threads()). Work smaller than
// `grain` items stays on the calling thread.  The first exception thrown by
// any worker is rethrown on the calling thread once all workers stopped; it
// also stops the call, so the other workers stop at their next
// check_interrupt().  While the workers run, the calling thread keeps asking
// the interrupt callback (when its call polls).  Workers are joined on every
// path.  If a worker thread cannot be started, its chunk runs on the calling
// thread.
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t, int)>& fn,
                  int num_threads = 0);

// Like parallel_for, but hands out items one at a time (dynamic schedule),
// for work items of very uneven cost.  fn(item, thread_index).
void parallel_for_dynamic(std::size_t n,
                          const std::function<void(std::size_t, int)>& fn,
                          int num_threads = 0);

// Resolve a user-given thread count against the size of the work.
int effective_threads(std::size_t n, std::size_t grain, int num_threads);

}  // namespace interp_engine
