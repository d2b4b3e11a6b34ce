"""Who masks with whom: everyone (FULL) or a random Harary graph (SECAGG_PLUS).

The SECAGG_PLUS graph is the Harary graph H(k, n) (each client linked to the k/2 nearest
on either side of a ring) over a random order of the clients. The order comes from the
public `graph_seed` through the AES-CTR PRG, so every party derives the same graph. The
coordinator draws the seed at random (`fedcore.engine`); one that follows the protocol, as in
the honest-but-curious model, therefore cannot choose neighbourhoods. A malicious coordinator
could try seeds until it liked the graph: that is outside the model of unsigned rounds.
"""

from __future__ import annotations

import numpy as np

from fedcore.secagg import prg
from fedcore.secagg.config import Mode, RoundSpec


class Graph:
    """The neighbour relation of one round (symmetric, irreflexive)."""

    def __init__(self, spec: RoundSpec) -> None:
        self._n = spec.num_clients
        half = spec.config.even_degree // 2
        self._complete = spec.config.mode is Mode.FULL or 2 * half >= self._n - 1
        self._half = half
        keys = prg.expand(spec.graph_seed, self._n, np.uint64)
        order = np.lexsort((np.arange(self._n), keys))  # ties (never, in practice) by id
        self._ring = (order + 1).tolist()  # position -> client id
        self._position = {cid: pos for pos, cid in enumerate(self._ring)}

    @property
    def complete(self) -> bool:
        """Whether every client neighbours every other."""
        return self._complete

    def neighbours(self, client: int) -> frozenset[int]:
        """The clients that `client` masks with and shares its secrets with."""
        if not 1 <= client <= self._n:
            raise ValueError(f"client id {client} is not in 1..{self._n}")
        if self._complete:
            return frozenset(range(1, self._n + 1)) - {client}
        pos = self._position[client]
        offsets = [d for step in range(1, self._half + 1) for d in (step, -step)]
        return frozenset(self._ring[(pos + d) % self._n] for d in offsets)

    def holders(self, client: int) -> frozenset[int]:
        """The clients holding shares of `client`'s secrets: its neighbours and itself."""
        return self.neighbours(client) | {client}
