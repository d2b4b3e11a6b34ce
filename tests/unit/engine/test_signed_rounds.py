"""Signed secure aggregation through the engine and the client's task handler, in memory.

The coordinator names the participants; each client takes their keys from its own roster,
signs, and refuses rounds that a lying coordinator shapes (unsigned, substituted keys)."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.client import ClientAppError, DeclineTask, EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import SecAggSetup, Task, TaskKind
from fedcore.secagg import keys
from fedcore.secagg.config import Mode, RoundSpec
from fedcore.secagg.messages import ConsistencyRequest, KeyList
from fedcore.secagg.roster import Roster, SecAggIdentity, public_key
from fedcore.strategy import FedAvg

N = 5
IDS = [f"site-{i}" for i in range(N)]
ADDS = {cid: 0.01 * (i + 1) for i, cid in enumerate(IDS)}


def _app(cid: str, calls: list[str] | None = None) -> FunctionalApp:
    def fit(params, config):  # type: ignore[no-untyped-def]
        if calls is not None:
            calls.append(cid)
        return FitResult(params={k: v + np.float32(ADDS[cid]) for k, v in params.items()},
                         num_examples=10)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(6, np.float32)}, fit=fit,
                         evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))


def _federation(*, signed: bool = True) -> tuple[RoundEngine, dict[str, SecAggIdentity]]:
    secret = {cid: Ed25519PrivateKey.generate() for cid in IDS}
    roster = Roster({cid: public_key(k) for cid, k in secret.items()})
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=60.0, client_timeout_s=1e9,
                     train=SelectionConfig(fraction=1.0, min_available=N),
                     secagg=SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10,
                                                    roster=roster if signed else None)),
        FedAvg(), initial_params={"w": np.zeros(6, np.float32)},
    )
    for cid in IDS:
        engine.join(cid, now=0.0)
    engine.tick(0.0)
    return engine, {cid: SecAggIdentity(cid, secret[cid], roster) for cid in IDS}


def _play(engine: RoundEngine, handlers: dict[str, TaskHandler], tamper=None) -> list[object]:  # type: ignore[no-untyped-def]
    """Every client polls and answers until the run ends; returns the server messages seen."""
    seen: list[object] = []
    now = 0.0
    for _ in range(400):
        engine.tick(now)  # the driver lets time pass; queries never do
        if engine.phase.value == "done":
            return seen
        for cid, handler in handlers.items():
            task = engine.poll(cid, now=now)
            if not isinstance(task, Task):
                continue
            if tamper is not None:
                task = tamper(cid, task)
            seen.append(task.secagg)
            params = None
            if task.kind in (TaskKind.TRAIN, TaskKind.EVALUATE):
                params = {k: v.copy() for k, v in engine.model_for(cid, task.task_id, now=now).params.items()}
            try:
                result = handler.handle(task, params)
            except (DeclineTask, ClientAppError) as refusal:
                result = handler.decline(task, str(refusal))
            engine.submit(result, now=now)
        now += 1.0
    raise AssertionError("the run did not end")


def test_a_signed_round_gives_the_exact_mean_and_runs_the_consistency_check() -> None:
    # arrange
    engine, identities = _federation()
    handlers = {cid: TaskHandler(_app(cid), cid, identity=identities[cid]) for cid in IDS}

    # act
    seen = _play(engine, handlers)

    # assert
    setups = [m for m in seen if isinstance(m, SecAggSetup)]
    assert {s.participants for s in setups} == {tuple(sorted(IDS))}
    assert setups[0].spec.config.threshold == 4  # above 2n/3 for n = 5
    assert any(isinstance(m, ConsistencyRequest) for m in seen)
    assert engine.records[0].status == "ok" and engine.records[0].results_received == N
    np.testing.assert_allclose(engine.params["w"], np.mean(list(ADDS.values())), atol=1e-6)


def test_a_client_not_on_the_roster_cannot_join() -> None:
    engine, _ = _federation()
    with pytest.raises(EngineError) as refusal:
        engine.join("mallory", now=0.0)
    assert refusal.value.reason is Reason.NOT_ALLOWED and "roster" in str(refusal.value)
    assert "mallory" not in engine.available_clients(0.0)


def test_a_client_with_an_identity_declines_an_unsigned_round_before_training() -> None:
    # arrange: the coordinator downgrades to unsigned rounds
    engine, identities = _federation(signed=False)
    calls: list[str] = []
    handler = TaskHandler(_app(IDS[0], calls), IDS[0], identity=identities[IDS[0]])
    task = engine.poll(IDS[0], now=0.0)
    assert isinstance(task, Task) and isinstance(task.secagg, SecAggSetup)

    # act / assert
    with pytest.raises(DeclineTask, match="unsigned"):
        handler.handle(task, dict(engine.model_for(IDS[0], task.task_id, now=0.0).params))
    assert calls == []  # no work done, nothing released


def test_a_client_without_an_identity_declines_a_signed_round() -> None:
    engine, _ = _federation()
    task = engine.poll(IDS[0], now=0.0)
    assert isinstance(task, Task)
    with pytest.raises(DeclineTask, match="no identity"):
        TaskHandler(_app(IDS[0]), IDS[0]).handle(
            task, dict(engine.model_for(IDS[0], task.task_id, now=0.0).params))


def _substitute_key(victim: str, target: int):  # type: ignore[no-untyped-def]
    """A coordinator that swaps `target`'s mask key for its own in the key list `victim` gets."""
    attacker = keys.public_bytes(keys.new_x25519(os.urandom))

    def tamper(cid: str, task: Task) -> Task:
        if cid != victim or not isinstance(task.secagg, KeyList):
            return task
        swapped = tuple(replace(a, mask_pk=attacker) if a.sender == target else a
                        for a in task.secagg.keys)
        return replace(task, secagg=replace(task.secagg, keys=swapped))

    return tamper


