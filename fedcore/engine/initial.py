"""Where a run's first model comes from, and the backoff of clients asked for it.

The first global model is the operator's (`initial_params`); only when the operator opts in
(`initial_from_client`) is a joined client asked for it with an INITIALIZE task. A client that
declines or fails that task is not asked again before a backoff (`retry_after_s`, doubling up
to `INIT_BACKOFF_MAX_S`), so the engine never offers it the same task in a loop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Params
from fedcore.protocol.specs import ModelSpec, check_matches, spec_of

NO_INITIAL_MODEL = (
    "no initial model: pass the operator's initial parameters (initial_params), or opt in to "
    "taking them from a joined client (initial_from_client=True)"
)
INIT_BACKOFF_MAX_S = 60.0  # the longest a client that failed an INITIALIZE task waits for another


def check_initial_model(initial_params: Params | None, initial_from_client: bool,
                        model_spec: ModelSpec | None) -> None:
    """Refuse a run with neither or both sources of its first model, or operator parameters
    of another layout than the pinned `model_spec`.

    Raises:
        ValueError: what to pass instead.
    """
    if (initial_params is None) != initial_from_client:
        raise ValueError(NO_INITIAL_MODEL if initial_params is None else
                         "initial_params and initial_from_client exclude each other: the "
                         "first model is the operator's or a client's")
    if model_spec is not None and initial_params is not None:
        try:
            check_matches(spec_of(initial_params), model_spec)
        except WireError as err:
            raise ValueError(f"the initial parameters do not match the model spec: {err}") from err


class InitBackoff:
    """Clients that failed an INITIALIZE task: how many times, and when they may be asked again."""

    def __init__(self, base_s: float) -> None:
        self._base_s = base_s
        self._clients: dict[str, tuple[int, float]] = {}  # client -> (failures, not before)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._clients

    def remaining(self, client_id: str, now: float) -> float:
        """Seconds before `client_id` may be asked again (0 when it may be asked now)."""
        return max(0.0, self._clients.get(client_id, (0, now))[1] - now)

    def pick(self, available: Iterable[str], now: float,
             rng: random.Random | None = None) -> str | None:
        """A client to ask: one not backing off (random with `rng`, else the first in order)."""
        ready = sorted(c for c in available if self.remaining(c, now) == 0.0)
        if not ready:
            return None
        return rng.choice(ready) if rng is not None else ready[0]

    def failed(self, clients: Iterable[str], now: float) -> None:
        """`clients` did not supply the model: each waits twice as long as the last time."""
        stale = now - INIT_BACKOFF_MAX_S  # long past: forgotten (memory stays bounded)
        self._clients = {c: b for c, b in self._clients.items() if b[1] > stale}
        for client in clients:
            failures = self._clients.get(client, (0, now))[0] + 1
            delay = min(INIT_BACKOFF_MAX_S, self._base_s * 2 ** (failures - 1))
            self._clients[client] = (failures, now + delay)

    def clear(self) -> None:
        """The model arrived: nobody is asked any more."""
        self._clients.clear()
