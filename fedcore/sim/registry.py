"""A registry of virtual clients for the in-process driver: O(1) memory in the population size.

Every client of the population is always available; selection samples indices without
materialising the population. Real sessions are not needed in one process.
"""

from __future__ import annotations

import random

from fedcore.engine.errors import EngineError, Reason
from fedcore.sim.population import Population


class VirtualRegistry:
    """The engine's view of a `Population`: all clients live, none needing to join."""

    def __init__(self, population: Population) -> None:
        self._population = population
        self._excluded: dict[str, str] = {}

    def join(self, client_id: str, *, now: float, properties: dict[str, str]) -> bytes:
        """Virtual clients are registered from the start."""
        self._index(client_id)
        return b""

    def authenticate(self, client_id: str, session: bytes, now: float | None = None) -> object:
        """Accepts any member of the population."""
        return self._index(client_id)

    def touch(self, client_id: str, now: float) -> None:
        """Virtual clients are always live."""

    def remove(self, client_id: str) -> None:
        """Virtual clients cannot leave the population; a leave only ends their task."""

    def exclude(self, client_id: str, reason: str) -> None:
        """Never select this client again (e.g. its privacy budget is spent)."""
        self._excluded[client_id] = reason

    def available(self, now: float) -> list[str]:
        """Every client id (materialises the population: for small ones and tests only)."""
        return [c for c in map(self._id, range(len(self._population))) if c not in self._excluded]

    def count_available(self, now: float) -> int:
        """Population size minus excluded clients."""
        return len(self._population) - len(self._excluded)

    def select(self, count: int, rng: random.Random, now: float) -> list[str]:
        """`count` distinct non-excluded clients drawn uniformly, in O(count) time and memory."""
        if count > self.count_available(now):
            raise ValueError(f"cannot select {count} of {self.count_available(now)} clients")
        chosen: list[str] = []
        seen: set[int] = set()
        size = len(self._population)
        while len(chosen) < count:
            for index in rng.sample(range(size), min(size, count - len(chosen))):
                cid = self._id(index)
                if index not in seen and cid not in self._excluded:
                    seen.add(index)
                    chosen.append(cid)
        return chosen

    def _id(self, index: int) -> str:
        return self._population.client(index).client_id

    def _index(self, client_id: str) -> int:
        try:
            return self._population.index_of(client_id)
        except ValueError as err:
            raise EngineError(Reason.UNKNOWN_CLIENT, str(err)) from err
