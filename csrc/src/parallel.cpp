#include "interp_engine/parallel.hpp"

#include <chrono>
#include <condition_variable>
#include <system_error>

#if defined(__GLIBCXX__)
#include <cxxabi.h>
// pthread_exit / pthread_cancel unwind a thread with this "exception"; a
// catch (...) that does not rethrow it aborts the process ("FATAL: exception
// not rethrown").  Every catch (...) below rethrows it first.
#define INTERP_ENGINE_RETHROW_FORCED_UNWIND \
  catch (abi::__forced_unwind&) {           \
    throw;                                  \
  }
#else
#define INTERP_ENGINE_RETHROW_FORCED_UNWIND
#endif

namespace interp_engine {

namespace detail {
// The state of one top-level call: shared by its owner thread and its workers.
struct CallState {
  std::atomic<bool> stop{false};
  std::uint64_t epoch = 0;        // g_epoch when the call opened
  bool poll = false;              // the owner asks the interrupt callback
  std::int64_t last_poll_ns = 0;  // owner thread only
  std::mutex mu;
  std::exception_ptr error;  // the call's first failure (rethrown by parallel_for)

  // Record the call's first failure and stop its threads.
  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::move(e);
    }
    stop.store(true);
  }
};
}  // namespace detail

namespace {
using detail::CallState;

std::atomic<InterruptCallback> g_callback{nullptr};
std::atomic<int> g_num_threads{0};
std::atomic<std::uint64_t> g_epoch{0};  // bumped by stop_all_calls()
thread_local CallState* t_call = nullptr;  // the call this thread works for
thread_local bool t_owner = false;         // this thread opened t_call

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void stop_now(CallState* s) {
  s->stop.store(true);
  throw Interrupted();
}
}  // namespace

CallScope::CallScope(bool poll_signals) {
  if (t_call != nullptr) return;  // nested: part of the open call
  state_ = new CallState;
  state_->epoch = g_epoch.load();
  state_->poll = poll_signals;
  state_->last_poll_ns = now_ns();
  t_call = state_;
  t_owner = true;
}

CallScope::~CallScope() {
  if (state_ == nullptr) return;
  t_call = nullptr;
  t_owner = false;
  delete state_;
}

void set_interrupt_callback(InterruptCallback cb) { g_callback.store(cb); }

void check_interrupt() {
  CallState* s = t_call;
  if (s == nullptr) return;
  if (s->stop.load(std::memory_order_relaxed)) throw Interrupted();
  if (g_epoch.load(std::memory_order_relaxed) != s->epoch) stop_now(s);
  if (!t_owner || !s->poll) return;
  const InterruptCallback cb = g_callback.load(std::memory_order_relaxed);
  if (cb == nullptr) return;
  const std::int64_t t = now_ns();
  if (t - s->last_poll_ns < std::int64_t{kInterruptPollMs} * 1'000'000) return;
  s->last_poll_ns = t;
  if (cb()) stop_now(s);
}

bool stop_requested() {
  const CallState* s = t_call;
  return s != nullptr &&
         (s->stop.load(std::memory_order_relaxed) || g_epoch.load(std::memory_order_relaxed) != s->epoch);
}

void stop_all_calls() { g_epoch.fetch_add(1); }

int get_num_threads() {
  const int n = g_num_threads.load();
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void set_num_threads(int n) {
  if (n < 0) throw std::invalid_argument("num_threads must be >= 0 (0 = all cores)");
  g_num_threads.store(n);
}

int effective_threads(std::size_t n, std::size_t grain, int num_threads) {
  int t = num_threads > 0 ? num_threads : get_num_threads();
  if (grain == 0) grain = 1;
  const std::size_t max_useful = (n + grain - 1) / grain;
  if (max_useful < static_cast<std::size_t>(t)) t = static_cast<int>(std::max<std::size_t>(1, max_useful));
  return t;
}

namespace {
// Runs `body(thread_index)` for thread_index in [0, t): index 0 on the calling
// thread, the others on worker threads of the same call.  Rethrows the call's
// first failure once every worker stopped.
void run_threads(int t, const std::function<void(int)>& body) {
  CallScope scope;  // a call of its own unless one is open on this thread
  CallState* const s = t_call;
  if (t <= 1) {
    body(0);
    return;
  }
  std::atomic<bool> failed{false};
  auto fail = [&](std::exception_ptr e) {
    failed.store(true);
    s->fail(std::move(e));
  };
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // workers started and not finished (under mu)

  // Joins the workers on every path out of this function; on an abnormal
  // one (an exception escaping below) it stops them first.
  struct Joiner {
    std::vector<std::thread> threads;
    CallState* s;
    bool normal = false;
    ~Joiner() {
      if (!normal) s->stop.store(true);
      for (auto& th : threads)
        if (th.joinable()) th.join();
    }
  } workers{{}, s};
  workers.threads.reserve(static_cast<std::size_t>(t - 1));

  auto work = [&, s](int ti) {
    t_call = s;
    t_owner = false;
    try {
      body(ti);
    }
    INTERP_ENGINE_RETHROW_FORCED_UNWIND
    catch (...) {
      fail(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(mu);
    --running;
    cv.notify_all();
  };
  std::vector<int> here;  // indices whose thread could not be started
  for (int ti = 1; ti < t; ++ti) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++running;
    }
    try {
      workers.threads.emplace_back(work, ti);
    } catch (const std::system_error&) {
      std::lock_guard<std::mutex> lock(mu);
      --running;
      here.push_back(ti);
    }
  }
  auto run_here = [&](int ti) {
    try {
      body(ti);
    }
    INTERP_ENGINE_RETHROW_FORCED_UNWIND
    catch (...) {
      fail(std::current_exception());
    }
  };
  run_here(0);
  for (int ti : here)
    if (!s->stop.load()) run_here(ti);
  {
    // wait for the workers; the owner keeps asking the interrupt callback
    std::unique_lock<std::mutex> lock(mu);
    while (running > 0) {
      cv.wait_for(lock, std::chrono::milliseconds(kInterruptPollMs / 2));
      if (running > 0 && t_owner && !s->stop.load()) {
        lock.unlock();
        try {
          check_interrupt();
        }
        INTERP_ENGINE_RETHROW_FORCED_UNWIND
        catch (...) {
          fail(std::current_exception());
        }
        lock.lock();
      }
    }
  }
  workers.normal = true;
  for (auto& th : workers.threads) th.join();
  if (failed.load()) {
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      e = s->error;
    }
    std::rethrow_exception(e);
  }
}
}  // namespace

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t, int)>& fn,
                  int num_threads) {
  if (n == 0) return;
  const int t = effective_threads(n, grain, num_threads);
  const std::size_t chunk = (n + static_cast<std::size_t>(t) - 1) / static_cast<std::size_t>(t);
  run_threads(t, [&](int ti) {
    const std::size_t b = static_cast<std::size_t>(ti) * chunk;
    const std::size_t e = std::min(n, b + chunk);
    if (b < e) fn(b, e, ti);
  });
}

void parallel_for_dynamic(std::size_t n, const std::function<void(std::size_t, int)>& fn,
                          int num_threads) {
  if (n == 0) return;
  const int t = effective_threads(n, 1, num_threads);
  std::atomic<std::size_t> next{0};
  run_threads(t, [&](int ti) {
    for (;;) {
      check_interrupt();
      const std::size_t i = next.fetch_add(1);
      if (i >= n) break;
      fn(i, ti);
    }
  });
}

}  // namespace interp_engine
