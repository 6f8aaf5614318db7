// Rank statistics and the INVERT beam search (see rank.hpp).
#include "interp_engine/rank.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "interp_engine/parallel.hpp"
#include "interp_engine/sort.hpp"

namespace interp_engine {
namespace rank {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_samples(std::size_t n, const char* what) {
  if (n > kMaxSamples)
    throw std::invalid_argument(std::string(what) + ": at most 2**31 - 1 samples are supported; got " +
                                std::to_string(n));
}

#if defined(__SIZEOF_INT128__)
using wide_t = __int128;
#else
using wide_t = long double;  // exact up to 2^64: enough for N up to ~ 2^16
#endif
}  // namespace

void neuron_ranks(const ActivationsView& a, std::size_t neuron, Ranks& out,
                  std::vector<std::pair<double, std::uint32_t>>& scratch) {
  const std::size_t n = a.n;
  check_samples(n, "activations");
  scratch.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double v = a.at(i, neuron);
    if (std::isnan(v))
      throw std::invalid_argument("activations: NaN at sample " + std::to_string(i) + " of neuron " +
                                  std::to_string(neuron) + " (NaN has no rank)");
    scratch[i] = {v, static_cast<std::uint32_t>(i)};
  }
  sort_checked(scratch, [](const std::pair<double, std::uint32_t>& x, const std::pair<double, std::uint32_t>& y) {
    return x.first < y.first;
  });
  out.r2.resize(n);
  out.tie_term = 0;
  out.total = static_cast<std::int64_t>(n) * static_cast<std::int64_t>(n + 1);
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && scratch[j].first == scratch[i].first) ++j;
    // positions i..j-1 (0-based) share the midrank ((i + 1) + j) / 2
    const auto r2 = static_cast<std::int64_t>(i + 1 + j);
    for (std::size_t q = i; q < j; ++q) out.r2[scratch[q].second] = r2;
    const double t = static_cast<double>(j - i);
    out.tie_term += t * t * t - t;
    i = j;
  }
  out.constant = n < 2 || scratch.front().first == scratch.back().first;
}

void midranks(const ActivationsView& a, double* out, int num_threads) {
  check_samples(a.n, "activations");
  const std::size_t k = a.k;
  parallel_for_dynamic(k, [&](std::size_t j, int) {
    thread_local std::vector<std::pair<double, std::uint32_t>> scratch;
    Ranks r;
    check_interrupt();
    neuron_ranks(a, j, r, scratch);
    for (std::size_t i = 0; i < a.n; ++i) {
      if ((i & 0xFFFF) == 0) check_interrupt();  // the first column written faults in the whole output
      out[i * k + j] = 0.5 * static_cast<double>(r.r2[i]);
    }
  }, num_threads);
}

double auc_from_u2(std::int64_t u2, std::int64_t n1, std::int64_t n0) {
  if (n1 <= 0 || n0 <= 0) return kNaN;
  return static_cast<double>(u2) / (2.0 * static_cast<double>(n1) * static_cast<double>(n0));
}

namespace {
// scipy.special.ndtr (cephes)
double ndtr(double a) {
  if (std::isnan(a)) return kNaN;
  const double x = a * 0.70710678118654752440;  // 1/sqrt(2)
  const double z = std::fabs(x);
  if (z < 0.70710678118654752440) return 0.5 + 0.5 * std::erf(x);
  double y = 0.5 * std::erfc(z);
  if (x > 0) y = 1.0 - y;
  return y;
}
}  // namespace

