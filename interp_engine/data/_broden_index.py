"""The tables of a Broden directory: ``category.csv``, ``label.csv``, the
``c_<category>.csv`` files and ``index.csv``, parsed and checked against each
other (the format: :mod:`interp_engine.data.broden`).  numpy only: no torch.

:class:`_BrodenIndex` holds the construction steps of
:class:`~interp_engine.data.BrodenDataset` (which derives from it) and the
metadata they set; the CSV helpers name the file, the row (1-based as in a
spreadsheet: the header is row 1) and the column of every error.  Private to
``interp_engine.data``.
"""
from __future__ import annotations

import csv
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

_META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
_REQUIRED_INDEX = ("image", "ih", "iw", "sh", "sw")
_REQUIRED_LABEL = ("number", "name", "category")
_REQUIRED_CATEGORY = ("name",)
_REQUIRED_C = ("code", "number")
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$", re.ASCII)
_CAT_COUNT_RE = re.compile(r"^\s*([^()]*?)\s*\(\s*(\d+)\s*\)\s*$")


# --------------------------------------------------------------------------- CSV helpers
def _where(path: str, row: Optional[int] = None, column: Optional[str] = None) -> str:
    out = path
    if row is not None:
        out += f", row {row}"
    if column is not None:
        out += f", column {column!r}"
    return out


