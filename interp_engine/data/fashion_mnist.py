"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) from local IDX files.

The four files are the standard distribution (gzipped IDX, as Debian's
``dataset-fashion-mnist`` package installs them in
``/usr/share/datasets/fashion-mnist``)::

    train-images-idx3-ubyte.gz   uint8 (60000, 28, 28)
    train-labels-idx1-ubyte.gz   uint8 (60000,)
    t10k-images-idx3-ubyte.gz    uint8 (10000, 28, 28)
    t10k-labels-idx1-ubyte.gz    uint8 (10000,)

(uncompressed files without ``.gz`` are read too).  The directory is ``root``
when given, else the environment variable ``INTERP_ENGINE_FASHION_MNIST``, else
``/usr/share/datasets/fashion-mnist``.  Nothing is downloaded.

:func:`read_idx` reads any IDX file (gzip or raw) and validates it fully;
:func:`fashion_mnist` returns one split as numpy arrays;
:func:`fashion_mnist_tensor` turns uint8 images into the normalized float
tensors :class:`interp_engine.models.fashion_cnn.FashionCNN` takes (it is the
only function here that needs torch, imported when called).
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "FASHION_MNIST_ENV",
           "DEFAULT_FASHION_MNIST_ROOT", "FASHION_MNIST_FILES", "read_idx", "fashion_mnist",
           "fashion_mnist_root", "fashion_mnist_tensor"]

#: the 10 class names, in label order (label k is FASHION_MNIST_CLASSES[k])
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
#: mean and standard deviation of all train-split pixels scaled to [0, 1]
#: (measured: 0.28604, 0.35302); :func:`fashion_mnist_tensor` computes (x / 255 - MEAN) / STD
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
#: environment variable naming the directory of the four files
FASHION_MNIST_ENV = "INTERP_ENGINE_FASHION_MNIST"
DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
#: split -> (images file, labels file), without ``.gz``
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_SPLIT_SIZES = {"train": 60000, "test": 10000}
_INSTALL_HINT = (f"install Debian's dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`), or set "
                 f"{FASHION_MNIST_ENV} to a directory holding the four files "
                 + ", ".join(f"{n}.gz" for pair in FASHION_MNIST_FILES.values() for n in pair))

# IDX type codes (third magic byte) -> big-endian numpy dtype
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _idx_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip: a raw IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from None


def read_idx(path: Union[str, "os.PathLike[str]"], *, ndim: Optional[int] = None,
             dtype: Optional[Union[str, np.dtype]] = None) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped (detected by its magic
    bytes, not its name) or raw.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions
    and one big-endian uint32 per dimension; the payload follows, big-endian,
    C order.  Returns a writable array in native byte order with the file's
    dimensions.

    ``ndim`` / ``dtype``, when given, are what the caller expects; a file with
    another is rejected.  Raises FileNotFoundError for a missing file and
    ValueError naming the file and what was expected and found for a bad magic
    number, an unknown type code, zero dimensions, a short header, or a payload
    size that does not match the dimensions (truncated or with extra bytes).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file {p} not found")
    data = _idx_bytes(p)
    if len(data) < 4:
        raise ValueError(f"{p}: not an IDX file: expected a 4-byte magic number, found {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{p}: not an IDX file: expected magic bytes 00 00 <type> <ndim>, "
                         f"found {data[:4].hex(' ')}")
    code, nd = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{p}: unknown IDX type code 0x{code:02x}; expected one of "
                         + ", ".join(f"0x{c:02x} ({d.name})" for c, d in _IDX_DTYPES.items()))
    if nd == 0:
        raise ValueError(f"{p}: IDX header has 0 dimensions; expected at least 1")
    file_dtype = _IDX_DTYPES[code]
    if ndim is not None and nd != ndim:
        raise ValueError(f"{p}: expected an IDX file with {ndim} dimensions, found {nd}")
    if dtype is not None and file_dtype.newbyteorder("=") != np.dtype(dtype):
        raise ValueError(f"{p}: expected IDX type {np.dtype(dtype).name}, found {file_dtype.name} "
                         f"(code 0x{code:02x})")
    header = 4 + 4 * nd
    if len(data) < header:
        raise ValueError(f"{p}: truncated IDX header: {nd} dimensions need {header} header bytes, "
                         f"found {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=nd, offset=4))
    expected = math.prod(dims) * file_dtype.itemsize  # Python ints: no overflow
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "extra bytes after the data"
        raise ValueError(f"{p}: IDX payload size mismatch ({what}): dimensions {dims} of "
                         f"{file_dtype.name} need {expected} bytes, found {found}")
    arr = np.frombuffer(data, file_dtype, count=expected // file_dtype.itemsize, offset=header)
    return arr.astype(file_dtype.newbyteorder("="), copy=True).reshape(dims)


def fashion_mnist_root(root: Optional[Union[str, "os.PathLike[str]"]] = None) -> Path:
    """The Fashion-MNIST directory: ``root``, else ``$INTERP_ENGINE_FASHION_MNIST``,
    else ``/usr/share/datasets/fashion-mnist`` (not checked for existence)."""
    if root is None:
        root = os.environ.get(FASHION_MNIST_ENV) or DEFAULT_FASHION_MNIST_ROOT
    return Path(root)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST file {root / name}.gz (or {name}) not found; {_INSTALL_HINT}")


def fashion_mnist(split: str = "train", root: Optional[Union[str, "os.PathLike[str]"]] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """One split of Fashion-MNIST from the local IDX files.

    ``split``: ``"train"`` (60,000 images) or ``"test"`` (10,000; the
    ``t10k`` files).  ``root``: see :func:`fashion_mnist_root`.

    Returns ``(images, labels)``: uint8 (N, 28, 28) (0 = background, 255 =
    full intensity) and int64 (N,) in 0..9 (names in
    :data:`FASHION_MNIST_CLASSES`).  A missing directory or file raises
    FileNotFoundError saying what to install; a malformed file, or images
    and labels that disagree (count, shape, label range), ValueError."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    r = fashion_mnist_root(root)
    if not r.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST directory {r} not found; {_INSTALL_HINT}")
    img_name, lab_name = FASHION_MNIST_FILES[split]
    img_path, lab_path = _find(r, img_name), _find(r, lab_name)
    images = read_idx(img_path, ndim=3, dtype=np.uint8)
    labels = read_idx(lab_path, ndim=1, dtype=np.uint8)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{img_path}: expected images of 28x28, found {images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise ValueError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{lab_path}: labels must be in 0..9; found {int(labels.max())}")
    return images, labels.astype(np.int64)


def fashion_mnist_tensor(images: Union[np.ndarray, "torch.Tensor"]) -> "torch.Tensor":
    """uint8 images (N, 28, 28) (numpy or torch; any H, W) -> float32 tensor
    (N, 1, H, W) normalized as ``(x / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD``
    (0.2860, 0.3530: the train-split pixel mean and std), the input of
    :class:`~interp_engine.models.fashion_cnn.FashionCNN`.  Needs torch."""
    import torch

    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.ndim != 3:
        raise ValueError(f"images must be uint8 of shape (N, H, W); got {t.dtype} {tuple(t.shape)}")
    return t.unsqueeze(1).float().div_(255.0).sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
