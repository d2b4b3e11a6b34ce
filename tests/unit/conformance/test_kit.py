"""The conformance kit's parts without gRPC: how it tells calls apart, what it records, the
exact update check, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedcore.conformance.observe import RecordingEngine, Submitted
from fedcore.conformance.runner import as_json, check_scenarios, passed, table
from fedcore.conformance.scenarios import (
    REQUIREMENTS,
    Outcome,
    expected_update,
    plain_model,
    update_error,
)
from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.engine.errors import EngineError
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.protocol.specs import spec_of
from fedcore.strategy import FedAvg


def _engine(num_rounds: int = 1) -> RecordingEngine:
    config = EngineConfig(num_rounds=num_rounds, train=SelectionConfig(count=1), evaluate=None,
                          client_timeout_s=1e9)
    return RecordingEngine(config, FedAvg(), initial_params=plain_model())


def _submitted(update: dict[str, np.ndarray], examples: int = 7) -> Submitted:
    header = ResultHeader(client_id="c", task_id="t", num_examples=examples,
                          spec=spec_of(update))
    return Submitted(at=0.0, header=header, tensors=update, kind=TaskKind.TRAIN, round=1,
                     global_params=plain_model(), retry_after_s=0.0)


def test_each_request_is_told_apart_by_what_the_driver_asks_after_authenticating() -> None:
    # arrange: no round can open (no min_available reached: the client has not joined yet)
    engine = _engine()
    engine.hold_after(0)  # keep the round closed: only waits

    # act: Join, a GetTask held over two polls, a second GetTask, a stale session, a Leave
    session = engine.join("c", now=1.0)
    engine.authenticate("c", session, now=2.0)
    assert isinstance(engine.poll("c", now=2.0), Wait)
    engine.poll("c", now=2.5)  # the same held call polling again
    engine.authenticate("c", session, now=3.0)
    engine.poll("c", now=3.0)
    with pytest.raises(EngineError):
        engine.authenticate("c", b"stale", now=4.0)
    engine.authenticate("c", session, now=5.0)
    engine.leave("c", now=5.0)

    # assert
    assert [(c.method, c.at) for c in engine.calls("c")] == [
        ("Join", 1.0), ("GetTask", 2.0), ("GetTask", 3.0), ("refused", 4.0), ("Leave", 5.0)]
    assert [c.at for c in engine.calls("c", "GetTask", since=2.5)] == [3.0]
    assert engine.calls("someone else") == []


def test_a_forgotten_client_is_refused_not_found_once_and_can_join_again() -> None:
    engine = _engine()
    session = engine.join("c", now=0.0)
    engine.forget("c")

    with pytest.raises(EngineError, match="unknown client"):
        engine.authenticate("c", session, now=1.0)
    session = engine.join("c", now=2.0)
    engine.authenticate("c", session, now=3.0)  # remembered again

    assert [c.method for c in engine.calls("c")] == ["Join", "refused", "Join"]


def test_results_are_recorded_with_their_task_and_global_model_and_late_ones_refused() -> None:
    # arrange: two rounds of one client; its first result is made late
    engine = _engine(num_rounds=2)
    session = engine.join("c", now=0.0)
    engine.tick(0.0)
    engine.make_late("c")

    def answer(now: float) -> ResultHeader:
        engine.authenticate("c", session, now=now)
        task = engine.poll("c", now=now)
        assert isinstance(task, Task) and task.kind is TaskKind.TRAIN
        header = ResultHeader(client_id="c", task_id=task.task_id, num_examples=3,
                              spec=task.model_spec)
        engine.check_result(header, now=now)
        update = expected_update(dict(engine.params or {}), 0.5)
        engine.submit(TaskResult(header=header, tensors=update), now=now)
        return header

    # act: the late answer is refused at its header; the next round's is taken
    with pytest.raises(EngineError, match="closed|deadline"):
        answer(1.0)
    header = answer(70.0)

    # assert
    assert [r.task_id for r in engine.refusals] == engine.made_late
    [sub] = engine.submitted
    assert (sub.header, sub.kind, sub.round) == (header, TaskKind.TRAIN, 2)
    assert sub.global_params is not None
    assert update_error(sub, 0.5, 3) is None


def test_hold_after_keeps_the_next_round_closed_until_released() -> None:
    engine = _engine(num_rounds=2)
    engine.join("c", now=0.0)
    engine.hold_after(0)
    engine.tick(1.0)
    assert engine.round_number == 0

    engine.hold_after(None)
    engine.tick(2.0)
    assert engine.round_number == 1


def test_the_update_check_is_bit_exact_and_names_what_differs() -> None:
    exact = expected_update(plain_model(), 0.1)
    off = {k: v.copy() for k, v in exact.items()}
    off["w"].reshape(-1)[4] = np.nextafter(off["w"].reshape(-1)[4], np.float32(1))
    model = {k: v + exact[k] for k, v in plain_model().items()}

    assert update_error(_submitted(exact), 0.1, 7) is None
    assert update_error(_submitted(off), 0.1, 7) == (
        f"w: 1 of 6 elements differ; element 4 is {off['w'].reshape(-1)[4]!r}, expected "
        f"{exact['w'].reshape(-1)[4]!r}")
    assert "elements differ" in (update_error(_submitted(model), 0.1, 7) or "")
    assert update_error(_submitted(exact, examples=8), 0.1, 7) == (
        "num_examples is 8, the client was told 7")
    assert update_error(_submitted({"w": exact["w"]}), 0.1, 7) == (
        "tensors ['w'], the model has ['w', 'b', 'n']")


def test_the_expected_update_is_computed_in_each_dtype() -> None:
    model = plain_model()
    update = expected_update(model, 0.1)

    # float32: (g + f32(0.1)) - g in float32, which is not f32(0.1) for every g
    assert update["w"].dtype == np.float32
    np.testing.assert_array_equal(update["w"], (model["w"] + np.float32(0.1)) - model["w"])
    assert not np.all(update["w"] == np.float32(0.1))
    assert update["b"].dtype == np.float64 and update["n"].tolist() == [0, 0]


def test_the_report_has_a_row_per_outcome_and_one_json_line() -> None:
    outcomes = [Outcome("plain", REQUIREMENTS["join"], True, "1 Join"),
                Outcome("plain", REQUIREMENTS["done"], False, "no Leave"),
                Outcome("late", REQUIREMENTS["done"], False, "still running")]

    text = table(outcomes)
    report = json.loads(as_json(outcomes))

    assert not passed(outcomes) and passed(outcomes[:1]) and not passed([])
    assert "1 of 3 requirements passed" in text
    assert "FAILED done (docs/protocol.md 2, 3.2, 3.5; scenario plain, late)" in text
    assert report["passed"] is False
    assert [(r["id"], r["scenario"], r["passed"]) for r in report["requirements"]] == [
        ("join", "plain", True), ("done", "plain", False), ("done", "late", False)]


def test_scenarios_run_in_the_kit_order_and_unknown_ones_are_refused() -> None:
    assert check_scenarios(["secure", "plain"]) == ["plain", "secure"]
    with pytest.raises(ValueError, match="unknown scenario"):
        check_scenarios(["plain", "nosuch"])
