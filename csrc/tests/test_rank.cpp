// Standalone C++ test of rank.hpp / rank.cpp (no Python).
// Build and run:
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_rank.cpp csrc/src/rank.cpp csrc/src/bitset.cpp csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread -o /tmp/test_rank
//   /tmp/test_rank
#include "check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "interp_engine/bitset.hpp"
#include "interp_engine/rank.hpp"

using namespace interp_engine;

static bool close(double a, double b, double rtol) { return std::fabs(a - b) <= rtol * std::fabs(b); }

static rank::ActivationsView view(const std::vector<double>& x, std::size_t n, std::size_t k) {
  rank::ActivationsView v;
  v.data = x.data();
  v.dtype = Dtype::F64;
  v.n = n;
  v.k = k;
  v.stride_n = static_cast<std::ptrdiff_t>(k);
  v.stride_k = 1;
  return v;
}

// (C x N) bit matrix from dense labels lab[i * C + c]
static bits::BitMatrix concept_rows(const std::vector<char>& lab, std::size_t n, std::size_t c) {
  bits::BitMatrix m(c, n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t q = 0; q < c; ++q) m.put(q, i, lab[i * c + q] != 0);
  return m;
}

static void test_midranks_and_auc() {
  std::mt19937_64 rng(1);
  const std::size_t n = 157, k = 3, c = 9;
  std::vector<double> x(n * k);
  for (auto& v : x) v = static_cast<double>(rng() % 12);  // many ties
  std::vector<double> mr(n * k);
  rank::midranks(view(x, n, k), mr.data(), 2);
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t i = 0; i < n; ++i) {
      double less = 0, eq = 0;
      for (std::size_t q = 0; q < n; ++q) {
        less += x[q * k + j] < x[i * k + j];
        eq += x[q * k + j] == x[i * k + j];
      }
      CHECK(mr[i * k + j] == less + (eq + 1) / 2);
    }
  std::vector<char> lab(n * c);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t q = 0; q < c; ++q) lab[i * c + q] = (rng() % (q + 2)) == 0;
  for (std::size_t i = 0; i < n; ++i) lab[i * c + c - 1] = 0;  // a concept with no positive
  bits::BitMatrix rows = concept_rows(lab, n, c);
  std::vector<double> auc(k * c), p(k * c);
  rank::auc_pvalues(view(x, n, k), rows.view(), auc.data(), p.data(), 2);
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t q = 0; q < c; ++q) {
      double u = 0, n1 = 0, n0 = 0;
      for (std::size_t i = 0; i < n; ++i) (lab[i * c + q] ? n1 : n0) += 1;
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t o = 0; o < n; ++o)
          if (lab[i * c + q] && !lab[o * c + q]) u += x[i * k + j] > x[o * k + j] ? 1.0 : (x[i * k + j] == x[o * k + j] ? 0.5 : 0.0);
      if (n1 == 0 || n0 == 0) {
        CHECK(std::isnan(auc[j * c + q]));
        CHECK(std::isnan(p[j * c + q]));
      } else {
        CHECK(close(auc[j * c + q], u / (n1 * n0), 1e-14));
      }
    }
}

