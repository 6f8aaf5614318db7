// Standalone C++ tests of the IoU tally core (hand-computed cases).
//   g++ -std=c++17 -O2 -Icsrc/include csrc/tests/test_iou.cpp csrc/src/iou_*.cpp csrc/src/cpu.cpp csrc/src/parallel.cpp -pthread
#include "check.hpp"
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <vector>

#include "interp_engine/iou.hpp"

using namespace interp_engine::iou;


static ActivationView view(const std::vector<double>& a, std::int64_t B, std::int64_t K, std::int64_t h,
                           std::int64_t w) {
  auto v = interp_engine_test::contiguous_f64_view<ActivationView>(a.data(), B, K, h, w);
  v.dtype = interp_engine::Dtype::F64;
  return v;
}

int main() {
  // tables: 2 -> 4: src = 0.5*(d+0.5)-0.5 = -0.25, 0.25, 0.75, 1.25
  {
    AxisTable t = make_axis_table(2, 4);
    CHECK(t.i0[0] == 0 && t.i1[0] == 1 && t.l1[0] == 0.0);
    CHECK(t.i0[1] == 0 && t.l1[1] == 0.25 && t.l0[1] == 0.75);
    CHECK(t.i0[2] == 0 && t.l1[2] == 0.75);
    CHECK(t.i0[3] == 1 && t.i1[3] == 1 && t.l1[3] == 0.25);
    CHECK(t.lo[0] == 0 && t.hi[0] == 3 && t.lo[1] == 0 && t.hi[1] == 4);
  }
  // upsampling [0, 4] (1x2) to 1x4: 0, 1, 3, 4
  {
    std::vector<double> a = {0.0, 4.0};
    std::vector<double> u = upsample_bilinear(a.data(), 1, 2, 1, 4);
    CHECK(u[0] == 0.0 && u[1] == 1.0 && u[2] == 3.0 && u[3] == 4.0);
  }
  // every row-kernel variant this CPU can run (INTERP_ENGINE_ISA levels)
  // gives the same upsampled values, bit for bit
  {
    namespace cpu = interp_engine::cpu;
    std::vector<double> a(7 * 5);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.37 * static_cast<double>(i * i)) * 3.1;
    const std::vector<double> ref =
        upsample_bilinear(a.data(), 7, 5, 23, 61, cpu::capped(cpu::detected(), cpu::Isa::Generic));
    for (cpu::Isa cap : {cpu::Isa::Avx2, cpu::Isa::Avx512})
      CHECK(upsample_bilinear(a.data(), 7, 5, 23, 61, cpu::capped(cpu::detected(), cap)) == ref);
  }
  // hot bound
  CHECK(hot_bound(1.0) < 1.0 && hot_bound(-1.0) < -1.0 && hot_bound(0.0) < 0.0);
  CHECK(std::isinf(hot_bound(std::numeric_limits<double>::infinity())));
  // one image, one unit, 1x2 map [0, 4] -> 1x4 [0, 1, 3, 4], T = 2: active x = 2, 3
  // labels: map 0 = [1, 1, 2, 0], map 1 = [0, 2, 2, 3]; image label 3
  for (int lite = 0; lite < 2; ++lite) {
    std::vector<double> a = {0.0, 4.0};
    std::vector<std::int32_t> labs = {1, 1, 2, 0, 0, 2, 2, 3};
    LabelView lv;
    lv.data = labs.data();
    lv.kind = IntKind::I32;
    lv.B = 1, lv.P = 2, lv.sh = 1, lv.sw = 4;
    std::vector<std::int64_t> img = {3};
    // labels 1, 2 -> category 0; 3 -> category 1; category 2 unused
    IoUTally t(1, 4, {0, 0, 0, 1}, 3, 1, 4, lite ? UnitRule::Lite : UnitRule::Annotated);
    const double thr = 2.0;
    t.update(view(a, 1, 1, 1, 2), &thr, &lv, img.data(), 1, nullptr, 2);
    // I: label 1: x=2? map0[2] = 2 -> no; label 2: map0[2] + map1[2] = 2; label 3: map1[3] + image (2)
    CHECK(t.intersection()[1] == 0);
    CHECK(t.intersection()[2] == 2);
    CHECK(t.intersection()[3] == 1 + 2);
    CHECK(t.label_pixels()[1] == 2 && t.label_pixels()[2] == 3 && t.label_pixels()[3] == 1 + 4);
    CHECK(t.unit_pixels()[0] == 2 && t.unit_pixels()[1] == 2 && t.unit_pixels()[2] == 0);
    CHECK(t.images() == 1);
    const std::vector<double> iou = t.iou();
    CHECK(iou[0] == 0.0 && iou[1] == 0.0);
    CHECK(std::fabs(iou[2] - 2.0 / (2 + 3 - 2)) < 1e-15);
    CHECK(std::fabs(iou[3] - 3.0 / (2 + 5 - 3)) < 1e-15);
    // merge doubles the counts
    IoUTally u = t;
    u.merge(t);
    CHECK(u.intersection()[3] == 6 && u.images() == 2);
  }
  // Lite vs annotated differ: active region holds no label of category 0
  {
    std::vector<double> a = {0.0, 4.0};
    std::vector<std::int32_t> labs = {1, 0, 0, 0};  // label 1 only at x = 0 (inactive)
    LabelView lv;
    lv.data = labs.data();
    lv.B = 1, lv.P = 1, lv.sh = 1, lv.sw = 4;
    const double thr = 2.0;
    IoUTally ann(1, 2, {0, 0}, 1, 1, 4, UnitRule::Annotated), lite(1, 2, {0, 0}, 1, 1, 4, UnitRule::Lite);
    ann.update(view(a, 1, 1, 1, 2), &thr, &lv, nullptr, 0, nullptr);
    lite.update(view(a, 1, 1, 1, 2), &thr, &lv, nullptr, 0, nullptr);
    CHECK(ann.unit_pixels()[0] == 2);
    CHECK(lite.unit_pixels()[0] == 0);
  }
  // errors: label out of range, wrong K; counts unchanged
  {
    std::vector<double> a = {0.0, 4.0};
    std::vector<std::int32_t> labs = {1, 0, 5, 0};
    LabelView lv;
    lv.data = labs.data();
    lv.B = 1, lv.P = 1, lv.sh = 1, lv.sw = 4;
    const double thr = 2.0;
    IoUTally t(1, 2, {0, 0}, 1, 1, 4);
    bool threw = false;
    try {
      t.update(view(a, 1, 1, 1, 2), &thr, &lv, nullptr, 0, nullptr);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw && t.images() == 0 && t.label_pixels()[1] == 0);
    threw = false;
    try {
      IoUTally bad(1, 2, {0, 3}, 1, 1, 4);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
  }
  return interp_engine_test::check_report("test_iou");
}
