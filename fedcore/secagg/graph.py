"""Who masks with whom: everyone (FULL) or a random Harary graph (SECAGG_PLUS).

The SECAGG_PLUS graph is the Harary graph H(k, n) (each client linked to the k/2 nearest
on either side of a ring) over a random order of the clients. The order comes from a
32-byte seed through the AES-CTR PRG, so every party derives the same graph from it.

Where the seed comes from: in unsigned rounds the coordinator draws it from the operating
system's CSPRNG (`fedcore.engine`) and sends it in the setup; one that follows the protocol,
as in the honest-but-curious model, therefore cannot choose neighbourhoods. In signed rounds
with a sparse graph (committed-graph rounds, `RoundSpec.committed_graph`) the setup's seed is
ignored: the seed is derived from nonces every advertiser committed to before any was
revealed (`fedcore.secagg.keys.graph_seed`), so neither the coordinator nor a minority of
clients can choose it; a coordinator can only abort the round and start another.
"""

from __future__ import annotations

import numpy as np

from fedcore.secagg import prg
from fedcore.secagg.config import RoundSpec


class Graph:
    """The neighbour relation of one round (symmetric, irreflexive).

    Args:
        spec: the round.
        seed: the graph seed; default `spec.graph_seed` (committed-graph rounds pass the
            seed derived from the revealed nonces).
    """

    def __init__(self, spec: RoundSpec, seed: bytes | None = None) -> None:
        self._n = spec.num_clients
        self._half = spec.config.even_degree // 2
        self._complete = spec.complete_graph
        keys = prg.expand(spec.graph_seed if seed is None else seed, self._n, np.uint64)
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
