// Packed bitsets: rows of 64-bit words.
//
// Pure C++17, no Python; header only but for the row popcounts (bitset.cpp).  Used by the greedy cover kernels and
// meant for reuse by INVERT (packed concept columns) and co-clustering.
//
// Bit order (the contract shared with the Python PackedBits object): bit j of
// a row lives in word j / 64 at bit position j % 64, least significant bit
// first.  On a little-endian machine this is numpy's
// `np.packbits(x, axis=1, bitorder="little")` viewed as uint64 (after padding
// each row to a multiple of 8 bytes).  Bits at positions >= n_bits in the last
// word of a row are padding and must be zero (the functions here keep them
// zero; readers treat them as garbage only where noted).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "interp_engine/cpu.hpp"

namespace interp_engine {
namespace bits {

using word_t = std::uint64_t;
constexpr int kWordBits = 64;

// Number of 64-bit words needed for n bits.
constexpr std::size_t words_for(std::size_t n_bits) { return (n_bits + 63) / 64; }

// Mask of the valid bits of the last word of a row of n_bits bits
// (all ones when n_bits is a multiple of 64).
constexpr word_t tail_mask(std::size_t n_bits) {
  return (n_bits % 64) == 0 ? ~word_t{0} : ((word_t{1} << (n_bits % 64)) - 1);
}

inline int popcount(word_t w) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(w);
#else
  w = w - ((w >> 1) & 0x5555555555555555ULL);
  w = (w & 0x3333333333333333ULL) + ((w >> 2) & 0x3333333333333333ULL);
  w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<int>((w * 0x0101010101010101ULL) >> 56);
#endif
}

inline int ctz(word_t w) {  // w != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(w);
#else
  int n = 0;
  while ((w & 1) == 0) {
    w >>= 1;
    ++n;
  }
  return n;
#endif
}

inline bool test(const word_t* row, std::size_t j) { return (row[j >> 6] >> (j & 63)) & 1U; }
inline void set(word_t* row, std::size_t j) { row[j >> 6] |= word_t{1} << (j & 63); }
inline void reset(word_t* row, std::size_t j) { row[j >> 6] &= ~(word_t{1} << (j & 63)); }

// Row popcounts, in two variants with the same results: the POPCNT
// instruction (x86 with GCC/Clang, when cpu::Features::popcnt) and portable
// code.  A caller takes the table once per top-level operation,
// popcounts(cpu::allowed()) (which honours INTERP_ENGINE_ISA, cpu.hpp), and
// calls through it in its loops.
struct Popcounts {
  // popcount(a)
  std::int64_t (*count)(const word_t* a, std::size_t n_words);
  // popcount(a & b)
  std::int64_t (*count_and)(const word_t* a, const word_t* b, std::size_t n_words);
  // popcount(a & ~b)
  std::int64_t (*count_andnot)(const word_t* a, const word_t* b, std::size_t n_words);
  // popcount(a | b)
  std::int64_t (*count_or)(const word_t* a, const word_t* b, std::size_t n_words);
  // sum over j < k of popcount(row[idx[j]] & vals[j]) (a sparse set of words)
  std::int64_t (*count_and_indexed)(const word_t* row, const std::uint32_t* idx, const word_t* vals,
                                    std::size_t k);
};
const Popcounts& popcounts(const cpu::Features& allowed);

// dst = a & b, a | b, a & ~b (dst may alias a or b)
inline void and_into(word_t* dst, const word_t* a, const word_t* b, std::size_t n_words) {
  for (std::size_t i = 0; i < n_words; ++i) dst[i] = a[i] & b[i];
}
inline void or_into(word_t* dst, const word_t* a, const word_t* b, std::size_t n_words) {
  for (std::size_t i = 0; i < n_words; ++i) dst[i] = a[i] | b[i];
}
inline void andnot_into(word_t* dst, const word_t* a, const word_t* b, std::size_t n_words) {
  for (std::size_t i = 0; i < n_words; ++i) dst[i] = a[i] & ~b[i];
}
// true when a is a subset of b (a & ~b == 0)
inline bool is_subset(const word_t* a, const word_t* b, std::size_t n_words) {
  for (std::size_t i = 0; i < n_words; ++i)
    if (a[i] & ~b[i]) return false;
  return true;
}

// Calls fn(j) for every set bit j of `w_i` (the word at index `word_index`),
// ascending.
template <typename F>
inline void for_each_bit_in_word(word_t w, std::size_t word_index, F&& fn) {
  while (w) {
    const int b = ctz(w);
    fn(word_index * 64 + static_cast<std::size_t>(b));
    w &= w - 1;
  }
}
// Calls fn(j) for every set bit j of the row, ascending.
template <typename F>
inline void for_each_bit(const word_t* a, std::size_t n_words, F&& fn) {
  for (std::size_t i = 0; i < n_words; ++i) for_each_bit_in_word(a[i], i, fn);
}
// Calls fn(j) for every j set in a and not in b, ascending.
template <typename F>
inline void for_each_bit_andnot(const word_t* a, const word_t* b, std::size_t n_words, F&& fn) {
  for (std::size_t i = 0; i < n_words; ++i) for_each_bit_in_word(a[i] & ~b[i], i, fn);
}

// A read-only view of a row-major packed bit matrix (not owning).
struct BitMatrixView {
  const word_t* data = nullptr;
  std::size_t rows = 0;
  std::size_t n_bits = 0;
  std::size_t words_per_row = 0;  // >= words_for(n_bits); the row stride in words

