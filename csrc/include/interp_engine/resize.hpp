// Resizing of 2-D activation maps to the size of the label maps, with the
// exact arithmetic of the reference each method names.  Pure C++17, no Python.
//
// Three methods (docs/algorithms.md §1 for the dissection they feed):
// * Bilinear: PyTorch's F.interpolate(x.double(), size, mode="bilinear",
//   align_corners=False) (antialias=False): the arithmetic of iou.hpp
//   (iou::upsample_bilinear), the one IoUTally evaluates on the fly.  When it
//   shrinks a map it reads only the two nearest source cells per axis.
// * Antialias: F.interpolate(x.double(), size, mode="bilinear",
//   align_corners=False, antialias=True): a separable triangle filter whose
//   support widens with the scale when shrinking (so every source cell
//   contributes), computed in float64 from the exactly widened inputs, width
//   pass first, then height; an axis whose size does not change is skipped.
//   Per axis (in -> out, scale = in / out, s = max(scale, 1)):
//     center_i = scale * (i + 0.5)
//     lo_i     = max((int64)(center_i - s + 0.5), 0)       (truncation)
//     hi_i     = min((int64)(center_i + s + 0.5), in)
//     w_ij     = tri(((lo_i + j) - center_i + 0.5) * (1 / s)),  tri(x) = max(1 - |x|, 0)
//     w_ij    /= sum_j w_ij (summed in order, when the sum is not 0)
//   and each output value sums t_j * w_ij over j = 0 .. n-1 (n = hi - lo) in
//   the order of PyTorch's CPU kernel as compiled for FMA hardware (its AVX2
//   build, measured bit for bit): acc = t_0 w_0; then pairs of rounded
//   products added in order, acc = (acc + t_j w_j) + t_{j+1} w_{j+1}; when one
//   term is left over (n even) it is fused: acc = fma(t_{n-1}, w_{n-1}, acc).
// * Pil: Pillow's Image.resize(..., BILINEAR) of a mode "F" (float32) image,
//   NetDissect-Lite's resize (scipy.misc.imresize(map, size, mode="F")):
//   the input rounded to float32, the same weights (Pillow's
//   precompute_coeffs; PyTorch copied them), each output value
//   acc = 0.0; acc += (double)t_j * w_ij (in order, no fused multiply-add, as
//   Pillow's x86-64 wheels compute it), stored as float32 after each pass;
//   width pass first, then height, a pass skipped when its size does not
//   change (Pillow 4.2 to 12.1; from 12.2 Pillow runs the height pass first
//   when the height shrinks and the width does not, which can change the last
//   float32 bit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "interp_engine/dtype.hpp"

namespace interp_engine {
namespace resize {

enum class Method : int { Bilinear = 0, Antialias = 1, Pil = 2 };

// A (B, K, h, w) array of maps of any Dtype (read in place): pointer to
// element [0, 0, 0, 0] and byte strides (may be negative or zero).
struct MapsView {
  const void* data = nullptr;
  Dtype dtype = Dtype::F32;
  std::int64_t B = 0, K = 0, h = 0, w = 0;
  std::int64_t stride[4] = {0, 0, 0, 0};
};

// One axis of the Antialias / Pil filter (the formulas above): for output i
// the source cells [start[i], start[i] + count[i]) with weights
// w[offset[i] .. offset[i] + count[i]).  `pil` computes the scale as Pillow
// does, from the input size rounded to float32 (equal to in / out for
// in <= 2^24).
struct Taps {
  std::int64_t in = 0, out = 0, ksize = 0;
  std::vector<std::int64_t> start, count, offset;
  std::vector<double> w;
};
Taps make_taps(std::int64_t in, std::int64_t out, bool pil);

// Thrown when a map holds a NaN: (b, k) of the first such map in (b, k) order.
struct NanFound : std::invalid_argument {
  std::int64_t b, k;
  NanFound(std::int64_t b_, std::int64_t k_)
      : std::invalid_argument("maps must not contain NaN"), b(b_), k(k_) {}
};

// Validates the sizes as resize_maps does (std::invalid_argument naming the
// size that is not positive, too large, or whose products overflow) and
// returns the number of output values B * K * out_h * out_w.
std::int64_t output_values(const MapsView& in, std::int64_t out_h, std::int64_t out_w);

// Resizes every map to (out_h, out_w).  `out`: C-contiguous (B, K, out_h,
// out_w), float64 for Bilinear and Antialias, float32 for Pil.  NaN in the
// input: NanFound (the output is then unspecified); bad sizes:
// std::invalid_argument, before anything is read or written.
void resize_maps(const MapsView& in, std::int64_t out_h, std::int64_t out_w, Method method, void* out,
                 int num_threads = 0);

// Resizes every map and binarizes it against the thresholds (K doubles, no
// NaN): out[b, k, y, x] = resized(b, k)[y, x] > thresholds[k], compared in
// float64, as 1.0f / 0.0f in a C-contiguous (B, K, out_h, out_w) float32
// array (what IoUTally tallies fastest at identity scale).  Pil does what NetDissect-Lite's tally
// does: a map whose maximum (float64) is not above the threshold has no
// active pixel; otherwise the float32 values are compared with the threshold
// rounded to float32 (`mask > threshold[unit_id]` compares a float32 array
// with a float64 scalar in float32 under NumPy 1.x, which Lite ran on).
// Errors as resize_maps.
void resize_above(const MapsView& in, std::int64_t out_h, std::int64_t out_w, Method method,
                  const double* thresholds, float* out, int num_threads = 0);

}  // namespace resize
}  // namespace interp_engine