static void test_pvalue_against_scipy() {
  // values computed with scipy.stats.mannwhitneyu(x[~m], x[m], method="asymptotic") on float64
  auto p_of = [](const std::vector<double>& x, const std::vector<char>& m) {
    bits::BitMatrix rows(1, x.size());
    for (std::size_t i = 0; i < x.size(); ++i) rows.put(0, i, m[i] != 0);
    double auc, p;
    rank::auc_pvalues(view(x, x.size(), 1), rows.view(), &auc, &p, 1);
    return p;
  };
  CHECK(close(p_of({1, 2, 2, 3, 5, 5, 5, 0, 4, 2}, {0, 1, 0, 1, 1, 0, 1, 0, 1, 1}), 0.22932167909160506, 1e-12));
  std::vector<double> x(40);
  std::vector<char> m(40);
  for (int i = 0; i < 40; ++i) {
    x[static_cast<std::size_t>(i)] = i % 7;
    m[static_cast<std::size_t>(i)] = i % 3 == 0;
  }
  CHECK(close(p_of(x, m), 0.7855126359372668, 1e-12));
  x.resize(200);
  m.resize(200);
  for (int i = 0; i < 200; ++i) {
    x[static_cast<std::size_t>(i)] = i;
    m[static_cast<std::size_t>(i)] = i >= 150;
  }
  CHECK(close(p_of(x, m), 3.738192903890058e-26, 1e-10));
  // constant data: p = 1 (scipy: z = -inf)
  CHECK(rank::mwu_pvalue(2 * 6, 3, 4, 7.0 * 7 * 7 - 7) == 1.0);
}

