"""Local DP-SGD wired through the client app, the task handler and the round engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from fedcore.client.app import DeclineTask
from fedcore.client.handler import TaskHandler
from fedcore.demo.digits_app import DigitsSetup, build_model, make_app
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import LocalDPConfig, Task, TaskKind, TrainConfig
from fedcore.strategy import FedAvg

SETUP = DigitsSetup(num_clients=4, seed=0)
DP = LocalDPConfig(noise_multiplier=1.2, max_grad_norm=1.0)
CONFIG = TrainConfig(local_epochs=1, batch_size=16, learning_rate=0.05, local_dp=DP)


def _opacus_epsilon(sample_rate: float, steps: int, delta: float = 1e-5) -> float:
    acc = RDPAccountant()
    acc.history = [(DP.noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def test_epsilon_matches_opacus_across_rounds_and_a_restart(tmp_path: Path) -> None:
    torch.manual_seed(0)
    app = make_app(SETUP, 0, privacy_dir=tmp_path)
    params = app.get_parameters()
    batches = len(app.train_loader)

    first = app.fit(params, CONFIG).metrics["epsilon"]
    second = app.fit(params, CONFIG).metrics["epsilon"]
    restarted = make_app(SETUP, 0, privacy_dir=tmp_path)  # a new process would do the same
    third = restarted.fit(params, CONFIG).metrics["epsilon"]

    q = 1 / batches
    assert first == pytest.approx(_opacus_epsilon(q, batches), rel=1e-9)
    assert second == pytest.approx(_opacus_epsilon(q, 2 * batches), rel=1e-9)
    assert third == pytest.approx(_opacus_epsilon(q, 3 * batches), rel=1e-9)


def test_exchanged_state_has_plain_names_and_loads_into_a_fresh_model(tmp_path: Path) -> None:
    app = make_app(SETUP, 1, privacy_dir=tmp_path)
    result = app.fit(app.get_parameters(), CONFIG)

    fresh = build_model(seed=5)
    assert list(result.params) == list(fresh.state_dict())
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in result.params.items()}, strict=True)


def test_a_client_at_its_budget_declines_for_good_and_the_rounds_go_on(tmp_path: Path) -> None:
    # arrange: 3 clients; client 0 can afford about one task
    apps = {f"c{i}": make_app(SETUP, i, privacy_dir=tmp_path / f"c{i}") for i in range(3)}
    one_task = apps["c0"].fit(apps["c0"].get_parameters(), CONFIG).metrics["epsilon"]
    apps["c0"] = make_app(SETUP, 0, privacy_dir=tmp_path / "c0-fresh", privacy_budget=one_task * 1.01)
    engine = RoundEngine(
        EngineConfig(num_rounds=3, train=SelectionConfig(fraction=1.0), evaluate=None),
        FedAvg(local_epochs=1, batch_size=16, learning_rate=0.05, local_dp=DP),
        initial_params=apps["c1"].get_parameters(),
    )
    for cid in apps:
        engine.join(cid, now=0.0)
    engine.tick(0.0)  # rounds start on the clock, once everyone has joined

    # act: play every round in memory, clients answering through their task handlers
    now = 0.0
    selected_per_round = []
    while engine.phase.value != "done":
        clients = engine.open_clients()
        selected_per_round.append(clients)
        for cid in clients:
            task = engine.poll(cid, now=now)
            assert isinstance(task, Task) and task.kind is TaskKind.TRAIN
            model = engine.model_for(cid, task.task_id, now=now)
            result = TaskHandler(apps[cid], cid).handle(task, {k: v.copy() for k, v in model.params.items()})
            engine.submit(result, now=now)
        now += 1.0

    # assert
    records = engine.records
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    assert selected_per_round[0] == ["c0", "c1", "c2"]
    assert "c0" not in selected_per_round[2]  # excluded after its permanent decline in round 2
    assert records[1].results_received == 2
    assert all(r.metrics["epsilon"] > 0 for r in records)
    assert np.all(np.diff([r.metrics["epsilon"] for r in records]) > 0)


def test_budget_refusal_is_a_permanent_decline(tmp_path: Path) -> None:
    app = make_app(SETUP, 2, privacy_dir=tmp_path, privacy_budget=1e-3)
    with pytest.raises(DeclineTask) as refusal:
        app.fit(app.get_parameters(), CONFIG)
    assert refusal.value.permanent
    assert "budget" in refusal.value.reason
