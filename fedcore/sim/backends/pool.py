"""Local training in worker processes: the selected clients split into one share per worker,
each trained there by the vectorised or sequential kernel, results gathered in any order.

Models, parameters, settings and client data travel to the workers by `multiprocessing`'s
pickling. Both ends are this program's own processes, so this is no trust boundary: nothing
from a peer is unpickled. Results are the kernels' own, so they equal in-process training.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from types import TracebackType

import numpy as np
import torch

from fedcore.sim.backends.sequential import (
    LocalResult,
    TrainJob,
    train_sequential,
)
from fedcore.sim.backends.vmap import train_vectorised

Share = list[int]


def split_work(sizes: Sequence[int], epochs: Sequence[int], parts: int) -> list[Share]:
    """Client positions in at most `parts` shares of about equal work (examples x epochs):
    the largest client first to the least loaded share. Empty shares are left out."""
    loads = [(0, part) for part in range(parts)]
    shares: list[Share] = [[] for _ in range(parts)]
    for position in sorted(range(len(sizes)), key=lambda p: -sizes[p] * epochs[p]):
        load, part = heapq.heappop(loads)
        shares[part].append(position)
        heapq.heappush(loads, (load + sizes[position] * epochs[position], part))
    return [sorted(share) for share in shares if share]


def share_tasks(job: TrainJob, *, parts: int) -> list[tuple[Share, TrainJob]]:
    """Split the clients into at most `parts` shares of about equal work, each with its job."""
    counts = job.client_epochs()
    whole = dataclasses.replace(
        job, global_params={k: np.asarray(v) for k, v in job.global_params.items()}
    )
    return [
        (share, whole.part(share)) for share in split_work([len(y) for _, y in job.clients],
                                                           counts, parts)
    ]


def train_share(job: TrainJob, vectorised: bool, threads: int) -> list[LocalResult]:
    """One worker's share, trained in this process (positions are within the share).

    The sequential kernel trains a private copy of the model: tensors sent to worker processes
    travel in shared memory, so every worker may hold the same weights.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    if vectorised:
        return list(train_vectorised(job))
    return list(train_sequential(dataclasses.replace(job, model=copy.deepcopy(job.model))))


class ProcessPool:
    """A pool of `workers` processes that train shares of the clients; `close()` when done.

    Args:
        workers: worker processes (at most the cores worth using).
        vectorised: the kernel each worker runs (see `fedcore.sim.backends`).
        threads: torch intra-op threads per worker (0: torch's default).
    """

    def __init__(self, workers: int = 2, *, vectorised: bool = True, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers, self.vectorised, self.threads = workers, vectorised, threads
        self._executor: Executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        )

    def train(self, job: TrainJob) -> Iterator[LocalResult]:
        """Train every client in the workers; yields results as shares finish (`client` is
        the position in `job.clients`)."""
        futures = {
            self._executor.submit(train_share, part, self.vectorised, self.threads): share
            for share, part in share_tasks(job, parts=self.workers)
        }
        return _gather(futures)

    def close(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessPool:  # noqa: PYI034
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _gather(futures: dict[Future[list[LocalResult]], Share]) -> Iterator[LocalResult]:
    for future in as_completed(futures):
        share = futures[future]
        for result in future.result():
            yield dataclasses.replace(result, client=share[result.client])
