from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pytest

from fedcore.data.partition import iid_partition
from fedcore.data.synthetic import synthetic_client
from fedcore.sim.population import ClientStateStore, Population, partitioned_data

_data = partial(synthetic_client, 1.0, 1.0, seed=0, samples_per_client=20)


def _round_footprint(size: int) -> int:
    """Peak bytes traced while registering `size` clients and running one round's bookkeeping."""
    tracemalloc.start()
    population = Population(size, seed=7, data=_data)
    chosen = np.random.default_rng(0).choice(size, 50, replace=False)
    seeds = population.train_seeds(chosen, round_number=1)
    for index, seed in zip(chosen[:5], seeds[:5]):
        x, _ = population.load(int(index))
        population.state.put(int(index), {"seed": np.array([seed]), "norm": x.mean(axis=0)})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_memory_stays_flat_from_1k_to_100k_clients() -> None:
    _round_footprint(1_000)  # warm up: first-use allocations (caches, lazy imports)
    small, large = _round_footprint(1_000), _round_footprint(100_000)
    assert large < small + 16 * 1024, (small, large)


def test_clients_are_derived_not_stored() -> None:
    population = Population(100_000, seed=3, data=_data)
    last = population.client(99_999)
    assert last == Population(100_000, seed=3, data=_data).client(99_999)
    assert last.partition == 99_999 and population.index_of(last.client_id) == 99_999
    assert population.client(1).seed != population.client(2).seed
    with pytest.raises(IndexError):
        population.client(100_000)
    with pytest.raises(ValueError, match="not a client"):
        population.index_of("sim-100000")


def test_train_seeds_depend_on_seed_round_and_client() -> None:
    population = Population(1_000, seed=1, data=_data)
    a = population.train_seeds(np.arange(1_000), round_number=1)
    assert len(set(a.tolist())) == 1_000
    assert np.array_equal(a, population.train_seeds(np.arange(1_000), round_number=1))
    assert not np.any(a == population.train_seeds(np.arange(1_000), round_number=2))
    other = Population(1_000, seed=2, data=_data).train_seeds(np.arange(1_000), round_number=1)
    assert not np.any(a == other)
    assert int(a.max()) < 2**63


def test_partitions_wrap_when_fewer_than_clients() -> None:
    population = Population(10, seed=0, data=_data, num_partitions=4)
    assert population.client(9).partition == 1
    assert np.array_equal(population.load(9)[0], population.load(1)[0])


def test_state_store_round_trips_compactly() -> None:
    store = ClientStateStore()
    store.put(5, {"c": np.arange(6, dtype=np.float32).reshape(2, 3), "steps": np.array([4])})
    state = store.get(5)
    assert state is not None
    assert state["c"].shape == (2, 3) and state["c"][1, 2] == 5.0 and state["steps"][0] == 4
    assert not state["c"].flags.writeable
    assert store.get(6) is None and len(store) == 1 and 5 in store
    assert store.nbytes == 6 * 4 + 8
    with pytest.raises(ValueError, match="layout"):
        store.put(6, {"c": np.zeros(3, dtype=np.float32), "steps": np.array([0])})
    store.drop(5)
    assert len(store) == 0


def test_partitioned_data_serves_a_partitioner_output() -> None:
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) % 3
    parts = iid_partition(10, 3, seed=0)
    population = Population(3, seed=0, data=partitioned_data(x, y, parts))
    features, labels = population.load(2)
    assert np.array_equal(labels, y[parts[2]]) and np.array_equal(features, x[parts[2]])
