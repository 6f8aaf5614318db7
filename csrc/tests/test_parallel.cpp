// Tests of parallel.hpp and sort.hpp: work splitting, error propagation, the
// per-call stop flag (an error or a signal in one call never stops another
// call), the owner's polling while its workers run, stop_all_calls(), and the
// interruptible sort.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "interp_engine/parallel.hpp"
#include "interp_engine/sort.hpp"

using namespace interp_engine;

namespace {

// Spins (calling check_interrupt) until the call is stopped or `limit` passes;
// returns true when it was stopped (check_interrupt threw).
bool spin_until_stopped(std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  try {
    while (std::chrono::steady_clock::now() < end) check_interrupt();
  } catch (const Interrupted&) {
    return true;
  }
  return false;
}

// A call that needs about `ms` of work per worker and sums the indices.
std::uint64_t long_sum(std::size_t n, int threads) {
  std::vector<std::uint64_t> part(static_cast<std::size_t>(threads), 0);
  parallel_for(
      n, 1,
      [&](std::size_t b, std::size_t e, int ti) {
        std::uint64_t s = 0;
        for (std::size_t i = b; i < e; ++i) {
          if ((i & 1023) == 0) check_interrupt();
          s += i;
        }
        part[static_cast<std::size_t>(ti)] += s;
      },
      threads);
  std::uint64_t s = 0;
  for (auto v : part) s += v;
  return s;
}

void test_every_index_once() {
  for (int threads : {1, 2, 3, 8}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
      std::vector<std::atomic<int>> seen(n);
      parallel_for(n, 1, [&](std::size_t b, std::size_t e, int) {
        for (std::size_t i = b; i < e; ++i) seen[i]++;
      }, threads);
      bool ok = true;
      for (auto& s : seen) ok = ok && s.load() == 1;
      CHECK(ok);
      std::vector<std::atomic<int>> seen2(n);
      parallel_for_dynamic(n, [&](std::size_t i, int) { seen2[i]++; }, threads);
      ok = true;
      for (auto& s : seen2) ok = ok && s.load() == 1;
      CHECK(ok);
    }
  }
}

void test_first_error_rethrown() {
  // one worker fails; the others spin until stopped: the failure comes back
  // (not Interrupted) and the spinning workers were stopped early
  std::atomic<int> stopped{0};
  bool got = false;
  try {
    parallel_for(4, 1, [&](std::size_t b, std::size_t, int) {
      if (b == 2) throw std::invalid_argument("bad input in chunk 2");
      if (spin_until_stopped(std::chrono::seconds(20))) stopped++;
    }, 4);
  } catch (const std::invalid_argument& e) {
    got = std::string(e.what()) == "bad input in chunk 2";
  }
  CHECK(got);
  CHECK(stopped.load() == 3);
  // the next call is not affected by the stop of the previous one
  CHECK(long_sum(100000, 4) == 100000ull * 99999ull / 2);
}

void test_nested_error_is_the_first() {
  // an error inside a nested parallel_for of one worker: the outer call
  // rethrows it, not the Interrupted its other workers see
  for (int rep = 0; rep < 20; ++rep) {
    bool got = false;
    try {
      parallel_for(4, 1, [&](std::size_t b, std::size_t, int) {
        if (b == 1) {
          parallel_for(4, 1, [&](std::size_t bb, std::size_t, int) {
            if (bb == 3) throw std::runtime_error("inner failure");
            spin_until_stopped(std::chrono::seconds(20));
          }, 4);
        } else {
          spin_until_stopped(std::chrono::seconds(20));
        }
      }, 4);
    } catch (const std::runtime_error& e) {
      got = std::string(e.what()) == "inner failure";
    }
    CHECK(got);
  }
}

void test_error_in_one_call_does_not_stop_another() {
  // thread A: calls that fail in a worker, again and again; thread B: long
  // calls that must complete with the right sum (a process-wide flag would
  // stop them with Interrupted)
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread a([&] {
    while (!done.load()) {
      try {
        parallel_for(8, 1, [&](std::size_t b, std::size_t, int) {
          if (b == 5) throw std::invalid_argument("NaN");
          spin_until_stopped(std::chrono::milliseconds(50));
        }, 8);
      } catch (const std::invalid_argument&) {
        failures++;
      }
    }
  });
  bool all_ok = true;
  int completed = 0;
  const std::size_t n = 20'000'000;
  for (int rep = 0; rep < 10; ++rep) {
    try {
      all_ok = all_ok && long_sum(n, 4) == static_cast<std::uint64_t>(n) * (n - 1) / 2;
      ++completed;
    } catch (...) {  // Interrupted, or the other call's error
      all_ok = false;
    }
  }
  done = true;
  a.join();
  CHECK(all_ok);
  CHECK(completed == 10);
  CHECK(failures.load() > 0);
}

std::atomic<int> g_polls{0};
std::atomic<bool> g_signal{false};
bool test_callback() {
  g_polls++;
  return g_signal.load();
}

