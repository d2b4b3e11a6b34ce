"""A permanent decline (e.g. a client whose privacy budget or floor refuses the run) keeps the
client out of every later round, even after it joins again; a plain decline does not. Found
unexercised by coverage of the engine tests (`Registry.exclude`)."""

from __future__ import annotations

import pytest

from fedcore.engine import Phase, SelectionConfig
from fedcore.protocol.messages import ResultHeader, TaskResult


def _decline(h, cid: str, task, *, permanent: bool) -> None:  # type: ignore[no-untyped-def]
    h.engine.authenticate(cid, h.sessions[cid], now=h.now)
    h.engine.submit(TaskResult(header=ResultHeader(
        client_id=cid, task_id=task.task_id, num_examples=0, declined_reason="budget spent",
        permanent=permanent)), now=h.now)


@pytest.mark.parametrize("permanent", [True, False])
def test_only_a_permanent_decline_keeps_a_client_out_of_later_rounds(make_harness,  # type: ignore[no-untyped-def]
                                                                     permanent: bool) -> None:
    h = make_harness(clients=3, num_rounds=3,
                     train=SelectionConfig(fraction=1.0, min_available=1, min_results=1))
    first = h.tasks()
    assert sorted(first) == ["c0", "c1", "c2"]
    _decline(h, "c0", first["c0"], permanent=permanent)
    for cid in ("c1", "c2"):
        h.submit(cid, first[cid], h.delta(1.0), num_examples=1)

    second = h.tasks()
    assert ("c0" in second) is not permanent
    assert ("c0" in h.engine.available_clients(h.now)) is not permanent
    for cid, task in second.items():
        h.submit(cid, task, h.delta(1.0), num_examples=1)

    h.join("c0")  # a new session does not lift the exclusion
    third = h.tasks()
    assert ("c0" in third) is not permanent
    for cid, task in third.items():
        h.submit(cid, task, h.delta(1.0), num_examples=1)
    assert h.engine.phase in (Phase.DONE, Phase.EVALUATING)
