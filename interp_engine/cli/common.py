"""What every command of the command line shares: the one-line user error
(:class:`CLIError`, :class:`_Parser`), the atomic ``--out`` directory
(:class:`_Output`) and the checks made before the work (directories,
``--device``, ``--layer``)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Sequence

#: the file that marks a directory as written by this command line (see :class:`_Output`)
OUTPUT_MARKER = "interp_engine_output.json"


class CLIError(Exception):
    """A user error of the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``prog: error: message``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: Any, limit: int = 1500) -> str:
    """Whitespace (newlines included) collapsed to single spaces, at most
    ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 5] + " ..."


class _Output:
    """An ``--out`` directory written atomically.

    The rule (checked by the constructor, before any work): ``--out`` may be
    missing, an empty directory, or a directory holding
    :data:`OUTPUT_MARKER` (an earlier output of this command line); an
    existing file, or a directory with other content, is refused, so nothing
    the command did not write is ever deleted.  The command writes into
    :attr:`tmp`, a new directory next to ``--out``; :meth:`commit` writes the
    marker and moves it into place (the previous output is first renamed
    aside and then deleted: no moment leaves a half-written ``--out``, and no
    file of the previous run survives)."""

    def __init__(self, path: str, command: str) -> None:
        final = Path(path).expanduser()
        if final.is_symlink():
            final = final.resolve()
        final = Path(os.path.abspath(final))
        if final.exists() and not final.is_dir():
            raise CLIError(f"--out {path} is an existing file; --out names the output directory")
        if final.is_dir():
            try:
                entries = [e.name for e in os.scandir(final)]
            except OSError as exc:
                raise CLIError(f"--out {path} cannot be read: {exc}")
            if entries and OUTPUT_MARKER not in entries:
                raise CLIError(f"--out {path} exists and is not an interp_engine output directory (it has no "
                               f"{OUTPUT_MARKER}); the output replaces the whole directory, so choose a new or "
                               f"empty directory, or remove this one")
        parent = final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--out {path}: cannot create its parent directory {parent}: {exc}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CLIError(f"--out {path}: its parent directory {parent} is not writable")
        self.final = final
        self.command = command
        self._tmp: Optional[Path] = None

    @property
    def tmp(self) -> Path:
        """The temporary directory to write into (created on first use)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=self.final.parent))
        return self._tmp

    def final_path(self, p: Path) -> Path:
        """Where ``p`` (under :attr:`tmp`) will be after :meth:`commit`."""
        return self.final / Path(p).relative_to(self.tmp)

    def commit(self, argv: Sequence[str]) -> None:
        import datetime

        import interp_engine

        marker = {"format": "interp_engine.output", "version": 1, "command": self.command,
                  "argv": list(argv), "interp_engine": interp_engine.__version__,
                  "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        (self.tmp / OUTPUT_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        old = None
        if self.final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
            os.rmdir(old)
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        self._tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _check_dir_option(path: Optional[str], option: str, out: Optional[_Output]) -> None:
    """A directory option (--checkpoint-dir, --cache-dir): not an existing
    file, not inside --out (which is replaced when the run completes)."""
    if path is None:
        return
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option} {path} is an existing file; {option} names a directory")
    if out is not None:
        a, b = Path(os.path.abspath(p)), out.final
        if a == b or b in a.parents:
            raise CLIError(f"{option} {path} is inside --out {out.final}, which is replaced when the run "
                           f"completes; put it elsewhere")


def _check_device(spec: Optional[str]):
    """``--device`` as a torch.device (None: the model's), checked to exist."""
    if spec is None:
        return None
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise CLIError(f"--device {spec!r} is not a device name; expected cpu, cuda, cuda:N, mps, ...") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CLIError(f"--device {spec}: CUDA is not available ({why}); use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise CLIError(f"--device {spec}: there are {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CLIError(f"--device {spec}: MPS is not available; use --device cpu")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except Exception as exc:  # noqa: BLE001 - any failure means the device is unusable
            raise CLIError(f"--device {spec} is not usable: {type(exc).__name__}: {_one_line(exc, 300)}") from None
    return dev


def _layer_names(model) -> List[str]:
    return [n for n, _ in model.named_modules() if n]


def _check_layers(model, layers: Sequence[str], spec: str) -> None:
    """Every --layer names a submodule; else one line listing the names."""
    import difflib

    names = _layer_names(model)
    for layer in layers:
        if layer in names:
            continue
        try:
            model.get_submodule(layer)
            continue
        except AttributeError:
            pass
        kind = type(model).__name__
        if len(names) <= 40:
            listing = f"its layers are {', '.join(names) or '(none)'}"
        else:
            close = difflib.get_close_matches(layer, names, n=8, cutoff=0.5)
            listing = (f"close matches: {', '.join(close)}; " if close else "") + \
                f"`interp-engine layers --model {spec}` lists all {len(names)}"
        raise CLIError(f"--layer {layer!r} is not a layer of {kind} (--model {spec}); {listing}")


def _timing(t0: float) -> str:
    import time

    return f"{time.perf_counter() - t0:.1f} s"
