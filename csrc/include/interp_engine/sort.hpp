// A sort that a Ctrl-C (or any stop of the current call) interrupts within
// milliseconds: std::sort of runs of kSortRun items, then pairwise merges cut
// into pieces of about kSortRun output items, with check_interrupt() before
// each run and piece.  Same result as std::sort (a sorted permutation; equal
// items in unspecified order); a bit slower only above kSortRun items.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "interp_engine/parallel.hpp"

namespace interp_engine {

constexpr std::size_t kSortRun = std::size_t{1} << 16;

namespace detail {
// Merges sorted a[0, na) and b[0, nb) into out, in pieces of about `piece`
// output items found by binary search on the merge path.
template <typename T, typename Compare>
void merge_checked(const T* a, std::size_t na, const T* b, std::size_t nb, T* out, Compare comp,
                   std::size_t piece) {
  const std::size_t total = na + nb;
  std::size_t i0 = 0, j0 = 0;
  for (std::size_t k = 0; k < total;) {
    check_interrupt();
    const std::size_t kk = std::min(total, k + piece);
    // the largest i with a[i-1] not after b[kk-i] (the first kk outputs are
    // a[0, i) and b[0, kk - i))
    std::size_t lo = kk > nb ? kk - nb : 0, hi = std::min(kk, na);
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo + 1) / 2;
      const std::size_t j = kk - mid;
      if (j < nb && comp(b[j], a[mid - 1]))
        hi = mid - 1;
      else
        lo = mid;
    }
    const std::size_t i1 = lo, j1 = kk - lo;
    std::merge(a + i0, a + i1, b + j0, b + j1, out + k, comp);
    i0 = i1;
    j0 = j1;
    k = kk;
  }
}
}  // namespace detail

template <typename T, typename Compare>
void sort_checked(std::vector<T>& v, Compare comp) {
  const std::size_t n = v.size();
  if (n <= kSortRun) {
    std::sort(v.begin(), v.end(), comp);
    return;
  }
  for (std::size_t b = 0; b < n; b += kSortRun) {
    check_interrupt();
    std::sort(v.begin() + static_cast<std::ptrdiff_t>(b),
              v.begin() + static_cast<std::ptrdiff_t>(std::min(n, b + kSortRun)), comp);
  }
  std::vector<T> buf(n);
  T* src = v.data();  // always a whole permutation of the input
  T* dst = buf.data();
  try {
    for (std::size_t w = kSortRun; w < n; w *= 2) {
      for (std::size_t b = 0; b < n; b += 2 * w) {
        const std::size_t m = std::min(n, b + w), e = std::min(n, b + 2 * w);
        detail::merge_checked(src + b, m - b, src + m, e - m, dst + b, comp, kSortRun);
      }
      std::swap(src, dst);
    }
  } catch (...) {  // interrupted: leave v a permutation of its items
    if (src != v.data()) std::copy(src, src + n, v.data());
    throw;
  }
  if (src != v.data()) std::copy(src, src + n, v.data());
}

template <typename T>
void sort_checked(std::vector<T>& v) {
  sort_checked(v, [](const T& x, const T& y) { return x < y; });
}

}  // namespace interp_engine
