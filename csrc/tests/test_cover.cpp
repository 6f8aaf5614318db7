// Standalone C++ test of bitset.hpp and cover.cpp (no Python).
// Build and run:
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_cover.cpp csrc/src/cover.cpp csrc/src/bitset.cpp csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread -o /tmp/test_cover
//   /tmp/test_cover


// Returns non-zero on failure.
#include "check.hpp"
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "interp_engine/bitset.hpp"
#include "interp_engine/cover.hpp"

using namespace interp_engine;


using Dense = std::vector<std::vector<char>>;

struct Csr {
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
};

static Csr to_csr(const Dense& d) {
  Csr c;
  for (const auto& row : d) {
    for (std::size_t j = 0; j < row.size(); ++j)
      if (row[j]) c.indices.push_back(static_cast<std::int32_t>(j));
    c.indptr.push_back(static_cast<std::int64_t>(c.indices.size()));
  }
  return c;
}

static bits::BitMatrix to_bits(const Dense& d, std::size_t m) {
  bits::BitMatrix b(d.size(), m);
  for (std::size_t i = 0; i < d.size(); ++i)
    for (std::size_t j = 0; j < m; ++j) b.put(i, j, d[i][j] != 0);
  return b;
}

// naive greedy, gains recomputed from scratch (integer weights)
static std::vector<std::int64_t> naive_greedy(const Dense& d, std::size_t m, const std::vector<std::int64_t>& w,
                                              std::int64_t budget, double target,
                                              std::vector<double>* gains) {
  std::vector<char> cov(m, 0);
  std::vector<std::int64_t> out;
  double total = 0;
  for (;;) {
    if (budget >= 0 && static_cast<std::int64_t>(out.size()) >= budget) break;
    if (total >= target) break;
    std::int64_t best = 0;
    std::int64_t bi = -1;
    for (std::size_t i = 0; i < d.size(); ++i) {
      std::int64_t g = 0;
      for (std::size_t j = 0; j < m; ++j)
        if (d[i][j] && !cov[j]) g += w[j];
      if (g > best) {
        best = g;
        bi = static_cast<std::int64_t>(i);
      }
    }
    if (bi < 0) break;
    for (std::size_t j = 0; j < m; ++j)
      if (d[static_cast<std::size_t>(bi)][j]) cov[j] = 1;
    out.push_back(bi);
    gains->push_back(static_cast<double>(best));
    total += static_cast<double>(best);
  }
  return out;
}

static void test_bitset() {
  std::mt19937_64 rng(1);
  // every popcount variant this CPU can run: the portable one and (x86) POPCNT
  const cpu::Features none = cpu::capped(cpu::detected(), cpu::Isa::Generic);
  const std::vector<const bits::Popcounts*> variants = {&bits::popcounts(none), &bits::popcounts(cpu::detected())};
  CHECK(variants[0] != variants[1] || !cpu::detected().popcnt);
  for (std::size_t n_bits : {0u, 1u, 63u, 64u, 65u, 130u, 1000u}) {
    const std::size_t nw = bits::words_for(n_bits);
    std::vector<std::uint8_t> dense(3 * n_bits);
    // any non-zero byte is a set bit
    std::vector<std::uint8_t> raw(3 * n_bits);
    for (auto& v : raw) v = (rng() & 1) ? static_cast<std::uint8_t>(1 + rng() % 255) : 0;
    for (std::size_t j = 0; j < raw.size(); ++j) dense[j] = raw[j] != 0;
    std::vector<bits::word_t> packed(3 * nw, ~bits::word_t{0});
    bits::pack_rows(raw.data(), 3, n_bits, n_bits, packed.data());
    std::vector<std::uint8_t> back(3 * n_bits, 7);
    bits::unpack_rows(packed.data(), 3, n_bits, nw, back.data());
    CHECK(back == dense);
    for (std::size_t r = 0; r < 3; ++r) {
      std::int64_t pc = 0;
      for (std::size_t j = 0; j < n_bits; ++j) pc += dense[r * n_bits + j];
      for (const bits::Popcounts* v : variants) CHECK(v->count(packed.data() + r * nw, nw) == pc);
      if (nw) CHECK((packed[r * nw + nw - 1] & ~bits::tail_mask(n_bits)) == 0);  // padding zero
      std::vector<std::size_t> seen;
      bits::for_each_bit(packed.data() + r * nw, nw, [&](std::size_t j) { seen.push_back(j); });
      CHECK(static_cast<std::int64_t>(seen.size()) == pc);
      CHECK(std::is_sorted(seen.begin(), seen.end()));
      for (auto j : seen) CHECK(dense[r * n_bits + j] == 1);
    }
    // and / andnot / or counts vs bytes
    const bits::word_t* a = packed.data();
    const bits::word_t* b = packed.data() + nw;
    std::int64_t ca = 0, cn = 0, co = 0;
    for (std::size_t j = 0; j < n_bits; ++j) {
      ca += dense[j] && dense[n_bits + j];
      cn += dense[j] && !dense[n_bits + j];
      co += dense[j] || dense[n_bits + j];
    }
    for (const bits::Popcounts* v : variants) {
      CHECK(v->count_and(a, b, nw) == ca);
      CHECK(v->count_andnot(a, b, nw) == cn);
      CHECK(v->count_or(a, b, nw) == co);
      // the words of a that differ from b, as a sparse set
      std::vector<std::uint32_t> idx;
      std::vector<bits::word_t> vals;
      for (std::size_t i = 0; i < nw; ++i)
        if (a[i] != b[i]) {
          idx.push_back(static_cast<std::uint32_t>(i));
          vals.push_back(a[i] ^ b[i]);
        }
      std::int64_t ci = 0;
      for (std::size_t i = 0; i < nw; ++i) ci += bits::popcount(a[i] & (a[i] ^ b[i]));
      CHECK(v->count_and_indexed(a, idx.data(), vals.data(), idx.size()) == ci);
    }
    std::vector<bits::word_t> tmp(nw);
    bits::and_into(tmp.data(), a, b, nw);
    CHECK(bits::is_subset(tmp.data(), a, nw) && bits::is_subset(tmp.data(), b, nw));
  }
  // documented bit order
  bits::BitMatrix m(1, 130);
  m.put(0, 0, true);
  m.put(0, 64, true);
  m.put(0, 129, true);
  CHECK(m.row(0)[0] == 1 && m.row(0)[1] == 1 && m.row(0)[2] == 2);
}

