// Streaming per-channel quantile sketch: see quantile.hpp for the algorithm.
#include "interp_engine/quantile.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "interp_engine/parallel.hpp"
#include "interp_engine/sort.hpp"

namespace interp_engine {
namespace quantile {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t channel_rng_seed(std::uint64_t seed, std::uint64_t channel) {
  std::uint64_t s = seed;
  const std::uint64_t a = splitmix64(s);
  std::uint64_t t = a ^ (channel * 0xD1B54A32D192ED03ULL);
  splitmix64(t);
  return splitmix64(t);
}

namespace {

constexpr std::size_t kBlock = 4096;

// Order-preserving maps float/double -> unsigned keys (NaN never reaches
// them; -0.0 sorts just before +0.0, which compare equal anyway).
inline std::uint64_t okey(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, 8);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ULL);
}
inline double ofrom(std::uint64_t u, double) {
  u = (u >> 63) ? (u & 0x7FFFFFFFFFFFFFFFULL) : ~u;
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
inline std::uint32_t okey(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u >> 31) ? ~u : (u | 0x80000000u);
}
inline float ofrom(std::uint32_t u, float) {
  u = (u >> 31) ? (u & 0x7FFFFFFFu) : ~u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// LSD radix sort (11-bit digits; digits equal for every item are skipped, so
// float32-derived doubles take 4 passes, floats at most 3).  Small inputs use
// std::sort.
template <typename T>
using KeyOf = decltype(okey(T{}));

// Sorts the order-preserving keys of v[0..n) and returns them (in a
// thread-local buffer valid until the next call on this thread).  n >= 1.
template <typename T>
const KeyOf<T>* radix_sort_keys_nz(const T* v, std::size_t n, std::size_t& below_out, std::size_t& zeros_out) {
  using K = KeyOf<T>;
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  constexpr int kDigits = (8 * static_cast<int>(sizeof(K)) + kBits - 1) / kBits;
  thread_local std::vector<K> a, b;
  thread_local std::vector<std::uint32_t> hist_store;
  a.resize(n);
  b.resize(n);
  if (n < 512) {
    for (std::size_t i = 0; i < n; ++i) a[i] = okey(v[i]);
    std::sort(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n));
    below_out = n;
    zeros_out = 0;
    return a.data();
  }
  // +0.0 (most of a ReLU activation stream) is taken out before sorting and
  // put back as one block: the keys are a bijection of the bits, so the
  // sorted key array is the same, and repeated keys would otherwise chain
  // every histogram/scatter increment on one counter.
  const K zero = okey(T{0});
  std::size_t m = 0, below = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const K k = okey(v[i]);
    a[m] = k;
    m += k != zero;
    below += k < zero;
  }
  const std::size_t zeros = n - m;
  K* src = a.data();
  K* dst = b.data();
  if (m > 0) {
    hist_store.assign(static_cast<std::size_t>(kDigits) * kBuckets, 0);
    std::uint32_t* hist = hist_store.data();
    for (std::size_t i = 0; i < m; ++i) {
      const K k = src[i];
      for (int d = 0; d < kDigits; ++d) ++hist[d * kBuckets + static_cast<int>((k >> (kBits * d)) & (kBuckets - 1))];
    }
    for (int d = 0; d < kDigits; ++d) {
      std::uint32_t* h = hist + d * kBuckets;
      if (h[(src[0] >> (kBits * d)) & (kBuckets - 1)] == m) continue;  // constant digit
      std::uint32_t sum = 0;
      for (int j = 0; j < kBuckets; ++j) {
        const std::uint32_t c = h[j];
        h[j] = sum;
        sum += c;
      }
      for (std::size_t i = 0; i < m; ++i) {
        const K k = src[i];
        dst[h[(k >> (kBits * d)) & (kBuckets - 1)]++] = k;
      }
      std::swap(src, dst);
    }
  }
  below_out = below;
  zeros_out = zeros;
  return src;
}

