"""A privacy accountant file as fedcore writes it on disk (format version 1) is read back
with its history: the ε a client reports survives an upgrade; another version is refused."""

from __future__ import annotations

import json

import pytest

from fedcore.dp.accountant import accountant_from_json, accountant_to_json

STORED = """{
 "version": 1,
 "mechanism": "rdp",
 "history": [
  {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 300}
 ]
}"""


def test_a_stored_version_1_accountant_is_read_with_its_history() -> None:
    accountant = accountant_from_json(STORED)
    [entry] = accountant.history
    assert (entry.noise_multiplier, entry.sample_rate, entry.steps) == (1.1, 0.01, 300)
    assert 0 < accountant.epsilon(1e-5) < 10
    assert json.loads(accountant_to_json(accountant))["version"] == 1


@pytest.mark.parametrize("version", [0, 2])
def test_another_format_version_is_refused(version: int) -> None:
    with pytest.raises(ValueError):
        accountant_from_json(STORED.replace('"version": 1', f'"version": {version}'))
