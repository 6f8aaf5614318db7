#include "interp_engine/iou.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "interp_engine/parallel.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IE_IOU_X86_DISPATCH 1
#endif

namespace interp_engine {
namespace iou {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

inline std::int64_t popcount_soft(std::uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<std::int64_t>((x * 0x0101010101010101ULL) >> 56);
}

inline int clz64(std::uint64_t x) {  // x != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_clzll(x);
#else
  int n = 0;
  while (!(x >> 63)) {
    x <<= 1;
    ++n;
  }
  return n;
#endif
}

inline int ctz64(std::uint64_t x) {  // x != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(x);
#else
  int n = 0;
  while (!(x & 1)) {
    x >>= 1;
    ++n;
  }
  return n;
#endif
}

// Reads map (b, k) into buf (row-major h x w, float64).
template <Dtype D>
void load_map(const ActivationView& a, std::int64_t b, std::int64_t k, double* buf) {
  const char* base = static_cast<const char*>(a.data) + b * a.stride[0] + k * a.stride[1];
  for (std::int64_t y = 0; y < a.h; ++y) {
    const char* row = base + y * a.stride[2];
    double* out = buf + y * a.w;
    for (std::int64_t x = 0; x < a.w; ++x) out[x] = static_cast<double>(load_wide<D>(row + x * a.stride[3]));
  }
}

using LoadFn = void (*)(const ActivationView&, std::int64_t, std::int64_t, double*);
LoadFn loader_for(Dtype d) {
  return dispatch_dtype(d, [](auto tag) -> LoadFn { return &load_map<decltype(tag)::value>; });
}

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

using MaxFn = double (*)(const ActivationView&, std::int64_t, std::int64_t, bool&);
// avx2: the contiguous float32 pass may use AVX2
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
inline float float_at_or_below(double tl) {
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

// Whether any of bits [off, off + n) is set (8 bytes of slack after the bits).
inline bool any_bit(const std::uint16_t* bits, std::int64_t off, std::int64_t n) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(bits);
  while (n > 0) {
    std::uint64_t v;
    std::memcpy(&v, p + (off >> 3), sizeof v);
    v >>= (off & 7);
    const std::int64_t take = std::min<std::int64_t>(n, 56);
    if (v & ((std::uint64_t(1) << take) - 1)) return true;
    off += take;
    n -= take;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Row kernels.  Both variants compute the same correctly rounded fma; the
// first runs the hardware instruction (chosen at run time, so the build needs
// no -mfma / -march flags), the second the C library's fma.
//   hrow: H[x] = fma(a[x0[x]], lx0[x], a[x1[x]] * lx1[x])      x in [xa, xb)
//   vrow: V[x] = fma(H0[x], ly0, H1[x] * ly1)
struct RowKernels {
  void (*hrow)(const double* a, const std::int32_t* x0, const std::int32_t* x1, const double* lx0,
               const double* lx1, std::int64_t xa, std::int64_t xb, double* H);
  // also returns how many V[x] > thr (rows without an active pixel are skipped)
  std::int64_t (*vrow)(const double* H0, const double* H1, double ly0, double ly1, std::int64_t xa,
                       std::int64_t xb, double thr, double* V);
};

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


// One horizontally interpolated source row over [X0, X1) (H[x], as hrow) and,
// for a row with hot cells, the first and last x with H[x] > tl: [lo, hi)
// (lo = X1, hi = X0 when there is none or the row is not hot, so that the
// union of two ranges is [min lo, max hi)).
using HRangeFn = void (*)(const double* a, std::int64_t w, const AxisTable& tx, std::int64_t X0,
                          std::int64_t X1, double* H, double tl, bool hot, std::int64_t& lo,
                          std::int64_t& hi);

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

// Instruction sets the kernels may use: 2 = AVX-512 (F, BW, VL, VPOPCNTDQ) +
// FMA, 1 = AVX2 + FMA + POPCNT, 0 = portable code; of what `cpu` (the CPU,
// capped by INTERP_ENGINE_ISA: cpu.hpp) allows.  All give the same counts.
int isa_level(const cpu::Features& f) {
  if (!(f.avx2 && f.fma && f.popcnt)) return 0;
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vpopcntdq ? 2 : 1;
}

// Several output rows that read the same two source rows (a run of output
// rows with equal (i0, i1): 16 of them at 16x upsampling), over the same
// range [xa, xb): one load of H0 and H1 per 8 pixels serves them all.  Row
// i's mask goes to masks[i * stride ..] (vmask's layout) and its active count
// to nact[i].  Same arithmetic as vmask.
using VmaskRowsFn = void (*)(const double* H0, const double* H1, const double* ly0, const double* ly1,
                             std::int64_t nrows, std::int64_t xa, std::int64_t xb, double thr,
                             std::uint64_t* masks, std::int64_t stride, std::int64_t* nact);

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

RowKernels row_kernels(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 1) return {&hrow_hw, &vrow_hw};
#endif
  (void)level;
  return {&hrow_soft, &vrow_soft};
}

// ---------------------------------------------------------------------------
// Label maps, per image (shared by all units of the image, so done once):
// validation, the label_pixels histogram, the categories present, the labels
// present, and the rows of every map as runs of equal labels (label maps are
// made of regions, so a row holds a few runs: a unit's active row segment
// [xs, xe) then adds one count per overlapping run instead of one per pixel).
// Labels are renumbered to image-local indices ("loc"; loc 0 = label 0).
//
// Two formats:
// * Label masks (rows of at most 256 pixels and at most 128 (map, label)
//   pairs per image: every image of Broden-like data).  Each
//   (map, label) pair of the image is a column; bits[(y, w, col)] is word w
//   (pixels 64w .. 64w + 63) of row y of the column's pixel mask, the
//   columns of a (row, word) side by side (padded to 8).  A unit's active
//   pixels in row y, as aligned words u[w], then add popcount(u[w] &
//   bits[y, w, col]) to every column: one AND + POPCNT + ADD per 8 columns
//   with AVX-512 (VPOPCNTQ), whatever the number of label runs the active
//   pixels cross, and the counts stay in registers or L1 until the unit is
//   done with the image.  Label 0 has no column (never tallied).  An image's
//   masks (112 rows x 2 words x ~40 columns: 72 KB) stay in L2 while the
//   units visit it.
// * Run ends (any other image): for every pixel where the run that holds it
//   ends, one byte: e8[x] = min(end, B + 256) - B - 1 with B = x rounded down
//   to a multiple of 256, so end(x) = min(run end, next multiple of 256) =
//   B + e8[x] + 1 (a run across a 256-pixel boundary is crossed in several
//   hops, each adding its part to the same label).  The tally hops from run
//   to run reading the label maps in place, counts indexed by label number:
//       x = xs;  while (x < xe) { y = min(end(x), xe); cnt[label[x]] += y - x; x = y; }
}  // namespace

// Per-update work buffers (kept between updates: allocating and faulting
// them in again cost ~1 ms per update).
namespace detail {
constexpr std::int64_t kMaskMaxWords = 4;    // words per row (sw <= 256)
constexpr std::int64_t kMaskMaxCols = 128;   // (map, label) columns per image
struct ImageLabels {
  bool masked = false;
  std::int64_t wpr = 0;                // words per row
  std::int64_t ncp = 0;                // columns, padded to a multiple of 8
  std::vector<std::uint64_t> bits;     // (sh, wpr, ncp) label masks, when masked
  std::vector<std::int32_t> col_label; // (ncp) label number of each column (0: padding)
  std::vector<std::uint8_t> e8;        // run ends (P, sh, sw) + 16 bytes of slack, when !masked
  std::vector<std::int32_t> labels;    // loc -> label number (labels[0] = 0)
};
// A label run of the image, kept until the columns are known.
struct MaskRun {
  std::int16_t y, xs, xe, col;
};
// Per-thread scratch of scan_labels: label -> loc (-1: not seen in this image;
// reset after each image), label -> column of the current map (reset after
// each map), the run start flags of one row, and the image's runs.
struct ScanScratch {
  std::vector<std::int32_t> g2l;
  std::vector<std::int16_t> lcol;
  std::vector<std::uint8_t> chg;
  std::vector<std::uint64_t> words;
  std::vector<MaskRun> runs;
};

// Per-thread buffers of the unit evaluation.
struct UnitScratch {
  std::vector<double> a, Hbuf;
  std::vector<std::uint8_t> hit, cats;
  std::vector<std::uint64_t> mask, acc, urow;
  std::vector<std::int32_t> seg, cnt;
  std::vector<std::int64_t> cmin, cmax, hlo, hhi, gnact;
  std::vector<std::uint16_t> hot;  // block_hot_f32_avx512's bits (+ 8 words of slack for any_bit)
};
}  // namespace detail
using namespace detail;

namespace {

// cg[x] = (row[x] != row[x-1]) for x in [1, n); separate arrays (restrict) so
// that the compiler vectorizes it.
template <typename T>
void change_flags(const T* __restrict row, std::int64_t n, std::uint8_t* __restrict cg) {
  const T* prev = row;
  const T* cur = row + 1;
  std::uint8_t* out = cg + 1;
  for (std::int64_t x = 0; x + 1 < n; ++x) out[x] = static_cast<std::uint8_t>(cur[x] != prev[x]);
}

// Run ends of one row (see above), 16 bytes at a time (e_row has 16 bytes of
// slack past the row; each run overwrites what the previous one wrote past
// its end).
template <typename T>
void fill_run_ends(const T* row, std::int64_t sw, std::uint8_t* e_row) {
  std::int64_t x = 0;
  while (x < sw) {
    std::int64_t y = x + 1;
    while (y < sw && row[y] == row[x]) ++y;
    for (std::int64_t x0 = x; x0 < y;) {
      const std::int64_t blk = x0 & ~std::int64_t(255);
      const std::int64_t y0 = std::min<std::int64_t>(y, blk + 256);
      std::uint8_t v16[16];
      std::memset(v16, static_cast<int>(y0 - blk - 1), 16);
      for (std::int64_t xx = x0; xx < y0; xx += 16) std::memcpy(e_row + xx, v16, 16);
      x0 = y0;
    }
    x = y;
  }
}

// Run starts of one row of labels as bits: bit x % 64 of cw[x / 64] is set
// where a run starts (x = 0 or row[x] != row[x - 1]), nw = ceil(sw / 64)
// words, 0 past sw.
template <typename T>
using StartsFn = void (*)(const T* row, std::int64_t sw, std::uint64_t* cw);

// Portable: cg[x] = 1 where a run starts, a vectorizable compare; then 8
// flags at a time become 8 bits (a multiply gathers the low bit of each byte
// into the top byte).  cg has nw * 64 + 8 bytes, 0 past sw.
template <typename T>
void row_starts_generic(const T* row, std::int64_t sw, std::int64_t nw, std::uint8_t* cg, std::uint64_t* cw) {
  cg[0] = 1;
  change_flags(row, sw, cg);
  for (std::int64_t j = 0; j < nw; ++j) {
    std::uint64_t bits = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int i = 0; i < 64; ++i) bits |= static_cast<std::uint64_t>(cg[j * 64 + i]) << i;
#else
    for (int k = 0; k < 8; ++k) {
      std::uint64_t u;
      std::memcpy(&u, cg + j * 64 + k * 8, 8);  // 8 bytes, each 0 or 1
      bits |= ((u * 0x0102040810204080ULL) >> 56) << (k * 8);
    }
#endif
    cw[j] = bits;
  }
}

#ifdef IE_IOU_X86_DISPATCH
// AVX-512 (BW for 1- and 2-byte labels): 64 bytes of labels against the same
// shifted by one element; the not-equal mask is the run start bits.  Lanes
// past sw and the element before the row are masked off (not read).
template <typename T>
__attribute__((target("avx512f,avx512bw"))) void row_starts_avx512(const T* row, std::int64_t sw,
                                                                 std::uint64_t* cw) {
  constexpr std::int64_t L = 64 / sizeof(T);
  for (std::int64_t j = 0, nw = (sw + 63) / 64; j < nw; ++j) cw[j] = 0;
  for (std::int64_t x0 = 0; x0 < sw; x0 += L) {
    const std::int64_t n = std::min(L, sw - x0);
    const std::uint64_t k = n == 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << n) - 1;
    const std::uint64_t kp = x0 == 0 ? k & ~std::uint64_t(1) : k;  // prev of x = 0: not read
    const void* pp = reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(row + x0) - sizeof(T));
    std::uint64_t m;
    if constexpr (sizeof(T) == 1) {
      const __m512i c = _mm512_maskz_loadu_epi8(k, row + x0), p = _mm512_maskz_loadu_epi8(kp, pp);
      m = _mm512_mask_cmpneq_epi8_mask(k, c, p);
    } else if constexpr (sizeof(T) == 2) {
      const __m512i c = _mm512_maskz_loadu_epi16(static_cast<__mmask32>(k), row + x0);
      const __m512i p = _mm512_maskz_loadu_epi16(static_cast<__mmask32>(kp), pp);
      m = _mm512_mask_cmpneq_epi16_mask(static_cast<__mmask32>(k), c, p);
    } else if constexpr (sizeof(T) == 4) {
      const __m512i c = _mm512_maskz_loadu_epi32(static_cast<__mmask16>(k), row + x0);
      const __m512i p = _mm512_maskz_loadu_epi32(static_cast<__mmask16>(kp), pp);
      m = _mm512_mask_cmpneq_epi32_mask(static_cast<__mmask16>(k), c, p);
    } else {
      const __m512i c = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(k), row + x0);
      const __m512i p = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(kp), pp);
      m = _mm512_mask_cmpneq_epi64_mask(static_cast<__mmask8>(k), c, p);
    }
    cw[x0 >> 6] |= m << (x0 & 63);  // L divides 64: a chunk never straddles words
  }
  cw[0] |= 1;
}
#endif

