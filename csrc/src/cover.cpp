// Greedy cover kernels (see cover.hpp for the semantics).
//
// Implementation notes.
//  * greedy_cover over CSR with unit/integer weights: run_transpose (below);
//    packed rows with unit/integer weights and density < 1/16 are listed as
//    CSR first and take the same path.
//  * greedy_cover otherwise is lazy greedy (CELF): a max-heap of (gain bound, index)
//    ordered by gain descending then index ascending.  The top entry is taken
//    when its bound was computed at the current step (it is then exact and
//    no other candidate can beat it or tie it with a lower index); otherwise
//    its gain is recomputed and it goes back.  Marginal gains of coverage only
//    decrease, so stale values are upper bounds.
//  * Recomputing a CSR row's gain also compacts it: the row's still-uncovered
//    elements are written to a private work buffer (at the row's own offset),
//    so each later evaluation only reads what is left.  Over a whole run a
//    row is read in full once and then only shrinks.
//  * Covered elements are one packed bitset (bitset.hpp); elements of weight
//    zero start "covered" (they can never add gain).
//  * ratio_greedy_cover is not lazy (the ratio of two decreasing quantities
//    has no monotone bound): after every choice the exact new cost and new
//    gain of every candidate that still adds gain are brought up to date (in
//    parallel; packed rows read only the words the choice changed, CSR rows
//    are re-read compacted), and a scan finds the minimum ratio.
//  * csr_from_coo / csr_from_colmajor: counting sorts giving canonical CSR.
#include "interp_engine/cover.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "interp_engine/checked.hpp"
#include "interp_engine/cpu.hpp"
#include "interp_engine/parallel.hpp"

