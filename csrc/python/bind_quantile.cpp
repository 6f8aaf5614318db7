// Bindings for the quantile area: convert, release the GIL, call the core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "interp_engine/checked.hpp"
#include "interp_engine/quantile.hpp"

namespace interp_engine {
namespace py = pybind11;
using namespace pybind11::literals;
using quantile::ChannelSketch;
using quantile::ExactPass;
using quantile::KllSketch;
using quantile::StridedBatch;

namespace {

// x: a 3-D array (channels, a, b) of any byte strides, holding `kind` data.
StridedBatch batch_view(const py::array& x, const std::string& kind) {
  if (x.ndim() != 3)
    throw std::invalid_argument("internal: expected a 3-D (channels, a, b) view; got ndim " +
                                std::to_string(x.ndim()));
  StridedBatch b;
  b.dtype = dtype_from_name(kind);
  if (static_cast<std::size_t>(x.itemsize()) != dtype_size(b.dtype))
    throw std::invalid_argument("internal: itemsize " + std::to_string(x.itemsize()) + " does not match kind " + kind);
  b.data = static_cast<const unsigned char*>(x.data());
  b.channels = x.shape(0);
  b.size_a = x.shape(1);
  b.size_b = x.shape(2);
  b.stride_c = x.strides(0);
  b.stride_a = x.strides(1);
  b.stride_b = x.strides(2);
  return b;
}

template <typename T>
py::array_t<T> vec_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

using DArr = In<double>;
using IArr = In<std::int64_t>;
using UArr = In<std::uint64_t>;

}  // namespace

void init_quantile(py::module_& m) {
  py::class_<ChannelSketch>(m, "QuantileSketch",
                            "Per-channel streaming quantile sketch (KLL compactors); use "
                            "interp_engine.ChannelQuantiles, which validates inputs.")
      .def(py::init<std::int64_t, int, std::uint64_t>(), "num_channels"_a, "k"_a, "seed"_a)
      .def_property_readonly("num_channels", &ChannelSketch::channels)
      .def_property_readonly("k", &ChannelSketch::k)
      .def_property_readonly("seed", &ChannelSketch::seed)
      .def(
          "update",
          [](ChannelSketch& s, const py::array& x, const std::string& kind, bool skip_nan, int num_threads) {
            const StridedBatch b = batch_view(x, kind);
            without_gil([&] { s.update(b, skip_nan, num_threads); });
          },
          "x"_a, "kind"_a, "skip_nan"_a, "num_threads"_a = 0,
          "Add a (channels, a, b) strided view of kind f16/bf16/f32/f64.")
      .def(
          "quantiles",
          [](const ChannelSketch& s, const DArr& ps, int num_threads) {
            if (ps.ndim() != 1) throw std::invalid_argument("internal: ps must be 1-D");
            const std::size_t mq = static_cast<std::size_t>(ps.shape(0));
            py::array_t<double> out({static_cast<py::ssize_t>(s.channels()), static_cast<py::ssize_t>(mq)});
            const double* p = ps.data();
            double* o = out.mutable_data();
            without_gil([&] { s.quantiles(p, mq, o, num_threads); });
            return out;
          },
          "ps"_a, "num_threads"_a = 0)
      .def(
          "ranks",
          [](const ChannelSketch& s, const DArr& values, int num_threads) {
            if (values.ndim() != 2 || values.shape(0) != s.channels())
              throw std::invalid_argument("internal: values must be (channels, m)");
            const std::size_t mv = static_cast<std::size_t>(values.shape(1));
            py::array_t<double> out({static_cast<py::ssize_t>(s.channels()), static_cast<py::ssize_t>(mv)});
            const double* v = values.data();
            double* o = out.mutable_data();
            without_gil([&] { s.ranks(v, mv, o, num_threads); });
            return out;
          },
          "values"_a, "num_threads"_a = 0)
      .def(
          "merge",
          [](ChannelSketch& s, const ChannelSketch& other, int num_threads) {
            without_gil([&] { s.merge(other, num_threads); });
          },
          "other"_a, "num_threads"_a = 0)
      .def("counts",
           [](const ChannelSketch& s) {
             std::vector<std::int64_t> v;
             for (std::int64_t c = 0; c < s.channels(); ++c) v.push_back(static_cast<std::int64_t>(s.sketch(c).n()));
             return vec_array(v);
           })
      .def("checksums",
           [](const ChannelSketch& s) {
             py::array_t<std::uint64_t> out({static_cast<py::ssize_t>(s.channels()), static_cast<py::ssize_t>(2)});
             auto o = out.mutable_unchecked<2>();
             for (std::int64_t c = 0; c < s.channels(); ++c) {
               o(c, 0) = s.checksums()[static_cast<std::size_t>(c)].sum;
               o(c, 1) = s.checksums()[static_cast<std::size_t>(c)].xr;
             }
             return out;
           },
           "(channels, 2) uint64: order-independent checksum (sum, xor of a 64-bit mix of each value's "
           "float64 bits) of the values added.")
      .def_property_readonly("checksum_known", &ChannelSketch::checksum_known)
      .def("nan_counts",
           [](const ChannelSketch& s) {
             std::vector<std::int64_t> v(s.nan_count().begin(), s.nan_count().end());
             return vec_array(v);
           })
      .def("mins",
           [](const ChannelSketch& s) {
             std::vector<double> v;
             for (std::int64_t c = 0; c < s.channels(); ++c)
               v.push_back(s.sketch(c).n() ? s.sketch(c).min() : std::numeric_limits<double>::quiet_NaN());
             return vec_array(v);
           })
      .def("maxs",
           [](const ChannelSketch& s) {
             std::vector<double> v;
             for (std::int64_t c = 0; c < s.channels(); ++c)
               v.push_back(s.sketch(c).n() ? s.sketch(c).max() : std::numeric_limits<double>::quiet_NaN());
             return vec_array(v);
           })
      .def("memory_bytes",
           [](const ChannelSketch& s) {
             std::vector<std::int64_t> v;
             for (std::int64_t c = 0; c < s.channels(); ++c)
               v.push_back(static_cast<std::int64_t>(s.sketch(c).memory_bytes()));
             return vec_array(v);
           })
      .def("retained",
           [](const ChannelSketch& s) {
             std::vector<std::int64_t> v;
             for (std::int64_t c = 0; c < s.channels(); ++c)
               v.push_back(static_cast<std::int64_t>(s.sketch(c).retained()));
             return vec_array(v);
           })
      .def("get_state",
           [](const ChannelSketch& s) {
             const std::int64_t C = s.channels();
             int lmax = 1;
             for (std::int64_t c = 0; c < C; ++c) lmax = std::max(lmax, s.sketch(c).num_levels());
             std::vector<double> items;
             py::array_t<std::int64_t> sizes({static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(lmax)});
             auto sz = sizes.mutable_unchecked<2>();
             std::vector<std::int64_t> n;
             std::vector<double> mn, mx;
             std::vector<std::uint64_t> rng;
             std::vector<std::int64_t> wide;
             for (std::int64_t c = 0; c < C; ++c) {
               const KllSketch& k = s.sketch(c);
               for (int h = 0; h < lmax; ++h) {
                 if (h < k.num_levels()) {
                   const std::vector<double> l = k.level(h);
                   items.insert(items.end(), l.begin(), l.end());
                   sz(c, h) = static_cast<std::int64_t>(l.size());
                 } else {
                   sz(c, h) = 0;
                 }
               }
               n.push_back(static_cast<std::int64_t>(k.n()));
               mn.push_back(k.n() ? k.min() : 0.0);
               mx.push_back(k.n() ? k.max() : 0.0);
               rng.push_back(k.rng_state());
               wide.push_back(k.wide() ? 1 : 0);
             }
             std::vector<std::int64_t> nan(s.nan_count().begin(), s.nan_count().end());
             py::array_t<std::uint64_t> cks({static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(2)});
             auto ck = cks.mutable_unchecked<2>();
             for (std::int64_t c = 0; c < C; ++c) {
               ck(c, 0) = s.checksums()[static_cast<std::size_t>(c)].sum;
               ck(c, 1) = s.checksums()[static_cast<std::size_t>(c)].xr;
             }
             py::dict d;
             d["checksum"] = cks;
             d["checksum_known"] = s.checksum_known() ? 1 : 0;
             d["items"] = vec_array(items);
             d["level_sizes"] = sizes;
             d["count"] = vec_array(n);
             d["min"] = vec_array(mn);
             d["max"] = vec_array(mx);
             d["rng_state"] = vec_array(rng);
             d["nan_count"] = vec_array(nan);
             d["wide"] = vec_array(wide);
             return d;
           })
      .def_static(
          "from_state",
          [](std::int64_t num_channels, int k, std::uint64_t seed, const DArr& items, const IArr& level_sizes,
             const IArr& count, const DArr& mn, const DArr& mx, const UArr& rng, const IArr& nan, const IArr& wide,
             const py::object& checksum) {
            // Every field is checked against the others (the Python layer has
            // checked types and that no integer wrapped in its conversion to
            // int64); errors start with the field's name in quotes.
            const std::int64_t C = num_channels;
            if (C < 1) throw std::invalid_argument("'num_channels' must be >= 1");
            auto check1 = [&](const py::array& a, const char* name) {
              if (a.ndim() != 1 || a.shape(0) != C)
                throw std::invalid_argument(std::string("'") + name + "' must have shape (" + std::to_string(C) +
                                            ",); got ndim " + std::to_string(a.ndim()));
            };
            check1(count, "count");
            check1(mn, "min");
            check1(mx, "max");
            check1(rng, "rng_state");
            check1(nan, "nan_count");
            check1(wide, "wide");
            for (std::int64_t c = 0; c < C; ++c) {
              if (count.data()[c] < 0)
                throw std::invalid_argument("'count' must be >= 0; got " + std::to_string(count.data()[c]) +
                                            " for channel " + std::to_string(c));
              if (nan.data()[c] < 0)
                throw std::invalid_argument("'nan_count' must be >= 0; got " + std::to_string(nan.data()[c]) +
                                            " for channel " + std::to_string(c));
              if (wide.data()[c] != 0 && wide.data()[c] != 1)
                throw std::invalid_argument("'wide' must be 0 or 1; got " + std::to_string(wide.data()[c]) +
                                            " for channel " + std::to_string(c));
            }
            if (items.ndim() != 1) throw std::invalid_argument("'items' must be 1-D");
            if (level_sizes.ndim() != 2 || level_sizes.shape(0) != C || level_sizes.shape(1) < 1 ||
                level_sizes.shape(1) > KllSketch::kMaxLevels)
              throw std::invalid_argument("'level_sizes' must have shape (" + std::to_string(C) +
                                          ", levels) with 1 <= levels <= " + std::to_string(KllSketch::kMaxLevels));
            In<std::uint64_t> cks;
            if (!checksum.is_none()) {
              cks = In<std::uint64_t>::ensure(checksum);
              if (!cks || cks.ndim() != 2 || cks.shape(0) != C || cks.shape(1) != 2)
                throw std::invalid_argument("'checksum' must have shape (" + std::to_string(C) + ", 2)");
            }
            auto ls = level_sizes.unchecked<2>();
            std::int64_t total = 0;
            for (std::int64_t c = 0; c < C; ++c)
              for (py::ssize_t h = 0; h < level_sizes.shape(1); ++h) {
                if (ls(c, h) < 0)
                  throw std::invalid_argument("'level_sizes' must be >= 0; got " + std::to_string(ls(c, h)) +
                                              " at [" + std::to_string(c) + ", " + std::to_string(h) + "]");
                if (add_overflows(total, ls(c, h), &total) || total > items.shape(0))
                  throw std::invalid_argument("'level_sizes' add up to more than the " +
                                              std::to_string(items.shape(0)) + " values of 'items'");
              }
            if (total != items.shape(0))
              throw std::invalid_argument("'level_sizes' add up to " + std::to_string(total) + " but 'items' holds " +
                                          std::to_string(items.shape(0)));
            ChannelSketch s(C, k, seed);
            const double* it = items.data();
            for (std::int64_t c = 0; c < C; ++c) {
              int L = static_cast<int>(level_sizes.shape(1));
              while (L > 1 && ls(c, L - 1) == 0) --L;
              std::vector<std::vector<double>> levels(static_cast<std::size_t>(L));
              for (int h = 0; h < L; ++h) {
                levels[static_cast<std::size_t>(h)].assign(it, it + ls(c, h));
                it += ls(c, h);
              }
              for (py::ssize_t h = L; h < level_sizes.shape(1); ++h) it += ls(c, h);
              try {
                s.sketch(c) = KllSketch::from_parts(k, rng.data()[c], static_cast<std::uint64_t>(count.data()[c]),
                                                    mn.data()[c], mx.data()[c], std::move(levels),
                                                    wide.data()[c] != 0);
              } catch (const std::invalid_argument& e) {
                throw std::invalid_argument("channel " + std::to_string(c) + ": " + e.what());
              }
              s.nan_count()[static_cast<std::size_t>(c)] = static_cast<std::uint64_t>(nan.data()[c]);
              if (!checksum.is_none()) {
                auto ck = cks.unchecked<2>();
                s.checksums()[static_cast<std::size_t>(c)] = quantile::Checksum{ck(c, 0), ck(c, 1)};
              }
            }
            s.set_checksum_known(!checksum.is_none());
            return s;
          },
          "num_channels"_a, "k"_a, "seed"_a, "items"_a, "level_sizes"_a, "count"_a, "min"_a, "max"_a,
          "rng_state"_a, "nan_count"_a, "wide"_a, "checksum"_a = py::none());

  m.def(
      "quantile_memory_bound_bytes", [](int k) { return static_cast<std::int64_t>(KllSketch::memory_bound_bytes(k)); },
      "k"_a, "Bound on the bytes of one channel's sketch with capacity k, for any amount of data.");
  m.def(
      "quantile_capacity_bound", [](int k) { return static_cast<std::int64_t>(KllSketch::capacity_bound(k, KllSketch::kMaxLevels)); },
      "k"_a, "Bound on the items retained by one channel's sketch with capacity k.");

  py::class_<ExactPass>(m, "ExactPassCore",
                        "Second exact pass over the data (see interp_engine.ChannelQuantiles.exact_pass).")
      .def(py::init([](std::int64_t channels, std::int64_t mreq, const DArr& lower, const DArr& upper,
                       std::int64_t cap) {
             std::vector<double> lo(lower.data(), lower.data() + lower.size());
             std::vector<double> hi(upper.data(), upper.data() + upper.size());
             return new ExactPass(channels, mreq, std::move(lo), std::move(hi), cap);
           }),
           "channels"_a, "m"_a, "lower"_a, "upper"_a, "cap"_a)
      .def(
          "update",
          [](ExactPass& p, const py::array& x, const std::string& kind, bool skip_nan, int num_threads) {
            const StridedBatch b = batch_view(x, kind);
            without_gil([&] { p.update(b, skip_nan, num_threads); });
          },
          "x"_a, "kind"_a, "skip_nan"_a, "num_threads"_a = 0)
      .def(
          "select",
          [](ExactPass& p, const IArr& ranks, int num_threads) {
            if (ranks.ndim() != 3 || ranks.shape(0) != p.channels() || ranks.shape(1) != p.requests() ||
                ranks.shape(2) != 2)
              throw std::invalid_argument("internal: ranks must be (channels, m, 2)");
            py::array_t<double> out({ranks.shape(0), ranks.shape(1), static_cast<py::ssize_t>(2)});
            const std::int64_t* r = ranks.data();
            double* o = out.mutable_data();
            without_gil([&] { p.select(r, o, num_threads); });
            return out;
          },
          "ranks"_a, "num_threads"_a = 0)
      .def("counts",
           [](const ExactPass& p) {
             std::vector<std::int64_t> v;
             for (std::int64_t c = 0; c < p.channels(); ++c) v.push_back(static_cast<std::int64_t>(p.count(c)));
             return vec_array(v);
           })
      .def("nan_counts",
           [](const ExactPass& p) {
             std::vector<std::int64_t> v;
             for (std::int64_t c = 0; c < p.channels(); ++c) v.push_back(static_cast<std::int64_t>(p.nan_count(c)));
             return vec_array(v);
           })
      .def("checksums",
           [](const ExactPass& p) {
             py::array_t<std::uint64_t> out({static_cast<py::ssize_t>(p.channels()), static_cast<py::ssize_t>(2)});
             auto o = out.mutable_unchecked<2>();
             for (std::int64_t c = 0; c < p.channels(); ++c) {
               o(c, 0) = p.checksum(c).sum;
               o(c, 1) = p.checksum(c).xr;
             }
             return out;
           })
      .def("memory_bytes", [](const ExactPass& p) { return static_cast<std::int64_t>(p.memory_bytes()); })
      .def_property_readonly("cap", &ExactPass::cap)
      .def(
          "merge", [](ExactPass& p, const ExactPass& other) { without_gil([&] { p.merge(other); }); }, "other"_a)
      .def("get_state",
           [](const ExactPass& p) {
             const ExactPass::State st = p.state();
             const auto C = static_cast<py::ssize_t>(p.channels()), M = static_cast<py::ssize_t>(p.requests());
             auto shaped_d = [&](const std::vector<double>& v) {
               py::array_t<double> a({C, M});
               std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(double));
               return a;
             };
             auto shaped_u = [&](const std::vector<std::uint64_t>& v) {
               py::array_t<std::int64_t> a({C, M});
               for (std::size_t i = 0; i < v.size(); ++i) a.mutable_data()[i] = static_cast<std::int64_t>(v[i]);
               return a;
             };
             auto per_channel = [&](const std::vector<std::uint64_t>& v) {
               py::array_t<std::int64_t> a(C);
               for (std::size_t i = 0; i < v.size(); ++i) a.mutable_data()[i] = static_cast<std::int64_t>(v[i]);
               return a;
             };
             py::array_t<std::uint64_t> cks({C, static_cast<py::ssize_t>(2)});
             for (py::ssize_t c = 0; c < C; ++c) {
               cks.mutable_data()[2 * c] = st.checksums[static_cast<std::size_t>(c)].sum;
               cks.mutable_data()[2 * c + 1] = st.checksums[static_cast<std::size_t>(c)].xr;
             }
             py::dict d;
             d["lower"] = shaped_d(st.lower);
             d["upper"] = shaped_d(st.upper);
             d["below"] = shaped_u(st.below);
             d["eq_lower"] = shaped_u(st.eq_lo);
             d["eq_upper"] = shaped_u(st.eq_hi);
             d["inside_sizes"] = shaped_u(st.inside_sizes);
             d["inside"] = vec_array(st.inside);
             d["seen"] = per_channel(st.count);
             d["seen_nan"] = per_channel(st.nan_count);
             d["seen_checksum"] = cks;
             return d;
           })
      .def_static(
          "from_state",
          [](std::int64_t channels, std::int64_t m, std::int64_t cap, const DArr& lower, const DArr& upper,
             const IArr& below, const IArr& eq_lo, const IArr& eq_hi, const IArr& inside_sizes, const DArr& inside,
             const IArr& seen, const IArr& seen_nan, const UArr& seen_checksum) {
            // shapes and signs here; the rest in ExactPass::from_state
            if (channels < 1 || m < 1) throw std::invalid_argument("'num_channels' and 'q' must not be empty");
            const std::int64_t nb = checked_mul(channels, m, "exact pass state: channels x quantiles");
            ExactPass::State st;
            auto take_u = [&](const IArr& a, const char* name, std::int64_t n, std::vector<std::uint64_t>& out) {
              if (a.size() != n)
                throw std::invalid_argument(std::string("'") + name + "' must have " + std::to_string(n) + " entries");
              for (py::ssize_t i = 0; i < a.size(); ++i) {
                if (a.data()[i] < 0) throw std::invalid_argument(std::string("'") + name + "' must be >= 0");
                out.push_back(static_cast<std::uint64_t>(a.data()[i]));
              }
            };
            auto take_d = [&](const DArr& a, const char* name, std::int64_t n, std::vector<double>& out) {
              if (n >= 0 && a.size() != n)
                throw std::invalid_argument(std::string("'") + name + "' must have " + std::to_string(n) + " entries");
              out.assign(a.data(), a.data() + a.size());
            };
            take_d(lower, "lower", nb, st.lower);
            take_d(upper, "upper", nb, st.upper);
            take_u(below, "below", nb, st.below);
            take_u(eq_lo, "eq_lower", nb, st.eq_lo);
            take_u(eq_hi, "eq_upper", nb, st.eq_hi);
            take_u(inside_sizes, "inside_sizes", nb, st.inside_sizes);
            if (inside.ndim() != 1) throw std::invalid_argument("'inside' must be 1-D");
            take_d(inside, "inside", -1, st.inside);
            take_u(seen, "seen", channels, st.count);
            take_u(seen_nan, "seen_nan", channels, st.nan_count);
            if (seen_checksum.ndim() != 2 || seen_checksum.shape(0) != channels || seen_checksum.shape(1) != 2)
              throw std::invalid_argument("'seen_checksum' must have shape (" + std::to_string(channels) + ", 2)");
            for (std::int64_t c = 0; c < channels; ++c)
              st.checksums.push_back(quantile::Checksum{seen_checksum.data()[2 * c], seen_checksum.data()[2 * c + 1]});
            return ExactPass::from_state(channels, m, cap, std::move(st));
          },
          "channels"_a, "m"_a, "cap"_a, "lower"_a, "upper"_a, "below"_a, "eq_lower"_a, "eq_upper"_a,
          "inside_sizes"_a, "inside"_a, "seen"_a, "seen_nan"_a, "seen_checksum"_a);
}

}  // namespace interp_engine
