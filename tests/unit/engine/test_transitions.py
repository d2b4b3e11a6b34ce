"""The engine's phases move only along `TRANSITIONS`; any other move raises, changes nothing."""

from __future__ import annotations

import pytest

from fedcore.engine.engine import TRANSITIONS, Phase


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

    with pytest.raises(RuntimeError, match="no transition"):
        h.engine._enter(target)

    assert h.snapshot() == before
