// Bilinear upsampling of the IoU tally (iou.hpp for the arithmetic): the axis
// tables, the row kernels in their instruction-set variants (all computing
// the same correctly rounded fma: the hardware instruction, chosen at run time
// so the build needs no -mfma / -march flags, or the C library's), the
// standalone upsample_bilinear, and hot_bound with the proof that skipping
// cold cells is exact.
//   hrow: H[x] = fma(a[x0[x]], lx0[x], a[x1[x]] * lx1[x])      x in [xa, xb)
//   vrow: V[x] = fma(H0[x], ly0, H1[x] * ly1)
#include <algorithm>
#include <cmath>
#include <limits>

#include "interp_engine/checked.hpp"
#include "iou_internal.hpp"

namespace interp_engine {
namespace iou {
namespace detail {

int isa_level(const cpu::Features& f) {
  if (!(f.avx2 && f.fma && f.popcnt)) return 0;
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vpopcntdq ? 2 : 1;
}

namespace {
// vmask: the values of vrow kept only as a bit mask of V > thr: bit i of
// mask[i / 64] for x = xa + i (mask has (xb - xa + 63) / 64 words); returns
// how many are set.
std::int64_t vmask_soft(const double* H0, const double* H1, double ly0, double ly1, std::int64_t xa,
                        std::int64_t xb, double thr, std::uint64_t* mask) {
  const std::int64_t n = xb - xa;
  for (std::int64_t j = 0, nw = (n + 63) / 64; j < nw; ++j) mask[j] = 0;
  std::int64_t c = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = std::fma(H0[xa + i], ly0, H1[xa + i] * ly1);
    if (v > thr) {
      mask[i >> 6] |= std::uint64_t(1) << (i & 63);
      ++c;
    }
  }
  return c;
}

void hrow_soft(const double* a, const std::int32_t* x0, const std::int32_t* x1, const double* lx0,
               const double* lx1, std::int64_t xa, std::int64_t xb, double* H) {
  for (std::int64_t x = xa; x < xb; ++x) H[x] = std::fma(a[x0[x]], lx0[x], a[x1[x]] * lx1[x]);
}
std::int64_t vrow_soft(const double* H0, const double* H1, double ly0, double ly1, std::int64_t xa,
                       std::int64_t xb, double thr, double* V) {
  std::int64_t n = 0;
  for (std::int64_t x = xa; x < xb; ++x) {
    V[x] = std::fma(H0[x], ly0, H1[x] * ly1);
    n += V[x] > thr;
  }
  return n;
}

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("avx2,fma"))) void hrow_hw(const double* a, const std::int32_t* x0,
                                                 const std::int32_t* x1, const double* lx0,
                                                 const double* lx1, std::int64_t xa,
                                                 std::int64_t xb, double* H) {
  for (std::int64_t x = xa; x < xb; ++x) H[x] = __builtin_fma(a[x0[x]], lx0[x], a[x1[x]] * lx1[x]);
}
__attribute__((target("avx2,fma"))) std::int64_t vrow_hw(const double* H0, const double* H1,
                                                         double ly0, double ly1, std::int64_t xa,
                                                         std::int64_t xb, double thr, double* V) {
  std::int64_t n = 0;
  for (std::int64_t x = xa; x < xb; ++x) {
    const double v = __builtin_fma(H0[x], ly0, H1[x] * ly1);
    V[x] = v;
    n += v > thr;
  }
  return n;
}
#endif

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("avx2,fma,popcnt"))) std::int64_t vmask_hw(const double* H0, const double* H1,
                                                          double ly0, double ly1, std::int64_t xa,
                                                          std::int64_t xb, double thr,
                                                          std::uint64_t* mask) {
  const std::int64_t n = xb - xa;
  const __m256d vl0 = _mm256_set1_pd(ly0), vl1 = _mm256_set1_pd(ly1), vt = _mm256_set1_pd(thr);
  // the current mask word stays in a register (no store-to-load chain)
  std::int64_t c = 0, i = 0;
  std::uint64_t word = 0;
  for (; i + 4 <= n; i += 4) {  // 4 | 64: a group never straddles two words
    const __m256d h0 = _mm256_loadu_pd(H0 + xa + i);
    const __m256d h1 = _mm256_loadu_pd(H1 + xa + i);
    const __m256d v = _mm256_fmadd_pd(h0, vl0, _mm256_mul_pd(h1, vl1));  // fma(H0, ly0, H1*ly1)
    const unsigned m = static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(v, vt, _CMP_GT_OQ)));
    word |= static_cast<std::uint64_t>(m) << (i & 63);
    if ((i & 63) == 60) {
      mask[i >> 6] = word;
      c += __builtin_popcountll(word);
      word = 0;
    }
  }
  for (; i < n; ++i) {
    const double v = __builtin_fma(H0[xa + i], ly0, H1[xa + i] * ly1);
    if (v > thr) word |= std::uint64_t(1) << (i & 63);
  }
  if (n & 63) {
    mask[(n - 1) >> 6] = word;
    c += __builtin_popcountll(word);
  }
  return c;
}
#endif


