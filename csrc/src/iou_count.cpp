// The work items of IoUTally::update (iou_internal.hpp): per (image, block of
// units), the image's label maps are scanned once, then each unit's map is
// tested for hot cells, its output rows that can fire are evaluated, and its
// active pixels are counted against the labels (label masks: popcounts per
// column; run ends: hops from label run to label run), into the thread's
// buffers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "interp_engine/parallel.hpp"
#include "iou_internal.hpp"

namespace interp_engine {
namespace iou {
namespace detail {

namespace {
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

}  // namespace

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

MaskTallyFn mask_tally_for(int level) {
#ifdef IE_IOU_X86_DISPATCH
  if (level >= 2) return &mask_tally_avx512;
  if (level >= 1) return &mask_tally_popcnt;
#endif
  (void)level;
  return &mask_tally_generic;
}

namespace {
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


// Per source row r of the (h, w) map a, the first and last column of a hot
// cell (> tl), -1 for both when there is none: cmin[r], cmax[r]; rfirst and
// rlast: the first and last row with one (-1: none).
void hot_cells(const double* a, std::int64_t h, std::int64_t w, double tl, std::int64_t* cmin, std::int64_t* cmax,
               std::int64_t& rfirst, std::int64_t& rlast) {
  rfirst = -1;
  rlast = -1;
  for (std::int64_t r = 0; r < h; ++r) {
    std::int64_t lo = -1, hi = -1;
    const double* row = a + r * w;
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
}
}  // namespace
}  // namespace detail

using namespace detail;

void UpdateRun::count() {
  if (pixel_labels && P > 0) {
    dispatch_labels(pixel_labels->kind, [&](auto tag) { run_items<typename decltype(tag)::type>(); });
  } else {
    run_items<std::int32_t>();
  }
}

// Work items (image, block of units), shared out dynamically.
template <typename LT>
void UpdateRun::run_items() {
  parallel_for_dynamic(
      static_cast<std::size_t>(items), [&](std::size_t i, int ti) { item<LT>(i, ti); }, T);
}

// One work item: the image's labels (scanned by the block's first item only
// for label_pixels; every item needs the masks or run ends), then the units.
template <typename LT>
void UpdateRun::item(std::size_t index, int ti) {
  check_interrupt();
  const std::int64_t K = t.K_, NC = t.NC_, NL = t.NL_;
  const std::int64_t b = static_cast<std::int64_t>(index) / nub;
  const std::int64_t blk = static_cast<std::int64_t>(index) % nub;
  const std::int64_t k0 = blk * ubs, k1 = std::min(K, k0 + ubs);
  const bool first = blk == 0;  // counts label_pixels (once per image)
  UnitScratch& U = ws->us[static_cast<std::size_t>(ti)];
  ImageLabels& il = ws->ils[static_cast<std::size_t>(ti)];
  std::int64_t* hb = first ? hist[static_cast<std::size_t>(ti)].data() : nullptr;
  std::uint8_t* cats_b = U.cats.data();
  if (derive) {
    std::fill(U.cats.begin(), U.cats.end(), 0);
  } else {
    std::copy(image_categories + b * NC, image_categories + (b + 1) * NC, U.cats.begin());
  }
  if (P > 0) {
    scan_labels<LT>(*pixel_labels, b, NL, t.cat_.data(), hb, derive ? cats_b : nullptr, il,
                    ws->scratch[static_cast<std::size_t>(ti)], isa, colpix);
    if (first) masked_count[static_cast<std::size_t>(ti)] += il.masked;
  }
  for (std::int64_t s = 0; s < S; ++s) {
    const std::int64_t c = image_labels[b * S + s];
    if (c == 0) continue;
    if (hb) hb[static_cast<std::size_t>(c)] += npix;
    if (derive) cats_b[t.cat_[static_cast<std::size_t>(c)]] = 1;
  }
  if (P > 0 && !il.masked && U.cnt.size() != static_cast<std::size_t>(NL)) U.cnt.assign(static_cast<std::size_t>(NL), 0);

  Item it;
  it.b = b;
  it.k0 = k0;
  it.ti = ti;
  it.U = &U;
  it.cats = cats_b;
  if (pixel_labels && P > 0) {
    it.labels = static_cast<const LT*>(pixel_labels->data) + b * P * npix;
    it.il = &il;
    it.masked = il.masked;
    it.e8 = il.masked ? nullptr : il.e8.data();
    it.bits = il.masked ? il.bits.data() : nullptr;
    it.wpr = il.masked ? il.wpr : 0;
    it.ncp = il.masked ? il.ncp : 0;
  }
#ifdef IE_IOU_X86_DISPATCH
  if (!texp.empty()) {
    const std::int64_t n = (k1 - k0) * h * w;
    U.hot.resize(static_cast<std::size_t>(n / 16 + 8));
    const float* xb =
        reinterpret_cast<const float*>(static_cast<const char*>(acts.data) + b * acts.stride[0] + k0 * acts.stride[1]);
    // a block with NaN: the per-map test finds and names the first one
    if (!block_hot_f32_avx512(xb, texp.data() + k0 * h * w, n, U.hot.data())) it.hot = U.hot.data();
  }
#endif
  for (std::int64_t k = k0; k < k1; ++k) {
    if (((k - k0) & 15) == 15) check_interrupt();  // a block of many units on large maps
    unit<LT>(it, k);
  }
}

// Unit k on the item's image: nothing unless a cell is hot; else the active
// pixels of the output rows that can fire, counted against the labels, and
// their records.
template <typename LT>
void UpdateRun::unit(const Item& it, std::int64_t k) {
  const double thr = thresholds[k];
  const double tl = hot_bound(thr);
  if (!may_fire(it, k, tl)) return;  // no cell is hot: no pixel can fire
  UnitScratch& U = *it.U;
  load(acts, it.b, k, U.a.data());
  std::int64_t rfirst, rlast;
  hot_cells(U.a.data(), h, w, tl, U.cmin.data(), U.cmax.data(), rfirst, rlast);
  if (rfirst < 0 || thr == std::numeric_limits<double>::infinity()) return;
  const std::int64_t count = count_pixels<LT>(it, thr, tl, rfirst, rlast);
  if (count == 0) return;
  record(it, k, count);
}

// Whether map (it.b, k) has a hot cell (> tl): from the block's hot bits, or
// from the map's maximum (which also finds a NaN: invalid_argument naming the
// image and the unit).
bool UpdateRun::may_fire(const Item& it, std::int64_t k, double tl) const {
  if (it.hot) return any_bit(it.hot, (k - it.k0) * h * w, h * w);
  bool nan = false;
  const double mx = mapmax(acts, it.b, k, nan);
  if (nan) {
    std::ostringstream s;
    s << "activations must not contain NaN (image " << it.b << ", unit " << k << ")";
    fail(s.str());
  }
  return mx > tl;
}

// The active pixels (> thr) of the unit's upsampled map in the rows and
// columns its hot cells (U.cmin / U.cmax, source rows [rfirst, rlast]) can
// reach, counted against the image's labels (U.acc by column, or U.cnt by
// label number); returns how many there are.
template <typename LT>
std::int64_t UpdateRun::count_pixels(const Item& it, double thr, double tl, std::int64_t rfirst, std::int64_t rlast) {
  UnitScratch& U = *it.U;
  const std::int64_t sw = t.sw_;
  const AxisTable& Ty = *ty;
  const AxisTable& Tx = *tx;
  const std::int64_t* cmin = U.cmin.data();
  const std::int64_t* cmax = U.cmax.data();
  // output columns that can fire for rows touching source row r
  auto col_range = [&](std::int64_t r, std::int64_t& xa, std::int64_t& xb) {
    if (cmin[r] < 0) return;
    xa = std::min<std::int64_t>(xa, Tx.lo[cmin[r]]);
    xb = std::max<std::int64_t>(xb, Tx.hi[cmax[r]]);
  };
  std::int64_t X0 = sw, X1 = 0;
  for (std::int64_t r = rfirst; r <= rlast; ++r) col_range(r, X0, X1);
  const std::int64_t y_begin = Ty.lo[rfirst], y_end = Ty.hi[rlast];
  // no output pixel reads the hot cells (a downsampled map: every hot row or
  // column is skipped by the table): nothing can fire
  if (y_begin >= y_end || X0 >= X1) return 0;
  // Second, finer filter: H_r = the horizontally interpolated source row r.
  // Every operation is monotone, so where both H_r0 and H_r1 are <= tl (or
  // within a few ulps above tl: the H of a row without hot cells) the output
  // is at most tl + 8 * 2^-53 * |tl| + tiny < T (the bound of hot_bound,
  // iou_upsample.cpp): only columns where a hot row's H exceeds tl are
  // evaluated.  Every source row the output rows [y_begin, y_end) read,
  // first.
  double* Hbuf = U.Hbuf.data();
  std::int64_t* hlo = U.hlo.data();
  std::int64_t* hhi = U.hhi.data();
  for (std::int64_t r = Ty.i0[y_begin], r_end = Ty.i1[y_end - 1]; r <= r_end; ++r)
    hrange(U.a.data() + r * w, w, Tx, X0, X1, Hbuf + r * sw, tl, cmin[r] >= 0, hlo[r], hhi[r]);
  const std::int64_t mstride = sw / 64 + 2;
  std::int64_t count = 0;
  for (std::int64_t yg = y_begin; yg < y_end;) {
    // output rows [yg, ye) read the same source rows r0, r1
    const std::int32_t r0 = Ty.i0[yg], r1 = Ty.i1[yg];
    std::int64_t ye = yg + 1;
    while (ye < y_end && Ty.i0[ye] == r0 && Ty.i1[ye] == r1) ++ye;
    const std::int64_t y0 = yg;
    yg = ye;
    // the hot range of either row (an empty range is [X1, X0))
    const std::int64_t xa = std::min(hlo[r0], hlo[r1]);
    const std::int64_t xb = std::max(hhi[r0], hhi[r1]);
    if (xa >= xb) continue;
    vmask_rows(Hbuf + r0 * sw, Hbuf + r1 * sw, Ty.l0.data() + y0, Ty.l1.data() + y0, ye - y0, xa, xb, thr,
               U.mask.data(), mstride, U.gnact.data());
    for (std::int64_t yo = y0; yo < ye; ++yo) {
      const std::int64_t nact = U.gnact[static_cast<std::size_t>(yo - y0)];
      const std::uint64_t* mask = U.mask.data() + (yo - y0) * mstride;
      if (nact == 0) continue;
      count += nact;
      if (!it.labels) continue;
      if (it.masked) {
        tally_masks(it, mask, xa, xb, yo);
      } else {
        tally_runs<LT>(it, mask, xa, xb, yo);
      }
    }
  }
  return count;
}

// Label masks: the row's active pixels (bit i of mask = pixel xa + i) as
// aligned words (urow[j]'s bit t = pixel 64 (w0 + j) + t), popcounts against
// every column's mask words into U.acc.
void UpdateRun::tally_masks(const Item& it, const std::uint64_t* mask, std::int64_t xa, std::int64_t xb,
                            std::int64_t yo) {
  UnitScratch& U = *it.U;
  std::uint64_t* urow = U.urow.data();
  const std::int64_t off = xa & 63, w0 = xa >> 6, w1 = (xb - 1) >> 6;
  const std::int64_t nrel = (xb - xa + 63) / 64;
  for (std::int64_t j = 0; j <= w1 - w0; ++j) {
    const std::uint64_t cur = j < nrel ? mask[j] : 0;
    const std::uint64_t prev = j > 0 ? mask[j - 1] : 0;
    urow[j] = off ? (cur << off) | (prev >> (64 - off)) : cur;
  }
  mask_tally(urow, w1 - w0 + 1, it.bits + (yo * it.wpr + w0) * it.ncp, it.ncp, U.acc.data());
}

// Run ends: the row's active segments, each crossed from label run to label
// run of every map, adding to U.cnt by label number.
template <typename LT>
void UpdateRun::tally_runs(const Item& it, const std::uint64_t* mask, std::int64_t xa, std::int64_t xb,
                           std::int64_t yo) {
  UnitScratch& U = *it.U;
  std::int32_t* seg = U.seg.data();
  std::int32_t* cnt = U.cnt.data();
  const LT* lab_b = static_cast<const LT*>(it.labels);
  const std::int64_t ns = row_segments(mask, xb - xa, xa, seg);
  const std::int64_t rbase = yo * t.sw_;
  for (std::int64_t j = 0; j < ns; ++j) {
    const std::int64_t xs = seg[2 * j], xe = seg[2 * j + 1];
    for (std::int64_t m = 0; m < P; ++m) {
      const LT* lr = lab_b + m * npix + rbase;
      const std::uint8_t* er = it.e8 + m * npix + rbase;
      std::int64_t x = xs;
      do {
        const std::int64_t y = std::min<std::int64_t>(xe, (x & ~std::int64_t(255)) + er[x] + 1);
        cnt[static_cast<std::size_t>(lr[x])] += static_cast<std::int32_t>(y - x);
        x = y;
      } while (x < xe);
    }
  }
}

// Unit k's `count` active pixels on the item's image: the records (label,
// count) of its labels (the per-column or per-label counts, reset to 0 for
// the next unit) and of the image-level labels, and its unit_pixels.
void UpdateRun::record(const Item& it, std::int64_t k, std::int64_t count) {
  UnitScratch& U = *it.U;
  const std::int64_t NC = t.NC_;
  const std::int32_t* cat = t.cat_.data();
  std::uint8_t* hit = U.hit.data();
  std::vector<IoUTally::IRec>& rv = t.recs_[static_cast<std::size_t>(it.ti * t.K_ + k)];
  if (it.il && it.masked) {
    // one record per column with a count (padding columns never count),
    // written branch-free
    std::uint64_t* acc = U.acc.data();
    const std::int32_t* cl = it.il->col_label.data();
    const std::size_t n0 = rv.size();
    rv.resize(n0 + static_cast<std::size_t>(it.ncp));
    IoUTally::IRec* out = rv.data() + n0;
    std::size_t n = 0;
    for (std::int64_t c = 0; c < it.ncp; ++c) {
      const std::uint64_t v = acc[c];
      out[n] = {cl[c], static_cast<std::int32_t>(v)};  // <= sh * sw
      n += v != 0;
      acc[c] = 0;
    }
    rv.resize(n0 + n);
    if (lite)
      for (std::size_t i = 0; i < n; ++i) hit[cat[out[i].c]] = 1;
  } else if (it.il) {
    // label 0 is never tallied
    std::int32_t* cnt = U.cnt.data();
    cnt[0] = 0;
    const std::int32_t* labs = it.il->labels.data();
    for (std::size_t j = 1, nl = it.il->labels.size(); j < nl; ++j) {
      const std::int32_t c = labs[j];
      std::int32_t& v = cnt[static_cast<std::size_t>(c)];
      if (v == 0) continue;
      rv.push_back({c, v});
      v = 0;
      if (lite) hit[cat[c]] = 1;
    }
  }
  for (std::int64_t s = 0; s < S; ++s) {
    const std::int64_t c = image_labels[it.b * S + s];
    if (c == 0) continue;
    rv.push_back({static_cast<std::int32_t>(c), static_cast<std::int32_t>(count)});  // <= sh * sw
    if (lite) hit[cat[c]] = 1;
  }
  std::int64_t* Arow = dA[static_cast<std::size_t>(it.ti)].data() + k * NC;
  if (lite) {
    for (std::int64_t c = 0; c < NC; ++c) {
      if (hit[c]) Arow[c] += count;
      hit[c] = 0;
    }
  } else {
    const std::uint8_t* cp = it.cats;
    for (std::int64_t c = 0; c < NC; ++c)
      if (cp[c]) Arow[c] += count;
  }
}

}  // namespace iou
}  // namespace interp_engine
