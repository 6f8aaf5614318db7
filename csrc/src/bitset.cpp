// Row popcounts of bitset.hpp: a portable variant and, on x86 with GCC/Clang,
// one compiled for the POPCNT instruction (picked at run time from
// cpu::allowed(); no -march flags needed).
#include "interp_engine/bitset.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IE_BITS_POPCNT 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define IE_BITS_INLINE __attribute__((always_inline)) inline
#else
#define IE_BITS_INLINE inline
#endif

namespace interp_engine {
namespace bits {

namespace {
// The bodies, inlined into each variant (popcount() becomes the POPCNT
// instruction inside a "popcnt" target).
IE_BITS_INLINE std::int64_t count_body(const word_t* a, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i]);
  return c;
}
IE_BITS_INLINE std::int64_t count_and_body(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] & b[i]);
  return c;
}
IE_BITS_INLINE std::int64_t count_andnot_body(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] & ~b[i]);
  return c;
}
IE_BITS_INLINE std::int64_t count_or_body(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] | b[i]);
  return c;
}
IE_BITS_INLINE std::int64_t count_and_indexed_body(const word_t* row, const std::uint32_t* idx, const word_t* vals,
                                                   std::size_t k) {
  std::int64_t c = 0;
  for (std::size_t j = 0; j < k; ++j) c += popcount(row[idx[j]] & vals[j]);
  return c;
}

#define IE_BITS_VARIANTS(ATTR, SUFFIX)                                                                      \
  ATTR std::int64_t count_##SUFFIX(const word_t* a, std::size_t n) { return count_body(a, n); }            \
  ATTR std::int64_t count_and_##SUFFIX(const word_t* a, const word_t* b, std::size_t n) {                  \
    return count_and_body(a, b, n);                                                                         \
  }                                                                                                         \
  ATTR std::int64_t count_andnot_##SUFFIX(const word_t* a, const word_t* b, std::size_t n) {               \
    return count_andnot_body(a, b, n);                                                                      \
  }                                                                                                         \
  ATTR std::int64_t count_or_##SUFFIX(const word_t* a, const word_t* b, std::size_t n) {                   \
    return count_or_body(a, b, n);                                                                          \
  }                                                                                                         \
  ATTR std::int64_t count_and_indexed_##SUFFIX(const word_t* row, const std::uint32_t* idx, const word_t* vals, \
                                               std::size_t k) {                                            \
    return count_and_indexed_body(row, idx, vals, k);                                                       \
  }                                                                                                         \
  const Popcounts kPopcounts_##SUFFIX = {&count_##SUFFIX, &count_and_##SUFFIX, &count_andnot_##SUFFIX,     \
                                         &count_or_##SUFFIX, &count_and_indexed_##SUFFIX};

IE_BITS_VARIANTS(, generic)
#ifdef IE_BITS_POPCNT
IE_BITS_VARIANTS(__attribute__((target("popcnt"))), popcnt)
#endif
#undef IE_BITS_VARIANTS
}  // namespace

const Popcounts& popcounts(const cpu::Features& allowed) {
#ifdef IE_BITS_POPCNT
  if (allowed.popcnt) return kPopcounts_popcnt;
#endif
  (void)allowed;
  return kPopcounts_generic;
}

}  // namespace bits
}  // namespace interp_engine
