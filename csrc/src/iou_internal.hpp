// Private declarations shared by the source files of the IoU tally (iou.hpp);
// not installed, not part of the public include directory.  The files follow
// the stages of IoUTally::update:
//   iou_activations.cpp  reading activation maps: loads, the per-map maximum
//                        and the block hot test
//   iou_upsample.cpp     the axis tables, the bilinear row kernels,
//                        upsample_bilinear and hot_bound (why skipping cold
//                        cells is exact)
//   iou_labels.cpp       the scan of an image's label maps (label masks or run
//                        ends)
//   iou_count.cpp        the work items: each unit's active pixels and their
//                        label counts
//   iou_tally.cpp        IoUTally: validation, planning, commit, merge, IoU,
//                        saved counts
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "interp_engine/cpu.hpp"
#include "interp_engine/dtype.hpp"
#include "interp_engine/iou.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IE_IOU_X86_DISPATCH 1  // the AVX2 / AVX-512 variants, picked at run time
#include <immintrin.h>
#endif

namespace interp_engine {
namespace iou {
namespace detail {

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

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

// Instruction sets the kernels may use: 2 = AVX-512 (F, BW, VL, VPOPCNTDQ) +
// FMA, 1 = AVX2 + FMA + POPCNT, 0 = portable code; of what `allowed` (the
// CPU, capped by INTERP_ENGINE_ISA: cpu.hpp) permits.  All give the same
// counts.  (iou_upsample.cpp)
int isa_level(const cpu::Features& allowed);

// ---------------------------------------------------------------------------
// Activation maps (iou_activations.cpp).

// Reads map (b, k) into buf (row-major h x w, float64).
using LoadFn = void (*)(const ActivationView&, std::int64_t, std::int64_t, double*);
LoadFn loader_for(Dtype d);

// Maximum of map (b, k) widened to float64, and whether it holds a NaN (the
// cheap first look at every map).  avx2: the contiguous float32 pass may use
// AVX2.
using MaxFn = double (*)(const ActivationView&, std::int64_t, std::int64_t, bool&);
MaxFn max_for(Dtype d, bool avx2);

// The largest float32 <= tl (the bound of the block hot test).
float float_at_or_below(double tl);

#ifdef IE_IOU_X86_DISPATCH
// Bit i of hot = x[i] > t[i] over n contiguous float32 values (AVX-512 F +
// BW); returns whether they hold a NaN.
bool block_hot_f32_avx512(const float* x, const float* t, std::int64_t n, std::uint16_t* hot);
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
// Upsampling (iou_upsample.cpp).

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

RowKernels row_kernels(int level);

// One horizontally interpolated source row over [X0, X1) (H[x], as hrow) and,
// for a row with hot cells, the first and last x with H[x] > tl: [lo, hi)
// (lo = X1, hi = X0 when there is none or the row is not hot, so that the
// union of two ranges is [min lo, max hi)).
using HRangeFn = void (*)(const double* a, std::int64_t w, const AxisTable& tx, std::int64_t X0,
                          std::int64_t X1, double* H, double tl, bool hot, std::int64_t& lo,
                          std::int64_t& hi);

HRangeFn hrange_for(int level);

// Several output rows that read the same two source rows (a run of output
// rows with equal (i0, i1): 16 of them at 16x upsampling), over the same
// range [xa, xb): one load of H0 and H1 per 8 pixels serves them all.  Row
// i's mask goes to masks[i * stride ..] (vmask's layout) and its active count
// to nact[i].  Same arithmetic as vmask.
using VmaskRowsFn = void (*)(const double* H0, const double* H1, const double* ly0, const double* ly1,
                             std::int64_t nrows, std::int64_t xa, std::int64_t xb, double thr,
                             std::uint64_t* masks, std::int64_t stride, std::int64_t* nact);

VmaskRowsFn vmask_rows_for(int level);

// ---------------------------------------------------------------------------
// Label maps (iou_labels.cpp), per image (shared by all units of the image, so done once):
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
//
// Per-update work buffers are kept between updates (allocating and faulting
// them in again cost ~1 ms per update).
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

// label_pixels from an image's label masks: hist[col_label[c]] += the set
// bits of column c (nrw = rows x words per row; padding columns have label 0
// and no bits).
using ColPixFn = void (*)(const std::uint64_t* bits, std::int64_t nrw, std::int64_t ncp,
                          const std::int32_t* col_label, std::int64_t* hist);

ColPixFn column_pixels_for(int level);

// Scans image b's label maps (of element type T: one of the eight IntKind
// types) into `out` with the instructions of `level`; adds to hist
// (label_pixels, when not null) and sets cats_present[cat] for the
// categories present (when not null).  Throws invalid_argument naming the
// first pixel whose label is not in [0, NL).
template <typename T>
void scan_labels(const LabelView& lv, std::int64_t b, std::int64_t NL, const std::int32_t* cat,
                 std::int64_t* hist, std::uint8_t* cats_present, ImageLabels& out, ScanScratch& sc, int level,
                 ColPixFn colpix);

// ---------------------------------------------------------------------------
// Counting (iou_count.cpp).

// Label-mask tally of one output row: u[0 .. nw) are the unit's active
// pixels as aligned words (bit i of u[j] = pixel 64 (w0 + j) + i), rowbits the
// masks of the same words ((nw, ncp) columns side by side); adds
// popcount(u[j] & rowbits[j, col]) to acc[col] for every column.
using MaskTallyFn = void (*)(const std::uint64_t* u, std::int64_t nw, const std::uint64_t* rowbits,
                             std::int64_t ncp, std::uint64_t* acc);

MaskTallyFn mask_tally_for(int level);

// What the units of one work item share: the image, the scan of its label
// maps, the thread's buffers.
struct Item {
  std::int64_t b = 0, k0 = 0;  // image; first unit of the block
  int ti = 0;                  // thread
  UnitScratch* U = nullptr;
  const void* labels = nullptr;         // the image's (P, sh, sw) label maps (null: none)
  const ImageLabels* il = nullptr;      // their scan (null: none)
  bool masked = false;                  // il holds label masks (else run ends)
  const std::uint8_t* e8 = nullptr;     // run ends (!masked)
  const std::uint64_t* bits = nullptr;  // label masks (masked)
  std::int64_t wpr = 0, ncp = 0;        // words per row, columns (masked)
  const std::uint16_t* hot = nullptr;   // the block's hot bits (null: test map by map)
  const std::uint8_t* cats = nullptr;   // the categories annotated in the image
};

}  // namespace detail

struct IoUTally::Workspace {
  std::vector<detail::ScanScratch> scratch;
  std::vector<detail::ImageLabels> ils;
  std::vector<detail::UnitScratch> us;
};

// One IoUTally::update in progress, stage by stage:
//   validate()  every input checked before any count changes (iou_tally.cpp)
//   plan()      threads, work items, memory, kernels, buffers (iou_tally.cpp)
//   count()     the work items on the thread pool: per (image, block of
//               units) the image's label maps are scanned, then each unit's
//               active pixels counted against them, into per-thread buffers
//               (iou_count.cpp)
//   commit()    the per-thread counts added to the tally; nothing can fail
//               there (iou_tally.cpp)
// A friend of IoUTally: it reads the configuration and writes the counts,
// the work buffers and the records.
struct UpdateRun {
  UpdateRun(IoUTally& tally, const ActivationView& acts, const double* thresholds, const LabelView* pixel_labels,
            const std::int64_t* image_labels, std::int64_t S, const std::uint8_t* image_categories);
  void validate() const;
  void plan(int num_threads);
  void count();
  void commit();

