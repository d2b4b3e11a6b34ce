"""The engine's documented defaults (docs/deployment.md `[rounds]`, `[secagg]`, `[limits]`;
docs/reliability.md "Limits and their defaults"), pinned by the behaviour each drives where
the engine enforces it (deadlines, liveness, eviction, id and property bounds, chunk counts,
evaluation cadence, the retry hint), and by value where another layer enforces it."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineConfig, Phase, RoundEngine, SelectionConfig
from fedcore.engine.config import Limits, SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.registry import Registry
from fedcore.engine.secure_round import SecureRound
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.protocol.params import Array
from fedcore.protocol.specs import spec_of
from fedcore.secagg.roster import Roster
from fedcore.strategy import FedAvg

T0 = 1_000.0


def _engine(**overrides: object) -> RoundEngine:
    engine = RoundEngine(EngineConfig(num_rounds=2, **overrides), FedAvg(),  # type: ignore[arg-type]
                         initial_params={"w": np.zeros(2, np.float32)})
    for cid in ("a", "b", "c"):
        engine.join(cid, now=T0)
    engine.tick(T0)
    return engine


def test_by_default_every_client_trains_for_120_s_then_evaluates_for_60_s_each_round() -> None:
    engine = _engine()
    assert engine.open_clients() == ["a", "b", "c"]  # rounds.fraction = 1.0
    tasks = {c: engine.poll(c, now=T0) for c in ("a", "b", "c")}
    assert all(isinstance(t, Task) and t.time_left_s == 120.0 for t in tasks.values())
    for cid, task in tasks.items():
        assert isinstance(task, Task)
        engine.submit(_update(cid, task.task_id), now=T0 + 1.0)
    assert engine.phase is Phase.EVALUATING  # rounds.eval_every = 1, eval_fraction = 1.0
    assert engine.open_clients() == ["a", "b", "c"]
    evaluate = engine.poll("a", now=T0 + 1.0)
    assert isinstance(evaluate, Task) and evaluate.kind is TaskKind.EVALUATE
    assert evaluate.time_left_s == 60.0


def _update(cid: str, task_id: str) -> TaskResult:
    tensors: dict[str, Array] = {"w": np.zeros(2, np.float32)}
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task_id, num_examples=1,
                                          spec=spec_of(tensors)), tensors=tensors)


def test_by_default_a_waiting_client_is_told_to_ask_again_in_one_second() -> None:
    engine = RoundEngine(EngineConfig(num_rounds=1), FedAvg(),
                         initial_params={"w": np.zeros(2, np.float32)})
    engine.join("a", now=T0)
    engine.tick(T0)
    engine.join("late", now=T0)
    reply = engine.poll("late", now=T0)
    assert isinstance(reply, Wait) and reply.retry_after_s == 1.0


def test_by_default_a_client_counts_as_gone_after_120_s_of_silence() -> None:
    registry = Registry(EngineConfig(num_rounds=1).client_timeout_s)
    registry.join("a", now=T0, properties={})
    assert registry.available(T0 + 120.0) == ["a"] and registry.available(T0 + 120.5) == []


def test_by_default_a_silent_client_is_forgotten_after_an_hour() -> None:
    registry = Registry(120.0)
    registry.join("a", now=T0, properties={})
    assert registry.evict(T0 + 3600.0) == 0 and registry.evict(T0 + 3600.5) == 1


def test_by_default_ids_of_256_bytes_and_properties_of_4096_bytes_are_taken() -> None:
    registry = Registry(120.0)
    registry.join("x" * 256, now=T0, properties={"k": "v" * 4095})
    for client_id, properties in (("y" * 257, {}), ("z", {"k": "v" * 4096})):
        with pytest.raises(EngineError) as err:
            registry.join(client_id, now=T0, properties=properties)
        assert err.value.reason is Reason.INVALID
    assert len(registry) == 1


def test_by_default_an_upload_comes_in_at_most_one_chunk_per_4096_bytes_and_one() -> None:
    limits = Limits()
    assert [limits.max_chunks(n) for n in (0, 4095, 4096, 3 * 4096 + 1)] == [1, 1, 2, 4]
    assert Limits(min_chunk_bytes=10).max_chunks(25) == 3


def test_limits_enforced_by_the_transport_have_their_documented_defaults() -> None:
    limits = Limits()
    assert (limits.max_metrics, limits.max_metric_key_chars, limits.upload_idle_s) == (64, 64, 30.0)


def test_a_selection_must_say_how_many_and_needs_one_result_by_default() -> None:
    with pytest.raises(ValueError):
        SelectionConfig()
    selection = SelectionConfig(count=3)
    assert (selection.min_results, selection.min_available, selection.over_selection) == (1, 1, 0.0)
    assert selection.to_select(10) == 3 and selection.target(1) == 1


def test_secure_defaults_clip_at_1_cap_weights_at_1000_and_wait_30_s_per_phase() -> None:
    config = SecureAggregationConfig()
    round_config = config.for_round(10)
    assert (round_config.clip, round_config.bit_width, round_config.max_clients) == (1.0, 32, 100)
    assert config.weight_cap == 1000.0
    round_ = SecureRound(config, selected=["a", "b", "c"], model_spec=spec_of({"w": np.zeros(2)}),
                         round_id=1, graph_seed=bytes(32), now=T0)
    assert round_.inner_deadline() == T0 + 30.0
    setup = round_.next_step("a")
    assert setup is not None and setup.secagg.weight_cap == 1000.0  # type: ignore[union-attr]


def test_an_empty_roster_is_refused() -> None:
    with pytest.raises(ValueError, match="roster is empty"):
        SecureAggregationConfig(roster=Roster({}))
    assert len(SecureAggregationConfig(roster=Roster({"a": bytes(32)})).roster or ()) == 1
