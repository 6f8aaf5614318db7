// Rank statistics for INVERT (Bykov et al., NeurIPS 2023): midranks per
// neuron, AUC (Mann-Whitney U / (n1 n0)) of bit-packed sample sets, the
// two-sided Mann-Whitney p-value, and the beam search over AND/OR/NOT formulas
// of concepts (docs/algorithms.md §3).
//
// Pure C++17, no Python.
//
// Exactness: ranks are kept doubled (r2 = 2 * midrank, an integer), so every
// rank sum is an exact int64 and every AUC is the exact rational
// u2 / (2 n1 n0) with u2 = R2 - n1 (n1 + 1) (R2 = sum of r2 over the set).
// The beam search compares AUCs as exact rationals (128-bit products): its
// order never depends on floating-point rounding.
//
// Sets of samples are packed bitsets (bitset.hpp).  Concept labels are rows of
// a bit matrix (C concepts x N samples).  The beam-search primitive needs, for
// a formula phi and every concept c at once, |phi & c| and R2(phi & c); OR and
// AND NOT follow by inclusion-exclusion from R2(phi), R2(c), R2(phi & c).  It
// is computed by a scatter over the samples of phi through a sample-major
// sparse index of the labels (ConceptIndex), where a concept present in more
// than half of the samples is stored by its complement, so the work per phi is
// sum over samples j of phi of min(#concepts of j, ...) <= |phi| * C / 2
// entries; a bitset variant (AND + iterate set bits) is kept for comparison.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "interp_engine/bitset.hpp"
#include "interp_engine/dtype.hpp"

namespace interp_engine {
namespace rank {

// Read-only view of an (N, K) activation matrix of any Dtype: element (i, k)
// at data[i * stride_n + k * stride_k] (strides in elements, may be any sign).
struct ActivationsView {
  const void* data = nullptr;
  Dtype dtype = Dtype::F64;
  std::size_t n = 0;  // samples
  std::size_t k = 0;  // neurons
  std::ptrdiff_t stride_n = 0;
  std::ptrdiff_t stride_k = 0;

