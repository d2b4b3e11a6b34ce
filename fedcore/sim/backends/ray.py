"""Local training as Ray tasks, for a federation simulated across machines (`pip install
fedcore[ray]`). The clients split into shares as for the process pool, one Ray task each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from fedcore.sim.backends.pool import share_tasks, train_share
from fedcore.sim.backends.sequential import LocalResult, TrainJob


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the Ray backend needs Ray: pip install 'fedcore[ray]'") from err
    return ray


class RayPool:
    """Trains shares of the clients as Ray tasks on a running (or new local) Ray cluster.

    Args:
        shares: how many tasks a round's clients split into (e.g. the cluster's CPUs).
        vectorised: the kernel each task runs.
        threads: torch intra-op threads per task (0: torch's default).
        address: a Ray cluster to join; None starts or reuses a local one.
    """

    def __init__(
        self, shares: int = 2, *, vectorised: bool = True, threads: int = 1,
        address: str | None = None,
    ) -> None:
        if shares < 1:
            raise ValueError(f"shares must be at least 1, got {shares}")
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.shares, self.vectorised, self.threads = shares, vectorised, threads
        self._task = ray.remote(train_share)

    def train(self, job: TrainJob) -> Iterator[LocalResult]:
        """Train every client as Ray tasks; yields results as tasks finish."""
        ray = _ray()
        pending = {
            self._task.remote(part, self.vectorised, self.threads): share
            for share, part in share_tasks(job, parts=self.shares)
        }
        return _gather(ray, pending)

    def close(self) -> None:
        """Nothing to release: the Ray cluster outlives the pool (`ray.shutdown()` ends it)."""


def _gather(ray: Any, pending: dict[Any, list[int]]) -> Iterator[LocalResult]:
    waiting = list(pending)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for result in ray.get(done[0]):
            yield dataclasses.replace(result, client=pending[done[0]][result.client])
