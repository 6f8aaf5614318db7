// Cost of the exact pass's value checksum next to the sketch update it rides on,
// per value on one core (docs/quantiles.md, "Cost of the value checksum"):
//   g++ -std=c++17 -O3 -DNDEBUG -Icsrc/include benchmarks/checksum_cost.cpp \
//       csrc/src/quantile_*.cpp csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread -o /tmp/checksum_cost && /tmp/checksum_cost
#include "interp_engine/quantile.hpp"
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
using namespace interp_engine::quantile;
int main() {
  const std::size_t n = 25'000'000;
  std::vector<float> f(n);
  std::mt19937 g(1);
  std::normal_distribution<float> d;
  for (auto& x : f) x = std::max(0.f, d(g) + 0.3f);
  for (int rep = 0; rep < 3; ++rep) {
    KllSketch s(25000, 1);
    Checksum c;
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; i += 4096) s.update(f.data() + i, std::min<std::size_t>(4096, n - i));
    auto t1 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; i += 4096) c.add(f.data() + i, std::min<std::size_t>(4096, n - i));
    auto t2 = std::chrono::steady_clock::now();
    double a = std::chrono::duration<double, std::nano>(t1 - t0).count() / n, b = std::chrono::duration<double, std::nano>(t2 - t1).count() / n;
    std::printf("sketch %.3f ns/value, checksum %.3f ns/value: +%.1f%%\n", a, b, 100 * b / a);
  }
}