template <typename T>
StartsFn<T> starts_for(int isa) {
#ifdef IE_IOU_X86_DISPATCH
  if (isa >= 2) return &row_starts_avx512<T>;
#endif
  (void)isa;
  return nullptr;  // row_starts_generic
}

// low[n] = the n low bits set (n = 0 .. 64)
struct LowBits {
  std::uint64_t v[65];
  LowBits() {
    v[0] = 0;
    for (int n = 1; n <= 64; ++n) v[n] = ~std::uint64_t(0) >> (64 - n);
  }
};
const LowBits kLow;

// Sets the bits of every run [xs, xe) of row y in its column: for each of the
// row's WPR words w, low[xe - 64 w] & ~low[xs - 64 w] (clamped to 0 .. 64; an
// empty mask for the words the run misses), without branches (a run covers
// one word or two at random).
template <int WPR>
void fill_masks(const MaskRun* runs, std::size_t nruns, std::int64_t ncp, std::uint64_t* bits) {
  for (std::size_t i = 0; i < nruns; ++i) {
    const MaskRun r = runs[i];
    std::uint64_t* col = bits + (static_cast<std::int64_t>(r.y) * WPR) * ncp + r.col;
    for (int w = 0; w < WPR; ++w) {
      const int lo = std::min(std::max(r.xs - 64 * w, 0), 64);
      const int hi = std::min(std::max(r.xe - 64 * w, 0), 64);
      col[w * ncp] |= kLow.v[hi] & ~kLow.v[lo];
    }
  }
}

// label_pixels from an image's label masks: hist[col_label[c]] += the set
// bits of column c (nrw = rows x words per row; padding columns have label 0
// and no bits).
using ColPixFn = void (*)(const std::uint64_t* bits, std::int64_t nrw, std::int64_t ncp,
                          const std::int32_t* col_label, std::int64_t* hist);

// The portable body, with a popcount instruction (HW, compiled inside a
// "popcnt" target) or without.
template <bool HW>
inline std::int64_t pop64(std::uint64_t x) {
  if constexpr (HW) {
    return __builtin_popcountll(x);
  } else {
    return popcount_soft(x);
  }
}