template <void (*HROW)(const double*, const std::int32_t*, const std::int32_t*, const double*,
                       const double*, std::int64_t, std::int64_t, double*)>
void hrange_scalar(const double* a, std::int64_t, const AxisTable& tx, std::int64_t X0, std::int64_t X1,
                   double* H, double tl, bool hot, std::int64_t& lo, std::int64_t& hi) {
  HROW(a, tx.i0.data(), tx.i1.data(), tx.l0.data(), tx.l1.data(), X0, X1, H);
  lo = X1;
  hi = X0;
  if (!hot) return;
  std::int64_t x = X0;
  while (x < X1 && !(H[x] > tl)) ++x;
  if (x == X1) return;  // none: [X1, X0)
  lo = x;
  x = X1;
  while (x > lo && !(H[x - 1] > tl)) --x;
  hi = x;
}

#ifdef IE_IOU_X86_DISPATCH
// 8 outputs at a time; the source values come from one register (w <= 8:
// a permute) or a gather; the same fma as hrow, and the range from the
// compare masks.
__attribute__((target("avx512f,avx512vl,fma"))) void hrange_avx512(const double* a, std::int64_t w,
                                                         const AxisTable& tx, std::int64_t X0,
                                                         std::int64_t X1, double* H, double tl, bool hot,
                                                         std::int64_t& lo, std::int64_t& hi) {
  const bool reg = w <= 8;
  const __m512d arow = reg ? _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << w) - 1), a) : _mm512_setzero_pd();
  const __m512d vt = _mm512_set1_pd(tl);
  std::int64_t l = X1, h = X0;
  for (std::int64_t x = X0; x < X1; x += 8) {
    const __mmask8 k = X1 - x >= 8 ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << (X1 - x)) - 1);
    const __m256i j0 = _mm256_maskz_loadu_epi32(k, tx.i0.data() + x);
    const __m256i j1 = _mm256_maskz_loadu_epi32(k, tx.i1.data() + x);
    __m512d a0, a1;
    if (reg) {
      a0 = _mm512_maskz_permutexvar_pd(0xFF, _mm512_maskz_cvtepi32_epi64(0xFF, j0), arow);
      a1 = _mm512_maskz_permutexvar_pd(0xFF, _mm512_maskz_cvtepi32_epi64(0xFF, j1), arow);
    } else {
      a0 = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), k, j0, a, 8);
      a1 = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), k, j1, a, 8);
    }
    const __m512d l0 = _mm512_maskz_loadu_pd(k, tx.l0.data() + x);
    const __m512d l1 = _mm512_maskz_loadu_pd(k, tx.l1.data() + x);
    const __m512d v = _mm512_fmadd_pd(a0, l0, _mm512_mul_pd(a1, l1));  // fma(a0, l0, a1 * l1)
    _mm512_mask_storeu_pd(H + x, k, v);
    if (hot) {
      const unsigned m = _mm512_mask_cmp_pd_mask(k, v, vt, _CMP_GT_OQ);
      if (m) {
        if (l == X1) l = x + __builtin_ctz(m);
        h = x + 32 - __builtin_clz(m);
      }
    }
  }
  lo = hot && h > X0 ? l : X1;
  hi = hot && h > X0 ? h : X0;
}
#endif

template <std::int64_t (*VMASK)(const double*, const double*, double, double, std::int64_t, std::int64_t,
                                double, std::uint64_t*)>
