// Streaming per-channel quantile sketch (KLL-style randomized compactors)
// and the exact second pass that turns its bracket into exact order
// statistics.  Pure C++17, no Python.
//
// Algorithm (ours, after Karnin, Lang & Liberty, "Optimal Quantile
// Approximation in Streams", FOCS 2016, and the lazy variant of Apache
// DataSketches' kll_sketch):
//  - a channel keeps levels 0..L-1 of items; an item at level h stands for
//    2^h observations.  Level 0 is an unsorted append buffer, the others are
//    sorted.  Level h has capacity max(kMinCap, round(k * (2/3)^(L-1-h))).
//  - when the retained count reaches the total capacity, the lowest level at
//    or over capacity is compacted: sorted, one item left behind when its
//    size is odd, and of the remaining even run every other item (random
//    offset 0/1) moves up one level.  Total weight stays exactly n.
//  - each compaction changes the estimated rank of any value by 0 or
//    +-2^h with a fair random sign, independently: the rank error is a sum
//    of independent zero-mean terms dominated by the top levels
//    (standard deviation about 0.4 n / k measured; see docs/quantiles.md).
//  - every channel owns its random stream, derived from (seed, channel) with
//    splitmix64, so results do not depend on the thread count and channels
//    do not share random choices.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "interp_engine/cpu.hpp"
#include "interp_engine/dtype.hpp"

namespace interp_engine {
namespace quantile {

// A strided view of the observations of a batch, of any Dtype: channel c's
// values are data + c*stride_c + a*stride_a + b*stride_b (byte strides, may
// be negative) for a < size_a, b < size_b.
struct StridedBatch {
  const unsigned char* data = nullptr;
  Dtype dtype = Dtype::F32;
  std::int64_t channels = 0, size_a = 0, size_b = 0;
  std::int64_t stride_c = 0, stride_a = 0, stride_b = 0;
};

std::uint64_t splitmix64(std::uint64_t& state);
std::uint64_t channel_rng_seed(std::uint64_t seed, std::uint64_t channel);

// Levels of one channel's sketch holding items of type T (float while the
// channel has only seen float16/bfloat16/float32 data, double after any
// float64 data: exact either way, half the memory in the common case).
template <typename T>
struct KllLevels {
  // levels[h]: level 0 unsorted; level h >= 1 a concatenation of sorted runs
  // (one per compaction of level h-1) whose run starts after the first are
  // bounds[h]; runs are merged only when the level is compacted (cheaper
  // than merging every promotion into the whole level).
  std::vector<std::vector<T>> levels;
  std::vector<std::vector<std::uint32_t>> bounds;
  std::size_t retained() const {
    std::size_t r = 0;
    for (const auto& l : levels) r += l.size();
    return r;
  }
  void add_level() {
    levels.emplace_back();
    bounds.emplace_back();
  }
};

// One channel's sketch.
class KllSketch {
 public:
  static constexpr int kMinCap = 8;
  static constexpr int kMaxLevels = 61;
  // Largest k: capacities and their sums stay far inside int / size_t.
  static constexpr int kMaxK = 1 << 30;
  // Level 0 holds at least level0_min(k) = clamp(2k/3, 2048, 16384) items so
  // that it is radix-sorted in big batches and promotes long sorted runs
  // (its compactions carry weight 1 only); small k keep a small level 0.
  static int level0_min(int k) {
    return static_cast<int>(std::min<std::int64_t>(16384, std::max<std::int64_t>(2048, (2 * std::int64_t{k}) / 3)));
  }

  KllSketch() = default;
  KllSketch(int k, std::uint64_t rng_state);

  // No NaN allowed.  float input keeps float storage; double input switches
  // the channel to double storage (exact conversion of what it holds).
  void update(const float* values, std::size_t count);
  void update(const double* values, std::size_t count);
  void merge(const KllSketch& other);

