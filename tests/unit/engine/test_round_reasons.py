"""A failed round says why it closed: every selected client left, or the deadline passed."""

from __future__ import annotations

from fedcore.engine import SelectionConfig


def test_a_round_whose_only_client_left_says_so(make_harness) -> None:
    h = make_harness(clients=1, client_timeout_s=100.0, train=SelectionConfig(count=1, min_available=1))
    (cid,) = h.tasks()

    h.engine.leave(cid, now=h.now + 0.06)

    (record,) = h.engine.records
    assert record.status == "failed"
    assert record.reason == "0 results, 1 needed: every selected client left before the deadline"


def test_a_round_that_times_out_blames_the_deadline(make_harness) -> None:
    h = make_harness(clients=2, round_timeout_s=60.0, client_timeout_s=100.0,
                     train=SelectionConfig(count=2, min_results=2, min_available=2))
    tasks = h.tasks()
    first = min(tasks)
    h.submit(first, tasks[first])

    h.advance(61.0)

    (record,) = h.engine.records
    assert record.reason == "1 results, 2 needed: the deadline passed"


def test_clients_that_left_and_declined_are_counted_by_reason(make_harness) -> None:
    h = make_harness(clients=3, client_timeout_s=100.0, train=SelectionConfig(count=3, min_results=2, min_available=3))
    tasks = h.tasks()
    a, b, c = sorted(tasks)

    h.submit(a, tasks[a])
    h.engine.leave(b, now=h.now)
    h.submit(c, tasks[c], {}, declined_reason="budget spent")

    (record,) = h.engine.records
    assert record.reason == ("1 results, 2 needed: every selected client answered or dropped "
                             "out before the deadline (1 left; 1 declined: budget spent)")
