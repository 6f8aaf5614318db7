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


@pytest.fixture(scope="module")
def tiny_concepts(tmp_path_factory):
    pytest.importorskip("torch")
    from interp_engine.data import concept_dataset

    return concept_dataset(tmp_path_factory.mktemp("cli") / "ds", seed=9, num_images=60)


def test_dissect_command_writes_report_csv_and_result(tiny_concepts, tmp_path, capsys):
    from interp_engine.methods.dissection import DissectionResult

    out = tmp_path / "out"
    rc = cli.main(["dissect", "--dataset", str(tiny_concepts), "--out", str(out), "--layer", "conv4",
                   "--layer", "conv3", "--quiet", "--batch-size", "32", "--top-k", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "== conv4" in text and "units are detectors" in text
    res = DissectionResult.load(out / "result.npz")
    assert list(res) == ["conv4", "conv3"] and res.config["num_images"] == 60
    for layer in ("conv4", "conv3"):
        assert (out / f"{layer}.html").is_file() and (out / f"{layer}_tally.csv").is_file()
        assert len((out / f"{layer}_tally.csv").read_text().splitlines()) == res[layer].num_units + 1
    assert 'href="conv4.html"' in (out / "index.html").read_text()


def test_dissect_command_errors(tiny_concepts, tmp_path, capsys):
    rc = cli.main(["dissect", "--dataset", str(tiny_concepts), "--out", str(tmp_path), "--layer", "conv9",
                   "--quiet"])
    assert rc == 2 and "conv9" in capsys.readouterr().err
    rc = cli.main(["dissect", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path), "--quiet"])
    assert rc == 2 and "missing" in capsys.readouterr().err
    assert cli.main(["dissect", "--model", "no_such_module_xyz:Model", "--layer", "a",
                     "--out", str(tmp_path / "o")]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["dissect", "--quantile", "2"])
    assert exc.value.code == 2


def test_dissect_command_with_a_user_model(tiny_concepts, tmp_path, capsys):
    # 'module:attribute' naming a callable that returns an nn.Module, plus --weights
    import torch

    from interp_engine.models import load_default_model

    w = tmp_path / "w.pt"
    torch.save(load_default_model().state_dict(), w)
    rc = cli.main(["dissect", "--model", "interp_engine.models:ConceptCNN", "--weights", str(w),
                   "--layer", "conv4", "--transform", "imagenet", "--dataset", str(tiny_concepts),
                   "--out", str(tmp_path / "o"), "--quiet", "--thresholds", "approx"])
    assert rc == 0
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    capsys.readouterr()
    assert cli.main(["dissect", "--model", "interp_engine.models:ConceptCNN", "--weights", str(tmp_path / "bad.pt"),
                     "--layer", "conv4", "--dataset", str(tiny_concepts), "--quiet",
                     "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and "1 unexpected (nope)" in err and len(err.splitlines()) == 1


def test_invert_command(tiny_concepts, tmp_path, capsys):
    import csv as _csv

    out = tmp_path / "inv"
    rc = cli.main(["invert", "--dataset", str(tiny_concepts), "--out", str(out), "--length", "2", "--beam", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "neurons explained" in text
    with open(out / "invert.csv") as f:
        rows = list(_csv.DictReader(f))
    assert len(rows) == 128  # conv4 of the bundled model
    html = (out / "index.html").read_text()
    assert "<svg" in html and "AUC" in html and "<script" not in html


def test_invert_pvalue_method(tiny_concepts, tmp_path, capsys):
    """--pvalue-method reaches Invert (the search is the same, the p-values
    are the chosen method's), is recorded on the console and in the report,
    and defaults to the API's default; a bad value is one line, exit 2."""
    import csv as _csv
    import inspect

    import numpy as np

    from interp_engine.engine.rank import PVALUE_METHODS
    from interp_engine.methods.invert import Invert

    rows = {}
    for method in ("exact", "asymptotic"):
        out = tmp_path / method
        rc = cli.main(["invert", "--dataset", str(tiny_concepts), "--out", str(out), "--length", "1", "--beam", "2",
                       "--pvalue-method", method])
        assert rc == 0
        assert f"p-values: {method})" in capsys.readouterr().out
        with open(out / "invert.csv") as f:
            rows[method] = list(_csv.DictReader(f))
        assert f"<td>pvalue_method</td><td>{method}</td>" in (out / "index.html").read_text()
    ex, asy = rows["exact"], rows["asymptotic"]
    assert [(r["neuron"], r["formula"], r["auc"]) for r in ex] == [(r["neuron"], r["formula"], r["auc"]) for r in asy]
    pe = np.array([float(r["p_value"]) for r in ex if r["formula"]])
    pa = np.array([float(r["p_value"]) for r in asy if r["formula"]])
    assert len(pe) > 10 and np.all((pe >= 0) & (pe <= 1)) and np.any(np.abs(pe - pa) > 1e-6 * np.maximum(pe, pa))
    parser = cli.build_parser()
    assert parser.parse_args(["invert"]).pvalue_method == \
        inspect.signature(Invert).parameters["pvalue_method"].default == "auto"
    for method in PVALUE_METHODS:  # every method of the API is offered
        assert parser.parse_args(["invert", "--pvalue-method", method]).pvalue_method == method
    with pytest.raises(SystemExit) as exc:  # argparse's exit, one line (no usage block)
        cli.main(["invert", "--dataset", str(tiny_concepts), "--out", str(tmp_path / "bad"),
                  "--pvalue-method", "scipy"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pvalue-method" in err[0] and "'scipy'" in err[0] and "asymptotic" in err[0], err
    assert not (tmp_path / "bad").exists()


def test_concepts_command(tiny_concepts, tmp_path, capsys):
    import csv as _csv

    from interp_engine.methods.concept_vectors import ConceptVectors
    from interp_engine.models import load_default_model

    out = tmp_path / "cv"
    rc = cli.main(["concepts", "--dataset", str(tiny_concepts), "--out", str(out), "--concepts", "red,blue,circle"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "set-IoU at 0.5" in text and "red" in text
    with open(out / "concept_iou.csv") as f:
        rows = list(_csv.DictReader(f))
    assert [r["concept"] for r in rows] == ["red", "blue", "circle"]
    assert all(0.0 <= float(r["iou"]) <= 1.0 and int(r["best_unit"]) >= -1 for r in rows)
    cv = ConceptVectors.load(out / "vectors.npz", load_default_model(), "conv4")
    assert cv.concepts == ["red", "blue", "circle"] and cv.vectors.shape == (3, 128)
    # the saved vectors give the printed table again
    from interp_engine.data import BrodenDataset
    again = cv.explain(BrodenDataset(tiny_concepts, transform="unit"), split="val").table()
    assert [round(r["iou"], 6) for r in again] == [round(float(r["iou"]), 6) for r in rows]
    assert cli.main(["concepts", "--dataset", str(tiny_concepts), "--out", str(out), "--concepts", "plaid"]) == 2
    assert "not pixel-level labels" in capsys.readouterr().err


def test_represent_command(tiny_concepts, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = cli.main(["represent", "--dataset", str(tiny_concepts), "--out", str(out), "--reference", "40",
                   "--seeds", "3", "--unseen", "20", "--pool", "10", "--similar", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "members" in text and "Average Drop" in text
    page = (out / "index.html").read_text()
    assert page.count('class="unit"') == 3 and "<script" not in page and "Average Drop" in page
    assert len(list((out / "images").glob("region_*.png"))) == 3
    # bad input: exit code 2 and a message, no traceback
    assert cli.main(["represent", "--dataset", str(tiny_concepts), "--reference", "5", "--seeds", "9"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert cli.main(["represent", "--model", "fashion_cnn", "--dataset", str(tmp_path / "none"),
                     "--out", str(tmp_path / "f")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_represent_page_overlay():
    import numpy as np

    from interp_engine.report import heat_overlay

    img = np.zeros((4, 4, 3), np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    out = heat_overlay(img, heat, alpha=1.0)
    assert tuple(out[0, 0]) == (128, 0, 0) and tuple(out[1, 1]) == (0, 0, 128)  # jet: dark red at 1, dark blue at 0
    with pytest.raises(ValueError, match="same size"):
        heat_overlay(img, np.zeros((3, 3)))
