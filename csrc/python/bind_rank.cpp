// Bindings for the rank area (INVERT): midranks, AUC / Mann-Whitney p-values
// of packed sample sets, the beam-search primitive and the beam search.
// Thin: validation of user input lives in interp_engine/engine/rank.py; here
// only buffer shapes and dtypes are checked (a last line of defence) and the
// GIL is released around the compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "interp_engine/bitset.hpp"
#include "interp_engine/checked.hpp"
#include "interp_engine/rank.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
using I64 = In<std::int64_t>;
using U64 = In<std::uint64_t>;

// (N, K) float32/float64 array of any strides -> view (the array must outlive it)
rank::ActivationsView activations_view(const py::array& x) {
  if (x.ndim() != 2) throw std::invalid_argument("activations must be 2-d (N, K)");
  rank::ActivationsView v;
  std::size_t item;
  if (x.dtype().is(py::dtype::of<float>())) {
    v.dtype = Dtype::F32;
    item = sizeof(float);
  } else if (x.dtype().is(py::dtype::of<double>())) {
    v.dtype = Dtype::F64;
    item = sizeof(double);
  } else {
    throw std::invalid_argument("activations must be float32 or float64; got " + dtype_name(x));
  }
  if (x.strides(0) % static_cast<py::ssize_t>(item) != 0 || x.strides(1) % static_cast<py::ssize_t>(item) != 0)
    throw std::invalid_argument("activations: strides must be multiples of the item size");
  v.data = x.data();
  v.n = static_cast<std::size_t>(x.shape(0));
  v.k = static_cast<std::size_t>(x.shape(1));
  v.stride_n = x.strides(0) / static_cast<py::ssize_t>(item);
  v.stride_k = x.strides(1) / static_cast<py::ssize_t>(item);
  return v;
}

bits::BitMatrixView bits_view(const U64& words, std::int64_t n_bits, const char* name) {
  if (words.ndim() != 2 || n_bits < 0 ||
      static_cast<std::size_t>(words.shape(1)) != bits::words_for(static_cast<std::size_t>(n_bits)))
    throw std::invalid_argument(std::string(name) + ": packed words must have shape (rows, ceil(n_bits/64))");
  return bits::BitMatrixView{words.data(), static_cast<std::size_t>(words.shape(0)),
                             static_cast<std::size_t>(n_bits), static_cast<std::size_t>(words.shape(1))};
}

rank::PValueMethod pvalue_method(const std::string& name) {
  if (name == "auto") return rank::PValueMethod::Auto;
  if (name == "asymptotic") return rank::PValueMethod::Asymptotic;
  if (name == "exact") return rank::PValueMethod::Exact;
  throw std::invalid_argument("pvalue_method must be 'auto', 'asymptotic' or 'exact'; got '" + name + "'");
}

// Keeps the label words alive next to the index built on them.
struct IndexHolder {
  U64 words;
  std::unique_ptr<rank::ConceptIndex> index;
};

py::array_t<double> midranks_py(const py::array& acts, int num_threads) {
  rank::ActivationsView v = activations_view(acts);
  // (a broadcast view can be far larger than its memory)
  require_memory(checked_mul(static_cast<std::int64_t>(v.n), static_cast<std::int64_t>(v.k), "midranks: N x K"),
                 sizeof(double), "midranks");
  py::array_t<double> out({static_cast<py::ssize_t>(v.n), static_cast<py::ssize_t>(v.k)});
  double* dst = out.mutable_data();
  without_gil([&] {
    rank::midranks(v, dst, num_threads);
    return 0;
  });
  return out;
}

py::tuple auc_py(const py::array& acts, const U64& words, std::int64_t n_bits, bool pvalues, int num_threads,
                 const std::string& method_name) {
  const rank::PValueMethod method = pvalue_method(method_name);
  rank::ActivationsView v = activations_view(acts);
  bits::BitMatrixView s = bits_view(words, n_bits, "sets");
  const auto K = static_cast<py::ssize_t>(v.k), M = static_cast<py::ssize_t>(s.rows);
  require_memory(checked_mul(K, M, "auc: neurons x sets"), pvalues ? 2 * sizeof(double) : sizeof(double), "auc");
  py::array_t<double> auc({K, M});
  double* pa = auc.mutable_data();
  py::object p = py::none();
  double* pp = nullptr;
  if (pvalues) {
    py::array_t<double> arr({K, M});
    pp = arr.mutable_data();
    p = arr;
  }
  without_gil([&] {
    rank::auc_pvalues(v, s, pa, pp, num_threads, method);
    return 0;
  });
  return py::make_tuple(auc, p);
}

