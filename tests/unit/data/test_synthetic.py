from __future__ import annotations

import numpy as np
import pytest

from fedcore.data.synthetic import (
    NUM_CLASSES,
    NUM_FEATURES,
    synthetic_client,
    synthetic_federated,
)


def test_shapes_and_dtypes() -> None:
    data = synthetic_federated(1.0, 1.0, 5, seed=0, samples_per_client=50)
    assert len(data) == 5
    for x, y in data:
        assert x.shape == (50, NUM_FEATURES) and x.dtype == np.float32
        assert y.shape == (50,) and y.dtype == np.int64
        assert y.min() >= 0 and y.max() < NUM_CLASSES


def test_power_law_sizes_by_default() -> None:
    sizes = [len(y) for _, y in synthetic_federated(1.0, 1.0, 30, seed=0)]
    assert min(sizes) >= 50
    assert len(set(sizes)) > 20  # varied sizes
    assert max(sizes) > 3 * np.median(sizes)  # heavy tail


def test_deterministic_and_seed_dependent() -> None:
    x1, y1 = synthetic_client(1.0, 1.0, 7, seed=1)
    x2, y2 = synthetic_client(1.0, 1.0, 7, seed=1)
    x3, _ = synthetic_client(1.0, 1.0, 7, seed=2, samples_per_client=len(y1))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.allclose(x1, x3)


def test_client_derivable_alone() -> None:
    population = synthetic_federated(0.5, 0.5, 4, seed=3)
    x, y = synthetic_client(0.5, 0.5, 3, seed=3)
    assert np.array_equal(population[3][0], x) and np.array_equal(population[3][1], y)
    far_x, _ = synthetic_client(0.5, 0.5, 99_999, seed=3, samples_per_client=10)
    assert far_x.shape == (10, NUM_FEATURES)


def test_heterogeneity_grows_with_beta_and_alpha() -> None:
    def spread_of_means(alpha: float, beta: float) -> float:
        means = [
            x.mean()
            for x, _ in synthetic_federated(alpha, beta, 40, seed=0, samples_per_client=200)
        ]
        return float(np.std(means))

    def label_skew(alpha: float) -> float:
        data = synthetic_federated(alpha, 0.0, 40, seed=0, samples_per_client=200)
        return float(
            np.mean([np.bincount(y, minlength=NUM_CLASSES).max() / len(y) for _, y in data])
        )

    assert spread_of_means(0.0, 0.0) < spread_of_means(0.0, 1.0)
    # every client's labels are skewed (its own W_k), and local feature means differ
    assert label_skew(1.0) > 0.3
    iid_like = synthetic_federated(0.0, 0.0, 2, seed=0, samples_per_client=5000)
    assert abs(iid_like[0][0].mean() - iid_like[1][0].mean()) < 0.5


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        synthetic_client(-1.0, 1.0, 0, seed=0)
    with pytest.raises(ValueError, match="samples_per_client"):
        synthetic_client(1.0, 1.0, 0, seed=0, samples_per_client=0)
    with pytest.raises(ValueError, match="num_clients"):
        synthetic_federated(1.0, 1.0, 0, seed=0)
