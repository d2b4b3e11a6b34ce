"""Key derivation known answers, share sealing and signatures."""

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedcore.secagg import keys
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.messages import AdvertiseKeys

SHARED = bytes(range(32))
MASK_SEED_KAT = "b7026d3cd897432caee9f0d9cdde244bbaf899379ba0c9bb19b2d87701c53a49"
SHARE_KEY_KAT = "7bd8a281d7b3e327a432c0f62a9448fde8a548aa491e7ae2a1865e97f9ae110c"


def _counter_bytes(start: int):
    state = {"next": start}

    def draw(n: int) -> bytes:
        out = bytes((state["next"] + i) % 256 for i in range(n))
        state["next"] += n
        return out

    return draw


def test_mask_seed_known_answer():
    assert keys.derive_mask_seed(SHARED, round_id=7, a=3, b=5).hex() == MASK_SEED_KAT


def test_share_key_known_answer():
    assert keys.derive_share_key(SHARED, round_id=7, a=3, b=5).hex() == SHARE_KEY_KAT


def test_mask_seed_is_hkdf_sha256_with_documented_info():
    info = b"fedcore-secagg-v1/mask-seed" + (7).to_bytes(8, "big") + (3).to_bytes(4, "big")
    info += (5).to_bytes(4, "big")
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SHARED)

    assert keys.derive_mask_seed(SHARED, round_id=7, a=3, b=5) == expected


def test_mask_seed_is_symmetric_in_the_pair():
    forward = keys.derive_mask_seed(SHARED, round_id=1, a=2, b=9)

    assert forward == keys.derive_mask_seed(SHARED, round_id=1, a=9, b=2)


def test_agreement_is_symmetric():
    alice, bob = keys.new_x25519(_counter_bytes(0)), keys.new_x25519(_counter_bytes(100))

    assert keys.agree(alice, keys.public_bytes(bob)) == keys.agree(bob, keys.public_bytes(alice))


def test_low_order_peer_key_is_refused():
    with pytest.raises(SecAggError):
        keys.agree(keys.new_x25519(_counter_bytes(0)), bytes(32))


GRAPH = b"g" * 32


def test_share_roundtrip():
    key = bytes(32)
    sealed = keys.encrypt_share(key, b"share", round_id=1, graph_seed=GRAPH, sender=2, receiver=3)

    assert keys.decrypt_share(
        key, sealed, round_id=1, graph_seed=GRAPH, sender=2, receiver=3
    ) == b"share"


@pytest.mark.parametrize(
    ("round_id", "graph_seed", "sender", "receiver"),
    [(2, GRAPH, 2, 3), (1, b"h" * 32, 2, 3), (1, GRAPH, 4, 3), (1, GRAPH, 2, 4)],
)
def test_share_is_bound_to_round_graph_sender_and_receiver(round_id, graph_seed, sender, receiver):
    sealed = keys.encrypt_share(
        bytes(32), b"share", round_id=1, graph_seed=GRAPH, sender=2, receiver=3
    )

    with pytest.raises(SecAggError):
        keys.decrypt_share(bytes(32), sealed, round_id=round_id, graph_seed=graph_seed,
                           sender=sender, receiver=receiver)


def test_graph_seed_depends_on_every_nonce_and_the_round():
    nonces = ((1, b"a" * 32), (2, b"b" * 32), (3, b"c" * 32))
    seed = keys.graph_seed(round_id=5, nonces=nonces)

    assert keys.graph_seed(round_id=5, nonces=nonces[::-1]) == seed  # order of arrival is moot
    assert keys.graph_seed(round_id=6, nonces=nonces) != seed
    assert keys.graph_seed(round_id=5, nonces=nonces[:2]) != seed
    assert keys.graph_seed(round_id=5, nonces=((1, b"a" * 32), (2, b"b" * 32),
                                                (3, b"d" * 32))) != seed


def test_graph_commitment_binds_nonce_round_and_owner():
    c = keys.graph_commitment(b"n" * 32, round_id=1, owner=2)

    assert keys.graph_commitment(b"n" * 32, round_id=1, owner=2) == c
    assert c not in {keys.graph_commitment(b"m" * 32, round_id=1, owner=2),
                     keys.graph_commitment(b"n" * 32, round_id=2, owner=2),
                     keys.graph_commitment(b"n" * 32, round_id=1, owner=3)}


def _advert(sender: int = 1) -> AdvertiseKeys:
    return AdvertiseKeys(
        sender=sender, cipher_pk=bytes(32), mask_pk=b"m" * 32, seed_commitment=b"c" * 32
    )


def test_signed_advertisement_verifies():
    identity = Ed25519PrivateKey.from_private_bytes(bytes(32))
    advert = _advert()
    signature = keys.sign(identity, keys.advertisement_payload(advert, round_id=4))
    identities = (identity.public_key().public_bytes_raw(),)

    keys.check_advertisement(
        replace(advert, signature=signature), round_id=4, identities=identities
    )


def test_advertisement_signed_for_another_round_is_refused():
    identity = Ed25519PrivateKey.from_private_bytes(bytes(32))
    signature = keys.sign(identity, keys.advertisement_payload(_advert(), round_id=4))
    advert = replace(_advert(), signature=signature)

    with pytest.raises(SecAggError):
        keys.check_advertisement(
            advert, round_id=5, identities=(identity.public_key().public_bytes_raw(),)
        )


def test_seed_commitment_binds_owner():
    seed = bytes(32)

    assert keys.seed_commitment(seed, round_id=1, owner=1) != keys.seed_commitment(
        seed, round_id=1, owner=2
    )


def test_malformed_peer_key_is_refused():
    with pytest.raises(SecAggError, match="bad peer"):
        keys.peer_key(bytes(31))


def test_agreement_with_a_parsed_key_is_the_same():
    alice, bob = keys.new_x25519(_counter_bytes(0)), keys.new_x25519(_counter_bytes(100))
    raw = keys.public_bytes(bob)

    assert keys.agree(alice, keys.peer_key(raw)) == keys.agree(alice, raw)


def test_low_order_parsed_peer_key_is_refused():
    with pytest.raises(SecAggError):
        keys.agree(keys.new_x25519(_counter_bytes(0)), keys.peer_key(bytes(32)))


@pytest.mark.parametrize("start", [0, 17, 200])
def test_both_derivations_are_hkdf_sha256(start):
    shared = _counter_bytes(start)(32)
    for derive, label in [
        (keys.derive_mask_seed, b"mask-seed"),
        (keys.derive_share_key, b"share-key"),
    ]:
        info = b"fedcore-secagg-v1/" + label + (2**40 + start).to_bytes(8, "big")
        info += (4).to_bytes(4, "big") + (start + 9).to_bytes(4, "big")
        expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)

        assert derive(shared, round_id=2**40 + start, a=start + 9, b=4) == expected.derive(shared)
