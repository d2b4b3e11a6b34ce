"""The server's last step: rebuild secrets from shares and strip masks from the sum.

Pure functions over what the server collected; `server.py` decides what to collect.
Stripping the masks, nearly all of the server's compute, is described by a `MaskWork`
value that splits into pieces an executor (threads, processes) may run anywhere.
Every reconstructed secret is checked against what its owner published in phase 1 (the
hash commitment of its seed, its mask public key), so a corrupted share among those used
is detected and named instead of silently yielding a wrong sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

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


@dataclass(frozen=True, slots=True, kw_only=True)
class DroppedPairs:
    """A dropped client's rebuilt mask key and the survivors that masked with it.

    Survivor s added +PRG(seed) for dropped d when s < d and -PRG(seed) otherwise.
    """

    dropped: int
    private_key: bytes
    survivors: tuple[tuple[int, bytes], ...]  # (survivor id, its mask public key)


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskWork:
    """Masks to strip from a masked sum: plain, picklable data that any executor can run.

    Args:
        dtype: the accumulator's word type, as `numpy.dtype.str`.
        self_seeds: survivors' self-mask seeds.
        pairs: the pairwise masks survivors added for dropped clients.
    """

    round_id: int
    dim: int
    dtype: str
    self_seeds: tuple[bytes, ...] = ()
    pairs: tuple[DroppedPairs, ...] = ()

    def split(self, parts: int) -> list[MaskWork]:
        """At most `parts` non-empty pieces of about equal cost whose masks add up to these."""
        pieces = []
        for i in range(parts):
            pairs = tuple(
                DroppedPairs(dropped=p.dropped, private_key=p.private_key, survivors=mine)
                for p in self.pairs
                if (mine := p.survivors[i::parts])
            )
            seeds = self.self_seeds[i::parts]
            if seeds or pairs:
                pieces.append(
                    MaskWork(
                        round_id=self.round_id,
                        dim=self.dim,
                        dtype=self.dtype,
                        self_seeds=seeds,
                        pairs=pairs,
                    )
                )
        return pieces


def strip_masks(acc: Words, work: MaskWork) -> None:
    """acc -= every mask in `work`, wrapping.

    Raises:
        SecAggError: when a survivor's mask public key is malformed.
    """
    expander = MaskExpander(work.dim, acc.dtype)
    for seed in work.self_seeds:
        expander.subtract(acc, seed)
    publics: dict[bytes, X25519PublicKey] = {}  # each survivor's key, parsed once
    for group in work.pairs:
        private, dropped = X25519PrivateKey.from_private_bytes(group.private_key), group.dropped
        for survivor, raw in group.survivors:
            public = publics.get(raw)
            if public is None:
                public = publics[raw] = keys.peer_key(raw)
            shared = keys.agree(private, public)
            seed = keys.derive_mask_seed(shared, round_id=work.round_id, a=survivor, b=dropped)
            if survivor < dropped:
                expander.subtract(acc, seed)
            else:
                expander.add(acc, seed)


def mask_correction(work: MaskWork) -> Words:
    """What adding to a masked sum strips the masks in `work`: an executor's unit of work."""
    acc: Words = np.zeros(work.dim, np.dtype(work.dtype))
    strip_masks(acc, work)
    return acc


def strip_all(
    acc: Words, work: MaskWork, *, executor: Executor | None = None, parts: int = 1
) -> None:
    """acc -= every mask in `work`: inline, or in `parts` pieces through `executor`.

    The result is the same bit for bit either way: the pieces' corrections add up modulo
    the word size in any order.

    Raises:
        SecAggError: when a survivor's mask public key is malformed.
    """
    if executor is None:
        strip_masks(acc, work)
        return
    for correction in executor.map(mask_correction, work.split(parts)):
        np.add(acc, correction, out=acc)
