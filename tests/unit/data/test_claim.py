"""Partition claims for `--partition auto`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedcore.data.claim import NoFreePartition, claim_partition


def test_owners_get_distinct_partitions_in_order(tmp_path: Path) -> None:
    got = [claim_partition(tmp_path, 3, f"host-{k}") for k in range(3)]

    assert got == [0, 1, 2]


def test_an_owner_gets_its_partition_back(tmp_path: Path) -> None:
    claim_partition(tmp_path, 3, "a")
    claim_partition(tmp_path, 3, "b")

    assert claim_partition(tmp_path, 3, "b") == 1


def test_no_free_partition_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    claim_partition(tmp_path, 1, "a")

    with pytest.raises(NoFreePartition, match="num-partitions"):
        claim_partition(tmp_path, 1, "b")


def test_concurrent_processes_never_share_a_partition(tmp_path: Path) -> None:
    code = (
        "import sys; from fedcore.data.claim import claim_partition; "
        "print(claim_partition(sys.argv[1], 8, sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), f"host-{k}"],
                         stdout=subprocess.PIPE, text=True)
        for k in range(6)
    ]

    got = sorted(int(p.communicate(timeout=60)[0]) for p in procs)

    assert got == [0, 1, 2, 3, 4, 5]
