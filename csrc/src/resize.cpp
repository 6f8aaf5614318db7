// Resizing of activation maps (see resize.hpp for the three methods and the
// exact arithmetic each reproduces).
#include "interp_engine/resize.hpp"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "interp_engine/cpu.hpp"
#include "interp_engine/iou.hpp"
#include "interp_engine/parallel.hpp"

// Every multiply and add below is rounded on its own unless std::fma says
// otherwise: the compiler must not contract a * b + c into one fused
// operation (GCC does by default wherever the target has FMA instructions,
// e.g. on aarch64), or the results stop being those of the references.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace interp_engine {
namespace resize {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    fail(std::string(what) + " overflows a 64-bit size (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  return r;
}

constexpr std::int64_t kMaxSide = std::numeric_limits<std::int32_t>::max();

void check_sizes(const MapsView& in, std::int64_t out_h, std::int64_t out_w) {
  if (in.B < 0 || in.K < 0) fail("the numbers of maps must be >= 0");
  if (in.h < 1 || in.w < 1) fail("maps must be non-empty (h, w >= 1); got " + std::to_string(in.h) + " x " +
                                 std::to_string(in.w));
  if (out_h < 1 || out_w < 1)
    fail("the output size must be positive; got " + std::to_string(out_h) + " x " + std::to_string(out_w));
  if (in.h > kMaxSide || in.w > kMaxSide || out_h > kMaxSide || out_w > kMaxSide)
    fail("map sides must be < 2^31");
  const std::int64_t n = checked_mul(in.B, in.K, "the number of maps");
  const std::int64_t cells = checked_mul(out_h, out_w, "the output map size");
  checked_mul(checked_mul(n, cells, "the output size"), 8, "the output size in bytes");
  checked_mul(checked_mul(in.h, out_w, "the intermediate map size"), 8, "the intermediate map size in bytes");
  checked_mul(checked_mul(in.h, in.w, "the input map size"), 8, "the input map size in bytes");
}

// ---------------------------------------------------------------- element reads
// Round a double to float32, to nearest, ties to even, as numpy's
// astype(float32) and Pillow's stores do (IEEE conversion; a finite value
// beyond the float range lies between FLT_MAX and infinity, so the cast is
// defined and rounds to one of them).
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "IEEE 754 float and double are required");
inline float to_f32(double v) { return static_cast<float>(v); }

// Copies map (b, k) into a contiguous double buffer; returns whether it holds
// a NaN, its maximum and its largest magnitude (float64, NaN-free part).
template <Dtype D>
bool gather(const MapsView& in, std::int64_t b, std::int64_t k, double* dst, double& mx, double& mabs) {
  const char* base = static_cast<const char*>(in.data) + b * in.stride[0] + k * in.stride[1];
  bool nan = false;
  double m = -std::numeric_limits<double>::infinity(), a = 0.0;
  const bool big = in.h * in.w >= (1 << 16);
  for (std::int64_t y = 0; y < in.h; ++y) {
    if (big) check_interrupt();
    const char* row = base + y * in.stride[2];
    double* out = dst + y * in.w;
    for (std::int64_t x = 0; x < in.w; ++x) {
      const double v = static_cast<double>(load_wide<D>(row + x * in.stride[3]));
      out[x] = v;
      nan |= std::isnan(v);
      m = v > m ? v : m;
      const double av = std::fabs(v);
      a = av > a ? av : a;
    }
  }
  mx = m;
  mabs = a;
  return nan;
}

bool gather_any(const MapsView& in, std::int64_t b, std::int64_t k, double* dst, double& mx, double& mabs) {
  return dispatch_dtype(in.dtype, [&](auto tag) { return gather<decltype(tag)::value>(in, b, k, dst, mx, mabs); });
}

// ---------------------------------------------------------------- one map
// The one fused multiply-add of torch's sum: the FMA instruction in the
// AVX2+FMA variant, the C library's (correctly rounded, slower) elsewhere.
template <bool HW>
inline double fused(double a, double b, double c) {
#if defined(__GNUC__)
  if constexpr (HW) return __builtin_fma(a, b, c);
#endif
  return std::fma(a, b, c);
}

