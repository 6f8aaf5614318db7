"""Build of the compiled core ``interp_engine._core`` (pybind11, C++17).

Environment variables:
  INTERP_ENGINE_MARCH_NATIVE=1  add -march=native (off by default: a wheel must
                                run on other CPUs than the one that built it).
  INTERP_ENGINE_DEBUG=1         -O0 -g and assertions on.
  INTERP_ENGINE_SANITIZE=1      AddressSanitizer + UndefinedBehaviorSanitizer build
                                (-O1 -g, any UB aborts); for tools/sanitize.sh, which
                                builds into a separate directory and runs the tests
                                with libasan preloaded.  Never for a wheel.
"""
import os
import sys
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

VERSION = "0.1.0"

# compile the translation units in parallel (NPY_NUM_BUILD_JOBS overrides the count)
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

debug = os.environ.get("INTERP_ENGINE_DEBUG") == "1"
sanitize = os.environ.get("INTERP_ENGINE_SANITIZE") == "1"
extra_compile_args = ["-O0", "-g"] if debug else ["-O3", "-DNDEBUG"]
extra_link_args = []
if sanitize:
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    extra_compile_args = ["-O1", "-g"] + san
    extra_link_args = list(san)
if sys.platform != "win32":
    extra_compile_args += ["-fvisibility=hidden", "-fno-math-errno", "-pthread"]
    extra_link_args += ["-pthread"]
if os.environ.get("INTERP_ENGINE_MARCH_NATIVE") == "1":
    extra_compile_args.append("-march=native")

sources = sorted(glob("csrc/src/*.cpp")) + sorted(glob("csrc/python/*.cpp"))

ext = Pybind11Extension(
    "interp_engine._core",
    sources,
    include_dirs=["csrc/include"],
    # the public headers, the private ones of the areas split into several files, the bindings'
    depends=sorted(glob("csrc/include/interp_engine/*.hpp") + glob("csrc/src/*.hpp") + glob("csrc/python/*.hpp")),
    cxx_std=17,
    define_macros=[("INTERP_ENGINE_VERSION", f'"{VERSION}"')],
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(
    version=VERSION,
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
)