  std::uint64_t n() const { return n_; }
  double min() const { return min_; }
  double max() const { return max_; }
  int k() const { return k_; }
  bool wide() const { return wide_; }
  int num_levels() const;
  std::vector<double> level(int h) const;  // sorted copy (level 0: as stored), as double
  std::uint64_t rng_state() const { return rng_; }
  std::size_t retained() const;
  std::size_t memory_bytes() const;  // allocated bytes of the items + object

  // Smallest retained value whose estimated inclusive rank (weight of items
  // <= value) is >= p*n; p <= 0 gives min, p >= 1 gives max.  out[i] for
  // ps[i]; ps need not be sorted.  Requires n() > 0.
  void quantiles(const double* ps, std::size_t m, double* out) const;
  // Estimated fraction of observations <= values[i], for i < m.
  void ranks(const double* values, std::size_t m, double* out) const;

  // Rebuild from serialized parts (validated; throws std::invalid_argument).
  // With wide == false every item must be exactly a float.
  static KllSketch from_parts(int k, std::uint64_t rng_state, std::uint64_t n, double mn, double mx,
                              std::vector<std::vector<double>> levels, bool wide);

  // Upper bound of the retained items after any update, for a given k and
  // number of levels (<= 3k + kMinCap*levels + level-0 slack).
  static std::size_t capacity_bound(int k, int levels);
  // Bound on memory_bytes() for any history (double storage).
  static std::size_t memory_bound_bytes(int k);

 private:
  template <typename T>
  void update_impl(KllLevels<T>& L, const T* values, std::size_t count);
  template <typename T>
  void compress_once(KllLevels<T>& L);
  template <typename T>
  void shrink(KllLevels<T>& L);
  template <typename T>
  int capacity(const KllLevels<T>& L, int h) const;
  template <typename T>
  std::size_t total_capacity(const KllLevels<T>& L) const;
  template <typename T>
  void merge_levels(KllLevels<T>& L, const KllLevels<T>& other);
  void widen();
  bool random_bit();

  int k_ = 0;
  std::uint64_t rng_ = 0;
  std::uint64_t n_ = 0;
  double min_ = 0, max_ = 0;
  bool wide_ = false;
  KllLevels<float> f_;
  KllLevels<double> d_;
};

// Order-independent checksum of a multiset of values: over the values'
// float64 bit patterns b, the sum (mod 2^64) and the xor of mix(b), mix a
// bijection of 64-bit words (the splitmix64 finalizer).  Two streams with
// the same multiset of values have the same checksum whatever their order,
// batching or element type (float16/bfloat16/float32 values widen exactly);
// changing one value always changes the sum (mix is a bijection), and other
// changes go unseen only when both words collide (~2^-64 for unrelated
// data).  Merging adds the sums and xors the xors: exact.
struct Checksum {
  std::uint64_t sum = 0, xr = 0;
  // With the instructions `allowed` permits (cpu::allowed(), taken once per
  // top-level operation; every choice gives the same sums), or cpu::allowed()
  // read at this call.
  void add(const float* values, std::size_t count, const cpu::Features& allowed);
  void add(const double* values, std::size_t count, const cpu::Features& allowed);
  void add(const float* values, std::size_t count);
  void add(const double* values, std::size_t count);
  void merge(const Checksum& o) {
    sum += o.sum;
    xr ^= o.xr;
  }
  bool operator==(const Checksum& o) const { return sum == o.sum && xr == o.xr; }
};

// All channels.
class ChannelSketch {
 public:
  ChannelSketch(std::int64_t channels, int k, std::uint64_t seed);

  // Adds a batch; skip_nan counts NaN in nan_count instead of throwing.
  // When !skip_nan and a NaN is present, throws std::invalid_argument
  // before changing any state.
  void update(const StridedBatch& b, bool skip_nan, int num_threads);
  void merge(const ChannelSketch& other, int num_threads);
  // out: channels x m, row-major.  Throws std::invalid_argument when a
  // channel is empty.
  void quantiles(const double* ps, std::size_t m, double* out, int num_threads) const;
  // values/out: channels x m.
  void ranks(const double* values, std::size_t m, double* out, int num_threads) const;