// torch's sum (see resize.hpp): t[j * stride], j < n.
template <bool HW>
inline double torch_sum(const double* t, std::int64_t stride, const double* w, std::int64_t n) {
  double acc = t[0] * w[0];
  std::int64_t j = 1;
  for (; j + 1 < n; j += 2) {
    acc = acc + t[j * stride] * w[j];
    acc = acc + t[(j + 1) * stride] * w[j + 1];
  }
  if (j < n) acc = fused<HW>(t[j * stride], w[j], acc);
  return acc;
}

inline double pil_sum(const float* t, std::int64_t stride, const double* w, std::int64_t n) {
  double acc = 0.0;
  for (std::int64_t j = 0; j < n; ++j) acc = acc + static_cast<double>(t[j * stride]) * w[j];
  return acc;
}

struct Plan {
  Method method;
  std::int64_t h, w, oh, ow;
  Taps tx, ty;  // used when the axis changes size (Antialias, Pil)
  bool need_x, need_y;
  cpu::Features allowed;  // what the kernels may use (cpu::allowed(), once per call)
  bool hw;      // run the AVX2+FMA variant
  double skip_rel;  // maps with max + skip_rel * max|value| < T cannot fire (Antialias)
};

// Work buffers of one thread.
struct Work {
  std::vector<double> a;     // h * w source values
  std::vector<float> a32;    // h * w (Pil)
  std::vector<double> H;     // h * ow after the width pass (Antialias)
  std::vector<float> H32;    // h * ow (Pil)
  std::vector<double> acc;   // ow (Pil height pass)
  std::vector<double> out;   // oh * ow (resize_above)
  std::vector<float> out32;  // oh * ow (resize_above, Pil)
};

// Periodic interrupt checks inside a large map.
inline void row_check(std::int64_t cells) {
  if (cells >= (1 << 16)) check_interrupt();
}

template <bool HW>
inline __attribute__((always_inline)) void antialias_map_impl(const Plan& p, Work& wk, double* out) {
  const std::int64_t h = p.h, w = p.w, oh = p.oh, ow = p.ow;
  const double* H = wk.a.data();
  if (p.need_x) {
    wk.H.resize(static_cast<std::size_t>(h * ow));
    const Taps& t = p.tx;
    for (std::int64_t r = 0; r < h; ++r) {
      const double* src = wk.a.data() + r * w;
      double* dst = wk.H.data() + r * ow;
      for (std::int64_t i = 0; i < ow; ++i)
        dst[i] = torch_sum<HW>(src + t.start[i], 1, t.w.data() + t.offset[i], t.count[i]);
      row_check(ow * w);
    }
    H = wk.H.data();
  }
  if (!p.need_y) {
    std::memcpy(out, H, static_cast<std::size_t>(oh * ow) * sizeof(double));
    return;
  }
  const Taps& t = p.ty;
  for (std::int64_t y = 0; y < oh; ++y) {
    const double* col = H + t.start[y] * ow;
    const double* wt = t.w.data() + t.offset[y];
    const std::int64_t n = t.count[y];
    double* dst = out + y * ow;
    // the per-element order of torch_sum, a row at a time
    for (std::int64_t x = 0; x < ow; ++x) dst[x] = col[x] * wt[0];
    std::int64_t j = 1;
    for (; j + 1 < n; j += 2) {
      const double* r0 = col + j * ow;
      const double* r1 = col + (j + 1) * ow;
      const double w0 = wt[j], w1 = wt[j + 1];
      for (std::int64_t x = 0; x < ow; ++x) {
        double acc = dst[x] + r0[x] * w0;
        dst[x] = acc + r1[x] * w1;
      }
    }
    if (j < n) {
      const double* r0 = col + j * ow;
      const double w0 = wt[j];
      for (std::int64_t x = 0; x < ow; ++x) dst[x] = fused<HW>(r0[x], w0, dst[x]);
    }
    row_check(ow * n * 8);
  }
}

