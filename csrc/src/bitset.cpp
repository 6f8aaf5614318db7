// Row popcounts of bitset.hpp, with runtime CPU dispatch for POPCNT.
#include "interp_engine/bitset.hpp"

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define IE_POPCNT_CLONES __attribute__((target_clones("popcnt", "default")))
#endif
#endif
#ifndef IE_POPCNT_CLONES
#define IE_POPCNT_CLONES
#endif

namespace interp_engine {
namespace bits {

IE_POPCNT_CLONES std::int64_t count(const word_t* a, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i]);
  return c;
}

IE_POPCNT_CLONES std::int64_t count_and(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] & b[i]);
  return c;
}

IE_POPCNT_CLONES std::int64_t count_andnot(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] & ~b[i]);
  return c;
}

IE_POPCNT_CLONES std::int64_t count_or(const word_t* a, const word_t* b, std::size_t n_words) {
  std::int64_t c = 0;
  for (std::size_t i = 0; i < n_words; ++i) c += popcount(a[i] | b[i]);
  return c;
}

}  // namespace bits
}  // namespace interp_engine

namespace interp_engine {
namespace bits {

IE_POPCNT_CLONES std::int64_t count_and_indexed(const word_t* row, const std::uint32_t* idx,
                                                const word_t* vals, std::size_t k) {
  std::int64_t c = 0;
  for (std::size_t j = 0; j < k; ++j) c += popcount(row[idx[j]] & vals[j]);
  return c;
}

}  // namespace bits
}  // namespace interp_engine
