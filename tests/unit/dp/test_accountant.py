"""The persistent accountant: JSON on disk, atomic 0600 writes, ε from Opacus."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

from fedcore.dp.accountant import PrivacyAccountant, accountant_from_json
from fedcore.dp.opacus import HistoryEntry, Mechanism
from fedcore.storage.accountant_file import FILE_NAME, open_accountant

DELTA = 1e-5


def _entry(z: float = 1.0, q: float = 0.01, steps: int = 100) -> HistoryEntry:
    return HistoryEntry(noise_multiplier=z, sample_rate=q, steps=steps)


def test_equal_consecutive_entries_merge_as_in_opacus():
    accountant = PrivacyAccountant()

    accountant.record(_entry(steps=10))
    accountant.record(_entry(steps=5))
    accountant.record(_entry(z=2.0, steps=1))

    assert accountant.history == (_entry(steps=15), _entry(z=2.0, steps=1))


@pytest.mark.parametrize("mechanism, reference", [(Mechanism.RDP, RDPAccountant),
                                                  (Mechanism.PRV, PRVAccountant)])
def test_epsilon_equals_opacus_for_the_same_history(mechanism, reference):
    accountant = PrivacyAccountant(mechanism=mechanism,
                                   history=[_entry(steps=300), _entry(z=0.8, q=0.02, steps=50)])
    opacus = reference()
    opacus.history = [(1.0, 0.01, 300), (0.8, 0.02, 50)]

    assert accountant.epsilon(DELTA) == pytest.approx(opacus.get_epsilon(delta=DELTA), rel=1e-12)


def test_empty_history_has_spent_nothing():
    assert PrivacyAccountant().epsilon(DELTA) == 0.0


def test_record_persists_atomically_with_owner_only_permissions(tmp_path: Path):
    accountant = open_accountant(tmp_path)

    accountant.record(_entry())

    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temp file left behind
    doc = json.loads(path.read_text())
    assert doc["history"] == [{"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 100}]


def test_reopened_accountant_has_the_same_history_and_epsilon(tmp_path: Path):
    first = open_accountant(tmp_path)
    first.record(_entry(z=1.1, q=1 / 7))
    first.record(_entry(z=0.9))

    second = open_accountant(tmp_path)

    assert second.history == first.history
    assert second.epsilon(DELTA) == first.epsilon(DELTA)


def test_opening_with_another_mechanism_is_refused(tmp_path: Path):
    open_accountant(tmp_path).record(_entry())

    with pytest.raises(ValueError, match="rdp history"):
        open_accountant(tmp_path, mechanism=Mechanism.PRV)


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 1}', '{"version": 9, "mechanism": "rdp",'
                                  ' "history": []}', '{"version": 1, "mechanism": "rdp", "history":'
                                  ' [{"noise_multiplier": 1, "sample_rate": 2, "steps": 1}]}'])
def test_corrupt_file_is_an_error_not_a_reset(tmp_path: Path, text: str):
    (tmp_path / FILE_NAME).write_text(text)

    with pytest.raises(ValueError, match="unreadable privacy accountant"):
        open_accountant(tmp_path)


def test_epsilon_after_leaves_the_history_unchanged():
    accountant = PrivacyAccountant(history=[_entry()])

    after = accountant.epsilon_after(_entry(steps=50), DELTA)

    assert accountant.history == (_entry(),)
    assert after == pytest.approx(PrivacyAccountant(history=[_entry(steps=150)]).epsilon(DELTA))


def test_json_roundtrip_is_exact():
    accountant = PrivacyAccountant(history=[_entry(z=1 / 3, q=1 / 49, steps=7)])

    from fedcore.dp.accountant import accountant_to_json
    restored = accountant_from_json(accountant_to_json(accountant))

    assert restored.history == accountant.history


@settings(max_examples=15, deadline=None)
@given(z=st.floats(0.5, 5.0), q=st.floats(0.001, 0.5), steps=st.integers(1, 500),
       more=st.integers(1, 500))
def test_epsilon_is_monotone_in_steps(z: float, q: float, steps: int, more: int):
    accountant = PrivacyAccountant(history=[_entry(z=z, q=q, steps=steps)])

    assert accountant.epsilon_after(_entry(z=z, q=q, steps=more), DELTA) >= accountant.epsilon(DELTA)
