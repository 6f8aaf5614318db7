// Standalone C++ tests of dtype.hpp: the widening of every float16 and
// bfloat16 bit pattern against references computed another way.
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_dtype.cpp -o /tmp/test_dtype && /tmp/test_dtype
#include "check.hpp"
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "interp_engine/dtype.hpp"

using namespace interp_engine;

static std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// The value of a binary floating-point bit pattern from its fields, in
// double (exact: both 16-bit formats fit), by arithmetic rather than by bit
// moves: (-1)^s * 2^(e - bias) * (1 + m / 2^mbits), subnormals
// 2^(1 - bias) * m / 2^mbits.  NaN for the all-ones exponent with m != 0.
static double reference_value(std::uint32_t bits, int ebits, int mbits) {
  const std::uint32_t m = bits & ((1u << mbits) - 1);
  const std::uint32_t e = (bits >> mbits) & ((1u << ebits) - 1);
  const bool neg = (bits >> (ebits + mbits)) & 1u;
  const int bias = (1 << (ebits - 1)) - 1;
  double v;
  if (e == (1u << ebits) - 1) {
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::ldexp(static_cast<double>(m), 1 - bias - mbits);
  } else {
    v = std::ldexp(static_cast<double>(m) + std::ldexp(1.0, mbits), static_cast<int>(e) - bias - mbits);
  }
  return neg ? -v : v;
}

// f is the exact widening of the pattern: the same value (and the same sign
// of zero) as the reference; a NaN keeps its sign and its payload as the top
// mantissa bits.
static bool widened_exactly(float f, std::uint32_t bits, int ebits, int mbits) {
  const double ref = reference_value(bits, ebits, mbits);
  const bool neg = (bits >> (ebits + mbits)) & 1u;
  if (std::isnan(ref)) {
    const std::uint32_t payload = bits & ((1u << mbits) - 1);
    return std::isnan(f) && std::signbit(f) == neg && ((float_bits(f) & 0x7FFFFFu) >> (23 - mbits)) == payload &&
           (float_bits(f) & ((1u << (23 - mbits)) - 1)) == 0;
  }
  return float_bits(f) == float_bits(static_cast<float>(ref)) && static_cast<double>(f) == ref &&
         std::signbit(f) == neg;
}

int main() {
  // names, sizes, parsing
  {
    CHECK(dtype_size(Dtype::F16) == 2 && dtype_size(Dtype::BF16) == 2);
    CHECK(dtype_size(Dtype::F32) == 4 && dtype_size(Dtype::F64) == 8);
    for (Dtype d : {Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64}) CHECK(dtype_from_name(dtype_name(d)) == d);
    CHECK(std::string(dtype_name(Dtype::BF16)) == "bf16");
    bool threw = false;
    try {
      dtype_from_name("float16");
    } catch (const std::invalid_argument& e) {
      threw = std::string(e.what()).find("got float16") != std::string::npos;
    }
    CHECK(threw);
  }
  // every float16 pattern
  {
    int bad = 0, nan = 0, sub = 0;
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const auto h = static_cast<std::uint16_t>(b);
      const float f = half_to_float(h);
      if (!widened_exactly(f, b, 5, 10)) ++bad;
      // the NaN test on raw bits agrees with the value
      using T = DtypeTraits<Dtype::F16>;
      if (((h & T::kAbs) > T::kInf) != std::isnan(f)) ++bad;
      nan += std::isnan(f);
      sub += (h & 0x7C00u) == 0 && (h & 0x3FFu) != 0;
#if defined(__FLT16_MANT_DIG__)
      // and the compiler's own conversion (hardware F16C or libgcc)
      _Float16 x;
      std::memcpy(&x, &h, 2);
      const float g = static_cast<float>(x);
      if (std::isnan(g) ? !(std::isnan(f) && std::signbit(f) == std::signbit(g)) : float_bits(g) != float_bits(f))
        ++bad;
#endif
      const unsigned char buf[3] = {0, static_cast<unsigned char>(h & 0xFF), static_cast<unsigned char>(h >> 8)};
      const double d = load_double(buf + 1, Dtype::F16);  // misaligned
      if (!(std::isnan(f) ? std::isnan(d) : d == static_cast<double>(f) && std::signbit(d) == std::signbit(f))) ++bad;
    }
    CHECK(bad == 0);
    CHECK(nan == 2 * 1023 && sub == 2 * 1023);
    CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(half_to_float(0x03FF) == std::ldexp(1023.0f, -24));
    CHECK(half_to_float(0x7BFF) == 65504.0f);
    CHECK(half_to_float(0xFC00) == -std::numeric_limits<float>::infinity());
    CHECK(std::signbit(half_to_float(0x8000)) && half_to_float(0x8000) == 0.0f);
  }
  // every bfloat16 pattern
  {
    int bad = 0, nan = 0;
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const auto h = static_cast<std::uint16_t>(b);
      const float f = bf16_to_float(h);
      if (!widened_exactly(f, b, 8, 7)) ++bad;
      using T = DtypeTraits<Dtype::BF16>;
      if (((h & T::kAbs) > T::kInf) != std::isnan(f)) ++bad;
      nan += std::isnan(f);
      if (float_bits(f) != b << 16) ++bad;  // exactly the top half of a float32
      const double d = load_double(&h, Dtype::BF16);
      if (!(std::isnan(f) ? std::isnan(d) : d == static_cast<double>(f))) ++bad;
    }
    CHECK(bad == 0);
    CHECK(nan == 2 * 127);
    CHECK(bf16_to_float(0x0001) == std::ldexp(1.0f, -133));
  }
  // float32 / float64: the raw NaN test and the loads
  {
    const float fs[] = {0.0f, -0.0f, 1.5f, std::numeric_limits<float>::denorm_min(),
                        std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
    for (float f : fs) {
      using T = DtypeTraits<Dtype::F32>;
      CHECK(((float_bits(f) & T::kAbs) > T::kInf) == std::isnan(f));
      unsigned char buf[5];
      std::memcpy(buf + 1, &f, 4);
      const double d = load_double(buf + 1, Dtype::F32);
      CHECK(std::isnan(f) ? std::isnan(d) : d == static_cast<double>(f));
    }
    const double ds[] = {-0.0, 1e-310, 1e300, -std::numeric_limits<double>::infinity(),
                         std::numeric_limits<double>::quiet_NaN()};
    for (double v : ds) {
      using T = DtypeTraits<Dtype::F64>;
      std::uint64_t u;
      std::memcpy(&u, &v, 8);
      CHECK(((u & T::kAbs) > T::kInf) == std::isnan(v));
      CHECK(std::isnan(v) ? std::isnan(load_wide<Dtype::F64>(&v)) : load_wide<Dtype::F64>(&v) == v);
    }
  }
  // dispatch: the compile-time type matches the run-time one
  for (Dtype d : {Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64}) {
    const std::size_t sz = dispatch_dtype(d, [](auto tag) { return sizeof(typename DtypeTraits<decltype(tag)::value>::Stored); });
    CHECK(sz == dtype_size(d));
  }
  return interp_engine_test::check_report("test_dtype");
}
