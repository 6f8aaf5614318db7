#include "interp_engine/parallel.hpp"

#include <chrono>

namespace interp_engine {

namespace {
std::atomic<InterruptCallback> g_callback{nullptr};
std::atomic<int> g_num_threads{0};
std::atomic<bool> g_interrupted{false};
std::atomic<std::int64_t> g_last_check_ns{0};
thread_local bool t_is_caller = true;  // worker threads set this to false

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void set_interrupt_callback(InterruptCallback cb) { g_callback.store(cb); }

void check_interrupt() {
  if (g_interrupted.load(std::memory_order_relaxed)) throw Interrupted();
  InterruptCallback cb = g_callback.load(std::memory_order_relaxed);
  if (cb == nullptr || !t_is_caller) return;
  const std::int64_t t = now_ns();
  if (t - g_last_check_ns.load(std::memory_order_relaxed) < 50'000'000) return;  // 50 ms
  g_last_check_ns.store(t, std::memory_order_relaxed);
  if (cb()) {
    g_interrupted.store(true);
    throw Interrupted();
  }
}

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
// Runs `body(thread_index)` on `t` threads (the caller is thread 0) and
// rethrows the first exception.  Resets the interrupt flag on entry/exit of
// the outermost call.
void run_threads(int t, const std::function<void(int)>& body) {
  const bool outer = t_is_caller;
  if (outer) g_interrupted.store(false);
  if (t <= 1) {
    body(0);
    return;
  }
  std::exception_ptr first;
  std::mutex mu;
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(t - 1));
  auto guarded = [&](int ti) {
    try {
      body(ti);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!first) first = std::current_exception();
      g_interrupted.store(true);  // ask the other workers to stop early
    }
  };
  for (int ti = 1; ti < t; ++ti) {
    workers.emplace_back([&, ti] {
      t_is_caller = false;
      guarded(ti);
    });
  }
  guarded(0);
  for (auto& w : workers) w.join();
  if (outer) {
    g_interrupted.store(false);
  }
  if (first) std::rethrow_exception(first);
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
      if (g_interrupted.load(std::memory_order_relaxed)) throw Interrupted();
      const std::size_t i = next.fetch_add(1);
      if (i >= n) break;
      fn(i, ti);
    }
  });
}

}  // namespace interp_engine