def _read_csv(path: str, required: Sequence[str], what: str) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """Read a CSV file with a header.  Returns ``(header, [(row_number, {column: text})])``
    with spreadsheet row numbers (header = 1).  Blank lines are skipped (but counted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            records = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from exc
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from exc
    if not records or not any(s.strip() for s in records[0]):
        raise ValueError(f"{_where(path, 1)}: expected a header row with columns {', '.join(required)}; "
                         f"got an empty file")
    header = [h.strip() for h in records[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{_where(path, 1)}: missing required column(s) {', '.join(map(repr, missing))}; "
                         f"the header has {', '.join(map(repr, header))}")
    seen = set()
    for h in header:
        if h in seen:
            raise ValueError(f"{_where(path, 1)}: duplicate column {h!r} in the header")
        seen.add(h)
    rows = []
    for k, rec in enumerate(records[1:]):
        rownum = k + 2
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue  # blank line
        if len(rec) != len(header):
            raise ValueError(f"{_where(path, rownum)}: expected {len(header)} fields as in the header; "
                             f"got {len(rec)}")
        rows.append((rownum, dict(zip(header, rec))))
    return header, rows


def _is_int(text: str) -> bool:
    return (text.isascii() and text.isdigit()) or bool(_INT_RE.match(text))


def _parse_int(text: str, path: str, row: int, column: str, *, minimum: Optional[int] = None) -> int:
    if not _is_int(text):
        raise ValueError(f"{_where(path, row, column)}: expected an integer; got {text!r}")
    value = int(text)
    if minimum is not None and value < minimum:
        raise ValueError(f"{_where(path, row, column)}: expected an integer >= {minimum}; got {value}")
    return value


def _parse_category_field(text: str, path: str, row: int) -> Dict[str, int]:
    """``"object(123);part(4)"`` -> ``{"object": 123, "part": 4}`` (empty -> {})."""
    out: Dict[str, int] = {}
    for piece in text.split(";"):
        if not piece.strip():
            continue
        m = _CAT_COUNT_RE.match(piece)
        if m is None or not m.group(1):
            raise ValueError(f"{_where(path, row, 'category')}: expected entries like 'object(123)' "
                             f"separated by ';'; got {text!r}")
        name, count = m.group(1), int(m.group(2))
        out[name] = out.get(name, 0) + count
    return out


class _BrodenIndex:
    """The parsed tables of a Broden directory: the construction steps of
    :class:`~interp_engine.data.BrodenDataset`, which calls them in order
    (``_read_categories``, ``_read_labels``, ``_select_categories``,
    ``_label_category``, ``_read_c_files``, ``_read_index``) with ``root`` and
    ``_index_path`` set, and the metadata attributes they set."""

    root: str
    images_dir: str
    _index_path: str

    # ------------------------------------------------------------------ construction steps
    def _read_categories(self, path: str) -> None:
        _, rows = _read_csv(path, _REQUIRED_CATEGORY, "category.csv")
        names: List[str] = []
        for rownum, rec in rows:
            name = rec["name"].strip()
            if not name:
                raise ValueError(f"{_where(path, rownum, 'name')}: empty category name")
            if name in names:
                raise ValueError(f"{_where(path, rownum, 'name')}: duplicate category {name!r}")
            names.append(name)
        self._all_categories = names

    def _read_labels(self, path: str) -> None:
        self._label_path = path
        _, rows = _read_csv(path, _REQUIRED_LABEL, "label.csv")
        names: Dict[int, str] = {}
        counts: Dict[int, Dict[str, int]] = {}
        first_row: Dict[int, int] = {}
        for rownum, rec in rows:
            number = _parse_int(rec["number"], path, rownum, "number", minimum=0)
            if number in names:
                raise ValueError(f"{_where(path, rownum, 'number')}: duplicate label number {number} "
                                 f"(first at row {first_row[number]})")
            first_row[number] = rownum
            names[number] = rec["name"]
            counts[number] = _parse_category_field(rec["category"], path, rownum)
        num_labels = (max(names) + 1) if names else 1
        label_names = [""] * num_labels
        for number, name in names.items():
            label_names[number] = name
        if 0 not in names:
            label_names[0] = "-"
        self.label_names: List[str] = label_names
        self.num_labels: int = num_labels
        self._label_counts = counts
        self._label_rows = first_row

    def _select_categories(self, index_header: List[str], categories: Optional[Sequence[str]]) -> None:
        columns = set(index_header) - set(_META_COLUMNS)
        available = [c for c in self._all_categories if c in columns]
        if categories is None:
            selected = available
        else:
            if isinstance(categories, str) or not isinstance(categories, (list, tuple)):
                raise TypeError(f"categories must be None or a list of category names; "
                                f"got {type(categories).__name__}")
            for c in categories:
                if c not in available:
                    raise ValueError(f"categories: unknown category {c!r}; the available ones (columns of "
                                     f"index.csv listed in category.csv) are {available}")
            if len(set(categories)) != len(categories):
                raise ValueError(f"categories must not repeat a name; got {list(categories)}")
            wanted = set(categories)
            selected = [c for c in available if c in wanted]
        self.categories: List[str] = selected
        self.num_categories: int = len(selected)

    def _label_category(self) -> None:
        """Each label's category: the selected category with the largest count
        in label.csv's ``category`` field; ties go to the later category in
        category.csv order; -1 when no selected category lists the label."""
        cat_index = {c: k for k, c in enumerate(self.categories)}
        out = np.full(self.num_labels, -1, dtype=np.int64)
        for number, counts in self._label_counts.items():
            best, best_count = -1, -1
            for name, count in counts.items():
                k = cat_index.get(name)
                if k is None:
                    continue
                if count > best_count or (count == best_count and k > best):
                    best, best_count = k, count
            out[number] = best
        out[0] = 0
        self.label_category: np.ndarray = out

    def label_category_for_tally(self) -> np.ndarray:
        """(num_labels,) int64 in [0, num_categories): :attr:`label_category`
        with -1 (label of no selected category, or a gap in label.csv's
        numbers) mapped to 0, as :class:`interp_engine.IoUTally` requires.

        Those labels never occur in the loaded maps of a consistent dataset
        (a label found in a category's maps is listed under that category in
        label.csv), so their category entry is unused by the tally.
        Requires at least one selected category."""
        if self.num_categories == 0:
            raise ValueError("label_category_for_tally needs at least one selected category; got none")
        out = self.label_category.copy()
        out[out < 0] = 0
        return out

    def _read_c_files(self) -> None:
        self.category_labels: Dict[str, np.ndarray] = {}
        for k, cat in enumerate(self.categories):
            path = os.path.join(self.root, f"c_{cat}.csv")
            if os.path.isfile(path):
                _, rows = _read_csv(path, _REQUIRED_C, f"c_{cat}.csv")
                numbers = []
                for rownum, rec in rows:
                    _parse_int(rec["code"], path, rownum, "code", minimum=0)
                    number = _parse_int(rec["number"], path, rownum, "number", minimum=0)
                    if number != 0 and number not in self._label_counts:
                        raise ValueError(f"{_where(path, rownum, 'number')}: label number {number} is not in "
                                         f"label.csv ({self._label_path})")
                    if number != 0:
                        numbers.append(number)
                self.category_labels[cat] = np.unique(np.asarray(numbers, dtype=np.int64))
            else:
                labels = np.flatnonzero(self.label_category == k).astype(np.int64)
                self.category_labels[cat] = labels[labels != 0]

    def _read_index(self, rows: List[Tuple[int, Dict[str, str]]], split: Optional[str],
                    max_images: Optional[int]) -> None:
        path = self._index_path
        cats = self.categories
        # kind of each category: "pixel" (PNG names) or "image" (integers), decided
        # from its first non-empty cell over all rows; (kind, row) of that cell
        kind: Dict[str, Tuple[str, int]] = {}
        width: Dict[str, int] = {c: 0 for c in cats}
        parsed = []  # per row: (rownum, image, split, (ih, iw, sh, sw), {cat: tuple of entries})
        for rownum, rec in rows:
            image = rec["image"].strip()
            if not image:
                raise ValueError(f"{_where(path, rownum, 'image')}: empty image file name")
            sizes = tuple(_parse_int(rec[c], path, rownum, c, minimum=1) for c in ("ih", "iw", "sh", "sw"))
            row_split = rec.get("split")
            cells: Dict[str, tuple] = {}
            for c in cats:
                entries = [e.strip() for e in rec[c].split(";")]
                entries = [e for e in entries if e]
                if not entries:
                    cells[c] = ()
                    continue
                is_int = [_is_int(e) for e in entries]
                here = "image" if is_int[0] else "pixel"
                if c not in kind:
                    kind[c] = (here, rownum)
                want, first = kind[c]
                for e, isi in zip(entries, is_int):
                    if (want == "image") != isi:
                        if want == "image":
                            raise ValueError(
                                f"{_where(path, rownum, c)}: {e!r} is not an integer label number, but category "
                                f"{c!r} is image-level (its cell at row {first} holds integers); a category's "
                                f"cells must all be integers or all be label PNG names")
                        raise ValueError(
                            f"{_where(path, rownum, c)}: {e!r} is an integer, but category {c!r} is a pixel "
                            f"category (its cell at row {first} holds label PNG names); a category's cells "
                            f"must all be integers or all be label PNG names")
                if want == "image":
                    values = []
                    for e in entries:
                        v = int(e)
                        if v < 0 or v >= self.num_labels:
                            raise ValueError(f"{_where(path, rownum, c)}: label number {v} is out of range "
                                             f"[0, num_labels) = [0, {self.num_labels}) of label.csv")
                        values.append(v)
                    cells[c] = tuple(values)
                else:
                    cells[c] = tuple(entries)
                width[c] = max(width[c], len(entries))
            parsed.append((rownum, image, row_split, sizes, cells))

        self.pixel_categories: List[str] = [c for c in cats if kind.get(c, ("pixel", 0))[0] == "pixel"]
        self.image_level_categories: List[str] = [c for c in cats if kind.get(c, ("pixel", 0))[0] == "image"]
        self.num_pixel_maps: int = sum(width[c] for c in self.pixel_categories)
        self.num_image_labels: int = sum(width[c] for c in self.image_level_categories)

        if split is not None:
            if parsed and parsed[0][2] is None:
                raise ValueError(f"split={split!r} needs a 'split' column in {path}; its header has none")
            parsed = [p for p in parsed if p[2].strip() == split]
        if max_images is not None:
            parsed = parsed[:max_images]

        image_size = pixel_size = None
        for rownum, _, _, sizes, _ in parsed:
            if image_size is None:
                image_size, pixel_size, first = sizes[:2], sizes[2:], rownum
            elif sizes[:2] != image_size or sizes[2:] != pixel_size:
                raise ValueError(f"{_where(path, rownum)}: (ih, iw, sh, sw) = {sizes} differs from "
                                 f"{image_size + pixel_size} at row {first}; all selected rows must share one "
                                 f"image size and one label map size")
        self.image_size: Optional[Tuple[int, int]] = image_size
        self.pixel_size: Optional[Tuple[int, int]] = pixel_size

        n = len(parsed)
        self._rownums = [p[0] for p in parsed]
        self._images = [p[1] for p in parsed]
        self.image_paths: List[str] = [os.path.join(self.images_dir, p[1]) for p in parsed]
        self.splits: List[Optional[str]] = [None if p[2] is None else p[2].strip() for p in parsed]
        # pixel maps: per row, list of (slot, relative png path, category)
        offsets, o = {}, 0
        for c in self.pixel_categories:
            offsets[c] = o
            o += width[c]
        self._pixel_files: List[Tuple[Tuple[int, str, str], ...]] = [
            tuple((offsets[c] + j, png, c) for c in self.pixel_categories for j, png in enumerate(p[4][c]))
            for p in parsed]
        image_labels = np.zeros((n, self.num_image_labels), dtype=np.int32)
        o = 0
        for c in self.image_level_categories:
            for r, p in enumerate(parsed):
                vals = p[4][c]
                image_labels[r, o:o + len(vals)] = vals
            o += width[c]
        self._image_labels = image_labels
        # annotated: a pixel category's cell names a PNG; an image-level category's cell holds a
        # label other than 0 (label 0 means "no label": a cell "0" does not annotate the image)
        image_level = set(self.image_level_categories)
        self._image_categories = np.array(
            [[any(v != 0 for v in p[4][c]) if c in image_level else len(p[4][c]) > 0 for c in cats]
             for p in parsed], dtype=bool).reshape(n, len(cats))
        self._split_arg = split
        self._max_images_arg = max_images
