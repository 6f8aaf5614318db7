// Sorting for the quantile sketch (quantile_internal.hpp): the radix sort of
// level 0's keys and the merges of a level's sorted runs.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "quantile_internal.hpp"

namespace interp_engine {
namespace quantile {
namespace detail {

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

template <typename T>
SortedKeys<T> radix_sort_split(const T* v, std::size_t n) {
  SortedKeys<T> r;
  r.keys = radix_sort_keys_nz(v, n, r.below, r.zeros);
  return r;
}

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

}  // namespace

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

template const KeyOf<float>* radix_sort_keys_nz(const float*, std::size_t, std::size_t&, std::size_t&);
template const KeyOf<double>* radix_sort_keys_nz(const double*, std::size_t, std::size_t&, std::size_t&);
template SortedKeys<float> radix_sort_split(const float*, std::size_t);
template SortedKeys<double> radix_sort_split(const double*, std::size_t);
template const KeyOf<float>* radix_sort_keys(const float*, std::size_t);
template const KeyOf<double>* radix_sort_keys(const double*, std::size_t);
template const float* merge_runs_ptr(std::vector<float>&, std::vector<std::uint32_t>&);
template const double* merge_runs_ptr(std::vector<double>&, std::vector<std::uint32_t>&);
template void merge_runs(std::vector<float>&, std::vector<std::uint32_t>&);
template void merge_runs(std::vector<double>&, std::vector<std::uint32_t>&);

}  // namespace detail
}  // namespace quantile
}  // namespace interp_engine
