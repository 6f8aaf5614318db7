// The tiny check harness shared by the standalone C++ tests of the core:
// CHECK(cond) records a failure (file, line, condition) and carries on;
// check_report(name) prints the summary and gives main()'s exit status.
#pragma once

#include <cstdio>

namespace interp_engine_test {
inline int& failures() {
  static int n = 0;
  return n;
}
inline int check_report(const char* name) {
  if (failures() != 0) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}
}  // namespace interp_engine_test

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++interp_engine_test::failures();                                             \
    }                                                                               \
  } while (0)
