"""The command line and the demo (the README's main job)."""
import io
import shutil
import subprocess
import sys

import pytest

from interp_engine import cli
from interp_engine.demo import make_demo_data, run_demo


def test_demo_recovers_the_known_units():
    out = io.StringIO()
    s = run_demo(200, seed=1, out=out)
    text = out.getvalue()
    assert "detectors (IoU >= 0.04)" in text
    # every colour unit's best label is its colour; noise units are never detectors
    colour = [u for u, t in enumerate(s["truth"]) if t not in ("-",) and t in
              ("red", "green", "blue", "yellow", "purple", "orange")]
    assert all(s["labels"][u] == s["truth"][u] for u in colour)
    assert s["false_detectors"] == 0
    assert s["recovered"] >= 1
    # the greedy cover's units cover every detected concept
    detected = {s["labels"][u] for u in range(len(s["labels"])) if s["detector"][u]}
    assert {s["labels"][u] for u in s["cover"]} == detected


def test_demo_data_is_deterministic():
    a, b = make_demo_data(20, seed=3), make_demo_data(20, seed=3)
    assert (a.activations == b.activations).all() and (a.pixel_labels == b.pixel_labels).all()


def test_cli_demo_and_info_run(capsys):
    assert cli.main(["demo", "--images", "120", "--threads", "1"]) == 0
    assert "greedy cover" in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    assert "interp_engine" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["demo", "--images", "0"], ["demo", "--quantile", "2"], ["nope"]])
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path):
    # run outside the checkout so the installed package is the one imported
    exe = shutil.which("interp-engine")
    cmd = [exe, "info"] if exe else [sys.executable, "-m", "interp_engine.cli", "info"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "threads:" in res.stdout
