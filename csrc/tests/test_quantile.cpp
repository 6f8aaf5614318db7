// Standalone test of the pure C++ quantile sketch (no Python):
// Build and run from the worktree root:
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_quantile.cpp csrc/src/quantile_*.cpp csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread -o /tmp/tq && /tmp/tq
// Returns non-zero on failure.
#include "check.hpp"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "interp_engine/quantile.hpp"

using namespace interp_engine::quantile;


static std::uint64_t weight(const KllSketch& s) {
  std::uint64_t w = 0;
  for (int h = 0; h < s.num_levels(); ++h) w += static_cast<std::uint64_t>(s.level(h).size()) << h;
  return w;
}

static double max_rank_error(const KllSketch& s, std::vector<double> data) {
  std::sort(data.begin(), data.end());
  const double n = static_cast<double>(data.size());
  double worst = 0;
  for (int i = 1; i < 200; ++i) {
    const double p = i / 200.0;
    double v;
    s.quantiles(&p, 1, &v);
    const double below = static_cast<double>(std::lower_bound(data.begin(), data.end(), v) - data.begin()) / n;
    const double upto = static_cast<double>(std::upper_bound(data.begin(), data.end(), v) - data.begin()) / n;
    worst = std::max({worst, below - p, p - upto});
  }
  return worst;
}

static StridedBatch view(const std::vector<float>& x, std::int64_t channels) {
  // x laid out (N, C): channel c at x[i*C + c]
  StridedBatch b;
  b.data = reinterpret_cast<const unsigned char*>(x.data());
  b.dtype = interp_engine::Dtype::F32;
  b.channels = channels;
  b.size_a = 1;
  b.size_b = static_cast<std::int64_t>(x.size()) / channels;
  b.stride_c = 4;
  b.stride_a = 0;
  b.stride_b = 4 * channels;
  return b;
}

