"""Who is connected: client ids, their sessions, and when each was last heard from."""

from __future__ import annotations

import hmac
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.selection import select_clients


class ClientRegistry(Protocol):
    """Who may be selected. `Registry` holds real clients; simulations use a virtual one."""

    def join(self, client_id: str, *, now: float, properties: dict[str, str]) -> bytes: ...

    def authenticate(self, client_id: str, session: bytes) -> object: ...

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
    """Registered clients. A client idle for longer than `timeout_s` counts as gone."""

    def __init__(self, timeout_s: float, token_source: Callable[[int], bytes] = secrets.token_bytes):
        self._timeout_s = timeout_s
        self._token_source = token_source
        self._clients: dict[str, ClientEntry] = {}

    def join(self, client_id: str, *, now: float, properties: dict[str, str]) -> bytes:
        """Register `client_id` (again) and return a fresh session; an older one stops working."""
        if not client_id or len(client_id) > 256 or not client_id.isprintable():
            raise EngineError(Reason.INVALID, "client_id must be 1..256 printable characters")
        session = self._token_source(16)
        previous = self._clients.get(client_id)
        excluded = previous.excluded_reason if previous else ""
        self._clients[client_id] = ClientEntry(client_id, session, now, properties, excluded)
        return session

    def authenticate(self, client_id: str, session: bytes) -> ClientEntry:
        """The entry for `client_id` if `session` is its current one; raises otherwise."""
        entry = self._clients.get(client_id)
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

    def __len__(self) -> int:
        return len(self._clients)
