// Bindings for the iou area: interp_engine._core.IoUTallyCore (the Python
// class interp_engine.engine.iou.IoUTally validates and converts the inputs;
// this layer only checks what it needs to read the buffers safely).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "interp_engine/iou.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
using iou::IoUTally;

iou::IntKind int_kind(const py::array& a, const char* name) {
  const py::dtype dt = a.dtype();
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'i') {
    if (size == 1) return iou::IntKind::I8;
    if (size == 2) return iou::IntKind::I16;
    if (size == 4) return iou::IntKind::I32;
    if (size == 8) return iou::IntKind::I64;
  } else if (kind == 'u') {
    if (size == 1) return iou::IntKind::U8;
    if (size == 2) return iou::IntKind::U16;
    if (size == 4) return iou::IntKind::U32;
    if (size == 8) return iou::IntKind::U64;
  }
  throw py::type_error(std::string(name) + " must have an integer dtype; got " + dtype_name(a));
}

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
  return out;
}

template <typename T>
std::vector<T> from_numpy(const In<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

}  // namespace

void init_iou(py::module_& m) {
  py::class_<IoUTally>(m, "IoUTallyCore",
                       "Network Dissection count accumulator (core; use "
                       "interp_engine.engine.iou.IoUTally).")
      .def(py::init([](std::int64_t num_units, std::int64_t num_labels,
                       In<std::int32_t> label_category,
                       std::int64_t num_categories, std::int64_t out_h, std::int64_t out_w, bool lite) {
             return IoUTally(num_units, num_labels, from_numpy(label_category), num_categories,
                             out_h, out_w, lite ? iou::UnitRule::Lite : iou::UnitRule::Annotated);
           }),
           py::arg("num_units"), py::arg("num_labels"), py::arg("label_category"),
           py::arg("num_categories"), py::arg("out_h"), py::arg("out_w"), py::arg("lite"))
      .def(
          "update",
          [](IoUTally& self, const py::array& acts, const std::string& kind,
             const In<double>& thresholds,
             const py::object& pixel_labels, const py::object& image_labels,
             const py::object& image_categories, int num_threads) {
            if (acts.ndim() != 4) throw py::value_error("activations must be 4-dimensional");
            iou::ActivationView av;
            av.dtype = dtype_from_name(kind);
            if (static_cast<std::size_t>(acts.itemsize()) != dtype_size(av.dtype))
              throw py::type_error("activations: element size does not match kind " + kind);
            set_maps_view(av, acts);
            if (thresholds.ndim() != 1 || thresholds.shape(0) != av.K || av.K != self.num_units())
              throw py::value_error("thresholds must have shape (num_units,)");
            iou::LabelView lv;
            py::array pl;
            if (!pixel_labels.is_none()) {
              pl = py::array::ensure(pixel_labels, py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_);
              if (!pl || pl.ndim() != 4) throw py::value_error("pixel_labels must be a 4-dimensional array");
              lv.kind = int_kind(pl, "pixel_labels");
              lv.data = pl.data();
              lv.B = pl.shape(0);
              lv.P = pl.shape(1);
              lv.sh = pl.shape(2);
              lv.sw = pl.shape(3);
            }
            In<std::int64_t> il;
            std::int64_t S = 0;
            if (!image_labels.is_none()) {
              il = In<std::int64_t>::ensure(image_labels);
              if (!il || il.ndim() != 2 || il.shape(0) != av.B)
                throw py::value_error("image_labels must have shape (B, S)");
              S = il.shape(1);
            }
            In<std::uint8_t> ic;
            if (!image_categories.is_none()) {
              ic = In<std::uint8_t>::ensure(image_categories);
              if (!ic || ic.ndim() != 2 || ic.shape(0) != av.B || ic.shape(1) != self.num_categories())
                throw py::value_error("image_categories must have shape (B, num_categories)");
            }
            const double* thr = thresholds.data();
            const iou::LabelView* lvp = pixel_labels.is_none() ? nullptr : &lv;
            const std::int64_t* ilp = image_labels.is_none() ? nullptr : il.data();
            const std::uint8_t* icp = image_categories.is_none() ? nullptr : ic.data();
            without_gil([&] {
              self.update(av, thr, lvp, ilp, S, icp, num_threads);
              return 0;
            });
          },
          py::arg("activations"), py::arg("kind"), py::arg("thresholds"), py::arg("pixel_labels"),
          py::arg("image_labels"), py::arg("image_categories"), py::arg("num_threads") = 0)
      .def("merge", &IoUTally::merge, py::arg("other"))
      .def("compatible", &IoUTally::compatible, py::arg("other"))
      .def("iou",
           [](const IoUTally& self) {
             std::vector<double> v = without_gil([&] { return self.iou(); });
             return to_numpy(v, {self.num_units(), self.num_labels()});
           })
      .def("set_counts",
           [](IoUTally& self, const In<std::int64_t>& I,
              const In<std::int64_t>& L,
              const In<std::int64_t>& A,
              std::int64_t images, std::int64_t maps_per_image) {
             self.set_counts(from_numpy(I), from_numpy(L), from_numpy(A), images, maps_per_image);
           },
           py::arg("intersection"), py::arg("label_pixels"), py::arg("unit_pixels"), py::arg("images"),
           py::arg("maps_per_image") = -1)
      .def_property_readonly("intersection",
                             [](const IoUTally& s) {
                               return to_numpy(s.intersection(), {s.num_units(), s.num_labels()});
                             })
      .def_property_readonly("label_pixels",
                             [](const IoUTally& s) { return to_numpy(s.label_pixels(), {s.num_labels()}); })
      .def_property_readonly("unit_pixels",
                             [](const IoUTally& s) {
                               return to_numpy(s.unit_pixels(), {s.num_units(), s.num_categories()});
                             })
      .def_property_readonly("label_category",
                             [](const IoUTally& s) {
                               return to_numpy(s.label_category(),
                                               {static_cast<py::ssize_t>(s.label_category().size())});
                             })
      .def_property_readonly("images", &IoUTally::images)
      .def_property_readonly("_last_masked_images", &IoUTally::last_masked_images)
      .def_property_readonly("num_units", &IoUTally::num_units)
      .def_property_readonly("num_labels", &IoUTally::num_labels)
      .def_property_readonly("num_categories", &IoUTally::num_categories)
      .def_property_readonly("out_h", &IoUTally::out_h)
      .def_property_readonly("out_w", &IoUTally::out_w)
      .def_property_readonly("lite", [](const IoUTally& s) { return s.rule() == iou::UnitRule::Lite; });

  m.def(
      "iou_upsample_bilinear",
      [](const In<double>& a, std::int64_t out_h,
         std::int64_t out_w) {
        if (a.ndim() != 2) throw py::value_error("a must be 2-dimensional (h, w)");
        if (a.shape(0) < 1 || a.shape(1) < 1 || out_h < 1 || out_w < 1)
          throw py::value_error("sizes must be positive");
        std::vector<double> v =
            without_gil([&] { return iou::upsample_bilinear(a.data(), a.shape(0), a.shape(1), out_h, out_w); });
        return to_numpy(v, {out_h, out_w});
      },
      py::arg("a"), py::arg("out_h"), py::arg("out_w"),
      "Bilinear upsampling (half-pixel centres, edges clamped) of one float64 (h, w) map with "
      "the exact arithmetic IoUTally binarizes (torch's generic CPU kernel on FMA hardware).");
  m.def("iou_hot_bound", &iou::hot_bound, py::arg("threshold"),
        "Cells at or below this value can never make an upsampled pixel exceed threshold.");
}

}  // namespace interp_engine
