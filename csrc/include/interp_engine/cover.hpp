// Greedy cover kernels: weighted max coverage / set cover (greedy_cover) and
// submodular-cost submodular cover with coverage cost and gain
// (ratio_greedy_cover, the rule of Lam et al., ICCV 2021).
//
// Pure C++17, no Python.  Candidates are rows, elements are columns; a family
// of candidate sets is given either as CSR (row pointers + column indices, no
// duplicate column inside a row) or as packed bitset rows (bitset.hpp).
//
// Semantics (the Python layer documents the same):
//  * greedy_cover: algorithm by case: CSR (or packed rows of density < 1/16)
//    with unit or integer weights -> exact incremental gains over the
//    element -> candidates transpose; real weights or denser packed rows ->
//    lazy greedy (CELF).  Both: repeatedly take the candidate with the largest weighted
//    marginal gain, ties to the lowest index; stop when `budget` candidates
//    are taken, when the covered weight reaches `target`, or when no
//    candidate has a positive gain.  Gains are exact int64 for unit or
//    integer weights.  For real weights, a candidate's gain is always computed
//    afresh as the sequential double sum of the weights of its uncovered
//    elements in stored (ascending for sorted input) element order; the lazy
//    (CELF) bounds are valid for these computed values because rounding is
//    monotone, so the choice is the exact argmax of those computed gains.
//  * ratio_greedy_cover: each step takes, among candidates with at least one
//    newly covered gain element, the one minimizing
//    (new cost + eps_cost) / (new gain + eps_gain) in double, ties to the
//    lowest index, until covered gain >= target; when no candidate adds gain
//    the target is unreachable and the loop stops (reached = false).  Then,
//    if `tighten`, every candidate not yet chosen whose cost set is already
//    fully covered is appended in ascending index order (adding such a
//    candidate never changes the covered cost, so the set appended does not
//    depend on the order).
//  * ratio_greedy_cover_many: many independent ratio_greedy_cover problems
//    across the thread pool, each single-threaded (results identical to one
//    call per problem).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "interp_engine/bitset.hpp"

namespace interp_engine {
namespace cover {

// A read-only family of candidate sets over elements [0, n_elements).
struct SetFamily {
  enum class Kind { Csr, Bits };
  Kind kind = Kind::Csr;
  std::size_t n_candidates = 0;
  std::size_t n_elements = 0;
  // Csr: indptr has n_candidates + 1 entries, indptr[0] == 0, non-decreasing;
  // indices[indptr[i]:indptr[i+1]] are the elements of candidate i, strictly
  // increasing (sorted, no duplicates), in [0, n_elements) (checked when read;
  // violations throw invalid_argument).
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  // Bits: rows of bits::words_for(n_elements) words (stride words_per_row),
  // padding bits zero.
  bits::BitMatrixView bits;

  static SetFamily csr(std::size_t n_candidates, std::size_t n_elements, const std::int64_t* indptr,
                       const std::int32_t* indices);
  static SetFamily packed(const bits::BitMatrixView& view);
};

// Element weights: both null = unit weights; `integer` = exact int64 weights;
// `real` = double weights.  All must be >= 0 and finite (the caller checks).
struct Weights {
  const std::int64_t* integer = nullptr;
  const double* real = nullptr;
};

struct GreedyResult {
  std::vector<std::int64_t> indices;  // chosen candidates, in order
  std::vector<double> gains;          // their marginal gains
  double covered = 0;                 // sum of gains (exact for integer weights)
};

constexpr double kNoTarget = std::numeric_limits<double>::infinity();

// budget < 0: no budget.  target = kNoTarget: until nothing more can be covered.
GreedyResult greedy_cover(const SetFamily& sets, const Weights& weights, std::int64_t budget,
                          double target, int num_threads = 0);

struct RatioResult {
  std::vector<std::int64_t> indices;  // greedy picks in order, then tighten additions
  std::int64_t n_greedy = 0;          // how many of `indices` the greedy phase chose
  std::int64_t covered_cost = 0;      // cost elements covered by all of `indices`
  std::int64_t covered_gain = 0;      // gain elements covered by all of `indices`
  bool reached = false;               // covered gain >= target after the greedy phase
};

// cost and gain must have the same n_candidates (invalid_argument otherwise).
RatioResult ratio_greedy_cover(const SetFamily& cost, const SetFamily& gain, double target,
                               double eps_cost, double eps_gain, bool tighten,
                               int num_threads = 0);

// One independent problem of ratio_greedy_cover_many.
struct RatioProblem {
  SetFamily cost;
  SetFamily gain;
  double target = 0;
};

// Solves every problem with ratio_greedy_cover(p.cost, p.gain, p.target,
// eps_cost, eps_gain, tighten, 1): problems are spread over up to
// `num_threads` threads (0 = get_num_threads(); dynamic schedule), each solved
// single-threaded, so results[i] is identical to a call on problem i alone.
// The first error (e.g. mismatched candidate counts) is rethrown.
std::vector<RatioResult> ratio_greedy_cover_many(const std::vector<RatioProblem>& problems,
                                                 double eps_cost, double eps_gain, bool tighten,
                                                 int num_threads = 0);

// Canonical CSR (rows' column indices strictly increasing, duplicates merged)
// of the positions of a sparse matrix given column-major: column j holds rows
// rowidx[colptr[j] : colptr[j + 1]] (any order, duplicates allowed).
// Throws invalid_argument on an index out of range.
struct CsrArrays {
  std::vector<std::int64_t> indptr;
  std::vector<std::int32_t> indices;
};
CsrArrays csr_from_colmajor(std::size_t n_rows, std::size_t n_cols, const std::int64_t* colptr,
                            const std::int32_t* rowidx);
// Same from coordinates (row[k], col[k]), k < nnz (any order, duplicates allowed).
CsrArrays csr_from_coo(std::size_t n_rows, std::size_t n_cols, std::size_t nnz, const std::int32_t* row,
                       const std::int32_t* col);

}  // namespace cover
}  // namespace interp_engine
