// CPU feature detection and the INTERP_ENGINE_ISA cap (see cpu.hpp).
#include "interp_engine/cpu.hpp"

#include <cstdlib>
#include <stdexcept>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IE_CPU_X86_BUILTINS 1
#endif

namespace interp_engine {
namespace cpu {

namespace {
constexpr const char* kVariable = "INTERP_ENGINE_ISA";

Features detect() {
  Features f;
#ifdef IE_CPU_X86_BUILTINS
  // libgcc / compiler-rt: CPUID, and XGETBV for the operating system's
  // support of the AVX and AVX-512 register state
  __builtin_cpu_init();
  f.popcnt = __builtin_cpu_supports("popcnt");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq");
#endif
  return f;
}
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: break;
  }
  return "avx512";
}

Isa isa_from_name(const std::string& s) {
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512})
    if (s == isa_name(isa)) return isa;
  throw std::invalid_argument(std::string(kVariable) + " must be one of generic, avx2, avx512 (or unset); got '" + s +
                              "'");
}

const Features& detected() {
  static const Features f = detect();
  return f;
}

Isa cap() {
  const char* v = std::getenv(kVariable);
  if (v == nullptr || *v == '\0') return Isa::Avx512;
  return isa_from_name(v);
}

Features capped(const Features& f, Isa cap) {
  Features out = f;
  if (cap < Isa::Avx512)
    out.avx512f = out.avx512bw = out.avx512dq = out.avx512vl = out.avx512vpopcntdq = false;
  if (cap < Isa::Avx2) out.popcnt = out.avx2 = out.fma = false;
  return out;
}

Features allowed() { return capped(detected(), cap()); }

Isa needed(const Features& f) {
  if (f.avx512f || f.avx512bw || f.avx512dq || f.avx512vl || f.avx512vpopcntdq) return Isa::Avx512;
  if (f.popcnt || f.avx2 || f.fma) return Isa::Avx2;
  return Isa::Generic;
}

}  // namespace cpu
}  // namespace interp_engine
