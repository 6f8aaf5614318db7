// The tiny check harness shared by the standalone C++ tests of the core:
// CHECK(cond) records a failure (file, line, condition) and carries on;
// check_report(name) prints the summary and gives main()'s exit status.
#pragma once

#include <cstdint>
#include <cstdio>

namespace interp_engine_test {
// A 4-d (B, K, h, w) view of a contiguous C-order buffer of doubles: the
// fields every maps view of the core has (data, B, K, h, w, byte strides);
// the caller sets the view's element-type field.
template <typename View>
View contiguous_f64_view(const double* data, std::int64_t B, std::int64_t K, std::int64_t h, std::int64_t w) {
  View v;
  v.data = data;
  v.B = B, v.K = K, v.h = h, v.w = w;
  v.stride[3] = 8;
  v.stride[2] = 8 * w;
  v.stride[1] = 8 * w * h;
  v.stride[0] = 8 * w * h * K;
  return v;
}

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
