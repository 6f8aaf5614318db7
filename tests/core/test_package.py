"""Packaging contracts: clear import error, public API, stubs, CI = README."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import interp_engine

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_exported():
    for name in interp_engine.__all__:
        assert hasattr(interp_engine, name), name
    for name in ("ChannelQuantiles", "IoUTally", "greedy_cover", "ratio_greedy_cover"):
        assert name in interp_engine.__all__


def test_typing_files_shipped():
    pkg = Path(interp_engine.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = pkg / "_core.pyi"
    assert stub.exists()
    text = stub.read_text()
    # every public name of the compiled module is described in the stub
    for name in dir(interp_engine._core):
        if not name.startswith("_"):
            assert re.search(rf"\b{name}\b", text), f"{name} missing from _core.pyi"


def test_missing_extension_fails_at_import_with_clear_message(tmp_path):
    # copy the pure-Python package without the compiled module and import it
    pkg = Path(interp_engine.__file__).parent
    dst = tmp_path / "interp_engine"
    dst.mkdir()
    for p in pkg.rglob("*.py"):
        target = dst / p.relative_to(pkg)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(p.read_text())
    code = "import interp_engine"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert res.returncode != 0
    assert "compiled core (interp_engine._core) could not be imported" in res.stderr
    assert "pip install ." in res.stderr


def test_num_threads_roundtrip():
    old = interp_engine.get_num_threads()
    try:
        interp_engine.set_num_threads(1)
        assert interp_engine.get_num_threads() == 1
        with pytest.raises(ValueError, match="num_threads must be >= 0"):
            interp_engine.set_num_threads(-1)
    finally:
        interp_engine.set_num_threads(0)
    # 0 = all cores: what the C++ runtime reports (std::thread::hardware_concurrency, os.cpu_count's source)
    assert interp_engine.get_num_threads() == (os.cpu_count() or 1)


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Quick start.*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert m, "README needs a '## Quick start' section with a code block"
    return [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


@pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="needs the source checkout")
def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmds[1] in ci.splitlines(), "the README's test command must be what .ci/run runs"


def test_lazy_data_names_are_the_broden_modules():
    # interp_engine.data lists the Broden reader's names without importing it (it needs torch)
    import interp_engine.data as data
    from interp_engine.data import broden

    assert sorted(data._BRODEN_NAMES) == sorted(broden.__all__)
    assert all(getattr(data, n) is getattr(broden, n) for n in broden.__all__)
    assert set(broden.__all__) <= set(data.__all__) and set(broden.__all__) <= set(dir(data))


def test_the_public_surface_is_every_subpackages_all_and_documented():
    """interp_engine.__all__ is built from one table of the subpackages' __all__ (checked equal here),
    every name is the subpackage's object, and docs/api.md lists exactly these names."""
    import importlib

    import interp_engine as ie

    listed = []
    for mod, names in ie._EXPORTS.items():
        sub = importlib.import_module("interp_engine" + mod)
        assert tuple(n for n in sub.__all__ if not (mod == ".capture" and n == "capture")) == names, mod
        for n in names:
            assert getattr(ie, n) is getattr(sub, n), n
        listed += names
    assert len(set(listed)) == len(listed), "a name exported by two subpackages"
    assert set(ie.__all__) == set(listed) | {"get_num_threads", "set_num_threads", "__version__"}
    api = (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", api, re.M))
    assert documented == set(listed), (sorted(set(listed) - documented), sorted(documented - set(listed)))
    for n in ie._DEPRECATED:  # reachable, unlisted, named in the docs with their replacement
        assert n not in ie.__all__ and callable(getattr(ie, n)) and f"`{n}`" in api


def test_the_engine_plumbing_is_public_documented_and_not_at_the_top():
    """interp_engine.engine.checks / .states / .sync are public modules (the methods and reports import
    them; tests/core/test_import_graph.py forbids the private ones): every name of their __all__ exists,
    is documented in docs/api.md as `module.name` in its own section, and stays out of the engine's and
    the top level's __all__ (plumbing, not methods)."""
    import importlib

    import interp_engine.engine as engine

    api = (ROOT / "docs" / "api.md").read_text()
    section = api.split("## Checks and protocol pieces", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+\.\w+)` \|", section, re.M))
    expected = set()
    for mod in ("checks", "states", "sync"):
        m = importlib.import_module(f"interp_engine.engine.{mod}")
        assert m.__doc__ and m.__all__, mod
        for n in m.__all__:
            assert hasattr(m, n), f"{mod}.{n}"
            assert n not in interp_engine.__all__ and n not in engine.__all__, f"{mod}.{n} is re-exported"
            expected.add(f"{mod}.{n}")
    assert documented == expected, (sorted(expected - documented), sorted(documented - expected))
