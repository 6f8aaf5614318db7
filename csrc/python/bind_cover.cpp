// Bindings for the cover area (filled in by the cover work).
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace interp_engine {
namespace py = pybind11;
void init_cover(py::module_& m) { (void)m; }
}  // namespace interp_engine
