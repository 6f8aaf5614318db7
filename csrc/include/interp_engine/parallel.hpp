// Threading and interruption helpers shared by every kernel of the core.
//
// Pure C++17, no Python: the bindings install an interrupt callback (which
// takes the GIL and asks Python whether Ctrl-C was pressed); kernels call
// check_interrupt() from their long loops and parallel_for() carries the
// first worker exception back to the calling thread.
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

// Raised inside the core when the interrupt callback reports a pending
// signal; the bindings turn it into KeyboardInterrupt.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Callback returning true when the computation should stop (set by the
// bindings; nullptr in pure C++ use).
using InterruptCallback = bool (*)();
void set_interrupt_callback(InterruptCallback cb);

// Calls the interrupt callback at most every `min_interval_ms` and throws
// Interrupted when it reports a signal.  Safe to call from any thread: only
// the thread that called enter_compute() asks Python (others read a flag).
void check_interrupt();

// Number of worker threads used by default: hardware concurrency, or the
// value set by set_num_threads() (0 = hardware concurrency).
int get_num_threads();
void set_num_threads(int n);

// Runs fn(begin, end, thread_index) over [0, n) split in contiguous chunks on
// up to `num_threads` threads (0 = get_num_threads()). Work smaller than
// `grain` items stays on the calling thread.  The first exception thrown by
// any worker is rethrown on the calling thread once all workers stopped;
// the others stop early at their next check_interrupt()/chunk boundary.
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