double mwu_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, double tie_term) {
  if (n1 <= 0 || n0 <= 0) return kNaN;
  const double u1 = 0.5 * static_cast<double>(u2);
  const double n1n0 = static_cast<double>(n1 * n0);
  const double u = std::max(u1, n1n0 - u1);
  const double mu = n1n0 / 2.0;
  const std::int64_t n = n1 + n0;
  const double s = std::sqrt(n1n0 / 12.0 *
                             (static_cast<double>(n + 1) - tie_term / static_cast<double>(n * (n - 1))));
  double num = u - mu;
  num -= 0.5;
  double z;
  if (s > 0) {
    z = num / s;
  } else {  // all values tied: scipy divides by zero (num = -0.5 -> z = -inf -> p = 1)
    z = num < 0 ? -std::numeric_limits<double>::infinity()
                : (num > 0 ? std::numeric_limits<double>::infinity() : kNaN);
  }
  double p = 2.0 * ndtr(-z);
  if (p > 1.0) p = 1.0;
  if (p < 0.0) p = 0.0;
  return p;
}

bool mwu_auto_is_exact(std::int64_t n1, std::int64_t n0, bool ties) {
  // scipy 1.17 _mwu_choose_method: asymptotic when both groups have more than 8
  // samples, else asymptotic when any value is tied, else exact
  if (n1 > 8 && n0 > 8) return false;
  return !ties;
}

MwuNull::MwuNull(std::int64_t m, std::int64_t n) : m_(m), n_(n) {
  if (m < 1 || n < 1)
    throw std::invalid_argument("Mann-Whitney exact distribution: group sizes must be >= 1; got " +
                                std::to_string(m) + " and " + std::to_string(n));
  if (m > (std::int64_t{1} << 31) || n > (std::int64_t{1} << 31))
    throw std::invalid_argument("Mann-Whitney exact distribution: group sizes must be <= 2**31; got " +
                                std::to_string(m) + " and " + std::to_string(n));
}

void MwuNull::build(std::int64_t k) {
  const std::int64_t a = std::min(m_, n_), b = std::max(m_, n_);
  // k + 1 <= m n + 1 <= 2^62 + 1: no overflow; then the documented limits
  if (k + 1 > kMaxEntries || a > kMaxWork / (k + 1))
    throw std::invalid_argument(
        "method='exact': the exact null distribution of U for groups of " + std::to_string(m_) + " and " +
        std::to_string(n_) + " samples up to U = " + std::to_string(k) + " needs " + std::to_string(k + 1) +
        " coefficients and " + std::to_string(a) + " passes over them (limits: 2**27 coefficients, 2**34 "
        "multiply-adds); use method='asymptotic' (or 'auto') for groups this large");
  const auto K = static_cast<std::size_t>(k);
  std::vector<double> c(K + 1, 0.0);
  c[0] = 1.0;
  for (std::int64_t i = 1; i <= a; ++i) {
    // c holds [b+i-1 choose i-1]_q / binom(b+i-1, i-1) (sum 1); multiply by
    // (1 - q^(b+i)) and scale by i / (b+i) (downwards: c[u - d] is still old) ...
    const auto d = static_cast<std::size_t>(b + i);
    const double scale = static_cast<double>(i) / static_cast<double>(b + i);
    for (std::size_t u = K + 1; u-- > 0;) {
      c[u] = scale * (u >= d ? c[u] - c[u - d] : c[u]);
      if ((u & 0x3FFFFF) == 0) check_interrupt();  // every 4 M coefficients (Ctrl-C < 100 ms)
    }
    // ... then divide by (1 - q^i) (upwards): [b+i choose i]_q / binom(b+i, i)
    const auto step = static_cast<std::size_t>(i);
    for (std::size_t u = step; u <= K; ++u) {
      c[u] += c[u - step];
      if ((u & 0x3FFFFF) == 0) check_interrupt();
    }
  }
  double acc = 0.0;
  cdf_.resize(K + 1);
  for (std::size_t u = 0; u <= K; ++u) {
    acc += std::max(c[u], 0.0);  // rounding can leave -1e-17 where the count is 0
    cdf_[u] = std::min(acc, 1.0);
  }
}

