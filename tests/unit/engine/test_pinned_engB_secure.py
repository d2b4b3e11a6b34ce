"""A secure round's phases on a clock that does not start at 0: a protocol still running at
the round deadline fails the round saying so (not as an abort), the key phase waits its own
deadline for silent clients but closes as soon as the target advertised, each new phase gets
its full time, and a client outside the round dropping changes nothing; a result without its
message or payload, or in another client's name, is INVALID and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, Phase, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.records import RoundStatus
from fedcore.engine.secure_round import SecureRound
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.protocol.specs import spec_of
from fedcore.secagg.messages import AdvertiseKeys, MaskedInput
from fedcore.secagg.server import Phase as ServerPhase
from fedcore.strategy import FedAvg

T0 = 7_000.0
IDS = [f"c{i}" for i in range(4)]


def _engine(round_timeout_s: float) -> RoundEngine:
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=round_timeout_s,
                     client_timeout_s=1e6, train=SelectionConfig(fraction=1.0, min_available=4),
                     secagg=SecureAggregationConfig(max_clients=10, phase_timeout_s=30.0)),
        FedAvg(), initial_params={"w": np.zeros(3, np.float32)})
    for cid in IDS:
        engine.join(cid, now=T0)
    engine.tick(T0)
    return engine


def test_a_protocol_unfinished_at_the_round_deadline_fails_the_round_saying_so() -> None:
    engine = _engine(round_timeout_s=10.0)
    assert engine.phase is Phase.TRAINING and engine.next_deadline() == T0 + 10.0
    engine.tick(T0 + 9.99)
    assert engine.phase is Phase.TRAINING
    engine.tick(T0 + 10.0)
    (record,) = engine.records
    assert record.status is RoundStatus.FAILED
    assert record.reason.startswith("secure aggregation did not finish by the round deadline")
    np.testing.assert_array_equal(engine.params["w"], np.zeros(3))  # type: ignore[index]


def test_silent_clients_abort_the_key_phase_at_its_own_deadline() -> None:
    engine = _engine(round_timeout_s=600.0)
    assert engine.next_deadline() == T0 + 30.0  # the key phase's, before the round's
    engine.tick(T0 + 29.99)
    assert engine.phase is Phase.TRAINING
    engine.tick(T0 + 30.0)
    (record,) = engine.records
    assert record.status is RoundStatus.FAILED and "aborted" in record.reason


def test_dropping_a_client_outside_the_round_changes_nothing() -> None:
    round_ = SecureRound(SecureAggregationConfig(max_clients=10), selected=IDS,
                         model_spec=spec_of({"w": np.zeros(3, np.float32)}), round_id=1,
                         graph_seed=bytes(32), now=T0)
    round_.drop("stranger", T0)
    assert round_.dropped == set() and round_.server.phase is ServerPhase.COLLECT_KEYS
    assert round_.inner_deadline() == T0 + 30.0
    round_.drop("c0", T0)
    assert round_.dropped == {round_.ids["c0"]} and not round_.finished


def _handler(cid: str) -> TaskHandler:
    def fit(params, config):  # type: ignore[no-untyped-def]
        return FitResult(params={k: v + np.float32(0.5) for k, v in params.items()},
                         num_examples=10)

    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(3, np.float32)}, fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    return TaskHandler(app, cid)


def test_the_key_phase_closes_once_the_target_advertised_and_the_next_phase_gets_its_time() -> None:
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=600.0, client_timeout_s=1e6,
                     train=SelectionConfig(count=3, over_selection=0.34, min_available=4),
                     secagg=SecureAggregationConfig(max_clients=10, phase_timeout_s=30.0)),
        FedAvg(), initial_params={"w": np.zeros(3, np.float32)})
    for cid in IDS:
        engine.join(cid, now=T0)
    engine.tick(T0)
    assert engine.open_clients() == IDS  # 4 selected for a target of 3
    now = T0 + 1.0
    for cid in IDS[:3]:
        task = engine.poll(cid, now=now)
        assert isinstance(task, Task) and task.kind is TaskKind.TRAIN
        params = {k: v.copy() for k, v in engine.model_for(cid, task.task_id, now=now).params.items()}
        engine.submit(_handler(cid).handle(task, params), now=now)
    engine.tick(now)  # three advertised: the key phase does not wait for the fourth
    assert isinstance(engine.poll(IDS[3], now=now), Wait)
    key_list = engine.poll(IDS[0], now=now)
    assert isinstance(key_list, Task) and key_list.kind is TaskKind.SECAGG
    assert engine.next_deadline() == now + 30.0
    engine.tick(now + 29.99)
    assert engine.phase is Phase.TRAINING and engine.records == []


def _round() -> SecureRound:
    return SecureRound(SecureAggregationConfig(max_clients=10), selected=IDS,
                       model_spec=spec_of({"w": np.zeros(3, np.float32)}), round_id=1,
                       graph_seed=bytes(32), now=T0)


def _state(round_: SecureRound) -> tuple[object, ...]:
    return (round_.server.phase, set(round_.advertised), dict(round_.outbox), round_.upload_bytes)


def test_a_secure_result_without_its_message_or_payload_is_invalid_and_changes_nothing() -> None:
    round_ = _round()
    before = _state(round_)
    bare = ResultHeader(client_id="c0", task_id="t1", num_examples=1)
    no_payload = ResultHeader(client_id="c0", task_id="t1", num_examples=1,
                              secagg=MaskedInput(sender=round_.ids["c0"], data=b""))
    for header in (bare, no_payload):
        with pytest.raises(EngineError) as err:
            round_.accept("c0", TaskResult(header=header), T0)
        assert err.value.reason is Reason.INVALID
        assert _state(round_) == before


def test_a_message_in_another_clients_name_is_invalid_and_changes_nothing() -> None:
    round_ = _round()
    before = _state(round_)
    keys = AdvertiseKeys(sender=round_.ids["c1"], cipher_pk=bytes(32), mask_pk=bytes(32),
                         seed_commitment=bytes(32))
    header = ResultHeader(client_id="c0", task_id="t1", num_examples=1, secagg=keys)
    with pytest.raises(EngineError) as err:
        round_.accept("c0", TaskResult(header=header), T0)
    assert err.value.reason is Reason.INVALID and "not 2" in str(err.value)
    assert _state(round_) == before
    assert round_.next_step("c0") is not None  # still asked for its setup
