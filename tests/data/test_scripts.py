"""The training scripts of scripts/ (out of the package): runnable by path with
a default --out, importable by name from the checkout, and their old module
paths deprecated shims that warn and hand out the same objects."""
import importlib
import sys

import pytest

pytest.importorskip("torch")

import _child  # noqa: E402
import _scripts  # noqa: E402,F401  (scripts/ on sys.path)


@pytest.mark.parametrize("script, weights", [("train_concept_cnn", "concept_cnn.pt"),
                                             ("train_fashion_cnn", "fashion_cnn.pt")])
def test_script_help_names_its_default_out(script, weights):
    res = _child.run([str(_scripts.SCRIPTS / f"{script}.py"), "--help"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"default ./{weights}" in " ".join(res.stdout.split())


def test_fashion_script_without_the_data_is_one_line(tmp_path):
    res = _child.run([str(_scripts.SCRIPTS / "train_fashion_cnn.py"), "--root", str(tmp_path / "missing"),
                      "--out", str(tmp_path / "w.pt")], timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_fashion_cnn: error:") and "not found" in lines[0]
    assert not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize("old, script, names", [
    ("interp_engine.models.train", "train_concept_cnn",
     ["train", "concept_targets", "evaluate", "capture", "unit_iou"]),
    ("interp_engine.models.train_fashion", "train_fashion_cnn", ["train_fashion_cnn", "evaluate", "predict", "main"]),
])
def test_old_module_paths_are_deprecated_shims(old, script, names):
    module = importlib.import_module(script)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use scripts/{script}.py"):
        shim = importlib.import_module(old)
    for n in names:
        assert getattr(shim, n) is getattr(module, n), n


def test_old_module_path_without_the_scripts_says_where_they_went(tmp_path, monkeypatch):
    from interp_engine.models import _moved

    monkeypatch.setattr(_moved, "SCRIPTS", tmp_path)  # as installed, away from the checkout
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(_scripts.SCRIPTS)])
    monkeypatch.delitem(sys.modules, "train_concept_cnn", raising=False)
    monkeypatch.delitem(sys.modules, "interp_engine.models.train", raising=False)
    with pytest.warns(DeprecationWarning), pytest.raises(ImportError, match="moved out of the package to "
                                                                            "scripts/train_concept_cnn.py"):
        importlib.import_module("interp_engine.models.train")