double MwuNull::cdf(std::int64_t k) {
  if (k < 0) return 0.0;
  const std::int64_t total = m_ * n_;  // < 2^62
  if (k >= total) return 1.0;
  if (k >= static_cast<std::int64_t>(cdf_.size())) {
    // grow geometrically (later calls with larger k reuse it), never past what is needed
    std::int64_t want = std::max<std::int64_t>(k, 2 * static_cast<std::int64_t>(cdf_.size()));
    want = std::min(want, total / 2 > k ? total / 2 : k);
    try {
      build(want);
    } catch (const std::invalid_argument&) {
      if (want == k) throw;
      build(k);
    }
  }
  return cdf_[static_cast<std::size_t>(k)];
}

void MwuNull::cdf_upto(std::int64_t k, double* out) {
  if (k < 0) return;
  cdf(std::min(k, m_ * n_ - 1));  // one build for the whole range
  for (std::int64_t j = 0; j <= k; ++j) out[j] = cdf(j);
}

double mwu_exact_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, MwuNull* null) {
  if (n1 <= 0 || n0 <= 0) return kNaN;
  const std::int64_t total = n1 * n0;
  // U = max(U1, U2) with U1 = u2 / 2 (a half-integer when values are tied);
  // scipy casts it to int64: floor for U >= 0
  const std::int64_t u_hi2 = std::max(u2, 2 * total - u2);  // 2 max(U1, U2)
  const std::int64_t u = u_hi2 / 2;
  const std::int64_t kc = total - u;  // P(U >= u) = P(U <= n1 n0 - u) (symmetry)
  if (2 * kc >= total) return 1.0;    // P >= 1/2: 2 P >= 1, clipped
  double p;
  if (null != nullptr && ((null->m() == n1 && null->n() == n0) || (null->m() == n0 && null->n() == n1))) {
    p = 2.0 * null->cdf(kc);
  } else {
    MwuNull local(n1, n0);
    p = 2.0 * local.cdf(kc);
  }
  return std::min(std::max(p, 0.0), 1.0);
}

double mwu_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, double tie_term, PValueMethod method,
                  MwuNull* null) {
  if (n1 <= 0 || n0 <= 0) return kNaN;
  bool exact = method == PValueMethod::Exact;
  if (method == PValueMethod::Auto) exact = mwu_auto_is_exact(n1, n0, tie_term > 0);
  return exact ? mwu_exact_pvalue(u2, n1, n0, null) : mwu_pvalue(u2, n1, n0, tie_term);
}

namespace {
// R2 sum over the set bits of a row
std::int64_t rank_sum(const std::int64_t* r2, const bits::word_t* row, std::size_t n_words) {
  std::int64_t s = 0;
  for (std::size_t w = 0; w < n_words; ++w) {
    bits::word_t x = row[w];
    const std::int64_t* base = r2 + w * 64;
    while (x) {
      s += base[bits::ctz(x)];
      x &= x - 1;
    }
  }
  return s;
}
}  // namespace

