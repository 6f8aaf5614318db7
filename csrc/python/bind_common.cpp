// Thread settings, interrupt handling and exception translation.
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
// Called from the thread that entered the core (GIL released): take the GIL
// and ask Python whether a signal (Ctrl-C) is pending.
bool python_interrupt_pending() {
  py::gil_scoped_acquire acquire;
  if (PyErr_CheckSignals() != 0) {
    PyErr_Clear();  // re-raised as KeyboardInterrupt by the translator
    return true;
  }
  return false;
}
}  // namespace

void init_common(py::module_& m) {
  set_interrupt_callback(&python_interrupt_pending);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Interrupted&) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });
  m.def("get_num_threads", &get_num_threads,
        "Threads the core uses by default (all cores unless set_num_threads was called).");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the default number of threads of the core (0 = all cores).");
#ifdef INTERP_ENGINE_VERSION
  m.attr("__version__") = INTERP_ENGINE_VERSION;
#endif
}

}  // namespace interp_engine