py::dict formula_sums_py(const I64& r2, const U64& phi, const IndexHolder& h, const std::string& method) {
  const rank::ConceptIndex& idx = *h.index;
  const std::size_t n = idx.num_samples(), c = idx.num_concepts(), nw = bits::words_for(n);
  if (r2.ndim() != 1 || static_cast<std::size_t>(r2.shape(0)) != n)
    throw std::invalid_argument("r2: expected shape (" + std::to_string(n) + ",)");
  if (phi.ndim() != 1 || static_cast<std::size_t>(phi.shape(0)) != nw)
    throw std::invalid_argument("phi: expected " + std::to_string(nw) + " words");
  const std::int64_t* r = r2.data();
  const bits::word_t* ph = phi.data();
  const std::int64_t n_phi = bits::popcounts(cpu::allowed()).count(ph, nw);
  std::int64_t r_phi = 0, total = 0;
  for (std::size_t j = 0; j < n; ++j) {
    total += r[j];
    if (bits::test(ph, j)) r_phi += r[j];
  }
  auto mk = [&]() { return I64(static_cast<py::ssize_t>(c)); };
  I64 cnt = mk(), sum = mk(), c_cnt = mk(), c_sum = mk();
  std::int64_t *pc = cnt.mutable_data(), *ps = sum.mutable_data(), *qc = c_cnt.mutable_data(),
               *qs = c_sum.mutable_data();
  without_gil([&] {
    std::vector<std::int64_t> acc;
    std::vector<bits::word_t> all(nw, ~bits::word_t{0});
    if (nw) all[nw - 1] &= bits::tail_mask(n);
    if (method == "index") {
      idx.and_sums(r, ph, n_phi, r_phi, pc, ps, acc);
      idx.and_sums(r, all.data(), static_cast<std::int64_t>(n), total, qc, qs, acc);
    } else if (method == "bits") {
      rank::and_sums_bits(idx.labels(), r, ph, pc, ps);
      rank::and_sums_bits(idx.labels(), r, all.data(), qc, qs);
    } else {
      throw std::invalid_argument("method must be 'index' or 'bits'");
    }
    return 0;
  });
  I64 or_cnt = mk(), or_sum = mk(), andnot_cnt = mk(), andnot_sum = mk();
  for (std::size_t q = 0; q < c; ++q) {
    or_cnt.mutable_data()[q] = n_phi + qc[q] - pc[q];
    or_sum.mutable_data()[q] = r_phi + qs[q] - ps[q];
    andnot_cnt.mutable_data()[q] = n_phi - pc[q];
    andnot_sum.mutable_data()[q] = r_phi - ps[q];
  }
  py::dict d;
  d["and_count"] = cnt;
  d["and_sum"] = sum;
  d["or_count"] = or_cnt;
  d["or_sum"] = or_sum;
  d["andnot_count"] = andnot_cnt;
  d["andnot_sum"] = andnot_sum;
  return d;
}

template <typename T>
py::array_t<T> shaped(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::dict beam_search_py(const py::array& acts, const IndexHolder& h, int length, int beam, double min_fraction,
                        double max_fraction, bool negative, bool pvalues, const std::vector<std::int64_t>& neurons,
                        int num_threads, const std::string& method_name) {
  rank::ActivationsView v = activations_view(acts);
  rank::BeamParams prm;
  prm.pvalue_method = pvalue_method(method_name);
  prm.length = length;
  prm.beam = beam;
  prm.min_fraction = min_fraction;
  prm.max_fraction = max_fraction;
  prm.negative = negative;
  prm.pvalues = pvalues;
  rank::BeamOutput o =
      without_gil([&] { return rank::beam_search(v, *h.index, prm, neurons, num_threads); });
  const auto K = static_cast<py::ssize_t>(o.num_neurons), B = static_cast<py::ssize_t>(o.beam),
             L = static_cast<py::ssize_t>(o.length);
  py::dict d;
  d["status"] = shaped(o.status, {K});
  d["count"] = shaped(o.count, {K});
  d["lengths"] = shaped(o.lengths, {K, B});
  d["codes"] = shaped(o.codes, {K, B, L});
  d["ops"] = shaped(o.ops, {K, B, L});
  d["n1"] = shaped(o.n1, {K, B});
  d["u2"] = shaped(o.u2, {K, B});
  d["auc"] = shaped(o.auc, {K, B});
  d["pvalue"] = shaped(o.pvalue, {K, B});
  d["evaluations"] = shaped(o.evaluations, {K});
  return d;
}
}  // namespace