void auc_pvalues(const ActivationsView& a, const bits::BitMatrixView& sets, double* auc, double* p,
                 int num_threads, PValueMethod method) {
  if (sets.n_bits != a.n)
    throw std::invalid_argument("sets: expected rows of " + std::to_string(a.n) + " bits; got " +
                                std::to_string(sets.n_bits));
  check_samples(a.n, "activations");
  const std::size_t m = sets.rows;
  const std::size_t nw = bits::words_for(a.n);
  std::vector<std::int64_t> counts(m);
  const auto count = bits::popcounts(cpu::allowed()).count;
  for (std::size_t j = 0; j < m; ++j) {
    if ((j & 255) == 0) check_interrupt();
    counts[j] = count(sets.row(j), nw);
  }
  const auto n = static_cast<std::int64_t>(a.n);
  // exact null distributions depend only on the group sizes: one per distinct
  // min(n1, n0) per worker, kept across its neurons
  const int workers = effective_threads(a.k, 1, num_threads);
  std::vector<std::vector<MwuNull>> nulls(static_cast<std::size_t>(std::max(workers, 1)));
  parallel_for_dynamic(a.k, [&](std::size_t k, int t) {
    thread_local std::vector<std::pair<double, std::uint32_t>> scratch;
    Ranks r;
    check_interrupt();
    neuron_ranks(a, k, r, scratch);
    std::vector<MwuNull>& mine = nulls[std::min(static_cast<std::size_t>(t), nulls.size() - 1)];
    for (std::size_t j = 0; j < m; ++j) {
      if ((j & 15) == 0) check_interrupt();
      const std::int64_t n1 = counts[j];
      const std::int64_t s = rank_sum(r.r2.data(), sets.row(j), nw);
      const std::int64_t u2 = s - n1 * (n1 + 1);
      auc[k * m + j] = auc_from_u2(u2, n1, n - n1);
      if (p == nullptr) continue;
      MwuNull* null = nullptr;
      if (n1 > 0 && n1 < n && method != PValueMethod::Asymptotic) {
        const std::int64_t lo = std::min(n1, n - n1);
        for (MwuNull& x : mine)
          if (std::min(x.m(), x.n()) == lo) null = &x;
        if (null == nullptr && (method == PValueMethod::Exact || mwu_auto_is_exact(n1, n - n1, r.tie_term > 0))) {
          mine.emplace_back(lo, n - lo);
          null = &mine.back();
        }
      }
      p[k * m + j] = mwu_pvalue(u2, n1, n - n1, r.tie_term, method, null);
    }
  }, num_threads);
}

