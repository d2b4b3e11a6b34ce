from __future__ import annotations

import numpy as np
import pytest

from fedcore.data.digits import load_digits_split


def test_scaled_typed_and_stratified() -> None:
    split = load_digits_split(test_fraction=0.25, seed=0)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.x_train.shape[1] == 64
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    assert len(split.y_train) + len(split.y_test) == 1797
    assert split.num_classes == 10
    train_freq = np.bincount(split.y_train) / len(split.y_train)
    test_freq = np.bincount(split.y_test) / len(split.y_test)
    assert np.abs(train_freq - test_freq).max() < 0.01


def test_deterministic_per_seed() -> None:
    a, b, c = load_digits_split(seed=1), load_digits_split(seed=1), load_digits_split(seed=2)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.0)