template <bool HW>
__attribute__((always_inline)) inline void column_pixels_body(const std::uint64_t* bits, std::int64_t nrw,
                                                             std::int64_t ncp, const std::int32_t* col_label,
                                                             std::int64_t* hist) {
  for (std::int64_t c = 0; c < ncp; ++c) {
    std::int64_t n = 0;
    for (std::int64_t i = 0; i < nrw; ++i) n += pop64<HW>(bits[i * ncp + c]);
    hist[col_label[c]] += n;
  }
}

void column_pixels_generic(const std::uint64_t* bits, std::int64_t nrw, std::int64_t ncp,
                           const std::int32_t* col_label, std::int64_t* hist) {
  column_pixels_body<false>(bits, nrw, ncp, col_label, hist);
}

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("popcnt"))) void column_pixels_popcnt(const std::uint64_t* bits, std::int64_t nrw,
                                                          std::int64_t ncp, const std::int32_t* col_label,
                                                          std::int64_t* hist) {
  column_pixels_body<true>(bits, nrw, ncp, col_label, hist);
}

__attribute__((target("avx512f,avx512vpopcntdq"))) void column_pixels_avx512(
    const std::uint64_t* bits, std::int64_t nrw, std::int64_t ncp, const std::int32_t* col_label,
    std::int64_t* hist) {
  for (std::int64_t c = 0; c < ncp; c += 8) {
    __m512i acc = _mm512_setzero_si512();
    for (std::int64_t i = 0; i < nrw; ++i)
      acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_loadu_si512(bits + i * ncp + c)));
    alignas(64) std::int64_t v[8];
    _mm512_store_si512(v, acc);
    for (int j = 0; j < 8; ++j) hist[col_label[c + j]] += v[j];
  }
}
#endif

template <typename T>
void scan_labels(const LabelView& lv, std::int64_t b, std::int64_t NL, const std::int32_t* cat,
                 std::int64_t* hist /* or null */, std::uint8_t* cats_present /* NC or null */, ImageLabels& out,
                 ScanScratch& sc, StartsFn<T> starts_fn, ColPixFn colpix) {
  const std::int64_t npix = lv.sh * lv.sw;
  const T* base = static_cast<const T*>(lv.data) + b * lv.P * npix;
  out.labels.assign(1, 0);
  out.col_label.clear();
  out.wpr = (lv.sw + 63) / 64;
  bool masked = out.wpr <= kMaskMaxWords && lv.sh <= 32767;
  // label_pixels: from the masks at the end (a popcount per column and word)
  // rather than an add per run; per run for an image that cannot take masks;
  // from the pixels for one that gives them up midway
  const bool hist_by_runs = !masked;
  // at most one run per pixel; written by index (push_back cost a third of the pass)
  if (sc.runs.size() < static_cast<std::size_t>(lv.P * npix)) sc.runs.resize(static_cast<std::size_t>(lv.P * npix));
  MaskRun* runs = sc.runs.data();
  std::size_t nruns = 0;
  if (sc.g2l.size() != static_cast<std::size_t>(NL)) sc.g2l.assign(static_cast<std::size_t>(NL), -1);
  std::int32_t* g2l = sc.g2l.data();
  if (sc.lcol.size() != static_cast<std::size_t>(NL)) sc.lcol.assign(static_cast<std::size_t>(NL), -1);
  std::int16_t* lcol = sc.lcol.data();  // label -> column in the current map (-1: none yet)
  // run start bits of a row (row_starts_*); chg: the portable version's flags
  const std::int64_t nw = (lv.sw + 63) / 64;
  if (!starts_fn) sc.chg.assign(static_cast<std::size_t>(nw * 64 + 8), 0);
  sc.words.resize(static_cast<std::size_t>(nw));
  std::uint8_t* cg = sc.chg.data();
  std::uint64_t* cw = sc.words.data();
  for (std::int64_t m = 0; m < lv.P; ++m) {
    const std::size_t map_col0 = out.col_label.size();  // this map's columns start here
    for (std::int64_t yo = 0; yo < lv.sh; ++yo) {
      const T* row = base + m * npix + yo * lv.sw;
      if (starts_fn) {
        starts_fn(row, lv.sw, cw);
      } else {
        row_starts_generic(row, lv.sw, nw, cg, cw);
      }
      // runs [x, y): x a start bit, y the next one (or sw)
      std::int64_t wi = 0, y = 0;
      std::uint64_t bits = cw[0] & ~std::uint64_t(1);
      for (std::int64_t x = 0; x < lv.sw; x = y) {
        while (bits == 0 && ++wi < nw) bits = cw[wi];
        y = bits ? wi * 64 + ctz64(bits) : lv.sw;
        bits &= bits - 1;
        const T v = row[x];
        if (v == 0) continue;  // label 0: never tallied
        bool bad = false;
        if constexpr (std::is_signed<T>::value) bad = v < 0;
        if (bad || static_cast<std::uint64_t>(v) >= static_cast<std::uint64_t>(NL)) {
          std::ostringstream s;
          s << "pixel_labels must hold label numbers in [0, num_labels) = [0, " << NL << "); got "
            << +v << " (image " << b << ", map " << m << ", pixel " << yo << "," << x << ")";
          fail(s.str());
        }
        const std::size_t c = static_cast<std::size_t>(v);
        if (hist && hist_by_runs) hist[c] += y - x;
        if (masked) {
          const std::int16_t col = lcol[c];
          if (col >= 0) {  // a label already seen in this map: one lookup
            runs[nruns++] = {static_cast<std::int16_t>(yo), static_cast<std::int16_t>(x),
                             static_cast<std::int16_t>(y), col};
            continue;
          }
        }
        std::int32_t& g = g2l[c];
        if (g < 0) {
          g = static_cast<std::int32_t>(out.labels.size());
          out.labels.push_back(static_cast<std::int32_t>(c));
          if (cats_present) cats_present[cat[c]] = 1;
        }
        if (!masked) continue;
        if (static_cast<std::int64_t>(out.col_label.size()) == kMaskMaxCols) {
          masked = false;  // too many (map, label) pairs
          continue;
        }
        const std::int16_t col = static_cast<std::int16_t>(out.col_label.size());
        lcol[c] = col;
        out.col_label.push_back(static_cast<std::int32_t>(c));
        runs[nruns++] = {static_cast<std::int16_t>(yo), static_cast<std::int16_t>(x),
                         static_cast<std::int16_t>(y), col};
      }
    }
    // reset this map's columns
    for (std::size_t j = map_col0; j < out.col_label.size(); ++j) lcol[static_cast<std::size_t>(out.col_label[j])] = -1;
  }
  for (std::size_t j = 1; j < out.labels.size(); ++j) g2l[static_cast<std::size_t>(out.labels[j])] = -1;
  out.masked = masked;
  if (masked) {
    const std::int64_t nc = static_cast<std::int64_t>(out.col_label.size());
    out.ncp = std::max<std::int64_t>(8, (nc + 7) / 8 * 8);
    out.col_label.resize(static_cast<std::size_t>(out.ncp), 0);
    const std::size_t nbits = static_cast<std::size_t>(lv.sh * out.wpr * out.ncp);
    out.bits.resize(nbits);
    std::memset(out.bits.data(), 0, nbits * sizeof(std::uint64_t));
    std::uint64_t* bits = out.bits.data();
    const std::int64_t wpr = out.wpr, ncp = out.ncp;
    switch (wpr) {  // a fixed number of words per run: no data-dependent branch
      case 1: fill_masks<1>(runs, nruns, ncp, bits); break;
      case 2: fill_masks<2>(runs, nruns, ncp, bits); break;
      case 3: fill_masks<3>(runs, nruns, ncp, bits); break;
      default: fill_masks<4>(runs, nruns, ncp, bits); break;
    }
    if (hist) colpix(bits, lv.sh * wpr, ncp, out.col_label.data(), hist);
    std::vector<std::uint8_t>().swap(out.e8);
  } else {
    if (hist && !hist_by_runs) {
      // masks given up midway: count the pixels (validated by now)
      for (std::int64_t i = 0; i < lv.P * npix; ++i)
        if (base[i] != 0) hist[static_cast<std::size_t>(base[i])] += 1;
    }
    out.ncp = 0;
    out.col_label.clear();
    std::vector<std::uint64_t>().swap(out.bits);
    out.e8.resize(static_cast<std::size_t>(lv.P * npix + 16));
    for (std::int64_t r = 0; r < lv.P * lv.sh; ++r)
      fill_run_ends(base + r * lv.sw, lv.sw, out.e8.data() + r * lv.sw);
  }
}