int main() {
  const int k = 200;
  std::mt19937_64 gen(1);
  std::normal_distribution<double> nd;

  // 1. weight invariant, min/max, bounded retained, accuracy (random and sorted)
  for (int order = 0; order < 3; ++order) {
    std::vector<double> data(300000);
    for (auto& v : data) v = nd(gen);
    if (order == 1) std::sort(data.begin(), data.end());
    if (order == 2) std::sort(data.rbegin(), data.rend());
    KllSketch s(k, channel_rng_seed(7, 0));
    for (std::size_t i = 0; i < data.size(); i += 1000) s.update(data.data() + i, 1000);
    CHECK(s.n() == data.size());
    CHECK(weight(s) == s.n());
    CHECK(s.min() == *std::min_element(data.begin(), data.end()));
    CHECK(s.max() == *std::max_element(data.begin(), data.end()));
    CHECK(s.retained() <= KllSketch::capacity_bound(k, s.num_levels()));
    CHECK(s.memory_bytes() <= KllSketch::memory_bound_bytes(k));
    for (int h = 1; h < s.num_levels(); ++h) {
      const std::vector<double> l = s.level(h);
      CHECK(std::is_sorted(l.begin(), l.end()));
    }
    CHECK(max_rank_error(s, data) <= 2.5 / k);
    double p0 = 0.0, p1 = 1.0, v0, v1;
    s.quantiles(&p0, 1, &v0);
    s.quantiles(&p1, 1, &v1);
    CHECK(v0 == s.min() && v1 == s.max());
  }

  // 2. merge: two halves vs one, weight invariant and bound
  {
    std::vector<double> data(200000);
    for (auto& v : data) v = std::exp(nd(gen));
    KllSketch a(k, 1), b(k, 2);
    a.update(data.data(), 100000);
    b.update(data.data() + 100000, 100000);
    a.merge(b);
    CHECK(a.n() == 200000 && weight(a) == a.n());
    CHECK(max_rank_error(a, data) <= 2.5 / k);
  }

  // 3. channels, determinism across thread counts, NaN rejected without change
  {
    const std::int64_t C = 5;
    std::vector<float> x(C * 40000);
    for (auto& v : x) v = static_cast<float>(nd(gen));
    ChannelSketch s1(C, k, 3), s2(C, k, 3);
    s1.update(view(x, C), false, 1);
    s2.update(view(x, C), false, 3);
    std::vector<double> ps = {0.1, 0.5, 0.99}, o1(C * 3), o2(C * 3);
    s1.quantiles(ps.data(), 3, o1.data(), 1);
    s2.quantiles(ps.data(), 3, o2.data(), 2);
    CHECK(o1 == o2);
    std::vector<float> bad = x;
    bad[17] = std::nanf("");
    bool threw = false;
    try {
      s1.update(view(bad, C), false, 2);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
    CHECK(s1.sketch(0).n() == 40000);
    s1.update(view(bad, C), true, 2);
    CHECK(s1.nan_count()[17 % C] == 1);

    // 4. exact pass: order statistics equal the sorted data
    std::vector<double> lower(C), upper(C);
    const double pl = 0.5 - 0.05, pu = 0.5 + 0.05;
    for (std::int64_t c = 0; c < C; ++c) {
      s2.sketch(c).quantiles(&pl, 1, &lower[c]);
      s2.sketch(c).quantiles(&pu, 1, &upper[c]);
    }
    ExactPass ep(C, 1, lower, upper, 40000);
    ep.update(view(x, C), false, 2);
    std::vector<std::int64_t> ranks(C * 2);
    for (std::int64_t c = 0; c < C; ++c) ranks[c * 2] = 19999, ranks[c * 2 + 1] = 20000;
    std::vector<double> out(C * 2);
    ep.select(ranks.data(), out.data(), 2);
    for (std::int64_t c = 0; c < C; ++c) {
      std::vector<double> col;
      for (std::size_t i = static_cast<std::size_t>(c); i < x.size(); i += C) col.push_back(x[i]);
      std::sort(col.begin(), col.end());
      CHECK(out[c * 2] == col[19999] && out[c * 2 + 1] == col[20000]);
    }
  }

  // 5. float storage, widening to double on float64 data, mixed merges
  {
    std::vector<float> f(100000);
    for (auto& v : f) v = static_cast<float>(nd(gen));
    std::vector<double> d(60000);
    for (auto& v : d) v = nd(gen) * 1e-9 + 1.0;  // needs float64 precision
    KllSketch a(k, 11), b(k, 12);
    a.update(f.data(), f.size());
    CHECK(!a.wide() && weight(a) == a.n());
    a.update(d.data(), d.size());
    CHECK(a.wide() && weight(a) == a.n() && a.n() == 160000);
    b.update(f.data(), f.size());
    b.merge(a);  // float sketch absorbs a double one: widens
    CHECK(b.wide() && weight(b) == b.n() && b.n() == 260000);
    std::vector<double> all(f.begin(), f.end());
    all.insert(all.end(), d.begin(), d.end());
    all.insert(all.end(), f.begin(), f.end());
    CHECK(max_rank_error(b, all) <= 2.5 / k);
    CHECK(b.max() == *std::max_element(all.begin(), all.end()));
  }

  // 6. from_parts validation
  {
    bool threw = false;
    try {
      KllSketch::from_parts(k, 1, 5, 0.0, 1.0, {{0.5, 0.25}}, true);  // weight 2 != 5
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
  }

  // 7. the value checksum: every variant this CPU can run (INTERP_ENGINE_ISA
  // levels) against a plain reference, float and double, odd lengths
  {
    auto mix = [](std::uint64_t z) {
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      return z ^ (z >> 31);
    };
    std::vector<double> d(1037);
    for (auto& v : d) v = nd(gen);
    d[5] = -0.0;
    d[6] = std::numeric_limits<double>::infinity();
    std::vector<float> f(d.begin(), d.end());
    Checksum rd, rf;
    for (std::size_t i = 0; i < d.size(); ++i) {
      std::uint64_t b;
      std::memcpy(&b, &d[i], 8);
      rd.sum += mix(b);
      rd.xr ^= mix(b);
      const double w = static_cast<double>(f[i]);
      std::memcpy(&b, &w, 8);
      rf.sum += mix(b);
      rf.xr ^= mix(b);
    }
    namespace cpu = interp_engine::cpu;
    for (cpu::Isa cap : {cpu::Isa::Generic, cpu::Isa::Avx2, cpu::Isa::Avx512}) {
      const cpu::Features allowed = cpu::capped(cpu::detected(), cap);
      for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, d.size()}) {
        Checksum cd, cf, ed, ef;
        cd.add(d.data(), n, allowed);
        cf.add(f.data(), n, allowed);
        for (std::size_t i = 0; i < n; ++i) {
          ed.add(d.data() + i, 1, cpu::capped(allowed, cpu::Isa::Generic));
          ef.add(f.data() + i, 1, cpu::capped(allowed, cpu::Isa::Generic));
        }
        CHECK(cd == ed && cf == ef);
        if (n == d.size()) CHECK(cd == rd && cf == rf);
      }
    }
  }

  return interp_engine_test::check_report("test_quantile");
}