static void test_exact_pvalue() {
  // [7 choose 3]_q: the number of arrangements of 3 + 4 samples with U = u
  const double counts[13] = {1, 1, 2, 3, 4, 4, 5, 4, 4, 3, 2, 1, 1};
  rank::MwuNull null(3, 4);
  double acc = 0;
  for (int u = 0; u <= 12; ++u) {
    acc += counts[u];
    CHECK(close(null.cdf(u), acc / 35.0, 1e-15));
  }
  CHECK(null.cdf(-1) == 0.0 && null.cdf(12) == 1.0 && null.cdf(100) == 1.0);
  // U1 = 1 (2 U = 2): U = max(1, 11) = 11, p = 2 P(U >= 11) = 2 * 2 / 35
  CHECK(close(rank::mwu_exact_pvalue(2, 3, 4), 4.0 / 35.0, 1e-15));
  CHECK(rank::mwu_exact_pvalue(12, 3, 4) == 1.0);  // U1 = 6 = n1 n0 / 2
  // auto: exact for a group of <= 8 without ties, else asymptotic
  CHECK(rank::mwu_auto_is_exact(8, 100, false) && !rank::mwu_auto_is_exact(9, 100, false) &&
        !rank::mwu_auto_is_exact(3, 4, true));
  CHECK(rank::mwu_pvalue(2, 3, 4, 0.0, rank::PValueMethod::Auto) == rank::mwu_exact_pvalue(2, 3, 4));
  CHECK(rank::mwu_pvalue(2, 3, 4, 6.0, rank::PValueMethod::Auto) == rank::mwu_pvalue(2, 3, 4, 6.0));
  // too large a distribution is refused before allocation
  bool threw = false;
  try {
    rank::mwu_exact_pvalue(2 * (5000LL * 5000 / 2 - 100000), 5000, 5000);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

static void test_and_sums() {
  std::mt19937_64 rng(2);
  for (std::size_t n : {1u, 63u, 64u, 65u, 300u}) {
    const std::size_t c = 13;
    std::vector<double> x(n);
    for (auto& v : x) v = static_cast<double>(rng() % 5);
    std::vector<char> lab(n * c);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t q = 0; q < c; ++q) lab[i * c + q] = (rng() % 10) < q % 10;  // dense and sparse concepts
    bits::BitMatrix rows = concept_rows(lab, n, c);
    rank::ConceptIndex idx(rows.view(), 2);
    rank::Ranks r;
    std::vector<std::pair<double, std::uint32_t>> scratch;
    rank::neuron_ranks(view(x, n, 1), 0, r, scratch);
    bits::BitMatrix phi(1, n);
    std::int64_t n_phi = 0, r_phi = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (rng() % 3 == 0) {
        phi.put(0, i, true);
        ++n_phi;
        r_phi += r.r2[i];
      }
    std::vector<std::int64_t> cnt(c), sum(c), cnt2(c), sum2(c), acc;
    idx.and_sums(r.r2.data(), phi.row(0), n_phi, r_phi, cnt.data(), sum.data(), acc);
    rank::and_sums_bits(rows.view(), r.r2.data(), phi.row(0), cnt2.data(), sum2.data());
    for (std::size_t q = 0; q < c; ++q) {
      std::int64_t k = 0, s = 0;
      for (std::size_t i = 0; i < n; ++i)
        if (lab[i * c + q] && phi.get(0, i)) {
          ++k;
          s += r.r2[i];
        }
      CHECK(cnt[q] == k);
      CHECK(sum[q] == s);
      CHECK(cnt2[q] == k);
      CHECK(sum2[q] == s);
    }
  }
}

static void test_beam_search_invariants() {
  std::mt19937_64 rng(3);
  const std::size_t n = 200, k = 5, c = 8;
  std::vector<double> x(n * k);
  for (auto& v : x) v = static_cast<double>(rng() % 20);
  for (std::size_t i = 0; i < n; ++i) x[i * k + 4] = 1.0;  // constant neuron
  std::vector<char> lab(n * c);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t q = 0; q < c; ++q) lab[i * c + q] = (rng() % 10) < 1 + q;
  bits::BitMatrix rows = concept_rows(lab, n, c);
  rank::ConceptIndex idx(rows.view());
  rank::BeamParams prm;
  prm.length = 3;
  prm.beam = 6;
  prm.min_fraction = 0.05;
  prm.max_fraction = 0.5;
  std::vector<std::int64_t> neurons{0, 1, 2, 3, 4};
  rank::BeamOutput o = rank::beam_search(view(x, n, k), idx, prm, neurons, 2);
  CHECK(o.status[4] == rank::kConstant);
  CHECK(o.count[4] == 0);
  for (std::size_t j = 0; j < 4; ++j) {
    CHECK(o.status[j] == rank::kOk);
    CHECK(o.count[j] == prm.beam);
    std::set<std::vector<char>> seen;
    for (int b = 0; b < o.count[j]; ++b) {
      const std::size_t slot = j * 6 + static_cast<std::size_t>(b);
      if (b > 0) CHECK(o.auc[slot] <= o.auc[slot - 1]);
      // evaluate the formula left to right and recompute n1 and the AUC
      std::vector<char> in(n);
      for (std::size_t i = 0; i < n; ++i) {
        bool v = false;
        for (int t = 0; t < o.lengths[slot]; ++t) {
          const int code = o.codes[slot * 3 + static_cast<std::size_t>(t)];
          const bool a = (lab[i * c + static_cast<std::size_t>(code / 2)] != 0) != ((code & 1) != 0);
          v = t == 0 ? a : (o.ops[slot * 3 + static_cast<std::size_t>(t)] == rank::kAnd ? (v && a) : (v || a));
        }
        in[i] = v;
      }
      CHECK(seen.insert(in).second);  // distinct sample sets
      double n1 = 0, u = 0;
      for (std::size_t i = 0; i < n; ++i) n1 += in[i];
      CHECK(n1 == static_cast<double>(o.n1[slot]));
      CHECK(n1 / n >= 0.05 && n1 / n <= 0.5);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t q = 0; q < n; ++q)
          if (in[i] && !in[q]) u += x[i * k + j] > x[q * k + j] ? 1.0 : (x[i * k + j] == x[q * k + j] ? 0.5 : 0.0);
      CHECK(close(o.auc[slot], u / (n1 * (n - n1)), 1e-14));
      CHECK(o.pvalue[slot] > 0 && o.pvalue[slot] <= 1);
    }
  }
  // errors
  bool threw = false;
  x[7 * k + 2] = std::nan("");
  try {
    rank::beam_search(view(x, n, k), idx, prm, neurons, 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  prm.beam = 0;
  try {
    rank::beam_search(view(x, n, k), idx, prm, neurons, 1);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

int main() {
  test_midranks_and_auc();
  test_pvalue_against_scipy();
  test_exact_pvalue();
  test_and_sums();
  test_beam_search_invariants();
  return interp_engine_test::check_report("test_rank");
}
