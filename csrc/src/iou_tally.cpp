// IoUTally (iou.hpp): construction, update's validation, plan and commit
// (its work items: iou_count.cpp), merge, the IoU and saved counts.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "interp_engine/checked.hpp"
#include "interp_engine/parallel.hpp"
#include "iou_internal.hpp"

namespace interp_engine {
namespace iou {

using namespace detail;

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


void IoUTally::update(const ActivationView& acts, const double* thresholds, const LabelView* pixel_labels,
                      const std::int64_t* image_labels, std::int64_t S, const std::uint8_t* image_categories,
                      int num_threads) {
  UpdateRun run(*this, acts, thresholds, pixel_labels, image_labels, S, image_categories);
  run.validate();  // before any count changes
  if (acts.B == 0) return;
  run.plan(num_threads);
  run.count();   // into per-thread buffers: a failed update changes nothing
  run.commit();  // nothing can fail from here
}

UpdateRun::UpdateRun(IoUTally& tally, const ActivationView& acts_, const double* thresholds_,
                     const LabelView* pixel_labels_, const std::int64_t* image_labels_, std::int64_t S_,
                     const std::uint8_t* image_categories_)
    : t(tally),
      acts(acts_),
      thresholds(thresholds_),
      pixel_labels(pixel_labels_),
      image_labels(image_labels_),
      S(S_),
      image_categories(image_categories_) {}

void UpdateRun::validate() const {
  const std::int64_t K_ = t.K_, NL_ = t.NL_, sh_ = t.sh_, sw_ = t.sw_;
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
}

// Work items (image, block of units), shared out dynamically: a thread scans
// the image's label maps (validation, label_pixels, derived categories, label
// masks) and then evaluates the block's units on them while the masks are in
// its cache.  One block per image when there are enough images for the
// threads; counts go to per-thread buffers (records per (thread, unit), A,
// label_pixels) added at the commit, so nothing is shared and a failed update
// changes nothing.
void UpdateRun::plan(int num_threads) {
  const std::int64_t K_ = t.K_, NL_ = t.NL_, NC_ = t.NC_, sh_ = t.sh_, sw_ = t.sw_;
  B = acts.B;
  h = acts.h;
  w = acts.w;
  npix = sh_ * sw_;
  P = pixel_labels ? pixel_labels->P : 0;
  derive = image_categories == nullptr;
  lite = t.rule_ == UnitRule::Lite;
  const int T0 = num_threads > 0 ? num_threads : get_num_threads();
  const cpu::Features allowed = cpu::allowed();  // INTERP_ENGINE_ISA, read once per update
  isa = isa_level(allowed);

  const int Tmax = (checked_mul(B, K_, acts.h * acts.w, "activations") < 4096) ? 1 : std::max(1, T0);
  nub = B >= 4 * Tmax ? 1 : std::min<std::int64_t>(K_, (4 * static_cast<std::int64_t>(Tmax) + B - 1) / B);
  ubs = (K_ + nub - 1) / nub;  // units per block
  items = B * nub;
  T = static_cast<int>(std::min<std::int64_t>(Tmax, items));  // items >= 1 (B > 0)

  require_memory();
  ty = &t.table(acts.h, sh_, true);
  tx = &t.table(acts.w, sw_, false);
  load = loader_for(acts.dtype);
  mapmax = max_for(acts.dtype, allowed.avx2);
  hrange = hrange_for(isa);
  vmask_rows = vmask_rows_for(isa);
  colpix = column_pixels_for(isa);
  mask_tally = mask_tally_for(isa);
  // hot test of a block's maps in one pass (block_hot_f32_avx512): small
  // contiguous float32 maps; texp repeats each unit's bound h * w times
#ifdef IE_IOU_X86_DISPATCH
  if (isa >= 2 && acts.dtype == Dtype::F32 && h * w <= 1024 && acts.stride[3] == 4 && acts.stride[2] == 4 * w &&
      acts.stride[1] == 4 * h * w) {
    texp.resize(static_cast<std::size_t>(K_ * h * w));
    for (std::int64_t k = 0; k < K_; ++k)
      std::fill(texp.begin() + k * h * w, texp.begin() + (k + 1) * h * w, float_at_or_below(hot_bound(thresholds[k])));
  }
#endif

  hist.resize(static_cast<std::size_t>(T));
  for (auto& hh : hist) hh.assign(static_cast<std::size_t>(NL_), 0);
  dA.resize(static_cast<std::size_t>(T));
  for (auto& d : dA) d.assign(static_cast<std::size_t>(K_ * NC_), 0);
  masked_count.assign(static_cast<std::size_t>(T), 0);
  if (!t.ws_) t.ws_ = std::make_shared<IoUTally::Workspace>();
  ws = t.ws_.get();
  if (ws->scratch.size() < static_cast<std::size_t>(T)) ws->scratch.resize(static_cast<std::size_t>(T));
  if (ws->ils.size() < static_cast<std::size_t>(T)) ws->ils.resize(static_cast<std::size_t>(T));
  // intersection deltas as records (label, count) per (thread, unit), applied
  // at the commit: appending is sequential, and each unit's intersection row
  // is then updated in one go (scattered adds into the (K, num_labels) rows
  // per (unit, image) missed the cache).  Capacity is kept between updates.
  t.recs_.resize(static_cast<std::size_t>(T * K_));
  for (auto& r : t.recs_) r.clear();
  std::vector<UnitScratch>& us = ws->us;
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
}

// Everything this update allocates (work buffers kept between updates
// included), refused before any allocation when it cannot fit.
void UpdateRun::require_memory() const {
  const std::int64_t K_ = t.K_, NL_ = t.NL_, NC_ = t.NC_, sh_ = t.sh_, sw_ = t.sw_;
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
  per.add(K_, sizeof(std::vector<IoUTally::IRec>));
  for (int i = 0; i < T; ++i) need.add(per.total(), 1);
  need.require();
}

// Units in parallel (each owns its intersection row); nothing can fail here.
void UpdateRun::commit() {
  const std::int64_t K = t.K_, NL = t.NL_;
  std::int64_t masked_images = 0;
  for (std::int64_t m : masked_count) masked_images += m;
  parallel_for(
      static_cast<std::size_t>(K), 64,
      [&](std::size_t u0, std::size_t u1, int) {
        for (std::size_t k = u0; k < u1; ++k) {
          std::int64_t* Irow = t.I_.data() + static_cast<std::int64_t>(k) * NL;
          for (int ti = 0; ti < T; ++ti)
            for (const IoUTally::IRec& r : t.recs_[static_cast<std::size_t>(ti) * K + k]) Irow[r.c] += r.v;
        }
      },
      T);
  for (const auto& d : dA)
    for (std::size_t i = 0; i < t.A_.size(); ++i) t.A_[i] += d[i];
  for (const auto& hh : hist)
    for (std::size_t c = 0; c < hh.size(); ++c) t.L_[c] += hh[c];
  t.L_[0] = 0;  // label 0 is never tallied (scan_labels skips it; kept explicit)
  t.images_ += B;
  t.last_masked_ = masked_images;
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
