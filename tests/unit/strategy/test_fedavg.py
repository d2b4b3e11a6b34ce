"""FedAvg and FedProx against hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult
from fedcore.strategy import FedAvg, FedProx


def aggregate(
    strategy: FedAvg, updates: list[tuple[dict[str, np.ndarray], int]]
) -> AggregateResult:
    agg = strategy.aggregator(1)
    for update, num_examples in updates:
        agg.add({k: v.copy() for k, v in update.items()}, float(num_examples))
    return agg.result()


PARAMS = {"w": np.array([1.0, 2.0], np.float32), "b": np.array(0.5, np.float32)}
UPDATES = [
    ({"w": np.array([1.0, 0.0], np.float32), "b": np.array(1.0, np.float32)}, 1),
    ({"w": np.array([0.0, 3.0], np.float32), "b": np.array(-1.0, np.float32)}, 3),
]


def test_fedavg_adds_the_example_weighted_mean_update() -> None:
    strategy = FedAvg()

    new = strategy.apply(PARAMS, aggregate(strategy, UPDATES))

    # w: [1, 2] + ([1, 0]*1 + [0, 3]*3) / 4;  b: 0.5 + (1*1 - 1*3) / 4
    np.testing.assert_allclose(new["w"], [1.25, 4.25])
    np.testing.assert_allclose(new["b"], 0.0)


def test_fedavg_scales_the_step_by_server_lr() -> None:
    strategy = FedAvg(server_lr=2.0)

    new = strategy.apply(PARAMS, aggregate(strategy, UPDATES))

    np.testing.assert_allclose(new["w"], [1.5, 6.5])
    np.testing.assert_allclose(new["b"], -0.5)


def test_fedavg_keeps_names_shapes_and_order() -> None:
    strategy = FedAvg()

    new = strategy.apply(PARAMS, aggregate(strategy, UPDATES))

    assert list(new) == ["w", "b"]
    assert new["b"].shape == ()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_fedavg_preserves_float_dtypes(dtype: type) -> None:
    strategy = FedAvg()
    params = {"w": np.ones(2, dtype)}

    new = strategy.apply(params, aggregate(strategy, [({"w": np.ones(2, dtype)}, 2)]))

    assert new["w"].dtype == dtype
    np.testing.assert_array_equal(new["w"], [2.0, 2.0])


def test_fedavg_preserves_integer_dtype() -> None:
    strategy = FedAvg()
    params = {"steps": np.array([10], np.int64)}

    new = strategy.apply(params, aggregate(strategy, [({"steps": np.array([4], np.int64)}, 1)]))

    assert new["steps"].dtype == np.int64
    assert new["steps"][0] == 14


def test_fedavg_does_not_mutate_the_model() -> None:
    strategy = FedAvg()
    params = {k: v.copy() for k, v in PARAMS.items()}

    strategy.apply(params, aggregate(strategy, UPDATES))

    np.testing.assert_array_equal(params["w"], PARAMS["w"])


def test_fedavg_sends_no_proximal_term() -> None:
    assert FedAvg().train_config(1).proximal_mu == 0.0


def test_fedavg_sends_its_local_settings() -> None:
    cfg = FedAvg(local_epochs=3, batch_size=8, learning_rate=0.5).train_config(7)

    assert (cfg.local_epochs, cfg.batch_size, cfg.learning_rate) == (3, 8, 0.5)


def test_each_round_gets_a_fresh_aggregator() -> None:
    strategy = FedAvg()
    first = strategy.aggregator(1)
    first.add({"w": np.ones(1)}, 1.0)

    with pytest.raises(ValueError):
        strategy.aggregator(2).result()


@pytest.mark.parametrize("server_lr", [0.0, -1.0])
def test_fedavg_rejects_nonpositive_server_lr(server_lr: float) -> None:
    with pytest.raises(ValueError, match="server_lr"):
        FedAvg(server_lr=server_lr)


def test_fedavg_validates_client_settings_at_construction() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        FedAvg(learning_rate=0.0)


def test_fedprox_config_carries_mu() -> None:
    assert FedProx(mu=0.01).train_config(3).proximal_mu == 0.01


def test_fedprox_passes_other_settings_through() -> None:
    strategy = FedProx(mu=0.1, local_epochs=2, server_lr=0.5)

    assert (strategy.train_config(1).local_epochs, strategy.server_lr) == (2, 0.5)


def test_fedprox_aggregates_like_fedavg() -> None:
    prox = FedProx(mu=1.0)

    new = prox.apply(PARAMS, aggregate(prox, UPDATES))

    np.testing.assert_allclose(new["w"], [1.25, 4.25])


@pytest.mark.parametrize("mu", [0.0, -0.1])
def test_fedprox_rejects_nonpositive_mu(mu: float) -> None:
    with pytest.raises(ValueError, match="mu"):
        FedProx(mu=mu)
