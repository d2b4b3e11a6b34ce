"""Signed secure aggregation's files: the roster (JSON, public keys, readable by all) and a
client's Ed25519 identity key (PKCS#8 PEM, mode 0600, never overwritten).

`fedcore.secagg.roster` holds the formats and the checks; this module reads and writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.roster import Roster, RosterError, SecAggIdentity, public_key
from fedcore.storage.atomic import write_atomic

PathLike = str | os.PathLike[str]


def load_roster(path: PathLike) -> Roster:
    """Read a roster file.

    Raises:
        RosterError: the file cannot be read or is not a roster.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise RosterError(f"cannot read the roster {path}: {err}") from err
    try:
        return Roster.from_json(text)
    except RosterError as err:
        raise RosterError(f"{path}: {err}") from err


def save_roster(roster: Roster, path: PathLike) -> None:
    """Write the roster file atomically (public keys only: readable by all)."""
    write_atomic(Path(path), roster.to_json().encode("utf-8"), mode=0o644)


def new_identity_key(path: PathLike) -> Ed25519PrivateKey:
    """Create an Ed25519 identity key at `path` (PKCS#8 PEM, mode 0600); refuses to overwrite.

    Raises:
        RosterError: `path` exists already.
    """
    target = Path(path)
    if target.exists():
        raise RosterError(f"{target} exists; an identity key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(target, pem, mode=0o600)
    return key


def load_identity_key(path: PathLike) -> Ed25519PrivateKey:
    """Read an identity key written by `new_identity_key`.

    Raises:
        RosterError: unreadable, or not an Ed25519 private key.
    """
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise RosterError(f"cannot read the identity key {path}: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise RosterError(f"{path} is not an Ed25519 private key")
    return key


def enrol(client_id: str, key_path: PathLike, roster_path: PathLike) -> bytes:
    """Give `client_id` an identity key (created at `key_path` unless it exists) and put its
    public key on the roster at `roster_path` (created unless it exists); returns the key.

    Raises:
        RosterError: the key or the roster file is unreadable.
    """
    key = (load_identity_key(key_path) if Path(key_path).exists()
           else new_identity_key(key_path))
    roster = load_roster(roster_path) if Path(roster_path).exists() else Roster({})
    save_roster(roster.with_client(client_id, public_key(key)), roster_path)
    return public_key(key)


def load_identity(client_id: str, key_path: PathLike, roster_path: PathLike) -> SecAggIdentity:
    """A client's signing key and roster, read from their files.

    Raises:
        RosterError: a file is unreadable, or the roster's key for `client_id` is not this key's.
    """
    return SecAggIdentity(client_id, load_identity_key(key_path), load_roster(roster_path))
