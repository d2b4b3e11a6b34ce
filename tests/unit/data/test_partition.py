from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcore.data.partition import dirichlet_partition, iid_partition, shard_partition

NUM_CLASSES = 10


def _labels(n: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, NUM_CLASSES, n)


def _assert_disjoint_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


def _mean_kl_to_global(parts: list[np.ndarray], labels: np.ndarray) -> float:
    eps = 1e-12
    glob = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    kls = []
    for idx in parts:
        local = np.bincount(labels[idx], minlength=NUM_CLASSES) / len(idx)
        kls.append(float(np.sum(local * np.log((local + eps) / glob))))
    return float(np.mean(kls))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 500), clients=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_iid_is_disjoint_and_covering(n: int, clients: int, seed: int) -> None:
    clients = min(clients, n)
    parts = iid_partition(n, clients, seed=seed)
    assert len(parts) == clients
    _assert_disjoint_cover(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_iid_is_deterministic_per_seed() -> None:
    a, b, c = (iid_partition(100, 7, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_rejects_more_clients_than_examples() -> None:
    with pytest.raises(ValueError, match="cannot split 3 examples"):
        iid_partition(3, 4, seed=0)


def test_dirichlet_is_deterministic_disjoint_and_covering() -> None:
    labels = _labels()
    a = dirichlet_partition(labels, 20, alpha=0.5, seed=3)
    b = dirichlet_partition(labels, 20, alpha=0.5, seed=3)
    c = dirichlet_partition(labels, 20, alpha=0.5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    _assert_disjoint_cover(a, len(labels))


def test_dirichlet_respects_min_size() -> None:
    parts = dirichlet_partition(_labels(), 30, alpha=0.3, seed=0, min_size=20)
    assert min(len(p) for p in parts) >= 20


def test_dirichlet_skew_decreases_as_alpha_grows() -> None:
    labels = _labels()
    kl = [
        _mean_kl_to_global(dirichlet_partition(labels, 20, alpha=a, seed=1), labels)
        for a in (0.05, 0.5, 5.0, 500.0)
    ]
    assert kl == sorted(kl, reverse=True)
    assert kl[0] > 1.0  # tiny alpha: clients hold a few classes
    assert kl[-1] < 0.02  # huge alpha: near IID


def test_dirichlet_impossible_min_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="only 100 exist"):
        dirichlet_partition(_labels(100), 10, alpha=1.0, seed=0, min_size=11)
    with pytest.raises(ValueError, match="raise alpha or lower min_size"):
        dirichlet_partition(_labels(1000), 50, alpha=0.01, seed=0, min_size=19, max_attempts=5)


def test_dirichlet_rejects_bad_alpha_and_labels() -> None:
    with pytest.raises(ValueError, match="alpha must be positive"):
        dirichlet_partition(_labels(), 5, alpha=0.0, seed=0)
    with pytest.raises(ValueError, match="1-D integer"):
        dirichlet_partition(np.zeros(10, dtype=np.float32), 2, alpha=1.0, seed=0)


def test_shards_follow_mcmahan() -> None:
    labels = np.repeat(np.arange(NUM_CLASSES), 600)  # 6000 examples, 200 shards of 30
    parts = shard_partition(labels, 100, shards_per_client=2, seed=0)
    _assert_disjoint_cover(parts, len(labels))
    assert {len(p) for p in parts} == {60}
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_shards_on_unsorted_labels_give_few_classes() -> None:
    labels = _labels(6000)
    parts = shard_partition(labels, 50, shards_per_client=3, seed=5)
    _assert_disjoint_cover(parts, len(labels))
    # a shard may straddle a label boundary, so allow one extra label per shard
    assert max(len(np.unique(labels[p])) for p in parts) <= 6
    assert np.mean([len(np.unique(labels[p])) for p in parts]) < 4


def test_shards_deterministic_and_reject_too_many_shards() -> None:
    labels = _labels(1000)
    a = shard_partition(labels, 10, shards_per_client=2, seed=9)
    b = shard_partition(labels, 10, shards_per_client=2, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="cannot split 1000 examples into 1200"):
        shard_partition(labels, 600, shards_per_client=2, seed=0)
