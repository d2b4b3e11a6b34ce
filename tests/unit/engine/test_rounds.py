"""Rounds close on enough results, on the deadline, or when everyone is accounted for."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineError, Phase, Reason, SelectionConfig


def over_selected(make_harness):
    """4 clients, target 2, over-selection picks 3 (ceil(2 * 1.5))."""
    h = make_harness(
        clients=4,
        num_rounds=2,
        round_timeout_s=60.0,
        train=SelectionConfig(count=2, over_selection=0.5, min_available=4),
    )
    tasks = h.tasks()
    assert len(tasks) == 3
    return h, tasks


def test_round_closes_once_target_results_arrive(make_harness) -> None:
    h, tasks = over_selected(make_harness)
    first, second, _ = sorted(tasks)

    h.submit(first, tasks[first], h.delta(1.0))
    assert h.engine.records == []
    h.submit(second, tasks[second], h.delta(1.0))

    (record,) = h.engine.records
    assert (record.status, record.clients_selected, record.results_received) == ("ok", 3, 2)


def test_extra_selected_clients_late_result_is_refused(make_harness) -> None:
    h, tasks = over_selected(make_harness)
    first, second, extra = sorted(tasks)
    h.submit(first, tasks[first], h.delta(1.0))
    h.submit(second, tasks[second], h.delta(1.0))
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit(extra, tasks[extra], h.delta(100.0))

    assert err.value.reason is Reason.LATE
    assert h.snapshot() == before


def test_round_stays_open_until_the_deadline(make_harness) -> None:
    h = make_harness(clients=3, train=SelectionConfig(count=3, min_results=2, min_available=3))
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], h.delta(1.0))

    h.advance(59.9)

    assert h.engine.phase is Phase.TRAINING and h.engine.records == []


def test_task_reports_time_left_before_the_deadline(make_harness) -> None:
    h = make_harness(clients=1)
    h.now = 15.0

    assert h.poll("c0").time_left_s == pytest.approx(45.0)


def test_deadline_closes_round_with_what_it_has(make_harness, model) -> None:
    h = make_harness(clients=3, train=SelectionConfig(count=3, min_results=2, min_available=3))
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], h.delta(1.0), num_examples=1)
    h.submit("c1", tasks["c1"], h.delta(4.0), num_examples=3)

    h.advance(60.0)

    (record,) = h.engine.records
    assert (record.status, record.results_received, record.duration_s) == ("ok", 2, 60.0)
    np.testing.assert_allclose(h.engine.params["w"], model["w"] + (1 * 1.0 + 3 * 4.0) / 4)


def test_deadline_with_too_few_results_fails_cleanly(make_harness) -> None:
    h = make_harness(clients=3, train=SelectionConfig(count=3, min_results=2, min_available=3))
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], h.delta(1.0))
    params = h.params_bytes()

    h.advance(60.0)

    (record,) = h.engine.records
    assert (record.status, record.results_received) == ("failed", 1)
    assert "1 results" in record.reason
    assert h.params_bytes() == params


def test_failed_round_still_counts_towards_num_rounds(make_harness) -> None:
    h = make_harness(clients=1, num_rounds=1)
    h.tasks()

    h.advance(60.0)

    assert h.engine.phase is Phase.DONE


def test_result_after_the_deadline_is_late_and_changes_nothing(make_harness) -> None:
    h = make_harness(
        clients=3, num_rounds=2, train=SelectionConfig(count=3, min_results=2, min_available=3)
    )
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], h.delta(1.0))
    h.submit("c1", tasks["c1"], h.delta(1.0))
    h.advance(60.0)
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit("c2", tasks["c2"], h.delta(100.0))

    assert err.value.reason is Reason.LATE
    assert h.snapshot() == before


def test_result_arriving_exactly_at_the_deadline_is_late(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_results=1, min_available=2))
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], h.delta(1.0))
    h.now = 60.0  # no tick: the submit itself must notice the deadline

    with pytest.raises(EngineError) as err:
        h.submit("c1", tasks["c1"], h.delta(1.0))

    assert err.value.reason is Reason.LATE
    assert h.engine.records[0].results_received == 1


def test_next_round_starts_after_a_round_closes(make_harness) -> None:
    h = make_harness(clients=2, num_rounds=3, train=SelectionConfig(count=2, min_available=2))
    h.play_round({"c0": (0.0, 1), "c1": (0.0, 1)})

    assert {t.round for t in h.tasks().values()} == {2}


def test_leaving_client_counts_as_dropped_and_round_closes_with_the_rest(make_harness) -> None:
    h = make_harness(clients=3, train=SelectionConfig(count=3, min_results=2, min_available=3))
    tasks = h.tasks()
    h.engine.leave("c2", now=h.now)
    h.submit("c0", tasks["c0"], h.delta(1.0))

    h.submit("c1", tasks["c1"], h.delta(3.0))

    (record,) = h.engine.records
    assert (record.status, record.clients_selected, record.results_received) == ("ok", 3, 2)
    assert record.duration_s == 0.0  # closed without waiting for the deadline


def test_left_client_is_no_longer_registered(make_harness) -> None:
    h = make_harness(clients=2)

    h.engine.leave("c1", now=h.now)

    with pytest.raises(EngineError) as err:
        h.engine.authenticate("c1", h.sessions["c1"], now=h.now)
    assert err.value.reason is Reason.UNKNOWN_CLIENT


def test_declined_task_counts_as_dropped(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_available=2))
    tasks = h.tasks()
    h.submit("c1", tasks["c1"], declined_reason="privacy budget spent")

    h.submit("c0", tasks["c0"], h.delta(2.0))

    (record,) = h.engine.records
    assert (record.status, record.results_received) == ("ok", 1)


def test_rejoin_gives_a_new_session_and_invalidates_the_old(make_harness) -> None:
    h = make_harness(clients=1)
    old = h.sessions["c0"]

    h.join("c0")

    assert h.sessions["c0"] != old
    with pytest.raises(EngineError) as err:
        h.engine.authenticate("c0", old, now=h.now)
    assert err.value.reason is Reason.UNAUTHENTICATED
    h.engine.authenticate("c0", h.sessions["c0"], now=h.now)


def test_client_rejoining_mid_round_gets_its_task_again(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_available=2))
    before = h.tasks()["c0"]

    h.join("c0")

    assert h.poll("c0") == before


def test_client_rejoining_mid_round_can_still_report(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_available=2))
    tasks = h.tasks()
    h.join("c0")
    h.submit("c1", tasks["c1"], h.delta(1.0))

    h.submit("c0", h.poll("c0"), h.delta(3.0))

    assert h.engine.records[0].results_received == 2


def test_client_that_left_and_rejoined_mid_round_waits_for_the_next(make_harness) -> None:
    h = make_harness(clients=3, train=SelectionConfig(count=3, min_available=3))
    h.tasks()
    h.engine.leave("c0", now=h.now)

    h.join("c0")

    assert "c0" not in h.tasks()
