from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.sequential import (
    LocalData,
    LocalResult,
    TrainJob,
    cross_entropy_per_example,
    epoch_orders,
    train_sequential,
)
from fedcore.sim.backends.vmap import plan_chunks, train_vectorised

FEATURES, CLASSES = 6, 4


def _job(model: nn.Module, params: Params, clients: Sequence[LocalData], seeds: Sequence[int],
         settings: TrainConfig, *, epochs: Sequence[int] | None = None) -> TrainJob:
    return TrainJob(model=model, global_params=params, clients=clients, seeds=seeds,
                    settings=settings, epochs=epochs)


def _settings(*, proximal_mu: float = 0.0) -> TrainConfig:
    return TrainConfig(local_epochs=3, batch_size=5, learning_rate=0.1, proximal_mu=proximal_mu)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, CLASSES))


def _global(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def _clients(sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [
        (rng.normal(size=(n, FEATURES)).astype(np.float32), rng.integers(0, CLASSES, n))
        for n in sizes
    ]


def _by_client(results: list[LocalResult]) -> dict[int, LocalResult]:
    return {r.client: r for r in results}


@pytest.mark.parametrize("mu", [0.0, 0.5])
@pytest.mark.parametrize("chunk_size", [2, 100])
def test_vectorised_matches_sequential_with_unequal_sizes(mu: float, chunk_size: int) -> None:
    model, settings = _mlp(), _settings(proximal_mu=mu)
    start = _global(model)
    clients, seeds = _clients([7, 23, 50, 1, 13, 5]), [11, 12, 13, 14, 15, 16]

    seq = _by_client(list(train_sequential(_job(model, start, clients, seeds, settings))))
    vec = _by_client(
        list(
            train_vectorised(_job(model, start, clients, seeds, settings), chunk_size=chunk_size)
        )
    )

    assert sorted(vec) == sorted(seq) == list(range(len(clients)))
    for k, expected in seq.items():
        assert vec[k].num_examples == expected.num_examples == len(clients[k][1])
        assert vec[k].train_loss == pytest.approx(expected.train_loss, rel=1e-5)
        for name, value in expected.update.items():
            np.testing.assert_allclose(vec[k].update[name], value, rtol=1e-4, atol=1e-6)
        assert any(np.abs(v).max() > 1e-3 for v in expected.update.values())


def test_a_client_trains_the_same_alone_and_in_a_crowd() -> None:
    model, settings = _mlp(), _settings()
    start = _global(model)
    clients = _clients([9, 40, 3])
    crowd = _by_client(
        list(train_vectorised(_job(model, start, clients, [1, 2, 3], settings)))
    )
    alone = next(train_vectorised(_job(model, start, clients[:1], [1], settings)))
    for name, value in alone.update.items():
        np.testing.assert_allclose(crowd[0].update[name], value, rtol=1e-5, atol=1e-7)


def test_seed_changes_batch_order_and_result() -> None:
    assert torch.equal(epoch_orders(20, epochs=2, seed=3)[1], epoch_orders(20, epochs=2, seed=3)[1])
    assert not torch.equal(
        epoch_orders(20, epochs=1, seed=3)[0], epoch_orders(20, epochs=1, seed=4)[0]
    )
    reused = epoch_orders(20, epochs=2, seed=3, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a, b) for a, b in zip(reused, epoch_orders(20, epochs=2, seed=3)))
    model, settings = _mlp(), _settings()
    clients = _clients([20]) * 2
    a, b = train_sequential(_job(model, _global(model), clients, [1, 2], settings))
    assert not np.allclose(a.update["0.weight"], b.update["0.weight"])


def test_sequential_leaves_no_state_between_clients() -> None:
    model, settings = _mlp(), _settings()
    clients = _clients([10, 30])
    both = list(train_sequential(_job(model, _global(model), clients, [5, 6], settings)))
    model2 = _mlp()
    second = next(
        train_sequential(_job(model2, _global(model2), clients[1:], [6], settings))
    )
    np.testing.assert_array_equal(both[1].update["2.bias"], second.update["2.bias"])


def test_inputs_are_validated() -> None:
    model, settings = _mlp(), _settings()
    clients = _clients([4])
    with pytest.raises(ValueError, match="seeds"):
        train_vectorised(_job(model, _global(model), clients, [1, 2], settings))
    with pytest.raises(ValueError, match="differ from the model"):
        train_sequential(_job(model, {"w": np.zeros(1)}, clients, [1], settings))
    bn = nn.Sequential(nn.Linear(FEATURES, CLASSES), nn.BatchNorm1d(CLASSES))
    with pytest.raises(ValueError, match="buffers"):
        train_vectorised(_job(bn, _global(bn), clients, [1], settings))


def test_chunks_bound_count_and_padding() -> None:
    sizes = np.array([100, 5, 12, 48, 50, 9, 400, 10])
    chunks = plan_chunks(sizes, batch_size=10, chunk_size=3)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(sizes)))
    for chunk in chunks:
        steps = -(-sizes[chunk] // 10)
        assert len(chunk) <= 3 and steps.max() <= 2 * steps.min()


def test_default_loss_is_cross_entropy() -> None:
    logits, labels = (
        torch.randn(7, 5, generator=torch.Generator().manual_seed(0)),
        torch.arange(7) % 5,
    )
    expected = nn.functional.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(cross_entropy_per_example(logits, labels), expected)


def test_a_small_cnn_trains_the_same_in_both_backends() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, CLASSES)
    )
    start = _global(model)
    rng = np.random.default_rng(2)
    clients = [
        (rng.random((n, 1, 6, 6)), rng.integers(0, CLASSES, n))  # float64 features are cast
        for n in (4, 11, 7)
    ]
    settings = TrainConfig(local_epochs=2, batch_size=3, learning_rate=0.2, proximal_mu=0.1)

    seq = list(train_sequential(_job(model, start, clients, [1, 2, 3], settings)))
    vec = _by_client(
        list(train_vectorised(_job(model, start, clients, [1, 2, 3], settings)))
    )

    for expected in seq:
        for name, value in expected.update.items():
            np.testing.assert_allclose(
                vec[expected.client].update[name], value, rtol=1e-4, atol=1e-6
            )


def test_clients_with_their_own_epoch_counts_train_as_alone_with_that_many() -> None:
    # arrange: a straggler doing 1 of 3 epochs beside full clients
    model, settings = _mlp(), _settings(proximal_mu=0.5)
    start = _global(model)
    clients, seeds, epochs = _clients([7, 23, 12]), [1, 2, 3], [3, 1, 2]

    # act
    job = _job(model, start, clients, seeds, settings, epochs=epochs)
    vec = _by_client(list(train_vectorised(job)))
    seq = _by_client(list(train_sequential(job)))

    # assert
    for k, count in enumerate(epochs):
        fewer = TrainConfig(local_epochs=count, batch_size=5, learning_rate=0.1, proximal_mu=0.5)
        alone = next(train_sequential(_job(model, start, [clients[k]], [seeds[k]], fewer)))
        for result in (vec[k], seq[k]):
            assert result.train_loss == pytest.approx(alone.train_loss, rel=1e-5)
            for name, value in alone.update.items():
                np.testing.assert_allclose(result.update[name], value, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="epochs"):
        train_vectorised(_job(model, start, clients, seeds, settings, epochs=[4, 1, 1]))