template <bool HW>
inline __attribute__((always_inline)) void pil_map_impl(const Plan& p, Work& wk, float* out) {
  const std::int64_t h = p.h, w = p.w, oh = p.oh, ow = p.ow;
  wk.a32.resize(static_cast<std::size_t>(h * w));
  for (std::int64_t i = 0; i < h * w; ++i) wk.a32[i] = to_f32(wk.a[i]);
  const float* H = wk.a32.data();
  if (p.need_x) {
    wk.H32.resize(static_cast<std::size_t>(h * ow));
    const Taps& t = p.tx;
    for (std::int64_t r = 0; r < h; ++r) {
      const float* src = wk.a32.data() + r * w;
      float* dst = wk.H32.data() + r * ow;
      for (std::int64_t i = 0; i < ow; ++i)
        dst[i] = to_f32(pil_sum(src + t.start[i], 1, t.w.data() + t.offset[i], t.count[i]));
      row_check(ow * w);
    }
    H = wk.H32.data();
  }
  if (!p.need_y) {
    std::memcpy(out, H, static_cast<std::size_t>(oh * ow) * sizeof(float));
    return;
  }
  const Taps& t = p.ty;
  wk.acc.resize(static_cast<std::size_t>(ow));
  double* acc = wk.acc.data();
  for (std::int64_t y = 0; y < oh; ++y) {
    const float* col = H + t.start[y] * ow;
    const double* wt = t.w.data() + t.offset[y];
    const std::int64_t n = t.count[y];
    for (std::int64_t x = 0; x < ow; ++x) acc[x] = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const float* r = col + j * ow;
      const double wj = wt[j];
      for (std::int64_t x = 0; x < ow; ++x) acc[x] = acc[x] + static_cast<double>(r[x]) * wj;
    }
    float* dst = out + y * ow;
    for (std::int64_t x = 0; x < ow; ++x) dst[x] = to_f32(acc[x]);
    row_check(ow * n * 8);
  }
}

// The variants: the same arithmetic, compiled for AVX2+FMA (the fused
// multiply-add inline, the row loops vectorized) or for the baseline.  No
// contraction either way (see the pragma above), so the results are equal.
void antialias_map_generic(const Plan& p, Work& wk, double* out) { antialias_map_impl<false>(p, wk, out); }
void pil_map_generic(const Plan& p, Work& wk, float* out) { pil_map_impl<false>(p, wk, out); }
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2,fma"))) void antialias_map_hw(const Plan& p, Work& wk, double* out) {
  antialias_map_impl<true>(p, wk, out);
}
__attribute__((target("avx2,fma"))) void pil_map_hw(const Plan& p, Work& wk, float* out) {
  pil_map_impl<true>(p, wk, out);
}
#else
void antialias_map_hw(const Plan& p, Work& wk, double* out) { antialias_map_impl<false>(p, wk, out); }
void pil_map_hw(const Plan& p, Work& wk, float* out) { pil_map_impl<false>(p, wk, out); }
#endif

void bilinear_map(const Plan& p, Work& wk, double* out) {
  const std::vector<double> v = iou::upsample_bilinear(wk.a.data(), p.h, p.w, p.oh, p.ow, p.allowed);
  std::memcpy(out, v.data(), v.size() * sizeof(double));
}

void antialias_map(const Plan& p, Work& wk, double* out) {
  if (p.hw)
    antialias_map_hw(p, wk, out);
  else
    antialias_map_generic(p, wk, out);
}
void pil_map(const Plan& p, Work& wk, float* out) {
  if (p.hw)
    pil_map_hw(p, wk, out);
  else
    pil_map_generic(p, wk, out);
}