  const word_t* row(std::size_t i) const { return data + i * words_per_row; }
};

// An owning row-major packed bit matrix with stride words_for(n_bits).
class BitMatrix {
 public:
  BitMatrix() = default;
  BitMatrix(std::size_t rows, std::size_t n_bits)
      : rows_(rows), n_bits_(n_bits), wpr_(words_for(n_bits)), data_(rows * wpr_, 0) {}

  std::size_t rows() const { return rows_; }
  std::size_t n_bits() const { return n_bits_; }
  std::size_t words_per_row() const { return wpr_; }
  word_t* row(std::size_t i) { return data_.data() + i * wpr_; }
  const word_t* row(std::size_t i) const { return data_.data() + i * wpr_; }
  word_t* data() { return data_.data(); }
  const word_t* data() const { return data_.data(); }
  bool get(std::size_t i, std::size_t j) const { return test(row(i), j); }
  void put(std::size_t i, std::size_t j, bool v) {
    if (v)
      set(row(i), j);
    else
      reset(row(i), j);
  }
  BitMatrixView view() const { return BitMatrixView{data_.data(), rows_, n_bits_, wpr_}; }

 private:
  std::size_t rows_ = 0, n_bits_ = 0, wpr_ = 0;
  std::vector<word_t> data_;
};

// Packs a row-major bool/uint8 matrix (any non-zero byte is a set bit) of
// shape (rows, n_bits) with row stride `row_stride` bytes into `out`, which
// must hold rows * words_for(n_bits) words.  Padding bits are zero.
inline void pack_rows(const std::uint8_t* src, std::size_t rows, std::size_t n_bits,
                      std::size_t row_stride, word_t* out) {
  const std::size_t wpr = words_for(n_bits);
  for (std::size_t i = 0; i < rows; ++i) {
    const std::uint8_t* s = src + i * row_stride;
    word_t* o = out + i * wpr;
    std::size_t j = 0;
    for (std::size_t w = 0; w < wpr; ++w) {
      word_t v = 0;
      if (j + 64 <= n_bits) {
        // 8 bytes at a time: fold each byte's bits into its bit 0, then
        // gather the 8 bit-0s into one byte with a multiply
        for (int g = 0; g < 8; ++g, j += 8) {
          std::uint64_t x;
          std::memcpy(&x, s + j, 8);
          x |= x >> 4;
          x |= x >> 2;
          x |= x >> 1;
          x &= 0x0101010101010101ULL;
          v |= ((x * 0x0102040810204080ULL) >> 56) << (8 * g);
        }
      } else {
        for (std::size_t b = 0; j < n_bits; ++j, ++b) v |= word_t{s[j] != 0} << b;
      }
      o[w] = v;
    }
  }
}

// Inverse of pack_rows: writes 0/1 bytes, shape (rows, n_bits), C order.
inline void unpack_rows(const word_t* src, std::size_t rows, std::size_t n_bits,
                        std::size_t words_per_row, std::uint8_t* out) {
  for (std::size_t i = 0; i < rows; ++i) {
    const word_t* r = src + i * words_per_row;
    std::uint8_t* o = out + i * n_bits;
    for (std::size_t j = 0; j < n_bits; ++j) o[j] = static_cast<std::uint8_t>(test(r, j));
  }
}

}  // namespace bits
}  // namespace interp_engine
