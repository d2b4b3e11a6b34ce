"""`fedcore simulate --tensorboard` writes each round's numbers as TensorBoard scalars, the same
numbers as history.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.engine.records import RoundRecord, RoundStatus
from fedcore.report.tensorboard import scalars

pytest.importorskip("tensorboard", reason="the [tensorboard] extra (in [dev])")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

CONFIGS = Path(__file__).resolve().parents[3] / "benchmarks" / "configs"


def test_scalars_are_the_finite_numbers_of_a_round() -> None:
    record = RoundRecord(round=3, status=RoundStatus.OK, clients_selected=4, results_received=3,
                         train_loss=0.5, loss=None, accuracy=0.75, eval_clients=2, duration_s=1.5,
                         reason="x", metrics={"epsilon": 1.25, "bad": float("nan")})

    assert scalars(record) == {"clients_selected": 4.0, "results_received": 3.0,
                               "train_loss": 0.5, "accuracy": 0.75, "eval_clients": 2.0,
                               "duration_s": 1.5, "epsilon": 1.25}


def test_simulate_writes_the_history_as_tensorboard_scalars(tmp_path: Path) -> None:
    out = tmp_path / "run"

    code = main(["simulate", "--config", str(CONFIGS / "digits_dirichlet.toml"), "--rounds", "3",
                 "--clients", "20", "--out", str(out), "--tensorboard"])

    assert code == 0
    history = json.loads((out / "history.json").read_text())["rounds"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    accuracy = events.Scalars("round/accuracy")
    assert [e.step for e in accuracy] == [r["round"] for r in history]
    assert [e.value for e in accuracy] == pytest.approx([r["accuracy"] for r in history])
    assert [e.step for e in events.Scalars("round/train_loss")] == [1, 2, 3]