// Active segments of one output row: bit i of mask[i / 64] is pixel xa + i
// (n pixels); writes the maximal runs of set bits as [seg[2j], seg[2j+1])
// (at most (n + 1) / 2 of them) and returns their number.
inline std::int64_t row_segments(const std::uint64_t* mask, std::int64_t n, std::int64_t xa,
                                 std::int32_t* seg) {
  const std::int64_t nw = (n + 63) / 64;
  std::int64_t ns = 0, wi = 0;
  std::uint64_t bits = nw ? mask[0] : 0;
  for (;;) {
    while (bits == 0) {  // next set bit: a segment start
      if (++wi >= nw) return ns;
      bits = mask[wi];
    }
    const std::int64_t p = wi * 64 + ctz64(bits);
    // next clear bit after p: the segment end
    std::uint64_t inv = ~bits & (~std::uint64_t(0) << (p & 63));
    while (inv == 0) {
      if (++wi >= nw) break;
      inv = ~mask[wi];
    }
    const std::int64_t q = inv == 0 ? n : std::min<std::int64_t>(n, wi * 64 + ctz64(inv));
    seg[2 * ns] = static_cast<std::int32_t>(xa + p);
    seg[2 * ns + 1] = static_cast<std::int32_t>(xa + q);
    ++ns;
    if (q >= n) return ns;
    bits = mask[wi] & (~std::uint64_t(0) << (q & 63));
  }
}

// Label-mask tally of one output row: u[0 .. nw) are the unit's active
// pixels as aligned words (bit i of u[j] = pixel 64 (w0 + j) + i), rowbits the
// masks of the same words ((nw, ncp) columns side by side); adds
// popcount(u[j] & rowbits[j, col]) to acc[col] for every column.
using MaskTallyFn = void (*)(const std::uint64_t* u, std::int64_t nw, const std::uint64_t* rowbits,
                             std::int64_t ncp, std::uint64_t* acc);

template <bool HW>
__attribute__((always_inline)) inline void mask_tally_body(const std::uint64_t* u, std::int64_t nw,
                                                          const std::uint64_t* rowbits, std::int64_t ncp,
                                                          std::uint64_t* acc) {
  for (std::int64_t j = 0; j < nw; ++j) {
    const std::uint64_t uw = u[j];
    if (uw == 0) continue;
    const std::uint64_t* L = rowbits + j * ncp;
    for (std::int64_t c = 0; c < ncp; ++c) acc[c] += static_cast<std::uint64_t>(pop64<HW>(uw & L[c]));
  }
}

void mask_tally_generic(const std::uint64_t* u, std::int64_t nw, const std::uint64_t* rowbits,
                        std::int64_t ncp, std::uint64_t* acc) {
  mask_tally_body<false>(u, nw, rowbits, ncp, acc);
}

#ifdef IE_IOU_X86_DISPATCH
__attribute__((target("popcnt"))) void mask_tally_popcnt(const std::uint64_t* u, std::int64_t nw,
                                                         const std::uint64_t* rowbits, std::int64_t ncp,
                                                         std::uint64_t* acc) {
  mask_tally_body<true>(u, nw, rowbits, ncp, acc);
}

// 8 columns per AND + VPOPCNTQ + ADD (ncp is a multiple of 8).
__attribute__((target("avx512f,avx512vpopcntdq"))) void mask_tally_avx512(
    const std::uint64_t* u, std::int64_t nw, const std::uint64_t* rowbits, std::int64_t ncp,
    std::uint64_t* acc) {
  for (std::int64_t j = 0; j < nw; ++j) {
    const std::uint64_t uw = u[j];
    if (uw == 0) continue;
    const __m512i ub = _mm512_set1_epi64(static_cast<long long>(uw));
    const std::uint64_t* L = rowbits + j * ncp;
    for (std::int64_t c = 0; c < ncp; c += 8) {
      const __m512i x = _mm512_and_si512(_mm512_loadu_si512(L + c), ub);
      _mm512_storeu_si512(acc + c, _mm512_add_epi64(_mm512_loadu_si512(acc + c), _mm512_popcnt_epi64(x)));
    }
  }
}
#endif

template <typename T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<T>{}) with T the C++ type of the label element kind.
template <typename Fn>
void dispatch_labels(IntKind k, Fn&& fn) {
  switch (k) {
    case IntKind::I8: return fn(Tag<std::int8_t>{});
    case IntKind::U8: return fn(Tag<std::uint8_t>{});
    case IntKind::I16: return fn(Tag<std::int16_t>{});
    case IntKind::U16: return fn(Tag<std::uint16_t>{});
    case IntKind::I32: return fn(Tag<std::int32_t>{});
    case IntKind::U32: return fn(Tag<std::uint32_t>{});
    case IntKind::I64: return fn(Tag<std::int64_t>{});
    case IntKind::U64: return fn(Tag<std::uint64_t>{});
  }
  fail("IoUTally.update: unknown label element kind");
}

}  // namespace

// ---------------------------------------------------------------------------
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

struct IoUTally::Workspace {
  std::vector<ScanScratch> scratch;
  std::vector<ImageLabels> ils;
  std::vector<UnitScratch> us;
};

// ---------------------------------------------------------------------------
IoUTally::IoUTally(std::int64_t num_units, std::int64_t num_labels,
                   std::vector<std::int32_t> label_category, std::int64_t num_categories,
                   std::int64_t out_h, std::int64_t out_w, UnitRule rule)
    : K_(num_units), NL_(num_labels), NC_(num_categories), sh_(out_h), sw_(out_w), rule_(rule),
      cat_(std::move(label_category)) {
  constexpr std::int64_t i32max = std::numeric_limits<std::int32_t>::max();
  if (K_ < 1) fail("num_units must be >= 1");
  if (NL_ < 1) fail("num_labels must be >= 1");
  if (NC_ < 1) fail("num_categories must be >= 1");
  if (sh_ < 1 || sw_ < 1) fail("output_size must be positive");
  // labels, categories and units are int32 in the work buffers, pixels of an
  // image (counts per image and label map) too
  if (NL_ > i32max) fail("num_labels must be < 2^31; got " + std::to_string(NL_));
  if (NC_ > i32max) fail("num_categories must be < 2^31; got " + std::to_string(NC_));
  if (checked_mul(sh_, sw_, "output_size") > i32max)
    fail("output_size (" + std::to_string(sh_) + ", " + std::to_string(sw_) +
         "): sh * sw must be < 2^31 pixels");
  const std::int64_t KNL = checked_mul(K_, NL_, "num_units x num_labels");
  const std::int64_t KNC = checked_mul(K_, NC_, "num_units x num_categories");
  // the counts, and the least any update needs (maps of 1 x 1 upsampled to
  // output_size, one thread, no label maps): fail here, not at the first update
  Bytes need("IoUTally");
  need.add(KNL, 8).add(KNC, 8).add(NL_, 8).add(NL_, 4);
  need.add(sh_ + sw_, 2 * sizeof(std::int32_t) + 2 * sizeof(double));  // axis tables
  need.add(sw_, sizeof(double)).add(sw_ + 2, 4);                         // one H row, segments
  need.add(checked_mul(sh_, sw_ / 64 + 2, "output_size"), 8);           // row masks
  need.add(KNL, 8).add(KNC, 8).add(NL_, 8);                              // an update's deltas
  need.require();
  if (static_cast<std::int64_t>(cat_.size()) != NL_) {
    std::ostringstream s;
    s << "label_category must have num_labels = " << NL_ << " entries; got " << cat_.size();
    fail(s.str());
  }
  for (std::size_t c = 0; c < cat_.size(); ++c) {
    if (cat_[c] < 0 || cat_[c] >= NC_) {
      std::ostringstream s;
      s << "label_category values must lie in [0, num_categories) = [0, " << NC_ << "); got "
        << cat_[c] << " at label " << c;
      fail(s.str());
    }
  }
  I_.assign(static_cast<std::size_t>(KNL), 0);
  L_.assign(static_cast<std::size_t>(NL_), 0);
  A_.assign(static_cast<std::size_t>(KNC), 0);
}