// ---------------------------------------------------------------- ConceptIndex
ConceptIndex::ConceptIndex(const bits::BitMatrixView& labels, int num_threads)
    : labels_(labels), c_(labels.rows), n_(labels.n_bits) {
  if (c_ > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("labels: too many concepts");
  check_samples(n_, "labels");
  require_memory(static_cast<std::int64_t>(n_) + 1, 2 * sizeof(std::int64_t), "concept index");
  const std::size_t nw = bits::words_for(n_);
  counts_.assign(c_, 0);
  complemented_.assign(c_, 0);
  const auto count = bits::popcounts(cpu::allowed()).count;
  parallel_for(c_, 16, [&](std::size_t b, std::size_t e, int) {
    for (std::size_t c = b; c < e; ++c) {
      counts_[c] = count(labels.row(c), nw);
      complemented_[c] = static_cast<std::uint8_t>(2 * counts_[c] > static_cast<std::int64_t>(n_));
    }
  }, num_threads);
  const bits::word_t tail = bits::tail_mask(n_);
  // calls fn(j) for the samples stored for concept c (its complement when complemented)
  auto for_stored = [&](std::size_t c, auto&& fn) {
    const bits::word_t* row = labels.row(c);
    const bool inv = complemented_[c] != 0;
    for (std::size_t w = 0; w < nw; ++w) {
      bits::word_t x = inv ? ~row[w] : row[w];
      if (w + 1 == nw) x &= tail;
      bits::for_each_bit_in_word(x, w, fn);
    }
  };
  rowptr_.assign(n_ + 1, 0);
  for (std::size_t c = 0; c < c_; ++c) {
    check_interrupt();
    for_stored(c, [&](std::size_t j) { ++rowptr_[j + 1]; });
  }
  for (std::size_t j = 0; j < n_; ++j) rowptr_[j + 1] += rowptr_[j];
  require_memory(rowptr_[n_], sizeof(std::uint32_t), "concept index");
  idx_.resize(static_cast<std::size_t>(rowptr_[n_]));
  std::vector<std::int64_t> fill(rowptr_.begin(), rowptr_.end() - 1);
  for (std::size_t c = 0; c < c_; ++c) {
    check_interrupt();
    const auto cc = static_cast<std::uint32_t>(c);
    for_stored(c, [&](std::size_t j) { idx_[static_cast<std::size_t>(fill[j]++)] = cc; });
  }
}

void ConceptIndex::and_sums(const std::int64_t* r2, const bits::word_t* phi, std::int64_t n_phi,
                            std::int64_t r_phi, std::int64_t* cnt, std::int64_t* sum,
                            std::vector<std::int64_t>& acc) const {
  acc.assign(2 * c_, 0);
  std::int64_t* A = acc.data();
  const std::int64_t* rp = rowptr_.data();
  const std::uint32_t* ix = idx_.data();
  const std::size_t nw = bits::words_for(n_);
  for (std::size_t w = 0; w < nw; ++w) {
    bits::word_t x = phi[w];
    while (x) {
      const std::size_t j = w * 64 + static_cast<std::size_t>(bits::ctz(x));
      x &= x - 1;
      const std::int64_t r = r2[j];
      for (std::int64_t q = rp[j], e = rp[j + 1]; q < e; ++q) {
        std::int64_t* slot = A + 2 * static_cast<std::size_t>(ix[q]);
        slot[0] += 1;
        slot[1] += r;
      }
    }
  }
  for (std::size_t c = 0; c < c_; ++c) {
    if (complemented_[c]) {
      cnt[c] = n_phi - A[2 * c];
      sum[c] = r_phi - A[2 * c + 1];
    } else {
      cnt[c] = A[2 * c];
      sum[c] = A[2 * c + 1];
    }
  }
}

void and_sums_bits(const bits::BitMatrixView& labels, const std::int64_t* r2, const bits::word_t* phi,
                   std::int64_t* cnt, std::int64_t* sum) {
  const std::size_t nw = bits::words_for(labels.n_bits);
  for (std::size_t c = 0; c < labels.rows; ++c) {
    const bits::word_t* row = labels.row(c);
    std::int64_t k = 0, s = 0;
    for (std::size_t w = 0; w < nw; ++w) {
      bits::word_t x = row[w] & phi[w];
      if (!x) continue;
      k += bits::popcount(x);
      const std::int64_t* base = r2 + w * 64;
      while (x) {
        s += base[bits::ctz(x)];
        x &= x - 1;
      }
    }
    cnt[c] = k;
    sum[c] = s;
  }
}

// ---------------------------------------------------------------- beam search
namespace {

// A formula of the beam, with its samples materialized.
struct Member {
  std::vector<std::int32_t> seq;  // code_0, op_1, code_1, ... (2 * len - 1 entries)
  std::int64_t n1 = 0, r = 0, u2 = 0;
  std::vector<bits::word_t> bits;
  int len() const { return static_cast<int>((seq.size() + 1) / 2); }
};

// A candidate: an existing member (parent < 0, member = index), an atom
// (parent == kAtom), or member `parent` extended by (op, atom).
constexpr std::int32_t kExisting = -1;
constexpr std::int32_t kAtom = -2;
struct Cand {
  std::int64_t n1 = 0, r = 0, u2 = 0;
  std::int32_t parent = kAtom;
  std::int32_t member = -1;
  std::int32_t atom = -1;
  std::int8_t op = -1;
  std::int32_t len = 1;
};

struct Search {
  const ActivationsView& a;
  const ConceptIndex& index;
  const BeamParams& prm;
  std::size_t n, c, nw;
  bits::word_t tail;

  // per neuron
  Ranks rk;
  std::vector<std::pair<double, std::uint32_t>> scratch;
  std::vector<std::int64_t> rc, cnt, sum, acc;
  std::vector<Member> beam, next;
  std::vector<Cand> pool;
  std::vector<std::uint32_t> order;
  std::int64_t evaluations = 0;

  Search(const ActivationsView& a_, const ConceptIndex& idx, const BeamParams& p)
      : a(a_), index(idx), prm(p), n(a_.n), c(idx.num_concepts()), nw(bits::words_for(a_.n)),
        tail(bits::tail_mask(a_.n)) {}

  bool admissible(std::int64_t n1) const {
    if (n1 <= 0 || n1 >= static_cast<std::int64_t>(n)) return false;
    const double f = static_cast<double>(n1) / static_cast<double>(n);
    return f >= prm.min_fraction && f <= prm.max_fraction;
  }

  std::int32_t seq_len(const Cand& x) const { return 2 * x.len - 1; }
  std::int32_t seq_at(const Cand& x, std::int32_t i) const {
    if (x.parent == kAtom) return x.atom;
    if (x.parent == kExisting) return beam[static_cast<std::size_t>(x.member)].seq[static_cast<std::size_t>(i)];
    const Member& p = beam[static_cast<std::size_t>(x.parent)];
    const auto pl = static_cast<std::int32_t>(p.seq.size());
    if (i < pl) return p.seq[static_cast<std::size_t>(i)];
    return i == pl ? x.op : x.atom;
  }

  // strict "x before y": better AUC, then shorter, then smaller sequence
  bool before(const Cand& x, const Cand& y) const {
    const std::int64_t x0 = static_cast<std::int64_t>(n) - x.n1, y0 = static_cast<std::int64_t>(n) - y.n1;
    const wide_t lhs = static_cast<wide_t>(x.u2) * static_cast<wide_t>(y.n1) * static_cast<wide_t>(y0);
    const wide_t rhs = static_cast<wide_t>(y.u2) * static_cast<wide_t>(x.n1) * static_cast<wide_t>(x0);
    if (lhs != rhs) return prm.negative ? lhs < rhs : lhs > rhs;
    if (x.len != y.len) return x.len < y.len;
    const std::int32_t m = seq_len(x);
    for (std::int32_t i = 0; i < m; ++i) {
      const std::int32_t u = seq_at(x, i), v = seq_at(y, i);
      if (u != v) return u < v;
    }
    return false;
  }

  void materialize(const Cand& x, Member& out) const {
    out.n1 = x.n1;
    out.r = x.r;
    out.u2 = x.u2;
    out.bits.resize(nw);
    if (x.parent == kExisting) {
      const Member& m = beam[static_cast<std::size_t>(x.member)];
      out.seq = m.seq;
      out.bits = m.bits;
      return;
    }
    const std::size_t concept = static_cast<std::size_t>(x.atom) / 2;
    const bool neg = (x.atom & 1) != 0;
    const bits::word_t* row = index.labels().row(concept);
    if (x.parent == kAtom) {
      out.seq.assign(1, x.atom);
      for (std::size_t w = 0; w < nw; ++w) out.bits[w] = neg ? ~row[w] : row[w];
    } else {
      const Member& p = beam[static_cast<std::size_t>(x.parent)];
      out.seq = p.seq;
      out.seq.push_back(x.op);
      out.seq.push_back(x.atom);
      const bits::word_t* pb = p.bits.data();
      for (std::size_t w = 0; w < nw; ++w) {
        const bits::word_t cw = neg ? ~row[w] : row[w];
        out.bits[w] = x.op == kAnd ? (pb[w] & cw) : (pb[w] | cw);
      }
    }
    if (nw) out.bits[nw - 1] &= tail;
  }

  // Selects the best B distinct (by sample set) candidates of `pool` into `next`.
  void select() {
    const std::size_t size = pool.size();
    order.resize(size);
    for (std::size_t i = 0; i < size; ++i) order[i] = static_cast<std::uint32_t>(i);
    auto cmp = [&](std::uint32_t i, std::uint32_t j) { return before(pool[i], pool[j]); };
    const auto B = static_cast<std::size_t>(prm.beam);
    std::size_t sorted = std::min(size, 4 * B + 8);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(sorted), order.end(), cmp);
    next.clear();
    Member tmp;
    for (std::size_t i = 0; i < size && next.size() < B; ++i) {
      if (i == sorted) {
        const std::size_t more = std::min(size, 4 * sorted);
        std::partial_sort(order.begin() + static_cast<std::ptrdiff_t>(sorted),
                          order.begin() + static_cast<std::ptrdiff_t>(more), order.end(), cmp);
        sorted = more;
      }
      const Cand& x = pool[order[i]];
      bool dup = false;
      bool built = false;
      for (const Member& m : next) {
        if (m.n1 != x.n1 || m.r != x.r) continue;
        if (!built) {
          materialize(x, tmp);
          built = true;
        }
        if (std::equal(m.bits.begin(), m.bits.end(), tmp.bits.begin())) {
          dup = true;
          break;
        }
      }
      if (dup) continue;
      if (!built) materialize(x, tmp);
      next.push_back(std::move(tmp));
      tmp = Member();
    }
  }

  Cand make(std::int64_t n1, std::int64_t r, std::int32_t parent, std::int32_t atom, std::int8_t op,
            std::int32_t len) const {
    Cand x;
    x.n1 = n1;
    x.r = r;
    x.u2 = r - n1 * (n1 + 1);
    x.parent = parent;
    x.atom = atom;
    x.op = op;
    x.len = len;
    return x;
  }

  // Runs the search for one neuron; returns the status.
  std::int8_t run(std::size_t neuron) {
    neuron_ranks(a, neuron, rk, scratch);
    beam.clear();
    evaluations = 0;
    if (rk.constant) return kConstant;
    const auto N = static_cast<std::int64_t>(n);
    const std::vector<std::int64_t>& nc = index.counts();
    // rank sums of every concept: phi = all samples
    rc.resize(c);
    cnt.resize(c);
    sum.resize(c);
    {
      std::vector<bits::word_t> all(nw, ~bits::word_t{0});
      if (nw) all[nw - 1] &= tail;
      index.and_sums(rk.r2.data(), all.data(), N, rk.total, cnt.data(), rc.data(), acc);
    }
    // length 1: every atom
    evaluations += static_cast<std::int64_t>(c);
    pool.clear();
    for (std::size_t q = 0; q < c; ++q) {
      const auto code = static_cast<std::int32_t>(2 * q);
      if (admissible(nc[q])) pool.push_back(make(nc[q], rc[q], kAtom, code, -1, 1));
      if (admissible(N - nc[q])) pool.push_back(make(N - nc[q], rk.total - rc[q], kAtom, code + 1, -1, 1));
    }
    select();
    beam.swap(next);
    for (int len = 2; len <= prm.length && !beam.empty(); ++len) {
      check_interrupt();
      pool.clear();
      for (std::size_t i = 0; i < beam.size(); ++i) {
        Cand keep;
        keep.n1 = beam[i].n1;
        keep.r = beam[i].r;
        keep.u2 = beam[i].u2;
        keep.parent = kExisting;
        keep.member = static_cast<std::int32_t>(i);
        keep.len = beam[i].len();
        pool.push_back(keep);
      }
      for (std::size_t i = 0; i < beam.size(); ++i) {
        const Member& phi = beam[i];
        const std::int64_t np = phi.n1, rp = phi.r;
        const std::int32_t plen = phi.len() + 1;
        const auto pi = static_cast<std::int32_t>(i);
        check_interrupt();
        index.and_sums(rk.r2.data(), phi.bits.data(), np, rp, cnt.data(), sum.data(), acc);
        for (std::size_t q = 0; q < c; ++q) {
          const std::int64_t k = cnt[q], s = sum[q];
          const auto code = static_cast<std::int32_t>(2 * q);
          {
            const std::int64_t n_or = np + nc[q] - k, n_andn = np - k, n_orn = N - nc[q] + k;
            evaluations += (k != np && k > 0) + (n_or != np && n_or < N) + (n_andn != np && n_andn > 0) +
                           (n_orn != np && n_orn < N);
          }
          // phi AND c
          if (k != np && admissible(k)) pool.push_back(make(k, s, pi, code, kAnd, plen));
          // phi OR c
          const std::int64_t n_or = np + nc[q] - k;
          if (n_or != np && admissible(n_or)) pool.push_back(make(n_or, rp + rc[q] - s, pi, code, kOr, plen));
          // phi AND NOT c
          const std::int64_t n_andn = np - k;
          if (n_andn != np && admissible(n_andn)) pool.push_back(make(n_andn, rp - s, pi, code + 1, kAnd, plen));
          // phi OR NOT c = NOT (NOT phi AND c)
          const std::int64_t n_orn = N - nc[q] + k;
          if (n_orn != np && admissible(n_orn))
            pool.push_back(make(n_orn, rk.total - rc[q] + s, pi, code + 1, kOr, plen));
        }
      }
      select();
      beam.swap(next);
    }
    return beam.empty() ? kNoFormula : kOk;
  }
};

}  // namespace