void vmask_rows_each(const double* H0, const double* H1, const double* ly0, const double* ly1,
                     std::int64_t nrows, std::int64_t xa, std::int64_t xb, double thr, std::uint64_t* masks,
                     std::int64_t stride, std::int64_t* nact) {
  for (std::int64_t i = 0; i < nrows; ++i) nact[i] = VMASK(H0, H1, ly0[i], ly1[i], xa, xb, thr, masks + i * stride);
}

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("avx512f,fma,popcnt"))) void vmask_rows_avx512(
    const double* H0, const double* H1, const double* ly0, const double* ly1, std::int64_t nrows,
    std::int64_t xa, std::int64_t xb, double thr, std::uint64_t* masks, std::int64_t stride,
    std::int64_t* nact) {
  const std::int64_t n = xb - xa, nw = (n + 63) / 64;
  const __m512d vt = _mm512_set1_pd(thr);
  for (std::int64_t i = 0; i < nrows; ++i) {
    nact[i] = 0;
    for (std::int64_t j = 0; j < nw; ++j) masks[i * stride + j] = 0;
  }
  for (std::int64_t i0 = 0; i0 < n; i0 += 8) {  // 8 | 64: a group never straddles two words
    const __mmask8 k = n - i0 >= 8 ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << (n - i0)) - 1);
    const __m512d h0 = _mm512_maskz_loadu_pd(k, H0 + xa + i0);
    const __m512d h1 = _mm512_maskz_loadu_pd(k, H1 + xa + i0);
    std::uint64_t* mw = masks + (i0 >> 6);
    for (std::int64_t i = 0; i < nrows; ++i) {
      const __m512d v = _mm512_fmadd_pd(h0, _mm512_set1_pd(ly0[i]), _mm512_mul_pd(h1, _mm512_set1_pd(ly1[i])));
      const unsigned m = static_cast<unsigned>(_mm512_mask_cmp_pd_mask(k, v, vt, _CMP_GT_OQ));
      mw[i * stride] |= static_cast<std::uint64_t>(m) << (i0 & 63);
    }
  }
  for (std::int64_t i = 0; i < nrows; ++i) {
    std::int64_t c = 0;
    for (std::int64_t j = 0; j < nw; ++j) c += __builtin_popcountll(masks[i * stride + j]);
    nact[i] = c;
  }
}
#endif

}  // namespace

RowKernels row_kernels(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 1) return {&hrow_hw, &vrow_hw};
#endif
  (void)level;
  return {&hrow_soft, &vrow_soft};
}

HRangeFn hrange_for(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 2) return &hrange_avx512;
  if (level >= 1) return &hrange_scalar<&hrow_hw>;
#endif
  (void)level;
  return &hrange_scalar<&hrow_soft>;
}

VmaskRowsFn vmask_rows_for(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 2) return &vmask_rows_avx512;
  if (level >= 1) return &vmask_rows_each<&vmask_hw>;
#endif
  (void)level;
  return &vmask_rows_each<&vmask_soft>;
}

}  // namespace detail

using namespace detail;

AxisTable make_axis_table(std::int64_t in, std::int64_t out) {
  if (in <= 0 || out <= 0) fail("interpolation sizes must be positive");
  if (in > std::numeric_limits<std::int32_t>::max() || out > std::numeric_limits<std::int32_t>::max())
    fail("interpolation sizes must be < 2^31");
  AxisTable t;
  t.in = in;
  t.out = out;
  t.i0.resize(out);
  t.i1.resize(out);
  t.l0.resize(out);
  t.l1.resize(out);
  // torch: scale = (opmath)in / out; src = scale * (d + 0.5) - 0.5 (contracted
  // to one fma by its compiler), clamped at 0; index by floorf (a float
  // floor: a src within float rounding below an integer goes to that
  // integer, with lambda clamped to 0); lambda in [0, 1].
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t d = 0; d < out; ++d) {
    double src = std::fma(scale, static_cast<double>(d) + 0.5, -0.5);
    if (src < 0) src = 0;
    std::int64_t i0 = static_cast<std::int64_t>(std::floor(static_cast<float>(src)));
    i0 = std::min(i0, in - 1);
    const double l1 = std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0);
    t.i0[d] = static_cast<std::int32_t>(i0);
    t.i1[d] = static_cast<std::int32_t>(i0 + (i0 < in - 1 ? 1 : 0));
    t.l1[d] = l1;
    t.l0[d] = 1.0 - l1;
  }
  // inverse ranges: i0 and i1 are non-decreasing in d, so the outputs that
  // read source index r are contiguous.
  t.lo.assign(in, 0);
  t.hi.assign(in, 0);
  std::vector<bool> seen(in, false);
  for (std::int64_t d = 0; d < out; ++d) {
    for (std::int32_t r : {t.i0[d], t.i1[d]}) {
      if (!seen[r]) {
        seen[r] = true;
        t.lo[r] = static_cast<std::int32_t>(d);
      }
      t.hi[r] = static_cast<std::int32_t>(d + 1);
    }
  }
  // a source index no output reads (downsampling) gets the empty range at the
  // place where it would be, so that lo and hi stay non-decreasing and the
  // bounding range [lo[a], hi[b]) covers the ranges of every r in [a, b].
  for (std::int64_t r = 0; r < in; ++r) {
    if (seen[r]) continue;
    std::int64_t d = 0;
    while (d < out && t.i0[d] <= r) ++d;
    t.lo[r] = t.hi[r] = static_cast<std::int32_t>(d);
  }
  return t;
}