  std::int64_t channels() const { return static_cast<std::int64_t>(sketches_.size()); }
  int k() const { return k_; }
  std::uint64_t seed() const { return seed_; }
  const KllSketch& sketch(std::int64_t c) const { return sketches_[static_cast<std::size_t>(c)]; }
  KllSketch& sketch(std::int64_t c) { return sketches_[static_cast<std::size_t>(c)]; }
  std::vector<std::uint64_t>& nan_count() { return nan_count_; }
  const std::vector<std::uint64_t>& nan_count() const { return nan_count_; }
  // per channel, of the values added (NaN skipped are not in it); merged
  // with the sketches.  checksum_known() is false for a sketch restored
  // from a state that had none (or merged with one).
  std::vector<Checksum>& checksums() { return checksums_; }
  const std::vector<Checksum>& checksums() const { return checksums_; }
  bool checksum_known() const { return checksum_known_; }
  void set_checksum_known(bool v) { checksum_known_ = v; }

 private:
  int k_;
  std::uint64_t seed_;
  std::vector<KllSketch> sketches_;
  std::vector<std::uint64_t> nan_count_;
  std::vector<Checksum> checksums_;
  bool checksum_known_ = true;
};

// Second, exact pass over the same data.  For each channel c and request j
// it keeps the exact counts of values below lower(c,j), equal to lower,
// equal to upper and above upper, and the values strictly between them
// (at most `cap` of them per request; more throws std::runtime_error).
class ExactPass {
 public:
  ExactPass(std::int64_t channels, std::int64_t m, std::vector<double> lower, std::vector<double> upper,
            std::int64_t cap);
  void update(const StridedBatch& b, bool skip_nan, int num_threads);
  // ranks: channels x m x 2 (0-based order statistics wanted, each inside
  // the request's bracket); out: channels x m x 2.  Throws
  // std::runtime_error naming the channel when a rank falls outside.
  void select(const std::int64_t* ranks, double* out, int num_threads);
  std::uint64_t count(std::int64_t c) const { return count_[static_cast<std::size_t>(c)]; }
  std::uint64_t nan_count(std::int64_t c) const { return nan_count_[static_cast<std::size_t>(c)]; }
  // of the values seen (as ChannelSketch::checksums): compared with the
  // first pass's to tell whether both passes saw the same data
  const Checksum& checksum(std::int64_t c) const { return checksums_[static_cast<std::size_t>(c)]; }
  std::int64_t channels() const { return channels_; }
  std::int64_t requests() const { return m_; }
  std::int64_t cap() const { return cap_; }
  std::size_t memory_bytes() const;

  // Adds what `other` saw (same channels, requests, cap and brackets, not
  // this pass itself; else invalid_argument and nothing changes).
  void merge(const ExactPass& other);

  // The state, per bracket i (channels x m, row-major): its ends, counts and
  // the values strictly inside (concatenated over brackets in order, each
  // bracket's sorted); per channel the count, NaN count and checksum.
  struct State {
    std::vector<double> lower, upper;
    std::vector<std::uint64_t> below, eq_lo, eq_hi, inside_sizes;
    std::vector<double> inside;
    std::vector<std::uint64_t> count, nan_count;
    std::vector<Checksum> checksums;
  };
  State state() const;
  // Rebuild from a state; every field is checked against the others
  // (invalid_argument starting with the field's name in quotes).
  static ExactPass from_state(std::int64_t channels, std::int64_t m, std::int64_t cap, State st);

 private:
  struct Bracket {
    double lo, hi;
    std::uint64_t below = 0, eq_lo = 0, eq_hi = 0;
    std::vector<double> inside;
    bool sorted = false;
  };
  std::int64_t channels_, m_, cap_;
  std::vector<Bracket> brackets_;  // channels x m
  std::vector<std::uint64_t> count_, nan_count_;
  std::vector<Checksum> checksums_;
};

// True when the batch holds a NaN (parallel scan).
bool batch_has_nan(const StridedBatch& b, int num_threads);

}  // namespace quantile
}  // namespace interp_engine
