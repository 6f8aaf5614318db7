// Private declarations shared by the source files of the quantile area
// (quantile.hpp); not installed, not part of the public include directory:
//   quantile_sort.cpp      radix sort of a level's keys, merges of sorted runs
//   quantile_sketch.cpp    KllSketch: compaction, update, merge, queries, states
//   quantile_checksum.cpp  the order-independent checksum of the values
//   quantile_channels.cpp  ChannelSketch (all channels), the NaN scan of a batch
//   quantile_exact.cpp     ExactPass, the exact second pass
// and, here, the reading of a batch's channels shared by both passes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "interp_engine/dtype.hpp"
#include "interp_engine/parallel.hpp"
#include "interp_engine/quantile.hpp"

namespace interp_engine {
namespace quantile {
namespace detail {

constexpr std::size_t kBlock = 4096;  // values per block handed to the sketches

// ---------------------------------------------------------------------------
// Sorting (quantile_sort.cpp).

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

// The unsigned key type of T (uint32_t for float, uint64_t for double).
template <typename T>
using KeyOf = decltype(okey(T{}));

// Sorts the order-preserving keys of v[0..n) (LSD radix sort, 11-bit digits;
// digits equal for every item are skipped, so float32-derived doubles take 4
// passes, floats at most 3; small inputs use std::sort) without the +0.0
// block (+0.0, most of a ReLU activation stream, is taken out and put back as
// one block): below_out keys are below +0.0, zeros_out equal to it.  Returns
// the keys in a thread-local buffer valid until the next call on this
// thread.  n >= 1; T is float or double.
template <typename T>
const KeyOf<T>* radix_sort_keys_nz(const T* v, std::size_t n, std::size_t& below_out, std::size_t& zeros_out);

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
SortedKeys<T> radix_sort_split(const T* v, std::size_t n);

// Sorted keys of v[0..n) as one array (thread-local buffer).  n >= 1.
template <typename T>
const KeyOf<T>* radix_sort_keys(const T* v, std::size_t n);

// Sorts a level made of sorted runs (run starts after the first in bounds)
// by bottom-up pairwise merging (stable, equal to std::merge).  Returns a
// pointer to the sorted items: v.data() or a thread-local buffer (valid until
// the next call on this thread); clears bounds.
template <typename T>
const T* merge_runs_ptr(std::vector<T>& v, std::vector<std::uint32_t>& bounds);

// The same, sorted in place.
template <typename T>
void merge_runs(std::vector<T>& v, std::vector<std::uint32_t>& bounds);

// ---------------------------------------------------------------------------
// Reading a batch (both passes).

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

inline void check_batch(const StridedBatch& b, std::int64_t channels) {
  if (b.channels != channels)
    throw std::invalid_argument("batch has " + std::to_string(b.channels) + " channels, expected " +
                                std::to_string(channels));
  if (b.size_a < 0 || b.size_b < 0) throw std::invalid_argument("negative batch extent");
}

}  // namespace detail
}  // namespace quantile
}  // namespace interp_engine