const AxisTable& IoUTally::table(std::int64_t in, std::int64_t out, bool rows) {
  AxisTable& t = rows ? ytab_ : xtab_;
  if (t.in != in || t.out != out) t = make_axis_table(in, out);
  return t;
}

void IoUTally::update(const ActivationView& acts, const double* thresholds,
                      const LabelView* pixel_labels, const std::int64_t* image_labels,
                      std::int64_t S, const std::uint8_t* image_categories, int num_threads) {
  // ---- validation (before any count changes)
  if (acts.K != K_) {
    std::ostringstream s;
    s << "activations must have num_units = " << K_ << " channels; got " << acts.K;
    fail(s.str());
  }
  if (acts.h < 1 || acts.w < 1) fail("activations must have non-empty spatial size (h, w >= 1)");
  if (acts.B < 0 || S < 0) fail("negative sizes");
  if (acts.h > std::numeric_limits<std::int32_t>::max() || acts.w > std::numeric_limits<std::int32_t>::max() ||
      checked_mul(acts.h, acts.w, "activations (h, w)") > (std::int64_t(1) << 30))
    fail("activations: maps of " + std::to_string(acts.h) + " x " + std::to_string(acts.w) +
         " are too large (at most 2^30 values per map)");
  const std::int64_t B = acts.B;
  checked_mul(B, S, "image_labels (B, S)");
  if (pixel_labels) {
    if (pixel_labels->B != B) fail("pixel_labels must have the same batch size as activations");
    if (pixel_labels->sh != sh_ || pixel_labels->sw != sw_)
      fail("pixel_labels maps must have size output_size");
    if (pixel_labels->P < 0 || checked_mul(pixel_labels->P, sh_ * sw_, "pixel_labels (P, sh, sw)") >
                                   std::numeric_limits<std::int32_t>::max())
      fail("pixel_labels: " + std::to_string(pixel_labels->P) +
           " label maps per image are too many (P * sh * sw must be < 2^31)");
  }
  // counts of an image and label fit the int32 records: P * sh * sw < 2^31
  // above, and an image-level label adds sh * sw (< 2^31) per column; int64
  // totals cannot overflow in any feasible run (2^63 pixel visits).
  for (std::int64_t k = 0; k < K_; ++k)
    if (std::isnan(thresholds[k])) fail("thresholds must not contain NaN");
  if (image_labels) {
    for (std::int64_t i = 0; i < B * S; ++i) {
      if (image_labels[i] < 0 || image_labels[i] >= NL_) {
        std::ostringstream s;
        s << "image_labels must hold label numbers in [0, num_labels) = [0, " << NL_ << "); got "
          << image_labels[i] << " (image " << i / S << ", column " << i % S << ")";
        fail(s.str());
      }
    }
  }
  if (B == 0) return;

  const std::int64_t npix = sh_ * sw_;
  const std::int64_t P = pixel_labels ? pixel_labels->P : 0;
  const bool derive = image_categories == nullptr;
  const int T0 = num_threads > 0 ? num_threads : get_num_threads();
  const cpu::Features allowed = cpu::allowed();  // INTERP_ENGINE_ISA, read once per update
  const int isa = isa_level(allowed);

  const int Tmax = (checked_mul(B, K_, acts.h * acts.w, "activations") < 4096) ? 1 : std::max(1, T0);
  const std::int64_t nub =
      B >= 4 * Tmax ? 1 : std::min<std::int64_t>(K_, (4 * static_cast<std::int64_t>(Tmax) + B - 1) / B);
  const std::int64_t ubs = (K_ + nub - 1) / nub;  // units per block
  const std::int64_t items = B * nub;
  const int T = static_cast<int>(std::min<std::int64_t>(Tmax, items));  // items >= 1 (B > 0)

  {
    // everything this update allocates (work buffers kept between updates
    // included), refused before any allocation when it cannot fit
    const std::int64_t h = acts.h, w = acts.w;
    Bytes need("IoUTally.update");
    need.add(sh_ + sw_, 2 * sizeof(std::int32_t) + 2 * sizeof(double)).add(h + w, 2 * sizeof(std::int32_t));
    need.add(K_ * h * w, sizeof(float));                                 // texp
    const std::int64_t PN = P * npix;
    Bytes per("");
    per.add(NL_, 8).add(K_ * NC_, 8);                                    // hist, dA
    per.add(h * w, 8).add(h * sw_, 8).add(sh_ * (sw_ / 64 + 2), 8).add(sh_, 8).add(sw_ + 2, 4);
    per.add(4 * h, 8).add(2 * NC_, 1).add(kMaskMaxCols + kMaskMaxWords + 1, 8);
    per.add(K_ * h * w / 16 + 8, 2);                                     // hot bits
    per.add(NL_, 4 + 4 + 2);                                              // cnt, g2l, lcol
    per.add(PN, sizeof(MaskRun)).add(PN + 16, 1).add(sw_ + 72, 1);      // runs, run ends
    per.add(sh_ * kMaskMaxWords * kMaskMaxCols, 8);                      // label masks
    per.add(K_, sizeof(std::vector<IRec>));
    for (int t = 0; t < T; ++t) need.add(per.total(), 1);
    need.require();
  }

  // ---- work items (image, block of units), shared out dynamically: a
  // thread scans the image's label maps (validation, label_pixels, derived
  // categories, label masks) and then evaluates the block's units on them
  // while the masks are in its cache.  One block per image when there are
  // enough images for the threads; counts go to per-thread buffers (records
  // per (thread, unit), A, label_pixels) added at the commit, so nothing is
  // shared and a failed update changes nothing.
  const AxisTable& ty = table(acts.h, sh_, true);
  const AxisTable& tx = table(acts.w, sw_, false);
  const LoadFn load = loader_for(acts.dtype);
  const MaxFn mapmax = max_for(acts.dtype, allowed.avx2);
#ifdef IE_IOU_X86_DISPATCH
  const HRangeFn hrange = isa >= 2 ? &hrange_avx512 : isa >= 1 ? &hrange_scalar<&hrow_hw> : &hrange_scalar<&hrow_soft>;
  const VmaskRowsFn vmask_rows = isa >= 2 ? &vmask_rows_avx512 : isa >= 1 ? &vmask_rows_each<&vmask_hw> : &vmask_rows_each<&vmask_soft>;
  const ColPixFn colpix = isa >= 2 ? &column_pixels_avx512 : isa >= 1 ? &column_pixels_popcnt : &column_pixels_generic;
  const MaskTallyFn mask_tally = isa >= 2 ? &mask_tally_avx512 : isa >= 1 ? &mask_tally_popcnt : &mask_tally_generic;
#else
  const HRangeFn hrange = &hrange_scalar<&hrow_soft>;
  const VmaskRowsFn vmask_rows = &vmask_rows_each<&vmask_soft>;
  const ColPixFn colpix = &column_pixels_generic;
  const MaskTallyFn mask_tally = &mask_tally_generic;
#endif
  const bool lite = rule_ == UnitRule::Lite;
  const std::int64_t h = acts.h, w = acts.w;
  // hot test of a block's maps in one pass (block_hot_f32_avx512): small
  // contiguous float32 maps; texp repeats each unit's bound h * w times
  std::vector<float> texp;
#ifdef IE_IOU_X86_DISPATCH
  if (isa >= 2 && acts.dtype == Dtype::F32 && h * w <= 1024 && acts.stride[3] == 4 && acts.stride[2] == 4 * w &&
      acts.stride[1] == 4 * h * w) {
    texp.resize(static_cast<std::size_t>(K_ * h * w));
    for (std::int64_t k = 0; k < K_; ++k)
      std::fill(texp.begin() + k * h * w, texp.begin() + (k + 1) * h * w, float_at_or_below(hot_bound(thresholds[k])));
  }
#endif

  std::vector<std::vector<std::int64_t>> hist(static_cast<std::size_t>(T));
  for (auto& hh : hist) hh.assign(static_cast<std::size_t>(NL_), 0);
  std::vector<std::vector<std::int64_t>> dA(static_cast<std::size_t>(T));
  for (auto& d : dA) d.assign(static_cast<std::size_t>(K_ * NC_), 0);
  if (!ws_) ws_ = std::make_shared<Workspace>();
  std::vector<ScanScratch>& scratch = ws_->scratch;
  std::vector<ImageLabels>& ils = ws_->ils;
  if (scratch.size() < static_cast<std::size_t>(T)) scratch.resize(static_cast<std::size_t>(T));
  if (ils.size() < static_cast<std::size_t>(T)) ils.resize(static_cast<std::size_t>(T));
  std::vector<std::int64_t> masked_count(static_cast<std::size_t>(T), 0);
  // intersection deltas as records (label, count) per (thread, unit), applied
  // at the commit: appending is sequential, and each unit's intersection row
  // is then updated in one go (scattered adds into the (K, num_labels) rows
  // per (unit, image) missed the cache).  Capacity is kept between updates.
  recs_.resize(static_cast<std::size_t>(T * K_));
  for (auto& r : recs_) r.clear();
  std::vector<UnitScratch>& us = ws_->us;
  if (us.size() < static_cast<std::size_t>(T)) us.resize(static_cast<std::size_t>(T));
  for (UnitScratch& u : us) {
    u.a.resize(static_cast<std::size_t>(h * w));
    u.Hbuf.resize(static_cast<std::size_t>(h * sw_));
    // masks of a group of output rows reading the same source rows (at most sh)
    u.mask.resize(static_cast<std::size_t>(sh_ * (sw_ / 64 + 2)));
    u.gnact.resize(static_cast<std::size_t>(sh_));
    u.seg.resize(static_cast<std::size_t>(sw_ + 2));  // segments of a row
    u.cmin.resize(static_cast<std::size_t>(h));
    u.cmax.resize(static_cast<std::size_t>(h));
    u.hlo.resize(static_cast<std::size_t>(h));
    u.hhi.resize(static_cast<std::size_t>(h));
    u.hit.assign(static_cast<std::size_t>(NC_), 0);
    u.cats.assign(static_cast<std::size_t>(NC_), 0);
    // a unit's label counts in the current image (all zero between images;
    // <= P * sh * sw <= INT32_MAX each): by column (label masks) or by label
    // number (run ends)
    u.acc.assign(static_cast<std::size_t>(kMaskMaxCols), 0);
    u.urow.assign(static_cast<std::size_t>(kMaskMaxWords + 1), 0);
  }

  auto run_items = [&](auto tag) {
    using LT = typename decltype(tag)::type;
    const LT* labels = pixel_labels ? static_cast<const LT*>(pixel_labels->data) : nullptr;
    parallel_for_dynamic(
        static_cast<std::size_t>(items),
        [&](std::size_t item, int ti) {
          check_interrupt();
          const std::int64_t b = static_cast<std::int64_t>(item) / nub;
          const std::int64_t blk = static_cast<std::int64_t>(item) % nub;
          const std::int64_t k0 = blk * ubs, k1 = std::min(K_, k0 + ubs);
          const bool first = blk == 0;  // counts label_pixels (once per image)
          UnitScratch& U = us[static_cast<std::size_t>(ti)];
          std::int64_t* hb = first ? hist[static_cast<std::size_t>(ti)].data() : nullptr;
          std::uint8_t* cats_b = U.cats.data();
          if (derive) {
            std::fill(U.cats.begin(), U.cats.end(), 0);
          } else {
            std::copy(image_categories + b * NC_, image_categories + (b + 1) * NC_, U.cats.begin());
          }
          if (P > 0) {
            scan_labels<LT>(*pixel_labels, b, NL_, cat_.data(), hb, derive ? cats_b : nullptr,
                            ils[static_cast<std::size_t>(ti)], scratch[static_cast<std::size_t>(ti)],
                            starts_for<LT>(isa), colpix);
            if (first) masked_count[static_cast<std::size_t>(ti)] += ils[static_cast<std::size_t>(ti)].masked;
          }
          for (std::int64_t s = 0; s < S; ++s) {
            const std::int64_t c = image_labels[b * S + s];
            if (c == 0) continue;
            if (hb) hb[static_cast<std::size_t>(c)] += npix;
            if (derive) cats_b[cat_[static_cast<std::size_t>(c)]] = 1;
          }
          std::vector<double>& a = U.a;
          std::vector<double>& Hbuf = U.Hbuf;
          std::vector<std::uint64_t>& gmask = U.mask;
          std::vector<std::int64_t>& gnact = U.gnact;
          const std::int64_t mstride = sw_ / 64 + 2;
          std::vector<std::int32_t>& seg = U.seg;
          std::vector<std::int64_t>& cmin = U.cmin;
          std::vector<std::int64_t>& cmax = U.cmax;
          std::vector<std::int64_t>& hlo = U.hlo;
          std::vector<std::int64_t>& hhi = U.hhi;
          std::vector<std::uint8_t>& hit = U.hit;
          std::vector<std::uint64_t>& acc = U.acc;
          std::vector<std::uint64_t>& urow = U.urow;
          std::vector<std::int32_t>& cnt = U.cnt;
          if (P > 0 && !ils[static_cast<std::size_t>(ti)].masked && cnt.size() != static_cast<std::size_t>(NL_))
            cnt.assign(static_cast<std::size_t>(NL_), 0);
          {
            const LT* lab_b = (labels && P > 0) ? labels + b * P * npix : nullptr;
            const ImageLabels* il = lab_b ? &ils[static_cast<std::size_t>(ti)] : nullptr;
            const bool masked = il && il->masked;
            const std::uint8_t* e8_b = il && !masked ? il->e8.data() : nullptr;
            const std::uint64_t* bits_b = masked ? il->bits.data() : nullptr;
            const std::int64_t wpr = masked ? il->wpr : 0, ncp = masked ? il->ncp : 0;
            const std::uint16_t* hotb = nullptr;  // the block's hot bits (null: test per map)
#ifdef IE_IOU_X86_DISPATCH
            if (!texp.empty()) {
              const std::int64_t n = (k1 - k0) * h * w;
              U.hot.resize(static_cast<std::size_t>(n / 16 + 8));
              const float* xb = reinterpret_cast<const float*>(static_cast<const char*>(acts.data) + b * acts.stride[0] +
                                                               k0 * acts.stride[1]);
              // a block with NaN: the per-map test finds and names the first one
              if (!block_hot_f32_avx512(xb, texp.data() + k0 * h * w, n, U.hot.data())) hotb = U.hot.data();
            }
#endif
            for (std::int64_t k = k0; k < k1; ++k) {
              if (((k - k0) & 15) == 15) check_interrupt();  // a block of many units on large maps
              const double thr = thresholds[k];
              const double tl = hot_bound(thr);
              if (hotb) {
                if (!any_bit(hotb, (k - k0) * h * w, h * w)) continue;
              } else {
                bool nan = false;
                const double mx = mapmax(acts, b, k, nan);
                if (nan) {
                  std::ostringstream s;
                  s << "activations must not contain NaN (image " << b << ", unit " << k << ")";
                  fail(s.str());
                }
                if (!(mx > tl)) continue;  // no cell is hot: no pixel can fire
              }
              load(acts, b, k, a.data());
              // hot cells: per source row, the first and last hot column
              std::int64_t rfirst = -1, rlast = -1;
              for (std::int64_t r = 0; r < h; ++r) {
                std::int64_t lo = -1, hi = -1;
                const double* row = a.data() + r * w;
                if (w <= 64) {  // the row's hot cells as bits: no branch per cell
                  std::uint64_t hot = 0;
                  for (std::int64_t x = 0; x < w; ++x) hot |= static_cast<std::uint64_t>(row[x] > tl) << x;
                  if (hot) {
                    lo = ctz64(hot);
                    hi = 63 - clz64(hot);
                  }
                } else {
                  for (std::int64_t x = 0; x < w; ++x) {
                    if (row[x] > tl) {
                      if (lo < 0) lo = x;
                      hi = x;
                    }
                  }
                }
                cmin[r] = lo;
                cmax[r] = hi;
                if (lo >= 0) {
                  if (rfirst < 0) rfirst = r;
                  rlast = r;
                }
              }
              if (rfirst < 0 || thr == std::numeric_limits<double>::infinity()) continue;
              // output columns that can fire for rows touching source row r
              auto col_range = [&](std::int64_t r, std::int64_t& xa, std::int64_t& xb) {
                if (cmin[r] < 0) return;
                xa = std::min<std::int64_t>(xa, tx.lo[cmin[r]]);
                xb = std::max<std::int64_t>(xb, tx.hi[cmax[r]]);
              };
              std::int64_t X0 = sw_, X1 = 0;
              for (std::int64_t r = rfirst; r <= rlast; ++r) col_range(r, X0, X1);
              const std::int64_t y_begin = ty.lo[rfirst], y_end = ty.hi[rlast];
              // no output pixel reads the hot cells (a downsampled map: every
              // hot row or column is skipped by the table): nothing can fire
              if (y_begin >= y_end || X0 >= X1) continue;
              // Second, finer filter: H_r = the horizontally interpolated
              // source row r.  Every operation is monotone, so where both
              // H_r0 and H_r1 are <= tl (or within a few ulps above tl: the
              // H of a row without hot cells) the output is at most
              // tl + 8 * 2^-53 * |tl| + tiny < T (same bound as above):
              // only columns where a hot row's H exceeds tl are evaluated.
              // Every source row the output rows [y_begin, y_end) read, first.
              for (std::int64_t r = ty.i0[y_begin], r_end = ty.i1[y_end - 1]; r <= r_end; ++r)
                hrange(a.data() + r * w, w, tx, X0, X1, Hbuf.data() + r * sw_, tl, cmin[r] >= 0, hlo[r], hhi[r]);
              std::int64_t count = 0;
              std::vector<IRec>& rv = recs_[static_cast<std::size_t>(ti * K_ + k)];
              for (std::int64_t yg = y_begin; yg < y_end;) {
                // output rows [yg, ye) read the same source rows r0, r1
                const std::int32_t r0 = ty.i0[yg], r1 = ty.i1[yg];
                std::int64_t ye = yg + 1;
                while (ye < y_end && ty.i0[ye] == r0 && ty.i1[ye] == r1) ++ye;
                const std::int64_t y0 = yg;
                yg = ye;
                // the hot range of either row (an empty range is [X1, X0))
                const std::int64_t xa = std::min(hlo[r0], hlo[r1]);
                const std::int64_t xb = std::max(hhi[r0], hhi[r1]);
                if (xa >= xb) continue;
                vmask_rows(Hbuf.data() + r0 * sw_, Hbuf.data() + r1 * sw_, ty.l0.data() + y0, ty.l1.data() + y0,
                           ye - y0, xa, xb, thr, gmask.data(), mstride, gnact.data());
                for (std::int64_t yo = y0; yo < ye; ++yo) {
                const std::int64_t nact = gnact[yo - y0];
                const std::uint64_t* mask = gmask.data() + (yo - y0) * mstride;
                if (nact == 0) continue;
                count += nact;
                if (!lab_b) continue;
                if (masked) {
                  // the active pixels as aligned words: the mask's bit i is
                  // pixel xa + i, urow[j]'s bit t pixel 64 (w0 + j) + t
                  const std::int64_t off = xa & 63, w0 = xa >> 6, w1 = (xb - 1) >> 6;
                  const std::int64_t nrel = (xb - xa + 63) / 64;
                  for (std::int64_t j = 0; j <= w1 - w0; ++j) {
                    const std::uint64_t cur = j < nrel ? mask[j] : 0;
                    const std::uint64_t prev = j > 0 ? mask[j - 1] : 0;
                    urow[j] = off ? (cur << off) | (prev >> (64 - off)) : cur;
                  }
                  mask_tally(urow.data(), w1 - w0 + 1, bits_b + (yo * wpr + w0) * ncp, ncp, acc.data());
                  continue;
                }
                const std::int64_t ns = row_segments(mask, xb - xa, xa, seg.data());
                // run ends: hop from label run to label run of every map
                const std::int64_t rbase = yo * sw_;
                for (std::int64_t j = 0; j < ns; ++j) {
                  const std::int64_t xs = seg[2 * j], xe = seg[2 * j + 1];
                  for (std::int64_t m = 0; m < P; ++m) {
                    const LT* lr = lab_b + m * npix + rbase;
                    const std::uint8_t* er = e8_b + m * npix + rbase;
                    std::int64_t x = xs;
                    do {
                      const std::int64_t y = std::min<std::int64_t>(xe, (x & ~std::int64_t(255)) + er[x] + 1);
                      cnt[static_cast<std::size_t>(lr[x])] += static_cast<std::int32_t>(y - x);
                      x = y;
                    } while (x < xe);
                  }
                }
                }
              }
              if (count == 0) continue;
              if (il && masked) {
                // one record per column with a count (padding columns never
                // count), written branch-free
                const std::int32_t* cl = il->col_label.data();
                const std::size_t n0 = rv.size();
                rv.resize(n0 + static_cast<std::size_t>(ncp));
                IRec* out = rv.data() + n0;
                std::size_t n = 0;
                for (std::int64_t c = 0; c < ncp; ++c) {
                  const std::uint64_t v = acc[c];
                  out[n] = {cl[c], static_cast<std::int32_t>(v)};  // <= sh * sw
                  n += v != 0;
                  acc[c] = 0;
                }
                rv.resize(n0 + n);
                if (lite)
                  for (std::size_t i = 0; i < n; ++i) hit[cat_[out[i].c]] = 1;
              } else if (il) {
                // label 0 is never tallied
                cnt[0] = 0;
                const std::int32_t* labs = il->labels.data();
                for (std::size_t j = 1, nl = il->labels.size(); j < nl; ++j) {
                  const std::int32_t c = labs[j];
                  std::int32_t& v = cnt[static_cast<std::size_t>(c)];
                  if (v == 0) continue;
                  rv.push_back({c, v});
                  v = 0;
                  if (lite) hit[cat_[c]] = 1;
                }
              }
              for (std::int64_t s = 0; s < S; ++s) {
                const std::int64_t c = image_labels[b * S + s];
                if (c == 0) continue;
                rv.push_back({static_cast<std::int32_t>(c), static_cast<std::int32_t>(count)});  // <= sh * sw
                if (lite) hit[cat_[c]] = 1;
              }
              std::int64_t* Arow = dA[static_cast<std::size_t>(ti)].data() + k * NC_;
              if (lite) {
                for (std::int64_t c = 0; c < NC_; ++c) {
                  if (hit[c]) Arow[c] += count;
                  hit[c] = 0;
                }
              } else {
                const std::uint8_t* cp = cats_b;
                for (std::int64_t c = 0; c < NC_; ++c)
                  if (cp[c]) Arow[c] += count;
              }
            }
          }
        },
        T);
  };
  if (pixel_labels && P > 0) {
    dispatch_labels(pixel_labels->kind, run_items);
  } else {
    run_items(Tag<std::int32_t>{});
  }
  std::int64_t masked_images = 0;
  for (std::int64_t m : masked_count) masked_images += m;

  // ---- commit
  // units in parallel (each owns its intersection row); nothing can fail here
  parallel_for(
      static_cast<std::size_t>(K_), 64,
      [&](std::size_t u0, std::size_t u1, int) {
        for (std::size_t k = u0; k < u1; ++k) {
          std::int64_t* Irow = I_.data() + static_cast<std::int64_t>(k) * NL_;
          for (int ti = 0; ti < T; ++ti)
            for (const IRec& r : recs_[static_cast<std::size_t>(ti) * K_ + k]) Irow[r.c] += r.v;
        }
      },
      T);
  for (const auto& d : dA)
    for (std::size_t i = 0; i < A_.size(); ++i) A_[i] += d[i];
  for (const auto& hh : hist)
    for (std::size_t c = 0; c < hh.size(); ++c) L_[c] += hh[c];
  L_[0] = 0;  // label 0 is never tallied (scan_labels skips it; kept explicit)
  images_ += B;
  last_masked_ = masked_images;
}

