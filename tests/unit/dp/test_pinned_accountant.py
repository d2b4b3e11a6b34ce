"""The accountant records nothing for a task that took no step: its history, its epsilon and
its stored file stay as they were (found unpinned by benchmarks/mutation.py)."""

from __future__ import annotations

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry


def test_a_zero_step_entry_changes_nothing_and_stores_nothing() -> None:
    stored: list[int] = []
    accountant = PrivacyAccountant(history=[HistoryEntry(noise_multiplier=1.0, sample_rate=0.1,
                                                         steps=10)])
    accountant.on_record = lambda acc: stored.append(len(acc.history))
    before = accountant.epsilon(1e-5)

    accountant.record(HistoryEntry(noise_multiplier=0.5, sample_rate=0.2, steps=0))

    assert accountant.history == (HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=10),)
    assert accountant.epsilon(1e-5) == before
    assert stored == []


def test_a_real_entry_is_recorded_and_stored() -> None:
    stored: list[int] = []
    accountant = PrivacyAccountant()
    accountant.on_record = lambda acc: stored.append(len(acc.history))

    accountant.record(HistoryEntry(noise_multiplier=0.5, sample_rate=0.2, steps=3))

    assert accountant.history == (HistoryEntry(noise_multiplier=0.5, sample_rate=0.2, steps=3),)
    assert accountant.epsilon(1e-5) > 0
    assert stored == [1]


def test_only_a_run_of_the_same_parameters_merges_with_the_last_entry() -> None:
    a = HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=10)
    b = HistoryEntry(noise_multiplier=2.0, sample_rate=0.1, steps=5)
    accountant = PrivacyAccountant(history=[a, b])

    accountant.record(HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=4))
    accountant.record(HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=6))

    assert accountant.history == (a, b, HistoryEntry(noise_multiplier=1.0, sample_rate=0.1,
                                                     steps=10))
    assert accountant.steps == 25
