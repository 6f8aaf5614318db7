// The optional x86 instructions the kernels may use: detected once per
// process, capped by one environment variable for every area.  Pure C++17,
// no Python.
//
// Every kernel with variants for several instruction sets (the IoU tally and
// its bilinear upsampling, the antialias / Pillow resizes, the quantile value
// checksum, the bitset popcounts of cover and rank) picks its variant from
// allowed(): what this CPU has, capped by INTERP_ENGINE_ISA:
//   generic  portable code only (no optional instruction at all)
//   avx2     at most AVX2, FMA and POPCNT (no AVX-512)
//   avx512   everything the CPU has (the same as unset or empty)
// The cap only removes: it never enables an instruction the CPU lacks.  All
// variants give the same results bit for bit (each kernel's tests compare
// them); the cap is there so that the tests run every variant a CPU can run,
// and to rule a variant out when looking for a fault.  Any other value is an
// error (std::invalid_argument naming the variable; a ValueError in Python),
// not silently ignored.
//
// When it is read: at every call of allowed() (one getenv, about 30 ns).  A
// top-level operation (an update, a resize, a cover, a rank statistic)
// calls it once at its start and hands the result to its inner loops, so a
// change of the variable takes effect at the next operation, also in a
// running process (the tests set it with monkeypatch.setenv), and never
// halfway through one.  Nothing below a top-level operation reads the
// environment.
#pragma once

#include <string>

namespace interp_engine {
namespace cpu {

// The instructions the kernels use beyond the x86-64 baseline (SSE2).  All
// false off x86 or without GCC/Clang's CPU builtins (portable code only).
struct Features {
  bool popcnt = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512vpopcntdq = false;
};

// The values of the cap, each allowing what the one before allows and more.
enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);  // "generic", "avx2", "avx512"
// The Isa named s; std::invalid_argument naming INTERP_ENGINE_ISA otherwise.
Isa isa_from_name(const std::string& s);

// What this CPU (and its operating system: the AVX state must be enabled)
// supports: detected on the first call, then cached (thread-safe).
const Features& detected();

// INTERP_ENGINE_ISA, read now: Avx512 (no cap) when unset or empty.
Isa cap();

// f without what `cap` rules out.
Features capped(const Features& f, Isa cap);

// capped(detected(), cap()): what a kernel may use now (reads the
// environment: call it once per top-level operation).
Features allowed();

// The lowest cap that rules out nothing of f: Avx512 when f has any AVX-512
// instruction, Avx2 when it has AVX2, FMA or POPCNT, else Generic.  The
// highest cap that changes anything on a CPU is needed(detected()).
Isa needed(const Features& f);

}  // namespace cpu
}  // namespace interp_engine