Plan make_plan(const MapsView& in, std::int64_t out_h, std::int64_t out_w, Method method) {
  if (method != Method::Bilinear && method != Method::Antialias && method != Method::Pil)
    fail("unknown resize method");
  check_sizes(in, out_h, out_w);
  Plan p;
  p.method = method;
  p.h = in.h, p.w = in.w, p.oh = out_h, p.ow = out_w;
  p.need_x = in.w != out_w;
  p.need_y = in.h != out_h;
  p.allowed = cpu::allowed();
  p.hw = p.allowed.avx2 && p.allowed.fma;
  if (method != Method::Bilinear) {
    const bool pil = method == Method::Pil;
    if (p.need_x) p.tx = make_taps(in.w, out_w, pil);
    if (p.need_y) p.ty = make_taps(in.h, out_h, pil);
  }
  const double n = static_cast<double>((p.need_x ? p.tx.ksize : 0) + (p.need_y ? p.ty.ksize : 0) + 2);
  p.skip_rel = 4.0 * n * std::ldexp(1.0, -53);
  return p;
}

// Runs fn(b, k, max, max |value|, work) over every map on the thread pool; throws NanFound for
// the first map (in (b, k) order) holding a NaN, after all workers stopped.
template <typename F>
void for_each_map(const MapsView& in, const Plan& p, int num_threads, F&& fn) {
  const std::int64_t n = in.B * in.K;
  if (n == 0) return;
  const std::int64_t cost = p.h * p.w + p.h * p.ow + p.oh * p.ow;
  const std::size_t grain = static_cast<std::size_t>(std::max<std::int64_t>(1, (std::int64_t{1} << 16) / cost));
  std::atomic<std::int64_t> first_nan{n};
  parallel_for(
      static_cast<std::size_t>(n), grain,
      [&](std::size_t begin, std::size_t end, int) {
        Work wk;
        wk.a.resize(static_cast<std::size_t>(p.h * p.w));
        for (std::size_t i = begin; i < end; ++i) {
          check_interrupt();
          const std::int64_t idx = static_cast<std::int64_t>(i);
          const std::int64_t b = idx / in.K, k = idx % in.K;
          double mx = 0.0, mabs = 0.0;
          if (gather_any(in, b, k, wk.a.data(), mx, mabs)) {
            std::int64_t cur = first_nan.load();
            while (idx < cur && !first_nan.compare_exchange_weak(cur, idx)) {
            }
            continue;
          }
          if (first_nan.load(std::memory_order_relaxed) < n) continue;  // the call fails anyway
          fn(b, k, mx, mabs, wk);
        }
      },
      num_threads);
  const std::int64_t bad = first_nan.load();
  if (bad < n) throw NanFound(bad / in.K, bad % in.K);
}

}  // namespace

// ---------------------------------------------------------------- taps
Taps make_taps(std::int64_t in, std::int64_t out, bool pil) {
  if (in < 1 || out < 1) fail("interpolation sizes must be positive");
  if (in > kMaxSide || out > kMaxSide) fail("interpolation sizes must be < 2^31");
  Taps t;
  t.in = in;
  t.out = out;
  // Pillow: scale = (double)(in1 - in0) / out with the box as float32
  const double in_d = pil ? static_cast<double>(static_cast<float>(in)) : static_cast<double>(in);
  const double scale = in_d / static_cast<double>(out);
  const double fs = scale >= 1.0 ? scale : 1.0;
  const double support = 1.0 * fs;  // the triangle filter's support is 1
  const double inv = 1.0 / fs;
  const double ks = std::ceil(support) * 2 + 1;
  if (!(ks <= static_cast<double>(kMaxSide))) fail("interpolation support too large");
  t.ksize = static_cast<std::int64_t>(ks);
  t.start.resize(static_cast<std::size_t>(out));
  t.count.resize(static_cast<std::size_t>(out));
  t.offset.resize(static_cast<std::size_t>(out) + 1);
  std::int64_t total = 0;
  std::vector<double> w;
  for (std::int64_t i = 0; i < out; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    std::int64_t lo = static_cast<std::int64_t>(center - support + 0.5);
    if (lo < 0) lo = 0;
    std::int64_t hi = static_cast<std::int64_t>(center + support + 0.5);
    if (hi > in) hi = in;
    std::int64_t n = hi - lo;
    n = std::min(std::max<std::int64_t>(n, 0), t.ksize);  // torch's clamp (never active in practice)
    if (n < 1) fail("interpolation window is empty (internal error)");
    t.start[i] = lo;
    t.count[i] = n;
    t.offset[i] = total;
    const std::size_t at = t.w.size();
    double ww = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      double x = ((static_cast<double>(j + lo) - center) + 0.5) * inv;
      if (x < 0.0) x = -x;
      const double wj = x < 1.0 ? 1.0 - x : 0.0;
      t.w.push_back(wj);
      ww += wj;
    }
    if (ww != 0.0)
      for (std::int64_t j = 0; j < n; ++j) t.w[at + static_cast<std::size_t>(j)] /= ww;
    total += n;
  }
  t.offset[static_cast<std::size_t>(out)] = total;
  return t;
}