void test_signal_stops_only_the_polling_call() {
  set_interrupt_callback(&test_callback);
  g_signal = true;  // "Ctrl-C pending": only a call that polls sees it
  std::atomic<bool> other_ok{false};
  std::thread other([&] {
    CallScope call(false);  // a call made from another thread: never polls
    const std::size_t n = 5'000'000;
    try {
      other_ok = long_sum(n, 2) == static_cast<std::uint64_t>(n) * (n - 1) / 2;
    } catch (...) {
      other_ok = false;
    }
  });
  bool interrupted = false;
  {
    CallScope call(true);  // the "main thread" call
    interrupted = spin_until_stopped(std::chrono::seconds(20));
  }
  other.join();
  CHECK(interrupted);
  CHECK(other_ok.load());
  g_signal = false;
  set_interrupt_callback(nullptr);
}

void test_owner_polls_while_workers_run() {
  // the owner's own chunk ends at once; the workers only stop when asked:
  // the owner must keep asking the callback while it waits for them
  set_interrupt_callback(&test_callback);
  g_polls = 0;
  g_signal = true;
  std::atomic<int> stopped{0};
  bool interrupted = false;
  try {
    CallScope call(true);
    parallel_for(4, 1, [&](std::size_t b, std::size_t, int) {
      if (b == 0) return;
      if (spin_until_stopped(std::chrono::seconds(20))) stopped++;
    }, 4);
  } catch (const Interrupted&) {
    interrupted = true;
  }
  CHECK(interrupted);
  CHECK(stopped.load() == 3);
  CHECK(g_polls.load() >= 1);
  g_signal = false;
  set_interrupt_callback(nullptr);
}

void test_stop_all_calls() {
  std::atomic<bool> started{false}, stopped{false};
  std::thread t([&] {
    CallScope call(false);
    started = true;
    stopped = spin_until_stopped(std::chrono::seconds(20));
  });
  while (!started.load()) std::this_thread::yield();
  stop_all_calls();
  t.join();
  CHECK(stopped.load());
  // a call opened afterwards runs normally
  CHECK(long_sum(100000, 2) == 100000ull * 99999ull / 2);
  CHECK(!stop_requested());
}

void test_no_call_no_stop() {
  // outside any call check_interrupt() is a no-op, and a scope's stop ends with it
  check_interrupt();
  CHECK(!stop_requested());
  {
    CallScope outer(false);
    CHECK(outer.outermost());
    CallScope inner(true);
    CHECK(!inner.outermost());
  }
  CHECK(!stop_requested());
}

void test_sort_checked() {
  std::mt19937_64 rng(7);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{5}, kSortRun, kSortRun + 1, 3 * kSortRun + 17}) {
    for (int distinct : {2, 1 << 30}) {
      std::vector<std::pair<int, std::uint32_t>> v(n);
      for (std::size_t i = 0; i < n; ++i)
        v[i] = {static_cast<int>(rng() % static_cast<std::uint64_t>(distinct)), static_cast<std::uint32_t>(i)};
      auto ref = v;
      auto by_first = [](const std::pair<int, std::uint32_t>& a, const std::pair<int, std::uint32_t>& b) {
        return a.first < b.first;
      };
      sort_checked(v, by_first);
      CHECK(std::is_sorted(v.begin(), v.end(), by_first));
      // a permutation: same multiset of (key, index) pairs
      std::sort(v.begin(), v.end());
      std::sort(ref.begin(), ref.end());
      CHECK(v == ref);
    }
  }
  // stopped in the middle of a merge: the vector still holds its items (the
  // comparator stops the call after the runs were sorted)
  std::vector<double> v(4 * kSortRun);
  for (auto& x : v) x = static_cast<double>(rng() % 1000003);
  auto ref = v;
  // comparisons of the runs' sorts, and of the whole sort, on this input
  std::uint64_t runs_cmp = 0, all_cmp = 0;
  {
    auto w = v;
    for (std::size_t b = 0; b < w.size(); b += kSortRun)
      std::sort(w.begin() + static_cast<std::ptrdiff_t>(b), w.begin() + static_cast<std::ptrdiff_t>(b + kSortRun),
                [&](double x, double y) { return ++runs_cmp, x < y; });
    w = v;
    sort_checked(w, [&](double x, double y) { return ++all_cmp, x < y; });
  }
  CHECK(all_cmp > runs_cmp);
  std::uint64_t comparisons = 0;
  const std::uint64_t stop_at = runs_cmp + (all_cmp - runs_cmp) / 2;  // in the middle of the merges
  bool interrupted = false;
  {
    CallScope call(false);
    try {
      sort_checked(v, [&](double a, double b) {
        if (++comparisons == stop_at) stop_all_calls();
        return a < b;
      });
    } catch (const Interrupted&) {
      interrupted = true;
    }
  }
  CHECK(interrupted);
  CHECK(comparisons >= stop_at);
  std::sort(v.begin(), v.end());
  std::sort(ref.begin(), ref.end());
  CHECK(v == ref);
}

}  // namespace

#define RUN(f)                                                                                     \
  do {                                                                                             \
    const auto t0 = std::chrono::steady_clock::now();                                              \
    f();                                                                                           \
    std::printf("%s %.2f s\n", #f,                                                                 \
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());     \
  } while (0)

int main() {
  RUN(test_every_index_once);
  RUN(test_first_error_rethrown);
  RUN(test_nested_error_is_the_first);
  RUN(test_error_in_one_call_does_not_stop_another);
  RUN(test_signal_stops_only_the_polling_call);
  RUN(test_owner_polls_while_workers_run);
  RUN(test_stop_all_calls);
  RUN(test_no_call_no_stop);
  RUN(test_sort_checked);
  return interp_engine_test::check_report("test_parallel");
}
