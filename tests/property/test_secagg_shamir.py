"""Hypothesis: Shamir reconstructs from any t shares and not from fewer."""

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcore.secagg import shamir


@st.composite
def sharings(draw):
    n = draw(st.integers(1, 40))
    t = draw(st.integers(1, n))
    xs = draw(st.lists(st.integers(1, 2**31 - 2), min_size=n, max_size=n, unique=True))
    secret = draw(st.binary(min_size=32, max_size=32))
    randomness = draw(st.randoms(use_true_random=False))
    return xs, t, secret, randomness


@settings(max_examples=150, deadline=None)
@given(sharings(), st.data())
def test_any_t_shares_reconstruct(case, data):
    xs, t, secret, randomness = case
    shares = shamir.split_limbs(shamir.secret_to_limbs(secret),
                                xs=xs, threshold=t, random_bytes=randomness.randbytes)
    subset = data.draw(st.permutations(range(len(xs))))[:t]

    assert shamir.reconstruct([xs[i] for i in subset], shares[subset], threshold=t) == secret


@settings(max_examples=150, deadline=None)
@given(sharings(), st.data())
def test_fewer_than_t_shares_interpolate_to_something_else(case, data):
    xs, t, secret, _ = case
    if t < 2:
        return
    shares = shamir.split_limbs(shamir.secret_to_limbs(secret),
                                xs=xs, threshold=t, random_bytes=os.urandom)
    subset = data.draw(st.permutations(range(len(xs))))[: t - 1]
    guess = shamir.combine(shares[subset], shamir.lagrange_coefficients([xs[i] for i in subset]))

    # a degree t-1 polynomial's value at 0 is uniform given t-1 points; a match means chance 2**-31
    # per limb, so all nine limbs matching would be a broken sharing
    assert not np.array_equal(guess, shamir.secret_to_limbs(secret))
