"""The one CSV writer (interp_engine._io.write_csv) and the result base."""
import csv
import math

import numpy as np
import pytest

from interp_engine._io import write_csv
from interp_engine.methods._result import MAX_REPR, Result


def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_cells_and_header(tmp_path):
    p = write_csv(tmp_path / "t.csv", [{"a": 1, "b": 0.1, "c": float("nan"), "d": None, "e": np.float32(0.5),
                                        "f": np.int64(7), "g": True, "h": "x,y"}])
    assert _read(p) == [list("abcdefgh"), ["1", "0.1", "", "", "0.5", "7", "True", "x,y"]]
    assert float(_read(p)[1][1]) == 0.1  # repr: exact round trip


def test_fields_order_missing_and_extra(tmp_path):
    p = write_csv(tmp_path / "t.csv", [{"b": 2}, {"a": 1}], fields=["a", "b"])
    assert _read(p) == [["a", "b"], ["", "2"], ["1", ""]]
    with pytest.raises(ValueError, match=r"row 1 has columns \['z'\] not in the header"):
        write_csv(tmp_path / "u.csv", [{"a": 1}, {"z": 2}])
    assert not (tmp_path / "u.csv").exists() and not (tmp_path / "u.csv.tmp").exists()


def test_empty_table(tmp_path):
    with pytest.raises(ValueError, match="no rows and no fields"):
        write_csv(tmp_path / "t.csv", [])
    assert _read(write_csv(tmp_path / "t.csv", [], fields=["a"])) == [["a"]]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = write_csv(tmp_path / "t.csv", [{"a": 1}])
    with pytest.raises(ValueError):
        write_csv(p, [{"a": 2}, {"b": 3}])
    assert _read(p) == [["a"], ["1"]]


class _Rows(Result):
    def __init__(self, n):
        self.n = n

    def table(self):
        return [{"i": i, "v": math.sqrt(i)} for i in range(self.n)]


def test_result_base(tmp_path):
    r = _Rows(3)
    assert repr(r) == "_Rows(3 rows)"
    assert _read(r.to_csv(tmp_path / "r.csv"))[0] == ["i", "v"]
    r._summary = lambda: "x" * 1000
    assert len(repr(r)) == MAX_REPR and repr(r).endswith("...)")
    with pytest.raises(NotImplementedError, match="_Rows.save"):
        r.save(tmp_path / "r.npz")
    with pytest.raises(NotImplementedError, match="_Rows.load"):
        _Rows.load(tmp_path / "r.npz")
