"""SCAFFOLD's client control variates in simulation: kept in the population's compact per-client
state (`Population.control_variates`, a `ClientStateStore`: one byte string per client that
has trained, none for the others), handed to each virtual client's deployed `TaskHandler`."""

from __future__ import annotations

import numpy as np

from fedcore.client.app import ClientApp
from fedcore.client.handler import TaskHandler
from fedcore.client.scaffold import F64, variate_spec
from fedcore.protocol.params import Params
from fedcore.protocol.specs import ModelSpec
from fedcore.sim.population import ClientStateStore, Population


class StoredVariates:
    """Client `index`'s c_i in a `ClientStateStore` (a `fedcore.client.scaffold.VariateStore`)."""

    def __init__(self, store: ClientStateStore, index: int) -> None:
        self._store, self._index = store, index

    def load(self, spec: ModelSpec) -> dict[str, F64] | None:
        """The stored c_i when its layout is `spec`'s, else None."""
        state = self._store.get(self._index)
        if state is None:
            return None
        if [(n, v.shape) for n, v in state.items()] != [(t.name, t.shape) for t in spec.tensors]:
            return None
        return {n: np.array(v, np.float64) for n, v in state.items()}

    def save(self, variate: dict[str, F64]) -> None:
        """Store c_i (a copy)."""
        self._store.put(self._index, variate)


class ScaffoldHandlers:
    """An `InProcessDriver(handler=...)` factory: each client's `TaskHandler` keeps its control
    variate in `population.control_variates`."""

    def __init__(self, population: Population) -> None:
        self.population = population

    def __call__(self, app: ClientApp, client_id: str) -> TaskHandler:
        """The handler of `client_id`, around `app`."""
        index = self.population.index_of(client_id)
        return TaskHandler(app, client_id, control_variates=StoredVariates(
            self.population.control_variates, index))


def client_correction(population: Population, index: int, control: Params) -> dict[str, F64]:
    """Client `index`'s correction `c - c_i` for the server variate `control` (c_i = 0 before
    its first SCAFFOLD task), as its task handler will compute it."""
    own = StoredVariates(population.control_variates, index).load(variate_spec(control))
    return {n: np.asarray(c, np.float64) - (own[n] if own is not None else 0.0)
            for n, c in control.items()}
