// Checked size arithmetic and the allocation limit shared by every kernel.
//
// Pure C++17, header only, no Python.
//
// Every product or sum of user-given sizes goes through checked_mul /
// checked_add (overflow is detected, never wrapped), and every allocation
// whose size follows from user input is first checked against
// memory_limit_bytes() with require_memory():
//  * a size whose arithmetic overflows, or exceeds what a kernel's index type
//    can address, is a user error: std::invalid_argument (ValueError in
//    Python) naming the sizes;
//  * an allocation that fits the arithmetic but could never be satisfied
//    (more bytes than the process may use: the machine's physical memory, or
//    the cgroup memory limit of a container when lower) throws TooLarge, a
//    std::bad_alloc (MemoryError in Python) with a message naming what was
//    asked, before anything is allocated or touched.  Without this, a
//    resize to tens of GB is either refused late (after other buffers were
//    filled) or granted by overcommit and then killed by the OOM killer.
//  * Below the limit, allocations go to the system allocator as usual
//    (std::bad_alloc -> MemoryError).
//
// INTERP_ENGINE_MEMORY_LIMIT=<bytes> in the environment lowers the limit (read
// at every check; for tests and for users who share a machine).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace interp_engine {

// *r = a op b; true on overflow (the GCC/Clang builtins, or a portable test)
inline bool mul_overflows(std::int64_t a, std::int64_t b, std::int64_t* r) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_mul_overflow(a, b, r);
#else
  if (a != 0 && ((b > 0 && (a > INT64_MAX / b || a < INT64_MIN / b)) ||
                 (b < 0 && (a == INT64_MIN || -a > INT64_MAX / -b || -a < INT64_MIN / -b))))
    return true;
  *r = a * b;
  return false;
#endif
}
inline bool add_overflows(std::int64_t a, std::int64_t b, std::int64_t* r) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_add_overflow(a, b, r);
#else
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return true;
  *r = a + b;
  return false;
#endif
}

// An allocation larger than the process may ever get (see above).
class TooLarge : public std::bad_alloc {
 public:
  explicit TooLarge(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

// a * b for sizes >= 0; throws invalid_argument("<what>: a x b overflows") on overflow.
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r;
  if (a < 0 || b < 0 || mul_overflows(a, b, &r))
    throw std::invalid_argument(std::string(what) + ": size " + std::to_string(a) + " x " + std::to_string(b) +
                                " is too large (it overflows 64-bit arithmetic)");
  return r;
}
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, std::int64_t c, const char* what) {
  return checked_mul(checked_mul(a, b, what), c, what);
}
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r;
  if (add_overflows(a, b, &r))
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(a) + " + " + std::to_string(b) +
                                " overflows 64-bit arithmetic");
  return r;
}

// Running total of the bytes a call will allocate, in checked arithmetic:
//   Bytes need("IoUTally.update");  need.add(n, sizeof(double)); ...
//   need.require();   // TooLarge when over the limit
// Overflow of the total is itself "too large" (TooLarge).
class Bytes {
 public:
  explicit Bytes(const char* what) : what_(what) {}
  // count items of `size` bytes (count >= 0)
  Bytes& add(std::int64_t count, std::size_t size) {
    std::int64_t b;
    if (count < 0 || mul_overflows(count, static_cast<std::int64_t>(size), &b) ||
        add_overflows(total_, b, &total_))
      overflow_ = true;
    return *this;
  }
  std::int64_t total() const { return overflow_ ? std::numeric_limits<std::int64_t>::max() : total_; }
  inline void require() const;

 private:
  const char* what_;
  std::int64_t total_ = 0;
  bool overflow_ = false;
};

// Bytes this process may allocate at most: min(physical memory, cgroup
// limit, INTERP_ENGINE_MEMORY_LIMIT).  The machine figures are read once.
inline std::int64_t memory_limit_bytes() {
  static const std::int64_t machine = [] {
    std::int64_t lim = std::numeric_limits<std::int64_t>::max();
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    std::int64_t phys;
    if (pages > 0 && page > 0 && !mul_overflows(static_cast<std::int64_t>(pages),
                                                         static_cast<std::int64_t>(page), &phys))
      lim = phys;
#endif
#if defined(__linux__)
    for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
      if (std::FILE* f = std::fopen(path, "r")) {
        long long v = 0;
        if (std::fscanf(f, "%lld", &v) == 1 && v > 0 && v < lim) lim = static_cast<std::int64_t>(v);
        std::fclose(f);  // "max" (no limit) does not parse: ignored
      }
    }
#endif
    return lim;
  }();
  std::int64_t lim = machine;
  if (const char* env = std::getenv("INTERP_ENGINE_MEMORY_LIMIT")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && v >= 0 && v < lim) lim = static_cast<std::int64_t>(v);
  }
  return lim;
}

inline void Bytes::require() const {
  const std::int64_t lim = memory_limit_bytes();
  if (!overflow_ && total_ <= lim) return;
  std::string need = overflow_ ? std::string("more than 2^63") : std::to_string(total_);
  throw TooLarge(std::string(what_) + ": needs " + need + " bytes of memory, more than this process may use (" +
                 std::to_string(lim) +
                 " bytes: physical memory, cgroup limit or INTERP_ENGINE_MEMORY_LIMIT); "
                 "use smaller sizes");
}

// One allocation of count items of `size` bytes.
inline void require_memory(std::int64_t count, std::size_t size, const char* what) {
  Bytes(what).add(count, size).require();
}

}  // namespace interp_engine
