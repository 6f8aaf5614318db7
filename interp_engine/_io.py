"""The one place results are written as tables: CSV files.

(Array files, ``.npz`` with a JSON header and a schema checked on load, are
:mod:`interp_engine._npz`.)  Every CSV the package writes goes through
:func:`write_csv`, so they all read the same way: a header row, one row per
record, floats written exactly (``repr``), NaN and None as empty cells, and the
file replaced atomically (a reader never sees half a table).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "" if math.isnan(f) else repr(f)
    return v


def write_csv(path: PathLike, rows: Iterable[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> Path:
    """Write ``rows`` (dicts) to ``path`` as CSV and return the path.

    fields: the columns, in order (default: the keys of the first row; a
    table with no rows and no ``fields`` is refused, as its header would be
    unknown).  A row's keys must be among ``fields``; a missing key is an
    empty cell.
    """
    path = Path(path)
    rows = list(rows)
    if fields is None:
        if not rows:
            raise ValueError(f"write_csv({str(path)!r}): no rows and no fields: the header is unknown")
        fields = list(rows[0])
    fields = list(fields)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for i, row in enumerate(rows):
                extra = [k for k in row if k not in fields]
                if extra:
                    raise ValueError(f"write_csv({str(path)!r}): row {i} has columns {extra} not in the "
                                     f"header {fields}")
                w.writerow({k: _cell(v) for k, v in row.items()})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
