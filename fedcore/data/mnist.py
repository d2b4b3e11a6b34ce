"""MNIST and Fashion-MNIST from their original IDX .gz files, checked against SHA256SUMS.

The folder holding the four files is, in order of precedence: the `directory` argument,
`$FEDCORE_DATA_DIR/<variant>`, or `<repo>/../shared/data/<variant>`. Every file is
verified against the folder's `SHA256SUMS` before it is parsed; nothing is downloaded.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedcore.data.split import DatasetSplit
from fedcore.errors import FedcoreError

DATA_DIR_ENV = "FEDCORE_DATA_DIR"
_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


class MNISTVariant(enum.Enum):
    """Which IDX dataset to read; the value is its folder name under the data root."""

    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


class DataIntegrityError(FedcoreError, ValueError):
    """A data file is malformed or does not match its recorded checksum."""


def default_data_root(environ: Mapping[str, str] | None = None) -> Path:
    """`$FEDCORE_DATA_DIR` if set, else `../shared/data` relative to the repository root."""
    env = os.environ if environ is None else environ
    if value := env.get(DATA_DIR_ENV):
        return Path(value)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def load_mnist(
    directory: Path | str | None = None,
    *,
    variant: MNISTVariant = MNISTVariant.MNIST,
    flat: bool = False,
) -> DatasetSplit:
    """Load the 60k/10k split: pixels as float32 in [0, 1], labels as int64.

    Images have shape (n, 1, 28, 28), or (n, 784) with `flat=True`.

    Raises:
        FileNotFoundError: the folder, a data file or SHA256SUMS is missing.
        DataIntegrityError: a checksum differs or a file is not valid IDX.
    """
    folder = Path(directory) if directory is not None else default_data_root() / variant.value
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{variant.value} data folder {folder} does not exist; pass `directory` or set "
            f"{DATA_DIR_ENV} to the folder that contains '{variant.value}/'"
        )
    sums = read_sha256sums(folder / "SHA256SUMS")
    arrays = {key: _read_idx(folder / name, sums) for key, name in _FILES.items()}
    shape = (-1, 28 * 28) if flat else (-1, 1, 28, 28)
    return DatasetSplit(
        x_train=_to_float(arrays["x_train"]).reshape(shape),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=_to_float(arrays["x_test"]).reshape(shape),
        y_test=arrays["y_test"].astype(np.int64),
    )


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum` listing into {file name: lowercase hex digest}."""
    if not path.is_file():
        raise FileNotFoundError(f"checksum file {path} is missing; refusing unverified data")
    sums: dict[str, str] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def _read_idx(path: Path, sums: Mapping[str, str]) -> npt.NDArray[np.uint8]:
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} is missing")
    raw = path.read_bytes()
    expected = sums.get(path.name)
    if expected is None:
        raise DataIntegrityError(f"{path.name} has no entry in {path.parent / 'SHA256SUMS'}")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DataIntegrityError(f"{path}: SHA256 is {actual}, SHA256SUMS says {expected}")
    return parse_idx(gzip.decompress(raw), name=str(path))


def parse_idx(data: bytes, *, name: str = "<bytes>") -> npt.NDArray[np.uint8]:
    """Parse an uncompressed unsigned-byte IDX file (images or labels) into an array."""
    if len(data) < 8:
        raise DataIntegrityError(f"{name}: too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic not in (_IMAGE_MAGIC, _LABEL_MAGIC):
        raise DataIntegrityError(f"{name}: magic {magic:#010x} is not an unsigned-byte IDX file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(dims))
    if len(data) != header + count:
        raise DataIntegrityError(f"{name}: {len(data) - header} data bytes, header says {count}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _to_float(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return images.astype(np.float32) / np.float32(255.0)
