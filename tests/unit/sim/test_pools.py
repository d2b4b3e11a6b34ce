"""Training in worker processes and in Ray tasks gives what in-process training gives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.pool import ProcessPool, split_work
from fedcore.sim.backends.sequential import LocalData, TrainJob, train_sequential
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.config import BackendKind
from fedcore.sim.pools import training_pool

SETTINGS = TrainConfig(local_epochs=2, batch_size=4, learning_rate=0.1, proximal_mu=0.1)


def _job(model: nn.Module, params: Params, clients: Sequence[LocalData], seeds: Sequence[int],
         settings: TrainConfig, *, epochs: Sequence[int] | None = None) -> TrainJob:
    return TrainJob(model=model, global_params=params, clients=clients, seeds=seeds,
                    settings=settings, epochs=epochs)


def _setup() -> tuple[nn.Module, dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    clients = [(rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n))
               for n in (3, 17, 8, 30, 5, 11)]
    return model, params, clients


def _assert_same(results, expected) -> None:
    got = {r.client: r for r in results}
    assert sorted(got) == sorted(r.client for r in expected)
    for want in expected:
        assert got[want.client].num_examples == want.num_examples
        for name, value in want.update.items():
            np.testing.assert_allclose(got[want.client].update[name], value, rtol=1e-5, atol=1e-7)


def test_work_is_split_into_balanced_shares_covering_every_client() -> None:
    shares = split_work([10, 50, 20, 20, 5, 45], [1, 1, 2, 2, 1, 1], 2)

    assert sorted(p for s in shares for p in s) == list(range(6))
    loads = [sum([10, 50, 40, 40, 5, 45][p] for p in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= 10
    assert split_work([3], [1], 4) == [[0]]


def test_a_process_pool_trains_as_in_process() -> None:
    model, params, clients = _setup()
    seeds, epochs = [1, 2, 3, 4, 5, 6], [2, 1, 2, 2, 1, 2]
    expected = list(train_vectorised(_job(model, params, clients, seeds, SETTINGS, epochs=epochs)))

    with ProcessPool(2) as pool:
        results = list(pool.train(_job(model, params, clients, seeds, SETTINGS, epochs=epochs)))

    _assert_same(results, expected)


def test_sequential_workers_train_their_own_copy_of_the_model() -> None:
    # Tensors sent to worker processes travel in shared memory: workers that trained the model
    # they were sent in place would overwrite each other's weights mid-training.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    clients = [(rng.normal(size=(400, 20)).astype(np.float32), rng.integers(0, 3, 400))
               for _ in range(4)]
    settings = TrainConfig(local_epochs=3, batch_size=2, learning_rate=0.05)
    seeds = [1, 2, 3, 4]
    expected = list(train_sequential(_job(model, params, clients, seeds, settings)))

    with ProcessPool(2, vectorised=False) as pool:
        results = list(pool.train(_job(model, params, clients, seeds, settings)))

    _assert_same(results, expected)


def test_a_ray_pool_trains_as_in_process(local_ray: object) -> None:
    from fedcore.sim.backends.ray import RayPool

    model, params, clients = _setup()
    seeds = [1, 2, 3, 4, 5, 6]
    expected = list(train_vectorised(_job(model, params, clients, seeds, SETTINGS)))

    results = list(RayPool(2).train(_job(model, params, clients, seeds, SETTINGS)))

    _assert_same(results, expected)


def test_the_ray_backend_setting_trains_on_the_running_ray(local_ray: object) -> None:
    from fedcore.sim.backends.ray import RayPool

    pool = training_pool(BackendKind.RAY, 2)

    assert isinstance(pool, RayPool) and pool.shares == 2
