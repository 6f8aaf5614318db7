"""The project's own small Broden-format concept dataset, generated from a seed.

Each image is a synthetic scene: a background *layout* (the image-level
``scene`` label), painted over with a background *pattern* (the image-level
``texture`` label), with 1-3 objects on top (the pixel-level ``shape`` label;
the topmost object wins where they overlap), each in one colour that the
background does not use.  Every object pixel is named by the colour it is
rendered in (pixel-level ``color`` label: the nearest of 11 prototype colours
in RGB); background pixels carry no colour label.  (Why: a unit that fires on
the top 0.5% of positions can reach IoU at most 0.005 / f with a label that
covers a fraction f of all pixels; labelling every pixel would give each
colour f ~ 0.09 and cap colour IoUs near 0.05.  Object colours cover ~1% each.)
Label maps are at half the image resolution, as in Broden: each label pixel
takes the most frequent label of its 2x2 block of image pixels (ties: the
smaller label number).

Categories and labels (global numbers, 0 = none):

- color (pixel): red, orange, yellow, green, blue, purple, pink, brown, white, gray, black
- shape (pixel): circle, square, triangle, star, cross, ring
- texture (image): plain, striped, chequered, dotted, grid, speckled
- scene (image): outdoor (sky over ground), indoor (back wall, side walls,
  ceiling and floor in perspective), panels (two colours side by side),
  studio (one plain colour)

Image i is drawn from its own random stream ``SeedSequence([seed, i])``:
the same seed gives the same images, whatever ``num_images``, and the same
bytes on disk.  Split: image i is ``val`` when ``i % 5 == 4``, else ``train``.

:func:`concept_dataset` writes the dataset on first use into a cache
directory (``$INTERP_ENGINE_CACHE`` or ``~/.cache/interp_engine``) and returns
its path; :func:`render_concepts` returns the arrays without touching disk.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .writer import MANIFEST_NAME, read_manifest, write_broden

GENERATOR_VERSION = 1
DEFAULT_NUM_IMAGES = 2500
DEFAULT_IMAGE_SIZE = 64

COLOR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "gray",
               "black")
COLOR_RGB = np.array([
    [220, 30, 30], [245, 140, 20], [240, 220, 40], [40, 170, 50], [30, 70, 210], [130, 40, 170],
    [245, 130, 190], [120, 70, 30], [240, 240, 240], [128, 128, 128], [20, 20, 20]], dtype=np.float32)
_PROTO64 = COLOR_RGB.astype(np.float64)
_PROTO_NORM2 = (_PROTO64 ** 2).sum(1)
SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "ring")
TEXTURE_NAMES = ("plain", "striped", "chequered", "dotted", "grid", "speckled")
SCENE_NAMES = ("outdoor", "indoor", "panels", "studio")
CATEGORIES = ("color", "shape", "texture", "scene")
PIXEL_CATEGORIES = ("color", "shape")
IMAGE_CATEGORIES = ("texture", "scene")

_NAMES = {"color": COLOR_NAMES, "shape": SHAPE_NAMES, "texture": TEXTURE_NAMES, "scene": SCENE_NAMES}
#: first global label number of each category
LABEL_OFFSET: Dict[str, int] = {}
_off = 1
for _cat in CATEGORIES:
    LABEL_OFFSET[_cat] = _off
    _off += len(_NAMES[_cat])
NUM_LABELS = _off  # 28: labels 1..27 plus 0
del _off, _cat

# colours allowed per background role
_SKY = (4, 8, 9)            # blue, white, gray
_GROUND = (3, 7, 2)         # green, brown, yellow
_WALL = (8, 9, 6, 1, 2)     # white, gray, pink, orange, yellow
_FLOOR = (7, 9, 10)         # brown, gray, black


def label_names() -> List[str]:
    """The 28 label names, index = global label number (entry 0 is ``"-"``)."""
    out = ["-"]
    for cat in CATEGORIES:
        out.extend(_NAMES[cat])
    return out


def label_categories() -> List[Optional[str]]:
    """The category of each global label number (entry 0 is None)."""
    out: List[Optional[str]] = [None]
    for cat in CATEGORIES:
        out.extend([cat] * len(_NAMES[cat]))
    return out


@dataclasses.dataclass
class ConceptArrays:
    """In-memory concept data (N images of size S, label maps of size S // 2).

    images: (N, S, S, 3) uint8; color, shape: (N, S//2, S//2) int16 global
    label numbers (0 = none); texture, scene: (N,) int16 global label numbers;
    split: (N,) str, "train" or "val"."""

    images: np.ndarray
    color: np.ndarray
    shape: np.ndarray
    texture: np.ndarray
    scene: np.ndarray
    split: np.ndarray


def _check_args(seed: Any, num_images: Any, image_size: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1; got {num_images!r}")
    if (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
            or image_size < 16 or image_size % 2):
        raise ValueError(f"image_size must be an even int >= 16; got {image_size!r}")


def _in_polygon(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (x, y) (any equal shapes)."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(vx)
    j = n - 1
    for i in range(n):
        if vy[i] != vy[j]:
            cross = (vy[i] > y) != (vy[j] > y)
            xs = (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i]
            inside ^= cross & (x < xs)
        j = i
    return inside


def _polygon(shape: str) -> np.ndarray:
    """Vertices (V, 2) of a polygonal shape in a unit frame (radius ~1)."""
    if shape == "square":
        s = 0.82
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1) * 1.1
    if shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.15, 0.47)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if shape == "cross":
        w, l = 0.33, 1.0
        return np.array([[-w, -l], [w, -l], [w, -w], [l, -w], [l, w], [w, w], [w, l], [-w, l], [-w, w],
                         [-l, w], [-l, -w], [-w, -w]])
    raise ValueError(shape)  # pragma: no cover


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float,
                angle: float) -> np.ndarray:
    dx, dy = (x - cx) / r, (y - cy) / r
    if shape == "circle":
        return dx * dx + dy * dy <= 1.0
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= 1.0) & (d2 >= 0.5 * 0.5)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    poly = _polygon(shape)
    return _in_polygon(u, v, poly[:, 0], poly[:, 1])


def _texture_mask(texture: str, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pattern pixels (painted in the texture colour); x, y in pixels."""
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    phase_u, phase_v = rng.uniform(0, 20, size=2)
    u, v = u + phase_u, v + phase_v
    if texture == "plain":
        return np.zeros(x.shape, dtype=bool)
    if texture == "striped":
        period = rng.uniform(6, 10)
        return np.mod(u, period) < 0.45 * period
    if texture == "chequered":
        cell = rng.uniform(4, 7)
        return (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    if texture == "dotted":
        period = rng.uniform(7, 10)
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return du * du + dv * dv <= (0.27 * period) ** 2
    if texture == "grid":
        period = rng.uniform(7, 10)
        width = rng.uniform(1.6, 2.2)
        return (np.mod(u, period) < width) | (np.mod(v, period) < width)
    if texture == "speckled":
        return rng.random(x.shape) < 0.22
    raise ValueError(texture)  # pragma: no cover


def _block_mode(labels: np.ndarray) -> np.ndarray:
    """(H, W) ints -> (H//2, W//2) int16: the most frequent value of each 2x2
    block (ties: the smallest value)."""
    h, w = labels.shape
    v = labels.reshape(h // 2, 2, w // 2, 2).transpose(1, 3, 0, 2).reshape(4, h // 2, w // 2)
    counts = (v[:, None] == v[None, :]).sum(1)          # (4, h/2, w/2): multiplicity of each
    key = counts * 65536 - v                             # most frequent, then smallest
    return np.take_along_axis(v, key.argmax(0)[None], 0)[0].astype(np.int16)


def _render_one(seed: int, index: int, size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    coords = np.arange(size, dtype=np.float64) + 0.5
    x, y = np.meshgrid(coords, coords)          # pixel centres, in pixels
    xn, yn = x / size, y / size                  # in [0, 1]
    scene = int(rng.integers(len(SCENE_NAMES)))
    texture = int(rng.integers(len(TEXTURE_NAMES)))

    # background layout: region map and one palette colour per region
    region = np.zeros((size, size), dtype=np.int64)
    if SCENE_NAMES[scene] == "outdoor":
        horizon = rng.uniform(0.3, 0.6) + rng.uniform(-0.15, 0.15) * (xn - 0.5)
        region[yn >= horizon] = 1
        colors = [int(rng.choice(_SKY)), int(rng.choice(_GROUND))]
    elif SCENE_NAMES[scene] == "indoor":
        a, b = rng.uniform(0.2, 0.35), rng.uniform(0.65, 0.8)
        c, d = rng.uniform(0.12, 0.28), rng.uniform(0.58, 0.72)
        excess = np.stack([(a - xn) / a, (xn - b) / (1 - b), (c - yn) / c, (yn - d) / (1 - d)])
        side = excess.argmax(0)
        outside = excess.max(0) > 0
        # 0 back wall and ceiling, 1 side walls, 2 floor
        region[outside & (side <= 1)] = 1
        region[outside & (side == 3)] = 2
        wall, side_wall = rng.choice(_WALL, size=2, replace=False)
        colors = [int(wall), int(side_wall), int(rng.choice(_FLOOR))]
    elif SCENE_NAMES[scene] == "panels":
        split = rng.uniform(0.3, 0.7) + rng.uniform(-0.15, 0.15) * (yn - 0.5)
        region[xn >= split] = 1
        colors = [int(v) for v in rng.choice(len(COLOR_NAMES), size=2, replace=False)]
    else:  # studio
        colors = [int(rng.integers(len(COLOR_NAMES)))]
    free = [k for k in range(len(COLOR_NAMES)) if k not in colors]
    tex_color = int(rng.choice(free))
    free.remove(tex_color)

    jitter = rng.uniform(-10, 10, size=(len(colors), 3))
    region_rgb = COLOR_RGB[colors] + jitter
    img = region_rgb[region]
    pattern = _texture_mask(TEXTURE_NAMES[texture], rng, x, y)
    img[pattern] = COLOR_RGB[tex_color] + rng.uniform(-10, 10, size=3)

    # objects, drawn in order (later ones on top), in colours not used by the background
    shape_id = np.zeros((size, size), dtype=np.int64)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(SHAPE_NAMES)))
        r = rng.uniform(0.09, 0.2) * size
        cx, cy = rng.uniform(0.1, 0.9, size=2) * size
        mask = _shape_mask(SHAPE_NAMES[k], x, y, cx, cy, r, rng.uniform(0, 2 * np.pi))
        col = int(rng.choice(free))
        img[mask] = COLOR_RGB[col] + rng.uniform(-10, 10, size=3)
        shape_id[mask] = LABEL_OFFSET["shape"] + k

    img = img + rng.normal(0.0, 4.0, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    # colour names of the object pixels, from the rendered pixels (nearest prototype)
    pix = img.reshape(-1, 3).astype(np.float64)
    d2 = _PROTO_NORM2[None, :] - 2.0 * (pix @ _PROTO64.T)     # |p|^2 - 2 x.p (+ |x|^2, constant)
    named = d2.argmin(1).reshape(size, size) + LABEL_OFFSET["color"]
    named[shape_id == 0] = 0
    color_map = _block_mode(named)
    shape_map = _block_mode(shape_id)
    return (img, color_map, shape_map, LABEL_OFFSET["texture"] + texture, LABEL_OFFSET["scene"] + scene)


def render_concepts(num_images: int = DEFAULT_NUM_IMAGES, *, seed: int = 0,
                    image_size: int = DEFAULT_IMAGE_SIZE, start: int = 0) -> ConceptArrays:
    """Render images ``start .. start + num_images - 1`` of the concept dataset
    of this seed, in memory (the same content :func:`concept_dataset` writes).

    Returns a :class:`ConceptArrays`: images (N, S, S, 3) uint8, colour and
    shape maps (N, S/2, S/2) int16, texture and scene (N,) int16, split (N,)."""
    _check_args(seed, num_images, image_size)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative int; got {start!r}")
    n, s = int(num_images), int(image_size)
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    color = np.empty((n, s // 2, s // 2), dtype=np.int16)
    shape = np.empty((n, s // 2, s // 2), dtype=np.int16)
    texture = np.empty(n, dtype=np.int16)
    scene = np.empty(n, dtype=np.int16)
    for j in range(n):
        images[j], color[j], shape[j], texture[j], scene[j] = _render_one(int(seed), start + j, s)
    split = np.array(["val" if (start + j) % 5 == 4 else "train" for j in range(n)])
    return ConceptArrays(images, color, shape, texture, scene, split)


def default_cache_dir() -> Path:
    """``$INTERP_ENGINE_CACHE`` if set, else ``~/.cache/interp_engine``."""
    env = os.environ.get("INTERP_ENGINE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp_engine"


def _params(seed: int, num_images: int, image_size: int) -> Dict[str, Any]:
    return {"generator": "interp_engine.data.concepts", "generator_version": GENERATOR_VERSION,
            "seed": int(seed), "num_images": int(num_images), "image_size": int(image_size)}


def _files_complete(root: Path) -> bool:
    """Whether every file of a finished dataset directory is still whole:
    not empty, with its header and end marker (read from its first and last
    bytes, no decoding)."""
    from ._files import image_file_problem

    try:
        for dirpath, _, files in os.walk(root / "images"):
            for name in files:
                if image_file_problem(os.path.join(dirpath, name)) is not None:
                    return False
    except OSError:  # pragma: no cover - unreadable directory
        return False
    return True


def concept_dataset(root: Union[str, "os.PathLike[str]", None] = None, *, seed: int = 0,
                    num_images: int = DEFAULT_NUM_IMAGES, image_size: int = DEFAULT_IMAGE_SIZE,
                    regenerate: bool = False) -> Path:
    """Return the directory of the concept dataset, generating it if needed.

    ``root`` None: ``default_cache_dir() / "concepts-v{version}-seed{seed}-n{num_images}-s{image_size}"``.
    The dataset is valid only when its manifest (``interp_engine_manifest.json``)
    is present, matches (generator version, seed, num_images, image_size: the
    cache key, which determines every byte), the files it lists are all there
    and each is whole (its header and end marker are there: a truncated or
    emptied file is found); otherwise it is written again (atomically:
    into a temporary sibling, then renamed).  ``regenerate=True`` always writes
    it again.  An existing explicit ``root`` that holds files but no manifest is
    not ours: FileExistsError rather than deleting it.

    The default (2,500 images of 64x64, label maps 32x32; 2,000 train, 500
    val) takes a few seconds and about 24 MB."""
    _check_args(seed, num_images, image_size)
    params = _params(seed, num_images, image_size)
    if root is None:
        root_path = default_cache_dir() / (f"concepts-v{GENERATOR_VERSION}-seed{int(seed)}"
                                           f"-n{int(num_images)}-s{int(image_size)}")
        ours = True
    else:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike) or None; got {type(root).__name__}")
        root_path = Path(root).expanduser()
        ours = False
    if not regenerate:
        manifest = read_manifest(root_path)
        if manifest is not None and manifest.get("metadata") == params and _files_complete(root_path):
            return root_path
    if root_path.exists():
        if not root_path.is_dir():
            raise FileExistsError(f"root {str(root_path)!r} exists and is not a directory")
        if not (ours or (root_path / MANIFEST_NAME).exists() or not any(root_path.iterdir())):
            raise FileExistsError(f"root {str(root_path)!r} holds files but no {MANIFEST_NAME}: not a "
                                  f"dataset written by interp_engine; refusing to replace it")
    # replace only what exists now: if another process completes the same dataset meanwhile, our
    # rename fails (FileExistsError) and we return theirs
    overwrite = root_path.exists()
    arrays = render_concepts(num_images, seed=seed, image_size=image_size)
    try:
        write_broden(root_path, arrays.images, label_names=label_names(),
                     label_categories=label_categories(), categories=CATEGORIES,
                     pixel_labels={"color": arrays.color, "shape": arrays.shape},
                     image_labels={"texture": arrays.texture[:, None], "scene": arrays.scene[:, None]},
                     splits=list(arrays.split), subdir="concepts", metadata=params, overwrite=overwrite)
    except OSError:
        # another process may have finished the same dataset first
        manifest = read_manifest(root_path)
        if manifest is not None and manifest.get("metadata") == params:
            return root_path
        raise
    return root_path
