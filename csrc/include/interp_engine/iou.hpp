// Network Dissection count accumulator (Bau et al., CVPR 2017): per unit k and
// label c the intersection I[k, c] of the unit's binarized upsampled map with
// the label's pixels, the label's pixel count L[c], and the unit's active pixel
// count A[k, cat] per category.  Pure C++17, no Python.
//
// Semantics (docs/algorithms.md §1; ours where stated):
// * Upsampling: bilinear, half-pixel centres, edges clamped, evaluated in
//   float64 from the exactly widened inputs with exactly the arithmetic of
//   PyTorch's generic CPU bilinear kernel (the one F.interpolate(mode=
//   "bilinear", align_corners=False) runs on float64 NCHW input when
//   out_h + out_w > 128, e.g. 112x112) on an FMA-capable x86 CPU:
//     src  = max(fma(in/out, d + 0.5, -0.5), 0)
//     i0   = min((int64)floorf((float)src), in - 1); i1 = i0 + (i0 < in-1)
//     l1   = min(max(src - i0, 0), 1);  l0 = 1 - l1
//     h_r  = fma(a[r, x0], lx0, a[r, x1] * lx1)          (r = y0, y1)
//     v    = fma(h_y0, ly0, h_y1 * ly1)
//   (verified bit for bit against torch; see tests/core/test_iou.py).  A pixel is
//   active when v > T (strict, float64).  The upsampled maps are never
//   materialized: only pixels whose 2x2 source neighbourhood holds a "hot"
//   cell are evaluated (see hot_bound in iou_upsample.cpp for the proof that
//   no other pixel can fire).
// * Label 0 means "no label" and is never tallied.  A pixel carrying label c
//   in several label maps counts once per map; an image-level label counts as
//   a mask covering the whole image (out_h * out_w pixels), once per column
//   where it appears.
// * A[k, cat], rule Annotated (default): active pixels of unit k summed over
//   the images where category cat is annotated.  Rule Lite (NetDissect-Lite):
//   an image adds its active pixels to cat only when some label of cat lies
//   inside the unit's active region (an image-level label of cat lies inside
//   whenever the region is non-empty).
// * IoU[k, c] = I / (A[k, cat(c)] + L[c] - I), 0 where the denominator is 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "interp_engine/cpu.hpp"
#include "interp_engine/dtype.hpp"

namespace interp_engine {
namespace iou {

enum class UnitRule : int { Annotated = 0, Lite = 1 };

// Element type of the label maps (C-contiguous (B, P, sh, sw)).
enum class IntKind : int { I8 = 0, U8, I16, U16, I32, U32, I64, U64 };

// A (B, K, h, w) activation array of any Dtype (read in place): pointer to
// element [0, 0, 0, 0] and byte strides (may be negative or zero).
struct ActivationView {
  const void* data = nullptr;
  Dtype dtype = Dtype::F32;
  std::int64_t B = 0, K = 0, h = 0, w = 0;
  std::int64_t stride[4] = {0, 0, 0, 0};  // bytes
};

// C-contiguous (B, P, sh, sw) integer label maps.
struct LabelView {
  const void* data = nullptr;
  IntKind kind = IntKind::I32;
  std::int64_t B = 0, P = 0, sh = 0, sw = 0;
};

// Per-axis interpolation table for in -> out (torch's arithmetic, above).
struct AxisTable {
  std::int64_t in = 0, out = 0;
  std::vector<std::int32_t> i0, i1;  // per output index
  std::vector<double> l0, l1;        // per output index
  // per source index r: the output indices d with i0[d] == r or i1[d] == r
  // form the contiguous range [lo[r], hi[r]) (empty when lo == hi).
  std::vector<std::int32_t> lo, hi;
};
AxisTable make_axis_table(std::int64_t in, std::int64_t out);

// Upsample one row-major (h, w) float64 map to (out_h, out_w) with the exact
// arithmetic above (for tests and for users who want the map itself), with
// the instructions `allowed` permits (the first form: cpu::allowed(), read
// now).
std::vector<double> upsample_bilinear(const double* a, std::int64_t h, std::int64_t w,
                                      std::int64_t out_h, std::int64_t out_w);
std::vector<double> upsample_bilinear(const double* a, std::int64_t h, std::int64_t w,
                                      std::int64_t out_h, std::int64_t out_w, const cpu::Features& allowed);

// The lower bound below which a cell can never make a pixel exceed T (see
// iou_upsample.cpp).  T = +inf: +inf (nothing fires); T = -inf: -inf.
double hot_bound(double T);

struct UpdateRun;  // an update in progress (private: csrc/src/iou_internal.hpp)

class IoUTally {
 public:
  IoUTally(std::int64_t num_units, std::int64_t num_labels, std::vector<std::int32_t> label_category,
           std::int64_t num_categories, std::int64_t out_h, std::int64_t out_w,
           UnitRule rule = UnitRule::Annotated);

