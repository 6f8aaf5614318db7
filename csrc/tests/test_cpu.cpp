// Standalone C++ tests of cpu.hpp: the INTERP_ENGINE_ISA cap.
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_cpu.cpp csrc/src/cpu.cpp -o /tmp/test_cpu && /tmp/test_cpu
#include "check.hpp"
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "interp_engine/cpu.hpp"

using namespace interp_engine;

static cpu::Features all() {
  cpu::Features f;
  f.popcnt = f.avx2 = f.fma = true;
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx512vpopcntdq = true;
  return f;
}

static bool same(const cpu::Features& a, const cpu::Features& b) {
  return a.popcnt == b.popcnt && a.avx2 == b.avx2 && a.fma == b.fma && a.avx512f == b.avx512f &&
         a.avx512bw == b.avx512bw && a.avx512dq == b.avx512dq && a.avx512vl == b.avx512vl &&
         a.avx512vpopcntdq == b.avx512vpopcntdq;
}

static bool any(const cpu::Features& f) { return cpu::needed(f) != cpu::Isa::Generic; }

int main() {
  // names
  for (cpu::Isa i : {cpu::Isa::Generic, cpu::Isa::Avx2, cpu::Isa::Avx512}) CHECK(cpu::isa_from_name(cpu::isa_name(i)) == i);
  {
    bool threw = false;
    try {
      cpu::isa_from_name("AVX2");
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      threw = m.find("INTERP_ENGINE_ISA") != std::string::npos && m.find("'AVX2'") != std::string::npos &&
              m.find("generic, avx2, avx512") != std::string::npos;
    }
    CHECK(threw);
  }
  // the cap only removes, level by level
  {
    const cpu::Features f = all();
    CHECK(same(cpu::capped(f, cpu::Isa::Avx512), f));
    const cpu::Features a2 = cpu::capped(f, cpu::Isa::Avx2);
    CHECK(a2.popcnt && a2.avx2 && a2.fma && !a2.avx512f && !a2.avx512bw && !a2.avx512dq && !a2.avx512vl &&
          !a2.avx512vpopcntdq);
    CHECK(!any(cpu::capped(f, cpu::Isa::Generic)));
    CHECK(cpu::needed(f) == cpu::Isa::Avx512 && cpu::needed(a2) == cpu::Isa::Avx2);
    cpu::Features only;
    only.avx512dq = true;  // any AVX-512 instruction needs the avx512 level
    CHECK(cpu::needed(only) == cpu::Isa::Avx512);
    only = cpu::Features{};
    only.popcnt = true;
    CHECK(cpu::needed(only) == cpu::Isa::Avx2);
    // never adds: a CPU without AVX-512 stays without it under any cap
    CHECK(same(cpu::capped(a2, cpu::Isa::Avx512), a2));
  }
  // detection is cached and consistent
  {
    const cpu::Features& d = cpu::detected();
    CHECK(&d == &cpu::detected());
    CHECK(!d.avx512vpopcntdq || d.avx512f);
    std::printf("test_cpu: this CPU needs INTERP_ENGINE_ISA=%s to run every variant\n", cpu::isa_name(cpu::needed(d)));
  }
  // the variable, read at every call
  {
    unsetenv("INTERP_ENGINE_ISA");
    CHECK(cpu::cap() == cpu::Isa::Avx512);
    CHECK(same(cpu::allowed(), cpu::detected()));
    setenv("INTERP_ENGINE_ISA", "", 1);
    CHECK(cpu::cap() == cpu::Isa::Avx512);
    setenv("INTERP_ENGINE_ISA", "generic", 1);
    CHECK(cpu::cap() == cpu::Isa::Generic && !any(cpu::allowed()));
    setenv("INTERP_ENGINE_ISA", "avx2", 1);
    CHECK(cpu::cap() == cpu::Isa::Avx2 && same(cpu::allowed(), cpu::capped(cpu::detected(), cpu::Isa::Avx2)));
    setenv("INTERP_ENGINE_ISA", "avx512", 1);
    CHECK(same(cpu::allowed(), cpu::detected()));
    setenv("INTERP_ENGINE_ISA", "sse", 1);
    bool threw = false;
    try {
      cpu::allowed();
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
    unsetenv("INTERP_ENGINE_ISA");
  }
  return interp_engine_test::check_report("test_cpu");
}