  // the data may sit at any byte address (a numpy view at an odd offset):
  // read through memcpy, never through a misaligned pointer
  double at(std::size_t i, std::size_t j) const {
    const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(i) * stride_n + static_cast<std::ptrdiff_t>(j) * stride_k;
    const char* base = static_cast<const char*>(data);
    if (dtype == Dtype::F64) return load_wide<Dtype::F64>(base + off * 8);
    if (dtype == Dtype::F32) return static_cast<double>(load_wide<Dtype::F32>(base + off * 4));
    return load_double(base + off * 2, dtype);  // the 16-bit types
  }
};

// Largest number of samples N: sample indices are 32-bit and doubled rank
// sums (<= N (N + 1)) stay exact int64.
constexpr std::size_t kMaxSamples = (std::size_t{1} << 31) - 1;

// Ranks of one neuron's N activations.
struct Ranks {
  std::vector<std::int64_t> r2;  // 2 * midrank (1-based, ties averaged), per sample
  std::int64_t total = 0;        // sum of r2 = N (N + 1)
  double tie_term = 0;           // sum over tie groups of t^3 - t (scipy's tie correction)
  bool constant = false;         // all N values equal (or N < 2)
};

// Computes the ranks of neuron `neuron`.  `scratch` is reused between calls.
// Throws std::invalid_argument naming the neuron and the sample on NaN.
void neuron_ranks(const ActivationsView& a, std::size_t neuron, Ranks& out,
                  std::vector<std::pair<double, std::uint32_t>>& scratch);

// Midranks (1-based, ties averaged; scipy.stats.rankdata "average") of every
// column: out is (N, K) row-major float64.  Multi-threaded over neurons.
void midranks(const ActivationsView& a, double* out, int num_threads = 0);

// AUC from the doubled U statistic: u2 / (2 n1 n0); NaN when n1 == 0 or n0 == 0.
double auc_from_u2(std::int64_t u2, std::int64_t n1, std::int64_t n0);

// Two-sided Mann-Whitney U p-value, normal approximation with tie correction
// and continuity correction, exactly as scipy.stats.mannwhitneyu(x, y,
// method="asymptotic", use_continuity=True, alternative="two-sided"):
// U = max(U1, n1 n0 - U1), z = (U - n1 n0 / 2 - 0.5) / s,
// s = sqrt(n1 n0 / 12 * ((n + 1) - tie_term / (n (n - 1)))), p = clip(2 ndtr(-z), 0, 1).
// NaN when n1 == 0 or n0 == 0; 1 for constant data (s == 0).
double mwu_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, double tie_term);

// How the two-sided p-value is computed (scipy.stats.mannwhitneyu's `method`).
enum class PValueMethod : std::int8_t {
  Auto = 0,        // scipy's default: Exact when min(n1, n0) <= 8 and no two of the N values
                   // are tied, else Asymptotic (scipy 1.17 `_mwu_choose_method`)
  Asymptotic = 1,  // mwu_pvalue above
  Exact = 2,       // the exact null distribution of U (no tie correction, as scipy)
};

// scipy's "auto" rule: true when the exact test is chosen.
bool mwu_auto_is_exact(std::int64_t n1, std::int64_t n0, bool ties);

// Null distribution of the Mann-Whitney U statistic for groups of m and n
// samples without ties: P(U = u) is the number of partitions of u into at most
// min(m, n) parts of size at most max(m, n), over binom(m + n, m); the
// coefficients of the Gaussian binomial prod_{i=1..a} (1 - q^(b+i)) / (1 - q^i),
// a = min(m, n), b = max(m, n), computed as probabilities (each factor's
// multiplication, division and normalization by i / (b + i) is one pass; a
// passes over the k + 1 coefficients needed: O(a k) time, O(k) memory).
// cdf(k) = P(U <= k), computed on demand up to k and kept for later calls.
// Sizes are checked before allocation (std::invalid_argument past
// kMaxEntries coefficients or kMaxWork multiply-adds).
class MwuNull {
 public:
  static constexpr std::int64_t kMaxEntries = std::int64_t{1} << 27;  // 1 GiB of float64
  static constexpr std::int64_t kMaxWork = std::int64_t{1} << 34;     // ~1.7e10 multiply-adds
  MwuNull(std::int64_t m, std::int64_t n);
  std::int64_t m() const { return m_; }
  std::int64_t n() const { return n_; }
  double cdf(std::int64_t k);
  // Fills out[0..k] with P(U <= j).
  void cdf_upto(std::int64_t k, double* out);

 private:
  void build(std::int64_t k);
  std::int64_t m_, n_;
  std::vector<double> cdf_;  // cdf_[j] = P(U <= j), j < cdf_.size()
};

// Two-sided exact p-value as scipy's method="exact": U = floor(max(U1, n1 n0 - U1))
// (scipy converts U to int64), p = min(1, 2 P(U >= U_obs)) = min(1, 2 cdf(n1 n0 - U)).
// NaN when n1 == 0 or n0 == 0.  `null` must be for (n1, n0) (either order) or null.
double mwu_exact_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, MwuNull* null = nullptr);

// The p-value by `method`; `ties`: whether any two of the N values are equal
// (tie_term > 0).  `null`: optional cache for the exact distribution.
double mwu_pvalue(std::int64_t u2, std::int64_t n1, std::int64_t n0, double tie_term, PValueMethod method,
                  MwuNull* null = nullptr);

// AUC (and optionally the p-value by `method`) of every (neuron, set) pair: auc
// and p are (K, M) row-major; p may be null.  sets: M rows of N bits.
void auc_pvalues(const ActivationsView& a, const bits::BitMatrixView& sets, double* auc, double* p,
                 int num_threads = 0, PValueMethod method = PValueMethod::Auto);

