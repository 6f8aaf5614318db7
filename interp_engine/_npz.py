"""Result files: one ``.npz`` of arrays plus a JSON header (no pickles).

Every saved result of the package (dissection results, concept vectors) uses
these two functions, so that all are written atomically and read with
``allow_pickle=False`` and a checked format name and version.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np

__all__ = ["save_npz", "read_header", "safe_name"]


def save_npz(path: Union[str, os.PathLike], arrays: Mapping[str, Any], header: Mapping[str, Any], *,
             compress: bool = True) -> Path:
    """Write ``arrays`` and ``header`` (JSON, under the key ``"header"``) to
    ``path`` atomically: into a temporary sibling, then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    data = {k: np.asarray(v) for k, v in arrays.items()}
    data["header"] = np.array(json.dumps(header))
    (np.savez_compressed if compress else np.savez)(tmp, **data)
    os.replace(tmp, path)
    return path


def read_header(z: Any, path: Union[str, os.PathLike], fmt: str, version: int, what: str) -> Dict[str, Any]:
    """The JSON header of an opened npz (``np.load(path, allow_pickle=False)``),
    checked to be format ``fmt`` version ``version``; ValueError naming the
    file and ``what`` it should have been otherwise."""
    if "header" not in z.files:
        raise ValueError(f"{path!s} is not a {what} (no header)")
    header = json.loads(str(z["header"]))
    if header.get("format") != fmt or header.get("version") != version:
        raise ValueError(f"{path!s}: expected a {what}, format {fmt} version {version}; got "
                         f"{header.get('format')!r} version {header.get('version')!r}")
    return header


def safe_name(name: str) -> str:
    """A layer or concept name as a file name: characters other than letters,
    digits and ``._-`` become ``_``."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