static void test_greedy_random() {
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t n = 1 + rng() % 12, m = 1 + rng() % 30;
    const double p = 0.05 + 0.6 * static_cast<double>(rng() % 1000) / 1000.0;
    Dense d(n, std::vector<char>(m, 0));
    for (auto& row : d)
      for (auto& v : row) v = (static_cast<double>(rng() % 1000) / 1000.0) < p;
    std::vector<std::int64_t> w(m, 1);
    const bool weighted = trial % 2 == 1;
    if (weighted)
      for (auto& x : w) x = static_cast<std::int64_t>(rng() % 4);
    const std::int64_t budget = trial % 3 == 0 ? static_cast<std::int64_t>(rng() % 5) : -1;
    const double target = trial % 5 == 0 ? static_cast<double>(rng() % 20) : cover::kNoTarget;
    std::vector<double> ref_g;
    auto ref = naive_greedy(d, m, w, budget, target, &ref_g);
    Csr c = to_csr(d);
    auto bm = to_bits(d, m);
    cover::Weights wt;
    if (weighted) wt.integer = w.data();
    std::vector<double> wr(w.begin(), w.end());
    cover::Weights wtr;
    wtr.real = wr.data();
    for (int fmt = 0; fmt < 2; ++fmt) {
      auto fam = fmt == 0 ? cover::SetFamily::csr(n, m, c.indptr.data(), c.indices.data())
                          : cover::SetFamily::packed(bm.view());
      auto r = cover::greedy_cover(fam, wt, budget, target, 1);
      CHECK(r.indices == ref);
      CHECK(r.gains == ref_g);
      auto r2 = cover::greedy_cover(fam, wtr, budget, target, 2);  // CELF with integer-valued doubles
      CHECK(r2.indices == ref);
      CHECK(r2.gains == ref_g);
    }
  }
}

