"""The command line's promises (issue 14, items 14-16): a user error prints
one line and exits 2, found before the work starts; Ctrl-C prints one line
saying where progress was saved and exits 130, and resuming gives the result
of an uninterrupted run; --out is replaced whole, never left stale or half
written, and nothing the command did not write is deleted."""
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import _child
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine import cli  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]  # tests/, where the helper modules are
QUICK = ["--quiet", "--max-images", "12", "--batch-size", "12", "--thresholds", "approx", "--report-units", "2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from interp_engine.data import concept_dataset

    return concept_dataset(tmp_path_factory.mktemp("clierr") / "ds", seed=9, num_images=60)


@pytest.fixture
def broken(tiny, tmp_path):
    """A copy of the tiny dataset to damage."""
    root = tmp_path / "bad"
    shutil.copytree(tiny, root)
    return root


def one_line_error(capsys, rc, *expect):
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("interp-engine: error: "), err
    for e in expect:
        assert e in lines[0], (e, lines[0])
    # found before the work: nothing of the run was printed, no output directory made
    assert "dissecting" not in out and "INVERT on" not in out and "concept vectors" not in out
    return lines[0]


def weights(tmp_path, scale):
    from interp_engine.models import load_default_model

    sd = {k: (v * scale if v.is_floating_point() else v) for k, v in load_default_model().state_dict().items()}
    path = tmp_path / f"w{scale}.pt"
    torch.save(sd, path)
    return str(path)


# ----------------------------------------------------------------------------- item 14: one line, exit 2
def test_missing_label_png(broken, tmp_path, capsys):
    (broken / "images" / "concepts" / "000007_shape.png").unlink()
    for cmd in ("dissect", "invert", "concepts"):
        rc = cli.main([cmd, "--dataset", str(broken), "--out", str(tmp_path / cmd)] +
                      (["--quiet"] if cmd == "dissect" else []))
        one_line_error(capsys, rc, "row 9", "'shape'", "000007_shape.png", "not found")
        assert not (tmp_path / cmd).exists()


def test_truncated_label_png_and_image(tiny, broken, tmp_path, capsys):
    png = broken / "images" / "concepts" / "000031_color.png"
    png.write_bytes(png.read_bytes()[:-20])
    rc = cli.main(["dissect", "--dataset", str(broken), "--out", str(tmp_path / "o"), "--quiet"])
    one_line_error(capsys, rc, "row 33", "000031_color.png", "truncated")
    png.write_bytes(b"")
    rc = cli.main(["dissect", "--dataset", str(broken), "--out", str(tmp_path / "o"), "--quiet"])
    one_line_error(capsys, rc, "000031_color.png", "empty")
    shutil.copy(tiny / "images" / "concepts" / "000031_color.png", png)
    img = broken / "images" / "concepts" / "000050.png"
    img.write_bytes(img.read_bytes()[:200])
    rc = cli.main(["dissect", "--dataset", str(broken), "--out", str(tmp_path / "o"), "--quiet"])
    one_line_error(capsys, rc, "row 52", "'image'", "000050.png", "truncated")


def test_out_is_an_existing_file_or_foreign_directory(tiny, tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("mine")
    for cmd in ("dissect", "invert", "concepts", "represent", "topics"):
        one_line_error(capsys, cli.main([cmd, "--dataset", str(tiny), "--out", str(f)]), "--out", "existing file")
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    one_line_error(capsys, cli.main(["dissect", "--dataset", str(tiny), "--out", str(d)]),
                   "not an interp_engine output directory")
    assert (d / "notes.txt").read_text() == "keep me" and f.read_text() == "mine"


@pytest.mark.parametrize("model,expect", [
    ("os:path", ["'os:path' names a module"]),
    ("torch.nn:Conv2d", ["calling Conv2d() failed", "without arguments"]),
    ("no_such_module_xyz:Model", ["cannot import module 'no_such_module_xyz'"]),
    ("interp_engine.models:NoSuchThing", ["has no attribute 'NoSuchThing'"]),
    ("interp_engine.models.fashion_cnn:FashionCNN", ["does not accept the dataset's images", "(1, 3, 64, 64)",
                                                    "1 channels"]),
])
def test_bad_models(tiny, tmp_path, capsys, model, expect):
    rc = cli.main(["dissect", "--model", model, "--layer", "conv1", "--dataset", str(tiny),
                   "--out", str(tmp_path / "o"), "--quiet"])
    one_line_error(capsys, rc, *expect)


def test_bad_weights(tiny, tmp_path, capsys):
    base = ["dissect", "--dataset", str(tiny), "--out", str(tmp_path / "o"), "--quiet", "--weights"]
    one_line_error(capsys, cli.main(base + [str(tmp_path / "none.pt")]), "no such file")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    one_line_error(capsys, cli.main(base + [str(tmp_path / "junk.pt")]), "cannot load --weights")
    sd = torch.load(weights(tmp_path, 1.0))
    sd["conv1.0.weight"] = torch.zeros(3, 3)
    del sd["conv2.1.bias"]
    torch.save(sd, tmp_path / "odd.pt")
    one_line_error(capsys, cli.main(base + [str(tmp_path / "odd.pt")]), "do not fit", "1 missing (conv2.1.bias)",
                   "1 of another shape (conv1.0.weight)")


def test_unknown_layer_lists_the_layer_names(tiny, tmp_path, capsys):
    for cmd in ("dissect", "invert", "concepts"):
        rc = cli.main([cmd, "--layer", "conv9", "--dataset", str(tiny), "--out", str(tmp_path / "o")])
        line = one_line_error(capsys, rc, "--layer 'conv9' is not a layer of ConceptCNN",
                              "conv1, conv1.0, conv1.1")
        assert "named_modules" not in line  # names, not a Python recipe
    # a model with many layers: close matches and the command that lists them all
    rc = cli.main(["dissect", "--model", "interp_engine.models.mobilenet_v2:MobileNetV2", "--layer", "features.99",
                   "--dataset", str(tiny), "--out", str(tmp_path / "o")])
    one_line_error(capsys, rc, "close matches: features.", "interp-engine layers --model")
    assert cli.main(["layers"]) == 0
    assert "conv4\tSequential" in capsys.readouterr().out


def test_device_errors(tiny, tmp_path, capsys):
    base = ["dissect", "--dataset", str(tiny), "--out", str(tmp_path / "o"), "--quiet", "--device"]
    one_line_error(capsys, cli.main(base + ["gpu7"]), "--device 'gpu7' is not a device name")
    if not torch.cuda.is_available():
        one_line_error(capsys, cli.main(base + ["cuda"]), "--device cuda: CUDA is not available")
        one_line_error(capsys, cli.main(["invert", "--dataset", str(tiny), "--out", str(tmp_path / "o"),
                                         "--device", "cuda:1"]), "CUDA is not available")
    else:  # pragma: no cover - GPU machines
        n = torch.cuda.device_count()
        one_line_error(capsys, cli.main(base + [f"cuda:{n}"]), f"there are {n} CUDA device(s)")


def test_directory_options(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["dissect", "--dataset", str(tiny), "--out", str(out), "--quiet"]
    one_line_error(capsys, cli.main(base + ["--checkpoint-dir", str(out / "ck")]), "inside --out")
    (tmp_path / "f").write_text("")
    one_line_error(capsys, cli.main(base + ["--checkpoint-dir", str(tmp_path / "f")]), "existing file")
    one_line_error(capsys, cli.main(base + ["--cache-dir", str(tmp_path / "f")]), "--cache-dir", "existing file")


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["dissect", "--batch-size", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size: expected an integer >= 1; got 'many'" in err
    assert "usage" not in err


def test_refused_checkpoint(tiny, tmp_path, capsys):
    ck = tmp_path / "ck"
    base = ["dissect", "--dataset", str(tiny), "--layer", "conv2", "--checkpoint-dir", str(ck)] + QUICK
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--weights", weights(tmp_path, 1.0)]) == 0
    capsys.readouterr()
    rc = cli.main(base + ["--out", str(tmp_path / "b"), "--weights", weights(tmp_path, 1.5)])
    one_line_error(capsys, rc, "was written by a run with other arguments or inputs",
                   "the model's parameters and buffers (weights)", f"--weights {tmp_path / 'w1.0.pt'}")
    rc = cli.main(base + ["--out", str(tmp_path / "b"), "--weights", weights(tmp_path, 1.0), "--transform",
                          "imagenet"])
    one_line_error(capsys, rc, "the transform [data.transform.name] (was unit, now imagenet)")
    assert not (tmp_path / "b").exists()


def test_subprocess_error_is_one_line_and_exit_2(broken, tmp_path):
    png = broken / "images" / "concepts" / "000003_shape.png"
    png.write_bytes(png.read_bytes()[:40])
    res = _child.run(["-m", "interp_engine.cli", "dissect", "--dataset", str(broken), "--out", str(tmp_path / "o")],
                     timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr and "000003_shape.png" in res.stderr
    assert res.stdout == ""


# ----------------------------------------------------------------------------- item 15: Ctrl-C
def test_ctrl_c_saves_progress_and_resuming_gives_the_same_result(tiny, tmp_path, capsys):
    from interp_engine.methods.dissection import DissectionResult

    ck, out = tmp_path / "ck", tmp_path / "out"
    argv = ["dissect", "--model", "_slow_model:model", "--layer", "conv3", "--layer", "conv4", "--transform",
            "unit", "--dataset", str(tiny), "--checkpoint-dir", str(ck), "--checkpoint-interval", "0",
            "--checkpoint-every", "1000", "--batch-size", "4", "--max-images", "24", "--out", str(out), "--quiet",
            "--top-k", "3", "--report-units", "2"]
    proc = _child.popen(["-m", "interp_engine.cli"] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    try:
        deadline = time.monotonic() + 240
        while not (ck / "dissection_checkpoint.npz").is_file():  # the first interval checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            proc.kill()
    assert proc.returncode == 130, stderr
    lines = stderr.strip("\n").split("\n")
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"interp-engine: interrupted: progress saved in {ck / 'dissection_checkpoint.npz'}")
    assert "resume with: interp-engine dissect --model _slow_model:model" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    # the same command resumes
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert f"resumed from {ck / 'dissection_checkpoint.npz'}" in text
    ref_out = tmp_path / "ref"
    ref = argv[:argv.index("--checkpoint-dir")] + argv[argv.index("--batch-size"):]
    ref[ref.index("--out") + 1] = str(ref_out)
    ref[ref.index("--model") + 1] = "default"  # the same weights, without the pause
    assert cli.main(ref) == 0
    a, b = DissectionResult.load(out / "result.npz"), DissectionResult.load(ref_out / "result.npz")
    for layer in ("conv3", "conv4"):
        for attr in ("thresholds", "intersection", "label_pixels", "unit_pixels", "top_images", "top_maps"):
            np.testing.assert_array_equal(getattr(a[layer], attr), getattr(b[layer], attr))


def test_ctrl_c_without_checkpoint_or_in_other_commands(tiny, tmp_path, capsys, monkeypatch):
    from interp_engine.methods import dissection, invert

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dissection.Dissection, "explain", interrupt)
    monkeypatch.setattr(invert.Invert, "explain", interrupt)
    out = tmp_path / "o"
    assert cli.main(["dissect", "--dataset", str(tiny), "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint was asked for" in err and "--checkpoint-dir DIR" in err
    assert cli.main(["dissect", "--dataset", str(tiny), "--out", str(out), "--quiet", "--checkpoint-dir",
                     str(tmp_path / "ck")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stopped before the first checkpoint" in err
    assert cli.main(["invert", "--dataset", str(tiny), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keeps no checkpoint" in err
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


# ----------------------------------------------------------------------------- item 16: --out replaced whole
def test_rerun_leaves_no_stale_files(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["dissect", "--dataset", str(tiny), "--out", str(out)] + QUICK
    assert cli.main(base + ["--layer", "conv3", "--layer", "conv4"]) == 0
    assert (out / "conv3.html").is_file() and (out / "conv3_tally.csv").is_file()
    marker = json.loads((out / cli.OUTPUT_MARKER).read_text())
    assert marker["command"] == "dissect" and "--layer" in marker["argv"]
    assert cli.main(base + ["--layer", "conv4"]) == 0
    assert (out / "conv4.html").is_file()
    assert not (out / "conv3.html").exists() and not (out / "conv3_tally.csv").exists()
    assert not list((out / "images").glob("conv3_*")) and list((out / "images").glob("conv4_*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old directory left
    # an empty directory is fine too
    (tmp_path / "empty").mkdir()
    assert cli.main(["invert", "--dataset", str(tiny), "--out", str(tmp_path / "empty"), "--max-images", "20",
                     "--length", "1", "--layer", "conv1"]) == 0
    assert (tmp_path / "empty" / "invert.csv").is_file() and (tmp_path / "empty" / cli.OUTPUT_MARKER).is_file()


def test_failed_run_keeps_the_previous_output(tiny, tmp_path, capsys, monkeypatch):
    import interp_engine.report

    out = tmp_path / "out"
    base = ["dissect", "--dataset", str(tiny), "--out", str(out), "--layer", "conv4"] + QUICK
    assert cli.main(base) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(interp_engine.report, "write_report", fail)
    assert cli.main(base) == 2
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ----------------------------------------------------------------------------- item 10: numbering stated
def test_unit_numbering_is_stated_on_every_output(tiny, tmp_path, capsys):
    from interp_engine.report.html import NEURON_NUMBERING, UNIT_NUMBERING

    out = tmp_path / "d"
    assert cli.main(["dissect", "--dataset", str(tiny), "--out", str(out), "--layer", "conv4"] + QUICK) == 0
    assert UNIT_NUMBERING in capsys.readouterr().out
    for page in ("index.html", "conv4.html"):
        assert UNIT_NUMBERING in (out / page).read_text()
    # tally.csv is 1-based (Lite), the page and the console 0-based: the same unit
    import csv

    with open(out / "conv4_tally.csv") as f:
        first = next(csv.DictReader(f))
    from interp_engine.methods.dissection import DissectionResult

    r = DissectionResult.load(out / "result.npz")["conv4"]
    assert int(first["unit"]) == int(r.unit_order()[0]) + 1
    assert f'id="unit{int(r.unit_order()[0])}"' in (out / "conv4.html").read_text()
    inv = tmp_path / "i"
    assert cli.main(["invert", "--dataset", str(tiny), "--out", str(inv), "--max-images", "20", "--length", "1",
                     "--layer", "conv1"]) == 0
    assert NEURON_NUMBERING.lower()[:-1] in capsys.readouterr().out.lower()
    assert NEURON_NUMBERING in (inv / "index.html").read_text()


@pytest.mark.parametrize("command", ["dissect", "invert"])
def test_negative_num_workers_refused_in_one_line(command, capsys):
    """--num-workers -1 used to reach the DataLoader and its own traceback."""
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--num-workers", "-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-workers: expected an integer >= 0; got -1" in err
