"""Who is connected: client ids, their sessions, and when each was last heard from.

Joining is open to strangers (without a token), so what a join leaves behind is bounded
(`Limits`): the id and properties are checked before anything is stored, the number of
registered clients is capped, and a client not heard from for `Limits.client_evict_s` is
forgotten (swept on joins, and on its own next request).
"""

from __future__ import annotations

import hmac
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fedcore.engine.config import Limits
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.selection import select_clients
from fedcore.protocol.client_id import client_id_problem


class ClientRegistry(Protocol):
    """Who may be selected. `Registry` holds real clients; simulations use a virtual one."""

    def join(self, client_id: str, *, now: float, properties: dict[str, str]) -> bytes: ...

    def authenticate(self, client_id: str, session: bytes, now: float | None = None) -> object: ...

    def touch(self, client_id: str, now: float) -> None: ...

    def remove(self, client_id: str) -> None: ...

    def exclude(self, client_id: str, reason: str) -> None: ...

    def available(self, now: float) -> list[str]: ...

    def count_available(self, now: float) -> int: ...

    def select(self, count: int, rng: random.Random, now: float) -> list[str]: ...


@dataclass(slots=True)
class ClientEntry:
    """One registered client."""

    client_id: str
    session: bytes
    last_seen: float
    properties: dict[str, str] = field(default_factory=dict)
    excluded_reason: str = ""


class Registry:
    """Registered clients. A client idle for longer than `timeout_s` counts as gone, and one
    idle for `limits.client_evict_s` (and at least `timeout_s`) is forgotten."""

    def __init__(
        self,
        timeout_s: float,
        token_source: Callable[[int], bytes] = secrets.token_bytes,
        *,
        limits: Limits | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._token_source = token_source
        self._limits = limits or Limits()
        self._evict_s = max(self._limits.client_evict_s, timeout_s)  # never before it is gone
        self._clients: dict[str, ClientEntry] = {}
        self._next_sweep = float("-inf")

    def join(self, client_id: str, *, now: float, properties: dict[str, str]) -> bytes:
        """Register `client_id` (again) and return a fresh session; an older one stops working.

        Raises:
            EngineError: INVALID for an id or properties beyond `Limits`, TOO_LARGE when
                `Limits.max_clients` are registered; nothing is stored then.
        """
        check_join(client_id, properties, self._limits)
        self._sweep(now)
        previous = self._clients.get(client_id)
        if previous is None and len(self._clients) >= self._limits.max_clients:
            raise EngineError(
                Reason.TOO_LARGE,
                f"{len(self._clients)} clients are registered, the most this coordinator takes "
                "(limits.max_clients): try again later",
            )
        session = self._token_source(16)
        excluded = previous.excluded_reason if previous else ""
        self._clients[client_id] = ClientEntry(client_id, session, now, dict(properties), excluded)
        return session

    def authenticate(self, client_id: str, session: bytes, now: float | None = None) -> ClientEntry:
        """The entry for `client_id` if `session` is its current one; raises otherwise (also
        for a client evicted by `now`, which is forgotten then)."""
        if not client_id or not session:
            raise EngineError(Reason.UNAUTHENTICATED,
                              "the request carries no credentials: call Join and send its session")
        entry = self._clients.get(client_id)
        if entry is not None and now is not None and self._evictable(entry, now):
            del self._clients[client_id]
            entry = None
        if entry is None:
            raise EngineError(Reason.UNKNOWN_CLIENT, f"unknown client {client_id!r}: call Join first")
        if not hmac.compare_digest(entry.session, session):
            raise EngineError(Reason.UNAUTHENTICATED, "stale or wrong session: call Join again")
        return entry

    def touch(self, client_id: str, now: float) -> None:
        """Record that the client was heard from."""
        entry = self._clients.get(client_id)
        if entry is not None:
            entry.last_seen = max(entry.last_seen, now)

    def remove(self, client_id: str) -> None:
        """Forget a client (it left)."""
        self._clients.pop(client_id, None)

    def exclude(self, client_id: str, reason: str) -> None:
        """Never select this client again (e.g. its privacy budget is spent)."""
        entry = self._clients.get(client_id)
        if entry is not None:
            entry.excluded_reason = reason

    def is_live(self, client_id: str, now: float) -> bool:
        """Registered and heard from within the timeout."""
        entry = self._clients.get(client_id)
        return entry is not None and now - entry.last_seen <= self._timeout_s

    def available(self, now: float) -> list[str]:
        """Live clients that may be selected."""
        return [
            c.client_id
            for c in self._clients.values()
            if now - c.last_seen <= self._timeout_s and not c.excluded_reason
        ]

    def count_available(self, now: float) -> int:
        """How many clients `available` would list."""
        return len(self.available(now))

    def select(self, count: int, rng: random.Random, now: float) -> list[str]:
        """`count` available clients, uniformly at random."""
        return select_clients(self.available(now), count, rng)

    def evict(self, now: float) -> int:
        """Forget every client not heard from for the eviction time; returns how many."""
        stale = [c.client_id for c in self._clients.values() if self._evictable(c, now)]
        for client_id in stale:
            del self._clients[client_id]
        return len(stale)

    def _evictable(self, entry: ClientEntry, now: float) -> bool:
        return now - entry.last_seen > self._evict_s

    def _sweep(self, now: float) -> None:
        """`evict`, at most once per tenth of the eviction time (joins stay O(1) amortised)."""
        if now >= self._next_sweep:
            self.evict(now)
            self._next_sweep = now + self._evict_s / 10

    def __len__(self) -> int:
        return len(self._clients)


def check_join(client_id: str, properties: dict[str, str], limits: Limits) -> None:
    """Raise `EngineError` (INVALID) when a join's id or properties exceed `limits`."""
    if problem := client_id_problem(client_id, limits.max_client_id_chars):
        raise EngineError(Reason.INVALID, problem)
    if len(properties) > limits.max_properties:
        raise EngineError(
            Reason.INVALID,
            f"{len(properties)} properties, at most {limits.max_properties} allowed "
            "(limits.max_properties)",
        )
    size = sum(len(k.encode()) + len(v.encode()) for k, v in properties.items())
    if size > limits.max_properties_bytes:
        raise EngineError(
            Reason.INVALID,
            f"properties take {size} bytes, at most {limits.max_properties_bytes} allowed "
            "(limits.max_properties_bytes)",
        )
