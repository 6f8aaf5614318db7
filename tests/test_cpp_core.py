"""Builds and runs the pure C++ tests in csrc/tests (no Python in the core)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP_TESTS = sorted((ROOT / "csrc" / "tests").glob("test_*.cpp"))
CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
@pytest.mark.skipif(not CPP_TESTS, reason="needs the source checkout")
@pytest.mark.parametrize("src", CPP_TESTS, ids=[p.stem for p in CPP_TESTS])
def test_cpp_unit(src, tmp_path):
    area = src.stem[len("test_"):]
    sources = [src, ROOT / "csrc" / "src" / "parallel.cpp"]
    sources += [p for p in (ROOT / "csrc" / "src").glob("*.cpp")
                if p.stem != "parallel" and (p.stem == area or p.stem in _deps(src))]
    exe = tmp_path / src.stem
    cmd = [CXX, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
           "-I", str(ROOT / "csrc" / "include"), *map(str, sources), "-pthread", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 and "sanitize" in res.stderr:  # toolchain without sanitizer runtimes
        cmd = [c for c in cmd if not c.startswith("-fsanitize")]
        res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def _deps(src):
    """Other areas a C++ test needs, from its `#include "interp_engine/<area>.hpp"` lines."""
    import re
    return set(re.findall(r'#include "interp_engine/(\w+)\.hpp"', src.read_text()))