namespace interp_engine {
namespace cover {

SetFamily SetFamily::csr(std::size_t n_candidates, std::size_t n_elements, const std::int64_t* indptr,
                         const std::int32_t* indices) {
  if (n_elements > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("sets: at most 2**31 - 1 elements are supported; got " +
                                std::to_string(n_elements));
  if (indptr == nullptr && n_candidates > 0) throw std::invalid_argument("sets: null indptr");
  if (n_candidates > 0) {
    if (indptr[0] != 0)
      throw std::invalid_argument("sets: CSR indptr must start at 0; got " + std::to_string(indptr[0]));
    for (std::size_t i = 0; i < n_candidates; ++i)
      if (indptr[i + 1] < indptr[i])
        throw std::invalid_argument("sets: CSR indptr must be non-decreasing (row " + std::to_string(i) +
                                    ")");
  }
  SetFamily f;
  f.kind = Kind::Csr;
  f.n_candidates = n_candidates;
  f.n_elements = n_elements;
  f.indptr = indptr;
  f.indices = indices;
  return f;
}

SetFamily SetFamily::packed(const bits::BitMatrixView& view) {
  if (view.words_per_row < bits::words_for(view.n_bits))
    throw std::invalid_argument("sets: packed rows need at least ceil(n_bits / 64) words");
  SetFamily f;
  f.kind = Kind::Bits;
  f.n_candidates = view.rows;
  f.n_elements = view.n_bits;
  f.bits = view;
  return f;
}

namespace {

using bits::word_t;

// Uninitialized array for large scratch buffers: 2 MiB aligned and, on
// Linux, advised to use transparent huge pages (first-touch page faults on a
// 40-80 MB transpose otherwise cost as much as filling it).
template <class T>
class BigArray {
 public:
  explicit BigArray(std::size_t n) {
    const std::size_t bytes = std::max<std::size_t>(1, n * sizeof(T));
    constexpr std::size_t kAlign = std::size_t{1} << 21;
    if (bytes >= kAlign) {
      void* p = nullptr;
      if (posix_memalign(&p, kAlign, (bytes + kAlign - 1) / kAlign * kAlign) == 0) {
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(INTERP_ENGINE_NO_HUGEPAGE)
        madvise(p, (bytes + kAlign - 1) / kAlign * kAlign, MADV_HUGEPAGE);
#endif
        p_ = static_cast<T*>(p);
      }
    } else {
      p_ = static_cast<T*>(std::malloc(bytes));
    }
    if (p_ == nullptr) throw std::bad_alloc();
  }
  ~BigArray() { std::free(p_); }
  BigArray(const BigArray&) = delete;
  BigArray& operator=(const BigArray&) = delete;
  T* get() { return p_; }
  T& operator[](std::size_t i) { return p_[i]; }

 private:
  T* p_ = nullptr;
};

struct UnitW {
  using gain_t = std::int64_t;
  static constexpr bool unit = true;
  gain_t operator()(std::size_t) const { return 1; }
};
struct IntW {
  using gain_t = std::int64_t;
  static constexpr bool unit = false;
  const std::int64_t* w;
  gain_t operator()(std::size_t e) const { return w[e]; }
};
struct RealW {
  using gain_t = double;
  static constexpr bool unit = false;
  const double* w;
  gain_t operator()(std::size_t e) const { return w[e]; }
};

template <class W>
void mark_zero_weights(const W& w, std::size_t n_elements, std::vector<word_t>& covered) {
  if constexpr (!W::unit) {
    for (std::size_t e = 0; e < n_elements; ++e)
      if (w(e) == 0) bits::set(covered.data(), e);
  }
}

[[noreturn]] void bad_index(std::int64_t e, std::size_t c, std::size_t n_elements) {
  throw std::invalid_argument("sets: element index " + std::to_string(e) + " of candidate " +
                              std::to_string(c) + " is outside [0, " + std::to_string(n_elements) +
                              ")");
}

// Coverage state over a CSR family: covered bitset + compacted rows.
template <class W>
class CsrState {
 public:
  using gain_t = typename W::gain_t;
  CsrState(const SetFamily& f, W w)
      : f_(f),
        w_(w),
        covered_(bits::words_for(f.n_elements), 0),
        work_(new std::int32_t[static_cast<std::size_t>(f.n_candidates ? f.indptr[f.n_candidates] : 0)]),
        len_(f.n_candidates, -1) {
    mark_zero_weights(w_, f.n_elements, covered_);
  }
  std::size_t size() const { return f_.n_candidates; }
  // Work estimate for one evaluation pass (for thread decisions).
  double avg_cost() const {
    return f_.n_candidates ? static_cast<double>(f_.indptr[f_.n_candidates]) / f_.n_candidates : 0;
  }
  bool initial_is_cheap() const { return W::unit; }
  gain_t initial(std::size_t c) {
    if constexpr (W::unit) return f_.indptr[c + 1] - f_.indptr[c];
    return eval(c);
  }
  // Exact marginal gain of c; compacts its row.  Thread-safe across distinct c
  // while no take() runs.
  gain_t eval(std::size_t c) {
    gain_t g = 0;
    visit(c, [&](std::int32_t e) { g += w_(static_cast<std::size_t>(e)); });
    return g;
  }
  void take(std::size_t c) {
    visit(c, [&](std::int32_t e) { bits::set(covered_.data(), static_cast<std::size_t>(e)); });
    len_[c] = 0;
  }
  void take_tracked(std::size_t c) { take(c); }
  // Exact gain of c after the last take (its compacted row is re-read).
  gain_t update(std::size_t c, gain_t) { return eval(c); }
  double update_cost() const { return avg_cost(); }

 private:
  // Calls fn(e) for each uncovered element of row c and compacts the row.
  template <class F>
  void visit(std::size_t c, F&& fn) {
    const std::int64_t off = f_.indptr[c];
    std::int32_t* dst = work_.get() + off;
    const word_t* cov = covered_.data();
    std::int64_t k = 0;
    if (len_[c] < 0) {
      const std::int32_t* src = f_.indices + off;
      const std::int64_t n = f_.indptr[c + 1] - off;
      const std::uint32_t ne = static_cast<std::uint32_t>(f_.n_elements);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t e = src[i];
        if (static_cast<std::uint32_t>(e) >= ne) bad_index(e, c, f_.n_elements);
        if (!bits::test(cov, static_cast<std::size_t>(e))) {
          dst[k++] = e;
          fn(e);
        }
      }
    } else {
      const std::int64_t n = len_[c];
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t e = dst[i];
        if (!bits::test(cov, static_cast<std::size_t>(e))) {
          dst[k++] = e;
          fn(e);
        }
      }
    }
    len_[c] = k;
  }

  const SetFamily& f_;
  W w_;
  std::vector<word_t> covered_;
  std::unique_ptr<std::int32_t[]> work_;
  std::vector<std::int64_t> len_;
};

// Coverage state over packed rows.
template <class W>
class BitsState {
 public:
  using gain_t = typename W::gain_t;
  BitsState(const SetFamily& f, W w)
      : f_(f), w_(w), pc_(bits::popcounts(cpu::allowed())), nw_(bits::words_for(f.n_elements)), covered_(nw_, 0) {
    mark_zero_weights(w_, f.n_elements, covered_);
  }
  std::size_t size() const { return f_.n_candidates; }
  double avg_cost() const { return static_cast<double>(nw_); }
  bool initial_is_cheap() const { return false; }
  gain_t initial(std::size_t c) { return eval(c); }
  gain_t eval(std::size_t c) {
    const word_t* row = f_.bits.row(c);
    if constexpr (W::unit) {
      return pc_.count_andnot(row, covered_.data(), nw_);
    } else {
      gain_t g = 0;
      bits::for_each_bit_andnot(row, covered_.data(), nw_, [&](std::size_t e) { g += w_(e); });
      return g;
    }
  }
  void take(std::size_t c) { bits::or_into(covered_.data(), covered_.data(), f_.bits.row(c), nw_); }
  // take(c), remembering the newly covered bits (the non-zero words of
  // row & ~covered) for update().
  void take_tracked(std::size_t c) {
    const word_t* row = f_.bits.row(c);
    delta_idx_.clear();
    delta_.clear();
    for (std::size_t i = 0; i < nw_; ++i) {
      const word_t d = row[i] & ~covered_[i];
      if (d) {
        delta_idx_.push_back(static_cast<std::uint32_t>(i));
        delta_.push_back(d);
        covered_[i] |= d;
      }
    }
  }
  // Exact count of c after the last take_tracked, given `old`, its exact
  // count before it: only the words that changed are read (unit weights).
  gain_t update(std::size_t c, gain_t old) {
    static_assert(W::unit, "update() counts elements");
    if (delta_idx_.size() * 2 > nw_) return eval(c);
    const word_t* row = f_.bits.row(c);
    return old - pc_.count_and_indexed(row, delta_idx_.data(), delta_.data(), delta_idx_.size());
  }
  double update_cost() const {
    return static_cast<double>(std::min(nw_, delta_idx_.size()));
  }

