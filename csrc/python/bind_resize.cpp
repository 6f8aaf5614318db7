// Bindings for the resize area: interp_engine._core.resize_maps / resize_above
// (the Python functions in interp_engine.engine.resize validate and convert
// the inputs; this layer only checks what it needs to read the buffers safely).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common.hpp"
#include "interp_engine/resize.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
using resize::Dtype;
using resize::MapsView;
using resize::Method;

Dtype dtype_of(const std::string& k) {
  if (k == "f16") return Dtype::F16;
  if (k == "bf16") return Dtype::BF16;
  if (k == "f32") return Dtype::F32;
  if (k == "f64") return Dtype::F64;
  throw py::value_error("kind must be one of f16, bf16, f32, f64; got " + k);
}

std::size_t dtype_size(Dtype d) { return d == Dtype::F64 ? 8 : d == Dtype::F32 ? 4 : 2; }

Method method_of(const std::string& m) {
  if (m == "bilinear") return Method::Bilinear;
  if (m == "antialias") return Method::Antialias;
  if (m == "pil") return Method::Pil;
  throw py::value_error("method must be one of 'bilinear', 'antialias', 'pil'; got '" + m + "'");
}

MapsView view_of(const py::array& x, const std::string& kind, const std::string& name) {
  if (x.ndim() != 4) throw py::value_error(name + " must be 4-dimensional (B, K, h, w)");
  MapsView v;
  v.dtype = dtype_of(kind);
  if (static_cast<std::size_t>(x.itemsize()) != dtype_size(v.dtype))
    throw py::type_error(name + ": element size does not match kind " + kind);
  v.data = x.data();
  v.B = x.shape(0);
  v.K = x.shape(1);
  v.h = x.shape(2);
  v.w = x.shape(3);
  for (int i = 0; i < 4; ++i) v.stride[i] = x.strides(i);
  return v;
}

// Runs the kernel without the GIL; a NaN becomes a ValueError naming `name`
// and the map ("image b, unit k" for activations, "[b, k]" otherwise; b
// counted from `offset`).
template <typename F>
void run(F&& fn, const std::string& name, bool image_unit, std::int64_t offset = 0) {
  try {
    without_gil([&] {
      fn();
      return 0;
    });
  } catch (const resize::NanFound& e) {
    const std::string where = image_unit
                                  ? "image " + std::to_string(e.b + offset) + ", unit " + std::to_string(e.k)
                                  : "map [" + std::to_string(e.b) + ", " + std::to_string(e.k) + "]";
    throw py::value_error(name + " must not contain NaN (" + where + ")");
  }
}
}  // namespace

void init_resize(py::module_& m) {
  m.def(
      "resize_maps",
      [](const py::array& x, const std::string& kind, std::int64_t out_h, std::int64_t out_w,
         const std::string& method, int num_threads, const std::string& name, bool image_unit) {
        const MapsView v = view_of(x, kind, name);
        const Method me = method_of(method);
        resize::output_values(v, out_h, out_w);  // size checks before the allocation
        const std::vector<py::ssize_t> shape{v.B, v.K, out_h, out_w};
        py::array out = me == Method::Pil ? py::array(py::array_t<float>(shape))
                                          : py::array(py::array_t<double>(shape));
        void* dst = out.mutable_data();
        run([&] { resize::resize_maps(v, out_h, out_w, me, dst, num_threads); }, name, image_unit);
        return out;
      },
      py::arg("x"), py::arg("kind"), py::arg("out_h"), py::arg("out_w"), py::arg("method"),
      py::arg("num_threads") = 0, py::arg("name") = "x", py::arg("image_unit") = false,
      "Resize (B, K, h, w) maps to (out_h, out_w): float64 for 'bilinear' and 'antialias', "
      "float32 for 'pil' (see interp_engine.engine.resize.resize_maps).");
  m.def(
      "resize_above",
      [](const py::array& x, const std::string& kind,
         const py::array_t<double, py::array::c_style | py::array::forcecast>& thresholds, std::int64_t out_h,
         std::int64_t out_w, const std::string& method, int num_threads, const std::string& name,
         bool image_unit, std::int64_t image_offset) {
        const MapsView v = view_of(x, kind, name);
        const Method me = method_of(method);
        if (thresholds.ndim() != 1 || thresholds.shape(0) != v.K)
          throw py::value_error("thresholds must have shape (K,) = (" + std::to_string(v.K) + ",)");
        resize::output_values(v, out_h, out_w);
        py::array_t<std::uint16_t> out(std::vector<py::ssize_t>{v.B, v.K, out_h, out_w});
        std::uint16_t* dst = out.mutable_data();
        const double* thr = thresholds.data();
        run([&] { resize::resize_above(v, out_h, out_w, me, thr, dst, num_threads); }, name, image_unit,
            image_offset);
        return out;
      },
      py::arg("x"), py::arg("kind"), py::arg("thresholds"), py::arg("out_h"), py::arg("out_w"),
      py::arg("method"), py::arg("num_threads") = 0, py::arg("name") = "x", py::arg("image_unit") = false,
      py::arg("image_offset") = 0,
      "Resize (B, K, h, w) maps and binarize against thresholds (K,): float16 bit patterns of 1 "
      "(value > threshold) and 0, as a uint16 (B, K, out_h, out_w) array.");
  m.def(
      "resize_taps",
      [](std::int64_t in, std::int64_t out, bool pil) {
        const resize::Taps t = resize::make_taps(in, out, pil);
        py::array_t<std::int64_t> start(static_cast<py::ssize_t>(out)), count(static_cast<py::ssize_t>(out));
        py::array_t<double> w(static_cast<py::ssize_t>(t.w.size()));
        for (std::int64_t i = 0; i < out; ++i) {
          start.mutable_at(i) = t.start[i];
          count.mutable_at(i) = t.count[i];
        }
        for (std::size_t i = 0; i < t.w.size(); ++i) w.mutable_at(static_cast<py::ssize_t>(i)) = t.w[i];
        return py::make_tuple(start, count, w);
      },
      py::arg("in_size"), py::arg("out_size"), py::arg("pil") = false,
      "The antialiased filter's taps for one axis: (start, count, weights) (for tests).");
}

}  // namespace interp_engine
