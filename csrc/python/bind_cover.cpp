// Bindings for the cover area: greedy cover kernels and packed bitsets.
// Thin: validation of user input lives in interp_engine/engine/cover.py; here
// only buffer shapes are checked (as a last line of defence) and the GIL is
// released around the compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "interp_engine/bitset.hpp"
#include "interp_engine/checked.hpp"
#include "interp_engine/cover.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
using I64 = In<std::int64_t>;
using I32 = In<std::int32_t>;
using U64 = In<std::uint64_t>;
using F64 = In<double>;
using U8 = In<std::uint8_t>;

// Keeps the buffers of one family alive while the GIL is released.
struct FamilyArg {
  I64 indptr;
  I32 indices;
  U64 words;
  cover::SetFamily family;
};

// sets: (indptr int64[n+1], indices int32[nnz], n_elements) for CSR or
//       (words uint64[n, w], n_bits) for packed rows.
FamilyArg parse_family(const py::tuple& t, const char* name) {
  FamilyArg a;
  if (t.size() == 3) {
    a.indptr = t[0].cast<I64>();
    a.indices = t[1].cast<I32>();
    const auto n_el = t[2].cast<std::int64_t>();
    if (a.indptr.ndim() != 1 || a.indptr.shape(0) < 1 || a.indices.ndim() != 1 || n_el < 0)
      throw std::invalid_argument(std::string(name) + ": malformed CSR arrays");
    const auto n = static_cast<std::size_t>(a.indptr.shape(0) - 1);
    const std::int64_t* ip = a.indptr.data();
    if (ip[n] != a.indices.shape(0))
      throw std::invalid_argument(std::string(name) + ": indptr[-1] (" + std::to_string(ip[n]) +
                                  ") != len(indices) (" + std::to_string(a.indices.shape(0)) + ")");
    a.family = cover::SetFamily::csr(n, static_cast<std::size_t>(n_el), ip, a.indices.data());
  } else if (t.size() == 2) {
    a.words = t[0].cast<U64>();
    const auto n_bits = t[1].cast<std::int64_t>();
    if (a.words.ndim() != 2 || n_bits < 0 ||
        static_cast<std::size_t>(a.words.shape(1)) != bits::words_for(static_cast<std::size_t>(n_bits)))
      throw std::invalid_argument(std::string(name) + ": packed words must have shape (rows, ceil(n_bits/64))");
    bits::BitMatrixView v{a.words.data(), static_cast<std::size_t>(a.words.shape(0)),
                          static_cast<std::size_t>(n_bits), static_cast<std::size_t>(a.words.shape(1))};
    a.family = cover::SetFamily::packed(v);
  } else {
    throw std::invalid_argument(std::string(name) + ": expected a CSR or packed family tuple");
  }
  return a;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::tuple greedy_cover_py(const py::tuple& sets, const py::object& weights_int,
                          const py::object& weights_real, std::int64_t budget, double target,
                          int num_threads) {
  FamilyArg f = parse_family(sets, "sets");
  I64 wi;
  F64 wr;
  cover::Weights w;
  const auto check_len = [&](py::ssize_t len) {
    if (static_cast<std::size_t>(len) != f.family.n_elements)
      throw std::invalid_argument("weights: expected " + std::to_string(f.family.n_elements) +
                                  " values; got " + std::to_string(len));
  };
  if (!weights_int.is_none()) {
    wi = weights_int.cast<I64>();
    check_len(wi.size());
    w.integer = wi.data();
  } else if (!weights_real.is_none()) {
    wr = weights_real.cast<F64>();
    check_len(wr.size());
    w.real = wr.data();
  }
  cover::GreedyResult r =
      without_gil([&] { return cover::greedy_cover(f.family, w, budget, target, num_threads); });
  return py::make_tuple(to_array(r.indices), to_array(r.gains), r.covered);
}

py::tuple ratio_greedy_cover_py(const py::tuple& cost_sets, const py::tuple& gain_sets, double target,
                                double eps_cost, double eps_gain, bool tighten, int num_threads) {
  FamilyArg c = parse_family(cost_sets, "cost_sets");
  FamilyArg g = parse_family(gain_sets, "gain_sets");
  cover::RatioResult r = without_gil([&] {
    return cover::ratio_greedy_cover(c.family, g.family, target, eps_cost, eps_gain, tighten,
                                     num_threads);
  });
  return py::make_tuple(to_array(r.indices), r.n_greedy, r.covered_cost, r.covered_gain, r.reached);
}

// problems: a list of (cost_family, gain_family, target) tuples.  Returns a
// list of (indices, n_greedy, covered_cost, covered_gain, reached) tuples.
py::list ratio_greedy_cover_many_py(const py::list& problems, double eps_cost, double eps_gain,
                                    bool tighten, int num_threads) {
  std::vector<FamilyArg> costs, gains;  // keep the buffers alive while the GIL is released
  costs.reserve(problems.size());
  gains.reserve(problems.size());
  std::vector<cover::RatioProblem> ps(problems.size());
  for (std::size_t i = 0; i < problems.size(); ++i) {
    const auto t = problems[i].cast<py::tuple>();
    if (t.size() != 3)
      throw std::invalid_argument("problems[" + std::to_string(i) + "]: expected (cost_sets, gain_sets, target)");
    costs.push_back(parse_family(t[0].cast<py::tuple>(), "cost_sets"));
    gains.push_back(parse_family(t[1].cast<py::tuple>(), "gain_sets"));
    ps[i].cost = costs.back().family;
    ps[i].gain = gains.back().family;
    ps[i].target = t[2].cast<double>();
  }
  std::vector<cover::RatioResult> rs = without_gil(
      [&] { return cover::ratio_greedy_cover_many(ps, eps_cost, eps_gain, tighten, num_threads); });
  py::list out;
  for (const auto& r : rs)
    out.append(py::make_tuple(to_array(r.indices), r.n_greedy, r.covered_cost, r.covered_gain, r.reached));
  return out;
}

// kind "coo": a = row, b = col (int32, same length); kind "csc": a = column
// pointers (int64, n_cols + 1), b = row indices (int32).  Returns canonical
// CSR (indptr int64, indices int32).
py::tuple sparse_to_csr_py(const std::string& kind, std::int64_t n_rows, std::int64_t n_cols,
                           const py::array& a, const I32& b) {
  if (n_rows < 0 || n_cols < 0) throw std::invalid_argument("sparse_to_csr: negative shape");
  cover::CsrArrays r;
  if (kind == "coo") {
    I32 row = a.cast<I32>();
    if (row.ndim() != 1 || b.ndim() != 1 || row.shape(0) != b.shape(0))
      throw std::invalid_argument("sparse_to_csr: row and col must be 1-d of equal length");
    const std::int32_t* rp = row.data();
    const std::int32_t* cp = b.data();
    const auto nnz = static_cast<std::size_t>(row.shape(0));
    r = without_gil([&] {
      return cover::csr_from_coo(static_cast<std::size_t>(n_rows), static_cast<std::size_t>(n_cols), nnz, rp, cp);
    });
  } else if (kind == "csc") {
    I64 colptr = a.cast<I64>();
    if (colptr.ndim() != 1 || colptr.shape(0) != n_cols + 1 || b.ndim() != 1 ||
        colptr.data()[n_cols] != b.shape(0))
      throw std::invalid_argument("sparse_to_csr: malformed CSC arrays");
    const std::int64_t* cp = colptr.data();
    const std::int32_t* rp = b.data();
    r = without_gil([&] {
      return cover::csr_from_colmajor(static_cast<std::size_t>(n_rows), static_cast<std::size_t>(n_cols), cp, rp);
    });
  } else {
    throw std::invalid_argument("sparse_to_csr: kind must be 'coo' or 'csc'");
  }
  return py::make_tuple(to_array(r.indptr), to_array(r.indices));
}

U64 pack_bits_py(const U8& dense) {
  if (dense.ndim() != 2) throw std::invalid_argument("pack_bits expects a 2-d array");
  const auto rows = static_cast<std::size_t>(dense.shape(0));
  const auto n_bits = static_cast<std::size_t>(dense.shape(1));
  const std::size_t wpr = bits::words_for(n_bits);
  U64 out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(wpr)});
  const std::uint8_t* src = dense.data();
  std::uint64_t* dst = out.mutable_data();
  without_gil([&] {
    parallel_for(rows, 64, [&](std::size_t b, std::size_t e, int) {
      for (std::size_t r = b; r < e; r += 64) {  // Ctrl-C checked every 64 rows
        check_interrupt();
        bits::pack_rows(src + r * n_bits, std::min<std::size_t>(64, e - r), n_bits, n_bits, dst + r * wpr);
      }
    });
    return 0;
  });
  return out;
}

