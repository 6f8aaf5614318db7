// The compiled module interp_engine._core: it only calls the init_<area>
// functions of the bind_<area>.cpp files.
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace py = pybind11;

namespace interp_engine {
void init_common(py::module_& m);
void init_quantile(py::module_& m);
void init_iou(py::module_& m);
void init_cover(py::module_& m);
void init_rank(py::module_& m);
void init_resize(py::module_& m);
}  // namespace interp_engine

PYBIND11_MODULE(_core, m) {
  m.doc() = "interp_engine compiled core (C++17, no libtorch)";
  interp_engine::init_common(m);
  interp_engine::init_quantile(m);
  interp_engine::init_iou(m);
  interp_engine::init_cover(m);
  interp_engine::init_rank(m);
  interp_engine::init_resize(m);
}
