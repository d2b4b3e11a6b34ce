"""Shamir secret sharing of 32-byte secrets over the prime field GF(2**31 - 1).

A secret is split into nine 30-bit limbs, each shared with its own random polynomial of
degree t - 1, so any t shares determine it and any t - 1 shares are independent of it
(information-theoretically, for every limb). Arithmetic is vectorised over limbs and
points in uint64: a product of two field elements is below 2**62.

Detection: `reconstruct` given more than t shares checks that all lie on one polynomial,
and a reconstruction whose limbs do not encode 32 bytes is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedcore.secagg.errors import SecAggError
from fedcore.secagg.keys import KeySource

PRIME = 2**31 - 1
LIMB_BITS = 30
SECRET_BYTES = 32
LIMBS = -(-SECRET_BYTES * 8 // LIMB_BITS)  # 9
SHARE_BYTES = 4 * LIMBS
Field = npt.NDArray[np.uint64]
_P = np.uint64(PRIME)
_SHIFT = np.uint64(31)
_TOP_BITS = SECRET_BYTES * 8 - LIMB_BITS * (LIMBS - 1)


def secret_to_limbs(secret: bytes) -> Field:
    """Split 32 bytes into 30-bit limbs, least significant first."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret has {SECRET_BYTES} bytes, got {len(secret)}")
    value = int.from_bytes(secret, "little")
    mask = (1 << LIMB_BITS) - 1
    return np.array([(value >> (LIMB_BITS * i)) & mask for i in range(LIMBS)], dtype=np.uint64)


def limbs_to_secret(limbs: Field) -> bytes:
    """Inverse of `secret_to_limbs`.

    Raises:
        SecAggError: when the limbs cannot come from a 32-byte secret (corrupted shares).
    """
    bounds = [LIMB_BITS] * (LIMBS - 1) + [_TOP_BITS]
    value = 0
    for i, (limb, bits) in enumerate(zip(limbs.tolist(), bounds, strict=True)):
        if limb >> bits:
            raise SecAggError("reconstructed value is not a secret: shares are corrupted")
        value |= limb << (LIMB_BITS * i)
    return value.to_bytes(SECRET_BYTES, "little")


def random_elements(random_bytes: KeySource, count: int) -> Field:
    """`count` uniform field elements (rejection sampling from 31-bit words)."""
    out = np.frombuffer(random_bytes(4 * count), dtype="<u4").astype(np.uint64) & _P
    bad = np.flatnonzero(out == _P)
    while bad.size:
        redraw = np.frombuffer(random_bytes(4 * bad.size), dtype="<u4").astype(np.uint64) & _P
        out[bad] = redraw
        bad = bad[redraw == _P]
    return out


def _fold(values: Field) -> None:
    """Reduce values below 2**63 to [0, PRIME] in place (Mersenne folding, twice)."""
    for _ in range(2):
        high = values >> _SHIFT
        np.bitwise_and(values, _P, out=values)
        np.add(values, high, out=values)


def _check_points(xs: Sequence[int]) -> Field:
    points = np.asarray(xs, dtype=np.uint64)
    if points.size and (int(points.min()) < 1 or int(points.max()) >= PRIME):
        raise ValueError("share points must be in [1, 2**31 - 1)")
    if np.unique(points).size != points.size:
        raise ValueError("share points must be distinct")
    return points


def split_limbs(
    limbs: Field, *, xs: Sequence[int], threshold: int, random_bytes: KeySource
) -> Field:
    """Share each limb with a fresh polynomial; row i of the result is the share for xs[i]."""
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}], got {threshold}")
    points = _check_points(xs)[None, :]
    coeffs = random_elements(random_bytes, (threshold - 1) * limbs.size)
    coeffs = coeffs.reshape(threshold - 1, limbs.size, 1)
    acc = np.zeros((limbs.size, points.size), dtype=np.uint64)  # limb-major: rows are long
    for row in coeffs[::-1]:
        np.multiply(acc, points, out=acc)
        np.add(acc, row, out=acc)
        _fold(acc)
    np.multiply(acc, points, out=acc)
    np.add(acc, limbs[:, None], out=acc)
    return np.ascontiguousarray((acc % _P).T)


def _inverse(values: Field) -> Field:
    result = np.ones_like(values)
    base = values % _P
    exponent = PRIME - 2
    while exponent:
        if exponent & 1:
            result = result * base % _P
        base = base * base % _P
        exponent >>= 1
    return result


def lagrange_coefficients(xs: Sequence[int], at: int = 0) -> Field:
    """Coefficients c with f(at) = sum c[j] * f(xs[j]) for every polynomial of degree < len(xs)."""
    points = _check_points(xs)
    target = np.uint64(at % PRIME)
    num = np.ones(points.size, dtype=np.uint64)
    den = np.ones(points.size, dtype=np.uint64)
    for m, x_m in enumerate(points):
        num_factor = (target + _P - x_m) % _P
        den_factor = (points + _P - x_m) % _P
        num_factor_vec = np.full(points.size, num_factor, dtype=np.uint64)
        num_factor_vec[m] = 1
        den_factor[m] = 1
        num = num * num_factor_vec % _P
        den = den * den_factor % _P
    return num * _inverse(den) % _P


def combine(shares: Field, coefficients: Field) -> Field:
    """Apply Lagrange coefficients: shares (..., t, limbs) -> values (..., limbs)."""
    weighted = shares * coefficients[:, None] % _P
    values: Field = weighted.sum(axis=-2) % _P
    return values


def reconstruct(xs: Sequence[int], shares: Field, *, threshold: int) -> bytes:
    """Recover a 32-byte secret from shares (rows) at the points `xs`.

    Raises:
        SecAggError: with fewer than `threshold` shares, or when they are inconsistent.
    """
    if len(xs) < threshold:
        raise SecAggError(f"{len(xs)} shares cannot reconstruct a threshold-{threshold} secret")
    base_xs, base = list(xs[:threshold]), shares[:threshold]
    for x_extra, row in zip(xs[threshold:], shares[threshold:], strict=True):
        predicted = combine(base, lagrange_coefficients(base_xs, at=x_extra))
        if not np.array_equal(predicted, row):
            raise SecAggError(f"share at point {x_extra} is inconsistent with the others")
    return limbs_to_secret(combine(base, lagrange_coefficients(base_xs)))


def encode_share(row: Field) -> bytes:
    """A share row as little-endian uint32 words."""
    return row.astype("<u4").tobytes()


def decode_share(data: bytes, limbs: int = LIMBS) -> Field:
    """Inverse of `encode_share`.

    Raises:
        SecAggError: when the length is wrong or a word is not a field element.
    """
    row: Field = decode_shares([data], limbs)[0]
    return row


def decode_shares(blobs: Sequence[bytes], limbs: int = LIMBS) -> Field:
    """Decode many encoded shares at once into rows.

    Raises:
        SecAggError: when a length is wrong or a word is not a field element.
    """
    size = 4 * limbs
    if set(map(len, blobs)) - {size}:
        raise SecAggError(f"a share has {size} bytes, got another length")
    rows = np.frombuffer(b"".join(blobs), dtype="<u4").astype(np.uint64).reshape(-1, limbs)
    if (rows >= _P).any():
        raise SecAggError("a share word is not a field element")
    return rows