// The sorted keys of v[0..n) without the +0.0 block: sorted position p holds
// keys[p] for p < below, the key of +0.0 for p < below + zeros, and
// keys[p - zeros] after (thread-local buffer valid until the next call).
template <typename T>
struct SortedKeys {
  const KeyOf<T>* keys;
  std::size_t below, zeros;
  KeyOf<T> at(std::size_t p) const {
    return p < below ? keys[p] : p < below + zeros ? okey(T{0}) : keys[p - zeros];
  }
  // out[i] = value at position base + 2i for i < count, segment by segment
  void decode_every_other(std::size_t base, std::size_t count, T* out) const {
    const auto upto = [&](std::size_t lim) {  // number of i with base + 2i < lim
      return std::min(count, lim > base ? (lim - base + 1) / 2 : std::size_t{0});
    };
    const std::size_t i1 = upto(below), i2 = upto(below + zeros);
    for (std::size_t i = 0; i < i1; ++i) out[i] = ofrom(keys[base + 2 * i], T{});
    for (std::size_t i = i1; i < i2; ++i) out[i] = T{0};
    for (std::size_t i = i2; i < count; ++i) out[i] = ofrom(keys[base + 2 * i - zeros], T{});  // >= below
  }
};

template <typename T>
SortedKeys<T> radix_sort_split(const T* v, std::size_t n) {
  SortedKeys<T> r;
  r.keys = radix_sort_keys_nz(v, n, r.below, r.zeros);
  return r;
}

// Sorted keys of v[0..n) as one array (thread-local buffer).  n >= 1.
template <typename T>
const KeyOf<T>* radix_sort_keys(const T* v, std::size_t n) {
  std::size_t below, zeros;
  const KeyOf<T>* k = radix_sort_keys_nz(v, n, below, zeros);
  if (zeros == 0) return k;
  auto* src = const_cast<KeyOf<T>*>(k);  // a thread-local buffer of n keys
  std::memmove(src + below + zeros, src + below, (n - zeros - below) * sizeof(KeyOf<T>));
  std::fill(src + below, src + below + zeros, okey(T{0}));
  return src;
}

