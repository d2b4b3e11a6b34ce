"""The client side of secure aggregation, as a state machine without I/O.

What a client releases, and when (the double-masking argument of Bonawitz et al. 2017):
its masked vector once; then, in the unmasking phase and only once, the self-mask seed
shares of clients the server lists as survivors and the mask-key shares of clients it
lists as dropped. It refuses unless the two lists are disjoint, name only neighbours it
heard from, include itself as a survivor, and count at least t survivors among its holders.
So for no client does the server get both secrets from an honest client.

In signed rounds it also defends against a coordinator that lies (`fedcore.secagg.safety`
has the condition and the proof): it refuses a threshold below `least_signed_threshold`;
it takes the graph seed from the committed nonces of every advertiser, never from the
coordinator; it signs one survivor list, bound to that seed; and it releases a share of an
owner only if t of that owner's holders, survivors in the list, signed exactly that list.
"""

from __future__ import annotations

import enum
import itertools
import os
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg import keys, safety, shamir
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError, SecAggError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    GraphCommitments,
    GraphReveal,
    KeyList,
    MaskedInput,
    OwnedShare,
    SealedShare,
    ServerMessage,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)
from fedcore.secagg.packing import pack, word_dtype
from fedcore.secagg.prg import MaskExpander


class Phase(enum.Enum):
    """Where a client stands in the round."""

    ADVERTISE = enum.auto()  # advertise_keys() is due
    AWAIT_COMMITMENTS = enum.auto()  # committed-graph rounds only
    AWAIT_KEYS = enum.auto()
    AWAIT_SHARES = enum.auto()
    MASK = enum.auto()  # mask_input() is due
    AWAIT_CONSISTENCY = enum.auto()
    AWAIT_UNMASK = enum.auto()
    DONE = enum.auto()


TRANSITIONS: dict[Phase, frozenset[type[ServerMessage]]] = {
    Phase.ADVERTISE: frozenset(),
    Phase.AWAIT_COMMITMENTS: frozenset({GraphCommitments}),
    Phase.AWAIT_KEYS: frozenset({KeyList}),
    Phase.AWAIT_SHARES: frozenset({ShareRelay}),
    Phase.MASK: frozenset(),
    Phase.AWAIT_CONSISTENCY: frozenset({ConsistencyRequest}),
    Phase.AWAIT_UNMASK: frozenset({UnmaskRequest}),
    Phase.DONE: frozenset(),
}


def _sorted_ids(ids: tuple[int, ...]) -> bool:
    return all(a < b for a, b in itertools.pairwise(ids))


