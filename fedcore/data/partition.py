"""Federated partitioners: split example indices among clients, deterministically from a seed.

Each returns one sorted int64 index array per client; the arrays are disjoint and together
cover every example.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Indices = npt.NDArray[np.int64]


def iid_partition(n: int, num_clients: int, *, seed: int) -> list[Indices]:
    """Shuffle `range(n)` and cut it into `num_clients` near-equal parts."""
    _check_clients(num_clients, n)
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_clients)]


def dirichlet_partition(
    labels: npt.ArrayLike,
    num_clients: int,
    *,
    alpha: float,
    seed: int,
    min_size: int = 10,
    max_attempts: int = 1000,
) -> list[Indices]:
    """Label skew: each class is split among clients with proportions drawn from Dir(alpha).

    The draw is repeated until every client holds at least `min_size` examples.

    Raises:
        ValueError: bad arguments, `min_size * num_clients` exceeds the data, or no draw
            met `min_size` within `max_attempts` (raise alpha or lower min_size).
    """
    y = _labels(labels)
    _check_clients(num_clients, len(y))
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_size < 0 or min_size * num_clients > len(y):
        raise ValueError(
            f"min_size={min_size} for {num_clients} clients needs {min_size * num_clients} "
            f"examples, only {len(y)} exist"
        )
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    for _ in range(max_attempts):
        parts = _dirichlet_draw(by_class, num_clients, alpha, rng)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw gave all {num_clients} clients at least "
        f"{min_size} examples in {max_attempts} attempts; raise alpha or lower min_size"
    )


def shard_partition(
    labels: npt.ArrayLike, num_clients: int, *, shards_per_client: int, seed: int
) -> list[Indices]:
    """McMahan et al. 2017: sort by label, cut into equal shards, deal `shards_per_client` each.

    Raises:
        ValueError: fewer examples than shards, or non-positive counts.
    """
    y = _labels(labels)
    if shards_per_client < 1:
        raise ValueError(f"shards_per_client must be at least 1, got {shards_per_client}")
    num_shards = num_clients * shards_per_client
    _check_clients(num_shards, len(y))
    shards = np.array_split(np.argsort(y, kind="stable"), num_shards)
    order = np.random.default_rng(seed).permutation(num_shards).reshape(num_clients, -1)
    return [np.sort(np.concatenate([shards[s] for s in row])).astype(np.int64) for row in order]


def _dirichlet_draw(
    by_class: list[Indices], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[Indices]:
    pieces: list[list[Indices]] = [[] for _ in range(num_clients)]
    for idx in by_class:
        shuffled = rng.permutation(idx)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(np.int64)
        for client, piece in enumerate(np.split(shuffled, cuts)):
            pieces[client].append(piece)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in pieces]


def _labels(labels: npt.ArrayLike) -> Indices:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    return y.astype(np.int64, copy=False)


def _check_clients(num_parts: int, n: int) -> None:
    if num_parts < 1:
        raise ValueError(f"need at least one client (or shard), got {num_parts}")
    if num_parts > n:
        raise ValueError(f"cannot split {n} examples into {num_parts} non-empty parts")