// LSD radix sort (11-bit digits; digits equal for every item are skipped, so
// float32-derived doubles take 4 passes, floats at most 3).
template <typename T>
void radix_sort(std::vector<T>& v) {
  if (v.empty()) return;
  const auto* keys = radix_sort_keys(v.data(), v.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = ofrom(keys[i], T{});
}

// Reads channel c of the batch (of type D) in blocks of OutT and calls
// fn(ptr, n).  NaN are dropped (and counted) when skip_nan; the caller
// guarantees there are none otherwise.
template <Dtype D, typename OutT, typename Fn>
void gather_typed(const StridedBatch& b, std::int64_t c, bool skip_nan, std::uint64_t& nan_count, OutT* buf,
                  Fn&& fn) {
  std::size_t fill = 0;
  const unsigned char* base = b.data + c * b.stride_c;
  using In = typename DtypeTraits<D>::Stored;
  const bool contiguous = b.stride_b == static_cast<std::int64_t>(sizeof(In));
  // long contiguous rows already of the output type go straight to fn (no
  // copy; the sketch does not depend on how the stream is chunked)
  constexpr bool same_type = std::is_same<In, OutT>::value;
  // (the rows of a numpy view may sit at any byte address: the direct path
  // needs aligned rows, the copy reads through memcpy)
  const bool aligned = (reinterpret_cast<std::uintptr_t>(base) % alignof(OutT)) == 0 &&
                       b.stride_a % static_cast<std::int64_t>(alignof(OutT)) == 0;
  const bool direct = same_type && contiguous && aligned && !skip_nan && b.size_b >= 1024;
  for (std::int64_t a = 0; a < b.size_a; ++a) {
    const unsigned char* row = base + a * b.stride_a;
    if (direct) {
      if (fill > 0) fn(static_cast<const OutT*>(buf), fill);
      fill = 0;
      const auto* r = reinterpret_cast<const OutT*>(row);
      constexpr std::int64_t kPiece = std::int64_t{1} << 20;  // a long row in pieces, Ctrl-C checked between
      for (std::int64_t j = 0; j < b.size_b; j += kPiece) {
        fn(r + j, static_cast<std::size_t>(std::min(kPiece, b.size_b - j)));
        check_interrupt();
      }
      continue;
    }
    std::int64_t j = 0;
    while (j < b.size_b) {
      const std::int64_t take = std::min<std::int64_t>(b.size_b - j, static_cast<std::int64_t>(kBlock - fill));
      OutT* dst = buf + fill;
      if (contiguous) {
        const unsigned char* src = row + j * static_cast<std::int64_t>(sizeof(In));
        for (std::int64_t t = 0; t < take; ++t) {
          In x;
          std::memcpy(&x, src + t * static_cast<std::int64_t>(sizeof(In)), sizeof(In));
          dst[t] = static_cast<OutT>(DtypeTraits<D>::widen(x));
        }
      } else {
        const unsigned char* p = row + j * b.stride_b;
        for (std::int64_t t = 0; t < take; ++t, p += b.stride_b) dst[t] = static_cast<OutT>(load_wide<D>(p));
      }
      std::size_t added = static_cast<std::size_t>(take);
      if (skip_nan) {  // compact NaN out of the freshly read part
        std::size_t w = 0;
        for (std::size_t t = 0; t < added; ++t) {
          const OutT v = dst[t];
          if (v != v) {
            ++nan_count;
          } else {
            dst[w++] = v;
          }
        }
        added = w;
      }
      fill += added;
      j += take;
      if (fill >= kBlock) {
        fn(static_cast<const OutT*>(buf), fill);
        fill = 0;
        check_interrupt();
      }
    }
  }
  if (fill > 0) fn(static_cast<const OutT*>(buf), fill);
}

// Values as double (exact for every type).
template <typename Fn>
void gather(const StridedBatch& b, std::int64_t c, bool skip_nan, std::uint64_t& nan_count, double* buf,
            Fn&& fn) {
  dispatch_dtype(b.dtype, [&](auto tag) { gather_typed<decltype(tag)::value>(b, c, skip_nan, nan_count, buf, fn); });
}

// Values as float for the 16/32-bit types, double for float64; fn must take
// both (const float*, n) and (const double*, n).
template <typename Fn>
void gather_native(const StridedBatch& b, std::int64_t c, bool skip_nan, std::uint64_t& nan_count, float* fbuf,
                   double* dbuf, Fn&& fn) {
  dispatch_dtype(b.dtype, [&](auto tag) {
    constexpr Dtype D = decltype(tag)::value;
    if constexpr (D == Dtype::F64) {
      gather_typed<D>(b, c, skip_nan, nan_count, dbuf, fn);
    } else {
      gather_typed<D>(b, c, skip_nan, nan_count, fbuf, fn);
    }
  });
}

void check_batch(const StridedBatch& b, std::int64_t channels) {
  if (b.channels != channels)
    throw std::invalid_argument("batch has " + std::to_string(b.channels) + " channels, expected " +
                                std::to_string(channels));
  if (b.size_a < 0 || b.size_b < 0) throw std::invalid_argument("negative batch extent");
}


}  // namespace

// ---------------------------------------------------------------- Checksum

