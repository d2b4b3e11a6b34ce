"""Key agreement, key derivation, share encryption and signatures.

Guarantees:
- A pairwise mask seed is HKDF-SHA256 of the X25519 secret of the two mask keys, bound to
  the round and the (unordered) pair; the share-encryption key likewise from the two
  cipher keys, under another label, so the two never coincide.
- Shares travel under AES-256-GCM with associated data (round, graph seed, sender,
  receiver): the relaying server can neither read nor redirect nor alter them undetected,
  nor hand them to a client that was shown another graph. Each key is used once per
  direction, with the sender's id as nonce.
- Advertised keys and survivor lists are signed with Ed25519 when identities are set; a
  survivor list is signed together with the graph seed it was read against.
- The graph seed of a committed-graph round is SHA-256 over every advertiser's nonce, each
  committed (SHA-256, in its signed advertisement) before any nonce is revealed: it is
  uniform as long as one contributor is honest, and nobody can choose it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedcore.secagg.errors import SecAggError
from fedcore.secagg.messages import AdvertiseKeys

KeySource = Callable[[int], bytes]
DOMAIN = b"fedcore-secagg-v1"
MASK_LABEL = DOMAIN + b"/mask-seed"
SHARE_LABEL = DOMAIN + b"/share-key"


def new_x25519(random_bytes: KeySource) -> X25519PrivateKey:
    """A fresh X25519 private key from 32 bytes of `random_bytes`."""
    return X25519PrivateKey.from_private_bytes(random_bytes(32))


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32 bytes of an X25519 private key."""
    return key.private_bytes_raw()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32 bytes of the public key of `key`."""
    return key.public_key().public_bytes_raw()


def peer_key(raw: bytes) -> X25519PublicKey:
    """A peer's X25519 public key from its raw 32 bytes.

    Raises:
        SecAggError: when it is malformed.
    """
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SecAggError(f"bad peer public key: {exc}") from exc


def agree(private: X25519PrivateKey, peer_public: bytes | X25519PublicKey) -> bytes:
    """The X25519 shared secret with a peer's public key (raw bytes, or parsed once by
    `peer_key` when it is used many times).

    Raises:
        SecAggError: when the peer key is malformed or of low order.
    """
    peer = peer_public if isinstance(peer_public, X25519PublicKey) else peer_key(peer_public)
    try:
        return private.exchange(peer)
    except ValueError as exc:
        raise SecAggError(f"bad peer public key: {exc}") from exc


def _pair_info(label: bytes, round_id: int, a: int, b: int) -> bytes:
    return label + struct.pack(">QII", round_id, min(a, b), max(a, b))


def _hkdf(secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869), no salt, 32 bytes: one HMAC to extract, one to expand.

    The same bytes as `cryptography`'s HKDF at half its cost, which counts on the server:
    it derives one seed per (dropped, survivor) pair.
    """
    prk = hmac.digest(bytes(32), secret, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def derive_mask_seed(shared: bytes, *, round_id: int, a: int, b: int) -> bytes:
    """The 32-byte pairwise mask seed of clients a and b (symmetric in a, b)."""
    return _hkdf(shared, _pair_info(MASK_LABEL, round_id, a, b))


def derive_share_key(shared: bytes, *, round_id: int, a: int, b: int) -> bytes:
    """The AES-256-GCM key that clients a and b encrypt shares for each other with."""
    return _hkdf(shared, _pair_info(SHARE_LABEL, round_id, a, b))


def _share_ad(round_id: int, graph_seed: bytes, sender: int, receiver: int) -> bytes:
    return DOMAIN + b"/share" + struct.pack(">Q", round_id) + graph_seed + struct.pack(
        ">II", sender, receiver)


def encrypt_share(
    key: bytes, plaintext: bytes, *, round_id: int, graph_seed: bytes, sender: int,
    receiver: int,
) -> bytes:
    """Seal a share for `receiver`; the associated data binds round, graph, sender and receiver."""
    nonce = sender.to_bytes(12, "big")
    ad = _share_ad(round_id, graph_seed, sender, receiver)
    return AESGCM(key).encrypt(nonce, plaintext, ad)


def decrypt_share(
    key: bytes, ciphertext: bytes, *, round_id: int, graph_seed: bytes, sender: int,
    receiver: int,
) -> bytes:
    """Open a sealed share.

    Raises:
        SecAggError: when it was altered, redirected, sealed under another key or for a
            client that was shown another graph.
    """
    nonce = sender.to_bytes(12, "big")
    try:
        ad = _share_ad(round_id, graph_seed, sender, receiver)
        return AESGCM(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag as exc:
        raise SecAggError(f"share from client {sender} failed authentication") from exc


def graph_commitment(nonce: bytes, *, round_id: int, owner: int) -> bytes:
    """SHA-256 commitment to a client's 32-byte contribution to the graph seed."""
    header = DOMAIN + b"/graph-commitment" + struct.pack(">QI", round_id, owner)
    return hashlib.sha256(header + nonce).digest()


def graph_seed(*, round_id: int, nonces: Sequence[tuple[int, bytes]]) -> bytes:
    """The graph seed of a committed-graph round: SHA-256 over every (id, nonce), by id."""
    digest = hashlib.sha256(DOMAIN + b"/graph-seed" + struct.pack(">QI", round_id, len(nonces)))
    for owner, nonce in sorted(nonces):
        digest.update(struct.pack(">I", owner) + nonce)
    return digest.digest()


def seed_commitment(seed: bytes, *, round_id: int, owner: int) -> bytes:
    """SHA-256 commitment to a self-mask seed, checked after reconstruction."""
    return hashlib.sha256(DOMAIN + b"/seed" + struct.pack(">QI", round_id, owner) + seed).digest()


def advertisement_payload(advert: AdvertiseKeys, *, round_id: int) -> bytes:
    """The bytes a client signs when it advertises its keys (all fields but the signature)."""
    header = DOMAIN + b"/advertise" + struct.pack(">QI", round_id, advert.sender)
    keys = advert.cipher_pk + advert.mask_pk + advert.seed_commitment
    return header + keys + advert.graph_commitment


def check_advertisement(
    advert: AdvertiseKeys, *, round_id: int, identities: tuple[bytes, ...] | None
) -> None:
    """Check sizes, and the signature exactly when the round has identities.

    Raises:
        SecAggError: naming what is wrong.
    """
    if not len(advert.cipher_pk) == len(advert.mask_pk) == len(advert.seed_commitment) == 32:
        raise SecAggError(f"keys of client {advert.sender} are not 32 bytes each")
    if len(advert.graph_commitment) not in (0, 32):
        raise SecAggError(f"the graph commitment of client {advert.sender} is not 32 bytes")
    if identities is None:
        if advert.signature:
            raise SecAggError("an unsigned round carries a signature")
        return
    payload = advertisement_payload(advert, round_id=round_id)
    if not verify(identities[advert.sender - 1], advert.signature, payload):
        raise SecAggError(f"keys of client {advert.sender} are not signed by its identity")


def survivors_payload(*, round_id: int, graph_seed: bytes, survivors: Sequence[int]) -> bytes:
    """The bytes a client signs in the consistency check: the list and the graph it read it on."""
    ids = struct.pack(f">{len(survivors)}I", *survivors)
    header = DOMAIN + b"/survivors" + struct.pack(">Q", round_id) + graph_seed
    return header + struct.pack(">I", len(survivors)) + ids


def sign(identity: Ed25519PrivateKey, payload: bytes) -> bytes:
    """An Ed25519 signature."""
    return identity.sign(payload)


def verify(identity_public: bytes, signature: bytes, payload: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `payload`."""
    try:
        Ed25519PublicKey.from_public_bytes(identity_public).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True
