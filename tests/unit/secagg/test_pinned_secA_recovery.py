"""The server's reconstruction against the definition: each owner's secret comes back from any
t of its shares (the first t by holder id when there are more), owners with different holders
are rebuilt independently, and fewer than t shares (none at all included) are a SecAggError
naming the owner, never a made-up secret; a rebuilt seed or mask key that does not match what
its owner published is a SecAggError naming that owner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedcore.secagg import keys, recovery, shamir
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.messages import AdvertiseKeys

T = 3
HOLDERS = (1, 2, 4, 5, 7)


def _secret(i: int) -> bytes:
    return bytes((i * 37 + k) % 256 for k in range(32))


def _shares(secret: bytes, holders: tuple[int, ...] = HOLDERS, seed: int = 0) -> dict[int, bytes]:
    rng = np.random.default_rng(seed)
    rows = shamir.split_limbs(shamir.secret_to_limbs(secret), xs=holders, threshold=T,
                              random_bytes=lambda n: rng.bytes(n))
    return {x: shamir.encode_share(row) for x, row in zip(holders, rows, strict=True)}


def test_any_t_shares_rebuild_each_owners_secret() -> None:
    shares = {owner: _shares(_secret(owner), seed=owner) for owner in (3, 6)}
    for chosen in itertools.combinations(HOLDERS, T):
        picked = {owner: {x: by[x] for x in chosen} for owner, by in shares.items()}
        assert recovery.reconstruct_all(picked, threshold=T) == {3: _secret(3), 6: _secret(6)}


def test_more_than_t_shares_use_the_first_t_by_holder_id() -> None:
    shares = _shares(_secret(1))
    shares[7] = bytes(shamir.SHARE_BYTES)  # a bad share past the first t is never read
    assert recovery.reconstruct_all({9: shares}, threshold=T) == {9: _secret(1)}
    shares[1] = bytes(shamir.SHARE_BYTES)  # one among the first t is
    try:
        rebuilt = recovery.reconstruct_all({9: shares}, threshold=T)
    except SecAggError:  # limbs that encode no 32-byte secret
        rebuilt = {}
    assert rebuilt != {9: _secret(1)}


def test_owners_with_different_holders_are_rebuilt_independently() -> None:
    shares = {
        2: {x: s for x, s in _shares(_secret(2), seed=2).items() if x in (1, 2, 4)},
        8: {x: s for x, s in _shares(_secret(8), seed=8).items() if x in (4, 5, 7)},
        9: _shares(_secret(9), seed=9),
    }
    assert recovery.reconstruct_all(shares, threshold=T) == {
        2: _secret(2), 8: _secret(8), 9: _secret(9)}


@pytest.mark.parametrize("count", [0, 1, T - 1])
def test_fewer_than_t_shares_are_an_error_naming_the_owner(count: int) -> None:
    full = _shares(_secret(4), seed=4)
    short = dict(itertools.islice(full.items(), count))
    with pytest.raises(SecAggError, match="client 6"):
        recovery.reconstruct_all({4: full, 6: short}, threshold=T)


def test_an_empty_collection_rebuilds_nothing() -> None:
    assert recovery.reconstruct_all({}, threshold=T) == {}


def _advert(owner: int, seed: bytes, mask_key: bytes) -> AdvertiseKeys:
    private = keys.new_x25519(lambda n: mask_key)
    return AdvertiseKeys(sender=owner, cipher_pk=bytes(32), mask_pk=keys.public_bytes(private),
                         seed_commitment=keys.seed_commitment(seed, round_id=5, owner=owner))


def test_rebuilt_secrets_are_checked_against_what_each_owner_published() -> None:
    adverts = {c: _advert(c, _secret(c), _secret(10 + c)) for c in (1, 2)}
    recovery.check_seeds({1: _secret(1), 2: _secret(2)}, adverts, 5)
    recovery.check_mask_keys({1: _secret(11), 2: _secret(12)}, adverts)

    with pytest.raises(SecAggError, match="client 2"):
        recovery.check_seeds({1: _secret(1), 2: _secret(1)}, adverts, 5)
    with pytest.raises(SecAggError, match="client 1"):
        recovery.check_seeds({1: _secret(1)}, adverts, 6)  # committed for round 5
    with pytest.raises(SecAggError, match="client 2"):
        recovery.check_mask_keys({1: _secret(11), 2: _secret(11)}, adverts)