namespace {
inline std::uint64_t mix64(std::uint64_t z) {  // splitmix64's finalizer: a bijection
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// sum and xor of mix64(bits of (double)v); written so that the compiler
// vectorizes it (4 independent accumulators, no loop-carried branch)
template <typename T>
inline void checksum_body(const T* v, std::size_t n, std::uint64_t& sum_out, std::uint64_t& xr_out) {
  std::uint64_t s = 0, x = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(v[i]);
    std::uint64_t b;
    std::memcpy(&b, &d, 8);
    const std::uint64_t h = mix64(b);
    s += h;
    x ^= h;
  }
  sum_out += s;
  xr_out ^= x;
}

template <typename T>
void checksum_generic(const T* v, std::size_t n, std::uint64_t& s, std::uint64_t& x) {
  checksum_body(v, n, s, x);
}
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IE_QUANTILE_X86_DISPATCH 1
template <typename T>
__attribute__((target("avx2"))) void checksum_avx2(const T* v, std::size_t n, std::uint64_t& s, std::uint64_t& x) {
  checksum_body(v, n, s, x);
}
template <typename T>
__attribute__((target("avx512f,avx512dq,avx512vl"))) void checksum_avx512(const T* v, std::size_t n,
                                                                         std::uint64_t& s, std::uint64_t& x) {
  checksum_body(v, n, s, x);
}
#endif

template <typename T>
using ChecksumFn = void (*)(const T*, std::size_t, std::uint64_t&, std::uint64_t&);

// The widest variant `allowed` permits (all give the same sums).
template <typename T>
ChecksumFn<T> checksum_fn(const cpu::Features& allowed) {
#ifdef IE_QUANTILE_X86_DISPATCH
  if (allowed.avx512f && allowed.avx512dq && allowed.avx512vl) return &checksum_avx512<T>;
  if (allowed.avx2) return &checksum_avx2<T>;
#endif
  (void)allowed;
  return &checksum_generic<T>;
}
}  // namespace

void Checksum::add(const float* values, std::size_t count, const cpu::Features& allowed) {
  checksum_fn<float>(allowed)(values, count, sum, xr);
}

void Checksum::add(const double* values, std::size_t count, const cpu::Features& allowed) {
  checksum_fn<double>(allowed)(values, count, sum, xr);
}

void Checksum::add(const float* values, std::size_t count) { add(values, count, cpu::allowed()); }

void Checksum::add(const double* values, std::size_t count) { add(values, count, cpu::allowed()); }

// ---------------------------------------------------------------- KllSketch

KllSketch::KllSketch(int k, std::uint64_t rng_state) : k_(k), rng_(rng_state) {
  if (k < kMinCap) throw std::invalid_argument("k must be >= " + std::to_string(kMinCap));
  if (k > kMaxK) throw std::invalid_argument("k must be <= 2^30; got " + std::to_string(k));
  f_.add_level();
}

