// All channels of the first pass (ChannelSketch: every channel its own KLL
// sketch, random stream and checksum, channels spread over threads), the
// per-channel random streams, and the NaN scan of a batch.
#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "quantile_internal.hpp"

namespace interp_engine {
namespace quantile {

using namespace detail;

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t channel_rng_seed(std::uint64_t seed, std::uint64_t channel) {
  std::uint64_t s = seed;
  const std::uint64_t a = splitmix64(s);
  std::uint64_t t = a ^ (channel * 0xD1B54A32D192ED03ULL);
  splitmix64(t);
  return splitmix64(t);
}

namespace {
// NaN test on raw bits: a magnitude (kAbs) above the bits of infinity
// (kInf), i.e. exponent all ones and mantissa non-zero (an unsigned max
// reduction over a row vectorizes).
template <Dtype D>
bool channel_has_nan(const StridedBatch& b, std::int64_t c) {
  using K = DtypeTraits<D>;
  using U = typename K::Bits;
  const unsigned char* base = b.data + c * b.stride_c;
  for (std::int64_t a = 0; a < b.size_a; ++a) {
    const unsigned char* row = base + a * b.stride_a;
    U mx = 0;
    if (b.stride_b == static_cast<std::int64_t>(sizeof(U))) {
      for (std::int64_t j = 0; j < b.size_b; ++j) {
        U u;  // memcpy: the row may be misaligned (compiles to a plain load)
        std::memcpy(&u, row + j * static_cast<std::int64_t>(sizeof(U)), sizeof(U));
        u = static_cast<U>(u & K::kAbs);
        mx = u > mx ? u : mx;
      }
    } else {
      for (std::int64_t j = 0; j < b.size_b; ++j) {
        U u;
        std::memcpy(&u, row + j * b.stride_b, sizeof(U));
        u = static_cast<U>(u & K::kAbs);
        mx = u > mx ? u : mx;
      }
    }
    if (mx > K::kInf) return true;
  }
  return false;
}
}  // namespace

namespace {
template <Dtype D>
bool span_has_nan(const unsigned char* data, std::size_t n) {
  using K = DtypeTraits<D>;
  using U = typename K::Bits;
  U mx = 0;
  for (std::size_t j = 0; j < n; ++j) {
    U u;  // memcpy: the data may be misaligned (compiles to a plain load)
    std::memcpy(&u, data + j * sizeof(U), sizeof(U));
    u = static_cast<U>(u & K::kAbs);
    mx = u > mx ? u : mx;
  }
  return mx > K::kInf;
}

// Calls fn(piece) on the pieces of channel c of b (one-channel views of at
// most about 64 Ki values: groups of whole rows, or parts of one long row),
// checking for Ctrl-C before each, until fn returns true.
template <typename Fn>
void for_each_piece(const StridedBatch& b, std::int64_t c, Fn&& fn) {
  constexpr std::int64_t kPiece = 65536;
  const std::int64_t rows = std::max<std::int64_t>(1, kPiece / std::max<std::int64_t>(1, b.size_b));
  const std::int64_t cols = std::min<std::int64_t>(b.size_b, kPiece);
  StridedBatch p = b;
  p.channels = 1;
  for (std::int64_t a = 0; a < b.size_a; a += rows)
    for (std::int64_t j = 0; j < b.size_b; j += cols) {
      check_interrupt();
      p.data = b.data + c * b.stride_c + a * b.stride_a + j * b.stride_b;
      p.size_a = std::min(rows, b.size_a - a);
      p.size_b = std::min(cols, b.size_b - j);
      if (fn(static_cast<const StridedBatch&>(p))) return;
    }
}

// When the batch's elements tile one dense block of memory (axes in any
// order, strides of any sign), its lowest address and element count: the
// NaN scan then reads memory in order instead of channel by channel (for a
// (N, C, H, W) batch a channel is N short rows far apart).
bool dense_block(const StridedBatch& b, const unsigned char*& lo, std::size_t& count) {
  const std::int64_t esz = static_cast<std::int64_t>(dtype_size(b.dtype));
  std::int64_t n[3] = {b.channels, b.size_a, b.size_b}, st[3] = {b.stride_c, b.stride_a, b.stride_b};
  const unsigned char* p = b.data;
  int m = 0;
  std::int64_t dn[3], ds[3];
  for (int i = 0; i < 3; ++i) {
    if (n[i] == 1) continue;
    std::int64_t s = st[i];
    if (s < 0) {
      p += (n[i] - 1) * s;
      s = -s;
    }
    int j = m++;
    while (j > 0 && ds[j - 1] > s) {  // insertion by stride
      dn[j] = dn[j - 1];
      ds[j] = ds[j - 1];
      --j;
    }
    dn[j] = n[i];
    ds[j] = s;
  }
  std::int64_t expect = esz, total = 1;
  for (int i = 0; i < m; ++i) {
    if (ds[i] != expect) return false;
    expect *= dn[i];
    total *= dn[i];
  }
  lo = p;
  count = static_cast<std::size_t>(total);
  return true;
}
}  // namespace

bool batch_has_nan(const StridedBatch& b, int num_threads) {
  if (b.channels == 0 || b.size_a == 0 || b.size_b == 0) return false;
  std::atomic<bool> found{false};
  const unsigned char* lo = nullptr;
  std::size_t total = 0;
  if (dense_block(b, lo, total)) {
    constexpr std::size_t kChunk = 65536;
    const std::size_t esz = dtype_size(b.dtype);
    parallel_for(
        (total + kChunk - 1) / kChunk, 4,
        [&](std::size_t i0, std::size_t i1, int) {
          for (std::size_t i = i0; i < i1 && !found.load(std::memory_order_relaxed); ++i) {
            check_interrupt();
            const unsigned char* p = lo + i * kChunk * esz;
            const std::size_t n = std::min(kChunk, total - i * kChunk);
            if (dispatch_dtype(b.dtype, [&](auto tag) { return span_has_nan<decltype(tag)::value>(p, n); }))
              found.store(true);
          }
        },
        num_threads);
    return found.load();
  }
  const std::size_t per = static_cast<std::size_t>(b.size_a * b.size_b);
  parallel_for(
      static_cast<std::size_t>(b.channels), std::max<std::size_t>(1, 262144 / std::max<std::size_t>(per, 1)),
      [&](std::size_t c0, std::size_t c1, int) {
        for (std::size_t c = c0; c < c1 && !found.load(std::memory_order_relaxed); ++c) {
          const auto ci = static_cast<std::int64_t>(c);
          bool r = false;
          for_each_piece(b, ci, [&](const StridedBatch& piece) {
            r = dispatch_dtype(b.dtype, [&](auto tag) { return channel_has_nan<decltype(tag)::value>(piece, 0); });
            return r;
          });
          if (r) found.store(true);
        }
      },
      num_threads);
  return found.load();
}

ChannelSketch::ChannelSketch(std::int64_t channels, int k, std::uint64_t seed) : k_(k), seed_(seed) {
  if (channels < 1) throw std::invalid_argument("num_channels must be >= 1");
  if (k < KllSketch::kMinCap || k > KllSketch::kMaxK)
    throw std::invalid_argument("k must be in [" + std::to_string(KllSketch::kMinCap) + ", 2^30]; got " +
                                std::to_string(k));
  // the sketch objects and their first level-0 buffers (level0_min items)
  Bytes need("ChannelQuantiles");
  need.add(channels, sizeof(KllSketch) + sizeof(std::uint64_t) + sizeof(Checksum) + 2 * sizeof(std::vector<float>));
  need.require();
  sketches_.reserve(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c)
    sketches_.emplace_back(k, channel_rng_seed(seed, static_cast<std::uint64_t>(c)));
  nan_count_.assign(static_cast<std::size_t>(channels), 0);
  checksums_.assign(static_cast<std::size_t>(channels), Checksum{});
}

void ChannelSketch::update(const StridedBatch& b, bool skip_nan, int num_threads) {
  check_batch(b, channels());
  if (b.size_a == 0 || b.size_b == 0) return;
  if (!skip_nan && batch_has_nan(b, num_threads))
    throw std::invalid_argument("x contains NaN (pass nan='skip' to ignore and count them)");
  const std::size_t per = static_cast<std::size_t>(b.size_a * b.size_b);
  const std::size_t grain = std::max<std::size_t>(1, 32768 / std::max<std::size_t>(per, 1));
  const std::size_t C = static_cast<std::size_t>(b.channels);
  // Channels cost different amounts (a channel of zeros sorts fast): hand
  // them out in small groups to whichever thread is free.  Each channel's
  // state and random stream are its own, so the result does not depend on
  // which thread takes it.
  const int t = effective_threads(C, grain, num_threads);
  const cpu::Features allowed = cpu::allowed();  // the checksum's instructions
  const std::size_t group = std::max<std::size_t>(grain, C / (static_cast<std::size_t>(t) * 8));
  const std::size_t groups = (C + group - 1) / group;
  parallel_for_dynamic(
      groups,
      [&](std::size_t g, int) {
        thread_local std::vector<double> dbuf(kBlock);
        thread_local std::vector<float> fbuf(kBlock);
        for (std::size_t c = g * group; c < std::min(C, (g + 1) * group); ++c) {
          KllSketch& s = sketches_[c];
          Checksum& cs = checksums_[c];
          gather_native(b, static_cast<std::int64_t>(c), skip_nan, nan_count_[c], fbuf.data(), dbuf.data(),
                        [&](const auto* p, std::size_t n) {
                          s.update(p, n);
                          cs.add(p, n, allowed);
                        });
        }
      },
      t);
}

namespace {
// fn(c) for every channel, channels split over threads, Ctrl-C checked per channel.
template <typename F>
void for_each_channel(std::size_t channels, int num_threads, F&& fn) {
  parallel_for(
      channels, 1,
      [&](std::size_t c0, std::size_t c1, int) {
        for (std::size_t c = c0; c < c1; ++c) {
          fn(c);
          check_interrupt();
        }
      },
      num_threads);
}

void require_observations(const std::vector<KllSketch>& sketches) {
  for (std::size_t c = 0; c < sketches.size(); ++c)
    if (sketches[c].n() == 0)
      throw std::invalid_argument("channel " + std::to_string(c) + " has no observations yet");
}
}  // namespace

void ChannelSketch::merge(const ChannelSketch& other, int num_threads) {
  if (&other == this)
    throw std::invalid_argument("cannot merge a sketch with itself (that would count the same data twice)");
  if (other.channels() != channels())
    throw std::invalid_argument("cannot merge sketches of " + std::to_string(other.channels()) + " and " +
                                std::to_string(channels()) + " channels");
  if (other.k_ != k_)
    throw std::invalid_argument("cannot merge sketches with k=" + std::to_string(other.k_) + " and k=" +
                                std::to_string(k_));
  // counts are checked before anything changes (n and nan counts: uint64)
  constexpr std::uint64_t kMaxCount = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::size_t c = 0; c < sketches_.size(); ++c) {
    const std::uint64_t a = sketches_[c].n(), b = other.sketches_[c].n();
    const std::uint64_t na = nan_count_[c], nb = other.nan_count_[c];
    if (a > kMaxCount - std::min(b, kMaxCount) || na > kMaxCount - std::min(nb, kMaxCount))
      throw std::invalid_argument("cannot merge: the count of channel " + std::to_string(c) +
                                  " would exceed 2^63 - 1; neither sketch was changed");
  }
  for_each_channel(sketches_.size(), num_threads, [&](std::size_t c) {
    sketches_[c].merge(other.sketches_[c]);
    nan_count_[c] += other.nan_count_[c];
    checksums_[c].merge(other.checksums_[c]);
  });
  checksum_known_ = checksum_known_ && other.checksum_known_;
}

void ChannelSketch::quantiles(const double* ps, std::size_t m, double* out, int num_threads) const {
  require_observations(sketches_);
  for_each_channel(sketches_.size(), num_threads,
                   [&](std::size_t c) { sketches_[c].quantiles(ps, m, out + c * m); });
}

void ChannelSketch::ranks(const double* values, std::size_t m, double* out, int num_threads) const {
  require_observations(sketches_);
  for_each_channel(sketches_.size(), num_threads,
                   [&](std::size_t c) { sketches_[c].ranks(values + c * m, m, out + c * m); });
}

}  // namespace quantile
}  // namespace interp_engine
