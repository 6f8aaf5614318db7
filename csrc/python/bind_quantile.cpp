// Bindings for the quantile area (filled in by the quantile work).
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace interp_engine {
namespace py = pybind11;
void init_quantile(py::module_& m) { (void)m; }
}  // namespace interp_engine