namespace {
// Branchless two-ended merge state: the front takes the smallest remaining
// item (ties: x first), the back the largest (ties: y last), so each step
// advances two independent dependency chains.
template <typename T>
struct MergeEnds {
  const T* x;
  const T* y;
  T* o;
  std::ptrdiff_t nx, ny, i, j, I, J, k, K;
  MergeEnds(const T* x_, std::ptrdiff_t nx_, const T* y_, std::ptrdiff_t ny_, T* o_)
      : x(x_), y(y_), o(o_), nx(nx_), ny(ny_), i(0), j(0), I(nx_ - 1), J(ny_ - 1), k(0), K(nx_ + ny_ - 1) {}
  // steps that need no bound checks (neither end runs out, ends do not cross)
  std::ptrdiff_t safe() const {
    const std::ptrdiff_t s = std::min(std::min(nx - i, ny - j), std::min(I + 1, J + 1));
    return std::min(s, (K - k + 1) / 2);
  }
  inline void step() {
    const T u = x[i], w = y[j];
    const bool a = w < u;
    o[k++] = a ? w : u;
    i += !a;
    j += a;
    const T U = x[I], W = y[J];
    const bool b = W < U;
    o[K--] = b ? U : W;
    I -= b;
    J -= !b;
  }
  // the rest: outputs [k, K] are exactly x[i..I] and y[j..J]; merge from
  // the front until one is used up, then copy the other
  void finish() {
    while (i <= I && j <= J) {
      const T u = x[i], w = y[j];
      const bool a = w < u;
      o[k++] = a ? w : u;
      i += !a;
      j += a;
    }
    if (i <= I) std::copy(x + i, x + I + 1, o + k);
    if (j <= J) std::copy(y + j, y + J + 1, o + k);
    k = K + 1;
  }
};

// Stable merge of sorted x[0..nx) and y[0..ny) into o (equal items: x
// first), identical to std::merge.  The output is split in halves at the
// merge path and both halves merge from both ends at once: four independent
// chains instead of one load-compare-advance chain (~4x faster).
template <typename T>
void merge_two(const T* x, std::ptrdiff_t nx, const T* y, std::ptrdiff_t ny, T* o) {
  const std::ptrdiff_t h = (nx + ny) / 2;
  std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, h - ny), hi = std::min(h, nx);
  while (lo < hi) {  // number of x items among the first h outputs
    const std::ptrdiff_t mid = lo + (hi - lo) / 2;
    if (!(y[h - mid - 1] < x[mid])) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  MergeEnds<T> A(x, lo, y, h - lo, o), B(x + lo, nx - lo, y + (h - lo), ny - (h - lo), o + h);
  for (;;) {
    const std::ptrdiff_t s = std::min(A.safe(), B.safe());
    if (s <= 0) break;
    for (std::ptrdiff_t t = 0; t < s; ++t) {
      A.step();
      B.step();
    }
  }
  for (MergeEnds<T>* E : {&A, &B}) {
    for (;;) {
      const std::ptrdiff_t s = E->safe();
      if (s <= 0) break;
      for (std::ptrdiff_t t = 0; t < s; ++t) E->step();
    }
    E->finish();
  }
}

// Sorts a level made of sorted runs (run starts after the first in bounds)
// by bottom-up pairwise merging.
// Returns a pointer to the sorted items: v.data() or a thread-local buffer
// (valid until the next call on this thread); clears bounds.
template <typename T>
const T* merge_runs_ptr(std::vector<T>& v, std::vector<std::uint32_t>& bounds) {
  if (bounds.empty()) return v.data();
  thread_local std::vector<T> tmp;
  thread_local std::vector<std::size_t> starts, next;
  starts.assign(1, 0);
  for (std::uint32_t b : bounds) starts.push_back(b);
  tmp.resize(v.size());
  T* src = v.data();
  T* dst = tmp.data();
  const std::size_t n = v.size();
  while (starts.size() > 1) {
    next.clear();
    for (std::size_t r = 0; r < starts.size(); r += 2) {
      const std::size_t a = starts[r];
      const std::size_t b = r + 1 < starts.size() ? starts[r + 1] : n;
      const std::size_t e = r + 2 < starts.size() ? starts[r + 2] : n;
      merge_two(src + a, static_cast<std::ptrdiff_t>(b - a), src + b, static_cast<std::ptrdiff_t>(e - b), dst + a);
      next.push_back(a);
    }
    starts.swap(next);
    std::swap(src, dst);
  }
  bounds.clear();
  return src;
}

template <typename T>
void merge_runs(std::vector<T>& v, std::vector<std::uint32_t>& bounds) {
  const T* p = merge_runs_ptr(v, bounds);
  if (p != v.data()) std::copy(p, p + v.size(), v.data());
}
}  // namespace

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

// ------------------------------------------------------------ ChannelSketch