bool IoUTally::compatible(const IoUTally& o) const {
  return K_ == o.K_ && NL_ == o.NL_ && NC_ == o.NC_ && sh_ == o.sh_ && sw_ == o.sw_ &&
         rule_ == o.rule_ && cat_ == o.cat_;
}

namespace {
// a[i] + b[i] for every i fits int64 (all counts are >= 0)
bool sums_fit(const std::vector<std::int64_t>& a, const std::vector<std::int64_t>& b, std::size_t& bad) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::int64_t r;
    if (add_overflows(a[i], b[i], &r)) {
      bad = i;
      return false;
    }
  }
  return true;
}
}  // namespace

void IoUTally::merge(const IoUTally& o) {
  if (&o == this)
    fail("IoUTally.merge: cannot merge a tally with itself (that would count the same images twice)");
  if (!compatible(o))
    fail("IoUTally.merge: the other tally has a different configuration (num_units, num_labels, "
         "label_category, num_categories, output_size and unit_rule must all match)");
  // every sum is checked before any count changes
  std::size_t bad = 0;
  const char* field = nullptr;
  if (!sums_fit(I_, o.I_, bad)) field = "intersection";
  else if (!sums_fit(L_, o.L_, bad)) field = "label_pixels";
  else if (!sums_fit(A_, o.A_, bad)) field = "unit_pixels";
  std::int64_t images;
  if (!field && add_overflows(images_, o.images_, &images)) {
    field = "images";
    bad = 0;
  }
  if (field)
    fail(std::string("IoUTally.merge: the merged ") + field + " would overflow int64 (entry " +
         std::to_string(bad) + "); neither tally was changed");
  for (std::size_t i = 0; i < I_.size(); ++i) I_[i] += o.I_[i];
  for (std::size_t i = 0; i < L_.size(); ++i) L_[i] += o.L_[i];
  for (std::size_t i = 0; i < A_.size(); ++i) A_[i] += o.A_[i];
  images_ = images;
}

