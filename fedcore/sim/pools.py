"""The out-of-process training pool a simulation's backend setting asks for."""

from __future__ import annotations

from typing import Protocol

from fedcore.sim.config import BackendKind
from fedcore.sim.runners import TrainingPool


class ClosablePool(TrainingPool, Protocol):
    """A `TrainingPool` that holds workers until closed."""

    def close(self) -> None:
        """Release the workers."""
        ...


def training_pool(backend: BackendKind, workers: int) -> ClosablePool | None:
    """A process pool or Ray pool of vectorised workers, or None for in-process backends."""
    match backend:
        case BackendKind.PROCESSES:
            from fedcore.sim.backends.pool import ProcessPool

            return ProcessPool(workers)
        case BackendKind.RAY:
            from fedcore.sim.backends.ray import RayPool

            return RayPool(workers)
        case _:
            return None
