"""Whole runs through the in-memory harness."""

from __future__ import annotations

import numpy as np

from fedcore.engine import Phase, SelectionConfig
from fedcore.protocol.messages import Done
from fedcore.strategy import FedAvg, FedProx


def test_full_run_reaches_done(make_harness) -> None:
    h = make_harness(clients=2, num_rounds=3)
    for _ in range(3):
        h.play_round({"c0": (1.0, 1), "c1": (1.0, 1)})

    assert h.engine.phase is Phase.DONE
    assert [r.round for r in h.engine.records] == [1, 2, 3]


def test_poll_after_the_run_returns_done(make_harness) -> None:
    h = make_harness(clients=1, num_rounds=1)
    h.play_round({"c0": (1.0, 1)})

    assert isinstance(h.poll("c0"), Done)


def test_new_records_are_handed_out_once(make_harness) -> None:
    h = make_harness(clients=1, num_rounds=2)
    h.play_round({"c0": (1.0, 1)})

    assert [r.round for r in h.engine.pop_new_records()] == [1]
    h.play_round({"c0": (1.0, 1)})
    assert [r.round for r in h.engine.pop_new_records()] == [2]
    assert h.engine.pop_new_records() == []


def test_fedavg_over_two_rounds_matches_hand_computation(make_harness) -> None:
    zero = {"w": np.zeros(2, np.float32), "b": np.array(0.0, np.float32)}
    h = make_harness(
        clients=3, num_rounds=2, initial=zero, train=SelectionConfig(count=3, min_available=3)
    )

    def update(w: list[float], b: float) -> dict[str, np.ndarray]:
        return {"w": np.array(w, np.float32), "b": np.array(b, np.float32)}

    h.play_round(
        {
            "c0": (update([1, 2], 1.0), 10),
            "c1": (update([3, 0], -1.0), 30),
            "c2": (update([-1, 4], 0.5), 60),
        }
    )
    h.play_round(
        {
            "c0": (update([2, 2], 1.0), 10),
            "c1": (update([0, 0], 1.0), 30),
            "c2": (update([1, -1], 1.0), 60),
        }
    )

    # round 1: w += [10 + 90 - 60, 20 + 0 + 240] / 100 = [0.4, 2.6]; b += (10 - 30 + 30) / 100
    # round 2: w += [20 + 0 + 60, 20 + 0 - 60] / 100 = [0.8, -0.4]; b += 1
    assert h.engine.phase is Phase.DONE
    np.testing.assert_allclose(h.engine.params["w"], [1.2, 2.2], rtol=1e-6)
    np.testing.assert_allclose(h.engine.params["b"], 1.1, rtol=1e-6)
    assert h.engine.params["w"].dtype == np.float32


def test_server_lr_scales_each_round_step(make_harness, model) -> None:
    h = make_harness(clients=1, num_rounds=2, strategy=FedAvg(server_lr=0.5))
    h.play_round({"c0": (2.0, 1)})
    h.play_round({"c0": (2.0, 1)})

    np.testing.assert_allclose(h.engine.params["w"], model["w"] + 2.0)


def test_fedprox_mu_reaches_the_clients_task(make_harness) -> None:
    h = make_harness(clients=1, strategy=FedProx(mu=0.05))

    assert h.poll("c0").train.proximal_mu == 0.05


def test_round_records_selection_and_results(make_harness) -> None:
    h = make_harness(clients=4, train=SelectionConfig(count=2, min_available=4))
    tasks = h.play_round({c: (1.0, 1) for c in ("c0", "c1", "c2", "c3")})

    (record,) = h.engine.records
    assert (record.clients_selected, record.results_received) == (len(tasks), 2)
