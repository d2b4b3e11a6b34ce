"""The roster and a client's identity: files, and the checks a client makes of a signed round."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.roster import Roster, RosterError, SecAggIdentity, public_key
from fedcore.storage.identity_files import (
    load_identity_key,
    load_roster,
    new_identity_key,
    save_roster,
)

from .conftest import make_spec


def _identities(n: int) -> tuple[list[Ed25519PrivateKey], Roster]:
    keys = [Ed25519PrivateKey.generate() for _ in range(n)]
    return keys, Roster({f"c{i}": public_key(k) for i, k in enumerate(keys)})


def test_roster_file_round_trips(tmp_path: Path) -> None:
    _, roster = _identities(3)
    save_roster(roster, tmp_path / "roster.json")

    loaded = load_roster(tmp_path / "roster.json")

    assert loaded.keys == roster.keys and len(loaded) == 3 and "c1" in loaded


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 2, "clients": {}}',
                                  '{"format": 1, "clients": []}',
                                  '{"format": 1, "clients": {"a": "not base64!"}}',
                                  '{"format": 1, "clients": {"a": "AAAA"}}'])
def test_a_malformed_roster_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(RosterError, match="r.json"):
        load_roster(tmp_path / "r.json")


def test_identity_key_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    key = new_identity_key(tmp_path / "id.pem")

    assert stat.S_IMODE((tmp_path / "id.pem").stat().st_mode) == 0o600
    assert public_key(load_identity_key(tmp_path / "id.pem")) == public_key(key)
    with pytest.raises(RosterError, match="never overwritten"):
        new_identity_key(tmp_path / "id.pem")
    assert public_key(load_identity_key(tmp_path / "id.pem")) == public_key(key)


def test_an_identity_must_match_its_roster_entry() -> None:
    keys, roster = _identities(2)
    with pytest.raises(RosterError, match="not this identity key"):
        SecAggIdentity("c0", keys[1], roster)
    with pytest.raises(RosterError, match="not on the roster"):
        SecAggIdentity("stranger", keys[0], roster)


def test_signed_spec_takes_every_key_from_the_clients_own_roster() -> None:
    keys, roster = _identities(4)
    spec = make_spec(n=4, threshold=3)
    participants = ("c2", "c0", "c3", "c1")

    signed = SecAggIdentity("c0", keys[0], roster).signed_spec(spec, client=2, participants=participants)

    assert signed.signed
    assert signed.identities == tuple(roster.key_of(p) for p in participants)
    assert replace(signed, identities=None) == spec


@pytest.mark.parametrize(("participants", "client", "words"), [
    ((), 1, "unsigned"),
    (("c0", "c1", "c2"), 1, "3 participants"),
    (("c0", "c0", "c2", "c3"), 1, "distinct"),
    (("c1", "c0", "c2", "c3"), 1, "does not place"),
    (("c0", "c1", "c2", "mallory"), 1, "not on the roster"),
])
def test_a_client_refuses_a_round_that_does_not_fit_its_roster(participants, client, words) -> None:  # type: ignore[no-untyped-def]
    keys, roster = _identities(4)
    identity = SecAggIdentity("c0", keys[0], roster)
    with pytest.raises(RosterError, match=words):
        identity.signed_spec(make_spec(n=4, threshold=3), client=client, participants=participants)