std::vector<double> IoUTally::iou() const {
  std::vector<double> out(static_cast<std::size_t>(K_ * NL_), 0.0);
  for (std::int64_t k = 0; k < K_; ++k) {
    for (std::int64_t c = 0; c < NL_; ++c) {
      // counts are >= 0 and I <= L (kept by update, merge and set_counts), so
      // A + L - I is exact in uint64 even where A + L exceeds int64
      const std::uint64_t i = static_cast<std::uint64_t>(I_[k * NL_ + c]);
      const std::uint64_t den = static_cast<std::uint64_t>(A_[k * NC_ + cat_[c]]) +
                                static_cast<std::uint64_t>(L_[c]) - i;
      out[k * NL_ + c] = den > 0 ? static_cast<double>(i) / static_cast<double>(den) : 0.0;
    }
  }
  return out;
}

void IoUTally::set_counts(std::vector<std::int64_t> intersection,
                          std::vector<std::int64_t> label_pixels,
                          std::vector<std::int64_t> unit_pixels, std::int64_t images,
                          std::int64_t maps_per_image) {
  // Invariants of counts that update() can produce, checked so that a saved
  // state that was edited or corrupted is refused instead of answering
  // nonsense (an IoU above 1, a negative denominator):
  //   every count >= 0; label 0 (none) has none; images >= 0;
  //   intersection[k, c] <= label_pixels[c];
  //   unit_pixels[k, cat] <= images * sh * sw (an image adds at most its
  //     active pixels to a category);
  //   with maps_per_image = P + S known (>= 0): label_pixels[c] and their sum
  //     <= images * (P + S) * sh * sw, and with the Lite rule
  //     intersection[k, c] <= (P + S) * unit_pixels[k, cat(c)] (an image adds
  //     to unit_pixels exactly when one of the category's labels meets the
  //     active pixels, and each of them meets at most P + S labels).
  auto bad = [](const char* field, const std::string& why) {
    fail(std::string("IoUTally state: ") + field + ": " + why);
  };
  if (intersection.size() != I_.size())
    bad("intersection", "must have " + std::to_string(I_.size()) + " entries (num_units x num_labels); got " +
                            std::to_string(intersection.size()));
  if (label_pixels.size() != L_.size())
    bad("label_pixels", "must have " + std::to_string(L_.size()) + " entries (num_labels); got " +
                            std::to_string(label_pixels.size()));
  if (unit_pixels.size() != A_.size())
    bad("unit_pixels", "must have " + std::to_string(A_.size()) + " entries (num_units x num_categories); got " +
                           std::to_string(unit_pixels.size()));
  if (images < 0) bad("images", "must be >= 0; got " + std::to_string(images));
  const std::int64_t npix = sh_ * sw_;
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  auto cap = [&](std::int64_t a, std::int64_t b) {  // a * b >= 0, saturated
    std::int64_t r;
    return mul_overflows(a, b, &r) ? kMax : r;
  };
  const std::int64_t a_max = cap(images, npix);
  const std::int64_t l_max = maps_per_image >= 0 ? cap(a_max, maps_per_image) : kMax;
  auto where = [](std::int64_t i, std::int64_t cols) {
    return "entry [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]";
  };
  std::int64_t lsum = 0;
  for (std::int64_t c = 0; c < NL_; ++c) {
    const std::int64_t v = label_pixels[static_cast<std::size_t>(c)];
    if (v < 0) bad("label_pixels", "must be >= 0; got " + std::to_string(v) + " for label " + std::to_string(c));
    if (c == 0 && v != 0) bad("label_pixels", "label 0 (none) is never tallied; got " + std::to_string(v));
    if (v > l_max || add_overflows(lsum, v, &lsum) || lsum > l_max)
      bad("label_pixels", "more pixels than images x label maps x sh x sw = " + std::to_string(l_max) +
                              " (label " + std::to_string(c) + ")");
  }
  for (std::int64_t i = 0; i < K_ * NC_; ++i) {
    const std::int64_t v = unit_pixels[static_cast<std::size_t>(i)];
    if (v < 0) bad("unit_pixels", "must be >= 0; got " + std::to_string(v) + " at " + where(i, NC_));
    if (v > a_max)
      bad("unit_pixels", std::to_string(v) + " at " + where(i, NC_) + " exceeds images x sh x sw = " +
                             std::to_string(a_max));
  }
  const bool lite = rule_ == UnitRule::Lite;
  for (std::int64_t i = 0; i < K_ * NL_; ++i) {
    const std::int64_t v = intersection[static_cast<std::size_t>(i)];
    const std::int64_t k = i / NL_, c = i % NL_;
    if (v < 0) bad("intersection", "must be >= 0; got " + std::to_string(v) + " at " + where(i, NL_));
    if (c == 0 && v != 0) bad("intersection", "label 0 (none) is never tallied; got " + std::to_string(v) + " at " + where(i, NL_));
    if (v > label_pixels[static_cast<std::size_t>(c)])
      bad("intersection", std::to_string(v) + " at " + where(i, NL_) + " exceeds label_pixels[" + std::to_string(c) +
                              "] = " + std::to_string(label_pixels[static_cast<std::size_t>(c)]));
    if (lite && maps_per_image >= 0) {
      const std::int64_t a = unit_pixels[static_cast<std::size_t>(k * NC_ + cat_[static_cast<std::size_t>(c)])];
      if (v > cap(a, maps_per_image))
        bad("intersection", std::to_string(v) + " at " + where(i, NL_) + " exceeds (label maps) x unit_pixels[" +
                                std::to_string(k) + ", " + std::to_string(cat_[static_cast<std::size_t>(c)]) +
                                "] = " + std::to_string(maps_per_image) + " x " + std::to_string(a) +
                                " (unit_rule 'lite')");
    }
  }
  I_ = std::move(intersection);
  L_ = std::move(label_pixels);
  A_ = std::move(unit_pixels);
  images_ = images;
}

}  // namespace iou
}  // namespace interp_engine
