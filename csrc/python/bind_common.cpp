// Thread settings, interrupt handling, interpreter exit and exception
// translation.
//
// Signals.  Python runs signal handlers on its main thread only, so only a
// call made from the main thread asks Python (every kInterruptPollMs, from
// the calling thread, taking the GIL for a moment) whether a handler raised;
// the exception it raised (KeyboardInterrupt for Ctrl-C) stops that call and
// is raised from it.  Calls made from other threads never take the GIL until
// they return, and nothing they see reaches another call.
//
// Interpreter exit.  Python 3.11-3.13 end a daemon thread that tries to take
// the GIL once finalization started with pthread_exit; unwinding through C++
// frames (catch (...), noexcept destructors, joinable std::threads) aborts.
// An atexit hook (run while the interpreter is intact, before finalization
// starts) therefore
//   1. marks the interpreter as exiting and stops every call in the core
//      (they stop at their next check, within milliseconds), then
//   2. waits, with the GIL released, until no call is still computing or
//      taking the GIL back.
// A call that ends after step 1 on any thread but the exiting one never takes
// the GIL again: its thread (a daemon thread the interpreter is about to
// abandon) sleeps until the process exits, as Python 3.14 does with such
// threads.  So no thread takes the GIL inside the core during finalization,
// and no worker thread is left running.  The exiting thread itself (later
// atexit hooks, __del__) keeps using the core normally.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#if !defined(_WIN32)
#include <pthread.h>
#endif

#include "common.hpp"
#include "interp_engine/cpu.hpp"

namespace interp_engine {
namespace py = pybind11;

namespace {
// Never destroyed: worker or parked threads may still use it while the
// process runs its static destructors.
struct ExitState {
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // calls with the GIL released, computing
  int leaving = 0;  // calls taking the GIL back
  bool exiting = false;
  std::thread::id exit_thread;
};
ExitState& exit_state() {
  static ExitState* s = new ExitState;
  return *s;
}

std::atomic<unsigned long> g_main_thread{0};  // PyThread_get_thread_ident() of Python's main thread

bool on_main_thread() { return PyThread_get_thread_ident() == g_main_thread.load(std::memory_order_relaxed); }

// The exception raised by a signal handler, per thread (the main thread), from
// the callback until the translator raises it.
struct PendingError {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* tb = nullptr;
};
thread_local PendingError t_pending;

void drop_pending() {  // GIL held
  Py_CLEAR(t_pending.type);
  Py_CLEAR(t_pending.value);
  Py_CLEAR(t_pending.tb);
}

[[noreturn]] void sleep_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

// Called from the owner thread of a call made on the main thread (GIL
// released): take the GIL and let Python run pending signal handlers.
bool python_interrupt_pending() {
#if PY_VERSION_HEX >= 0x030D0000
  if (Py_IsFinalizing()) return false;  // never take the GIL during finalization
#else
  if (_Py_IsFinalizing()) return false;
#endif
  PyGILState_STATE g = PyGILState_Ensure();
  bool raised = false;
  if (PyErr_CheckSignals() != 0) {
    drop_pending();
    PyErr_Fetch(&t_pending.type, &t_pending.value, &t_pending.tb);
    raised = true;
  }
  PyGILState_Release(g);
  return raised;
}

// atexit hook (GIL held): see the comment at the top of this file.
void on_interpreter_exit() {
  ExitState& st = exit_state();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.exiting = true;
    st.exit_thread = std::this_thread::get_id();
  }
  stop_all_calls();
  PyThreadState* ts = PyEval_SaveThread();
  {
    std::unique_lock<std::mutex> lock(st.mu);
    // calls stop within milliseconds; the bound only keeps a kernel without
    // checks from holding the exit forever (it then sleeps when it ends)
    st.cv.wait_for(lock, std::chrono::seconds(5), [&] { return st.running == 0; });
    st.cv.wait_for(lock, std::chrono::seconds(5), [&] { return st.leaving == 0; });
  }
  PyEval_RestoreThread(ts);
}

#if !defined(_WIN32)
// In a forked child only the forking thread exists, and CPython makes it the
// main thread; no call of another thread is in flight there.
void after_fork_child() {
  g_main_thread.store(PyThread_get_thread_ident());
  ExitState& st = exit_state();
  new (&st.mu) std::mutex();  // it may have been held by a thread that does not exist here
  new (&st.cv) std::condition_variable();
  st.running = 0;
  st.leaving = 0;
}
#endif
}  // namespace

