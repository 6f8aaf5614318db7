// The scan of an image's label maps for the IoU tally (iou_internal.hpp
// describes the two formats): validation, label_pixels, the categories and
// labels present, and the label masks or run ends the units are counted
// against.
#include <algorithm>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "iou_internal.hpp"

namespace interp_engine {
namespace iou {
namespace detail {

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
// The last stage of scan_labels for an image kept as label masks: the
// columns padded to a multiple of 8, every run's bits set in its column, and
// label_pixels (hist, when not null) from the columns' popcounts.
void finish_masks(const MaskRun* runs, std::size_t nruns, std::int64_t sh, ImageLabels& out, std::int64_t* hist,
                  ColPixFn colpix) {
  const std::int64_t nc = static_cast<std::int64_t>(out.col_label.size());
  out.ncp = std::max<std::int64_t>(8, (nc + 7) / 8 * 8);
  out.col_label.resize(static_cast<std::size_t>(out.ncp), 0);
  const std::size_t nbits = static_cast<std::size_t>(sh * out.wpr * out.ncp);
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
  if (hist) colpix(bits, sh * wpr, ncp, out.col_label.data(), hist);
  std::vector<std::uint8_t>().swap(out.e8);
}

// The last stage of scan_labels for an image kept as run ends (base: its
// (P, sh, sw) maps, validated by now): the run end of every pixel, and
// label_pixels counted pixel by pixel into hist when not null (an image that
// gave the masks up midway: its first runs were not counted).
template <typename T>
void finish_run_ends(const T* base, const LabelView& lv, ImageLabels& out, std::int64_t* hist) {
  const std::int64_t npix = lv.sh * lv.sw;
  if (hist) {
    for (std::int64_t i = 0; i < lv.P * npix; ++i)
      if (base[i] != 0) hist[static_cast<std::size_t>(base[i])] += 1;
  }
  out.ncp = 0;
  out.col_label.clear();
  std::vector<std::uint64_t>().swap(out.bits);
  out.e8.resize(static_cast<std::size_t>(lv.P * npix + 16));
  for (std::int64_t r = 0; r < lv.P * lv.sh; ++r) fill_run_ends(base + r * lv.sw, lv.sw, out.e8.data() + r * lv.sw);
}
}  // namespace

ColPixFn column_pixels_for(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 2) return &column_pixels_avx512;
  if (level >= 1) return &column_pixels_popcnt;
#endif
  (void)level;
  return &column_pixels_generic;
}

template <typename T>
void scan_labels(const LabelView& lv, std::int64_t b, std::int64_t NL, const std::int32_t* cat,
                 std::int64_t* hist /* or null */, std::uint8_t* cats_present /* NC or null */, ImageLabels& out,
                 ScanScratch& sc, int level, ColPixFn colpix) {
  const StartsFn<T> starts_fn = starts_for<T>(level);
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
    finish_masks(runs, nruns, lv.sh, out, hist, colpix);
  } else {
    finish_run_ends(base, lv, out, hist && !hist_by_runs ? hist : nullptr);
  }
}

// the eight label element types (IntKind)
#define IE_IOU_SCAN_LABELS(T)                                                                                \
  template void scan_labels<T>(const LabelView&, std::int64_t, std::int64_t, const std::int32_t*, std::int64_t*, \
                               std::uint8_t*, ImageLabels&, ScanScratch&, int, ColPixFn);
IE_IOU_SCAN_LABELS(std::int8_t)
IE_IOU_SCAN_LABELS(std::uint8_t)
IE_IOU_SCAN_LABELS(std::int16_t)
IE_IOU_SCAN_LABELS(std::uint16_t)
IE_IOU_SCAN_LABELS(std::int32_t)
IE_IOU_SCAN_LABELS(std::uint32_t)
IE_IOU_SCAN_LABELS(std::int64_t)
IE_IOU_SCAN_LABELS(std::uint64_t)
#undef IE_IOU_SCAN_LABELS

}  // namespace detail
}  // namespace iou
}  // namespace interp_engine
