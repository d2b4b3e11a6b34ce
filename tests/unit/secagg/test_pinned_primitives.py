"""Secure aggregation's building blocks at their edges: the neighbour graph's client range,
key sizes, packing's padding bits, the quantiser's refusals and exact ends, Shamir's share
points, thresholds and share decoding, the recovery checks, and a round spec's bounds."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.secagg import keys, shamir
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import AdvertiseKeys
from fedcore.secagg.packing import pack, packed_size, unpack, word_dtype
from fedcore.secagg.quantize import Quantizer
from fedcore.secagg.recovery import check_mask_keys, check_seeds, reconstruct_all

CONFIG = SecAggConfig(threshold=2, max_clients=10, clip=1.0)


def _spec(n: int = 5, **config: object) -> RoundSpec:
    settings: dict[str, object] = {"threshold": 2, "max_clients": 10, "clip": 1.0, **config}
    return RoundSpec(config=SecAggConfig(**settings), round_id=3, num_clients=n, dim=4,  # type: ignore[arg-type]
                     graph_seed=bytes(range(32)))


# ------------------------------------------------------------------ graph
@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_neighbours_are_defined_for_clients_1_to_n_only(mode: Mode) -> None:
    graph = Graph(_spec(6, mode=mode, degree=2))
    assert 1 not in graph.neighbours(1) and 6 not in graph.neighbours(6)
    assert graph.neighbours(1) <= set(range(2, 7)) and graph.neighbours(6) <= set(range(1, 6))
    for bad in (0, 7):
        with pytest.raises(ValueError):
            graph.neighbours(bad)


def test_a_sparse_graph_is_symmetric_with_the_even_degree() -> None:
    graph = Graph(_spec(9, mode=Mode.SECAGG_PLUS, degree=3))  # rounded up to 4
    assert not graph.complete
    for c in range(1, 10):
        assert len(graph.neighbours(c)) == 4
        for d in graph.neighbours(c):
            assert c in graph.neighbours(d)
    full = Graph(_spec(9))
    assert full.complete and full.neighbours(4) == set(range(1, 10)) - {4}


# ------------------------------------------------------------------ keys
def _advert(**fields: bytes) -> AdvertiseKeys:
    base = {"cipher_pk": bytes(32), "mask_pk": bytes(32), "seed_commitment": bytes(32)}
    return AdvertiseKeys(sender=1, **{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["cipher_pk", "mask_pk", "seed_commitment"])
@pytest.mark.parametrize("size", [31, 33])
def test_each_public_key_must_be_32_bytes(field: str, size: int) -> None:
    with pytest.raises(SecAggError):
        keys.check_advertisement(_advert(**{field: bytes(size)}), round_id=1, identities=None)
    keys.check_advertisement(_advert(), round_id=1, identities=None)  # 32 each: fine


# ------------------------------------------------------------------ packing
@pytest.mark.parametrize("bit_width", [1, 7, 12, 20, 33, 63])
def test_unpacking_refuses_set_padding_bits_and_round_trips(bit_width: int) -> None:
    dim = 3
    words = np.array([0, 1, 2**bit_width - 1], dtype=np.uint64).astype(word_dtype(bit_width))
    data = pack(words, bit_width)
    assert len(data) == packed_size(dim, bit_width)
    np.testing.assert_array_equal(unpack(data, bit_width, dim), words)
    if (dim * bit_width) % 8:
        spoiled = data[:-1] + bytes([data[-1] | 0x80])  # the top bit is padding
        with pytest.raises(SecAggError):
            unpack(spoiled, bit_width, dim)
    with pytest.raises(SecAggError):
        unpack(data + b"\0", bit_width, dim)


def test_word_dtype_switches_above_32_bits() -> None:
    assert word_dtype(32) == np.uint32 and word_dtype(33) == np.uint64
    assert packed_size(1, 1) == 1 and packed_size(8, 1) == 1 and packed_size(9, 1) == 2


# ------------------------------------------------------------------ quantiser
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_quantiser_refuses_non_finite_values(bad: float) -> None:
    q = Quantizer.from_config(CONFIG)
    with pytest.raises(ValueError):
        q.quantize(np.array([0.0, bad]), np.random.default_rng(0))


def test_the_quantisers_ends_are_exact_and_clipped() -> None:
    q = Quantizer.from_config(CONFIG)
    words = q.quantize(np.array([-1.0, 1.0, -5.0, 5.0]), np.random.default_rng(0))
    np.testing.assert_array_equal(words, [0, q.levels, 0, q.levels])
    assert words.dtype == np.uint32
    total = words.astype(np.uint64).sum(keepdims=True)  # one coordinate, four clients
    np.testing.assert_allclose(q.dequantize_sum(total, 4), [0.0], atol=1e-9)
    np.testing.assert_allclose(q.dequantize_sum(np.array([q.levels], np.uint64), 1), [1.0])


# ------------------------------------------------------------------ shamir
def _limbs(secret: bytes) -> np.ndarray:
    return shamir.secret_to_limbs(secret)


@pytest.mark.parametrize("size", [31, 33, 0])
def test_a_secret_is_exactly_32_bytes(size: int) -> None:
    with pytest.raises(ValueError):
        shamir.secret_to_limbs(bytes(size))
    assert shamir.limbs_to_secret(_limbs(b"\xff" * 32)) == b"\xff" * 32


@pytest.mark.parametrize("xs", [[0, 1, 2], [1, 2, shamir.PRIME], [1, 1, 2]])
def test_share_points_must_be_distinct_and_in_range(xs: list[int]) -> None:
    with pytest.raises(ValueError):
        shamir.split_limbs(_limbs(bytes(32)), xs=xs, threshold=2, random_bytes=os.urandom)


def test_the_largest_share_point_is_accepted() -> None:
    secret = bytes(range(32))
    xs = [1, shamir.PRIME - 1]
    shares = shamir.split_limbs(_limbs(secret), xs=xs, threshold=2, random_bytes=os.urandom)
    assert shamir.reconstruct(xs, shares, threshold=2) == secret


@pytest.mark.parametrize("threshold", [0, 4])
def test_the_threshold_is_1_to_the_number_of_points(threshold: int) -> None:
    with pytest.raises(ValueError):
        shamir.split_limbs(_limbs(bytes(32)), xs=[1, 2, 3], threshold=threshold,
                           random_bytes=os.urandom)
    for t in (1, 3):
        shares = shamir.split_limbs(_limbs(bytes(32)), xs=[1, 2, 3], threshold=t,
                                    random_bytes=os.urandom)
        assert shares.shape == (3, shamir.LIMBS)


def test_threshold_minus_one_shares_cannot_reconstruct_and_extra_shares_are_checked() -> None:
    secret = os.urandom(32)
    xs = [1, 2, 3, 4]
    shares = shamir.split_limbs(_limbs(secret), xs=xs, threshold=3, random_bytes=os.urandom)
    with pytest.raises(SecAggError):
        shamir.reconstruct(xs[:2], shares[:2], threshold=3)
    assert shamir.reconstruct(xs[:3], shares[:3], threshold=3) == secret
    assert shamir.reconstruct(xs, shares, threshold=3) == secret
    bad = shares.copy()
    bad[3, 0] = (int(bad[3, 0]) + 1) % shamir.PRIME
    with pytest.raises(SecAggError):
        shamir.reconstruct(xs, bad, threshold=3)


def test_a_share_decodes_only_at_its_size_and_below_the_prime() -> None:
    row = shamir.split_limbs(_limbs(bytes(32)), xs=[1], threshold=1, random_bytes=os.urandom)[0]
    blob = shamir.encode_share(row)
    np.testing.assert_array_equal(shamir.decode_share(blob), row)
    for wrong in (blob[:-1], blob + b"\0"):
        with pytest.raises(SecAggError):
            shamir.decode_share(wrong)
    top = np.full(shamir.LIMBS, shamir.PRIME - 1, np.uint64)
    np.testing.assert_array_equal(shamir.decode_share(shamir.encode_share(top)), top)
    with pytest.raises(SecAggError):
        shamir.decode_share(shamir.encode_share(np.full(shamir.LIMBS, shamir.PRIME, np.uint64)))


# ------------------------------------------------------------------ recovery
def _shares_of(secret: bytes, holders: list[int], threshold: int) -> dict[int, bytes]:
    rows = shamir.split_limbs(_limbs(secret), xs=holders, threshold=threshold,
                              random_bytes=os.urandom)
    return {x: shamir.encode_share(r) for x, r in zip(holders, rows, strict=True)}


def test_reconstruct_all_needs_threshold_shares_per_owner() -> None:
    a, b = os.urandom(32), os.urandom(32)
    shares = {1: _shares_of(a, [2, 3, 4], 2), 5: _shares_of(b, [2, 3], 2)}
    assert reconstruct_all(shares, threshold=2) == {1: a, 5: b}
    short = {1: dict(list(shares[1].items())[:1])}
    with pytest.raises(SecAggError):
        reconstruct_all(short, threshold=2)


def test_recovered_keys_and_seeds_must_match_what_was_advertised() -> None:
    mask = X25519PrivateKey.generate()
    raw = keys.private_bytes(mask)
    seed = os.urandom(32)
    advert = _advert(mask_pk=keys.public_bytes(mask),
                     seed_commitment=keys.seed_commitment(seed, round_id=7, owner=1))
    check_mask_keys({1: raw}, {1: advert})
    check_seeds({1: seed}, {1: advert}, round_id=7)
    with pytest.raises(SecAggError):
        check_mask_keys({1: keys.private_bytes(X25519PrivateKey.generate())}, {1: advert})
    with pytest.raises(SecAggError):
        check_seeds({1: seed}, {1: advert}, round_id=8)
    with pytest.raises(SecAggError):
        check_seeds({1: os.urandom(32)}, {1: advert}, round_id=7)


# ------------------------------------------------------------------ round spec
def test_a_round_spec_bounds_its_clients_threshold_and_dim() -> None:
    config = SecAggConfig(threshold=3, max_clients=5, clip=1.0)
    assert RoundSpec(config=config, round_id=0, num_clients=5, dim=1).clients == range(1, 6)
    assert RoundSpec(config=config, round_id=0, num_clients=3, dim=1).num_clients == 3
    for fields in ({"num_clients": 6}, {"num_clients": 2}, {"num_clients": 0}, {"dim": 0},
                   {"graph_seed": bytes(31)}, {"identities": (bytes(32),) * 4},
                   {"identities": (bytes(32),) * 4 + (bytes(31),)}):
        settings: dict[str, object] = {"config": config, "round_id": 0, "num_clients": 5,
                                       "dim": 1, **fields}
        with pytest.raises(ValueError):
            RoundSpec(**settings)  # type: ignore[arg-type]
    signed = RoundSpec(config=config, round_id=0, num_clients=5, dim=1,
                       identities=(bytes(32),) * 5)
    assert signed.signed and not signed.committed_graph


def test_a_config_bounds_its_bit_width_clip_and_threshold() -> None:
    assert SecAggConfig(threshold=1, max_clients=1, clip=1.0, bit_width=1).levels == 1
    assert SecAggConfig(threshold=1, max_clients=1, clip=1.0, bit_width=64).bit_width == 64
    for fields in ({"bit_width": 0}, {"bit_width": 65}, {"threshold": 0}, {"max_clients": 0},
                   {"clip": 0.0}, {"clip": float("inf")}, {"clip": float("nan")},
                   {"bit_width": 1, "max_clients": 2}):
        settings: dict[str, object] = {"threshold": 1, "max_clients": 1, "clip": 1.0, **fields}
        with pytest.raises(ValueError):
            SecAggConfig(**settings)  # type: ignore[arg-type]
    plus = SecAggConfig(threshold=4, max_clients=10, clip=1.0, mode=Mode.SECAGG_PLUS, degree=3)
    assert plus.even_degree == 4 and not plus.complete_for(6) and plus.complete_for(5)
    with pytest.raises(ValueError):
        SecAggConfig(threshold=6, max_clients=10, clip=1.0, mode=Mode.SECAGG_PLUS, degree=3)
