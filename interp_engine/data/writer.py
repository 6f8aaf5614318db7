"""Writing a Broden-format concept segmentation directory from numpy arrays.

The format (docs/algorithms.md §1, and the README of broden1_224)::

    root/
      index.csv       image,split,ih,iw,sh,sw,<category...>
      label.csv       number,name,category,frequency,coverage,syns
      category.csv    name,first,last,count,frequency
      c_<category>.csv  code,number,name,frequency,coverage
      images/...      the images (PNG) and the label maps (PNG, label = R + 256*G)
      interp_engine_manifest.json   our completion marker (not part of Broden)

Label numbers are global: 1..L-1 across all categories, 0 = "no label".  A
pixel-label cell of ``index.csv`` is a ``;``-separated list of PNG file names
relative to ``images/``; an image-level cell a ``;``-separated list of label
numbers; an empty cell means "not annotated".

- ``label.csv``: ``category`` lists, for every category where the label occurs,
  ``name(n)`` with n the number of images where it occurs in that category;
  ``frequency`` is the number of images where it occurs at all; ``coverage`` the
  summed fraction of each image it covers (an image-level label covers 1).
- ``c_<cat>.csv``: the dense per-category coding (codes 1..count, in increasing
  label number), with the label's frequency and coverage within that category.
- ``category.csv``: ``first``/``last`` the smallest/largest label number of
  the category, ``count`` its number of labels, ``frequency`` the number of
  images where the category is annotated.

The directory appears atomically: everything is written into a temporary
sibling directory, the manifest last, and the directory is renamed into place.
A directory without a valid manifest is not a finished dataset.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

MANIFEST_NAME = "interp_engine_manifest.json"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    return type(x).__name__


def _png_bytes(array: np.ndarray, compress_level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_label_png(labels: np.ndarray) -> np.ndarray:
    """Encode an (h, w) integer label map as an (h, w, 3) uint8 RGB image with
    ``R = label % 256``, ``G = label // 256``, ``B = 0`` (labels in [0, 65535])."""
    lab = np.asarray(labels).astype(np.int64)
    out = np.zeros(lab.shape + (3,), dtype=np.uint8)
    out[..., 0] = lab & 255
    out[..., 1] = lab >> 8
    return out


