"""Compressing clients in the simulator: a `TaskHandler` factory for `InProcessDriver(handler=)`
whose clients keep their compressor (and top-k residual, in memory) across rounds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedcore.client.app import ClientApp
from fedcore.client.handler import TaskHandler
from fedcore.client.scaffold import VariateStore
from fedcore.compression.codec import Compression, Compressor, MemoryStore


def compressing_handlers(
    compression: Compression, *, seed: int = 0,
    variates: Callable[[str], VariateStore] | None = None,
) -> Callable[[ClientApp, str], TaskHandler]:
    """A handler factory: client `cid` compresses with its own `Compressor`, created on its first
    task (memory grows with the clients that took part, one residual each for top-k).
    `variates(cid)` is where the client keeps SCAFFOLD's control variate (the simulator's
    `fedcore.sim.scaffold.StoredVariates`)."""
    compressors: dict[str, Compressor] = {}

    def handler(app: ClientApp, client_id: str) -> TaskHandler:
        compressor = compressors.get(client_id)
        if compressor is None:
            rng = np.random.default_rng([seed, len(compressors)])
            compressor = Compressor(compression, store=MemoryStore(), rng=rng)
            compressors[client_id] = compressor
        return TaskHandler(app, client_id, compressor=compressor,
                           control_variates=variates(client_id) if variates else None)

    return handler
