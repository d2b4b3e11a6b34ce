"""Shamir sharing over GF(2**31 - 1)."""

import os

import numpy as np
import pytest

from fedcore.secagg import shamir
from fedcore.secagg.errors import SecAggError

SECRET = bytes(range(100, 132))
XS = list(range(1, 11))


def _shares(threshold: int = 4):
    return shamir.split_limbs(shamir.secret_to_limbs(SECRET),
                              xs=XS, threshold=threshold, random_bytes=os.urandom)


def test_threshold_shares_reconstruct():
    shares = _shares()

    assert shamir.reconstruct(XS[3:7], shares[3:7], threshold=4) == SECRET


def test_shares_in_any_order_reconstruct():
    shares = _shares()
    order = [9, 0, 5, 2]

    assert shamir.reconstruct([XS[i] for i in order], shares[order], threshold=4) == SECRET


def test_fewer_than_threshold_is_refused():
    shares = _shares()

    with pytest.raises(SecAggError, match="cannot reconstruct"):
        shamir.reconstruct(XS[:3], shares[:3], threshold=4)


def test_interpolating_fewer_than_threshold_gives_another_value():
    shares = _shares()
    wrong = shamir.combine(shares[:3], shamir.lagrange_coefficients(XS[:3]))

    assert not np.array_equal(wrong, shamir.secret_to_limbs(SECRET))


def test_corrupted_extra_share_is_detected():
    shares = _shares().copy()
    shares[4, 0] = (shares[4, 0] + 1) % shamir.PRIME

    with pytest.raises(SecAggError, match="inconsistent"):
        shamir.reconstruct(XS[:5], shares[:5], threshold=4)


def test_corruption_that_leaves_the_secret_range_is_detected():
    limbs = shamir.secret_to_limbs(SECRET)
    limbs[-1] = 2**20  # the top limb holds 16 bits

    with pytest.raises(SecAggError, match="corrupted"):
        shamir.limbs_to_secret(limbs)


def test_limbs_roundtrip():
    assert shamir.limbs_to_secret(shamir.secret_to_limbs(SECRET)) == SECRET


def test_encoded_share_roundtrip():
    row = _shares()[0]

    assert np.array_equal(shamir.decode_share(shamir.encode_share(row)), row)


def test_decode_refuses_non_field_words():
    with pytest.raises(SecAggError, match="field element"):
        shamir.decode_share(b"\xff" * shamir.SHARE_BYTES)


def test_decode_refuses_wrong_length():
    with pytest.raises(SecAggError):
        shamir.decode_share(b"\x00" * (shamir.SHARE_BYTES - 1))


def test_points_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        shamir.split_limbs(shamir.secret_to_limbs(SECRET),
                           xs=[1, 1, 2], threshold=2, random_bytes=os.urandom)


def test_rejected_draws_are_redrawn():
    draws = iter([b"\xff" * 40, b"\x07\x00\x00\x00" * 10])

    values = shamir.random_elements(lambda n: next(draws), 10)

    assert values.tolist() == [7] * 10


def test_large_sharing_reconstructs():
    xs = list(range(1, 1001))
    shares = shamir.split_limbs(shamir.secret_to_limbs(SECRET),
                                xs=xs, threshold=500, random_bytes=os.urandom)

    assert shamir.reconstruct(xs[500:], shares[500:], threshold=500) == SECRET