// Sample-major sparse index of a (C x N) label bit matrix.
class ConceptIndex {
 public:
  explicit ConceptIndex(const bits::BitMatrixView& labels, int num_threads = 0);
  std::size_t num_concepts() const { return c_; }
  std::size_t num_samples() const { return n_; }
  const bits::BitMatrixView& labels() const { return labels_; }
  const std::vector<std::int64_t>& counts() const { return counts_; }  // |c| per concept
  bool complemented(std::size_t c) const { return complemented_[c] != 0; }
  std::size_t entries() const { return idx_.size(); }

  // For every concept c: cnt[c] = |phi & c|, sum[c] = sum of r2 over phi & c.
  // phi: N bits (words_for(N) words); n_phi, r_phi: |phi| and R2(phi).
  // acc: scratch of 2 * C int64.
  void and_sums(const std::int64_t* r2, const bits::word_t* phi, std::int64_t n_phi, std::int64_t r_phi,
                std::int64_t* cnt, std::int64_t* sum, std::vector<std::int64_t>& acc) const;

 private:
  bits::BitMatrixView labels_;
  std::size_t c_ = 0, n_ = 0;
  std::vector<std::int64_t> counts_;
  std::vector<std::uint8_t> complemented_;
  std::vector<std::int64_t> rowptr_;   // N + 1
  std::vector<std::uint32_t> idx_;     // concepts (or complemented concepts) of each sample
};

// The same sums by the bitset route: for each concept, AND the words and add
// r2 over the set bits (for comparison; the beam search uses ConceptIndex).
void and_sums_bits(const bits::BitMatrixView& labels, const std::int64_t* r2, const bits::word_t* phi,
                   std::int64_t* cnt, std::int64_t* sum);

// ---------------------------------------------------------------- beam search
// A formula is a left-to-right chain a_0 op_1 a_1 ... op_{L-1} a_{L-1}; each
// atom is coded 2 * concept + negated; op 0 = AND, 1 = OR.
enum : std::int8_t { kAnd = 0, kOr = 1 };

struct BeamParams {
  int length = 3;         // maximum number of atoms, >= 1
  int beam = 10;          // beam size B, >= 1
  double min_fraction = 0.0;
  double max_fraction = 0.5;
  bool negative = false;  // false: maximize AUC ("positive"); true: minimize it
  bool pvalues = true;
  PValueMethod pvalue_method = PValueMethod::Auto;
};

// Status of a neuron's search.
enum : std::int8_t { kOk = 0, kConstant = 1, kNoFormula = 2 };

// Results for the neurons searched, in the order given: B slots each
// (`count[i]` of them filled, best first).
struct BeamOutput {
  std::size_t num_neurons = 0, beam = 0, length = 0;
  std::vector<std::int8_t> status;    // (K')
  std::vector<std::int32_t> count;    // (K')
  std::vector<std::int32_t> lengths;  // (K', B)
  std::vector<std::int32_t> codes;    // (K', B, L): atom codes, -1 past the length
  std::vector<std::int8_t> ops;       // (K', B, L): ops[.., 0] = -1, then op_1.. ; -1 past the length
  std::vector<std::int64_t> n1;       // (K', B): samples in the formula
  std::vector<std::int64_t> u2;       // (K', B): 2 U (U = Mann-Whitney U of the samples inside)
  std::vector<double> auc;            // (K', B)
  std::vector<double> pvalue;         // (K', B), NaN when not asked
  // (K') formulas whose set is neither empty, nor all samples, nor the set of the
  // beam formula extended (the atoms counted once per concept): the number of
  // AUROC evaluations the reference implementation performs on the same beams.
  std::vector<std::int64_t> evaluations;
};

// Beam search (semantics: interp_engine/methods/invert.py and docs/invert.md).
// neurons: indices of the columns to explain.  Multi-threaded over neurons.
BeamOutput beam_search(const ActivationsView& a, const ConceptIndex& index, const BeamParams& params,
                       const std::vector<std::int64_t>& neurons, int num_threads = 0);

}  // namespace rank
}  // namespace interp_engine
