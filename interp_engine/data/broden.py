"""Reader for datasets in the Broden format (Bau et al., CVPR 2017), the
interchange format of Network Dissection.

A Broden directory holds::

    index.csv      image,split,ih,iw,sh,sw,<category>,<category>,...   one row per image
    label.csv      number,name,category,frequency,coverage,syns          one row per label
    category.csv   name,first,last,count,frequency                       one row per category
    c_<cat>.csv    code,number,name,frequency,coverage                   optional, per category
    images/        the images and label PNGs that index.csv names (paths relative to images/)

A category cell of ``index.csv`` is empty, a ``;``-separated list of label
PNG file names (a *pixel* category: each PNG is one label map, label number =
``R + 256*G``), or a ``;``-separated list of integers (an *image-level*
category: each integer is a label covering the whole image).  Which kind a
category is gets decided from its non-empty cells over all rows of
``index.csv``; a category whose cells mix both kinds is an error.

The reader parses the CSV files once at construction (cheap: the real
broden1_224 has 63,305 rows) and validates them; images and label PNGs are
read lazily, one image per :meth:`BrodenDataset.__getitem__`, so that a
``torch.utils.data.DataLoader`` with workers can decode them in parallel
(:func:`broden_loader`).

Every error about the files names the file and, for CSV files, the row
(1-based as in a spreadsheet: the header is row 1, the first data row is
row 2) and the column.

This module holds the dataset (loading, transforms, the loader); the parsing
of the CSV files, which needs no torch, is in ``_broden_index.py``; the
writer is :mod:`interp_engine.data.writer`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from .._loader import require_torch

torch = require_torch("interp_engine.data.BrodenDataset (the Broden reader, a torch Dataset)")
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from ._broden_index import _REQUIRED_INDEX, _BrodenIndex, _read_csv, _where  # noqa: E402
from ._files import image_file_problem as _image_file_problem  # noqa: E402
from ._files import label_png_problem as _label_png_problem  # noqa: E402
from .writer import label_numbers  # noqa: E402

__all__ = [
    "BrodenDataset",
    "broden_loader",
    "decode_label_png",
    "NETDISSECT_MEAN_RGB",
    "NETDISSECT_SCALE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: NetDissect-Lite's mean pixel, in RGB order (Lite stores it as BGR
#: ``[109.5388, 118.6897, 124.6901]`` and flips the image to BGR and back).
NETDISSECT_MEAN_RGB = (124.6901, 118.6897, 109.5388)
#: NetDissect-Lite divides the mean-subtracted image by ``255 * 0.224``.
NETDISSECT_SCALE = 255.0 * 0.224
#: torchvision's ImageNet normalization (applied to ``x / 255``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TRANSFORMS = ("netdissect", "imagenet", "unit", None)
# label PNG modes accepted by decode_label_png (P = palette, resolved to RGB)
_LABEL_PNG_MODES = ("RGB", "RGBA", "P")


# --------------------------------------------------------------------------- label PNGs
def decode_label_png(path: str) -> np.ndarray:
    """Decode a Broden label PNG into a label map.

    Args:
        path: the PNG file.

    Returns:
        (h, w) int32 array, label number ``R + 256*G`` of each pixel (computed
        in int32: ``uint8 * 256`` would overflow); the B channel and alpha are
        ignored.  0 means "no label".

    The real Broden's label PNGs are RGB.  RGBA (alpha dropped) and palette
    ("P") PNGs, resolved to RGB through their palette, are accepted too.  A
    grayscale (or other mode) PNG is rejected with a ValueError: whether its
    gray value would be ``R`` alone or ``R = G = B`` cannot be told, and both
    readings give different labels.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a readable image, or not an RGB/RGBA/palette image.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label PNG not found: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in _LABEL_PNG_MODES:
                raise ValueError(f"label PNG {path} must be an RGB image (label = R + 256*G); "
                                 f"got PIL mode {mode!r}")
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"label PNG {path} could not be decoded: {exc}") from exc
    return label_numbers(rgb)


