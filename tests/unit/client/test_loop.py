"""The client loop against a scripted connection: eligibility, time limits, stop, callbacks."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from fedcore.client import (
    Callbacks,
    ClientOptions,
    ClientPhase,
    DeclineTask,
    FitResult,
    RefusedBy,
    StateDir,
    TrainConfig,
)
from fedcore.client.handler import limit_train_time
from fedcore.client.loop import ClientLoop
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import Task
from fedcore.protocol.params import Params
from fedcore.client.connection_errors import TaskRefused

from .conftest import FakeConnection, add_one, make_app, train_task

pytestmark = pytest.mark.timeout(30)


def run_loop(conn: FakeConnection, app=None, *, stop=None, state=None, **options):
    loop = ClientLoop(app or make_app(), conn, stop=stop or threading.Event(),
                      options=ClientOptions(**options), state=state)
    return loop, loop.run()


def wait_until(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_trains_reports_and_counts() -> None:
    conn = FakeConnection([train_task(1), train_task(2)])
    events: list[str] = []
    callbacks = Callbacks(on_selected=lambda e: events.append(f"selected {e.round}"),
                          on_trained=lambda e: events.append(f"trained {e.round}"),
                          on_reported=lambda e: events.append(f"reported {e.round}"))

    loop, summary = run_loop(conn, callbacks=callbacks)

    assert events == ["selected 1", "trained 1", "reported 1",
                      "selected 2", "trained 2", "reported 2"]
    status = loop.status()
    assert (status.phase, status.tasks_selected, status.tasks_reported) == (
        ClientPhase.STOPPED, 2, 2)
    assert summary.finished and summary.rounds == [1, 2]
    assert conn.leaves == 1 and conn.closed


def test_ineligible_client_never_joins_nor_asks_for_work() -> None:
    conn = FakeConnection([train_task(1)])
    stop, asked = threading.Event(), []

    def eligible() -> bool:
        asked.append(1)
        if len(asked) == 5:
            stop.set()
        return False

    loop, summary = run_loop(conn, stop=stop, eligible=eligible, eligibility_check_s=0.001)

    assert (conn.joins, conn.polls, summary.tasks_completed) == (0, 0, 0)
    assert loop.status().tasks_selected == 0


def test_task_arriving_after_eligibility_ends_is_declined_and_the_client_leaves() -> None:
    conn = FakeConnection([train_task(1), train_task(2)])
    stop, answers = threading.Event(), iter([True, False])
    refused = []

    def eligible() -> bool:
        answer = next(answers, None)
        if answer is None:
            stop.set()
            return False
        return answer

    run_loop(conn, stop=stop, eligible=eligible, eligibility_check_s=0.001,
             callbacks=Callbacks(on_refused=refused.append))

    assert [r.header.declined_reason for r in conn.submitted] == ["not eligible now"]
    assert [(e.task_id, e.by) for e in refused] == [("t1", RefusedBy.CLIENT)]
    assert conn.events == ["join", "submit", "leave"]


def test_a_raising_predicate_counts_as_not_eligible(caplog: pytest.LogCaptureFixture) -> None:
    conn = FakeConnection([train_task(1)])
    stop = threading.Event()

    def eligible() -> bool:
        stop.set()
        raise OSError("battery sensor unavailable")

    run_loop(conn, stop=stop, eligible=eligible)

    assert conn.joins == 0
    assert "eligibility predicate raised" in caplog.text


def test_a_raising_callback_is_logged_and_the_task_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = FakeConnection([train_task(1)])

    def boom(event: object) -> None:
        raise RuntimeError("host bug")

    with caplog.at_level(logging.ERROR, logger="fedcore"):
        _, summary = run_loop(conn, callbacks=Callbacks(on_selected=boom, on_reported=boom))

    assert summary.tasks_completed == 1 and len(conn.submitted) == 1
    assert caplog.text.count("callback raised") == 2


def test_overrunning_fit_is_declined_and_no_work_is_taken_until_it_returns() -> None:
    release, seen = threading.Event(), []

    def slow_fit(params: Params, config: TrainConfig) -> FitResult:
        seen.append(config.max_train_s)
        if len(seen) == 1:
            release.wait(10)  # ignores its limit
        return add_one(params, config)

    conn = FakeConnection([train_task(1), train_task(2)])
    callbacks = Callbacks(on_refused=lambda e: release.set())

    _, summary = run_loop(conn, make_app(slow_fit), max_train_s=0.05, train_grace_s=0.0,
                          callbacks=callbacks)

    declined = conn.submitted[0].header.declined_reason
    assert declined.startswith("local work exceeded its time limit")
    assert seen == [0.05, 0.05]
    assert conn.events == ["join", "submit", "leave", "join", "submit", "leave"]
    assert summary.rounds == [2] and summary.tasks_refused == 1


def test_app_declines_and_app_errors_become_refusals_not_crashes() -> None:
    calls = []

    def fit(params: Params, config: TrainConfig) -> FitResult:
        calls.append(1)
        if len(calls) == 1:
            raise DeclineTask("privacy budget spent")
        raise ValueError("bad data row")

    conn = FakeConnection([train_task(1), train_task(2)])

    _, summary = run_loop(conn, make_app(fit))

    reasons = [r.header.declined_reason for r in conn.submitted]
    assert reasons == ["privacy budget spent", "app error: ValueError: bad data row"]
    assert summary.tasks_refused == 2 and summary.finished


def test_coordinator_refusing_a_result_is_reported_and_the_loop_goes_on() -> None:
    conn = FakeConnection([train_task(1)])
    conn.submit_error = TaskRefused("FAILED_PRECONDITION", "task t1 is closed")
    refused = []

    _, summary = run_loop(conn, callbacks=Callbacks(on_refused=refused.append))

    assert [(e.by, e.reason) for e in refused] == [
        (RefusedBy.COORDINATOR, "FAILED_PRECONDITION: task t1 is closed")]
    assert summary.finished and summary.tasks_completed == 0


def test_stop_mid_training_leaves_first_then_waits_for_the_app(tmp_path: Path) -> None:
    started, release, stop = threading.Event(), threading.Event(), threading.Event()

    def fit(params: Params, config: TrainConfig) -> FitResult:
        started.set()
        release.wait(10)
        return add_one(params, config)

    conn = FakeConnection([train_task(1)])
    with StateDir.open(tmp_path / "state") as state:
        loop = ClientLoop(make_app(fit), conn, stop=stop, options=ClientOptions(), state=state)
        runner = threading.Thread(target=loop.run)
        runner.start()
        started.wait(10)
        assert loop.status().phase is ClientPhase.TRAINING

        stop.set()
        wait_until(lambda: conn.leaves == 1)
        alive_while_app_runs = runner.is_alive()
        release.set()
        runner.join(10)

        assert alive_while_app_runs and not runner.is_alive()
        assert conn.submitted == [] and loop.status().phase is ClientPhase.STOPPED
        assert state.resume().interrupted_task_id == "t1"


def test_limit_train_time_takes_the_tightest_bound() -> None:
    task = train_task(1, max_train_s=30.0, time_left_s=60.0)

    assert limit_train_time(task, local_max_s=10.0, elapsed_s=0).train.max_train_s == 10.0
    assert limit_train_time(task, local_max_s=0.0, elapsed_s=0).train.max_train_s == 30.0
    assert limit_train_time(task, local_max_s=0.0, elapsed_s=45).train.max_train_s == 15.0
    assert limit_train_time(task, local_max_s=0.0, elapsed_s=60) is None
    unbounded = train_task(1, time_left_s=0.0)
    assert limit_train_time(unbounded, local_max_s=0.0, elapsed_s=5) is unbounded


def test_a_malformed_reply_or_model_does_not_end_the_client() -> None:
    def unknown_kind() -> Task:
        raise WireError("unknown task kind 7; upgrade the client")

    conn = FakeConnection([unknown_kind, train_task(1)])
    conn.download = lambda task, stop=None: (_ for _ in ()).throw(WireError("shape differs"))

    loop, summary = run_loop(conn)

    assert [r.header.declined_reason for r in conn.submitted] == ["unusable model: shape differs"]
    assert summary.finished and loop.status().last_error.startswith("malformed reply")


def test_a_refusal_the_handler_builds_is_sent_as_is_and_counted_as_refused() -> None:
    conn = FakeConnection([train_task(1)])
    loop = ClientLoop(make_app(), conn, stop=threading.Event(), options=ClientOptions())
    refusal = loop._handler.decline(train_task(1), "budget spent")
    loop._handler.handle = lambda task, params: refusal
    trained = []
    loop._opts = ClientOptions(callbacks=Callbacks(on_trained=trained.append))

    summary = loop.run()

    assert conn.submitted == [refusal] and trained == []
    assert summary.tasks_refused == 1 and loop.status().tasks_trained == 0
