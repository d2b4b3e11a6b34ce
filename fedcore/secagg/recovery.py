"""The server's last step: rebuild secrets from shares and strip masks from the sum.

Pure functions over what the server collected; `server.py` decides what to collect.
Every reconstructed secret is checked against what its owner published in phase 1 (the
hash commitment of its seed, its mask public key), so a corrupted share among those used
is detected and named instead of silently yielding a wrong sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.secagg import keys, shamir
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.messages import AdvertiseKeys
from fedcore.secagg.prg import MaskExpander, Words

SharesByOwner = Mapping[int, Mapping[int, bytes]]  # owner -> holder -> encoded share


def reconstruct_all(shares: SharesByOwner, *, threshold: int) -> dict[int, bytes]:
    """Rebuild each owner's secret from the first `threshold` shares by holder id.

    Owners whose shares come from the same holders share one set of Lagrange coefficients.

    Raises:
        SecAggError: when an owner has fewer than `threshold` shares or a share is malformed.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for owner, by_holder in shares.items():
        if len(by_holder) < threshold:
            raise SecAggError(
                f"{len(by_holder)} shares of client {owner}'s secret, fewer than t={threshold}"
            )
        groups.setdefault(tuple(sorted(by_holder)[:threshold]), []).append(owner)
    secrets = {}
    for xs, owners in groups.items():
        coefficients = shamir.lagrange_coefficients(xs)
        blobs = [shares[owner][x] for owner in owners for x in xs]
        stacked = shamir.decode_shares(blobs).reshape(len(owners), len(xs), shamir.LIMBS)
        for owner, limbs in zip(owners, shamir.combine(stacked, coefficients), strict=True):
            secrets[owner] = shamir.limbs_to_secret(limbs)
    return secrets


def check_seeds(
    seeds: Mapping[int, bytes], adverts: Mapping[int, AdvertiseKeys], round_id: int
) -> None:
    """Raise SecAggError naming the first seed that does not match its commitment."""
    for owner, seed in seeds.items():
        if (
            keys.seed_commitment(seed, round_id=round_id, owner=owner)
            != adverts[owner].seed_commitment
        ):
            raise SecAggError(
                f"self-mask seed of client {owner} does not match its commitment: "
                "a share was corrupted"
            )


def check_mask_keys(secret_keys: Mapping[int, bytes], adverts: Mapping[int, AdvertiseKeys]) -> None:
    """Raise SecAggError naming the first mask key that does not match its public key."""
    for owner, raw in secret_keys.items():
        public = keys.public_bytes(X25519PrivateKey.from_private_bytes(raw))
        if public != adverts[owner].mask_pk:
            raise SecAggError(
                f"mask key of client {owner} does not match its public key: a share was corrupted"
            )


def remove_self_masks(acc: Words, seeds: Iterable[bytes], expander: MaskExpander) -> None:
    """Subtract every survivor's self mask from the sum."""
    for seed in seeds:
        expander.subtract(acc, seed)


def remove_pair_masks(
    acc: Words,
    dropped_keys: Mapping[int, bytes],
    partners: Callable[[int], Iterable[int]],
    adverts: Mapping[int, AdvertiseKeys],
    *,
    round_id: int,
    expander: MaskExpander,
) -> None:
    """Cancel the masks survivors added for dropped clients.

    Survivor s added +PRG(seed) for a dropped d when s < d and -PRG(seed) otherwise.

    Args:
        dropped_keys: each dropped client's reconstructed mask private key.
        partners: the survivors that masked with a given dropped client.
    """
    for dropped, raw in dropped_keys.items():
        private = X25519PrivateKey.from_private_bytes(raw)
        for survivor in partners(dropped):
            shared = keys.agree(private, adverts[survivor].mask_pk)
            seed = keys.derive_mask_seed(shared, round_id=round_id, a=survivor, b=dropped)
            if survivor < dropped:
                expander.subtract(acc, seed)
            else:
                expander.add(acc, seed)