@pytest.mark.parametrize("signed", [True, False])
def test_substituted_keys_are_refused_only_in_signed_rounds(signed: bool) -> None:
    # arrange: the coordinator swaps site-1's mask key in the list that site-0 receives
    engine, identities = _federation(signed=signed)
    handlers = {cid: TaskHandler(_app(cid), cid, identity=identities[cid] if signed else None)
                for cid in IDS}
    refusals: list[str] = []
    original = handlers[IDS[0]].handle

    def watched(task, params):  # type: ignore[no-untyped-def]
        try:
            return original(task, params)
        except ClientAppError as err:
            refusals.append(str(err))
            raise

    handlers[IDS[0]].handle = watched  # type: ignore[method-assign]

    # act
    _play(engine, handlers, tamper=_substitute_key(IDS[0], target=2))

    # assert: signed, the victim refuses at once; unsigned, it goes on with the attacker's key
    if signed:
        assert refusals and "not signed by its identity" in refusals[0]
        assert engine.records[0].results_received == N - 1  # the round went on without it
        rest = [ADDS[c] for c in IDS[1:]]
        np.testing.assert_allclose(engine.params["w"], np.mean(rest), atol=1e-6)
    else:
        assert refusals == []


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_the_coordinators_signed_thresholds_are_ones_every_client_accepts(mode: Mode) -> None:
    secret = {f"c{i}": Ed25519PrivateKey.generate() for i in range(40)}
    roster = Roster({cid: public_key(k) for cid, k in secret.items()})
    config = SecureAggregationConfig(mode=mode, max_clients=40, roster=roster,
                                     threshold_fraction=0.5)
    for n in range(1, 41):
        spec = RoundSpec(config=config.for_round(n), round_id=1, num_clients=n, dim=3)
        participants = tuple(f"c{i}" for i in range(n))
        for index in (1, n):
            cid = participants[index - 1]
            identity = SecAggIdentity(cid, secret[cid], roster)
            assert identity.signed_spec(spec, client=index, participants=participants).signed
