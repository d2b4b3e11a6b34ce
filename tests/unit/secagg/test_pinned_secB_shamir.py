"""Shamir sharing against its definition: every share is a point of one polynomial of degree
t - 1 over GF(2**31 - 1) whose value at 0 is the secret's limb, checked with an independent
pure-Python interpolation; any t shares reconstruct, t - 1 do not; Lagrange coefficients
evaluate at any point; limbs, field draws and share words at their exact bounds."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from fedcore.secagg import shamir
from fedcore.secagg.errors import SecAggError

P = 2**31 - 1
SECRET = bytes(range(7, 39))


def _source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


def _split(secret: bytes, xs: list[int], threshold: int, seed: int = 0) -> np.ndarray:
    return shamir.split_limbs(shamir.secret_to_limbs(secret), xs=xs, threshold=threshold,
                              random_bytes=_source(seed))


def _interpolate(points: list[tuple[int, int]], at: int) -> int:
    """Lagrange interpolation in Python integers, independent of the module."""
    total = 0
    for j, (x_j, y_j) in enumerate(points):
        num, den = 1, 1
        for m, (x_m, _) in enumerate(points):
            if m != j:
                num = num * (at - x_m) % P
                den = den * (x_j - x_m) % P
        total = (total + y_j * num * pow(den, P - 2, P)) % P
    return total


def test_the_constants_are_the_documented_nine_30_bit_limbs() -> None:
    assert (shamir.PRIME, shamir.LIMB_BITS, shamir.LIMBS, shamir.SHARE_BYTES) == (P, 30, 9, 36)


@pytest.mark.parametrize(("threshold", "xs"), [
    (1, [1, 2, 3]),
    (3, [1, 2, 3, 4, 5, 6]),
    (5, [P - 1, P - 2, P - 3, 2**30, 2**30 + 1, 12345]),  # points near the prime: folding
    (8, [P - 1 - i for i in range(8)]),
])
def test_shares_lie_on_one_polynomial_of_degree_t_minus_1_through_the_secret(
    threshold: int, xs: list[int]
) -> None:
    limbs = shamir.secret_to_limbs(SECRET).tolist()
    shares = _split(SECRET, xs, threshold, seed=threshold)

    assert shares.shape == (len(xs), shamir.LIMBS) and int(shares.max()) < P
    for limb in range(shamir.LIMBS):
        points = [(x, int(shares[i, limb])) for i, x in enumerate(xs)]
        base = points[:threshold]
        assert _interpolate(base, 0) == limbs[limb]
        for x, y in points[threshold:]:  # every further share is on the same polynomial
            assert _interpolate(base, x) == y
        if threshold > 1:  # and t - 1 of them miss the secret: the degree is t - 1, not less
            assert _interpolate(base[1:], 0) != limbs[limb]


def test_any_t_shares_reconstruct_and_no_t_minus_1_do() -> None:
    xs = [3, 5, 8, 13, 21, 34]
    shares = _split(SECRET, xs, 3, seed=5)
    for subset in itertools.combinations(range(len(xs)), 3):
        chosen = list(subset)
        assert shamir.reconstruct([xs[i] for i in chosen], shares[chosen], threshold=3) == SECRET
        # the coordinator's own interpolation of t - 1 of them gives another value, limb by limb
        fewer = chosen[:2]
        wrong = shamir.combine(shares[fewer], shamir.lagrange_coefficients([xs[i] for i in fewer]))
        assert (wrong != shamir.secret_to_limbs(SECRET)).all()
    for pair in itertools.combinations(range(len(xs)), 2):
        with pytest.raises(SecAggError):
            shamir.reconstruct([xs[i] for i in pair], shares[list(pair)], threshold=3)


@pytest.mark.parametrize("at", [0, 1, 4, 100, P - 1, -1, P + 4])
def test_lagrange_coefficients_evaluate_a_polynomial_at_any_point(at: int) -> None:
    def f(x: int) -> int:
        return (3 + 5 * x + 7 * x * x + (P - 2) * x**3) % P

    xs = [2, 9, 11, P - 5]
    values = np.array([[f(x)] for x in xs], np.uint64)

    coefficients = shamir.lagrange_coefficients(xs, at=at)

    assert coefficients.dtype == np.uint64 and int(coefficients.max()) < P
    assert shamir.combine(values, coefficients).tolist() == [f(at % P)]


def test_combine_works_on_stacks_of_share_sets() -> None:
    xs = [1, 2, 3]
    a, b = _split(SECRET, xs, 3, seed=1), _split(bytes(32), xs, 3, seed=2)
    stacked = shamir.combine(np.stack([a, b]), shamir.lagrange_coefficients(xs))
    assert shamir.limbs_to_secret(stacked[0]) == SECRET
    assert shamir.limbs_to_secret(stacked[1]) == bytes(32)


def test_an_extra_share_is_checked_against_the_polynomial_of_the_first_t() -> None:
    xs = [1, 2, 3, 4, 5]
    shares = _split(SECRET, xs, 2, seed=3)
    assert shamir.reconstruct(xs, shares, threshold=2) == SECRET
    for row in (2, 4):  # the first extra share, and the last
        for limb in (0, shamir.LIMBS - 1):
            bad = shares.copy()
            bad[row, limb] = (int(bad[row, limb]) + 1) % P
            with pytest.raises(SecAggError, match="inconsistent"):
                shamir.reconstruct(xs, bad, threshold=2)
    # the t used are the first t: a corrupted one among them makes the others inconsistent
    bad = shares.copy()
    bad[0, 3] = (int(bad[0, 3]) + 1) % P
    with pytest.raises(SecAggError):
        shamir.reconstruct(xs, bad, threshold=2)


def test_limbs_hold_30_bits_and_the_top_one_16() -> None:
    value = int.from_bytes(SECRET, "little")
    limbs = shamir.secret_to_limbs(SECRET)
    assert limbs.tolist() == [(value >> (30 * i)) & (2**30 - 1) for i in range(9)]
    assert shamir.secret_to_limbs(b"\xff" * 32).tolist() == [2**30 - 1] * 8 + [2**16 - 1]

    for index, bound in [(0, 2**30), (4, 2**30), (7, 2**30), (8, 2**16)]:
        ok = np.zeros(9, np.uint64)
        ok[index] = bound - 1
        assert shamir.limbs_to_secret(ok) == ((bound - 1) << (30 * index)).to_bytes(32, "little")
        bad = ok.copy()
        bad[index] = bound
        with pytest.raises(SecAggError):
            shamir.limbs_to_secret(bad)


def test_random_elements_are_31_bit_words_below_the_prime() -> None:
    words = [0, 1, 2**31 - 2, 2**31, 2**32 - 2, 5]  # the top bit is dropped
    blob = b"".join(w.to_bytes(4, "little") for w in words)
    assert shamir.random_elements(lambda n: blob[:n], 6).tolist() == [0, 1, P - 1, 0, P - 1, 5]

    draws = shamir.random_elements(_source(4), 20_000)
    assert int(draws.max()) < P
    assert abs(float(draws.mean()) / P - 0.5) < 0.01  # uniform over the field, not a corner


def test_a_share_is_little_endian_32_bit_words() -> None:
    row = np.array([1, 2**8, 2**16, 2**24, P - 1, 0, 0, 0, 7], np.uint64)
    blob = shamir.encode_share(row)
    assert blob[:16] == bytes([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    assert blob[16:20] == b"\xfe\xff\xff\x7f" and len(blob) == 36
    np.testing.assert_array_equal(shamir.decode_shares([blob, blob]), [row, row])
    with pytest.raises(SecAggError):
        shamir.decode_shares([blob, blob[:-4]])
    with pytest.raises(SecAggError):  # a word equal to the prime is not a field element
        shamir.decode_shares([blob[:-4] + P.to_bytes(4, "little")])
    assert shamir.decode_share(blob[:8], limbs=2).tolist() == [1, 2**8]


def _scripted(blob: bytes) -> Callable[[int], bytes]:
    offset = 0

    def take(n: int) -> bytes:
        nonlocal offset
        offset += n
        assert offset <= len(blob), "drew more bytes than scripted"
        return blob[offset - n : offset]

    return take


@pytest.mark.parametrize(("threshold", "secrets"), [(2, 1), (3, 1), (4, 2)])
def test_coefficient_j_of_limb_l_is_element_j_minus_1_times_limbs_plus_l(
    threshold: int, secrets: int
) -> None:
    """The layout the conformance vectors document, so other implementations share alike."""
    blob = np.random.default_rng(threshold).bytes(4 * (threshold - 1) * 9 * secrets)
    elements = [int.from_bytes(blob[4 * i : 4 * i + 4], "little") & P
                for i in range(len(blob) // 4)]
    secret_list = [bytes(range(s, s + 32)) for s in range(secrets)]
    limbs = np.concatenate([shamir.secret_to_limbs(s) for s in secret_list])
    xs = [1, 4, 7, 2**30 + 3]

    rows = shamir.split_limbs(limbs, xs=xs, threshold=threshold, random_bytes=_scripted(blob))

    count = limbs.size
    for i, x in enumerate(xs):
        for limb in range(count):
            expected = int(limbs[limb]) + sum(elements[(j - 1) * count + limb] * pow(x, j, P)
                                              for j in range(1, threshold))
            assert int(rows[i, limb]) == expected % P


def test_draws_equal_to_the_prime_are_redrawn_in_order_from_fresh_bytes() -> None:
    def word(value: int) -> bytes:
        return value.to_bytes(4, "little")

    blob = (word(10) + word(P) + word(11) + word(2**32 - 1)  # indices 1 and 3 are p
            + word(P) + word(12)                             # index 1 again p, index 3 = 12
            + word(13))                                      # index 1 = 13
    assert shamir.random_elements(_scripted(blob), 4).tolist() == [10, 13, 11, 12]


@pytest.mark.parametrize("count", [8, 10])
def test_a_limb_vector_of_another_length_is_not_a_secret(count: int) -> None:
    with pytest.raises((ValueError, SecAggError)):
        shamir.limbs_to_secret(np.zeros(count, np.uint64))


def test_points_and_shares_must_pair_up() -> None:
    xs = [1, 2, 3, 4]
    shares = _split(SECRET, xs, 2, seed=8)
    with pytest.raises((ValueError, SecAggError)):
        shamir.reconstruct(xs + [5], shares, threshold=2)  # an extra point without a share
