"""The messages of a secure-aggregation round, in the order they flow.

Client -> server carry `sender`; server -> client carry `recipient`. Ids are the round's
small integers 1..n. Id lists are sorted tuples.

1. AdvertiseKeys        client -> server   two X25519 public keys, a seed commitment (and,
                                           in committed-graph rounds, a graph commitment)
   GraphCommitments     server -> client   (committed-graph rounds) every advertiser's graph
                                           commitment
   GraphReveal          client -> server   (committed-graph rounds) the committed nonce
   KeyList              server -> client   the neighbours' AdvertiseKeys (and its own); in
                                           committed-graph rounds every revealed nonce
2. EncryptedShares      client -> server   one SealedShare per neighbour
   ShareRelay           server -> client   the SealedShares addressed to it
3. MaskedInput          client -> server   the masked vector, b bits per coordinate
   ConsistencyRequest   server -> client   (signed rounds) the survivors, to be signed
   ConsistencySignature client -> server   (signed rounds) the signature of that list
4. UnmaskRequest        server -> client   which neighbours survived and which dropped
   UnmaskShares         client -> server   seed shares of survivors, key shares of dropped
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertiseKeys:
    """Phase 1: a client's public keys, signed when the round has identities."""

    sender: int
    cipher_pk: bytes
    mask_pk: bytes
    seed_commitment: bytes
    signature: bytes = b""
    graph_commitment: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphCommitment:
    """One advertiser's commitment to its contribution to the graph seed."""

    sender: int
    commitment: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphCommitments:
    """Committed-graph rounds: the commitments of every client whose keys the server took."""

    recipient: int
    commitments: tuple[GraphCommitment, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphReveal:
    """Committed-graph rounds: a client's nonce, revealed once it has seen every commitment."""

    sender: int
    nonce: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyList:
    """Phase 1 answer: the advertised keys of the recipient's neighbourhood.

    In committed-graph rounds it also carries the nonces of every client in GraphCommitments,
    from which the recipient derives the graph seed.
    """

    recipient: int
    keys: tuple[AdvertiseKeys, ...]
    reveals: tuple[GraphReveal, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedShare:
    """Shares of the sender's two secrets for one receiver, under AES-GCM."""

    sender: int
    receiver: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedShares:
    """Phase 2: a client's sealed shares, one per neighbour."""

    sender: int
    shares: tuple[SealedShare, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareRelay:
    """Phase 2 answer: the sealed shares other clients addressed to the recipient."""

    recipient: int
    shares: tuple[SealedShare, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedInput:
    """Phase 3: the masked, packed vector (the coordinator reads it in place from the received
    payload, hence a `memoryview` is accepted as well as `bytes`)."""

    sender: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRequest:
    """Signed rounds: the list of clients whose masked input the server holds."""

    recipient: int
    survivors: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencySignature:
    """Signed rounds: a client's signature over the survivor list."""

    sender: int
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskRequest:
    """Phase 4: survivors and dropped clients among the recipient's neighbourhood.

    In signed rounds it carries the signatures of the survivor list of the consistency check.
    """

    recipient: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[ConsistencySignature, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnedShare:
    """One share of the secret of `owner`."""

    owner: int
    share: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskShares:
    """Phase 4 answer: self-mask seed shares of survivors, mask-key shares of the dropped."""

    sender: int
    seed_shares: tuple[OwnedShare, ...]
    key_shares: tuple[OwnedShare, ...]


ClientMessage = (
    AdvertiseKeys | GraphReveal | EncryptedShares | MaskedInput | ConsistencySignature
    | UnmaskShares
)
ServerMessage = GraphCommitments | KeyList | ShareRelay | ConsistencyRequest | UnmaskRequest
CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    AdvertiseKeys,
    GraphReveal,
    EncryptedShares,
    MaskedInput,
    ConsistencySignature,
    UnmaskShares,
)
SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    GraphCommitments,
    KeyList,
    ShareRelay,
    ConsistencyRequest,
    UnmaskRequest,
)

ID_BYTES = 4  # what an integer field is counted as by `wire_size`


def wire_size(msg: object) -> int:
    """Payload bytes of a message: bytes fields as is, each integer as 4 bytes, nested summed."""
    if isinstance(msg, bytes):
        return len(msg)
    if isinstance(msg, memoryview):  # a masked vector read in place from its payload
        return msg.nbytes
    if isinstance(msg, int):
        return ID_BYTES
    if isinstance(msg, tuple):
        return sum((wire_size(item) for item in msg), 0)
    if is_dataclass(msg) and not isinstance(msg, type):
        return sum((wire_size(getattr(msg, f.name)) for f in fields(msg)), 0)
    raise TypeError(f"not a secagg message field: {type(msg).__name__}")