void init_rank(py::module_& m) {
  m.def("_rank_midranks", &midranks_py, py::arg("activations"), py::arg("num_threads") = 0,
        "Midranks (ties averaged) of every column of a (N, K) float32/float64 array -> (N, K) float64.");
  m.def("_rank_auc", &auc_py, py::arg("activations"), py::arg("words"), py::arg("n_bits"),
        py::arg("pvalues"), py::arg("num_threads") = 0, py::arg("pvalue_method") = "auto",
        "AUC (and two-sided Mann-Whitney p-values, method 'auto' | 'asymptotic' | 'exact') of every "
        "(neuron, set): returns ((K, M), (K, M) or None).");
  m.def("_rank_mwu_null_cdf", [](std::int64_t m, std::int64_t n, std::int64_t k) {
          if (k < 0) throw std::invalid_argument("k must be >= 0; got " + std::to_string(k));
          rank::MwuNull null(m, n);
          py::array_t<double> out(static_cast<py::ssize_t>(std::min(k, m * n) + 1));
          double* dst = out.mutable_data();
          without_gil([&] {
            null.cdf_upto(std::min(k, m * n), dst);
            return 0;
          });
          return out;
        }, py::arg("m"), py::arg("n"), py::arg("k"),
        "P(U <= j), j = 0..min(k, m n), of the Mann-Whitney U statistic for groups of m and n samples "
        "without ties (the exact null distribution).");
  m.def("_rank_mwu_pvalue", [](std::int64_t u2, std::int64_t n1, std::int64_t n0, double tie_term,
                               const std::string& method_name) {
          const rank::PValueMethod method = pvalue_method(method_name);
          return without_gil([&] { return rank::mwu_pvalue(u2, n1, n0, tie_term, method); });
        }, py::arg("u2"), py::arg("n1"), py::arg("n0"), py::arg("tie_term"), py::arg("pvalue_method") = "auto",
        "Two-sided Mann-Whitney p-value from 2U of the n1 group, the group sizes and the tie term "
        "sum(t^3 - t) of the N values.");
  py::class_<IndexHolder>(m, "RankConceptIndex",
                          "Sample-major sparse index of packed concept labels (C, N bits) for the beam search.")
      .def(py::init([](const U64& words, std::int64_t n_bits, int num_threads) {
             auto h = std::make_unique<IndexHolder>();
             h->words = words;
             bits::BitMatrixView v = bits_view(h->words, n_bits, "labels");
             h->index = without_gil([&] { return std::make_unique<rank::ConceptIndex>(v, num_threads); });
             return h;
           }),
           py::arg("words"), py::arg("n_bits"), py::arg("num_threads") = 0)
      .def_property_readonly("num_concepts", [](const IndexHolder& h) { return h.index->num_concepts(); })
      .def_property_readonly("num_samples", [](const IndexHolder& h) { return h.index->num_samples(); })
      .def_property_readonly("entries", [](const IndexHolder& h) { return h.index->entries(); });
  m.def("_rank_formula_sums", &formula_sums_py, py::arg("r2"), py::arg("phi"), py::arg("index"),
        py::arg("method") = "index",
        "Counts and doubled-rank sums of phi AND c, phi OR c, phi AND NOT c for every concept c.");
  m.def("_rank_beam_search", &beam_search_py, py::arg("activations"), py::arg("index"), py::arg("length"),
        py::arg("beam"), py::arg("min_fraction"), py::arg("max_fraction"), py::arg("negative"),
        py::arg("pvalues"), py::arg("neurons"), py::arg("num_threads") = 0, py::arg("pvalue_method") = "auto",
        "INVERT beam search over the given neurons; use interp_engine.methods.invert.Invert.");
}

}  // namespace interp_engine
