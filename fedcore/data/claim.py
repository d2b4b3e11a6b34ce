"""`--partition auto`: each client of a scaled deployment claims its own data partition.

Clients that share a directory (a volume in docker compose) claim the lowest free index by
creating `partition-<i>` exclusively (O_CREAT | O_EXCL is atomic, even among processes), and
write their owner name (the container's hostname) into it. A restarted client with the same
owner gets its old partition back.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedcore.errors import FedcoreError


class NoFreePartition(FedcoreError, RuntimeError):
    """Every partition is claimed by another owner."""


def claim_partition(directory: Path, num_partitions: int, owner: str) -> int:
    """Claim a partition index in `0..num_partitions-1` for `owner` and return it.

    Raises:
        ValueError: `num_partitions` < 1 or `owner` is empty.
        NoFreePartition: all are claimed by others.
    """
    if num_partitions < 1 or not owner:
        raise ValueError("need num_partitions >= 1 and a non-empty owner")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"partition-{i}" for i in range(num_partitions)]
    for i, path in enumerate(paths):
        if _owner_of(path) == owner:
            return i
    for i, path in enumerate(paths):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(owner)
        return i
    raise NoFreePartition(
        f"all {num_partitions} partitions in {directory} are claimed; raise --num-partitions "
        "or clear the directory (docker compose down -v)"
    )


def _owner_of(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
