"""The coordinator says what it is doing: who it waits for, and how rounds go."""

from __future__ import annotations

import logging

import pytest

from fedcore.coordinator.progress_log import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    said = [r.getMessage() for r in caplog.records if r.name == "fedcore.coordinator.progress_log"]
    caplog.clear()
    return said


def make(clock: Clock, phase: list[str]) -> ProgressLog:
    return ProgressLog(num_rounds=20, min_clients=3, phase=lambda: phase[0], every_s=15.0,
                       clock=clock)


def test_waiting_says_joined_and_needed_then_again_every_interval(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    phase = ["waiting"]
    log = make(clock, phase)

    log.engine_ticked(connected=1, outstanding=0, round_number=0)
    first = lines(caplog)
    clock.now = 10.0
    log.engine_ticked(connected=1, outstanding=0, round_number=0)
    quiet = lines(caplog)
    clock.now = 15.5
    log.engine_ticked(connected=1, outstanding=0, round_number=0)
    again = lines(caplog)

    assert first == [("waiting for clients: 1 of 3 joined (rounds start at 3: --min-clients, "
                      "[rounds] min_available)")]
    assert quiet == []
    assert again == first


def test_a_new_client_is_news_at_once_but_at_most_once_a_second(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    log = make(clock, ["waiting"])
    log.engine_ticked(connected=1, outstanding=0, round_number=0)
    lines(caplog)

    clock.now = 0.5
    log.engine_ticked(connected=2, outstanding=0, round_number=0)
    too_soon = lines(caplog)
    clock.now = 1.2
    log.engine_ticked(connected=2, outstanding=0, round_number=0)

    assert too_soon == []
    assert [line.split(" (")[0] for line in lines(caplog)] == ["waiting for clients: 2 of 3 joined"]


def test_a_round_start_and_its_progress_are_said(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    phase = ["training"]
    log = make(clock, phase)

    log.engine_ticked(connected=3, outstanding=3, round_number=1)
    started = lines(caplog)
    clock.now = 5.0
    log.engine_ticked(connected=3, outstanding=2, round_number=1)  # a result: not said at once
    quiet = lines(caplog)
    clock.now = 16.0
    log.engine_ticked(connected=3, outstanding=2, round_number=1)

    assert started == ["round 1 of 20 started: 3 clients selected, 3 connected"]
    assert quiet == []
    assert lines(caplog) == [("round 1 of 20 training: 2 selected clients still working, "
                              "3 connected")]


def test_waiting_between_rounds_names_the_next_round(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    phase = ["training"]
    log = make(clock, phase)
    log.engine_ticked(connected=3, outstanding=3, round_number=4)
    phase[0] = "waiting"
    clock.now = 2.0

    log.engine_ticked(connected=2, outstanding=0, round_number=4)

    assert lines(caplog)[-1] == "waiting for clients: 2 connected, round 5 starts with 3"


def test_nothing_is_said_once_the_run_is_done(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    log = make(clock, ["done"])

    log.engine_ticked(connected=3, outstanding=0, round_number=20)

    assert lines(caplog) == []


def test_a_resumed_run_waits_for_its_next_round(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    log = ProgressLog(num_rounds=20, min_clients=3, phase=lambda: "waiting", rounds_done=7,
                      clock=clock)

    log.engine_ticked(connected=0, outstanding=0, round_number=7)

    assert lines(caplog) == ["waiting for clients: 0 connected, round 8 starts with 3"]