# --------------------------------------------------------------------------- transforms
def _transform_netdissect(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32).permute(2, 0, 1)
    mean = torch.tensor(NETDISSECT_MEAN_RGB, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / NETDISSECT_SCALE).contiguous()


def _transform_imagenet(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).contiguous()


def _transform_unit(img: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32).permute(2, 0, 1) / 255.0).contiguous()


def _transform_none(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32).permute(2, 0, 1).contiguous()


_BUILTIN_TRANSFORMS: Dict[Any, Callable[[np.ndarray], torch.Tensor]] = {
    "netdissect": _transform_netdissect,
    "imagenet": _transform_imagenet,
    "unit": _transform_unit,
    None: _transform_none,
}


# --------------------------------------------------------------------------- dataset
class BrodenDataset(_BrodenIndex, Dataset):
    """A Broden-format directory as a map-style ``torch.utils.data.Dataset``.

    Args:
        root: the dataset directory (holding ``index.csv``, ``label.csv``,
            ``category.csv``, optional ``c_<category>.csv`` and ``images/``).
        categories: None = every category column of ``index.csv`` that
            ``category.csv`` lists (other non-meta columns are ignored); else
            a list of category names (ValueError naming the available ones for
            an unknown name).  Kept in ``category.csv`` order.
        split: None = all rows; else only the rows whose ``split`` column
            equals it (e.g. ``"train"``, ``"val"``).
        transform: how :meth:`__getitem__` turns the uint8 (ih, iw, 3) RGB
            image into a float32 (3, ih, iw) tensor: ``"netdissect"``
            (NetDissect-Lite: ``(x - [124.6901, 118.6897, 109.5388]) /
            (255 * 0.224)``), ``"imagenet"`` (torchvision:
            ``(x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``),
            ``"unit"`` (``x / 255``, RGB in [0, 1]: the bundled ConceptCNN's
            input), None (``x`` as float32 in [0, 255]), or a callable taking the
            uint8 (H, W, 3) numpy image and returning a (3, H, W) float
            tensor (it must be picklable for DataLoader workers under the
            ``spawn`` start method).
        max_images: keep only the first ``max_images`` rows (after ``split``).
        check_files: run :meth:`verify_files` at construction: every image
            and label PNG of the selected rows must exist and look complete
            (header and end marker; label PNGs also their size and colour
            type), without decoding.  Off by default (on the real Broden
            that is ~200,000 files); the command line turns it on.  Bad
            files are always reported, naming the row, when an item is
            loaded.

    Each item (:meth:`__getitem__`) is a dict::

        "image":            float32 tensor (3, ih, iw), transformed
        "pixel_labels":     int32 tensor (P, sh, sw): the label maps of the
                            pixel categories, category after category, each
                            category with as many slots as its fullest cell
                            holds PNGs (missing maps are all zeros)
        "image_labels":     int32 tensor (S,): the image-level labels, category
                            after category, each with as many slots as its
                            fullest cell holds integers (0-padded)
        "image_categories": bool tensor (num_categories,): category annotated in
                            this image (its cell is non-empty)
        "index":            int, the item's index

    Images are converted to RGB (grayscale, palette, RGBA dropped alpha, ...)
    and resized to the row's (ih, iw) when their size differs, with PIL's
    ``Image.resize(..., Image.BILINEAR)`` (which low-pass filters when
    shrinking).  Label maps are never resized: a PNG whose size differs from
    the row's (sh, sw) raises ValueError naming it.

    Metadata attributes: ``root``, ``categories``, ``pixel_categories``,
    ``image_level_categories``, ``num_categories``, ``label_names``,
    ``num_labels``, ``label_category``, ``category_labels``, ``pixel_size``,
    ``image_size``, ``num_pixel_maps``, ``num_image_labels``,
    ``image_paths``, ``splits``; see the docs (docs/data.md).
    """

    def __init__(self, root: Union[str, "os.PathLike[str]"], *, categories: Optional[Sequence[str]] = None,
                 split: Optional[str] = None, transform: Union[str, None, Callable[[np.ndarray], Any]] = "netdissect",
                 max_images: Optional[int] = None, check_files: bool = False) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike); got {type(root).__name__}")
        root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(root):
            raise FileNotFoundError(f"root must be a Broden directory; {root} is not a directory")
        if isinstance(transform, str) or transform is None:
            if transform not in _BUILTIN_TRANSFORMS:
                raise ValueError(f"transform must be one of {TRANSFORMS} or a callable; got {transform!r}")
        elif not callable(transform):
            raise TypeError(f"transform must be one of {TRANSFORMS} or a callable; got {type(transform).__name__}")
        if split is not None and not isinstance(split, str):
            raise TypeError(f"split must be None or a string such as 'train'; got {type(split).__name__}")
        if max_images is not None:
            if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 0:
                raise ValueError(f"max_images must be None or an integer >= 0; got {max_images!r}")
            max_images = int(max_images)
        self.root = root
        self.images_dir = os.path.join(root, "images")
        self._transform_spec = transform
        self._transform = _BUILTIN_TRANSFORMS[transform] if (isinstance(transform, str) or transform is None) \
            else transform

        self._index_path = os.path.join(root, "index.csv")
        self._read_categories(os.path.join(root, "category.csv"))
        self._read_labels(os.path.join(root, "label.csv"))
        index_header, index_rows = _read_csv(self._index_path, _REQUIRED_INDEX, "index.csv")
        self._select_categories(index_header, categories)
        self._label_category()
        self._read_c_files()
        self._read_index(index_rows, split, max_images)
        if check_files:
            self.verify_files()

    # ------------------------------------------------------------------ loading
    def __len__(self) -> int:
        return len(self._images)

    def _check_index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            if isinstance(i, torch.Tensor) and i.numel() == 1 and not i.is_floating_point():
                i = int(i)
            else:
                raise TypeError(f"index must be an integer; got {type(i).__name__}")
        i = int(i)
        n = len(self)
        if i < -n or i >= n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        return i + n if i < 0 else i

    def _check_row_files(self, i: int, deep: bool = False) -> None:
        row = self._rownums[i]
        if not os.path.isfile(self.image_paths[i]):
            raise FileNotFoundError(f"{_where(self._index_path, row, 'image')}: image {self._images[i]!r} not "
                                    f"found at {self.image_paths[i]}")
        if deep:
            problem = _image_file_problem(self.image_paths[i])
            if problem:
                raise ValueError(f"{_where(self._index_path, row, 'image')}: image {self.image_paths[i]} "
                                 f"{problem}")
        for _, png, cat in self._pixel_files[i]:
            full = os.path.join(self.images_dir, png)
            if not os.path.isfile(full):
                raise FileNotFoundError(f"{_where(self._index_path, row, cat)}: label PNG {png!r} not found "
                                        f"at {full}")
            if deep:
                problem = _label_png_problem(full, self.pixel_size)
                if problem:
                    raise ValueError(f"{_where(self._index_path, row, cat)}: label PNG {full} {problem}")

    def verify_files(self, num_threads: Optional[int] = None) -> None:
        """Check every image and label PNG of the selected rows without
        decoding them, so that a missing or truncated file is found before a
        long run rather than in its last pass.

        Checks: the file exists and is not empty; a PNG starts with the PNG
        signature and an IHDR chunk and ends with the IEND chunk; a JPEG
        starts with the SOI marker and has the EOI marker (``FF D9``) in its
        last 4 KB; another format must be identified by Pillow from its
        header.  A label PNG must also have the row's size (sh, sw) and an
        RGB, RGBA or palette colour type (read from IHDR).  What is not
        checked: the compressed data between header and end marker (a file
        damaged in the middle is reported when its item is loaded).

        ``num_threads``: file reads in parallel (default: 8; the checks wait
        on the disk, not the CPU).

        Raises:
            FileNotFoundError: a file is missing (the message names the
                ``index.csv`` row, the column and the path; the first bad row).
            ValueError: a file is empty, truncated or of the wrong kind.
        """
        from concurrent.futures import ThreadPoolExecutor

        if num_threads is None:
            num_threads = 8
        if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be None or an integer >= 1; got {num_threads!r}")
        n = len(self)
        chunk = max(1, -(-n // (4 * int(num_threads))))
        ranges = [range(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]

        def check(rows: range) -> Optional[BaseException]:
            for i in rows:
                try:
                    self._check_row_files(i, deep=True)
                except (FileNotFoundError, ValueError) as exc:
                    return exc
            return None

        if num_threads == 1 or len(ranges) <= 1:
            errors = [check(r) for r in ranges]
        else:
            with ThreadPoolExecutor(max_workers=int(num_threads)) as pool:
                errors = list(pool.map(check, ranges))
        for exc in errors:  # the first bad row, in row order
            if exc is not None:
                raise exc

    def fingerprint(self) -> Dict[str, Any]:
        """What this dataset gives a run, as digests (for checkpoint keys):
        ``rows`` covers the selected rows (their index.csv row numbers, image
        and label PNG names, image-level labels and annotated categories),
        ``labels`` the label names, categories and each label's category,
        ``sizes`` the image and label map sizes, ``transform`` the transform
        (see :func:`interp_engine._fingerprint.transform_fingerprint`; a
        callable is probed on the first image).  The bytes of the image and
        label files are not hashed (their names are): replacing a file by
        another of the same name is not detected.  ``root`` is recorded too
        but is informational (a moved copy of the same data is the same
        dataset)."""
        from .._fingerprint import Digest, transform_fingerprint

        rows = Digest()
        rows.json([self._rownums, self._images, self.splits])
        rows.json([[(slot, png, cat) for slot, png, cat in files] for files in self._pixel_files])
        rows.array(self._image_labels).array(self._image_categories)
        labels = Digest().json([self.label_names, self.categories, self.pixel_categories,
                                self.image_level_categories])
        labels.array(self.label_category)
        for c in self.categories:
            labels.text(c).array(self.category_labels[c])
        probes = []
        if not (isinstance(self._transform_spec, str) or self._transform_spec is None) and len(self):
            try:
                probes = [self.load_image(0)]
            except (FileNotFoundError, ValueError):
                probes = []
        return {"root": self.root, "rows": rows.hexdigest(), "num_images": len(self),
                "split": self._split_arg, "max_images": self._max_images_arg,
                "labels": labels.hexdigest(),
                "sizes": [list(self.image_size or ()), list(self.pixel_size or ())],
                "transform": transform_fingerprint(self._transform_spec, probes,
                                                   builtin=tuple(k for k in _BUILTIN_TRANSFORMS if k))}

    def transform_key(self) -> Dict[str, Any]:
        """The fingerprint of this dataset's transform alone, comparable
        across datasets: a built-in transform by name, a callable by its
        name and its output on a fixed synthetic 32 x 32 probe image (see
        :func:`interp_engine._fingerprint.transform_fingerprint`).  What
        vectors fitted on this data record, so that they are never scored on
        inputs prepared another way."""
        from .._fingerprint import transform_fingerprint

        probe = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        return transform_fingerprint(self._transform_spec, [probe],
                                     builtin=tuple(k for k in _BUILTIN_TRANSFORMS if k))

    def load_image(self, i: int) -> np.ndarray:
        """The i-th image, untransformed: uint8 (ih, iw, 3) RGB, resized to
        the row's (ih, iw) with PIL bilinear when its size differs."""
        from PIL import Image, UnidentifiedImageError

        i = self._check_index(i)
        path = self.image_paths[i]
        row = self._rownums[i]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{_where(self._index_path, row, 'image')}: image {self._images[i]!r} not "
                                    f"found at {path}")
        ih, iw = self.image_size  # type: ignore[misc]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (iw, ih):
                    im = im.resize((iw, ih), Image.BILINEAR)
                arr = np.array(im, dtype=np.uint8)  # writable copy (torch.from_numpy warns on read-only)
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{_where(self._index_path, row, 'image')}: image {path} could not be "
                             f"decoded: {exc}") from exc
        return np.ascontiguousarray(arr)

    def load_label_maps(self, i: int) -> np.ndarray:
        """The i-th image's pixel label maps: int32 (P, sh, sw), slots as in
        :meth:`__getitem__` (missing maps are zeros)."""
        i = self._check_index(i)
        sh, sw = self.pixel_size  # type: ignore[misc]
        out = np.zeros((self.num_pixel_maps, sh, sw), dtype=np.int32)
        row = self._rownums[i]
        for slot, png, cat in self._pixel_files[i]:
            full = os.path.join(self.images_dir, png)
            where = _where(self._index_path, row, cat)
            if not os.path.isfile(full):
                raise FileNotFoundError(f"{where}: label PNG {png!r} not found at {full}")
            try:
                lab = decode_label_png(full)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
            if lab.shape != (sh, sw):
                raise ValueError(f"{where}: label PNG {full} has size (h, w) = {lab.shape}; the row's (sh, sw) "
                                 f"is {(sh, sw)}")
            hi = int(lab.max()) if lab.size else 0
            if hi >= self.num_labels:
                raise ValueError(f"{where}: label PNG {full} holds label number {hi}, out of range "
                                 f"[0, num_labels) = [0, {self.num_labels}) of label.csv")
            out[slot] = lab
        return out

    def __getitem__(self, i: Any) -> Dict[str, Any]:
        """The i-th item: a dict of ``image`` float32 (3, ih, iw), ``pixel_labels``
        int32 (P, sh, sw), ``image_labels`` int32 (S,), ``image_categories``
        bool (num_categories,) tensors and ``index`` (int)."""
        i = self._check_index(i)
        item: Dict[str, Any] = {}
        if getattr(self, "_load_images", True):
            img = self._transform(self.load_image(i))
            if isinstance(img, np.ndarray):
                img = torch.from_numpy(img)
            if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
                got = f"shape {tuple(img.shape)}" if isinstance(img, torch.Tensor) else type(img).__name__
                raise TypeError(f"transform must return a (3, H, W) float tensor; got {got}")
            item["image"] = img
        if getattr(self, "_load_labels", True):
            item["pixel_labels"] = torch.from_numpy(self.load_label_maps(i))
        item["image_labels"] = torch.from_numpy(self._image_labels[i].copy())
        item["image_categories"] = torch.from_numpy(self._image_categories[i].copy())
        item["index"] = i
        return item

    def with_fields(self, *, image: bool = True, pixel_labels: bool = True) -> "BrodenDataset":
        """A view of this dataset whose items leave out the image and/or the
        pixel label maps (the files are then not read at all): a pass that only
        needs the images (activations) or only the labels (from cached
        activations) saves the decoding of the other.  The other fields
        (``image_labels``, ``image_categories``, ``index``) are always there."""
        import copy

        view = copy.copy(self)
        view._load_images = bool(image)
        view._load_labels = bool(pixel_labels)
        return view

    def row_number(self, i: int) -> int:
        """The spreadsheet row number (header = 1) in index.csv of item i."""
        return self._rownums[self._check_index(i)]

    def __repr__(self) -> str:
        return (f"BrodenDataset(root={self.root!r}, images={len(self)}, categories={self.categories}, "
                f"num_labels={self.num_labels}, P={self.num_pixel_maps}, S={self.num_image_labels})")


def broden_loader(dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0, shuffle: bool = False,
                  pin_memory: bool = False, seed: Optional[int] = None) -> DataLoader:
    """A ``torch.utils.data.DataLoader`` over a :class:`BrodenDataset`.

    Batches are dicts of stacked tensors (torch's default collate):
    ``image`` float32 (B, 3, ih, iw), ``pixel_labels`` int32 (B, P, sh, sw),
    ``image_labels`` int32 (B, S), ``image_categories`` bool
    (B, num_categories), ``index`` int64 (B,).  The last batch may be
    smaller.  ``num_workers > 0`` decodes in worker processes; the batches
    are the same as with ``num_workers=0``.  ``seed`` fixes the shuffling
    order (None: torch's global generator).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0; got {num_workers!r}")
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=int(batch_size), shuffle=bool(shuffle), num_workers=int(num_workers),
                      pin_memory=bool(pin_memory), generator=generator)
