"""The SQLite run store, and observers fanned out to it."""

from __future__ import annotations

import itertools
from pathlib import Path

from fedcore.engine import RoundRecord
from fedcore.storage.run_store import RunStore
from fedcore.transport.grpc.observer import Observers


def record(rnd: int, status: str = "ok") -> RoundRecord:
    return RoundRecord(round=rnd, status=status, clients_selected=3, results_received=2,
                       train_loss=0.5, loss=None, accuracy=0.75, eval_clients=2,
                       duration_s=1.5, metrics={"eps": 1.25})


def test_clients_are_upserted_with_join_counts(tmp_path: Path) -> None:
    clock = itertools.count(100.0)
    store = RunStore(tmp_path / "runs.sqlite", wall_clock=lambda: float(next(clock)))

    store.client_joined("a", "ipv4:10.0.0.2:5000")
    store.client_joined("b")
    store.client_joined("a", "ipv4:10.0.0.2:5001")

    rows = {r["client_id"]: r for r in store.clients()}
    assert rows["a"]["joins"] == 2 and rows["a"]["first_seen"] == 100.0
    assert rows["a"]["last_seen"] == 102.0 and rows["a"]["peer"].endswith(":5001")
    assert rows["b"]["joins"] == 1


def test_a_redone_round_replaces_its_row(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")

    store.round_completed(record(1, "failed"))
    store.round_completed(record(1))
    store.round_completed(record(2))

    rows = store.rounds()
    assert [(r["round"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")]
    assert rows[0]["metrics"] == {"eps": 1.25} and rows[0]["loss"] is None


def test_store_survives_reopening(tmp_path: Path) -> None:
    RunStore(tmp_path / "runs.sqlite").round_completed(record(1))

    assert [r["round"] for r in RunStore(tmp_path / "runs.sqlite").rounds()] == [1]


class Failing:
    def round_completed(self, record: RoundRecord) -> None:
        raise RuntimeError("boom")


def test_observers_skip_missing_methods_and_survive_failures(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    both = Observers(Failing(), store)

    both.round_completed(record(1))
    both.bytes_transferred("/x/Join", received=1, sent=0)  # neither implements it

    assert [r["round"] for r in store.rounds()] == [1]
