// Bindings for the iou area (filled in by the iou work).
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace interp_engine {
namespace py = pybind11;
void init_iou(py::module_& m) { (void)m; }
}  // namespace interp_engine
