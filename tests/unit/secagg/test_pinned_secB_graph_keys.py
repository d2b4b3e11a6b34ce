"""The neighbour graph, key derivation and message sizes against their stated definitions:
the SECAGG_PLUS graph is the Harary graph over the clients ordered by their PRG word (rebuilt
here independently); share sealing is AES-256-GCM with the sender's id as nonce; survivor
lists, commitments and advertisements sign exactly what they name; and `wire_size` counts
bytes, memoryview bytes, 4 per integer, and refuses anything else."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedcore.secagg import keys, prg
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    MaskedInput,
    OwnedShare,
    SealedShare,
    UnmaskRequest,
    UnmaskShares,
    wire_size,
)

SEED = bytes(range(50, 82))


def _spec(n: int, degree: int, seed: bytes = SEED) -> RoundSpec:
    config = SecAggConfig(threshold=2, max_clients=n, clip=1.0, mode=Mode.SECAGG_PLUS,
                          degree=degree)
    return RoundSpec(config=config, round_id=1, num_clients=n, dim=1, graph_seed=seed)


def _harary(n: int, degree: int, seed: bytes) -> dict[int, set[int]]:
    words = prg.expand(seed, n, np.uint64).tolist()
    ring = sorted(range(1, n + 1), key=lambda c: (words[c - 1], c))
    half = (degree + degree % 2) // 2
    return {c: {ring[(i + d) % n] for d in range(-half, half + 1) if d} for i, c in enumerate(ring)}


@pytest.mark.parametrize(("n", "degree"), [(7, 2), (9, 3), (12, 4), (25, 6), (40, 10)])
def test_the_sparse_graph_is_the_harary_graph_over_the_prg_order(n: int, degree: int) -> None:
    graph = Graph(_spec(n, degree))
    expected = _harary(n, degree, SEED)
    assert {c: set(graph.neighbours(c)) for c in range(1, n + 1)} == expected
    assert all(graph.holders(c) == expected[c] | {c} for c in range(1, n + 1))


def test_an_explicit_seed_overrides_the_specs_seed() -> None:
    other = bytes(32)
    graph = Graph(_spec(15, 4), seed=other)
    expected = _harary(15, 4, other)
    assert {c: set(graph.neighbours(c)) for c in range(1, 16)} == expected
    assert expected != _harary(15, 4, SEED)


def test_a_degree_of_n_minus_1_makes_every_client_a_neighbour() -> None:
    graph = Graph(_spec(7, 6))
    assert graph.complete
    assert all(graph.neighbours(c) == set(range(1, 8)) - {c} for c in range(1, 8))


# ------------------------------------------------------------------ keys
def test_a_share_is_sealed_with_aes_gcm_under_the_senders_id_as_nonce() -> None:
    key = os.urandom(32)
    sealed = keys.encrypt_share(key, b"share!", round_id=9, graph_seed=SEED, sender=258,
                                receiver=3)
    assert len(sealed) == len(b"share!") + 16
    # plain AES-GCM opens it with the 12-byte big-endian sender id as nonce...
    nonce = (258).to_bytes(12, "big")
    ad = keys._share_ad(9, SEED, 258, 3)
    assert AESGCM(key).decrypt(nonce, sealed, ad) == b"share!"
    # ...and only with the associated data bound in
    with pytest.raises(InvalidTag):
        AESGCM(key).decrypt(nonce, sealed, b"")
    # and another sender id (another nonce) with otherwise the same data fails too
    for sender in (257, 259, 2):
        with pytest.raises(SecAggError):
            keys.decrypt_share(key, sealed, round_id=9, graph_seed=SEED, sender=sender,
                               receiver=3)
    assert keys.decrypt_share(key, sealed, round_id=9, graph_seed=SEED, sender=258,
                              receiver=3) == b"share!"


def test_mask_seeds_and_share_keys_differ_and_depend_on_round_and_pair() -> None:
    shared = os.urandom(32)
    mask = keys.derive_mask_seed(shared, round_id=4, a=2, b=7)
    assert mask == keys.derive_mask_seed(shared, round_id=4, a=7, b=2)
    others = {keys.derive_share_key(shared, round_id=4, a=2, b=7),
              keys.derive_mask_seed(shared, round_id=5, a=2, b=7),
              keys.derive_mask_seed(shared, round_id=4, a=2, b=8),
              keys.derive_mask_seed(shared, round_id=4, a=3, b=7),
              keys.derive_mask_seed(os.urandom(32), round_id=4, a=2, b=7)}
    assert mask not in others and len(others) == 5 and len(mask) == 32


def test_a_survivor_list_signs_the_round_the_graph_and_the_whole_list() -> None:
    payload = keys.survivors_payload(round_id=3, graph_seed=SEED, survivors=[1, 2, 5])
    assert payload.endswith(b"".join(c.to_bytes(4, "big") for c in (3, 1, 2, 5)))
    variants = [keys.survivors_payload(round_id=4, graph_seed=SEED, survivors=[1, 2, 5]),
                keys.survivors_payload(round_id=3, graph_seed=bytes(32), survivors=[1, 2, 5]),
                keys.survivors_payload(round_id=3, graph_seed=SEED, survivors=[1, 2]),
                keys.survivors_payload(round_id=3, graph_seed=SEED, survivors=[1, 2, 6]),
                keys.survivors_payload(round_id=3, graph_seed=SEED, survivors=[])]
    assert payload not in variants and len(set(variants)) == len(variants)


def test_signatures_verify_only_with_the_signers_key_and_payload() -> None:
    identity = Ed25519PrivateKey.generate()
    public = identity.public_key().public_bytes_raw()
    signature = keys.sign(identity, b"payload")
    assert keys.verify(public, signature, b"payload") is True
    assert keys.verify(public, signature, b"payloaD") is False
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert keys.verify(other, signature, b"payload") is False
    assert keys.verify(public[:31], signature, b"payload") is False  # malformed: no raise


def _advert(sender: int, identity: Ed25519PrivateKey | None, round_id: int = 6) -> AdvertiseKeys:
    unsigned = AdvertiseKeys(sender=sender, cipher_pk=os.urandom(32), mask_pk=os.urandom(32),
                             seed_commitment=os.urandom(32), graph_commitment=os.urandom(32))
    if identity is None:
        return unsigned
    payload = keys.advertisement_payload(unsigned, round_id=round_id)
    return AdvertiseKeys(sender=sender, cipher_pk=unsigned.cipher_pk, mask_pk=unsigned.mask_pk,
                         seed_commitment=unsigned.seed_commitment,
                         graph_commitment=unsigned.graph_commitment,
                         signature=keys.sign(identity, payload))


def test_an_advertisement_is_checked_against_its_senders_own_identity() -> None:
    private = [Ed25519PrivateKey.generate() for _ in range(3)]
    identities = tuple(k.public_key().public_bytes_raw() for k in private)
    keys.check_advertisement(_advert(2, private[1]), round_id=6, identities=identities)
    keys.check_advertisement(_advert(3, private[2]), round_id=6, identities=identities)
    for advert in (_advert(2, private[0]), _advert(2, private[2]), _advert(2, None),
                   _advert(2, private[1], round_id=7)):
        with pytest.raises(SecAggError):
            keys.check_advertisement(advert, round_id=6, identities=identities)


def test_the_advertisement_payload_covers_every_key_and_the_graph_commitment() -> None:
    base = _advert(2, None)
    payload = keys.advertisement_payload(base, round_id=6)
    for field in ("cipher_pk", "mask_pk", "seed_commitment", "graph_commitment"):
        changed = AdvertiseKeys(**{**{f: getattr(base, f) for f in (
            "sender", "cipher_pk", "mask_pk", "seed_commitment", "graph_commitment")},
            field: bytes(32)})
        assert keys.advertisement_payload(changed, round_id=6) != payload
    other_sender = AdvertiseKeys(sender=3, cipher_pk=base.cipher_pk, mask_pk=base.mask_pk,
                                 seed_commitment=base.seed_commitment,
                                 graph_commitment=base.graph_commitment)
    assert keys.advertisement_payload(other_sender, round_id=6) != payload
    # the signature itself is not part of what is signed
    signed = AdvertiseKeys(sender=2, cipher_pk=base.cipher_pk, mask_pk=base.mask_pk,
                           seed_commitment=base.seed_commitment,
                           graph_commitment=base.graph_commitment, signature=b"x" * 64)
    assert keys.advertisement_payload(signed, round_id=6) == payload


# ------------------------------------------------------------------ messages
def test_wire_size_counts_bytes_memoryviews_and_4_bytes_per_integer() -> None:
    words = np.zeros(5, np.uint32)
    assert wire_size(MaskedInput(sender=1, data=memoryview(words))) == 4 + 20  # nbytes, not len
    assert wire_size(MaskedInput(sender=1, data=bytes(7))) == 4 + 7
    request = UnmaskRequest(recipient=1, survivors=(2, 3, 4), dropped=(5,),
                            signatures=(ConsistencySignature(sender=2, signature=bytes(64)),))
    assert wire_size(request) == 4 + 12 + 4 + (4 + 64)
    shares = UnmaskShares(sender=1, seed_shares=(OwnedShare(owner=2, share=bytes(36)),) * 2,
                          key_shares=())
    assert wire_size(shares) == 4 + 2 * (4 + 36)
    assert wire_size(SealedShare(sender=1, receiver=2, ciphertext=bytes(88))) == 96


@pytest.mark.parametrize("value", ["text", 1.5, None, [b"a"], SealedShare])
def test_wire_size_refuses_what_is_not_a_message_field(value: object) -> None:
    with pytest.raises(TypeError):
        wire_size(value)
