"""The INITIALIZE backoff on a clock that does not start at 0: each failure doubles the wait
from `retry_after_s` up to `INIT_BACKOFF_MAX_S`, a client long past its backoff is forgotten
(its next failure waits the base again), and the error for a run without a first model says
which source to pass."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fedcore.engine.initial import (
    INIT_BACKOFF_MAX_S,
    NO_INITIAL_MODEL,
    InitBackoff,
    check_initial_model,
)

T0 = 50_000.0  # far from 0: `now - x` and `now + x` disagree here


def test_each_failure_doubles_the_wait_up_to_the_cap() -> None:
    backoff = InitBackoff(2.0)
    now, waits = T0, []
    for _ in range(7):
        backoff.failed(["a"], now)
        waits.append(backoff.remaining("a", now))
        now += waits[-1]  # fails again as soon as it may be asked
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, INIT_BACKOFF_MAX_S, INIT_BACKOFF_MAX_S]


def test_a_client_is_asked_again_exactly_when_its_backoff_ends() -> None:
    backoff = InitBackoff(1.5)
    backoff.failed(["a"], T0)
    assert backoff.pick(["a"], T0 + 1.49) is None
    assert backoff.remaining("a", T0 + 1.0) == pytest.approx(0.5)
    assert backoff.pick(["a"], T0 + 1.5) == "a"
    assert backoff.remaining("a", T0 + 5.0) == 0.0
    assert "a" in backoff and "b" not in backoff


def test_a_failure_soon_after_the_last_keeps_counting() -> None:
    backoff = InitBackoff(1.0)
    backoff.failed(["a"], T0)
    backoff.failed(["a"], T0 + 30.0)  # 29 s after its backoff ended: not yet forgotten
    assert backoff.remaining("a", T0 + 30.0) == 2.0


def test_a_client_long_past_its_backoff_is_forgotten() -> None:
    backoff = InitBackoff(1.0)
    backoff.failed(["a", "b"], T0)
    backoff.failed(["a"], T0 + 1.0)  # a: 2 failures, asked again from T0 + 3
    later = T0 + 3.0 + INIT_BACKOFF_MAX_S + 0.5
    backoff.failed(["c"], later)  # any failure sweeps the long stale entries
    assert "a" not in backoff and "b" not in backoff and "c" in backoff
    backoff.failed(["a"], later)
    assert backoff.remaining("a", later) == 1.0  # counted from scratch


def test_a_backoff_is_forgotten_once_it_ended_the_longest_backoff_ago() -> None:
    backoff = InitBackoff(1.0)
    backoff.failed(["a"], T0)  # asked again from T0 + 1
    backoff.failed(["b"], T0 + 1.0 + INIT_BACKOFF_MAX_S - 0.5)
    assert "a" in backoff  # ended less than INIT_BACKOFF_MAX_S ago: kept
    backoff.failed(["b"], T0 + 1.0 + INIT_BACKOFF_MAX_S)
    assert "a" not in backoff  # ended exactly INIT_BACKOFF_MAX_S ago: forgotten
    assert INIT_BACKOFF_MAX_S == 60.0  # docs/deployment.md: "1 s, doubling to 60 s"


def test_only_clients_not_backing_off_are_picked_in_order_or_at_random() -> None:
    backoff = InitBackoff(1.0)
    backoff.failed(["b"], T0)
    assert backoff.pick([], T0) is None
    assert backoff.pick(["b"], T0) is None
    assert backoff.pick(["d", "b", "c"], T0) == "c"
    picks = {backoff.pick(["d", "b", "c"], T0, random.Random(seed)) for seed in range(40)}
    assert picks == {"c", "d"}
    backoff.clear()
    assert backoff.pick(["b"], T0) == "b" and "b" not in backoff


def test_a_run_without_a_first_model_is_told_which_source_to_pass() -> None:
    with pytest.raises(ValueError) as neither:
        check_initial_model(None, False, None)
    assert str(neither.value) == NO_INITIAL_MODEL
    with pytest.raises(ValueError) as both:
        check_initial_model({"w": np.zeros(1)}, True, None)
    assert str(both.value) != NO_INITIAL_MODEL and "exclude each other" in str(both.value)
    check_initial_model(None, True, None)
    check_initial_model({"w": np.zeros(1)}, False, None)