py::array_t<bool> unpack_bits_py(const U64& words, std::int64_t n_bits) {
  if (words.ndim() != 2 || n_bits < 0 ||
      static_cast<std::size_t>(words.shape(1)) != bits::words_for(static_cast<std::size_t>(n_bits)))
    throw std::invalid_argument("unpack_bits expects words of shape (rows, ceil(n_bits/64))");
  const auto rows = static_cast<std::size_t>(words.shape(0));
  const auto nb = static_cast<std::size_t>(n_bits);
  const std::size_t wpr = bits::words_for(nb);
  require_memory(checked_mul(static_cast<std::int64_t>(rows), n_bits, "unpack_bits: rows x n_bits"), 1,
                 "unpack_bits");
  py::array_t<bool> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(nb)});
  auto* dst = reinterpret_cast<std::uint8_t*>(out.mutable_data());
  const std::uint64_t* src = words.data();
  without_gil([&] {
    parallel_for(rows, 64, [&](std::size_t b, std::size_t e, int) {
      for (std::size_t r = b; r < e; r += 64) {  // Ctrl-C checked every 64 rows
        check_interrupt();
        bits::unpack_rows(src + r * wpr, std::min<std::size_t>(64, e - r), nb, wpr, dst + r * nb);
      }
    });
    return 0;
  });
  return out;
}

