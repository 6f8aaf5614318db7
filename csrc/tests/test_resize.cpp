// Standalone C++ tests of the resize area (hand-computed cases).
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_resize.cpp csrc/src/resize.cpp csrc/src/iou_*.cpp \
//       csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread
#include "check.hpp"
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "interp_engine/iou.hpp"  // resize.cpp's "bilinear" method is iou::upsample_bilinear
#include "interp_engine/resize.hpp"

using namespace interp_engine::resize;
using interp_engine::Dtype;

static MapsView view64(const std::vector<double>& a, std::int64_t B, std::int64_t K, std::int64_t h,
                       std::int64_t w) {
  auto v = interp_engine_test::contiguous_f64_view<MapsView>(a.data(), B, K, h, w);
  v.dtype = Dtype::F64;
  return v;
}

static bool near(double a, double b) { return std::fabs(a - b) <= 1e-15 * (1 + std::fabs(b)); }

int main() {
  // taps 4 -> 2: scale 2, support 2; output 0: cells 0..2 with 0.75, 0.75, 0.25 normalized
  {
    const Taps t = make_taps(4, 2, false);
    CHECK(t.ksize == 5);
    CHECK(t.start[0] == 0 && t.count[0] == 3 && t.start[1] == 1 && t.count[1] == 3);
    CHECK(near(t.w[0], 3.0 / 7) && near(t.w[1], 3.0 / 7) && near(t.w[2], 1.0 / 7));
    CHECK(near(t.w[3], 1.0 / 7) && near(t.w[4], 3.0 / 7) && near(t.w[5], 3.0 / 7));
  }
  // taps 2 -> 4 (upsampling): the bilinear weights, edges clamped (one cell)
  {
    const Taps t = make_taps(2, 4, true);
    CHECK(t.count[0] == 1 && t.w[t.offset[0]] == 1.0);
    CHECK(t.start[1] == 0 && t.count[1] == 2 && t.w[t.offset[1]] == 0.75 && t.w[t.offset[1] + 1] == 0.25);
    CHECK(t.count[3] == 1 && t.start[3] == 1);
  }
  // antialias 1x4 -> 1x2 of [1, 2, 3, 4]: (3 + 6 + 3) / 7 and (2 + 9 + 12) / 7
  {
    const std::vector<double> a = {1, 2, 3, 4};
    std::vector<double> out(2);
    resize_maps(view64(a, 1, 1, 1, 4), 1, 2, Method::Antialias, out.data(), 1);
    CHECK(near(out[0], 12.0 / 7) && near(out[1], 23.0 / 7));
    std::vector<float> o32(2);
    resize_maps(view64(a, 1, 1, 1, 4), 1, 2, Method::Pil, o32.data(), 1);
    CHECK(o32[0] == static_cast<float>(12.0 / 7) && o32[1] == static_cast<float>(23.0 / 7));
    // the same along the height (4x1 -> 2x1)
    resize_maps(view64(a, 1, 1, 4, 1), 2, 1, Method::Antialias, out.data(), 1);
    CHECK(near(out[0], 12.0 / 7) && near(out[1], 23.0 / 7));
  }
  // identity: a copy (pil: rounded to float32)
  {
    const std::vector<double> a = {0.1, -2.5, 3e-310, 1e300, -0.0, 7};
    std::vector<double> out(6);
    resize_maps(view64(a, 1, 1, 2, 3), 2, 3, Method::Antialias, out.data(), 1);
    for (int i = 0; i < 6; ++i) CHECK(out[i] == a[i]);
    std::vector<float> o32(6);
    resize_maps(view64(a, 1, 1, 2, 3), 2, 3, Method::Pil, o32.data(), 1);
    CHECK(o32[0] == 0.1f && o32[2] == 0.0f && std::isinf(o32[3]) && o32[5] == 7.0f);
  }
  // float32 rounding beyond the float range: FLT_MAX below the midpoint to 2^128, inf from it
  {
    const double mid = static_cast<double>(std::numeric_limits<float>::max()) + std::ldexp(1.0, 103);
    const std::vector<double> a = {std::nextafter(mid, 0.0), mid, -std::nextafter(mid, 0.0)};
    std::vector<float> o32(3);
    resize_maps(view64(a, 1, 1, 1, 3), 1, 3, Method::Pil, o32.data(), 1);
    CHECK(o32[0] == std::numeric_limits<float>::max() && std::isinf(o32[1]) &&
          o32[2] == -std::numeric_limits<float>::max());
  }
  // strides: negative width stride reads the maps mirrored; float16 / bfloat16 inputs
  {
    const std::vector<double> a = {1, 2, 3, 4};
    MapsView v = view64(a, 1, 1, 1, 4);
    v.data = a.data() + 3;
    v.stride[3] = -8;
    std::vector<double> out(2);
    resize_maps(v, 1, 2, Method::Antialias, out.data(), 1);
    CHECK(near(out[0], 23.0 / 7) && near(out[1], 12.0 / 7));
    const std::vector<std::uint16_t> h16 = {0x3C00, 0x4000, 0x4200, 0x4400};  // 1, 2, 3, 4 (float16)
    MapsView vh = v;
    vh.data = h16.data();
    vh.dtype = Dtype::F16;
    vh.stride[3] = 2;
    vh.stride[2] = vh.stride[1] = vh.stride[0] = 8;
    resize_maps(vh, 1, 2, Method::Antialias, out.data(), 1);
    CHECK(near(out[0], 12.0 / 7) && near(out[1], 23.0 / 7));
    const std::vector<std::uint16_t> b16 = {0x3F80, 0x4000, 0x4040, 0x4080};  // 1, 2, 3, 4 (bfloat16)
    vh.data = b16.data();
    vh.dtype = Dtype::BF16;
    resize_maps(vh, 1, 2, Method::Antialias, out.data(), 1);
    CHECK(near(out[0], 12.0 / 7) && near(out[1], 23.0 / 7));
  }
  // resize_above: > T (strict); pil skips a map whose maximum is not above T
  {
    const std::vector<double> a = {1, 2, 3, 4, 0, 0, 0, 5};  // two 1x4 maps
    std::vector<float> out(4);
    const double thr[2] = {12.0 / 7, 1.0};
    resize_above(view64(a, 1, 2, 1, 4), 1, 2, Method::Antialias, thr, out.data(), 1);
    CHECK(out[0] == 0.0f || out[0] == 1.0f);  // 12/7 against its own rounding: either
    CHECK(out[1] == 1.0f && out[2] == 0.0f && out[3] == 1.0f);
    const double thr2[2] = {4.0, 5.0};  // maxima 4 and 5: neither map is above its threshold
    resize_above(view64(a, 1, 2, 1, 4), 1, 2, Method::Pil, thr2, out.data(), 1);
    for (int i = 0; i < 4; ++i) CHECK(out[i] == 0.0f);
    const double thr3[2] = {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    resize_above(view64(a, 1, 2, 1, 4), 1, 2, Method::Pil, thr3, out.data(), 1);
    CHECK(out[0] == 1.0f && out[1] == 1.0f && out[2] == 0.0f && out[3] == 0.0f);
  }
  // NaN: the first map (in (b, k) order) is named, whatever the thread count
  {
    std::vector<double> a(3 * 4 * 5 * 6, 1.0);
    a[(1 * 4 + 2) * 30 + 7] = std::numeric_limits<double>::quiet_NaN();
    a[(2 * 4 + 0) * 30 + 3] = std::numeric_limits<double>::quiet_NaN();
    for (int nt : {1, 2, 3}) {
      std::vector<double> out(3 * 4 * 2 * 2);
      bool thrown = false;
      try {
        resize_maps(view64(a, 3, 4, 5, 6), 2, 2, Method::Antialias, out.data(), nt);
      } catch (const NanFound& e) {
        thrown = e.b == 1 && e.k == 2;
      }
      CHECK(thrown);
    }
  }
  // sizes: not positive, too large, overflowing products
  {
    const std::vector<double> a = {1};
    bool t1 = false, t2 = false, t3 = false;
    try {
      output_values(view64(a, 1, 1, 1, 1), 0, 3);
    } catch (const std::invalid_argument&) {
      t1 = true;
    }
    try {
      output_values(view64(a, 1, 1, 1, 1), std::int64_t{1} << 31, 1);
    } catch (const std::invalid_argument&) {
      t2 = true;
    }
    try {
      MapsView v = view64(a, std::int64_t{1} << 40, std::int64_t{1} << 20, 1, 1);
      output_values(v, 1 << 10, 1 << 10);
    } catch (const std::invalid_argument&) {
      t3 = true;
    }
    CHECK(t1 && t2 && t3);
    CHECK(output_values(view64(a, 2, 3, 1, 1), 4, 5) == 120);
  }
  return interp_engine_test::check_report("test_resize");
}
