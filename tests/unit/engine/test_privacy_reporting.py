"""Every round's ε of each DP mechanism reaches the history files, runs.sqlite and Prometheus."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedcore.coordinator.metrics import CoordinatorMetrics
from fedcore.engine import SelectionConfig
from fedcore.engine.records import PrivacyMechanism, RoundRecord
from fedcore.report.history import HistoryWriter
from fedcore.storage.run_store import RunStore
from fedcore.strategy.dp_fedavg import DPFedAvg

from .conftest import Harness


def run_with_user_and_local_dp(make_harness: Callable[..., Harness]) -> list[RoundRecord]:
    """Two DP-FedAvg rounds (4 of 8 clients) whose clients also report a local ε."""
    strategy = DPFedAvg(noise_multiplier=1.0, clip_norm=1.0, clients_per_round=4, population=8,
                        rng=np.random.default_rng(0))
    h = make_harness(clients=8, num_rounds=2, strategy=strategy,
                     train=SelectionConfig(count=4, min_available=4))
    for rnd in (1, 2):
        tasks = h.tasks()
        for i, cid in enumerate(sorted(tasks)):
            h.submit(cid, tasks[cid], metrics={"epsilon": rnd + i / 10})
    return h.engine.records


def test_a_round_reports_the_epsilon_of_each_mechanism(make_harness) -> None:  # type: ignore[no-untyped-def]
    records = run_with_user_and_local_dp(make_harness)

    spent = [r.epsilons() for r in records]

    assert [set(s) for s in spent] == [{PrivacyMechanism.LOCAL, PrivacyMechanism.USER}] * 2
    assert [s[PrivacyMechanism.LOCAL] for s in spent] == [1.3, 2.3]  # the worst client's
    assert 0 < spent[0][PrivacyMechanism.USER] < spent[1][PrivacyMechanism.USER]


def test_history_files_and_the_run_store_carry_each_mechanisms_epsilon(
        make_harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = run_with_user_and_local_dp(make_harness)
    history, store = HistoryWriter(tmp_path), RunStore(tmp_path / "runs.sqlite")

    for record in records:
        history.append(record)
        store.round_completed(record)

    rows = json.loads(history.json_path.read_text())["rounds"]
    stored = store.rounds()
    header = history.csv_path.read_text().splitlines()[0].split(",")
    for record, row, db_row in zip(records, rows, stored, strict=True):
        for mechanism, spent in record.epsilons().items():
            assert row[mechanism.value] == spent
            assert db_row["metrics"][mechanism.value] == spent
    assert {"epsilon", "user_epsilon", "user_sample_rate"} <= set(header)


def test_prometheus_exports_the_latest_epsilon_by_mechanism() -> None:
    metrics = CoordinatorMetrics()
    record = RoundRecord(round=3, status="ok", clients_selected=6, results_received=6,
                         train_loss=None, loss=None, accuracy=None, eval_clients=0,
                         duration_s=1.0,
                         metrics={"distributed_epsilon": 7.5, "epsilon": 2.0, "noise_std": 1.0})

    metrics.round_completed(record)

    def value(mechanism: str) -> float | None:
        return metrics.registry.get_sample_value("fedcore_privacy_epsilon",
                                                 {"mechanism": mechanism})

    assert (value("distributed"), value("local"), value("user")) == (7.5, 2.0, None)


def test_prometheus_sums_the_bytes_rounds_uploaded() -> None:
    metrics = CoordinatorMetrics()
    for uploaded in (1000.0, 250.0):
        metrics.round_completed(RoundRecord(
            round=1, status="ok", clients_selected=2, results_received=2, train_loss=None,
            loss=None, accuracy=None, eval_clients=0, duration_s=1.0,
            metrics={"upload_bytes": uploaded}))
    metrics.round_completed(RoundRecord(  # an evaluation-only round records no upload
        round=2, status="ok", clients_selected=2, results_received=2, train_loss=None,
        loss=None, accuracy=None, eval_clients=0, duration_s=1.0, metrics={}))

    assert metrics.registry.get_sample_value("fedcore_upload_bytes_total") == 1250.0
    assert metrics.registry.get_sample_value("fedcore_round_upload_bytes") == 250.0
