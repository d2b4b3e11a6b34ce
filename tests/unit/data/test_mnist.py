from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fedcore.data.mnist import (
    DATA_DIR_ENV,
    DataIntegrityError,
    MNISTVariant,
    default_data_root,
    load_mnist,
    parse_idx,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (SHARED_DATA / "mnist").is_dir(), reason=f"no shared data at {SHARED_DATA}"
)


@needs_data
def test_reads_real_mnist() -> None:
    split = load_mnist(SHARED_DATA / "mnist")
    assert split.x_train.shape == (60_000, 1, 28, 28) and split.x_train.dtype == np.float32
    assert split.x_test.shape == (10_000, 1, 28, 28)
    assert 0.0 <= split.x_train.min() and split.x_train.max() == 1.0
    assert list(split.y_train[:8]) == [5, 0, 4, 1, 9, 2, 1, 3]
    assert list(split.y_test[:8]) == [7, 2, 1, 0, 4, 1, 4, 9]
    assert list(np.bincount(split.y_test)) == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


@needs_data
def test_reads_fashion_flat_through_the_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(SHARED_DATA))
    split = load_mnist(variant=MNISTVariant.FASHION_MNIST, flat=True)
    assert split.x_train.shape == (60_000, 784) and split.num_classes == 10


def test_default_root_is_shared_data_beside_the_repo() -> None:
    assert default_data_root({}).resolve() == SHARED_DATA.resolve()
    assert default_data_root({DATA_DIR_ENV: "/elsewhere"}) == Path("/elsewhere")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=DATA_DIR_ENV):
        load_mnist(tmp_path / "nope")


def test_missing_checksums_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SHA256SUMS"):
        load_mnist(tmp_path)


@needs_data
def test_checksum_mismatch_refused(tmp_path: Path) -> None:
    for name in ("SHA256SUMS", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_DATA / "mnist" / name, tmp_path / name)
    shutil.copy(
        SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz"
    )
    with pytest.raises(DataIntegrityError, match="train-images.*SHA256"):
        load_mnist(tmp_path)


def test_parse_idx_checks_header_and_length() -> None:
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])
    assert list(parse_idx(labels)) == [7, 2, 1]
    with pytest.raises(DataIntegrityError, match="header says 3"):
        parse_idx(labels[:-1])
    with pytest.raises(DataIntegrityError, match="magic"):
        parse_idx(bytes(12))