// ---------------------------------------------------------------- entry points
std::int64_t output_values(const MapsView& in, std::int64_t out_h, std::int64_t out_w) {
  check_sizes(in, out_h, out_w);
  return in.B * in.K * out_h * out_w;
}

void resize_maps(const MapsView& in, std::int64_t out_h, std::int64_t out_w, Method method, void* out,
                 int num_threads) {
  const Plan p = make_plan(in, out_h, out_w, method);
  const std::int64_t cells = out_h * out_w;
  for_each_map(in, p, num_threads, [&](std::int64_t b, std::int64_t k, double, double, Work& wk) {
    const std::int64_t at = (b * in.K + k) * cells;
    switch (method) {
      case Method::Bilinear: bilinear_map(p, wk, static_cast<double*>(out) + at); break;
      case Method::Antialias: antialias_map(p, wk, static_cast<double*>(out) + at); break;
      case Method::Pil: pil_map(p, wk, static_cast<float*>(out) + at); break;
    }
  });
}

void resize_above(const MapsView& in, std::int64_t out_h, std::int64_t out_w, Method method,
                  const double* thresholds, float* out, int num_threads) {
  const Plan p = make_plan(in, out_h, out_w, method);
  for (std::int64_t k = 0; k < in.K; ++k)
    if (std::isnan(thresholds[k])) fail("thresholds must not contain NaN");
  const std::int64_t cells = out_h * out_w;
  constexpr float one = 1.0f;
  for_each_map(in, p, num_threads, [&](std::int64_t b, std::int64_t k, double mx, double mabs, Work& wk) {
    float* dst = out + (b * in.K + k) * cells;
    const double T = thresholds[k];
    if (method == Method::Pil) {
      // NetDissect-Lite: `if feature_map.max() > threshold:` resize and compare
      // (with the float32 comparison below this never changes the result, as
      // no resized value exceeds the float32-rounded maximum; it saves the work)
      if (!(mx > T)) {
        std::fill(dst, dst + cells, 0.0f);
        return;
      }
      wk.out32.resize(static_cast<std::size_t>(cells));
      pil_map(p, wk, wk.out32.data());
      // `mask > threshold[unit_id]`: a float32 array against a float64 scalar,
      // which NumPy 1.x (Lite's) compares in float32
      const float T32 = to_f32(T);
      for (std::int64_t i = 0; i < cells; ++i) dst[i] = wk.out32[i] > T32 ? one : 0.0f;
      return;
    }
    if (method == Method::Antialias && std::isfinite(mabs) && mx + (mabs * p.skip_rel + 1e-300) < T) {
      // no output can exceed T: every pass is a combination with weights >= 0
      // summing to 1 within n ulps, so it is at most the maximum plus
      // 2 n u max|value| (u = 2^-53), n the taps of the pass; skip_rel is
      // twice that bound for both passes
      std::fill(dst, dst + cells, 0.0f);
      return;
    }
    wk.out.resize(static_cast<std::size_t>(cells));
    if (method == Method::Antialias)
      antialias_map(p, wk, wk.out.data());
    else
      bilinear_map(p, wk, wk.out.data());
    for (std::int64_t i = 0; i < cells; ++i) dst[i] = wk.out[i] > T ? one : 0.0f;
  });
}

}  // namespace resize
}  // namespace interp_engine
