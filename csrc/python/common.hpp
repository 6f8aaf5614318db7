// Helpers shared by the bind_<area>.cpp files: nothing algorithmic here.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "interp_engine/parallel.hpp"

namespace interp_engine {
namespace py = pybind11;

// Runs `fn` with the GIL released; Interrupted becomes KeyboardInterrupt.
template <typename F>
auto without_gil(F&& fn) -> decltype(fn()) {
  py::gil_scoped_release release;
  return fn();
}

// "float32" etc. for error messages.
inline std::string dtype_name(const py::array& a) {
  return py::str(a.dtype()).cast<std::string>();
}

}  // namespace interp_engine