namespace {
// NaN test on raw bits: a magnitude (kAbs) above the bits of infinity
// (kInf), i.e. exponent all ones and mantissa non-zero (an unsigned max
// reduction over a row vectorizes).
template <Dtype D>
bool channel_has_nan(const StridedBatch& b, std::int64_t c) {
  using K = DtypeTraits<D>;
  using U = typename K::Bits;
  const unsigned char* base = b.data + c * b.stride_c;
  for (std::int64_t a = 0; a < b.size_a; ++a) {
    const unsigned char* row = base + a * b.stride_a;
    U mx = 0;
    if (b.stride_b == static_cast<std::int64_t>(sizeof(U))) {
      for (std::int64_t j = 0; j < b.size_b; ++j) {
        U u;  // memcpy: the row may be misaligned (compiles to a plain load)
        std::memcpy(&u, row + j * static_cast<std::int64_t>(sizeof(U)), sizeof(U));
        u = static_cast<U>(u & K::kAbs);
        mx = u > mx ? u : mx;
      }
    } else {
      for (std::int64_t j = 0; j < b.size_b; ++j) {
        U u;
        std::memcpy(&u, row + j * b.stride_b, sizeof(U));
        u = static_cast<U>(u & K::kAbs);
        mx = u > mx ? u : mx;
      }
    }
    if (mx > K::kInf) return true;
  }
  return false;
}
}  // namespace

namespace {
template <Dtype D>
bool span_has_nan(const unsigned char* data, std::size_t n) {
  using K = DtypeTraits<D>;
  using U = typename K::Bits;
  U mx = 0;
  for (std::size_t j = 0; j < n; ++j) {
    U u;  // memcpy: the data may be misaligned (compiles to a plain load)
    std::memcpy(&u, data + j * sizeof(U), sizeof(U));
    u = static_cast<U>(u & K::kAbs);
    mx = u > mx ? u : mx;
  }
  return mx > K::kInf;
}

// Calls fn(piece) on the pieces of channel c of b (one-channel views of at
// most about 64 Ki values: groups of whole rows, or parts of one long row),
// checking for Ctrl-C before each, until fn returns true.
template <typename Fn>
void for_each_piece(const StridedBatch& b, std::int64_t c, Fn&& fn) {
  constexpr std::int64_t kPiece = 65536;
  const std::int64_t rows = std::max<std::int64_t>(1, kPiece / std::max<std::int64_t>(1, b.size_b));
  const std::int64_t cols = std::min<std::int64_t>(b.size_b, kPiece);
  StridedBatch p = b;
  p.channels = 1;
  for (std::int64_t a = 0; a < b.size_a; a += rows)
    for (std::int64_t j = 0; j < b.size_b; j += cols) {
      check_interrupt();
      p.data = b.data + c * b.stride_c + a * b.stride_a + j * b.stride_b;
      p.size_a = std::min(rows, b.size_a - a);
      p.size_b = std::min(cols, b.size_b - j);
      if (fn(static_cast<const StridedBatch&>(p))) return;
    }
}

// When the batch's elements tile one dense block of memory (axes in any
// order, strides of any sign), its lowest address and element count: the
// NaN scan then reads memory in order instead of channel by channel (for a
// (N, C, H, W) batch a channel is N short rows far apart).
bool dense_block(const StridedBatch& b, const unsigned char*& lo, std::size_t& count) {
  const std::int64_t esz = static_cast<std::int64_t>(dtype_size(b.dtype));
  std::int64_t n[3] = {b.channels, b.size_a, b.size_b}, st[3] = {b.stride_c, b.stride_a, b.stride_b};
  const unsigned char* p = b.data;
  int m = 0;
  std::int64_t dn[3], ds[3];
  for (int i = 0; i < 3; ++i) {
    if (n[i] == 1) continue;
    std::int64_t s = st[i];
    if (s < 0) {
      p += (n[i] - 1) * s;
      s = -s;
    }
    int j = m++;
    while (j > 0 && ds[j - 1] > s) {  // insertion by stride
      dn[j] = dn[j - 1];
      ds[j] = ds[j - 1];
      --j;
    }
    dn[j] = n[i];
    ds[j] = s;
  }
  std::int64_t expect = esz, total = 1;
  for (int i = 0; i < m; ++i) {
    if (ds[i] != expect) return false;
    expect *= dn[i];
    total *= dn[i];
  }
  lo = p;
  count = static_cast<std::size_t>(total);
  return true;
}
}  // namespace