I64 popcount_rows_py(const U64& words) {
  if (words.ndim() != 2) throw std::invalid_argument("popcount_rows expects a 2-d array");
  const auto rows = static_cast<std::size_t>(words.shape(0));
  const auto wpr = static_cast<std::size_t>(words.shape(1));
  I64 out(static_cast<py::ssize_t>(rows));
  std::int64_t* dst = out.mutable_data();
  const std::uint64_t* src = words.data();
  const auto count = bits::popcounts(cpu::allowed()).count;
  without_gil([&] {
    for (std::size_t i = 0; i < rows; ++i) {
      if ((i & 255) == 0) check_interrupt();
      dst[i] = count(src + i * wpr, wpr);
    }
  });
  return out;
}

// dense: (n_bits, rows) uint8 (C-contiguous, 0 = false) -> the packed rows of
// its transpose, (rows, ceil(n_bits/64)) words: bit j of row i is dense[j, i]
// != 0.  Reads the columns in place (no transposed copy), in parallel over
// blocks of 64 bits.
U64 pack_bits_columns_py(const U8& dense) {
  if (dense.ndim() != 2) throw std::invalid_argument("pack_bits_columns expects a 2-d array");
  const auto n_bits = static_cast<std::size_t>(dense.shape(0));
  const auto rows = static_cast<std::size_t>(dense.shape(1));
  const std::size_t wpr = bits::words_for(n_bits);
  U64 out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(wpr)});
  const std::uint8_t* src = dense.data();
  std::uint64_t* dst = out.mutable_data();
  without_gil([&] {
    parallel_for(wpr, 4, [&](std::size_t w0, std::size_t w1, int) {
      std::vector<std::uint64_t> acc(rows);
      for (std::size_t w = w0; w < w1; ++w) {
        if (((w - w0) & 15) == 0) check_interrupt();
        std::fill(acc.begin(), acc.end(), 0);
        const std::size_t j1 = std::min(n_bits, (w + 1) * 64);
        for (std::size_t j = w * 64; j < j1; ++j) {
          const std::uint8_t* line = src + j * rows;
          const unsigned shift = static_cast<unsigned>(j & 63);
          for (std::size_t i = 0; i < rows; ++i) acc[i] |= static_cast<std::uint64_t>(line[i] != 0) << shift;
        }
        for (std::size_t i = 0; i < rows; ++i) dst[i * wpr + w] = acc[i];
      }
    });
  });
  return out;
}
}  // namespace

void init_cover(py::module_& m) {
  m.def("_greedy_cover", &greedy_cover_py, py::arg("sets"), py::arg("weights_int"),
        py::arg("weights_real"), py::arg("budget"), py::arg("target"), py::arg("num_threads") = 0,
        "Greedy weighted max coverage (CELF). sets: (indptr, indices, n_elements) or (words, n_bits). "
        "Returns (indices int64, gains float64, covered float). Use interp_engine.engine.cover.");
  m.def("_ratio_greedy_cover", &ratio_greedy_cover_py, py::arg("cost_sets"), py::arg("gain_sets"),
        py::arg("target"), py::arg("eps_cost"), py::arg("eps_gain"), py::arg("tighten"),
        py::arg("num_threads") = 0,
        "Ratio greedy submodular cover. Returns (indices, n_greedy, covered_cost, covered_gain, reached).");
  m.def("_ratio_greedy_cover_many", &ratio_greedy_cover_many_py, py::arg("problems"), py::arg("eps_cost"),
        py::arg("eps_gain"), py::arg("tighten"), py::arg("num_threads") = 0,
        "Many independent ratio greedy problems [(cost_sets, gain_sets, target), ...] across the thread "
        "pool, each single-threaded. Returns a list of (indices, n_greedy, covered_cost, covered_gain, "
        "reached).");
  m.def("_sparse_to_csr", &sparse_to_csr_py, py::arg("kind"), py::arg("n_rows"), py::arg("n_cols"),
        py::arg("a"), py::arg("b"),
        "Canonical CSR (indptr int64, indices int32) of the positions of a COO ('coo': row, col) or "
        "CSC ('csc': indptr, indices) matrix; duplicates merged.");
  m.def("pack_bits", &pack_bits_py, py::arg("dense"),
        "Pack a 2-d bool/uint8 array (rows, n_bits) into uint64 words (rows, ceil(n_bits/64)); "
        "bit j of a row is bit j % 64 (LSB first) of word j // 64; padding bits are zero.");
  m.def("pack_bits_columns", &pack_bits_columns_py, py::arg("dense"),
        "Pack the columns of a 2-d bool/uint8 array (n_bits, rows) into uint64 words (rows, "
        "ceil(n_bits/64)): pack_bits(dense.T) without the transposed copy.");
  m.def("unpack_bits", &unpack_bits_py, py::arg("words"), py::arg("n_bits"),
        "Inverse of pack_bits: a bool array of shape (rows, n_bits).");
  m.def("popcount_rows", &popcount_rows_py, py::arg("words"),
        "Number of set bits of each row of a uint64 array (rows, n_words), as int64.");
}

}  // namespace interp_engine
