"""Engine settings at their boundaries and the buffered facade's retry hint, found unpinned by a
fresh mutation sample (benchmarks/mutation.py): the smallest legal value of each setting is
accepted, the next one down refused with a ValueError at construction."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.strategy import FedAvg


def test_one_round_is_the_fewest_a_run_may_have() -> None:
    assert EngineConfig(num_rounds=1).num_rounds == 1
    for rounds in (0, -1):
        with pytest.raises(ValueError):
            EngineConfig(num_rounds=rounds)


@pytest.mark.parametrize("field", ["max_payload_bytes", "chunk_bytes"])
def test_payload_and_chunk_sizes_of_one_byte_are_accepted_and_zero_refused(field: str) -> None:
    assert getattr(EngineConfig(num_rounds=1, **{field: 1}), field) == 1
    with pytest.raises(ValueError):
        EngineConfig(num_rounds=1, **{field: 0})


def test_a_snapshot_before_any_round_or_task_is_accepted() -> None:
    snapshot = EngineSnapshot(round=0, task_seq=0, params={"w": np.zeros(1)})

    assert (snapshot.round, snapshot.task_seq) == (0, 0)


@pytest.mark.parametrize(("round_", "task_seq"), [(-1, 0), (0, -1)])
def test_a_snapshot_with_a_negative_count_is_refused(round_: int, task_seq: int) -> None:
    with pytest.raises(ValueError):
        EngineSnapshot(round=round_, task_seq=task_seq, params={"w": np.zeros(1)})


def test_the_buffered_facade_tells_clients_the_configured_retry_delay() -> None:
    engine = BufferedEngine(BufferedConfig(buffer_size=1, concurrency=1, num_updates=1), FedAvg(),
                            {"w": np.zeros(1)})
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1, retry_after_s=2.5))
    facade.join("a", now=0.0)

    assert facade.retry_after("a", now=0.0) == 2.5


def test_the_buffered_engine_refuses_the_model_of_a_task_that_is_not_out() -> None:
    from fedcore.engine.errors import EngineError, Reason
    from fedcore.protocol.messages import Task

    engine = BufferedEngine(BufferedConfig(buffer_size=1, concurrency=1, num_updates=1), FedAvg(),
                            {"w": np.zeros(1)})
    task = engine.poll("a", now=0.0)
    assert isinstance(task, Task)

    with pytest.raises(EngineError) as err:
        engine.model_for("no-such-task")
    assert err.value.reason is Reason.NOT_ASSIGNED
    np.testing.assert_array_equal(engine.model_for(task.task_id)["w"], [0.0])


def test_secure_aggregation_settings_at_their_bounds() -> None:
    from fedcore.engine.config import SecureAggregationConfig

    edge = SecureAggregationConfig(threshold_fraction=1.0, degree=0, max_clients=1)
    assert (edge.threshold_fraction, edge.degree, edge.max_clients) == (1.0, 0, 1)
    for fields in ({"threshold_fraction": 0.0}, {"threshold_fraction": 1.01}, {"degree": -1},
                   {"max_clients": 0}, {"clip": 0.0}, {"weight_cap": 0.0},
                   {"phase_timeout_s": 0.0}):
        with pytest.raises(ValueError):
            SecureAggregationConfig(**fields)  # type: ignore[arg-type]


def test_limits_at_their_bounds() -> None:
    from fedcore.engine.config import Limits

    edge = Limits(client_evict_s=0.5, upload_budget_mb=0.5, upload_idle_s=0.5, max_clients=1,
                  max_properties=0, max_metrics=0, min_chunk_bytes=1)
    assert (edge.client_evict_s, edge.max_clients, edge.max_metrics) == (0.5, 1, 0)
    for fields in ({"client_evict_s": 0.0}, {"upload_budget_mb": 0.0}, {"upload_idle_s": 0.0},
                   {"max_clients": 0}, {"min_chunk_bytes": 0}, {"max_properties": -1},
                   {"max_metrics": -1}):
        with pytest.raises(ValueError):
            Limits(**fields)  # type: ignore[arg-type]


def test_a_checkpoint_of_another_format_version_is_refused() -> None:
    from fedcore.engine.checkpoint import (
        MAGIC,
        CheckpointError,
        checkpoint_from_bytes,
        checkpoint_to_bytes,
    )

    data = checkpoint_to_bytes(EngineSnapshot(round=2, task_seq=3, params={"w": np.ones(2)}))
    assert checkpoint_from_bytes(data).round == 2
    other = MAGIC.replace(b" 1\n", b" 2\n")
    assert other != MAGIC and len(other) == len(MAGIC)

    with pytest.raises(CheckpointError):
        checkpoint_from_bytes(other + data[len(MAGIC):])