namespace detail {
PyCall::PyCall() : scope_(on_main_thread()) {
  if (t_pending.type != nullptr) drop_pending();  // from a call that stopped elsewhere
}

PyCall::~PyCall() {
  if (tstate_ == nullptr) return;
  // Only reached when the thread is being unwound without the GIL (never in
  // practice): do not touch Python, just stop counting this call.
  ExitState& st = exit_state();
  std::lock_guard<std::mutex> lock(st.mu);
  --st.running;
  st.cv.notify_all();
}

void PyCall::release() {
  ExitState& st = exit_state();
  bool abandoned = false;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (st.exiting && std::this_thread::get_id() != st.exit_thread)
      abandoned = true;
    else
      ++st.running;
  }
  if (abandoned) {  // a thread reaching the core after the exit hook ran
    PyEval_SaveThread();
    sleep_forever();
  }
  tstate_ = PyEval_SaveThread();
}

void PyCall::reacquire() {
  ExitState& st = exit_state();
  bool abandoned = false;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    --st.running;
    st.cv.notify_all();
    if (st.exiting && std::this_thread::get_id() != st.exit_thread)
      abandoned = true;
    else
      ++st.leaving;
  }
  if (abandoned) {  // the interpreter is exiting: never take the GIL again
    tstate_ = nullptr;
    sleep_forever();
  }
  PyEval_RestoreThread(tstate_);
  tstate_ = nullptr;
  std::lock_guard<std::mutex> lock(st.mu);
  --st.leaving;
  st.cv.notify_all();
}
}  // namespace detail

void init_common(py::module_& m) {
  // pybind11 looks up numpy's C API (and its PEP 3118 parser) on first use,
  // releasing and re-taking the GIL in a destructor around a std::call_once:
  // a daemon thread making the process's first numpy call at exit would be
  // ended there by pthread_exit and abort.  Look them up now, at import.
  py::detail::npy_api::get();
  py::dtype(py::buffer_info(nullptr, sizeof(double), "d", 0));
  g_main_thread.store(py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>());
#if !defined(_WIN32)
  pthread_atfork(nullptr, nullptr, &after_fork_child);
#endif
  set_interrupt_callback(&python_interrupt_pending);
  py::module_::import("atexit").attr("register")(py::cpp_function(&on_interpreter_exit));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Interrupted&) {
      if (t_pending.type != nullptr) {
        PyErr_Restore(t_pending.type, t_pending.value, t_pending.tb);  // steals the references
        t_pending = PendingError{};
      } else {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
      }
    }
  });
  m.def("get_num_threads", &get_num_threads,
        "Threads the core uses by default (all cores unless set_num_threads was called).");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the default number of threads of the core (0 = all cores).");
  m.def(
      "cpu_features",
      [](bool capped) {
        const cpu::Features f = capped ? cpu::allowed() : cpu::detected();
        py::dict d;
        d["popcnt"] = f.popcnt;
        d["avx2"] = f.avx2;
        d["fma"] = f.fma;
        d["avx512f"] = f.avx512f;
        d["avx512bw"] = f.avx512bw;
        d["avx512dq"] = f.avx512dq;
        d["avx512vl"] = f.avx512vl;
        d["avx512vpopcntdq"] = f.avx512vpopcntdq;
        return d;
      },
      py::arg("capped") = true,
      "The optional instructions the kernels may use now (capped by INTERP_ENGINE_ISA), or with "
      "capped=False all the CPU has.");
  m.def(
      "cpu_isa", [] { return std::string(cpu::isa_name(cpu::needed(cpu::detected()))); },
      "The highest INTERP_ENGINE_ISA value that changes anything on this CPU: 'avx512', 'avx2' or 'generic'.");
#ifdef INTERP_ENGINE_VERSION
  m.attr("__version__") = INTERP_ENGINE_VERSION;
#endif
}

}  // namespace interp_engine