BeamOutput beam_search(const ActivationsView& a, const ConceptIndex& index, const BeamParams& prm,
                       const std::vector<std::int64_t>& neurons, int num_threads) {
  if (prm.length < 1) throw std::invalid_argument("length must be >= 1; got " + std::to_string(prm.length));
  if (prm.beam < 1) throw std::invalid_argument("beam must be >= 1; got " + std::to_string(prm.beam));
  if (index.num_samples() != a.n)
    throw std::invalid_argument("labels: expected " + std::to_string(a.n) + " samples; got " +
                                std::to_string(index.num_samples()));
  check_samples(a.n, "activations");
  for (std::int64_t j : neurons)
    if (j < 0 || static_cast<std::size_t>(j) >= a.k)
      throw std::invalid_argument("neurons: index " + std::to_string(j) + " out of range [0, " +
                                  std::to_string(a.k) + ")");
  BeamOutput out;
  const std::size_t K = neurons.size(), B = static_cast<std::size_t>(prm.beam),
                    L = static_cast<std::size_t>(prm.length);
  {
    const auto k = static_cast<std::int64_t>(K), b = static_cast<std::int64_t>(B), l = static_cast<std::int64_t>(L);
    const std::int64_t kb = checked_mul(k, b, "beam_search: neurons x beam");
    const std::int64_t kbl = checked_mul(kb, l, "beam_search: neurons x beam x length");
    Bytes need("beam_search");
    need.add(kb, 4 + 8 + 8 + 8 + 8).add(kbl, 4 + 1).add(k, 1 + 4 + 8);
    need.require();
  }
  out.num_neurons = K;
  out.beam = B;
  out.length = L;
  out.status.assign(K, kOk);
  out.count.assign(K, 0);
  out.lengths.assign(K * B, 0);
  out.codes.assign(K * B * L, -1);
  out.ops.assign(K * B * L, -1);
  out.n1.assign(K * B, 0);
  out.u2.assign(K * B, 0);
  out.auc.assign(K * B, kNaN);
  out.pvalue.assign(K * B, kNaN);
  out.evaluations.assign(K, 0);
  const auto N = static_cast<std::int64_t>(a.n);
  parallel_for_dynamic(K, [&](std::size_t i, int) {
    Search s(a, index, prm);
    check_interrupt();
    const std::size_t neuron = static_cast<std::size_t>(neurons[i]);
    out.status[i] = s.run(neuron);
    out.count[i] = static_cast<std::int32_t>(s.beam.size());
    out.evaluations[i] = s.evaluations;
    for (std::size_t b = 0; b < s.beam.size(); ++b) {
      const Member& m = s.beam[b];
      const std::size_t slot = i * B + b;
      const int len = m.len();
      out.lengths[slot] = len;
      for (int t = 0; t < len; ++t) {
        out.codes[slot * L + static_cast<std::size_t>(t)] = m.seq[static_cast<std::size_t>(2 * t)];
        if (t > 0) out.ops[slot * L + static_cast<std::size_t>(t)] = static_cast<std::int8_t>(m.seq[static_cast<std::size_t>(2 * t - 1)]);
      }
      out.n1[slot] = m.n1;
      out.u2[slot] = m.u2;
      out.auc[slot] = auc_from_u2(m.u2, m.n1, N - m.n1);
      if (prm.pvalues) out.pvalue[slot] = mwu_pvalue(m.u2, m.n1, N - m.n1, s.rk.tie_term, prm.pvalue_method);
    }
  }, num_threads);
  return out;
}

}  // namespace rank
}  // namespace interp_engine
