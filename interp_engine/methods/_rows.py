"""The shared face of per-concept result tables (TCAV, concept vectors)."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from ._result import Result


class ConceptRows(Result):
    """Base of a result dataclass with ``rows``, each having a ``concept``
    field: ``result[name]`` finds a row; ``table()`` gives one plain dict per
    row with the fields named in ``_TABLE_KEYS`` (no pandas), which are also
    the CSV columns of :meth:`~interp_engine.methods._result.Result.to_csv`
    (an empty table still has its header).  Subclasses are declared
    ``@dataclass(repr=False)``, keeping the one-line repr of :class:`Result`."""

    rows: List[Any]
    _TABLE_KEYS: Tuple[str, ...] = ()

    def __getitem__(self, concept: str) -> Any:
        for r in self.rows:
            if r.concept == concept:
                return r
        raise KeyError(f"no concept {concept!r}; concepts: {[r.concept for r in self.rows]}")

    def table(self) -> List[Dict[str, Any]]:
        return [{k: getattr(r, k) for k in self._TABLE_KEYS} for r in self.rows]

    def _csv_fields(self) -> Sequence[str]:
        return list(self._TABLE_KEYS)

    def _summary(self) -> str:
        n = len(self.rows)
        return f"{n} concept{'' if n == 1 else 's'}"