bool batch_has_nan(const StridedBatch& b, int num_threads) {
  if (b.channels == 0 || b.size_a == 0 || b.size_b == 0) return false;
  std::atomic<bool> found{false};
  const unsigned char* lo = nullptr;
  std::size_t total = 0;
  if (dense_block(b, lo, total)) {
    constexpr std::size_t kChunk = 65536;
    const std::size_t esz = dtype_size(b.dtype);
    parallel_for(
        (total + kChunk - 1) / kChunk, 4,
        [&](std::size_t i0, std::size_t i1, int) {
          for (std::size_t i = i0; i < i1 && !found.load(std::memory_order_relaxed); ++i) {
            check_interrupt();
            const unsigned char* p = lo + i * kChunk * esz;
            const std::size_t n = std::min(kChunk, total - i * kChunk);
            if (dispatch_dtype(b.dtype, [&](auto tag) { return span_has_nan<decltype(tag)::value>(p, n); }))
              found.store(true);
          }
        },
        num_threads);
    return found.load();
  }
  const std::size_t per = static_cast<std::size_t>(b.size_a * b.size_b);
  parallel_for(
      static_cast<std::size_t>(b.channels), std::max<std::size_t>(1, 262144 / std::max<std::size_t>(per, 1)),
      [&](std::size_t c0, std::size_t c1, int) {
        for (std::size_t c = c0; c < c1 && !found.load(std::memory_order_relaxed); ++c) {
          const auto ci = static_cast<std::int64_t>(c);
          bool r = false;
          for_each_piece(b, ci, [&](const StridedBatch& piece) {
            r = dispatch_dtype(b.dtype, [&](auto tag) { return channel_has_nan<decltype(tag)::value>(piece, 0); });
            return r;
          });
          if (r) found.store(true);
        }
      },
      num_threads);
  return found.load();
}

ChannelSketch::ChannelSketch(std::int64_t channels, int k, std::uint64_t seed) : k_(k), seed_(seed) {
  if (channels < 1) throw std::invalid_argument("num_channels must be >= 1");
  if (k < KllSketch::kMinCap || k > KllSketch::kMaxK)
    throw std::invalid_argument("k must be in [" + std::to_string(KllSketch::kMinCap) + ", 2^30]; got " +
                                std::to_string(k));
  // the sketch objects and their first level-0 buffers (level0_min items)
  Bytes need("ChannelQuantiles");
  need.add(channels, sizeof(KllSketch) + sizeof(std::uint64_t) + sizeof(Checksum) + 2 * sizeof(std::vector<float>));
  need.require();
  sketches_.reserve(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c)
    sketches_.emplace_back(k, channel_rng_seed(seed, static_cast<std::uint64_t>(c)));
  nan_count_.assign(static_cast<std::size_t>(channels), 0);
  checksums_.assign(static_cast<std::size_t>(channels), Checksum{});
}