 private:
  const SetFamily& f_;
  W w_;
  const bits::Popcounts& pc_;  // the variant INTERP_ENGINE_ISA allows when the state was made
  std::size_t nw_;
  std::vector<word_t> covered_;
  std::vector<std::uint32_t> delta_idx_;
  std::vector<word_t> delta_;
};

// Threads for a pass over `n` items of about `cost` word/element reads each.
int pass_threads(std::size_t n, double cost, int num_threads) {
  const double work = static_cast<double>(n) * std::max(1.0, cost);
  if (work < 200000.0) return 1;
  return effective_threads(n, 16, num_threads);
}

template <class State>
GreedyResult run_celf(State& st, std::int64_t budget, double target, int num_threads) {
  using G = typename State::gain_t;
  GreedyResult res;
  const std::size_t n = st.size();
  if (budget == 0 || n == 0 || !(target > 0)) return res;

  std::vector<G> g0(n);
  if (st.initial_is_cheap()) {
    for (std::size_t c = 0; c < n; ++c) g0[c] = st.initial(c);
  } else {
    parallel_for(
        n, 16,
        [&](std::size_t b, std::size_t e, int) {
          for (std::size_t c = b; c < e; ++c) {
            if (((c - b) & 255) == 0) check_interrupt();
            g0[c] = st.initial(c);
          }
        },
        pass_threads(n, st.avg_cost(), num_threads));
  }

  struct Entry {
    G gain;
    std::int64_t idx;
  };
  // "a < b" for a max-heap whose top has the largest gain, then lowest index
  auto less = [](const Entry& a, const Entry& b) {
    return a.gain < b.gain || (a.gain == b.gain && a.idx > b.idx);
  };
  std::vector<Entry> heap;
  heap.reserve(n);
  for (std::size_t c = 0; c < n; ++c)
    if (g0[c] > 0) heap.push_back(Entry{g0[c], static_cast<std::int64_t>(c)});
  std::vector<G>().swap(g0);
  std::make_heap(heap.begin(), heap.end(), less);

  std::vector<std::int64_t> stamp(n, 0);  // step at which the heap value was computed
  std::int64_t step = 0;
  G covered = 0;
  std::size_t iter = 0;
  while (!heap.empty()) {
    if (budget >= 0 && step >= budget) break;
    if (static_cast<double>(covered) >= target) break;
    if ((++iter & 15) == 0) check_interrupt();
    std::pop_heap(heap.begin(), heap.end(), less);
    Entry top = heap.back();
    heap.pop_back();
    const std::size_t c = static_cast<std::size_t>(top.idx);
    if (stamp[c] == step) {
      st.take(c);
      covered += top.gain;
      res.indices.push_back(top.idx);
      res.gains.push_back(static_cast<double>(top.gain));
      ++step;
    } else {
      const G v = st.eval(c);
      stamp[c] = step;
      if (v > 0) {
        heap.push_back(Entry{v, top.idx});
        std::push_heap(heap.begin(), heap.end(), less);
      }
    }
  }
  res.covered = static_cast<double>(covered);
  return res;
}

// Exact incremental greedy over a CSR family with integer gains: the
// element -> candidates transpose (CSC) is built once (parallel counting
// sort, each column's candidates ascending); when a candidate is taken, each
// newly covered element decrements the gain of every candidate containing it
// (total work: nnz over the whole run); the leader is found by a scan.
// Gains stay exact integers, so the choice is exactly the naive greedy's.
template <class G, class Id, class Off, class W>
GreedyResult run_transpose(const SetFamily& f, W w, std::int64_t budget, double target,
                           int num_threads) {
  GreedyResult res;
  const std::size_t n = f.n_candidates, m = f.n_elements;
  if (budget == 0 || n == 0 || !(target > 0)) return res;
  const std::int64_t* indptr = f.indptr;
  const std::int32_t* indices = f.indices;
  const std::size_t nnz = static_cast<std::size_t>(indptr[n]);

  // chunks of rows with about equal nnz, one per thread
  const int t = nnz < 100000 ? 1 : effective_threads(nnz, 100000, num_threads);
  std::vector<std::size_t> bounds(static_cast<std::size_t>(t) + 1, n);
  bounds[0] = 0;
  for (int k = 1; k < t; ++k) {
    const std::int64_t goal = static_cast<std::int64_t>(nnz / static_cast<std::size_t>(t)) * k;
    bounds[static_cast<std::size_t>(k)] =
        static_cast<std::size_t>(std::lower_bound(indptr, indptr + n + 1, goal) - indptr);
    bounds[static_cast<std::size_t>(k)] = std::min(n, std::max(bounds[k - 1], bounds[k]));
  }
  std::vector<std::vector<Off>> cnt(static_cast<std::size_t>(t));
  // buckets of 2**kShift columns for the two-pass scatter of phase 3
  constexpr int kShift = 9;
  const std::size_t n_buckets = (m >> kShift) + 1;
  std::vector<std::vector<std::int64_t>> bcnt(static_cast<std::size_t>(t));
  std::vector<G> gain(n, 0);
  const std::uint32_t ne = static_cast<std::uint32_t>(m);
  // phase 1: per-chunk column counts, initial gains, index checks (indices of
  // a row must be strictly increasing: sorted, no duplicates)
  parallel_for(
      static_cast<std::size_t>(t), 1,
      [&](std::size_t b, std::size_t e, int) {
        for (std::size_t k = b; k < e; ++k) {
          std::vector<Off>& ck = cnt[k];
          ck.assign(m + 1, 0);
          for (std::size_t c = bounds[k]; c < bounds[k + 1]; ++c) {
            if (((c - bounds[k]) & 1023) == 0) check_interrupt();
            G g = 0;
            std::int64_t prev = -1;
            for (std::int64_t i = indptr[c]; i < indptr[c + 1]; ++i) {
              const std::int32_t el = indices[i];
              if (static_cast<std::uint32_t>(el) >= ne) bad_index(el, c, m);
              if (el <= prev)
                throw std::invalid_argument("sets: CSR indices of candidate " + std::to_string(c) +
                                            " must be strictly increasing (sorted, no duplicates)");
              prev = el;
              ++ck[static_cast<std::size_t>(el)];
              g += static_cast<G>(w(static_cast<std::size_t>(el)));
            }
            gain[c] = g;
          }
          std::vector<std::int64_t>& bk = bcnt[k];
          bk.assign(n_buckets + 1, 0);
          for (std::size_t el = 0; el < m; ++el) {
            if ((el & 0xFFFFF) == 0) check_interrupt();
            bk[(el >> kShift) + 1] += ck[el];
          }
        }
      },
      t);
  // phase 2: column pointers and per-chunk write offsets
  std::vector<std::int64_t> colptr(m + 1, 0);
  {
    std::int64_t run = 0;
    for (std::size_t el = 0; el < m; ++el) {
      if ((el & 0xFFFF) == 0) check_interrupt();
      colptr[el] = run;
      for (int k = 0; k < t; ++k) {
        const std::int64_t c = static_cast<std::int64_t>(cnt[static_cast<std::size_t>(k)][el]);
        cnt[static_cast<std::size_t>(k)][el] = static_cast<Off>(run);
        run += c;
      }
    }
    colptr[m] = run;
  }
  // phase 3: scatter, in two passes per chunk so that writes stay local:
  // (a) stage (candidate, low column bits) pairs by bucket of 2**kShift
  // columns, (b) per bucket, place them in their columns (the bucket's column
  // cursors and destination range fit in cache).  Rows go in ascending order,
  // so every column lists its candidates ascending.
  BigArray<Id> rows(nnz);
  struct Pair { Id row; std::uint16_t low; };
  parallel_for(
      static_cast<std::size_t>(t), 1,
      [&](std::size_t b, std::size_t e, int) {
        for (std::size_t k = b; k < e; ++k) {
          Off* off = cnt[k].data();
          const std::int64_t base = indptr[bounds[k]];
          const std::size_t cn = static_cast<std::size_t>(indptr[bounds[k + 1]] - base);
          std::vector<std::int64_t>& bpos = bcnt[k];  // bucket counts -> start offsets
          for (std::size_t q = 0; q < n_buckets; ++q) bpos[q + 1] += bpos[q];
          std::vector<std::int64_t> bstart(bpos);
          BigArray<Pair> stage(cn);
          for (std::size_t c = bounds[k]; c < bounds[k + 1]; ++c) {
            if (((c - bounds[k]) & 1023) == 0) check_interrupt();
            for (std::int64_t i = indptr[c]; i < indptr[c + 1]; ++i) {
              const std::uint32_t el = static_cast<std::uint32_t>(indices[i]);
              stage[static_cast<std::size_t>(bpos[el >> kShift]++)] = Pair{static_cast<Id>(c), static_cast<std::uint16_t>(el & ((1u << kShift) - 1))};
            }
          }
          for (std::size_t q = 0; q < n_buckets; ++q) {
            if ((q & 63) == 0) check_interrupt();
            const std::size_t hi = q << kShift;
            for (std::int64_t p = bstart[q]; p < bstart[q + 1]; ++p) {
              const Pair pr = stage[static_cast<std::size_t>(p)];
              rows[static_cast<std::size_t>(off[hi | pr.low]++)] = pr.row;
            }
          }
        }
      },
      t);
  std::vector<std::vector<Off>>().swap(cnt);

  std::vector<std::uint8_t> covered(m, 0);
  if constexpr (!W::unit) {
    for (std::size_t el = 0; el < m; ++el) {
      if ((el & 0xFFFFF) == 0) check_interrupt();
      if (w(el) == 0) covered[el] = 1;
    }
  }
  std::int64_t total = 0;
  std::int64_t step = 0;
  std::vector<std::uint32_t> newly;
  newly.reserve(m);
  for (;;) {
    if (budget >= 0 && step >= budget) break;
    if (static_cast<double>(total) >= target) break;
    check_interrupt();
    // leader: largest gain, lowest index
    G best = gain[0];
    std::size_t bi = 0;
    for (std::size_t c = 1; c < n; ++c)
      if (gain[c] > best) {
        best = gain[c];
        bi = c;
      }
    if (!(best > 0)) break;
    // newly covered elements of the leader, then the gains they take away
    newly.clear();
    for (std::int64_t i = indptr[bi]; i < indptr[bi + 1]; ++i) {
      const auto el = static_cast<std::uint32_t>(indices[i]);
      if (!covered[el]) {
        covered[el] = 1;
        newly.push_back(el);
      }
    }
    const std::size_t nn = newly.size();
    for (std::size_t k = 0; k < nn; ++k) {
#if defined(__GNUC__) || defined(__clang__)
      // columns are scattered over the transpose: fetch ahead of use
      if (k + 8 < nn) __builtin_prefetch(colptr.data() + newly[k + 8]);
      if (k + 3 < nn) {
        const std::size_t ex = newly[k + 3];
        const char* p = reinterpret_cast<const char*>(rows.get() + colptr[ex]);
        const char* pe = reinterpret_cast<const char*>(rows.get() + colptr[ex + 1]);
        for (int l = 0; l < 8 && p < pe; ++l, p += 64) __builtin_prefetch(p);
      }
#endif
      const std::size_t el = newly[k];
      const G we = static_cast<G>(w(el));
      const Id* col = rows.get() + colptr[el];
      const std::int64_t len = colptr[el + 1] - colptr[el];
      for (std::int64_t j = 0; j < len; ++j) gain[col[j]] -= we;
    }
    total += static_cast<std::int64_t>(best);
    res.indices.push_back(static_cast<std::int64_t>(bi));
    res.gains.push_back(static_cast<double>(best));
    ++step;
  }
  res.covered = static_cast<double>(total);
  return res;
}

// Column cursors of 32 bits when the transpose has fewer than 2**32 entries.
template <class G, class Id, class W>
GreedyResult run_transpose_any(const SetFamily& f, W w, std::int64_t budget, double target, int nt) {
  const std::int64_t nnz = f.n_candidates ? f.indptr[f.n_candidates] : 0;
  if (nnz < (std::int64_t{1} << 32)) return run_transpose<G, Id, std::uint32_t, W>(f, w, budget, target, nt);
  return run_transpose<G, Id, std::uint64_t, W>(f, w, budget, target, nt);
}

template <class W>
GreedyResult greedy_with(const SetFamily& sets, W w, std::int64_t budget, double target, int nt) {
  if (sets.kind == SetFamily::Kind::Csr) {
    if constexpr (!std::is_same_v<W, RealW>) {
      // narrowest exact gain type: a row's gain is at most max row length x max weight
      std::int64_t max_len = 0, max_w = 1;
      for (std::size_t c = 0; c < sets.n_candidates; ++c) {
        if ((c & 0xFFFFF) == 0) check_interrupt();
        max_len = std::max(max_len, sets.indptr[c + 1] - sets.indptr[c]);
      }
      if constexpr (!W::unit) {
        max_w = 0;
        for (std::size_t e = 0; e < sets.n_elements; ++e) {
          if ((e & 0xFFFFF) == 0) check_interrupt();
          max_w = std::max(max_w, w(e));
        }
      }
      const bool small_gain = static_cast<double>(max_len) * static_cast<double>(max_w) < 65535.0;
      const bool small_ids = sets.n_candidates <= 65536;
      if (small_gain && small_ids) return run_transpose_any<std::uint16_t, std::uint16_t>(sets, w, budget, target, nt);
      if (small_gain) return run_transpose_any<std::uint16_t, std::uint32_t>(sets, w, budget, target, nt);
      if (small_ids) return run_transpose_any<std::int64_t, std::uint16_t>(sets, w, budget, target, nt);
      return run_transpose_any<std::int64_t, std::uint32_t>(sets, w, budget, target, nt);
    } else {
      CsrState<W> st(sets, w);
      return run_celf(st, budget, target, nt);
    }
  }
  if constexpr (!std::is_same_v<W, RealW>) {
    // Sparse packed rows (density < 1/16): lazy greedy would re-read whole
    // rows of words; list the set bits as CSR and take the exact transpose
    // path instead (same choices: both are exact).
    const std::size_t n = sets.n_candidates, wpr = bits::words_for(sets.n_elements);
    std::vector<std::int64_t> indptr(n + 1, 0);
    const auto count = bits::popcounts(cpu::allowed()).count;
    for (std::size_t c = 0; c < n; ++c) {
      if ((c & 255) == 0) check_interrupt();
      indptr[c + 1] = indptr[c] + count(sets.bits.row(c), wpr);
    }
    if (n > 0 && static_cast<double>(indptr[n]) * 16.0 < static_cast<double>(n) * static_cast<double>(sets.n_elements) &&
        sets.n_elements <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      std::vector<std::int32_t> indices(static_cast<std::size_t>(indptr[n]));
      parallel_for(
          n, 64,
          [&](std::size_t b, std::size_t e, int) {
            for (std::size_t c = b; c < e; ++c) {
              if (((c - b) & 63) == 0) check_interrupt();
              std::int32_t* out = indices.data() + indptr[c];
              bits::for_each_bit(sets.bits.row(c), wpr,
                                 [&](std::size_t j) { *out++ = static_cast<std::int32_t>(j); });
            }
          },
          pass_threads(n, static_cast<double>(wpr), nt));
      const SetFamily csr = SetFamily::csr(n, sets.n_elements, indptr.data(), indices.data());
      return greedy_with(csr, w, budget, target, nt);
    }
  }
  BitsState<W> st(sets, w);
  return run_celf(st, budget, target, nt);
}

template <class CS, class GS>
RatioResult run_ratio(CS& cs, GS& gs, double target, double eps_cost, double eps_gain, bool tighten,
                      int num_threads) {
  RatioResult res;
  const std::size_t n = cs.size();
  std::vector<char> chosen(n, 0);
  std::vector<std::int64_t> alive;  // ascending candidate indices that may still add gain
  alive.reserve(n);
  for (std::size_t c = 0; c < n; ++c) alive.push_back(static_cast<std::int64_t>(c));
  std::vector<std::int64_t> new_cost(n, 0), new_gain(n, 0);
  const double per_item = cs.avg_cost() + gs.avg_cost();

  // exact new gain and new cost of every candidate; after each choice they
  // are brought up to date (bitsets: only the words the choice changed)
  parallel_for(
      n, 16,
      [&](std::size_t b, std::size_t e, int) {
        for (std::size_t c = b; c < e; ++c) {
          if (((c - b) & 255) == 0) check_interrupt();
          new_gain[c] = gs.eval(c);
          new_cost[c] = cs.eval(c);
        }
      },
      pass_threads(n, per_item, num_threads));
  while (!(static_cast<double>(res.covered_gain) >= target)) {
    check_interrupt();
    // candidates that add no gain never will again: drop them
    std::size_t k = 0;
    std::int64_t best = -1;
    double best_ratio = 0;
    for (std::size_t i = 0; i < alive.size(); ++i) {
      const std::int64_t c = alive[i];
      if (new_gain[c] <= 0) continue;
      alive[k++] = c;
      const double r = (static_cast<double>(new_cost[c]) + eps_cost) /
                       (static_cast<double>(new_gain[c]) + eps_gain);
      if (best < 0 || r < best_ratio) {  // strict: ties keep the lowest index
        best = c;
        best_ratio = r;
      }
    }
    alive.resize(k);
    if (best < 0) break;  // nothing adds gain: target unreachable
    const std::size_t bc = static_cast<std::size_t>(best);
    cs.take_tracked(bc);
    gs.take_tracked(bc);
    res.covered_cost += new_cost[bc];
    res.covered_gain += new_gain[bc];
    chosen[bc] = 1;
    res.indices.push_back(best);
    alive.erase(std::find(alive.begin(), alive.end(), best));
    if (static_cast<double>(res.covered_gain) >= target) break;
    parallel_for(
        alive.size(), 16,
        [&](std::size_t b, std::size_t e, int) {
          for (std::size_t i = b; i < e; ++i) {
            if (((i - b) & 255) == 0) check_interrupt();
            const std::size_t c = static_cast<std::size_t>(alive[i]);
            new_gain[c] = gs.update(c, new_gain[c]);
            new_cost[c] = cs.update(c, new_cost[c]);
          }
        },
        pass_threads(alive.size(), cs.update_cost() + gs.update_cost(), num_threads));
  }
  res.reached = static_cast<double>(res.covered_gain) >= target;
  res.n_greedy = static_cast<std::int64_t>(res.indices.size());

  if (tighten) {
    // A candidate whose cost set is covered adds no cost, so adding it leaves
    // the covered cost (hence every other candidate's test) unchanged.
    std::vector<char> free_cand(n, 0);
    parallel_for(
        n, 16,
        [&](std::size_t b, std::size_t e, int) {
          for (std::size_t c = b; c < e; ++c) {
            if (((c - b) & 255) == 0) check_interrupt();
            if (!chosen[c]) free_cand[c] = cs.eval(c) == 0;
          }
        },
        pass_threads(n, cs.avg_cost(), num_threads));
    for (std::size_t c = 0; c < n; ++c) {
      if ((c & 255) == 0) check_interrupt();
      if (!free_cand[c]) continue;
      res.covered_gain += gs.eval(c);
      gs.take(c);
      res.indices.push_back(static_cast<std::int64_t>(c));
    }
  }
  return res;
}

template <class CS>
RatioResult ratio_with_cost(CS& cs, const SetFamily& gain, double target, double ec, double eg, bool t,
                            int nt) {
  if (gain.kind == SetFamily::Kind::Csr) {
    CsrState<UnitW> gs(gain, UnitW{});
    return run_ratio(cs, gs, target, ec, eg, t, nt);
  }
  BitsState<UnitW> gs(gain, UnitW{});
  return run_ratio(cs, gs, target, ec, eg, t, nt);
}

// The work memory of a cover over `f` (beyond the family itself, which the
// caller holds): per candidate a gain, a heap entry, a stamp and a copy of
// its CSR row length; per element the column counts of every thread, the
// column pointers, a covered flag and bit, the newly covered list; per
// stored element the transpose and its staging.  Sizes follow from the
// shape (n_elements, n_candidates), which may be far larger than the data
// (a sparse matrix of shape (1, 2**31 - 1) holds one entry): refused with
// TooLarge (MemoryError) when it cannot fit, before anything is allocated.
void require_work_memory(const SetFamily& f, int num_threads, const char* what) {
  const auto n = static_cast<std::int64_t>(f.n_candidates), m = static_cast<std::int64_t>(f.n_elements);
  const std::int64_t nnz = (f.kind == SetFamily::Kind::Csr && n > 0) ? f.indptr[n] : 0;
  const std::int64_t t = std::max(1, num_threads > 0 ? num_threads : get_num_threads());
  Bytes need(what);
  need.add(n + 1, 48).add(m + 1, 8).add(m + 1, 8 * t + 8 + 1 + 4).add(nnz, 24);
  if (f.kind == SetFamily::Kind::Bits) need.add(n + 1, 8).add(static_cast<std::int64_t>(bits::words_for(f.n_elements)), 8);
  need.require();
}

}  // namespace

GreedyResult greedy_cover(const SetFamily& sets, const Weights& weights, std::int64_t budget,
                          double target, int num_threads) {
  if (target != target) throw std::invalid_argument("target must not be NaN");
  require_work_memory(sets, num_threads, "greedy_cover");
  if (weights.integer != nullptr) return greedy_with(sets, IntW{weights.integer}, budget, target, num_threads);
  if (weights.real != nullptr) return greedy_with(sets, RealW{weights.real}, budget, target, num_threads);
  return greedy_with(sets, UnitW{}, budget, target, num_threads);
}

RatioResult ratio_greedy_cover(const SetFamily& cost, const SetFamily& gain, double target,
                               double eps_cost, double eps_gain, bool tighten, int num_threads) {
  if (cost.n_candidates != gain.n_candidates)
    throw std::invalid_argument("cost_sets and gain_sets must have the same number of candidates; got " +
                                std::to_string(cost.n_candidates) + " and " +
                                std::to_string(gain.n_candidates));
  if (target != target) throw std::invalid_argument("target must not be NaN");
  require_work_memory(cost, 1, "ratio_greedy_cover (cost_sets)");
  require_work_memory(gain, 1, "ratio_greedy_cover (gain_sets)");
  if (cost.kind == SetFamily::Kind::Csr) {
    CsrState<UnitW> cs(cost, UnitW{});
    return ratio_with_cost(cs, gain, target, eps_cost, eps_gain, tighten, num_threads);
  }
  BitsState<UnitW> cs(cost, UnitW{});
  return ratio_with_cost(cs, gain, target, eps_cost, eps_gain, tighten, num_threads);
}

std::vector<RatioResult> ratio_greedy_cover_many(const std::vector<RatioProblem>& problems,
                                                 double eps_cost, double eps_gain, bool tighten,
                                                 int num_threads) {
  std::vector<RatioResult> results(problems.size());
  parallel_for_dynamic(
      problems.size(),
      [&](std::size_t i, int) {
        const RatioProblem& p = problems[i];
        results[i] = ratio_greedy_cover(p.cost, p.gain, p.target, eps_cost, eps_gain, tighten, 1);
      },
      num_threads);
  return results;
}

CsrArrays csr_from_colmajor(std::size_t n_rows, std::size_t n_cols, const std::int64_t* colptr,
                            const std::int32_t* rowidx) {
  if (n_rows > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()) ||
      n_cols > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("sets: at most 2**31 - 1 rows and columns are supported");
  const std::int64_t nnz = n_cols ? colptr[n_cols] : 0;
  if (n_cols && colptr[0] != 0) throw std::invalid_argument("sets: column pointers must start at 0");
  Bytes need("sparse matrix to CSR");
  need.add(static_cast<std::int64_t>(n_rows) + 1, 3 * sizeof(std::int64_t)).add(nnz, sizeof(std::int32_t));
  need.require();
  for (std::size_t j = 0; j < n_cols; ++j)
    if (colptr[j + 1] < colptr[j]) throw std::invalid_argument("sets: column pointers must be non-decreasing");
  CsrArrays out;
  // row counts, then scatter column indices in column order: each row's
  // columns come out ascending, duplicates adjacent
  std::vector<std::int64_t> cur(n_rows + 1, 0);
  const auto nr = static_cast<std::uint32_t>(n_rows);
  for (std::int64_t p = 0; p < nnz; ++p) {
    if ((p & 0xFFFFF) == 0) check_interrupt();
    const std::int32_t r = rowidx[p];
    if (static_cast<std::uint32_t>(r) >= nr)
      throw std::invalid_argument("sets: row index " + std::to_string(r) + " is outside [0, " +
                                  std::to_string(n_rows) + ")");
    ++cur[static_cast<std::size_t>(r) + 1];
  }
  for (std::size_t i = 0; i < n_rows; ++i) cur[i + 1] += cur[i];
  std::vector<std::int64_t> start(cur.begin(), cur.end());
  std::vector<std::int32_t> idx(static_cast<std::size_t>(nnz));
  for (std::size_t j = 0; j < n_cols; ++j) {
    if ((j & 4095) == 0) check_interrupt();
    for (std::int64_t p = colptr[j]; p < colptr[j + 1]; ++p)
      idx[static_cast<std::size_t>(cur[static_cast<std::size_t>(rowidx[p])]++)] = static_cast<std::int32_t>(j);
  }
  // merge duplicates (adjacent) in place
  out.indptr.assign(n_rows + 1, 0);
  std::int64_t k = 0;
  for (std::size_t i = 0; i < n_rows; ++i) {
    if ((i & 4095) == 0) check_interrupt();
    std::int32_t prev = -1;
    for (std::int64_t p = start[i]; p < start[i + 1]; ++p) {
      const std::int32_t c = idx[static_cast<std::size_t>(p)];
      if (c != prev) idx[static_cast<std::size_t>(k++)] = c;
      prev = c;
    }
    out.indptr[i + 1] = k;
  }
  idx.resize(static_cast<std::size_t>(k));
  out.indices = std::move(idx);
  return out;
}

CsrArrays csr_from_coo(std::size_t n_rows, std::size_t n_cols, std::size_t nnz, const std::int32_t* row,
                       const std::int32_t* col) {
  if (n_cols > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("sets: at most 2**31 - 1 columns are supported");
  if (n_rows > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("sets: at most 2**31 - 1 rows are supported");
  // counting sort by column (stable), then csr_from_colmajor
  Bytes need("sparse matrix to CSR");
  need.add(static_cast<std::int64_t>(n_cols) + 1, 2 * sizeof(std::int64_t));
  need.add(static_cast<std::int64_t>(n_rows) + 1, 3 * sizeof(std::int64_t));
  need.add(static_cast<std::int64_t>(nnz), 2 * sizeof(std::int32_t));
  need.require();
  std::vector<std::int64_t> colptr(n_cols + 1, 0);
  const auto nc = static_cast<std::uint32_t>(n_cols);
  for (std::size_t p = 0; p < nnz; ++p) {
    if ((p & 0xFFFFF) == 0) check_interrupt();
    const std::int32_t c = col[p];
    if (static_cast<std::uint32_t>(c) >= nc)
      throw std::invalid_argument("sets: column index " + std::to_string(c) + " is outside [0, " +
                                  std::to_string(n_cols) + ")");
    ++colptr[static_cast<std::size_t>(c) + 1];
  }
  for (std::size_t j = 0; j < n_cols; ++j) colptr[j + 1] += colptr[j];
  std::vector<std::int64_t> cur(colptr.begin(), colptr.end() - 1);
  std::vector<std::int32_t> rowidx(nnz);
  for (std::size_t p = 0; p < nnz; ++p) {
    if ((p & 0xFFFFF) == 0) check_interrupt();
    rowidx[static_cast<std::size_t>(cur[static_cast<std::size_t>(col[p])]++)] = row[p];
  }
  return csr_from_colmajor(n_rows, n_cols, colptr.data(), rowidx.data());
}

}  // namespace cover
}  // namespace interp_engine
