// Helpers shared by the bind_<area>.cpp files: nothing algorithmic here.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "interp_engine/parallel.hpp"

#if defined(__GLIBCXX__)
#include <cxxabi.h>
#endif

namespace interp_engine {
namespace py = pybind11;

// Arrays the core reads through typed pointers: C order, converted to the
// type, and aligned (numpy copies a view that starts at an odd address).
constexpr int kIn = py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
template <typename T>
using In = py::array_t<T, kIn>;

// Fills the fields every 4-d maps view of the core has (data, B, K, h, w and
// byte strides) from an array of any strides; the caller checks ndim == 4 and
// the element type.  The array must outlive the view.
template <typename View>
void set_maps_view(View& v, const py::array& x) {
  v.data = x.data();
  v.B = x.shape(0);
  v.K = x.shape(1);
  v.h = x.shape(2);
  v.w = x.shape(3);
  for (int i = 0; i < 4; ++i) v.stride[i] = x.strides(i);
}

namespace detail {
// One call from Python into the core, made with the GIL held (see
// bind_common.cpp for the rules at interpreter exit).  It opens the call's
// CallScope (which asks Python about signals only on Python's main thread),
// and releases and re-takes the GIL with plain calls, never from a
// destructor: Python 3.11-3.13 end a daemon thread that takes the GIL during
// finalization with pthread_exit, whose unwinding must not cross a noexcept
// frame.  The core's worker threads never take the GIL.
class PyCall {
 public:
  PyCall();
  ~PyCall();
  PyCall(const PyCall&) = delete;
  PyCall& operator=(const PyCall&) = delete;
  void release();    // GIL held -> released
  void reacquire();  // GIL released -> held (a thread the interpreter has abandoned at exit never returns)

 private:
  CallScope scope_;
  PyThreadState* tstate_ = nullptr;
};
}  // namespace detail

// Runs `fn` with the GIL released, as one call of the core (its own stop
// flag; Ctrl-C on the main thread stops it).  Every release of the GIL in the
// bindings goes through here.  Interrupted becomes the exception raised by
// the signal handler (KeyboardInterrupt for Ctrl-C).
template <typename F>
auto without_gil(F&& fn) -> decltype(fn()) {
  using R = decltype(fn());
  if constexpr (std::is_void<R>::value) {
    without_gil([&] {
      fn();
      return true;
    });
  } else {
    detail::PyCall call;
    std::exception_ptr err;
    std::optional<R> out;
    call.release();
    try {
      out.emplace(fn());
    }
#if defined(__GLIBCXX__)
    catch (abi::__forced_unwind&) {
      throw;
    }
#endif
    catch (...) {
      err = std::current_exception();
    }
    call.reacquire();
    if (err) std::rethrow_exception(err);
    return std::move(*out);
  }
}

// "float32" etc. for error messages.
inline std::string dtype_name(const py::array& a) {
  return py::str(a.dtype()).cast<std::string>();
}

}  // namespace interp_engine
