"""The stored privacy accountant: what reads back, and what is refused rather than reset.

A document keeps the mechanism (RDP or PRV) and every entry exactly; a step count that is not a
plain integer (a float, a bool, a string) and an unknown mechanism are refused with a
ValueError naming where the document came from, so a client never silently restarts its ε.
"""

from __future__ import annotations

import json

import pytest

from fedcore.dp.accountant import PrivacyAccountant, accountant_from_json, accountant_to_json
from fedcore.dp.opacus import HistoryEntry, Mechanism


def _document(steps: object = 30, mechanism: str = "rdp") -> str:
    return json.dumps({"version": 1, "mechanism": mechanism, "history": [
        {"noise_multiplier": 1.2, "sample_rate": 0.05, "steps": steps}]})


@pytest.mark.parametrize("mechanism", list(Mechanism))
def test_the_mechanism_and_history_read_back_exactly(mechanism: Mechanism) -> None:
    history = [HistoryEntry(noise_multiplier=1.2, sample_rate=0.05, steps=30),
               HistoryEntry(noise_multiplier=0.9, sample_rate=1 / 7, steps=4)]
    accountant = PrivacyAccountant(mechanism=mechanism, history=history)

    restored = accountant_from_json(accountant_to_json(accountant))

    assert restored.mechanism is mechanism
    assert restored.history == tuple(history)
    assert restored.steps == 34


@pytest.mark.parametrize("steps", [30.0, 2.5, True, "30", None])
def test_a_step_count_that_is_not_a_plain_integer_is_refused(steps: object) -> None:
    with pytest.raises(ValueError, match="unreadable privacy accountant in state/acc.json"):
        accountant_from_json(_document(steps=steps), where="state/acc.json")


def test_an_unknown_mechanism_is_refused_and_a_good_document_is_read() -> None:
    with pytest.raises(ValueError, match="unreadable privacy accountant"):
        accountant_from_json(_document(mechanism="gdp"))

    accountant = accountant_from_json(_document(steps=30))
    assert accountant.history == (HistoryEntry(noise_multiplier=1.2, sample_rate=0.05, steps=30),)
    assert accountant.mechanism is Mechanism.RDP


def test_the_hook_sees_every_recorded_change_including_a_merge() -> None:
    seen: list[tuple[HistoryEntry, ...]] = []
    accountant = PrivacyAccountant(on_record=lambda acc: seen.append(acc.history))
    entry = HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=5)

    accountant.record(entry)
    accountant.record(entry)

    assert seen == [(entry,), (HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=10),)]