static void test_ratio_small() {
  // cost rows over 3 elements, gain rows over 2 elements
  Dense cost = {{1, 0, 0}, {0, 0, 0}, {1, 1, 0}, {0, 0, 1}, {1, 0, 0}};
  Dense gain = {{1, 0}, {0, 0}, {1, 0}, {0, 0}, {0, 0}};
  Csr cc = to_csr(cost);
  auto gb = to_bits(gain, 2);
  auto cf = cover::SetFamily::csr(5, 3, cc.indptr.data(), cc.indices.data());
  auto gf = cover::SetFamily::packed(gb.view());
  auto r = cover::ratio_greedy_cover(cf, gf, 2, 1e-5, 1e-10, true, 1);
  CHECK(!r.reached && r.n_greedy == 1);
  CHECK((r.indices == std::vector<std::int64_t>{0, 1, 4}));
  CHECK(r.covered_cost == 1 && r.covered_gain == 1);
  auto r2 = cover::ratio_greedy_cover(cf, gf, 1, 1e-5, 1e-10, false, 1);
  CHECK(r2.reached && (r2.indices == std::vector<std::int64_t>{0}));
  // mismatched candidate counts
  auto gb3 = to_bits(Dense{{1, 0}}, 2);
  bool threw = false;
  try {
    cover::ratio_greedy_cover(cf, cover::SetFamily::packed(gb3.view()), 1, 1e-5, 1e-10, true, 1);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

// ratio_greedy_cover_many equals one ratio_greedy_cover call per problem
static void test_ratio_many() {
  std::mt19937_64 rng(7);
  std::vector<Dense> costs, gains;
  std::vector<bits::BitMatrix> cb, gb;
  std::vector<Csr> cc;
  const std::size_t n_prob = 37;
  for (std::size_t p = 0; p < n_prob; ++p) {
    const std::size_t n = 1 + rng() % 30, mc = rng() % 90, mg = 1 + rng() % 70;
    Dense c(n, std::vector<char>(mc)), g(n, std::vector<char>(mg));
    for (auto& row : c)
      for (auto& v : row) v = (rng() % 4) == 0;
    for (auto& row : g)
      for (auto& v : row) v = (rng() % 3) == 0;
    costs.push_back(c);
    gains.push_back(g);
  }
  for (std::size_t p = 0; p < n_prob; ++p) {
    cc.push_back(to_csr(costs[p]));
    cb.push_back(to_bits(costs[p], costs[p][0].size()));
    gb.push_back(to_bits(gains[p], gains[p][0].size()));
  }
  std::vector<cover::RatioProblem> ps(n_prob);
  for (std::size_t p = 0; p < n_prob; ++p) {
    // alternate CSR and packed cost families; some targets unreachable
    ps[p].cost = (p % 2) ? cover::SetFamily::packed(cb[p].view())
                         : cover::SetFamily::csr(costs[p].size(), costs[p][0].size(),
                                                 cc[p].indptr.data(), cc[p].indices.data());
    ps[p].gain = cover::SetFamily::packed(gb[p].view());
    ps[p].target = static_cast<double>(p % 5 == 0 ? gains[p][0].size() + 1 : (p * 3) % gains[p][0].size());
  }
  for (int threads : {1, 2, 4}) {
    auto many = cover::ratio_greedy_cover_many(ps, 1e-5, 1e-10, true, threads);
    CHECK(many.size() == n_prob);
    for (std::size_t p = 0; p < n_prob; ++p) {
      auto one = cover::ratio_greedy_cover(ps[p].cost, ps[p].gain, ps[p].target, 1e-5, 1e-10, true, 1);
      CHECK(many[p].indices == one.indices);
      CHECK(many[p].n_greedy == one.n_greedy && many[p].reached == one.reached);
      CHECK(many[p].covered_cost == one.covered_cost && many[p].covered_gain == one.covered_gain);
    }
  }
  CHECK(cover::ratio_greedy_cover_many({}, 1e-5, 1e-10, true, 2).empty());
  // an error in one problem is rethrown
  auto bad = ps;
  bad[3].gain = cover::SetFamily::packed(gb[4].view());
  bool threw = costs[3].size() == gains[4].size();  // same row count: no error expected
  try {
    cover::ratio_greedy_cover_many(bad, 1e-5, 1e-10, true, 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

static void test_bad_csr() {
  std::vector<std::int64_t> indptr{0, 2};
  std::vector<std::int32_t> dup{1, 1}, out{0, 9};
  for (auto* idx : {&dup, &out}) {
    bool threw = false;
    try {
      cover::greedy_cover(cover::SetFamily::csr(1, 5, indptr.data(), idx->data()), {}, -1,
                          cover::kNoTarget, 1);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
  }
  // empty families
  std::vector<std::int64_t> ip0{0};
  auto r = cover::greedy_cover(cover::SetFamily::csr(0, 0, ip0.data(), nullptr), {}, -1, cover::kNoTarget, 1);
  CHECK(r.indices.empty() && r.covered == 0);
}

static void test_sparse_to_csr() {
  // 3 x 4 matrix, COO with duplicates, any order
  std::vector<std::int32_t> row{2, 0, 0, 2, 1, 0}, col{1, 3, 0, 1, 2, 3};
  auto r = cover::csr_from_coo(3, 4, row.size(), row.data(), col.data());
  CHECK((r.indptr == std::vector<std::int64_t>{0, 2, 3, 4}));
  CHECK((r.indices == std::vector<std::int32_t>{0, 3, 2, 1}));
  std::vector<std::int32_t> bad{5};
  bool threw = false;
  try {
    cover::csr_from_coo(3, 4, 1, bad.data(), col.data());
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

int main() {
  test_sparse_to_csr();
  test_bitset();
  test_greedy_random();
  test_ratio_small();
  test_ratio_many();
  test_bad_csr();
  return interp_engine_test::check_report("test_cover");
}
