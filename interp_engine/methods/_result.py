"""The small base every method's result shares (docs/index.md, "one protocol").

A method is a class built from ``(model, layer, **settings)``; ``fit(data)``
learns what the method learns (where it learns something) and returns the
method; ``explain(data)`` returns a :class:`Result`.  Every result:

- ``table()``: one plain dict per row (unit, neuron, concept, region...), no pandas;
- ``to_csv(path)``: that table as CSV, through the package's one CSV writer;
- ``save(path)`` / ``Class.load(path)``: one ``.npz`` file (arrays plus a JSON
  header, never a pickle), checked against its schema on load;
- a ``repr`` of one short line (what was explained, how many rows), never the arrays.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .._io import write_csv

#: the longest repr a result gives (characters)
MAX_REPR = 200


class Result:
    """Base class of the results of every method (see the module docstring)."""

    def table(self) -> List[Dict[str, Any]]:
        """One plain dict per row."""
        raise NotImplementedError(f"{type(self).__name__}.table")

    def _csv_fields(self) -> Optional[Sequence[str]]:
        """The CSV columns when they are not the first row's keys (e.g. a table that may be empty)."""
        return None

    def to_csv(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write :meth:`table` to ``path`` as CSV (NaN as empty cells); returns the path."""
        return write_csv(path, self.table(), self._csv_fields())

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write the result to one ``.npz`` file; returns the path."""
        raise NotImplementedError(f"{type(self).__name__}.save")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Result":
        """Read a file written by :meth:`save` (refused, naming the file and the field, when it does not match)."""
        raise NotImplementedError(f"{cls.__name__}.load")

    def _summary(self) -> str:
        """What the one-line repr says after the class name."""
        return f"{len(self.table())} rows"

    def __repr__(self) -> str:
        s = f"{type(self).__name__}({self._summary()})"
        return s if len(s) <= MAX_REPR else s[:MAX_REPR - 4] + "...)"
