// One channel's KLL sketch (quantile.hpp for the algorithm): compaction,
// update, merge, the rank and quantile queries, and the rebuild from a saved
// state.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "quantile_internal.hpp"

namespace interp_engine {
namespace quantile {

using namespace detail;

KllSketch::KllSketch(int k, std::uint64_t rng_state) : k_(k), rng_(rng_state) {
  if (k < kMinCap) throw std::invalid_argument("k must be >= " + std::to_string(kMinCap));
  if (k > kMaxK) throw std::invalid_argument("k must be <= 2^30; got " + std::to_string(k));
  f_.add_level();
}

// One splitmix64 draw per compaction (compactions are rare next to items),
// so the whole random state is the single word rng_ and a state_dict round
// trip continues the exact same stream.
bool KllSketch::random_bit() { return (splitmix64(rng_) >> 63) != 0; }

int KllSketch::num_levels() const {
  return static_cast<int>(wide_ ? d_.levels.size() : f_.levels.size());
}

std::vector<double> KllSketch::level(int h) const {
  std::vector<double> out;
  if (wide_) {
    out = d_.levels[static_cast<std::size_t>(h)];
  } else {
    const auto& l = f_.levels[static_cast<std::size_t>(h)];
    out.assign(l.begin(), l.end());
  }
  const bool runs = wide_ ? !d_.bounds[static_cast<std::size_t>(h)].empty() : !f_.bounds[static_cast<std::size_t>(h)].empty();
  if (h > 0 && runs) std::sort(out.begin(), out.end());
  return out;
}

namespace {
// k * (2/3)^depth for depth < kMaxLevels (no pow() in the update loop)
struct PowTable {
  double v[64];
  PowTable() {
    v[0] = 1.0;
    for (int i = 1; i < 64; ++i) v[i] = v[i - 1] * (2.0 / 3.0);
  }
};
const PowTable kPow;
}  // namespace

template <typename T>
int KllSketch::capacity(const KllLevels<T>& L, int h) const {
  const int depth = static_cast<int>(L.levels.size()) - 1 - h;
  const double c = static_cast<double>(k_) * kPow.v[depth];
  const int cap = std::max(kMinCap, static_cast<int>(std::lround(c)));
  return h == 0 ? std::max(cap, level0_min(k_)) : cap;
}

template <typename T>
std::size_t KllSketch::total_capacity(const KllLevels<T>& L) const {
  std::size_t t = 0;
  for (int h = 0; h < static_cast<int>(L.levels.size()); ++h) t += static_cast<std::size_t>(capacity(L, h));
  return t;
}

std::size_t KllSketch::capacity_bound(int k, int levels) {
  std::size_t t = 0;
  for (int h = 0; h < levels; ++h) {
    const double c = static_cast<double>(k) * kPow.v[levels - 1 - h];
    const long cap = std::max<long>(kMinCap, std::lround(c));
    t += static_cast<std::size_t>(h == 0 ? std::max<long>(cap, level0_min(k)) : cap);
  }
  return t;
}

std::size_t KllSketch::retained() const { return wide_ ? d_.retained() : f_.retained(); }

std::size_t KllSketch::memory_bytes() const {
  std::size_t b = sizeof(*this);
  for (const auto& l : f_.levels) b += sizeof(l) + l.capacity() * sizeof(float);
  for (const auto& l : d_.levels) b += sizeof(l) + l.capacity() * sizeof(double);
  return b;
}

template <typename T>
void KllSketch::compress_once(KllLevels<T>& L) {
  int h = 0;
  const int nl = static_cast<int>(L.levels.size());
  while (h < nl && L.levels[static_cast<std::size_t>(h)].size() < static_cast<std::size_t>(capacity(L, h))) ++h;
  if (h >= nl) return;  // nothing over capacity
  if (h == nl - 1) {
    if (nl >= kMaxLevels) throw std::runtime_error("quantile sketch: too many levels");
    L.add_level();
  }
  auto& cur = L.levels[static_cast<std::size_t>(h)];
  auto& nxt = L.levels[static_cast<std::size_t>(h) + 1];
  const std::size_t s = cur.size();
  const std::size_t start = s & 1u;  // odd size: the smallest item stays
  const std::size_t off = random_bit() ? 1u : 0u;
  // promoted items (sorted positions start+off, start+off+2, ...) become a
  // new sorted run of the next level
  const std::size_t np = (s - start) / 2;
  const std::size_t ns = nxt.size();
  if (ns > 0) L.bounds[static_cast<std::size_t>(h) + 1].push_back(static_cast<std::uint32_t>(ns));
  nxt.resize(ns + np);
  T* out = nxt.data() + ns;
  if (h == 0) {  // level 0: radix sort the keys, decode only what is kept
    const auto sk = radix_sort_split(cur.data(), s);
    sk.decode_every_other(start + off, np, out);
    if (start) cur[0] = ofrom(sk.at(0), T{});
  } else {
    const T* sorted = merge_runs_ptr(cur, L.bounds[static_cast<std::size_t>(h)]);
    const T* prom = sorted + start + off;
    for (std::size_t i = 0; i < np; ++i) out[i] = prom[2 * i];
    if (start) cur[0] = sorted[0];
  }
  cur.resize(start);
}

namespace {
// min / max of count >= 1 values (no NaN): mn = v < mn ? v : mn in 16
// independent lanes (SSE2 minps/maxps have exactly these semantics), then
// the lanes.  Only the sign of a zero extreme can depend on the order of the
// comparisons (-0.0 == +0.0); it is the same for any thread count.
template <typename T>
void min_max(const T* values, std::size_t count, T& mn, T& mx) {
  mn = values[0];
  mx = values[0];
  std::size_t i0 = 0;
#if defined(__SSE2__)
  constexpr std::size_t kLanes = 16;
  if (count >= kLanes) {
    constexpr bool f = std::is_same<T, float>::value;
    constexpr std::size_t W = f ? 4 : 2, R = kLanes / W;
    T lmn[kLanes], lmx[kLanes];
    if constexpr (f) {
      __m128 vmn[R], vmx[R];
      for (std::size_t r = 0; r < R; ++r) vmn[r] = vmx[r] = _mm_loadu_ps(values + r * W);
      for (i0 = kLanes; i0 + kLanes <= count; i0 += kLanes)
        for (std::size_t r = 0; r < R; ++r) {
          const __m128 v = _mm_loadu_ps(values + i0 + r * W);
          vmn[r] = _mm_min_ps(v, vmn[r]);
          vmx[r] = _mm_max_ps(v, vmx[r]);
        }
      for (std::size_t r = 0; r < R; ++r) {
        _mm_storeu_ps(lmn + r * W, vmn[r]);
        _mm_storeu_ps(lmx + r * W, vmx[r]);
      }
    } else {
      __m128d vmn[R], vmx[R];
      for (std::size_t r = 0; r < R; ++r) vmn[r] = vmx[r] = _mm_loadu_pd(values + r * W);
      for (i0 = kLanes; i0 + kLanes <= count; i0 += kLanes)
        for (std::size_t r = 0; r < R; ++r) {
          const __m128d v = _mm_loadu_pd(values + i0 + r * W);
          vmn[r] = _mm_min_pd(v, vmn[r]);
          vmx[r] = _mm_max_pd(v, vmx[r]);
        }
      for (std::size_t r = 0; r < R; ++r) {
        _mm_storeu_pd(lmn + r * W, vmn[r]);
        _mm_storeu_pd(lmx + r * W, vmx[r]);
      }
    }
    for (std::size_t l = 0; l < kLanes; ++l) {
      mn = lmn[l] < mn ? lmn[l] : mn;
      mx = lmx[l] > mx ? lmx[l] : mx;
    }
  }
#endif
  for (std::size_t i = i0; i < count; ++i) {
    mn = values[i] < mn ? values[i] : mn;
    mx = values[i] > mx ? values[i] : mx;
  }
}
}  // namespace

template <typename T>
void KllSketch::update_impl(KllLevels<T>& L, const T* values, std::size_t count) {
  T mn, mx;
  min_max(values, count, mn, mx);
  if (n_ == 0) {
    min_ = static_cast<double>(mn);
    max_ = static_cast<double>(mx);
  } else {
    min_ = std::min(min_, static_cast<double>(mn));
    max_ = std::max(max_, static_cast<double>(mx));
  }
  n_ += count;
  std::size_t ret = L.retained();
  std::size_t cap = total_capacity(L);
  while (count > 0) {
    if (ret >= cap) {
      compress_once(L);
      ret = L.retained();
      cap = total_capacity(L);
      continue;
    }
    const std::size_t take = std::min(count, cap - ret);
    auto& l0 = L.levels[0];
    if (l0.capacity() < l0.size() + take) l0.reserve(std::max(l0.size() + take, std::min(cap, 2 * l0.capacity())));
    l0.insert(l0.end(), values, values + take);
    values += take;
    count -= take;
    ret += take;
  }
  while (L.retained() >= total_capacity(L)) compress_once(L);
  shrink(L);
}

void KllSketch::update(const float* values, std::size_t count) {
  if (count == 0) return;
  if (!wide_) {
    update_impl(f_, values, count);
    return;
  }
  double buf[512];
  while (count > 0) {
    const std::size_t t = std::min<std::size_t>(count, 512);
    for (std::size_t i = 0; i < t; ++i) buf[i] = static_cast<double>(values[i]);
    update_impl(d_, buf, t);
    values += t;
    count -= t;
  }
}

void KllSketch::update(const double* values, std::size_t count) {
  if (count == 0) return;
  if (!wide_) widen();
  update_impl(d_, values, count);
}

void KllSketch::widen() {
  d_.levels.clear();
  for (const auto& l : f_.levels) d_.levels.emplace_back(l.begin(), l.end());
  d_.bounds = f_.bounds;
  f_.levels.clear();
  f_.levels.shrink_to_fit();
  f_.bounds.clear();
  wide_ = true;
}

// Give back vector slack above twice a level's need, so that the allocated
// bytes stay within memory_bound_bytes() whatever the history.
template <typename T>
void KllSketch::shrink(KllLevels<T>& L) {
  for (int h = 0; h < static_cast<int>(L.levels.size()); ++h) {
    auto& l = L.levels[static_cast<std::size_t>(h)];
    const std::size_t need = std::max<std::size_t>(l.size(), static_cast<std::size_t>(capacity(L, h)));
    if (l.capacity() > 2 * need + 64) l.shrink_to_fit();
  }
}

std::size_t KllSketch::memory_bound_bytes(int k) {
  // each level's allocation <= 2*max(size, cap) + 64 after shrink(), the
  // sizes add up to < total capacity T and the caps to T: <= 4T + 64*levels
  // items, with T <= capacity_bound(k, kMaxLevels); double storage.
  const std::size_t T = capacity_bound(k, kMaxLevels);
  return sizeof(KllSketch) + static_cast<std::size_t>(kMaxLevels) * (sizeof(std::vector<double>) + 64 * 8) +
         4 * T * sizeof(double);
}

template <typename T>
void KllSketch::merge_levels(KllLevels<T>& L, const KllLevels<T>& other) {
  while (L.levels.size() < other.levels.size()) L.add_level();
  for (std::size_t h = 0; h < other.levels.size(); ++h) {
    const auto& src = other.levels[h];
    auto& dst = L.levels[h];
    const std::size_t mid = dst.size();
    if (src.empty()) continue;
    dst.insert(dst.end(), src.begin(), src.end());
    if (h > 0) {
      auto& b = L.bounds[h];
      if (mid > 0) b.push_back(static_cast<std::uint32_t>(mid));
      for (std::uint32_t x : other.bounds[h]) b.push_back(static_cast<std::uint32_t>(mid + x));
    }
  }
  while (L.retained() >= total_capacity(L)) compress_once(L);
  shrink(L);
}

void KllSketch::merge(const KllSketch& other) {
  if (other.n_ == 0) return;
  if (other.k_ != k_) throw std::invalid_argument("cannot merge sketches with different k");
  if (n_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  n_ += other.n_;
  if (other.wide_ && !wide_) widen();
  if (!wide_) {
    merge_levels(f_, other.f_);
  } else if (other.wide_) {
    merge_levels(d_, other.d_);
  } else {
    KllLevels<double> tmp;
    for (const auto& l : other.f_.levels) tmp.levels.emplace_back(l.begin(), l.end());
    tmp.bounds = other.f_.bounds;
    merge_levels(d_, tmp);
  }
}

namespace {
// Sorted copy of every level in thread-local buffers (level 0 radix-sorted,
// the run levels merged); valid until the next call on this thread.
template <typename T>
const std::vector<std::vector<T>>& sorted_levels(const KllLevels<T>& L) {
  thread_local std::vector<std::vector<T>> out;
  thread_local std::vector<std::uint32_t> bounds;
  out.resize(L.levels.size());
  for (std::size_t h = 0; h < L.levels.size(); ++h) {
    const auto& src = L.levels[h];
    auto& dst = out[h];
    dst.resize(src.size());
    if (src.empty()) continue;
    if (h == 0) {
      const auto* keys = radix_sort_keys(src.data(), src.size());
      for (std::size_t i = 0; i < src.size(); ++i) dst[i] = ofrom(keys[i], T{});
    } else {
      std::copy(src.begin(), src.end(), dst.begin());
      bounds = L.bounds[h];
      merge_runs(dst, bounds);
    }
  }
  return out;
}

// Weight of the retained items <= v (i.e. the estimated inclusive rank).
template <typename T>
std::uint64_t weight_le(const std::vector<std::vector<T>>& S, double v) {
  std::uint64_t w = 0;
  for (std::size_t h = 0; h < S.size(); ++h) {
    const auto& l = S[h];
    const std::size_t c = static_cast<std::size_t>(
        std::upper_bound(l.begin(), l.end(), v, [](double a, T x) { return a < static_cast<double>(x); }) - l.begin());
    w += static_cast<std::uint64_t>(c) << h;
  }
  return w;
}

// Smallest retained value whose weight_le is >= target (the same answer as a
// lower_bound on the cumulative weights of the merged view: ties do not
// matter); false when none reaches it.  Per level, a binary search over its
// sorted items (weight_le is monotone along a sorted level).
template <typename T>
bool smallest_reaching(const std::vector<std::vector<T>>& S, double target, double& out) {
  bool found = false;
  double best = 0;
  for (const auto& l : S) {
    std::size_t lo = 0, hi = l.size();  // first index reaching target in [lo, hi]
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (static_cast<double>(weight_le(S, static_cast<double>(l[mid]))) < target) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < l.size()) {
      const double c = static_cast<double>(l[lo]);
      if (!found || c < best) best = c;
      found = true;
    }
  }
  out = best;
  return found;
}

template <typename T>
void quantiles_of(const KllLevels<T>& L, std::uint64_t n, double mn, double mx, const double* ps, std::size_t m,
                  double* out) {
  const auto& S = sorted_levels(L);
  for (std::size_t t = 0; t < m; ++t) {
    const double p = ps[t];
    if (!(p > 0.0)) {
      out[t] = mn;
    } else if (p >= 1.0) {
      out[t] = mx;
    } else {
      double v;
      out[t] = smallest_reaching(S, p * static_cast<double>(n), v) ? v : mx;
    }
  }
}

template <typename T>
void ranks_of(const KllLevels<T>& L, std::uint64_t n, const double* values, std::size_t m, double* out) {
  const auto& S = sorted_levels(L);
  for (std::size_t t = 0; t < m; ++t)
    out[t] = static_cast<double>(weight_le(S, values[t])) / static_cast<double>(n);
}
}  // namespace

void KllSketch::quantiles(const double* ps, std::size_t m, double* out) const {
  if (n_ == 0) throw std::invalid_argument("quantile of an empty sketch");
  if (wide_) {
    quantiles_of(d_, n_, min_, max_, ps, m, out);
  } else {
    quantiles_of(f_, n_, min_, max_, ps, m, out);
  }
}

void KllSketch::ranks(const double* values, std::size_t m, double* out) const {
  if (n_ == 0) throw std::invalid_argument("rank of an empty sketch");
  if (wide_) {
    ranks_of(d_, n_, values, m, out);
  } else {
    ranks_of(f_, n_, values, m, out);
  }
}

KllSketch KllSketch::from_parts(int k, std::uint64_t rng_state, std::uint64_t n, double mn, double mx,
                                std::vector<std::vector<double>> levels, bool wide) {
  KllSketch s(k, rng_state);
  if (levels.empty()) levels.resize(1);
  if (static_cast<int>(levels.size()) > kMaxLevels) throw std::invalid_argument("too many levels");
  std::uint64_t weight = 0;
  for (std::size_t h = 0; h < levels.size(); ++h) {
    const auto& l = levels[h];
    for (std::size_t i = 0; i < l.size(); ++i) {
      const double v = l[i];
      if (v != v) throw std::invalid_argument("state holds NaN items");
      if (v < mn || v > mx) throw std::invalid_argument("state holds items outside [min, max]");
      if (h > 0 && i > 0 && l[i - 1] > v)
        throw std::invalid_argument("state level " + std::to_string(h) + " is not sorted");
      if (!wide && static_cast<double>(static_cast<float>(v)) != v)
        throw std::invalid_argument("state holds a non-float32 item in a float32 channel");
    }
    // in checked arithmetic: sizes << h must not wrap at 2^64
    const std::uint64_t sz = static_cast<std::uint64_t>(l.size());
    const std::uint64_t room = std::numeric_limits<std::uint64_t>::max() - weight;
    if (sz > (room >> h))
      throw std::invalid_argument("state items weigh more than 2^64 (level " + std::to_string(h) + " holds " +
                                  std::to_string(sz) + " items of weight 2^" + std::to_string(h) + ")");
    weight += sz << h;
  }
  if (weight != n)
    throw std::invalid_argument("state items weigh " + std::to_string(weight) + " but count is " + std::to_string(n));
  if (n > 0 && !(mn <= mx)) throw std::invalid_argument("state has min > max");
  if (n > 0 && !wide &&
      (static_cast<double>(static_cast<float>(mn)) != mn || static_cast<double>(static_cast<float>(mx)) != mx))
    throw std::invalid_argument("state has a non-float32 min/max in a float32 channel");
  s.n_ = n;
  s.min_ = mn;
  s.max_ = mx;
  s.f_.levels.clear();
  s.f_.bounds.clear();
  if (wide) {
    s.wide_ = true;
    s.d_.bounds.assign(levels.size(), {});
    s.d_.levels = std::move(levels);
  } else {
    for (const auto& l : levels) s.f_.levels.emplace_back(l.begin(), l.end());
    s.f_.bounds.assign(s.f_.levels.size(), {});
  }
  // what every sketch with this k keeps: fewer items than the total
  // capacity of its levels, and a top level created only when the level
  // below held k items (so n >= k 2^(L-2) with L >= 2 levels)
  const int L = s.num_levels();
  if (s.retained() >= capacity_bound(k, L))
    throw std::invalid_argument("state holds " + std::to_string(s.retained()) + " items, not fewer than the " +
                                std::to_string(capacity_bound(k, L)) + " that " + std::to_string(L) +
                                " levels of a k=" + std::to_string(k) + " sketch hold (a changed k?)");
  if (L >= 2 && (L - 2 >= 63 || n < (static_cast<std::uint64_t>(k) << (L - 2)) ||
                 (static_cast<std::uint64_t>(k) << (L - 2)) >> (L - 2) != static_cast<std::uint64_t>(k)))
    throw std::invalid_argument("state has " + std::to_string(L) + " levels for " + std::to_string(n) +
                                " observations: a k=" + std::to_string(k) + " sketch needs at least k x 2^" +
                                std::to_string(L - 2) + " for that (a changed k?)");
  return s;
}

}  // namespace quantile
}  // namespace interp_engine