std::vector<double> upsample_bilinear(const double* a, std::int64_t h, std::int64_t w,
                                      std::int64_t out_h, std::int64_t out_w) {
  return upsample_bilinear(a, h, w, out_h, out_w, cpu::allowed());
}

std::vector<double> upsample_bilinear(const double* a, std::int64_t h, std::int64_t w, std::int64_t out_h,
                                      std::int64_t out_w, const cpu::Features& allowed) {
  if (h <= 0 || w <= 0 || out_h <= 0 || out_w <= 0) fail("interpolation sizes must be positive");
  const std::int64_t n_out = checked_mul(out_h, out_w, "upsample_bilinear: (out_h, out_w)");
  Bytes need("upsample_bilinear");
  need.add(n_out, sizeof(double)).add(checked_mul(h, out_w, "upsample_bilinear: (h, out_w)"), sizeof(double));
  need.add(out_h + out_w + h + w, 2 * sizeof(std::int32_t) + 2 * sizeof(double));
  need.require();
  const AxisTable ty = make_axis_table(h, out_h), tx = make_axis_table(w, out_w);
  const RowKernels rk = row_kernels(isa_level(allowed));
  std::vector<double> H(static_cast<std::size_t>(h * out_w));
  for (std::int64_t r = 0; r < h; ++r)
    rk.hrow(a + r * w, tx.i0.data(), tx.i1.data(), tx.l0.data(), tx.l1.data(), 0, out_w,
            H.data() + r * out_w);
  std::vector<double> out(static_cast<std::size_t>(out_h * out_w));
  for (std::int64_t y = 0; y < out_h; ++y)
    rk.vrow(H.data() + ty.i0[y] * out_w, H.data() + ty.i1[y] * out_w, ty.l0[y], ty.l1[y], 0, out_w,
            0.0, out.data() + y * out_w);
  return out;
}

// Why skipping cold cells is exact.  Let t = hot_bound(T) and suppose the four
// source values a00, a01, a10, a11 of an output pixel are all <= t (finite or
// -inf; NaN is rejected at the boundary).  Every operation of the formula is
// monotone non-decreasing in its data operands (the weights are >= 0 and
// rounding is monotone), so the computed value is <= the computed value for
// a00 = a01 = a10 = a11 = t (or NaN, where 0 * -inf occurs: NaN > T is
// false).  For four equal inputs t the formula returns t * s where s is the
// product of the two weight sums l0 + l1 (each within 2^-53 of 1, since
// l0 = fl(1 - l1)) and of at most four rounding factors (1 + d), |d| <= 2^-53,
// plus an absolute underflow error below 4 * 2^-1074.  Hence the value is at
// most t + 8 * 2^-53 * |t| + 2^-1070 < t + 1e-15 * |t| + 1e-320.  With
// t = T - m, m = max(|T| * 1e-12, 1e-300), this is < T: no pixel whose
// neighbourhood holds only cells <= t can exceed T, so only pixels next to a
// cell > t ("hot") are evaluated.  T = +inf: nothing can exceed it; T = -inf:
// t = -inf (every cell but -inf is hot).
double hot_bound(double T) {
  if (std::isinf(T)) return T;
  const double m = std::max(std::fabs(T) * 1e-12, 1e-300);
  return T - m;
}

}  // namespace iou
}  // namespace interp_engine
