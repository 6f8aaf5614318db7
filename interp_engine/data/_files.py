"""Cheap completeness checks of image and label files (no decoding, no
torch): a missing, empty or truncated file is found from its first and last
bytes, so that a long run can refuse bad data before it starts."""
from __future__ import annotations

import os
from typing import Optional, Tuple

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# PNG colour types: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA
_PNG_LABEL_COLOR_TYPES = {2: "RGB", 3: "palette", 6: "RGBA"}


def _head_tail(path: str, head: int, tail: int) -> Tuple[int, bytes, bytes]:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(0)
        first = f.read(head)
        f.seek(max(0, size - tail))
        last = f.read(tail)
    return size, first, last


def _png_problem(size: int, first: bytes, last: bytes) -> Optional[str]:
    if len(first) < 33 or first[12:16] != b"IHDR":
        return f"is not a complete PNG ({size} bytes; no IHDR chunk after the signature)"
    if not last.endswith(_PNG_IEND):
        return f"is truncated: a PNG of {size} bytes that does not end with the IEND chunk"
    return None


def image_file_problem(path: str) -> Optional[str]:
    """Why an image file is unusable (None: it looks complete), from its first
    and last bytes only."""
    try:
        size, first, last = _head_tail(path, 64, 4096)
    except OSError as exc:
        return f"could not be read: {exc}"
    if size == 0:
        return "is empty (0 bytes)"
    if first.startswith(_PNG_SIGNATURE):
        return _png_problem(size, first, last)
    if first.startswith(b"\xff\xd8\xff"):
        if b"\xff\xd9" not in last:
            return f"is truncated: a JPEG of {size} bytes without the end-of-image marker (FF D9)"
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):  # reads the header only
            pass
    except (UnidentifiedImageError, OSError) as exc:
        return f"is not an image Pillow can read: {exc}"
    return None


def label_png_problem(path: str, pixel_size: Optional[Tuple[int, int]]) -> Optional[str]:
    try:
        size, first, last = _head_tail(path, 33, 12)
    except OSError as exc:
        return f"could not be read: {exc}"
    if size == 0:
        return "is empty (0 bytes)"
    if not first.startswith(_PNG_SIGNATURE):
        return f"is not a PNG (its first bytes are {first[:8]!r})"
    problem = _png_problem(size, first, last)
    if problem:
        return problem
    w, h = int.from_bytes(first[16:20], "big"), int.from_bytes(first[20:24], "big")
    if pixel_size is not None and (h, w) != tuple(pixel_size):
        return f"has size (h, w) = {(h, w)}; the row's (sh, sw) is {tuple(pixel_size)}"
    ctype = first[25]
    if ctype not in _PNG_LABEL_COLOR_TYPES:
        return (f"must be an RGB image (label = R + 256*G); its PNG colour type is {ctype} "
                f"({'grayscale' if ctype in (0, 4) else 'unknown'})")
    return None
