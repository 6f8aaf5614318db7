"""Builds and runs the pure C++ tests in csrc/tests (no Python in the core)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPP_TESTS = sorted((ROOT / "csrc" / "tests").glob("test_*.cpp"))
CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
@pytest.mark.skipif(not CPP_TESTS, reason="needs the source checkout")
@pytest.mark.parametrize("src", CPP_TESTS, ids=[p.stem for p in CPP_TESTS])
def test_cpp_unit(src, tmp_path):
    sources = [src, *_sources(src)]
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


SRC = ROOT / "csrc" / "src"
INCLUDE = ROOT / "csrc" / "include"
_PUBLIC = re.compile(r'#include "interp_engine/(\w+)\.hpp"')
_PRIVATE = re.compile(r'#include "(\w+\.hpp)"')


def _area_files(area):
    """csrc/src/<area>.cpp and the files of its stages, csrc/src/<area>_<stage>.cpp."""
    return sorted(p for p in SRC.glob("*.cpp") if p.stem == area or p.stem.startswith(area + "_"))


def _sources(src):
    """The core sources a C++ test links: parallel.cpp (every area's threads),
    then, transitively, the sources of every area whose public header
    (`#include "interp_engine/<area>.hpp"`) the test, a source or a header
    includes; the private headers next to the sources (`#include "x.hpp"`)
    are followed too."""
    out = [SRC / "parallel.cpp"]
    seen_areas, seen_files = {"parallel"}, set()
    todo = [src, SRC / "parallel.cpp"]
    while todo:
        f = todo.pop()
        if f in seen_files or not f.exists():
            continue
        seen_files.add(f)
        text = f.read_text()
        for name in _PRIVATE.findall(text):
            todo.append(f.parent / name)
        for area in _PUBLIC.findall(text):
            todo.append(INCLUDE / "interp_engine" / f"{area}.hpp")
            if area in seen_areas:
                continue
            seen_areas.add(area)
            files = _area_files(area)
            out += files
            todo += files
    return out
