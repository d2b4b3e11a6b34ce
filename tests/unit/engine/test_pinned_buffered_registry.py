"""`BufferedCoordinator` keeps the registry it is given, even an empty one.

`Registry` defines `__len__`, so a registry with no client yet is falsy; `registry or
Registry(...)` once replaced it with a default one, and clients joined a registry the caller
could not see, with the config's timeout and limits instead of the caller's.
"""

from __future__ import annotations

import numpy as np

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.registry import Registry
from fedcore.strategy import FedAvg


def test_an_empty_registry_passed_in_is_the_one_clients_join() -> None:
    engine = BufferedEngine(BufferedConfig(buffer_size=1, concurrency=1, num_updates=1),
                            FedAvg(), {"w": np.zeros(1)})
    registry = Registry(5.0)  # its own client timeout: 5 s
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1), registry=registry)
    token = facade.join("a", now=0.0)
    assert len(registry) == 1
    registry.authenticate("a", token, 0.0)
    assert facade.available_clients(10.0) == []  # gone after the registry's 5 s
