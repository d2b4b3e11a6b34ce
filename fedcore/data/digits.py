"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): small, offline, instant."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fedcore.data.split import DatasetSplit


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0) -> DatasetSplit:
    """The digits, features scaled to [0, 1] (shape (n, 64)), split stratified by label.

    Raises:
        ValueError: `test_fraction` is not strictly between 0 and 1.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return DatasetSplit(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
