// Floating-point element types the core reads at its boundary (activations,
// maps, observations), their sizes and names, and their exact widening.
// Pure C++17, header only, no Python.
//
// Every area reads its float inputs in place through a Dtype: float16
// (IEEE binary16), bfloat16 (the top half of a float32), float32, float64.
// Each widens exactly to float (the 16-bit types: float has more exponent and
// mantissa bits than both) and from there to double, so a kernel may compute
// in float or double without rounding its input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace interp_engine {

enum class Dtype : int { F16 = 0, BF16 = 1, F32 = 2, F64 = 3 };

// Bytes per element.
constexpr std::size_t dtype_size(Dtype d) {
  return d == Dtype::F64 ? 8 : d == Dtype::F32 ? 4 : 2;
}

// "f16", "bf16", "f32", "f64": the kind strings the Python layer passes.
constexpr const char* dtype_name(Dtype d) {
  return d == Dtype::F16 ? "f16" : d == Dtype::BF16 ? "bf16" : d == Dtype::F32 ? "f32" : "f64";
}

// The Dtype of a kind string; std::invalid_argument for any other string.
inline Dtype dtype_from_name(const std::string& s) {
  for (Dtype d : {Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64})
    if (s == dtype_name(d)) return d;
  throw std::invalid_argument("kind must be one of f16, bf16, f32, f64; got " + s);
}

// ---------------------------------------------------------------------------
// Exact widening of the 16-bit types.  Every bit pattern maps to the float of
// the same value: signed zeros, subnormals (normalized: float's exponent
// reaches far lower), infinities, and NaN with its sign and payload (the
// payload's bits become the top bits of the float's mantissa; a signalling
// NaN stays one).  csrc/tests/test_dtype.cpp checks all 65536 patterns of
// each against a reference conversion.
inline float bits_to_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_float(sign | 0x7F800000u | (mant << 13));  // inf, NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 127 - 15) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);  // +-0
  // subnormal: mant * 2^-24; shift the leading one up to bit 10
  int e = 0;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    ++e;
  }
  return bits_to_float(sign | (static_cast<std::uint32_t>(127 - 14 - e) << 23) | ((mant & 0x3FFu) << 13));
}

inline float bf16_to_float(std::uint16_t b) { return bits_to_float(static_cast<std::uint32_t>(b) << 16); }

// ---------------------------------------------------------------------------
// Per type, at compile time:
//   Stored   the C++ type of an element's bytes (uint16_t for the 16-bit types)
//   Wide     what it widens to exactly: float, or double for F64
//   Bits     the unsigned integer of its width; kAbs masks off the sign and a
//            magnitude above kInf (the bits of infinity) is a NaN
template <Dtype D>
struct DtypeTraits;

template <>
struct DtypeTraits<Dtype::F16> {
  using Stored = std::uint16_t;
  using Wide = float;
  using Bits = std::uint16_t;
  static constexpr Bits kAbs = 0x7FFFu, kInf = 0x7C00u;
  static float widen(Stored v) { return half_to_float(v); }
};
template <>
struct DtypeTraits<Dtype::BF16> {
  using Stored = std::uint16_t;
  using Wide = float;
  using Bits = std::uint16_t;
  static constexpr Bits kAbs = 0x7FFFu, kInf = 0x7F80u;
  static float widen(Stored v) { return bf16_to_float(v); }
};
template <>
struct DtypeTraits<Dtype::F32> {
  using Stored = float;
  using Wide = float;
  using Bits = std::uint32_t;
  static constexpr Bits kAbs = 0x7FFFFFFFu, kInf = 0x7F800000u;
  static float widen(Stored v) { return v; }
};
template <>
struct DtypeTraits<Dtype::F64> {
  using Stored = double;
  using Wide = double;
  using Bits = std::uint64_t;
  static constexpr Bits kAbs = 0x7FFFFFFFFFFFFFFFULL, kInf = 0x7FF0000000000000ULL;
  static double widen(Stored v) { return v; }
};

// Element at p (any address: read through memcpy), widened exactly.
template <Dtype D>
inline typename DtypeTraits<D>::Wide load_wide(const void* p) {
  typename DtypeTraits<D>::Stored v;
  std::memcpy(&v, p, sizeof v);
  return DtypeTraits<D>::widen(v);
}

// The same, as double, for a type known only at run time.
inline double load_double(const void* p, Dtype d) {
  switch (d) {
    case Dtype::F16: return static_cast<double>(load_wide<Dtype::F16>(p));
    case Dtype::BF16: return static_cast<double>(load_wide<Dtype::BF16>(p));
    case Dtype::F32: return static_cast<double>(load_wide<Dtype::F32>(p));
    case Dtype::F64: return load_wide<Dtype::F64>(p);
  }
  return 0.0;
}

// Calls fn(DtypeTag<D>{}) with D = d as a compile-time constant (a kernel
// instantiated per type, chosen once per call) and returns what it returns.
template <Dtype D>
using DtypeTag = std::integral_constant<Dtype, D>;

template <typename Fn>
decltype(auto) dispatch_dtype(Dtype d, Fn&& fn) {
  switch (d) {
    case Dtype::F16: return fn(DtypeTag<Dtype::F16>{});
    case Dtype::BF16: return fn(DtypeTag<Dtype::BF16>{});
    case Dtype::F32: return fn(DtypeTag<Dtype::F32>{});
    case Dtype::F64: break;
  }
  return fn(DtypeTag<Dtype::F64>{});
}

}  // namespace interp_engine
