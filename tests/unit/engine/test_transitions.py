"""The engine's phases move only along `TRANSITIONS`; any other move raises, changes nothing."""

from __future__ import annotations

import pytest

from fedcore.engine.engine import TRANSITIONS, EngineState, Phase, phase_of
from fedcore.engine.task_round import Finished, Initializing, RoundOpen, Waiting


def test_every_phase_has_a_row_and_done_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.DONE] == frozenset()


@pytest.mark.parametrize("target", list(Phase))
def test_a_move_outside_the_table_raises_and_changes_nothing(make_harness, target: Phase) -> None:
    h = make_harness(clients=2)
    current = h.engine.phase
    if target in TRANSITIONS[current]:
        pytest.skip(f"{current.value} -> {target.value} is legal")
    before = h.snapshot()
    state = _state_for(h.engine._state, target)
    assert phase_of(state) is target

    with pytest.raises(RuntimeError, match="no transition"):
        h.engine._enter(state)

    assert h.snapshot() == before


def _state_for(current: EngineState, phase: Phase) -> EngineState:
    """A state object of `phase`, built around the open round's task."""
    assert isinstance(current, RoundOpen)
    match phase:
        case Phase.WAITING:
            return Waiting()
        case Phase.INITIALIZING:
            return Initializing(current.task)
        case Phase.DONE:
            return Finished()
        case _:  # TRAINING: the open training round itself (training -> training is no move)
            return RoundOpen(current.task, current.draft)