void ChannelSketch::update(const StridedBatch& b, bool skip_nan, int num_threads) {
  check_batch(b, channels());
  if (b.size_a == 0 || b.size_b == 0) return;
  if (!skip_nan && batch_has_nan(b, num_threads))
    throw std::invalid_argument("x contains NaN (pass nan='skip' to ignore and count them)");
  const std::size_t per = static_cast<std::size_t>(b.size_a * b.size_b);
  const std::size_t grain = std::max<std::size_t>(1, 32768 / std::max<std::size_t>(per, 1));
  const std::size_t C = static_cast<std::size_t>(b.channels);
  // Channels cost different amounts (a channel of zeros sorts fast): hand
  // them out in small groups to whichever thread is free.  Each channel's
  // state and random stream are its own, so the result does not depend on
  // which thread takes it.
  const int t = effective_threads(C, grain, num_threads);
  const cpu::Features allowed = cpu::allowed();  // the checksum's instructions
  const std::size_t group = std::max<std::size_t>(grain, C / (static_cast<std::size_t>(t) * 8));
  const std::size_t groups = (C + group - 1) / group;
  parallel_for_dynamic(
      groups,
      [&](std::size_t g, int) {
        thread_local std::vector<double> dbuf(kBlock);
        thread_local std::vector<float> fbuf(kBlock);
        for (std::size_t c = g * group; c < std::min(C, (g + 1) * group); ++c) {
          KllSketch& s = sketches_[c];
          Checksum& cs = checksums_[c];
          gather_native(b, static_cast<std::int64_t>(c), skip_nan, nan_count_[c], fbuf.data(), dbuf.data(),
                        [&](const auto* p, std::size_t n) {
                          s.update(p, n);
                          cs.add(p, n, allowed);
                        });
        }
      },
      t);
}

namespace {
// fn(c) for every channel, channels split over threads, Ctrl-C checked per channel.
template <typename F>
void for_each_channel(std::size_t channels, int num_threads, F&& fn) {
  parallel_for(
      channels, 1,
      [&](std::size_t c0, std::size_t c1, int) {
        for (std::size_t c = c0; c < c1; ++c) {
          fn(c);
          check_interrupt();
        }
      },
      num_threads);
}

void require_observations(const std::vector<KllSketch>& sketches) {
  for (std::size_t c = 0; c < sketches.size(); ++c)
    if (sketches[c].n() == 0)
      throw std::invalid_argument("channel " + std::to_string(c) + " has no observations yet");
}
}  // namespace

void ChannelSketch::merge(const ChannelSketch& other, int num_threads) {
  if (&other == this)
    throw std::invalid_argument("cannot merge a sketch with itself (that would count the same data twice)");
  if (other.channels() != channels())
    throw std::invalid_argument("cannot merge sketches of " + std::to_string(other.channels()) + " and " +
                                std::to_string(channels()) + " channels");
  if (other.k_ != k_)
    throw std::invalid_argument("cannot merge sketches with k=" + std::to_string(other.k_) + " and k=" +
                                std::to_string(k_));
  // counts are checked before anything changes (n and nan counts: uint64)
  constexpr std::uint64_t kMaxCount = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::size_t c = 0; c < sketches_.size(); ++c) {
    const std::uint64_t a = sketches_[c].n(), b = other.sketches_[c].n();
    const std::uint64_t na = nan_count_[c], nb = other.nan_count_[c];
    if (a > kMaxCount - std::min(b, kMaxCount) || na > kMaxCount - std::min(nb, kMaxCount))
      throw std::invalid_argument("cannot merge: the count of channel " + std::to_string(c) +
                                  " would exceed 2^63 - 1; neither sketch was changed");
  }
  for_each_channel(sketches_.size(), num_threads, [&](std::size_t c) {
    sketches_[c].merge(other.sketches_[c]);
    nan_count_[c] += other.nan_count_[c];
    checksums_[c].merge(other.checksums_[c]);
  });
  checksum_known_ = checksum_known_ && other.checksum_known_;
}

void ChannelSketch::quantiles(const double* ps, std::size_t m, double* out, int num_threads) const {
  require_observations(sketches_);
  for_each_channel(sketches_.size(), num_threads,
                   [&](std::size_t c) { sketches_[c].quantiles(ps, m, out + c * m); });
}

void ChannelSketch::ranks(const double* values, std::size_t m, double* out, int num_threads) const {
  require_observations(sketches_);
  for_each_channel(sketches_.size(), num_threads,
                   [&](std::size_t c) { sketches_[c].ranks(values + c * m, m, out + c * m); });
}

// ---------------------------------------------------------------- ExactPass

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