def label_numbers(rgb: np.ndarray) -> np.ndarray:
    """The label numbers of an (h, w, 3+) uint8 Broden label image: ``R + 256*G``
    as int32 (h, w), computed in int32 (``uint8 * 256`` would overflow)."""
    rgb = np.asarray(rgb)
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def read_manifest(root: PathLike) -> Optional[Dict[str, Any]]:
    """Return the parsed manifest of a finished dataset directory, or None when
    the directory, its manifest or the files it promises are missing or invalid."""
    root = Path(root)
    try:
        with open(root / MANIFEST_NAME, "r", encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != "broden":
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        return None
    for name in ("index.csv", "label.csv", "category.csv"):
        if not (root / name).is_file():
            return None
    try:
        count = sum(len(files) for _, _, files in os.walk(root / "images"))
    except OSError:  # pragma: no cover - unreadable directory
        return None
    if count != manifest.get("num_files"):
        return None
    return manifest


def _check_labels(arr: np.ndarray, name: str, allowed: np.ndarray, cat: str) -> None:
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= allowed.size:
        raise ValueError(f"{name} must hold label numbers in [0, {allowed.size}); got values in [{lo}, {hi}]")
    present = np.unique(arr)
    bad = present[~allowed[present]]
    if bad.size:
        raise ValueError(f"{name} holds labels {bad[:5].tolist()} that are not in category {cat!r} "
                         f"(per label_categories)")


def write_broden(root: PathLike, images: Union[np.ndarray, Sequence[np.ndarray]], *,
                 label_names: Sequence[str], label_categories: Sequence[Optional[str]],
                 categories: Sequence[str],
                 pixel_labels: Optional[Mapping[str, Sequence[Optional[np.ndarray]]]] = None,
                 image_labels: Optional[Mapping[str, Sequence[Sequence[int]]]] = None,
                 splits: Optional[Sequence[str]] = None,
                 image_names: Optional[Sequence[str]] = None,
                 subdir: str = "data",
                 metadata: Optional[Mapping[str, Any]] = None,
                 overwrite: bool = False,
                 compress_level: int = 1) -> Path:
    """Write a Broden-format dataset directory at ``root``; return its path.

    Parameters
    ----------
    root:
        The directory to create (its parent is created if needed). If it
        exists: ``overwrite=True`` replaces it, else FileExistsError.
    images:
        N uint8 RGB images, each (ih, iw, 3): a sequence, or one (N, ih, iw, 3)
        array. Sizes may differ between images.
    label_names:
        L names; ``label_names[c]`` names label c. Entry 0 is the "no label"
        entry and is not written.
    label_categories:
        L entries: the category of each label (entry 0 ignored; None for a
        label that belongs to no category and must not occur). Labels are
        numbered globally, so c_<cat>.csv codes them densely in number order.
    categories:
        The category names, in the order of the ``index.csv`` columns and of
        ``category.csv``. Names must be identifiers-like (no ``,;()``).
    pixel_labels:
        ``{category: per-image entries}``, N entries each: None (not
        annotated), an (sh, sw) integer label map, or a (P, sh, sw) stack of P
        maps (several maps of one category, like Broden's parts). Every label
        in a map must belong to that category, or be 0. All maps of one image
        share (sh, sw).
    image_labels:
        ``{category: per-image entries}``, N entries each: a sequence of label
        numbers (image-level labels; empty = not annotated). A category is
        either pixel-level or image-level.
    splits:
        N split names (default all ``"train"``).
    image_names:
        N file stems, unique (default ``"%06d" % i``). Files are
        ``images/<subdir>/<stem>.png`` and ``<stem>_<category>[_<p>].png``.
    metadata:
        JSON-serializable mapping stored in the manifest (e.g. generator
        parameters and seed).
    compress_level:
        PNG zlib level 0..9 (default 1: fast).

    Images without pixel maps get ``sh, sw = ih // 2, iw // 2`` (Broden's
    convention; the label maps carry their own size otherwise).
    """
    root = Path(root)
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be an int in [0, 9]; got {compress_level!r}")
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must have shape (N, ih, iw, 3); got {_describe(images)}")
    n = len(images)
    categories = [str(c) for c in categories]
    if len(set(categories)) != len(categories) or not categories:
        raise ValueError(f"categories must be a non-empty list of distinct names; got {categories}")
    for c in categories:
        if not c or any(ch in c for ch in ",;()/\\\n\"") or c in ("image", "split", "ih", "iw", "sh", "sw"):
            raise ValueError(f"category name {c!r} is not allowed (empty, reserved, or holds one of ,;()/\\\")")
    num_labels = len(label_names)
    if len(label_categories) != num_labels:
        raise ValueError(f"label_categories must have len(label_names) = {num_labels} entries; "
                         f"got {len(label_categories)}")
    if num_labels < 2:
        raise ValueError(f"label_names must name label 0 and at least one label; got {num_labels} entries")
    for c in range(1, num_labels):
        cat = label_categories[c]
        if cat is not None and cat not in categories:
            raise ValueError(f"label_categories[{c}] = {cat!r} is not one of categories {categories}")
        name = str(label_names[c])
        if any(ch in name for ch in ",\n\""):
            raise ValueError(f"label_names[{c}] = {name!r} must not contain a comma, quote or newline")
    pixel_labels = dict(pixel_labels or {})
    image_labels = dict(image_labels or {})
    for kind, mapping in (("pixel_labels", pixel_labels), ("image_labels", image_labels)):
        for cat, entries in mapping.items():
            if cat not in categories:
                raise ValueError(f"{kind} has category {cat!r}, not one of categories {categories}")
            if len(entries) != n:
                raise ValueError(f"{kind}[{cat!r}] must have one entry per image ({n}); got {len(entries)}")
    both = set(pixel_labels) & set(image_labels)
    if both:
        raise ValueError(f"a category is pixel-level or image-level, not both; got both for {sorted(both)}")
    if splits is None:
        splits = ["train"] * n
    if len(splits) != n:
        raise ValueError(f"splits must have one entry per image ({n}); got {len(splits)}")
    if image_names is None:
        image_names = ["%06d" % i for i in range(n)]
    if len(image_names) != n or len(set(image_names)) != n:
        raise ValueError(f"image_names must be {n} distinct names")
    for s in image_names:
        if not s or any(ch in s for ch in ",;/\\\n\"") or s.startswith("."):
            raise ValueError(f"image name {s!r} is not allowed")
    if any(ch in subdir for ch in ",;\\\n\"") or not subdir or subdir.startswith("."):
        raise ValueError(f"subdir must be a plain folder name; got {subdir!r}")
    meta = dict(metadata or {})
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serializable; got {meta!r}") from exc

    cat_index = {c: i for i, c in enumerate(categories)}
    label_cat = np.full(num_labels, -1, dtype=np.int64)
    for c in range(1, num_labels):
        if label_categories[c] is not None:
            label_cat[c] = cat_index[label_categories[c]]
    allowed = {cat: np.concatenate([[True], label_cat[1:] == i]) for i, cat in enumerate(categories)}

    # statistics: per (label, category) image counts and coverage
    freq = np.zeros((num_labels, len(categories)), dtype=np.int64)
    cover = np.zeros((num_labels, len(categories)), dtype=np.float64)
    label_images = np.zeros(num_labels, dtype=np.int64)
    cat_images = np.zeros(len(categories), dtype=np.int64)

    if root.exists() and not overwrite:
        raise FileExistsError(f"root {str(root)!r} exists; pass overwrite=True to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / "images" / subdir).mkdir(parents=True)
        rows: List[List[Any]] = []
        num_files = 0
        for i in range(n):
            img = np.asarray(images[i])
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"images[{i}] must be a uint8 array of shape (ih, iw, 3); got {_describe(img)}")
            ih, iw = img.shape[:2]
            stem = image_names[i]
            rel = f"{subdir}/{stem}.png"
            (tmp / "images" / rel).write_bytes(_png_bytes(np.ascontiguousarray(img), compress_level))
            num_files += 1
            seg: Optional[Tuple[int, int]] = None
            present_here = np.zeros(num_labels, dtype=bool)
            cells: List[str] = []
            for cat in categories:
                ci = cat_index[cat]
                if cat in pixel_labels and pixel_labels[cat][i] is not None:
                    maps = np.asarray(pixel_labels[cat][i])
                    name = f"pixel_labels[{cat!r}][{i}]"
                    if maps.ndim == 2:
                        maps = maps[None]
                    if maps.ndim != 3 or maps.dtype.kind not in "iu":
                        raise ValueError(f"{name} must be an integer (sh, sw) or (P, sh, sw) array; "
                                         f"got {_describe(maps)}")
                    if seg is None:
                        seg = (maps.shape[1], maps.shape[2])
                    elif seg != maps.shape[1:]:
                        raise ValueError(f"{name} has size {maps.shape[1:]}, other maps of image {i} {seg}")
                    _check_labels(maps, name, allowed[cat], cat)
                    files = []
                    for p in range(maps.shape[0]):
                        suffix = f"_{cat}" if maps.shape[0] == 1 else f"_{cat}_{p}"
                        frel = f"{subdir}/{stem}{suffix}.png"
                        (tmp / "images" / frel).write_bytes(_png_bytes(encode_label_png(maps[p]), compress_level))
                        num_files += 1
                        files.append(frel)
                    counts = np.bincount(maps.reshape(-1).astype(np.int64), minlength=num_labels)
                    counts[0] = 0
                    if counts.any():
                        cat_images[ci] += 1
                        hit = counts > 0
                        freq[hit, ci] += 1
                        cover[:, ci] += counts / float(seg[0] * seg[1])
                        present_here |= hit
                    cells.append(";".join(files))
                elif cat in image_labels and len(image_labels[cat][i]) > 0:
                    labs = np.asarray(image_labels[cat][i])
                    name = f"image_labels[{cat!r}][{i}]"
                    if labs.ndim != 1 or labs.dtype.kind not in "iu":
                        raise ValueError(f"{name} must be a sequence of label numbers; got {_describe(labs)}")
                    _check_labels(labs, name, allowed[cat], cat)
                    labs = [int(v) for v in labs if v != 0]
                    uniq = sorted(set(labs))
                    if uniq:
                        cat_images[ci] += 1
                        freq[uniq, ci] += 1
                        cover[uniq, ci] += 1.0
                        present_here[uniq] = True
                    cells.append(";".join(str(v) for v in labs))
                else:
                    cells.append("")
            label_images += present_here
            if seg is None:
                seg = (ih // 2, iw // 2)
            rows.append([rel, str(splits[i]), ih, iw, seg[0], seg[1]] + cells)

        def write_csv(name: str, header: List[str], body: List[List[Any]]) -> None:
            with open(tmp / name, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(body)

        write_csv("index.csv", ["image", "split", "ih", "iw", "sh", "sw"] + categories, rows)
        label_rows = []
        for c in range(1, num_labels):
            occurs = [f"{cat}({freq[c, ci]})" for ci, cat in enumerate(categories) if freq[c, ci] > 0]
            if not occurs and label_cat[c] >= 0:
                occurs = [f"{categories[label_cat[c]]}(0)"]
            label_rows.append([c, label_names[c], ";".join(occurs), int(label_images[c]),
                               f"{cover[c].sum():.6f}", ""])
        write_csv("label.csv", ["number", "name", "category", "frequency", "coverage", "syns"], label_rows)
        cat_rows = []
        for ci, cat in enumerate(categories):
            members = [c for c in range(1, num_labels) if label_cat[c] == ci]
            write_csv(f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"],
                      [[code, c, label_names[c], int(freq[c, ci]), f"{cover[c, ci]:.6f}"]
                       for code, c in enumerate(members, start=1)])
            cat_rows.append([cat, min(members) if members else "", max(members) if members else "",
                             len(members), int(cat_images[ci])])
        write_csv("category.csv", ["name", "first", "last", "count", "frequency"], cat_rows)
        manifest = {"format": "broden", "format_version": FORMAT_VERSION, "num_images": n,
                    "num_files": num_files, "num_labels": num_labels, "categories": categories,
                    "metadata": meta}
        with open(tmp / MANIFEST_NAME, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
        if root.exists():
            if not overwrite:  # appeared meanwhile (another process)
                raise FileExistsError(f"root {str(root)!r} exists; pass overwrite=True to replace it")
            old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
