"""Signed secure aggregation: the roster of client identities, and a client's own identity.

Against a coordinator that follows the protocol but reads everything (honest but curious),
unsigned rounds suffice. Against one that lies (substitutes keys when relaying them, or tells
clients different stories about who dropped), clients must know each other's identity keys
from a source the coordinator cannot forge: the **roster**, a list of client ids and Ed25519
public keys that the operator hands to the coordinator and to every client out of band.

In a signed round the coordinator names the round's participants (`SecAggSetup.participants`)
and each client takes their identity keys from its own copy of the roster, never from the
coordinator; it signs its keys and the survivor list, and refuses a round that is unsigned,
names a client not on the roster, or puts it anywhere but its own place. The threshold a
signed round needs is `fedcore.secagg.safety.least_signed_threshold` (t > 2n/3 when every
client neighbours every other, as in Bonawitz et al. 2017, section 6; 2t > 3k/2 + 1 for a
SecAgg+ graph of degree k); `SecAggClient` itself refuses a lower one.

The roster is JSON: `{"format": 1, "clients": {"<client id>": "<base64 raw public key>"}}`;
an identity key is a PKCS#8 PEM file, owner-only (`fedcore.storage.identity_files` reads both).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import SecAggError

_FORMAT = 1


class RosterError(SecAggError, ValueError):
    """A roster or identity file is missing, malformed, or does not fit the round."""


@dataclass(frozen=True, slots=True)
class Roster:
    """Client id -> raw 32-byte Ed25519 public key, for every client allowed in signed rounds."""

    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        bad = [cid for cid, key in self.keys.items() if not cid or len(key) != 32]
        if bad:
            raise RosterError(f"roster entries {bad[:5]} need a client id and a 32-byte key")
        object.__setattr__(self, "keys", dict(self.keys))

    def __contains__(self, client_id: object) -> bool:
        return client_id in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def key_of(self, client_id: str) -> bytes:
        """The identity key of `client_id`.

        Raises:
            RosterError: the client is not on the roster.
        """
        try:
            return self.keys[client_id]
        except KeyError:
            raise RosterError(f"client {client_id!r} is not on the roster") from None

    def with_client(self, client_id: str, public_key: bytes) -> Roster:
        """A copy with `client_id` added (or its key replaced)."""
        return Roster({**self.keys, client_id: public_key})

    def to_json(self) -> str:
        """The roster file's content."""
        clients = {cid: base64.b64encode(key).decode("ascii") for cid, key in sorted(self.keys.items())}
        return json.dumps({"format": _FORMAT, "clients": clients}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Roster:
        """Parse a roster file's content.

        Raises:
            RosterError: not a fedcore roster.
        """
        try:
            value = json.loads(text)
        except ValueError as err:
            raise RosterError(f"not a fedcore roster: {err}") from err
        clients = value.get("clients") if isinstance(value, dict) else None
        # an int: JSON's true and 1.0 equal 1 in Python
        version = value.get("format") if isinstance(value, dict) else None
        if not isinstance(clients, dict) or type(version) is not int or version != _FORMAT:
            raise RosterError(f'not a fedcore roster: expected {{"format": {_FORMAT}, '
                              '"clients": {"<client id>": "<base64 public key>"}}')
        try:
            keys = {str(cid): base64.b64decode(str(key), validate=True)
                    for cid, key in clients.items()}
        except (ValueError, binascii.Error) as err:
            raise RosterError(f"not a fedcore roster: a key is not base64: {err}") from err
        return cls(keys)


def public_key(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key, as the roster stores it."""
    return key.public_key().public_bytes_raw()


@dataclass(frozen=True, slots=True)
class SecAggIdentity:
    """A client's signing key and its copy of the roster: it takes part in signed rounds only."""

    client_id: str
    key: Ed25519PrivateKey
    roster: Roster

    def __post_init__(self) -> None:
        if self.roster.key_of(self.client_id) != public_key(self.key):
            raise RosterError(
                f"the roster's key for {self.client_id!r} is not this identity key's public key: "
                "add it with `fedcore identity` or use the right key file"
            )

    def signed_spec(self, spec: RoundSpec, *, client: int, participants: tuple[str, ...]) -> RoundSpec:
        """`spec` with the participants' identity keys from this client's roster.

        Raises:
            RosterError: the round is unsigned, or names clients not on the roster or this
                client at another place.
        """
        if not participants:
            raise RosterError("the coordinator offered an unsigned round; this client takes "
                              "part in signed rounds only")
        if len(participants) != spec.num_clients or len(set(participants)) != len(participants):
            raise RosterError(f"the round names {len(participants)} participants "
                              f"(distinct: {len(set(participants))}) for {spec.num_clients} clients")
        if not 1 <= client <= len(participants) or participants[client - 1] != self.client_id:
            raise RosterError(f"the round does not place {self.client_id!r} at its index {client}")
        return replace(spec, identities=tuple(self.roster.key_of(p) for p in participants))