  // plan()'s memory check
  void require_memory() const;
  // count()'s stages, per label element type LT
  template <typename LT>
  void run_items();
  template <typename LT>
  void item(std::size_t index, int ti);
  template <typename LT>
  void unit(const detail::Item& it, std::int64_t k);
  bool may_fire(const detail::Item& it, std::int64_t k, double tl) const;
  template <typename LT>
  std::int64_t count_pixels(const detail::Item& it, double thr, double tl, std::int64_t rfirst, std::int64_t rlast);
  void tally_masks(const detail::Item& it, const std::uint64_t* mask, std::int64_t xa, std::int64_t xb,
                   std::int64_t yo);
  template <typename LT>
  void tally_runs(const detail::Item& it, const std::uint64_t* mask, std::int64_t xa, std::int64_t xb,
                  std::int64_t yo);
  void record(const detail::Item& it, std::int64_t k, std::int64_t count);

  // the inputs
  IoUTally& t;
  const ActivationView& acts;
  const double* thresholds;
  const LabelView* pixel_labels;
  const std::int64_t* image_labels;
  std::int64_t S;
  const std::uint8_t* image_categories;
  // plan(): sizes (npix = sh * sw; P label maps per image), whether the
  // categories are derived, the rule
  std::int64_t B = 0, h = 0, w = 0, npix = 0, P = 0;
  bool derive = false, lite = false;
  // instruction-set level, threads, blocks of ubs units per image (nub of
  // them), work items (B * nub)
  int isa = 0, T = 1;
  std::int64_t nub = 1, ubs = 1, items = 0;
  const AxisTable* ty = nullptr;  // rows
  const AxisTable* tx = nullptr;  // columns
  detail::LoadFn load = nullptr;
  detail::MaxFn mapmax = nullptr;
  detail::HRangeFn hrange = nullptr;
  detail::VmaskRowsFn vmask_rows = nullptr;
  detail::ColPixFn colpix = nullptr;
  detail::MaskTallyFn mask_tally = nullptr;
  std::vector<float> texp;  // the block hot test's bounds (empty: test map by map)
  // per thread: label_pixels and unit_pixels deltas, images kept as masks
  std::vector<std::vector<std::int64_t>> hist, dA;
  std::vector<std::int64_t> masked_count;
  IoUTally::Workspace* ws = nullptr;
};

}  // namespace iou
}  // namespace interp_engine
