"""The roster of signed secure aggregation and a client's identity, at their edges: entries need
a non-empty id and a key of exactly 32 bytes; the file is `{"format": 1, "clients": {...}}` with
base64 keys, and anything else is a RosterError; `with_client` copies; and a client takes a
signed round only at its own index 1..n (never one that wraps around the participant list),
with every identity key from its own roster."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.roster import Roster, RosterError, SecAggIdentity, public_key

from .conftest import make_spec


def _keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(n)]


def _roster(n: int) -> Roster:
    return Roster({f"c{i}": public_key(k) for i, k in enumerate(_keys(n))})


def test_public_key_is_the_raw_32_byte_ed25519_key() -> None:
    key = _keys(1)[0]
    raw = public_key(key)
    assert isinstance(raw, bytes) and len(raw) == 32
    assert raw == key.public_key().public_bytes_raw()


@pytest.mark.parametrize(("cid", "size"), [("", 32), ("a", 31), ("a", 33), ("a", 0)])
def test_an_entry_without_an_id_or_a_32_byte_key_is_refused(cid: str, size: int) -> None:
    with pytest.raises(RosterError):
        Roster({"ok": bytes(32), cid: bytes(size)})


def test_a_roster_holds_its_own_copy_and_answers_membership() -> None:
    source = {"a": bytes(32), "b": bytes([1]) * 32}
    roster = Roster(source)
    source["c"] = bytes(32)

    assert len(roster) == 2 and "a" in roster and "b" in roster
    assert "c" not in roster and "z" not in roster
    assert roster.key_of("b") == bytes([1]) * 32
    with pytest.raises(RosterError):
        roster.key_of("c")


def test_with_client_adds_or_replaces_one_entry_and_leaves_the_original() -> None:
    roster = Roster({"a": bytes(32)})
    added = roster.with_client("b", bytes([2]) * 32)
    replaced = added.with_client("a", bytes([3]) * 32)

    assert dict(roster.keys) == {"a": bytes(32)}
    assert dict(added.keys) == {"a": bytes(32), "b": bytes([2]) * 32}
    assert dict(replaced.keys) == {"a": bytes([3]) * 32, "b": bytes([2]) * 32}
    with pytest.raises(RosterError):
        roster.with_client("c", bytes(31))


def test_the_roster_file_is_format_1_with_sorted_base64_keys_and_reads_back() -> None:
    roster = Roster({"zed": bytes([9]) * 32, "amy": bytes([1]) * 32})
    text = roster.to_json()
    value = json.loads(text)

    assert text.endswith("\n")
    assert value == {"format": 1, "clients": {
        "amy": base64.b64encode(bytes([1]) * 32).decode(),
        "zed": base64.b64encode(bytes([9]) * 32).decode()}}
    assert list(value["clients"]) == ["amy", "zed"]
    assert dict(Roster.from_json(text).keys) == dict(roster.keys)


@pytest.mark.parametrize("text", [
    "", "null", "1", '"roster"', "[1]", "{}",
    '{"clients": {}}', '{"format": "1", "clients": {}}', '{"format": 2, "clients": {}}',
    '{"format": 1}', '{"format": 1, "clients": null}', '{"format": 1, "clients": ["a"]}',
    '{"format": 1, "clients": {"a": "AAAA AAAA"}}',
    # a 32-byte key with a character outside base64 inside: not silently skipped
    '{"format": 1, "clients": {"a": "' + base64.b64encode(bytes(32)).decode()[:20] + "!"
    + base64.b64encode(bytes(32)).decode()[20:] + '"}}',
    '{"format": 1, "clients": {"a": "' + base64.b64encode(bytes(32)).decode()[:20] + " "
    + base64.b64encode(bytes(32)).decode()[20:] + '"}}',
    '{"format": 1, "clients": {"a": "' + base64.b64encode(bytes(31)).decode() + '"}}',
    '{"format": 1, "clients": {"": "' + base64.b64encode(bytes(32)).decode() + '"}}',
])
def test_a_file_that_is_not_a_format_1_roster_is_a_roster_error(text: str) -> None:
    with pytest.raises(RosterError):
        Roster.from_json(text)


def test_an_empty_format_1_roster_reads_as_empty() -> None:
    assert len(Roster.from_json('{"format": 1, "clients": {}}')) == 0


# -- a client's identity and the rounds it takes -------------------------------------------


def _identity(n: int, index: int = 0) -> SecAggIdentity:
    return SecAggIdentity(f"c{index}", _keys(n)[index], _roster(n))


def test_an_identity_needs_its_own_key_on_the_roster() -> None:
    keys, roster = _keys(3), _roster(3)
    assert SecAggIdentity("c2", keys[2], roster).client_id == "c2"
    with pytest.raises(RosterError):
        SecAggIdentity("c2", keys[1], roster)
    with pytest.raises(RosterError):
        SecAggIdentity("c9", keys[0], roster)


@pytest.mark.parametrize("client", [1, 4])
def test_a_client_takes_a_round_at_either_end_of_the_participants(client: int) -> None:
    identity = _identity(4)
    participants = ["c1", "c2", "c3"]
    participants.insert(client - 1, "c0")
    spec = make_spec(n=4, threshold=3)

    signed = identity.signed_spec(spec, client=client, participants=tuple(participants))

    assert signed.identities == tuple(identity.roster.key_of(p) for p in participants)
    assert signed.identities[client - 1] == public_key(identity.key)
    assert replace(signed, identities=None) == spec


@pytest.mark.parametrize("client", [0, -3, 5, 9])
def test_a_client_index_outside_1_to_n_is_refused_even_where_it_would_wrap(client: int) -> None:
    identity = _identity(4)
    # c0 is last, so index 0 (or -3, counted from the end) would find it by wrapping
    participants = ("c1", "c2", "c3", "c0") if client <= 0 else ("c0", "c1", "c2", "c3")
    spec = make_spec(n=4, threshold=3)

    with pytest.raises(RosterError, match="does not place"):
        identity.signed_spec(spec, client=client, participants=participants)


@pytest.mark.parametrize("participants", [("c0", "c1", "c2"), ("c0", "c1", "c2", "c3", "c1"),
                                          ("c0", "c1", "c1", "c2"), ("c0", "c0", "c1", "c2")])
def test_a_round_naming_other_than_n_distinct_participants_is_refused(
    participants: tuple[str, ...],
) -> None:
    with pytest.raises(RosterError, match="participants"):
        _identity(4).signed_spec(make_spec(n=4, threshold=3), client=1, participants=participants)
