// Reading the activation maps of the IoU tally in place (any Dtype, any
// strides): the loads widened to float64, the per-map maximum with its NaN
// test, and the block hot test of contiguous float32 maps.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "iou_internal.hpp"

namespace interp_engine {
namespace iou {
namespace detail {

namespace {
template <Dtype D>
void load_map(const ActivationView& a, std::int64_t b, std::int64_t k, double* buf) {
  const char* base = static_cast<const char*>(a.data) + b * a.stride[0] + k * a.stride[1];
  for (std::int64_t y = 0; y < a.h; ++y) {
    const char* row = base + y * a.stride[2];
    double* out = buf + y * a.w;
    for (std::int64_t x = 0; x < a.w; ++x) out[x] = static_cast<double>(load_wide<D>(row + x * a.stride[3]));
  }
}

}  // namespace

LoadFn loader_for(Dtype d) {
  return dispatch_dtype(d, [](auto tag) -> LoadFn { return &load_map<decltype(tag)::value>; });
}

namespace {
// Maximum of map (b, k) widened to float64, and whether it holds a NaN: the
// cheap first look at every map (most maps of a layer never reach their
// unit's threshold and are not read again).
// Contiguous float32 / float64 maps: a vectorizable pass (AVX2 when allowed;
// max and a NaN flag are exact whatever the order).
template <typename F>
inline void flat_max_generic(const F* p, std::int64_t n, double& mx_out, bool& nan) {
  F mx = -std::numeric_limits<F>::infinity();
  bool bad = false;
  for (std::int64_t i = 0; i < n; ++i) {
    bad |= (p[i] != p[i]);
    mx = p[i] > mx ? p[i] : mx;
  }
  mx_out = static_cast<double>(mx);
  nan = bad;
}
#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("avx2"))) void flat_max_f32_avx2(const float* p, std::int64_t n, double& mx_out,
                                                       bool& nan) {
  // lanes: max with NaN detected separately (unordered compare)
  typedef float v8 __attribute__((vector_size(32)));
  v8 m = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  v8 u = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 v;
    std::memcpy(&v, p + i, sizeof v);
    m = v > m ? v : m;
    u = (v != v) ? v8{1, 1, 1, 1, 1, 1, 1, 1} : u;
  }
  float mx = -INFINITY;
  bool bad = false;
  for (int j = 0; j < 8; ++j) {
    mx = m[j] > mx ? m[j] : mx;
    bad |= u[j] != 0;
  }
  for (; i < n; ++i) {
    bad |= (p[i] != p[i]);
    mx = p[i] > mx ? p[i] : mx;
  }
  mx_out = static_cast<double>(mx);
  nan = bad;
}
#endif

template <Dtype KIND, bool AVX2>
double map_max(const ActivationView& a, std::int64_t b, std::int64_t k, bool& nan) {
  const char* base = static_cast<const char*>(a.data) + b * a.stride[0] + k * a.stride[1];
  using Native = typename std::conditional<KIND == Dtype::F64, double, float>::type;
  if constexpr (KIND == Dtype::F32 || KIND == Dtype::F64) {
    if (a.stride[3] == static_cast<std::int64_t>(sizeof(Native)) &&
        a.stride[2] == a.w * static_cast<std::int64_t>(sizeof(Native)) &&
        reinterpret_cast<std::uintptr_t>(base) % alignof(Native) == 0) {  // (else the memcpy loop below)
      double mxd;
#ifdef IE_IOU_X86_DISPATCH
      if constexpr (KIND == Dtype::F32 && AVX2) {
        flat_max_f32_avx2(reinterpret_cast<const float*>(base), a.h * a.w, mxd, nan);
        return mxd;
      }
#endif
      flat_max_generic(reinterpret_cast<const Native*>(base), a.h * a.w, mxd, nan);
      return mxd;
    }
  }
  Native mx = -std::numeric_limits<Native>::infinity();
  bool bad = false;
  for (std::int64_t y = 0; y < a.h; ++y) {
    const char* row = base + y * a.stride[2];
    for (std::int64_t x = 0; x < a.w; ++x) {
      Native v;
      v = load_wide<KIND>(row + x * a.stride[3]);  // exact
      bad |= (v != v);
      mx = v > mx ? v : mx;
    }
  }
  nan = bad;
  return static_cast<double>(mx);
}

}  // namespace

MaxFn max_for(Dtype d, bool avx2) {
  return dispatch_dtype(d, [avx2](auto tag) -> MaxFn {
    return avx2 ? &map_max<decltype(tag)::value, true> : &map_max<decltype(tag)::value, false>;
  });
}

// The hot test of a block of contiguous float32 maps in one streaming pass
// (the per-map max above stops at every map's 49 values; this one keeps the
// loads flowing): bit i of hot = x[i] > t[i], where t repeats each unit's
// bound h*w times as float32.  For float x, x > tl (double) <=> x > the
// largest float32 <= tl, so the bits equal the per-map test `max > tl`.
// Returns whether the block holds a NaN.
float float_at_or_below(double tl) {
  float f = static_cast<float>(tl);  // nearest (+-inf beyond the float range)
  if (static_cast<double>(f) > tl) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("avx512f,avx512bw"))) bool block_hot_f32_avx512(const float* x, const float* t,
                                                                      std::int64_t n, std::uint16_t* hot) {
  __mmask16 nan = 0;
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    hot[i >> 4] = _mm512_cmp_ps_mask(v, _mm512_loadu_ps(t + i), _CMP_GT_OQ);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    hot[i >> 4] = _mm512_mask_cmp_ps_mask(m, v, _mm512_maskz_loadu_ps(m, t + i), _CMP_GT_OQ);
    nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
  }
  return nan != 0;
}
#endif

}  // namespace detail
}  // namespace iou
}  // namespace interp_engine
