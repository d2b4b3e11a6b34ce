"""Secure FedBuff's clock, pinned: a group whose last protocol phase times out with enough
members finishes at that tick and steps the model; when that step ends the run, every other
group open at the same tick is closed with it (not failed, not counted), and its members are
told the run is done."""

from __future__ import annotations

import numpy as np

from fedcore.engine.buffered import Outcome
from fedcore.protocol.messages import Done

from .test_buffered_secure import SECURE, Clients, _engine


def _run_group_without_cs_last_message(clients: Clients, now: float) -> None:
    """a and b answer every step of sbuf-1; c answers its first three (train and advertise,
    shares, masked input) and then falls silent before unmasking."""
    engine = clients.engine
    c_answered = 0
    progress = True
    while progress and engine.is_out("sbuf-1"):
        progress = False
        for cid in "abc":
            if cid == "c" and c_answered >= 3:
                continue
            task = clients.poll(cid, now)
            if task is None or task.task_id != "sbuf-1" or not engine.is_out("sbuf-1"):
                continue
            clients.answer(cid, task, now)
            progress = True
            c_answered += cid == "c"


def test_a_group_finishing_at_a_tick_ends_the_run_and_closes_the_other_groups() -> None:
    engine = _engine(k=3, concurrency=6, updates=1)
    clients = Clients(engine, dict.fromkeys("abcdef", 0.3))
    for cid in "abcdef":
        engine.poll(cid, now=100.0)
    assert engine.open_groups == 2
    _run_group_without_cs_last_message(clients, now=100.5)
    assert engine.is_out("sbuf-1") and engine.version == 0  # waiting for c's unmasking
    engine.tick(100.0 + SECURE.phase_timeout_s - 0.1)  # before either phase deadline
    assert engine.open_groups == 2 and engine.version == 0 and engine.groups_failed == 0
    # past both the unmasking phase of sbuf-1 and the key phase of the silent sbuf-2
    engine.tick(100.5 + SECURE.phase_timeout_s + 0.5)
    assert engine.version == 1 and engine.trained and engine.done
    assert engine.records[0].staleness == (0, 0, 0)  # c's masked input is in the sum
    np.testing.assert_allclose(engine.params["w"], 0.3, atol=1e-5)
    assert engine.open_groups == 0 and engine.outstanding == 0
    assert engine.groups_failed == 0 and engine.last_failure == ""
    assert isinstance(engine.poll("d", now=200.0), Done)
    assert Outcome.FAILED not in clients.outcomes
