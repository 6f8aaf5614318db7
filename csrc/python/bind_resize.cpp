// Bindings for the resize area: interp_engine._core.resize_maps / resize_above
// (the Python functions in interp_engine.engine.resize validate and convert
// the inputs; this layer only checks what it needs to read the buffers safely).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdio>
#include <string>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "common.hpp"
#include "interp_engine/resize.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
using resize::MapsView;
using resize::Method;

Method method_of(const std::string& m) {
  if (m == "bilinear") return Method::Bilinear;
  if (m == "antialias") return Method::Antialias;
  if (m == "pil") return Method::Pil;
  throw py::value_error("method must be one of 'bilinear', 'antialias', 'pil'; got '" + m + "'");
}

MapsView view_of(const py::array& x, const std::string& kind, const std::string& name) {
  if (x.ndim() != 4) throw py::value_error(name + " must be 4-dimensional (B, K, h, w)");
  MapsView v;
  v.dtype = dtype_from_name(kind);
  if (static_cast<std::size_t>(x.itemsize()) != dtype_size(v.dtype))
    throw py::type_error(name + ": element size does not match kind " + kind);
  set_maps_view(v, x);
  return v;
}

// Memory this process may still use, in bytes (Linux: MemAvailable and the
// cgroup v2 limit; elsewhere the physical memory; -1 when unknown).
std::int64_t available_memory() {
  std::int64_t avail = -1;
#if defined(__linux__)
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
        avail = static_cast<std::int64_t>(kb) * 1024;
        break;
      }
    std::fclose(f);
  }
  long long mx = 0, cur = 0;
  FILE* fm = std::fopen("/sys/fs/cgroup/memory.max", "r");
  FILE* fc = std::fopen("/sys/fs/cgroup/memory.current", "r");
  if (fm && fc && std::fscanf(fm, "%lld", &mx) == 1 && std::fscanf(fc, "%lld", &cur) == 1 && mx > cur) {
    const std::int64_t left = static_cast<std::int64_t>(mx - cur);
    avail = avail < 0 ? left : std::min(avail, left);
  }
  if (fm) std::fclose(fm);
  if (fc) std::fclose(fc);
#endif
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
  if (avail < 0) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) avail = static_cast<std::int64_t>(pages) * page;
  }
#endif
  return avail;
}

// MemoryError, before anything is allocated, when the output (`values`
// elements of `elem` bytes) and the work buffers of the threads would not fit
// in the memory left: such a call could only end in swapping or the OOM
// killer.
void check_memory(const MapsView& v, std::int64_t out_h, std::int64_t out_w, std::int64_t values,
                  std::int64_t elem, int num_threads, const std::string& what) {
  // sizes are overflow-checked by resize::output_values (each product x 8)
  const std::int64_t maps = v.B * v.K;
  std::int64_t threads = num_threads > 0 ? num_threads : get_num_threads();
  threads = std::max<std::int64_t>(1, std::min(threads, maps));
  const long double per_thread = 8.0L * (static_cast<long double>(v.h) * v.w + 2.0L * v.h * out_w +
                                         2.0L * out_h * out_w);
  const long double need = static_cast<long double>(values) * elem + threads * per_thread;
  const std::int64_t avail = available_memory();
  if (avail >= 0 && need > static_cast<long double>(avail)) {
    const std::string msg = what + " need about " + std::to_string(static_cast<std::int64_t>(need / (1 << 20))) +
                            " MiB; " + std::to_string(avail / (1 << 20)) + " MiB of memory are available";
    PyErr_SetString(PyExc_MemoryError, msg.c_str());
    throw py::error_already_set();
  }
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
        const std::int64_t n = resize::output_values(v, out_h, out_w);  // size checks before the allocation
        check_memory(v, out_h, out_w, n, me == Method::Pil ? 4 : 8, num_threads, "the resized maps");
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
        check_memory(v, out_h, out_w, resize::output_values(v, out_h, out_w), 4, num_threads,
                     "the binarized maps");
        py::array_t<float> out(std::vector<py::ssize_t>{v.B, v.K, out_h, out_w});
        float* dst = out.mutable_data();
        const double* thr = thresholds.data();
        run([&] { resize::resize_above(v, out_h, out_w, me, thr, dst, num_threads); }, name, image_unit,
            image_offset);
        return out;
      },
      py::arg("x"), py::arg("kind"), py::arg("thresholds"), py::arg("out_h"), py::arg("out_w"),
      py::arg("method"), py::arg("num_threads") = 0, py::arg("name") = "x", py::arg("image_unit") = false,
      py::arg("image_offset") = 0,
      "Resize (B, K, h, w) maps and binarize against thresholds (K,): a float32 (B, K, out_h, out_w) "
      "array of 1 (value > threshold) and 0.");
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