class SecAggClient:
    """One client's part in one round.

    Args:
        spec: the round, as the server announced it.
        client_id: this client's id in 1..n.
        identity_key: its Ed25519 identity; required exactly when the round is signed.
        random_bytes: the source of key material (os.urandom unless testing).

    Raises:
        ValueError: when the id or identity key does not fit the round.
        UnsafeRound: (a ValueError) a signed round whose threshold would let a lying
            coordinator read a client's input.
    """

    def __init__(
        self,
        spec: RoundSpec,
        client_id: int,
        *,
        identity_key: Ed25519PrivateKey | None = None,
        random_bytes: keys.KeySource = os.urandom,
    ) -> None:
        if client_id not in spec.clients:
            raise ValueError(f"client id {client_id} is not in 1..{spec.num_clients}")
        if spec.identities is not None:
            if identity_key is None:
                raise ValueError("a signed round needs the client's identity key")
            if identity_key.public_key().public_bytes_raw() != spec.identities[client_id - 1]:
                raise ValueError("identity key does not match the round's identities")
            safety.check_signed(spec)
        self._spec = spec
        self._id = client_id
        self._identity = identity_key
        self._random_bytes = random_bytes
        self._graph_seed = spec.graph_seed
        self._graph = Graph(spec)
        self._holders = self._graph.holders(client_id)
        self._cipher_sk = keys.new_x25519(random_bytes)
        self._mask_sk = keys.new_x25519(random_bytes)
        self._seed = random_bytes(shamir.SECRET_BYTES)
        self._nonce = random_bytes(32) if spec.committed_graph else b""
        self._commitments: dict[int, bytes] = {}
        self._advert = self._make_advert()
        self._phase = Phase.ADVERTISE
        self._share_keys: dict[int, bytes] = {}
        self._mask_seeds: dict[int, bytes] = {}
        self._own_share = b""
        self._received: dict[int, bytes] = {}
        self._signed_survivors: tuple[int, ...] = ()

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def client_id(self) -> int:
        """This client's id in the round."""
        return self._id

    def _make_advert(self) -> AdvertiseKeys:
        spec, sender = self._spec, self._id
        advert = AdvertiseKeys(
            sender=sender,
            cipher_pk=keys.public_bytes(self._cipher_sk),
            mask_pk=keys.public_bytes(self._mask_sk),
            seed_commitment=keys.seed_commitment(self._seed, round_id=spec.round_id, owner=sender),
            graph_commitment=keys.graph_commitment(self._nonce, round_id=spec.round_id,
                                                   owner=sender) if self._nonce else b"",
        )
        if self._identity is None:
            return advert
        payload = keys.advertisement_payload(advert, round_id=spec.round_id)
        return replace(advert, signature=keys.sign(self._identity, payload))

    def _refuse(self, got: str, reason: str) -> ProtocolError:
        return ProtocolError(phase=self._phase.name, got=got, reason=reason)

    def advertise_keys(self) -> AdvertiseKeys:
        """Phase 1: the message announcing this client's public keys.

        Raises:
            ProtocolError: outside the ADVERTISE phase.
        """
        if self._phase is not Phase.ADVERTISE:
            raise self._refuse("advertise_keys", "keys are advertised once, first")
        self._phase = Phase.AWAIT_COMMITMENTS if self._spec.committed_graph else Phase.AWAIT_KEYS
        return self._advert

    def handle(self, msg: ServerMessage) -> list[ClientMessage]:
        """Process a message from the server; return what to send back.

        Raises:
            ProtocolError: when the message is not legal now or not acceptable; the state
                is then unchanged.
        """
        name = type(msg).__name__
        if type(msg) not in TRANSITIONS[self._phase]:
            raise self._refuse(name, "not expected in this phase")
        if msg.recipient != self._id:
            raise self._refuse(name, f"addressed to client {msg.recipient}")
        try:
            match msg:
                case GraphCommitments():
                    return [self._on_commitments(msg)]
                case KeyList():
                    return [self._on_key_list(msg)]
                case ShareRelay():
                    self._on_share_relay(msg)
                    return []
                case ConsistencyRequest():
                    return [self._on_consistency_request(msg)]
                case UnmaskRequest():
                    return [self._on_unmask_request(msg)]
        except SecAggError as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise self._refuse(name, str(exc)) from exc
        raise AssertionError(f"unhandled {name}")  # pragma: no cover - table and match agree

    # committed graph ------------------------------------------------------------------

    def _on_commitments(self, msg: GraphCommitments) -> GraphReveal:
        ids = tuple(c.sender for c in msg.commitments)
        threshold = self._spec.config.threshold
        if not _sorted_ids(ids) or not set(ids) <= set(self._spec.clients):
            raise self._refuse("GraphCommitments", "ids are not sorted distinct ids of the round")
        if len(ids) < threshold:
            raise self._refuse("GraphCommitments", f"{len(ids)} clients, fewer than t={threshold}")
        commitments = {c.sender: c.commitment for c in msg.commitments}
        if commitments.get(self._id) != self._advert.graph_commitment:
            raise self._refuse("GraphCommitments", "does not carry this client's own commitment")
        if any(len(c) != 32 for c in commitments.values()):
            raise self._refuse("GraphCommitments", "a commitment is not 32 bytes")
        self._commitments = commitments
        self._phase = Phase.AWAIT_KEYS
        return GraphReveal(sender=self._id, nonce=self._nonce)

    def _graph_from_reveals(self, msg: KeyList) -> bytes:
        """The seed from every committed nonce; refuses unless each one opens its commitment."""
        nonces = {r.sender: r.nonce for r in msg.reveals}
        if len(nonces) != len(msg.reveals) or nonces.keys() != self._commitments.keys():
            raise self._refuse("KeyList", "does not reveal exactly the committed nonces")
        round_id = self._spec.round_id
        for owner, nonce in nonces.items():
            if keys.graph_commitment(nonce, round_id=round_id, owner=owner) != self._commitments[owner]:
                raise self._refuse("KeyList", f"client {owner}'s nonce does not open its commitment")
        return keys.graph_seed(round_id=round_id, nonces=tuple(nonces.items()))

    # phase 1 -> 2 -------------------------------------------------------------------

    def _check_key_list(self, msg: KeyList) -> tuple[dict[int, AdvertiseKeys], bytes, Graph]:
        """The neighbours' adverts, the graph seed and the graph this client will use."""
        if self._spec.committed_graph:
            graph_seed = self._graph_from_reveals(msg)
            graph = Graph(self._spec, graph_seed)
        elif msg.reveals:
            raise self._refuse("KeyList", "reveals nonces in a round without a committed graph")
        else:
            graph_seed, graph = self._graph_seed, self._graph
        holders = graph.holders(self._id)
        entries = {entry.sender: entry for entry in msg.keys}
        threshold = self._spec.config.threshold
        if len(entries) != len(msg.keys):
            raise self._refuse("KeyList", "a client appears twice")
        if not entries.keys() <= holders:
            raise self._refuse("KeyList", "lists clients that are not neighbours")
        if any(e.graph_commitment != self._commitments.get(c, b"") for c, e in entries.items()):
            raise self._refuse("KeyList", "a graph commitment differs from the committed one")
        if entries.get(self._id) != self._advert:
            raise self._refuse("KeyList", "does not carry this client's own keys unchanged")
        if len(entries) < threshold:
            raise self._refuse("KeyList", f"{len(entries)} clients, fewer than t={threshold}")
        public = [e.cipher_pk for e in msg.keys] + [e.mask_pk for e in msg.keys]
        if len(set(public)) != len(public):
            raise self._refuse("KeyList", "public keys are not distinct")
        for entry in msg.keys:
            keys.check_advertisement(
                entry, round_id=self._spec.round_id, identities=self._spec.identities
            )
        return entries, graph_seed, graph

    def _on_key_list(self, msg: KeyList) -> EncryptedShares:
        entries, graph_seed, graph = self._check_key_list(msg)
        round_id, me = self._spec.round_id, self._id
        share_keys, mask_seeds = {}, {}
        for peer, entry in entries.items():
            if peer != me:
                shared = keys.agree(self._cipher_sk, entry.cipher_pk)
                share_keys[peer] = keys.derive_share_key(shared, round_id=round_id, a=me, b=peer)
                shared = keys.agree(self._mask_sk, entry.mask_pk)
                mask_seeds[peer] = keys.derive_mask_seed(shared, round_id=round_id, a=me, b=peer)
        xs = sorted(entries)
        secrets = np.concatenate(
            [
                shamir.secret_to_limbs(self._seed),
                shamir.secret_to_limbs(keys.private_bytes(self._mask_sk)),
            ]
        )
        rows = shamir.split_limbs(
            secrets,
            xs=xs,
            threshold=self._spec.config.threshold,
            random_bytes=self._random_bytes,
        )
        plaintexts = {x: shamir.encode_share(row) for x, row in zip(xs, rows, strict=True)}
        sealed = tuple(
            SealedShare(
                sender=me,
                receiver=peer,
                ciphertext=keys.encrypt_share(
                    share_keys[peer],
                    plaintexts[peer],
                    round_id=round_id,
                    graph_seed=graph_seed,
                    sender=me,
                    receiver=peer,
                ),
            )
            for peer in xs
            if peer != me
        )
        self._share_keys, self._mask_seeds = share_keys, mask_seeds
        self._graph_seed, self._graph, self._holders = graph_seed, graph, graph.holders(me)
        self._own_share = plaintexts[me]
        self._phase = Phase.AWAIT_SHARES
        return EncryptedShares(sender=me, shares=sealed)

    # phase 2 -> 3 -------------------------------------------------------------------

    def _on_share_relay(self, msg: ShareRelay) -> None:
        senders = [sealed.sender for sealed in msg.shares]
        threshold = self._spec.config.threshold
        if len(set(senders)) != len(senders):
            raise self._refuse("ShareRelay", "a sender appears twice")
        if not set(senders) <= self._share_keys.keys():
            raise self._refuse("ShareRelay", "carries shares from clients not in the key list")
        if any(sealed.receiver != self._id for sealed in msg.shares):
            raise self._refuse("ShareRelay", "carries shares addressed to another client")
        if len(senders) + 1 < threshold:
            raise self._refuse("ShareRelay", f"{len(senders) + 1} share holders, t={threshold}")
        received = {}
        for sealed in msg.shares:
            plaintext = keys.decrypt_share(
                self._share_keys[sealed.sender],
                sealed.ciphertext,
                round_id=self._spec.round_id,
                graph_seed=self._graph_seed,
                sender=sealed.sender,
                receiver=self._id,
            )
            shamir.decode_share(plaintext, 2 * shamir.LIMBS)
            received[sealed.sender] = plaintext
        self._received = received
        self._phase = Phase.MASK

    # phase 3 ------------------------------------------------------------------------

    def mask_input(self, values: npt.NDArray[np.integer]) -> MaskedInput:
        """Phase 3: mask a quantised vector (integers in [0, config.levels]) for the server.

        Raises:
            ProtocolError: outside the MASK phase.
            ValueError: when the vector has the wrong length or values out of range.
        """
        if self._phase is not Phase.MASK:
            raise self._refuse("mask_input", "the input is masked once, after the share relay")
        config, dim = self._spec.config, self._spec.dim
        vector = np.asarray(values)
        if vector.shape != (dim,) or vector.dtype.kind not in "ui":
            raise ValueError(f"expected {dim} integers, got shape {vector.shape} {vector.dtype}")
        if dim and (int(vector.min()) < 0 or int(vector.max()) > config.levels):
            raise ValueError(f"values must lie in [0, {config.levels}]")
        acc = vector.astype(word_dtype(config.bit_width))
        expander = MaskExpander(dim, acc.dtype)
        expander.add(acc, self._seed)
        for peer in sorted(self._received):
            if self._id < peer:
                expander.add(acc, self._mask_seeds[peer])
            else:
                expander.subtract(acc, self._mask_seeds[peer])
        signed = self._spec.signed
        self._phase = Phase.AWAIT_CONSISTENCY if signed else Phase.AWAIT_UNMASK
        return MaskedInput(sender=self._id, data=pack(acc, config.bit_width))

    # consistency check ----------------------------------------------------------------

    def _on_consistency_request(self, msg: ConsistencyRequest) -> ConsistencySignature:
        survivors = msg.survivors
        self._check_survivor_view("ConsistencyRequest", survivors)
        if not _sorted_ids(survivors) or not set(survivors) <= set(self._spec.clients):
            raise self._refuse("ConsistencyRequest", "survivors are not sorted distinct ids")
        if self._identity is None:  # pragma: no cover - signed rounds have one (see __init__)
            raise self._refuse("ConsistencyRequest", "no identity key to sign with")
        signature = keys.sign(self._identity, self._survivors_payload(survivors))
        self._signed_survivors = survivors
        self._phase = Phase.AWAIT_UNMASK
        return ConsistencySignature(sender=self._id, signature=signature)

    def _survivors_payload(self, survivors: tuple[int, ...]) -> bytes:
        return keys.survivors_payload(
            round_id=self._spec.round_id, graph_seed=self._graph_seed, survivors=survivors
        )

    def _check_survivor_view(self, got: str, survivors: tuple[int, ...]) -> None:
        threshold = self._spec.config.threshold
        heard = self._received.keys() | {self._id}
        around = set(survivors) & self._holders
        if self._id not in survivors:
            raise self._refuse(got, "this client is not listed as a survivor")
        if not around <= heard:
            raise self._refuse(got, "lists survivors this client never received shares from")
        if len(around) < threshold:
            raise self._refuse(got, f"{len(around)} survivors among its holders, t={threshold}")

    # phase 4 ------------------------------------------------------------------------

    def _check_unmask_request(self, msg: UnmaskRequest) -> None:
        survivors, dropped = msg.survivors, msg.dropped
        if not (_sorted_ids(survivors) and _sorted_ids(dropped)):
            raise self._refuse("UnmaskRequest", "id lists are not sorted and distinct")
        if set(survivors) & set(dropped):
            raise self._refuse("UnmaskRequest", "a client is listed as survivor and as dropped")
        if not set(survivors) <= self._holders or not set(dropped) <= self._received.keys():
            raise self._refuse("UnmaskRequest", "lists clients this client holds no shares of")
        self._check_survivor_view("UnmaskRequest", survivors)
        if self._spec.signed:
            self._check_signed_survivors(msg)

    def _check_signed_survivors(self, msg: UnmaskRequest) -> None:
        """Rule 3 of `fedcore.secagg.safety`: t of each owner's holders signed this very list."""
        signed = set(self._signed_survivors)
        if not set(msg.survivors) <= signed or set(msg.dropped) & signed:
            raise self._refuse("UnmaskRequest", "contradicts the survivor list this client signed")
        signers = self._valid_signers(msg.signatures, signed)
        threshold = self._spec.config.threshold
        for owner in msg.survivors + msg.dropped:
            count = len(signers & self._graph.holders(owner))
            if count < threshold:
                raise self._refuse(
                    "UnmaskRequest",
                    f"{count} of client {owner}'s holders signed the survivor list, t={threshold}",
                )

    def _valid_signers(
        self, signatures: tuple[ConsistencySignature, ...], signed: set[int]
    ) -> set[int]:
        """The survivors of the signed list whose signature over it (and its graph) verifies."""
        identities = self._spec.identities or ()
        payload = self._survivors_payload(self._signed_survivors)
        valid: set[int] = set()
        tried: set[int] = set()  # one verification per signer, however many the relay carries
        for sig in signatures:
            if sig.sender in signed and sig.sender not in tried:
                tried.add(sig.sender)
                if keys.verify(identities[sig.sender - 1], sig.signature, payload):
                    valid.add(sig.sender)
        return valid

    def _on_unmask_request(self, msg: UnmaskRequest) -> UnmaskShares:
        self._check_unmask_request(msg)
        half = shamir.SHARE_BYTES
        seed_shares = tuple(
            OwnedShare(owner=owner, share=self._share_of(owner)[:half]) for owner in msg.survivors
        )
        key_shares = tuple(
            OwnedShare(owner=owner, share=self._received[owner][half:]) for owner in msg.dropped
        )
        self._phase = Phase.DONE
        return UnmaskShares(sender=self._id, seed_shares=seed_shares, key_shares=key_shares)

    def _share_of(self, owner: int) -> bytes:
        return self._own_share if owner == self._id else self._received[owner]
