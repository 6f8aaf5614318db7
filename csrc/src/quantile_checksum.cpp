// The order-independent checksum of the values (quantile.hpp, Checksum), in
// its instruction-set variants: the same integer arithmetic compiled for
// AVX-512 (F, DQ, VL: 64-bit multiplies in vectors), AVX2 or the baseline,
// picked from cpu::allowed() (INTERP_ENGINE_ISA caps it); every variant
// gives the same sums.
#include <cstring>

#include "interp_engine/cpu.hpp"
#include "interp_engine/quantile.hpp"

namespace interp_engine {
namespace quantile {

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

}  // namespace quantile
}  // namespace interp_engine