  // Adds a batch.  thresholds: K doubles (no NaN).  pixel_labels may be null
  // (no pixel label maps); image_labels: (B, S) row-major int64 or null;
  // image_categories: (B, num_categories) row-major 0/1 bytes or null (then
  // derived: a category is annotated in an image when any of its labels
  // occurs there, pixel- or image-level).  Throws std::invalid_argument on
  // bad input before any count changes; an interrupted update (Interrupted)
  // leaves the counts unchanged.
  void update(const ActivationView& acts, const double* thresholds, const LabelView* pixel_labels,
              const std::int64_t* image_labels, std::int64_t S,
              const std::uint8_t* image_categories, int num_threads = 0);

  // Adds the counts of `other` (same configuration, not this tally itself,
  // and no sum overflowing int64; else invalid_argument and nothing changes).
  void merge(const IoUTally& other);
  bool compatible(const IoUTally& other) const;

  // (K, num_labels) row-major IoU.
  std::vector<double> iou() const;

  // Replace all counts (from a saved state).  Sizes and the invariants that
  // update() keeps are checked (invalid_argument naming the field; see
  // iou_tally.cpp); maps_per_image = P + S (pixel label maps plus image-level
  // columns) when known, else -1.
  void set_counts(std::vector<std::int64_t> intersection, std::vector<std::int64_t> label_pixels,
                  std::vector<std::int64_t> unit_pixels, std::int64_t images, std::int64_t maps_per_image = -1);

  std::int64_t num_units() const { return K_; }
  std::int64_t num_labels() const { return NL_; }
  std::int64_t num_categories() const { return NC_; }
  std::int64_t out_h() const { return sh_; }
  std::int64_t out_w() const { return sw_; }
  UnitRule rule() const { return rule_; }
  const std::vector<std::int32_t>& label_category() const { return cat_; }
  const std::vector<std::int64_t>& intersection() const { return I_; }  // (K, NL)
  const std::vector<std::int64_t>& label_pixels() const { return L_; }   // (NL)
  const std::vector<std::int64_t>& unit_pixels() const { return A_; }    // (K, NC)
  std::int64_t images() const { return images_; }
  // images of the last update kept as label masks (the rest: run ends); for tests
  std::int64_t last_masked_images() const { return last_masked_; }

 private:
  friend struct UpdateRun;
  const AxisTable& table(std::int64_t in, std::int64_t out, bool rows);

  std::int64_t K_, NL_, NC_, sh_, sw_;
  UnitRule rule_;
  std::vector<std::int32_t> cat_;
  std::vector<std::int64_t> I_, L_, A_;
  std::int64_t images_ = 0;
  std::int64_t last_masked_ = 0;
  AxisTable ytab_, xtab_;  // cached for the last (h, w)
  // update's work buffers (defined in iou_internal.hpp; kept between updates)
  struct Workspace;
  std::shared_ptr<Workspace> ws_;
  // update's intersection deltas: per unit, (label, count) records (capacity
  // kept between updates)
  struct IRec {
    std::int32_t c, v;
    IRec() noexcept {}  // uninitialized: a list is resized and then written
    IRec(std::int32_t c_, std::int32_t v_) noexcept : c(c_), v(v_) {}
  };
  std::vector<std::vector<IRec>> recs_;
};

}  // namespace iou
}  // namespace interp_engine
