// The exact second pass (ExactPass, quantile.hpp): per channel and request,
// exact counts below, at and above the sketch's bracket and the values inside
// it, the selection of the wanted order statistics, merge and saved states.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "interp_engine/sort.hpp"
#include "quantile_internal.hpp"

namespace interp_engine {
namespace quantile {

using namespace detail;

ExactPass::ExactPass(std::int64_t channels, std::int64_t m, std::vector<double> lower, std::vector<double> upper,
                     std::int64_t cap)
    : channels_(channels), m_(m), cap_(cap) {
  if (channels < 1 || m < 1) throw std::invalid_argument("exact pass needs >= 1 channel and >= 1 request");
  if (cap < 0) throw std::invalid_argument("exact pass: cap must be >= 0");
  const std::int64_t nb = checked_mul(channels, m, "exact pass: channels x quantiles");
  // the brackets, and the values they may keep (at most cap each, as
  // doubles; vector growth may double that)
  Bytes need("exact pass");
  need.add(nb, sizeof(Bracket)).add(channels, 2 * sizeof(std::uint64_t) + sizeof(Checksum));
  need.add(checked_mul(nb, cap, "exact pass: brackets x cap"), sizeof(double));
  need.require();
  const std::size_t total = static_cast<std::size_t>(nb);
  if (lower.size() != total || upper.size() != total)
    throw std::invalid_argument("exact pass: bracket arrays must have channels*m entries");
  brackets_.resize(total);
  for (std::size_t i = 0; i < total; ++i) {
    if (!(lower[i] <= upper[i])) throw std::invalid_argument("exact pass: bracket lower > upper (or NaN)");
    brackets_[i].lo = lower[i];
    brackets_[i].hi = upper[i];
  }
  count_.assign(static_cast<std::size_t>(channels), 0);
  nan_count_.assign(static_cast<std::size_t>(channels), 0);
  checksums_.assign(static_cast<std::size_t>(channels), Checksum{});
}

void ExactPass::update(const StridedBatch& b, bool skip_nan, int num_threads) {
  check_batch(b, channels_);
  if (b.size_a == 0 || b.size_b == 0) return;
  if (!skip_nan && batch_has_nan(b, num_threads))
    throw std::invalid_argument("x contains NaN (pass nan='skip' to ignore and count them)");
  const std::size_t per = static_cast<std::size_t>(b.size_a * b.size_b);
  const cpu::Features allowed = cpu::allowed();  // the checksum's instructions
  parallel_for(
      static_cast<std::size_t>(channels_), std::max<std::size_t>(1, 32768 / std::max<std::size_t>(per, 1)),
      [&](std::size_t c0, std::size_t c1, int) {
        std::vector<double> buf(kBlock);
        for (std::size_t c = c0; c < c1; ++c) {
          Bracket* br = brackets_.data() + c * static_cast<std::size_t>(m_);
          Checksum& cs = checksums_[c];
          gather(b, static_cast<std::int64_t>(c), skip_nan, nan_count_[c], buf.data(), [&](const double* p, std::size_t n) {
            count_[c] += n;
            cs.add(p, n, allowed);
            for (std::int64_t j = 0; j < m_; ++j) {
              Bracket& B = br[j];
              const double lo = B.lo, hi = B.hi;
              std::uint64_t below = 0, eql = 0, eqh = 0;
              for (std::size_t i = 0; i < n; ++i) {
                const double v = p[i];
                below += v < lo;
                eql += v == lo;
                eqh += (v == hi) & (hi != lo);
                if (v > lo && v < hi) B.inside.push_back(v);
              }
              B.below += below;
              B.eq_lo += eql;
              B.eq_hi += eqh;
              B.sorted = false;
              if (static_cast<std::int64_t>(B.inside.size()) > cap_)
                throw std::runtime_error(
                    "exact pass: more than " + std::to_string(cap_) + " values fell inside the bracket of channel " +
                    std::to_string(c) + ": the data of the second pass differ from the first (or the margin is too wide)");
            }
          });
        }
      },
      num_threads);
}

void ExactPass::select(const std::int64_t* ranks, double* out, int num_threads) {
  parallel_for(
      static_cast<std::size_t>(channels_), 1,
      [&](std::size_t c0, std::size_t c1, int) {
        for (std::size_t c = c0; c < c1; ++c) {
          for (std::int64_t j = 0; j < m_; ++j) {
            Bracket& B = brackets_[c * static_cast<std::size_t>(m_) + static_cast<std::size_t>(j)];
            if (!B.sorted) {
              sort_checked(B.inside);  // up to `cap` values
              B.sorted = true;
            }
            for (int t = 0; t < 2; ++t) {
              const std::size_t idx = (c * static_cast<std::size_t>(m_) + static_cast<std::size_t>(j)) * 2 + t;
              std::int64_t r = ranks[idx];
              const std::int64_t r0 = r;
              double v;
              bool ok = true;
              if (r < 0 || static_cast<std::uint64_t>(r) < B.below) {
                ok = false;
                v = 0;
              } else {
                std::uint64_t ur = static_cast<std::uint64_t>(r) - B.below;
                if (ur < B.eq_lo) {
                  v = B.lo;
                } else if ((ur -= B.eq_lo) < B.inside.size()) {
                  v = B.inside[ur];
                } else if ((ur -= B.inside.size()) < B.eq_hi) {
                  v = B.hi;
                } else {
                  ok = false;
                  v = 0;
                }
              }
              if (!ok)
                throw std::runtime_error(
                    "exact pass: order statistic " + std::to_string(r0) + " of channel " + std::to_string(c) +
                    " fell outside the bracket [" + std::to_string(B.lo) + ", " + std::to_string(B.hi) +
                    "] (values below: " + std::to_string(B.below) +
                    "); the data of the second pass differ from the first");
              out[idx] = v;
            }
          }
        }
      },
      num_threads);
}

void ExactPass::merge(const ExactPass& o) {
  if (&o == this)
    throw std::invalid_argument("cannot merge an exact pass with itself (that would count the same data twice)");
  if (o.channels_ != channels_ || o.m_ != m_ || o.cap_ != cap_)
    throw std::invalid_argument("cannot merge exact passes of other shapes (channels " + std::to_string(o.channels_) +
                                " vs " + std::to_string(channels_) + ", quantiles " + std::to_string(o.m_) + " vs " +
                                std::to_string(m_) + ", cap " + std::to_string(o.cap_) + " vs " + std::to_string(cap_) +
                                ")");
  constexpr std::uint64_t kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  auto fits = [&](std::uint64_t a, std::uint64_t b) { return a <= kMax && b <= kMax - a; };
  // everything is checked before anything changes
  for (std::size_t i = 0; i < brackets_.size(); ++i) {
    const Bracket &A = brackets_[i], &B = o.brackets_[i];
    std::uint64_t la, lb, ha, hb;
    std::memcpy(&la, &A.lo, 8);
    std::memcpy(&lb, &B.lo, 8);
    std::memcpy(&ha, &A.hi, 8);
    std::memcpy(&hb, &B.hi, 8);
    if (la != lb || ha != hb)
      throw std::invalid_argument("cannot merge exact passes planned with other brackets (channel " +
                                  std::to_string(i / static_cast<std::size_t>(m_)) + "): plan both from one sketch");
    if (!fits(A.below, B.below) || !fits(A.eq_lo, B.eq_lo) || !fits(A.eq_hi, B.eq_hi))
      throw std::invalid_argument("cannot merge: a count would exceed 2^63 - 1; neither pass was changed");
    if (static_cast<std::int64_t>(A.inside.size() + B.inside.size()) > cap_)
      throw std::invalid_argument("cannot merge: more than " + std::to_string(cap_) +
                                  " values would lie inside the bracket of channel " +
                                  std::to_string(i / static_cast<std::size_t>(m_)) +
                                  " (the passes saw other data than the sketch); neither pass was changed");
  }
  for (std::size_t c = 0; c < count_.size(); ++c)
    if (!fits(count_[c], o.count_[c]) || !fits(nan_count_[c], o.nan_count_[c]))
      throw std::invalid_argument("cannot merge: the count of channel " + std::to_string(c) +
                                  " would exceed 2^63 - 1; neither pass was changed");
  for (std::size_t i = 0; i < brackets_.size(); ++i) {
    Bracket& A = brackets_[i];
    const Bracket& B = o.brackets_[i];
    A.below += B.below;
    A.eq_lo += B.eq_lo;
    A.eq_hi += B.eq_hi;
    A.inside.insert(A.inside.end(), B.inside.begin(), B.inside.end());
    A.sorted = A.inside.empty();
  }
  for (std::size_t c = 0; c < count_.size(); ++c) {
    count_[c] += o.count_[c];
    nan_count_[c] += o.nan_count_[c];
    checksums_[c].merge(o.checksums_[c]);
  }
}

ExactPass::State ExactPass::state() const {
  State st;
  const std::size_t nb = brackets_.size();
  st.lower.resize(nb);
  st.upper.resize(nb);
  st.below.resize(nb);
  st.eq_lo.resize(nb);
  st.eq_hi.resize(nb);
  st.inside_sizes.resize(nb);
  for (std::size_t i = 0; i < nb; ++i) {
    const Bracket& B = brackets_[i];
    st.lower[i] = B.lo;
    st.upper[i] = B.hi;
    st.below[i] = B.below;
    st.eq_lo[i] = B.eq_lo;
    st.eq_hi[i] = B.eq_hi;
    st.inside_sizes[i] = B.inside.size();
    const std::size_t at = st.inside.size();
    st.inside.insert(st.inside.end(), B.inside.begin(), B.inside.end());
    if (!B.sorted) std::sort(st.inside.begin() + static_cast<std::ptrdiff_t>(at), st.inside.end());
  }
  st.count = count_;
  st.nan_count = nan_count_;
  st.checksums = checksums_;
  return st;
}

ExactPass ExactPass::from_state(std::int64_t channels, std::int64_t m, std::int64_t cap, State st) {
  ExactPass p(channels, m, st.lower, st.upper, cap);  // checks shapes, lower <= upper, memory
  const std::size_t nb = p.brackets_.size(), C = static_cast<std::size_t>(channels);
  auto bad = [](const char* field, const std::string& why) {
    throw std::invalid_argument(std::string("'") + field + "' " + why);
  };
  if (st.below.size() != nb || st.eq_lo.size() != nb || st.eq_hi.size() != nb || st.inside_sizes.size() != nb)
    bad("below/eq_lo/eq_hi/inside_sizes", "must have channels x quantiles = " + std::to_string(nb) + " entries");
  if (st.count.size() != C || st.nan_count.size() != C || st.checksums.size() != C)
    bad("count/nan_count/checksum", "must have one entry per channel");
  constexpr std::uint64_t kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::size_t c = 0; c < C; ++c)
    if (st.count[c] > kMax || st.nan_count[c] > kMax) bad("count", "must be <= 2^63 - 1");
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < nb; ++i) {
    const std::size_t c = i / static_cast<std::size_t>(m);
    const std::uint64_t k = st.inside_sizes[i];
    if (k > static_cast<std::uint64_t>(cap)) bad("inside_sizes", "must be <= cap = " + std::to_string(cap));
    // the values of a channel fall below, at, inside or above each bracket
    std::uint64_t seen = 0;
    for (std::uint64_t v : {st.below[i], st.eq_lo[i], st.eq_hi[i], k}) {
      if (v > st.count[c] - std::min(seen, st.count[c])) {
        bad("below/eq_lo/eq_hi/inside_sizes", "of channel " + std::to_string(c) + " add up to more than its count " +
                                                  std::to_string(st.count[c]));
      }
      seen += v;
    }
    if (st.lower[i] == st.upper[i] && (st.eq_hi[i] != 0 || k != 0))
      bad("eq_hi", "must be 0 (with no value inside) where the bracket is one value");
    total += k;
    if (total > st.inside.size()) break;
  }
  if (total != st.inside.size())
    bad("inside_sizes", "add up to " + std::to_string(total) + " but 'inside' holds " + std::to_string(st.inside.size()));
  const double* v = st.inside.data();
  for (std::size_t i = 0; i < nb; ++i) {
    Bracket& B = p.brackets_[i];
    const std::size_t k = static_cast<std::size_t>(st.inside_sizes[i]);
    for (std::size_t j = 0; j < k; ++j)
      if (!(v[j] > B.lo && v[j] < B.hi))
        bad("inside", "holds " + std::to_string(v[j]) + " outside its bracket (" + std::to_string(B.lo) + ", " +
                          std::to_string(B.hi) + ")");
    B.inside.assign(v, v + k);
    B.sorted = std::is_sorted(B.inside.begin(), B.inside.end());
    B.below = st.below[i];
    B.eq_lo = st.eq_lo[i];
    B.eq_hi = st.eq_hi[i];
    v += k;
  }
  p.count_ = std::move(st.count);
  p.nan_count_ = std::move(st.nan_count);
  p.checksums_ = std::move(st.checksums);
  return p;
}

std::size_t ExactPass::memory_bytes() const {
  std::size_t b = sizeof(*this) + brackets_.capacity() * sizeof(Bracket);
  for (const auto& B : brackets_) b += B.inside.capacity() * sizeof(double);
  return b;
}

}  // namespace quantile
}  // namespace interp_engine
